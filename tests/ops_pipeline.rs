//! The pipeline against HTTP fakes of the Repo Pool and the Artifact Store: slots come
//! from the pool and go back on every outcome; artifacts go to the store's REST API,
//! with retries on transient answers and a clear error on a refusal.

mod ops_support;

use std::sync::Arc;

use agent_runner::config::{ArtifactStoreLocation, RunnerConfig};
use agent_runner::demo::sample;
use agent_runner::events::MemorySink;
use agent_runner::llm::scripted::{self, Script};
use agent_runner::pipeline::{RunResult, Runner, RunnerSecrets};
use agent_runner::task::{Task, parse_task};
use ops_support::{FakeService, Recorded, Reply, fake_repo_pool, runner_config};
use serde_json::json;
use tokio_util::sync::CancellationToken;

struct Setup {
    dir: tempfile::TempDir,
    origin: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    sample::create_origin(&origin, "main", sample::SAMPLE_FILES).unwrap();
    std::fs::create_dir_all(dir.path().join("pool")).unwrap();
    Setup { dir, origin }
}

impl Setup {
    fn task(&self) -> Task {
        let message = sample::sample_task(&format!("file://{}", self.origin.display()), "1.1");
        parse_task(&serde_json::to_vec(&message).unwrap()).unwrap()
    }
}

fn runner(config: &RunnerConfig) -> Runner {
    let secrets = RunnerSecrets { git_token: None, llm_api_key: None };
    Runner::from_config(config, secrets, Arc::new(MemorySink::default())).unwrap()
}

fn wrong_answer() -> String {
    json!({
        "code_changes": [{ "file_path": sample::GREET_PATH, "operation": "create", "content": "#!/bin/sh\necho Hi\n" }],
        "explanation": "greets tersely"
    })
    .to_string()
}

fn calls(requests: &[Recorded]) -> Vec<(String, String)> {
    requests.iter().map(|r| (r.method.clone(), r.path.clone())).collect()
}

fn allocate_then_release(slot: &str) -> Vec<(String, String)> {
    vec![("POST".into(), "/slots/allocate".into()), ("POST".into(), format!("/slots/{slot}/release"))]
}

async fn run_with_pool(
    setup: &Setup,
    answer: String,
    cancel_on_allocate: bool,
) -> (RunResult, Vec<Recorded>) {
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();
    let cancel = CancellationToken::new();
    // With `cancel_on_allocate`, the worker is told to stop as the pool answers.
    let trigger = cancel.clone();
    let on_allocate = move || {
        if cancel_on_allocate {
            trigger.cancel();
        }
    };
    let pool = fake_repo_pool(setup.origin.clone(), setup.dir.path().join("pool"), on_allocate).await;
    let mut config = runner_config(setup.dir.path(), &llm.base_url());
    config.services.repo_pool_url = Some(pool.url().parse().unwrap());
    config.playbook.repair_rounds = 0;
    let result = runner(&config).run(&setup.task(), 1, &cancel).await;
    // A release may still be on its way (a slot granted while the run was stopping is
    // released by a task of its own): wait for it rather than read too early.
    let requests = pool.wait_until(|r| r.len() >= 2).await;
    (result, requests)
}

#[tokio::test]
async fn a_repo_pool_slot_is_used_and_released_after_success() {
    let setup = setup();
    let (result, requests) = run_with_pool(&setup, sample::scripted_answer(), false).await;
    assert!(result.success, "{:?}", result.error);
    assert_eq!(result.slot_id.as_deref(), Some("slot-1"));
    assert_eq!(calls(&requests), allocate_then_release("slot-1"));
    let repo_url = format!("file://{}", setup.origin.display());
    assert_eq!(requests[0].body, json!({ "repo_url": repo_url, "required_by": "ops-runner/greeter/1.1" }));
    // The work happened in the pool's slot.
    let pushed = sample::branch_head(&setup.origin, "feature/task-greeter-1.1").unwrap();
    assert!(pushed.is_some());
}

#[tokio::test]
async fn a_repo_pool_slot_is_released_after_failure() {
    let setup = setup();
    let (result, requests) = run_with_pool(&setup, wrong_answer(), false).await;
    assert_eq!(result.error.as_ref().map(|f| f.kind.as_str()), Some("test_execution"));
    assert_eq!(calls(&requests), allocate_then_release("slot-1"));
}

#[tokio::test]
async fn a_repo_pool_slot_is_released_after_cancellation() {
    let setup = setup();
    let (result, requests) = run_with_pool(&setup, sample::scripted_answer(), true).await;
    let failure = result.error.expect("a cancelled task fails");
    assert_eq!(
        (failure.step.as_str(), failure.message.as_str()),
        ("slot", "stopped by the worker's shutdown; left for redelivery")
    );
    assert_eq!(calls(&requests), allocate_then_release("slot-1"));
}

#[tokio::test]
async fn a_repo_pool_slot_is_released_when_the_run_is_dropped_midway() {
    let setup = setup();
    let asked = Arc::new(tokio::sync::Notify::new());
    let signal = asked.clone();
    let llm = scripted::start(Script::responder(move |_| {
        signal.notify_one();
        sample::scripted_answer()
    }))
    .await
    .unwrap();
    let pool = fake_repo_pool(setup.origin.clone(), setup.dir.path().join("pool"), || {}).await;
    let mut config = runner_config(setup.dir.path(), &llm.base_url());
    config.services.repo_pool_url = Some(pool.url().parse().unwrap());
    let runner = Arc::new(runner(&config));
    let task = setup.task();
    let running = tokio::spawn(async move { runner.run(&task, 1, &CancellationToken::new()).await });
    // The model is asked only once the slot is held; abort the whole run right then.
    asked.notified().await;
    running.abort();
    let requests = pool.wait_until(|r| r.len() == 2).await;
    assert_eq!(calls(&requests), allocate_then_release("slot-1"));
}

async fn run_with_store(setup: &Setup, store: &FakeService) -> RunResult {
    let answer = sample::scripted_answer();
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();
    let mut config = runner_config(setup.dir.path(), &llm.base_url());
    config.services.artifact_store = ArtifactStoreLocation::Http(store.url().parse().unwrap());
    runner(&config).run(&setup.task(), 1, &CancellationToken::new()).await
}

#[tokio::test]
async fn artifacts_go_to_the_artifact_store_api_with_retries_on_transient_answers() {
    let setup = setup();
    let answered = Arc::new(std::sync::Mutex::new(0u32));
    let store = FakeService::start(move |request| {
        let mut n = answered.lock().unwrap();
        *n += 1;
        match *n {
            // The first upload meets a rate limit, then a brief outage.
            1 => Reply { status: 429, headers: vec![("retry-after", "0".into())], body: "{}".into() },
            2 => Reply::status(503),
            _ => {
                let path =
                    serde_json::from_str::<serde_json::Value>(request.body["metadata"].as_str().unwrap())
                        .unwrap()["path"]
                        .as_str()
                        .unwrap()
                        .to_string();
                Reply::ok(json!({ "uri": format!("/artifacts/{path}") }))
            }
        }
    })
    .await;
    let result = run_with_store(&setup, &store).await;
    assert!(result.success, "{:?}", result.error);

    let requests = store.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 200, 200, 200, 200, 200]);
    let uploads: Vec<(String, String, String)> = requests[2..]
        .iter()
        .map(|r| {
            let metadata: serde_json::Value =
                serde_json::from_str(r.body["metadata"].as_str().unwrap()).unwrap();
            (
                r.path.clone(),
                r.body["type"].as_str().unwrap().to_string(),
                metadata["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("diff", "greeter/1.1/diff.patch"),
        ("test", "greeter/1.1/test-results.json"),
        ("log", "greeter/1.1/execution.log"),
        ("transcript", "greeter/1.1/transcript.json"),
        ("summary", "greeter/1.1/summary.json"),
    ]
    .iter()
    .map(|(kind, path)| ("/artifacts".to_string(), kind.to_string(), path.to_string()))
    .collect();
    assert_eq!(uploads, expected);
    assert!(requests[2].body["file"].as_str().unwrap().contains("+echo \"Hello, ${1:-world}!\""));
    let uris: Vec<&str> = result.artifacts.iter().map(|a| a.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "/artifacts/greeter/1.1/diff.patch",
            "/artifacts/greeter/1.1/test-results.json",
            "/artifacts/greeter/1.1/execution.log",
            "/artifacts/greeter/1.1/transcript.json",
            "/artifacts/greeter/1.1/summary.json"
        ]
    );
}

#[tokio::test]
async fn a_refusing_artifact_store_fails_the_task_with_a_clear_permanent_error() {
    let setup = setup();
    let store = FakeService::start(|_| Reply::status(400)).await;
    let result = run_with_store(&setup, &store).await;
    let failure = result.error.expect("the upload failed");
    assert_eq!(
        (failure.kind.as_str(), failure.step.as_str(), failure.transient),
        ("artifact_upload", "upload", false)
    );
    assert_eq!(failure.message, "Artifact Store POST /artifacts: answered HTTP 400: {\"error\":\"fake\"}");
    // Refusals are not retried.
    assert_eq!(store.requests().len(), 1);
}
