//! `execution_mode: kubernetes` end to end: the real worker binary with kube's real client,
//! an API stand-in at the HTTP level (`kubernetes_support`) that runs each Job's pod as the
//! real binary with the pod's environment and mounted files, the real broker, a bare git
//! remote, and the scripted model.

mod common;
mod kubernetes_support;
mod reliability_support;

use std::path::Path;
use std::time::Duration;

use agent_runner::demo::sample;
use agent_runner::llm::scripted::Script;
use common::{AMQP_URL, Harness};
use kubernetes_support::KubeApi;
use reliability_support::{
    WorkerProcess, agent_runner, assert_depths, binary_config, commits_on_branch, eventually,
};

const EXIT_LIMIT: Duration = Duration::from_secs(120);
const LLM_KEY: &str = "sk-kubernetes-test-0123456789abcdef";
const WRONG_GREETING: &str = "#!/bin/sh\necho \"Hi, $1\"\n";

/// A model whose first greet.sh is wrong; once shown the failing test it writes the
/// right one (or never, with `learns: false`).
fn model(learns: bool) -> Script {
    Script::responder(move |request| {
        let shown_failure = request.to_string().contains("got 'Hi, World'");
        let content = if shown_failure && learns { sample::GREET_CONTENT } else { WRONG_GREETING };
        serde_json::json!({
            "code_changes": [{ "file_path": sample::GREET_PATH, "operation": "create", "content": content }],
            "explanation": "greet.sh",
        })
        .to_string()
    })
}

/// The stand-in, the kubeconfig and the worker's config in kubernetes mode.
async fn cluster(harness: &Harness, namespace: &str, start_delay: Duration) -> KubeApi {
    let dir = harness.dir.path();
    let api =
        KubeApi::start(Path::new(env!("CARGO_BIN_EXE_agent-runner")), &dir.join("pods"), start_delay).await;
    api.add_secret("openai-api-key", &[("OPENAI_API_KEY", LLM_KEY)]);
    api.write_kubeconfig(&dir.join("kubeconfig"), namespace);
    let top = format!(
        "execution_mode: kubernetes\nk8s_namespace: {namespace}\nk8s_image: necrocode/agent-runner:test\n\
         k8s_secrets: [openai-api-key]\nmax_memory_mb: 512\nrunner_id: k8s-worker\nplaybook:\n  repair_rounds: 1\n{}",
        reliability_support::harness_parts_yaml(harness)
    );
    std::fs::write(dir.join("c.yaml"), binary_config(&harness.names, AMQP_URL, &top)).unwrap();
    api
}

fn start_worker(harness: &Harness, label: &str) -> WorkerProcess {
    let dir = harness.dir.path();
    let kubeconfig = dir.join("kubeconfig");
    WorkerProcess::start_with_env(dir, label, &["--once"], &[("KUBECONFIG", kubeconfig.to_str().unwrap())])
}

fn log_of(harness: &Harness, label: &str) -> String {
    std::fs::read_to_string(harness.dir.path().join(format!("worker-{label}.log"))).unwrap_or_default()
}

fn count(requests: &[String], prefix: &str) -> usize {
    requests.iter().filter(|r| r.starts_with(prefix)).count()
}

async fn publish_sample(harness: &Harness, task_id: &str) {
    let task = serde_json::to_vec(&sample::sample_task(&harness.repo_url(), task_id)).unwrap();
    harness.publish("task.backend", &task).await;
}

#[tokio::test]
async fn a_task_runs_in_its_own_job_and_is_acked_once_its_push_and_artifacts_are_checked() {
    let harness = Harness::new("k8s-e2e", model(true)).await;
    let api = cluster(&harness, "tasks-e2e", Duration::ZERO).await;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "#").await.unwrap();
    publish_sample(&harness, "k8s.1").await;

    let worker = start_worker(&harness, "1");
    let status = worker.wait(EXIT_LIMIT).await;
    assert!(status.success(), "{status:?}: {}", log_of(&harness, "1"));

    // The model's edit failed the test, the repair passed it, and the pod pushed it.
    let commits = commits_on_branch(&harness.origin, "main", "feature/task-greeter-k8s.1").unwrap();
    assert_eq!(commits.len(), 1, "{commits:?}");
    assert!(commits[0].contains("Task-Id: k8s.1"), "{}", commits[0]);
    let requests = harness.llm.requests();
    assert_eq!(requests.len(), 2, "one implementation and one repair round");
    assert!(harness.llm.bearer_present().iter().all(|b| *b), "the pod read the projected Secret");
    for kind in ["diff", "log", "test", "summary"] {
        let stored = walk(&harness.artifacts_dir()).into_iter().any(|p| p.to_string_lossy().contains(kind));
        assert!(stored, "{kind} artifact stored by the pod");
    }
    assert_depths(&harness, (0, 0)).await;

    // One Job, run once, deleted after its outcome was read; a locked-down pod.
    let calls = api.requests();
    assert_eq!(count(&calls, "POST jobs/"), 1, "{calls:?}");
    assert_eq!(count(&calls, "DELETE jobs/"), 1, "{calls:?}");
    assert!(calls.iter().any(|c| c.starts_with("WATCH jobs/")), "{calls:?}");
    assert!(calls.iter().any(|c| c.starts_with("LOG pods/")), "{calls:?}");
    assert_eq!(api.pods_started(), 1);
    assert!(api.job_names().is_empty());
    let job = &api.created()[0];
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["containers"][0]["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"], true);
    let env = pod["containers"][0]["env"].to_string();
    assert!(!env.contains(LLM_KEY) && !env.contains("guest:guest"), "no secret in the Job: {env}");

    // The worker's own start and completion, the pod's steps relayed between them.
    let events = common::drain_events(&mut tap).await;
    let outline: Vec<String> =
        common::event_outline(&events, "k8s.1").into_iter().map(|(t, s)| format!("{t} {s}")).collect();
    assert_eq!(outline.first().map(String::as_str), Some("TaskStarted "), "{outline:?}");
    assert_eq!(outline.last().map(String::as_str), Some("TaskCompleted "), "{outline:?}");
    for step in ["StepStarted implement", "StepCompleted test", "StepCompleted push"] {
        assert!(outline.iter().any(|e| e == step), "{step} missing: {outline:?}");
    }
    assert_eq!(outline.iter().filter(|e| e.starts_with("TaskStarted")).count(), 1, "{outline:?}");
    let relayed = events.iter().find(|e| e["type"] == "StepStarted").unwrap();
    assert!(relayed["runner_id"].as_str().unwrap().starts_with("ar-k8s-1-"), "{relayed}");
    assert_eq!(relayed["attempt"], 1);
    harness.cleanup().await;
}

#[tokio::test]
async fn a_redelivered_task_follows_the_job_of_its_first_delivery_instead_of_starting_another() {
    let harness = Harness::new("k8s-redelivery", model(true)).await;
    // Slow pods: the first worker dies while its pod is still starting.
    let api = cluster(&harness, "tasks-redelivery", Duration::from_secs(4)).await;
    publish_sample(&harness, "k8s.2").await;

    let mut first = start_worker(&harness, "1");
    eventually("the first worker created the job", 60, || !api.job_names().is_empty()).await;
    first.kill_hard();
    let second = start_worker(&harness, "2");
    let status = second.wait(EXIT_LIMIT).await;
    assert!(status.success(), "{status:?}: {}", log_of(&harness, "2"));

    let calls = api.requests();
    assert_eq!(count(&calls, "POST jobs/"), 2, "both deliveries asked: {calls:?}");
    assert_eq!(api.created().len(), 1, "only the first was created");
    assert_eq!(api.pods_started(), 1, "the task ran once");
    let commits = commits_on_branch(&harness.origin, "main", "feature/task-greeter-k8s.2").unwrap();
    assert_eq!(commits.len(), 1);
    assert_eq!(harness.llm.requests().len(), 2);
    assert_depths(&harness, (0, 0)).await;
    harness.cleanup().await;
}

#[tokio::test]
async fn a_task_whose_pod_reports_failing_tests_is_dead_lettered_with_the_pods_reason() {
    let harness = Harness::new("k8s-failing", model(false)).await;
    let api = cluster(&harness, "tasks-failing", Duration::ZERO).await;
    publish_sample(&harness, "k8s.3").await;

    let worker = start_worker(&harness, "1");
    let status = worker.wait(EXIT_LIMIT).await;
    assert!(status.success(), "{status:?}: {}", log_of(&harness, "1"));

    let (kind, step, message) = harness.only_dead_letter().await;
    assert_eq!((kind.as_str(), step.as_str()), ("test_execution", "test"), "{message}");
    assert!(commits_on_branch(&harness.origin, "main", "feature/task-greeter-k8s.3").is_none(), "no push");
    assert_eq!(api.pods_started(), 1);
    assert!(api.job_names().is_empty(), "the failed Job is deleted once read");
    harness.cleanup().await;
}

#[tokio::test]
async fn a_worker_whose_kubernetes_api_does_not_answer_refuses_to_start_with_exit_69() {
    let harness = Harness::new("k8s-unreachable", Script::replies(["unused"])).await;
    let _api = cluster(&harness, "tasks-unreachable", Duration::ZERO).await;
    let dir = harness.dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = std::fs::read_to_string(dir.join("kubeconfig")).unwrap();
    let closed = regex::Regex::new(r"http://127\.0\.0\.1:\d+")
        .unwrap()
        .replace(&text, format!("http://127.0.0.1:{port}"));
    std::fs::write(dir.join("kubeconfig"), closed.as_ref()).unwrap();
    let status = start_worker(&harness, "1").wait(EXIT_LIMIT).await;
    assert_eq!(status.code(), Some(69), "{}", log_of(&harness, "1"));
    assert!(log_of(&harness, "1").contains("execution_mode kubernetes"), "{}", log_of(&harness, "1"));
    assert!(harness.llm.requests().is_empty());
    harness.cleanup().await;
}

#[tokio::test]
async fn an_operators_cancel_deletes_the_job_and_a_shutdown_leaves_it_for_the_next_delivery() {
    let harness = Harness::new("k8s-stop", model(true)).await;
    // Pods that never start within the test: the task is in its Job the whole time.
    let api = cluster(&harness, "tasks-stop", Duration::from_secs(600)).await;
    let dir = harness.dir.path();
    let config = std::fs::read_to_string(dir.join("c.yaml")).unwrap();
    std::fs::write(dir.join("c.yaml"), format!("{config}reliability:\n  shutdown_grace_seconds: 1\n"))
        .unwrap();

    // Shutdown: the worker lets go of the delivery and of nothing else.
    publish_sample(&harness, "k8s.4").await;
    let worker = start_worker(&harness, "1");
    eventually("the job was created", 60, || !api.job_names().is_empty()).await;
    worker.terminate();
    let status = worker.wait(EXIT_LIMIT).await;
    assert!(status.success(), "{status:?}: {}", log_of(&harness, "1"));
    assert_eq!(count(&api.requests(), "DELETE jobs/"), 0, "{:?}", api.requests());
    assert_eq!(api.job_names().len(), 1, "the Job keeps running for the next delivery");
    assert_depths(&harness, (1, 0)).await;

    // Cancel: the next delivery follows that Job, and the operator's cancel deletes it.
    let worker = start_worker(&harness, "2");
    eventually("the second worker follows the job", 60, || count(&api.requests(), "POST jobs/") == 2).await;
    let cancelled = agent_runner(dir, &["--config", "c.yaml", "cancel", "k8s.4"]).await;
    assert!(cancelled.status.success(), "{}", String::from_utf8_lossy(&cancelled.stderr));
    let status = worker.wait(EXIT_LIMIT).await;
    assert!(status.success(), "{status:?}: {}", log_of(&harness, "2"));
    assert_eq!(api.created().len(), 1);
    assert_eq!(count(&api.requests(), "DELETE jobs/"), 1, "{:?}", api.requests());
    assert!(api.job_names().is_empty());
    assert_eq!(api.pods_started(), 0);
    let (kind, _, _) = harness.only_dead_letter().await;
    assert_eq!(kind, "cancelled");
    harness.cleanup().await;
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
