//! The REST contract's read calls against HTTP stand-ins: a task's record from the Task
//! Registry, a slot's state from the Repo Pool, an artifact's metadata from the Artifact
//! Store, each service's `/health`; the start-up check that warns about a service that
//! does not answer; and the slot state asked for when a release fails.

mod ops_support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agent_runner::clients::{
    ArtifactStoreClient, ClientSettings, RepoPoolClient, SlotState, TaskRegistryClient,
    check_services_at_startup,
};
use agent_runner::config::ArtifactStoreLocation;
use agent_runner::demo::sample;
use agent_runner::events::MemorySink;
use agent_runner::llm::scripted::{self, Script};
use agent_runner::pipeline::{Runner, RunnerSecrets};
use agent_runner::task::parse_task;
use ops_support::{FakeService, Recorded, Reply, runner_config};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn no_retries() -> ClientSettings {
    ClientSettings { retries: 0, ..ClientSettings::default() }
}

fn calls(requests: &[Recorded]) -> Vec<(String, String, Option<String>)> {
    requests.iter().map(|r| (r.method.clone(), r.path.clone(), r.query.clone())).collect()
}

fn get(path: &str, query: Option<&str>) -> (String, String, Option<String>) {
    ("GET".into(), path.into(), query.map(str::to_string))
}

#[tokio::test]
async fn each_service_answers_its_read_calls_and_health() {
    let fake = FakeService::start(|request| match request.path.as_str() {
        "/tasks/1.1" => Reply::ok(json!({ "task_id": "1.1", "status": "done" })),
        "/slots/slot-7" => Reply::ok(json!({ "slot_id": "slot-7", "status": "allocated", "holder": "r/1" })),
        "/artifacts/metadata" => Reply::ok(json!({ "type": "diff", "size_bytes": 42 })),
        "/health" => Reply::ok(json!({ "status": "ok" })),
        _ => Reply::status(404),
    })
    .await;
    let base: reqwest::Url = fake.url().parse().unwrap();
    let registry = TaskRegistryClient::new(base.clone(), no_retries()).unwrap();
    let pool = RepoPoolClient::new(base.clone(), no_retries()).unwrap();
    let store = ArtifactStoreClient::new(base, no_retries()).unwrap();

    let task = registry.task("1.1").await.unwrap();
    assert_eq!(serde_json::Value::Object(task), json!({ "task_id": "1.1", "status": "done" }));
    let slot = pool.slot("slot-7").await.unwrap();
    let other = serde_json::Map::from_iter([("holder".to_string(), json!("r/1"))]);
    let expected =
        SlotState { slot_id: "slot-7".into(), state: Some("allocated".into()), slot_path: None, other };
    assert_eq!(slot, expected);
    let uri = "http://store:8003/artifacts/greeter/1.1/diff.patch";
    let metadata = store.metadata(uri).await.unwrap();
    assert_eq!(serde_json::Value::Object(metadata), json!({ "type": "diff", "size_bytes": 42 }));
    registry.health().await.unwrap();
    pool.health().await.unwrap();
    store.health().await.unwrap();
    let encoded = "uri=http%3A%2F%2Fstore%3A8003%2Fartifacts%2Fgreeter%2F1.1%2Fdiff.patch";
    assert_eq!(
        calls(&fake.requests()),
        [
            get("/tasks/1.1", None),
            get("/slots/slot-7", None),
            get("/artifacts/metadata", Some(encoded)),
            get("/health", None),
            get("/health", None),
            get("/health", None),
        ]
    );
}

#[tokio::test]
async fn a_missing_task_is_an_error_naming_the_call() {
    let fake = FakeService::start(|_| Reply::status(404)).await;
    let registry = TaskRegistryClient::new(fake.url().parse().unwrap(), no_retries()).unwrap();
    let error = registry.task("9.9").await.unwrap_err().to_string();
    assert!(error.contains("GET /tasks/9.9") && error.contains("404"), "{error}");
}

#[tokio::test]
async fn start_up_warns_about_each_configured_service_that_does_not_answer() {
    let registry = FakeService::start(|_| Reply::status(503)).await;
    let pool = FakeService::start(|_| Reply::ok(json!({}))).await;
    // A port nothing listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = runner_config(dir.path(), "http://127.0.0.1:9/v1");
    config.services.task_registry_url = Some(registry.url().parse().unwrap());
    config.services.repo_pool_url = Some(pool.url().parse().unwrap());
    config.services.artifact_store =
        ArtifactStoreLocation::Http(format!("http://{closed}/").parse().unwrap());

    let problems = check_services_at_startup(&config).await;
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("the Task Registry does not answer its health check"), "{}", problems[0]);
    assert!(problems[0].ends_with("starting anyway: events still go through the broker"));
    assert!(
        problems[1].starts_with("the Artifact Store does not answer its health check"),
        "{}",
        problems[1]
    );
    // One request each, no retries: the worker's start does not wait on a service.
    assert_eq!(calls(&registry.requests()), [get("/health", None)]);
    assert_eq!(calls(&pool.requests()), [get("/health", None)]);

    let unconfigured = runner_config(dir.path(), "http://127.0.0.1:9/v1");
    assert_eq!(check_services_at_startup(&unconfigured).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_failed_release_asks_the_pool_for_the_slots_state() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    sample::create_origin(&origin, "main", sample::SAMPLE_FILES).unwrap();
    let slot_path: PathBuf = dir.path().join("pool/slot-1");
    let cloned = Arc::new(Mutex::new(false));
    let (from, to) = (origin.clone(), slot_path.clone());
    let pool = FakeService::start(move |request| match request.path.as_str() {
        "/slots/allocate" => {
            let mut done = cloned.lock().unwrap();
            if !*done {
                let status =
                    std::process::Command::new("git").args(["clone", "-q"]).arg(&from).arg(&to).status();
                assert!(status.unwrap().success());
                *done = true;
            }
            Reply::ok(json!({ "slot_id": "slot-1", "slot_path": to }))
        }
        "/slots/slot-1/release" => Reply::status(500),
        "/slots/slot-1" => Reply::ok(json!({ "slot_id": "slot-1", "state": "allocated" })),
        _ => Reply::status(404),
    })
    .await;
    let answer = sample::scripted_answer();
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();
    let mut config = runner_config(dir.path(), &llm.base_url());
    config.services.repo_pool_url = Some(pool.url().parse().unwrap());
    config.retry.network = 0;
    let secrets = RunnerSecrets { git_token: None, llm_api_key: None };
    let runner = Runner::from_config(&config, secrets, Arc::new(MemorySink::default())).unwrap();
    let message = sample::sample_task(&format!("file://{}", origin.display()), "1.1");
    let task = parse_task(&serde_json::to_vec(&message).unwrap()).unwrap();

    let result = runner.run(&task, 1, &CancellationToken::new()).await;
    // The work is done; a release the pool did not take does not undo it.
    assert!(result.success, "{:?}", result.error);
    let requests = pool.wait_until(|r| r.len() >= 3).await;
    let seen: Vec<(String, String)> = requests.iter().map(|r| (r.method.clone(), r.path.clone())).collect();
    let expected = [("POST", "/slots/allocate"), ("POST", "/slots/slot-1/release"), ("GET", "/slots/slot-1")]
        .map(|(m, p)| (m.to_string(), p.to_string()));
    assert_eq!(seen, expected);
}
