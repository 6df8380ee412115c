//! The git remote unavailable: a few 503s are retried in place (`git_retry_count`) and
//! the task completes on its first attempt; a remote down for longer gets the task-level
//! delayed retry and then completes; a refusal of credentials is not retried in place.
//! The remote is real git over smart HTTP (`git http-backend` behind a small server of
//! the test's own, `common::git_http`), which answers 503 while down or stumbling.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use agent_runner::amqp::RetryQueues;
use agent_runner::demo::sample;
use agent_runner::git::RemotePrefix;
use agent_runner::llm::scripted::Script;
use common::Harness;
use common::git_http::{Behaviour, GitHttpServer};
use serde_json::{Value, json};

#[tokio::test]
async fn a_git_remote_down_for_a_while_is_retried_later_and_the_task_completes() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("retry-remote", Script::responder(move |_| answer.clone())).await;
    let status = std::process::Command::new("git")
        .args(["--git-dir", &harness.origin.display().to_string(), "config", "http.receivepack", "true"])
        .status()
        .unwrap();
    assert!(status.success());
    let server = GitHttpServer::start(Behaviour::Serve(harness.dir.path().to_path_buf()), false).await;
    let mut config = harness.config();
    config.git.allowed_remotes.push(RemotePrefix::parse(&format!("{}/", server.origin())).unwrap());
    config.reliability.retry_delays = vec![Duration::from_secs(1)];
    config.reliability.max_attempts = 3;
    // No in-place retries: this test is about the task-level one.
    config.retry.git = 0;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.#").await.unwrap();
    let task = sample::sample_task(&server.url("origin.git"), "g.1");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;

    let (report, retrying) = tokio::join!(harness.run_worker(config.clone(), 1, 2), async {
        loop {
            let body = tap.next_body(Duration::from_secs(60)).await.expect("TaskRetrying in time");
            let event: Value = serde_json::from_slice(&body).unwrap();
            if event["type"] == "TaskRetrying" {
                server.up.store(true, Ordering::SeqCst); // the remote is back
                return event;
            }
        }
    });
    assert_eq!((report.acked, report.retried, report.dead_lettered), (1, 1, 0));
    assert_eq!(
        (&retrying["data"]["next_attempt"], &retrying["data"]["reason"]),
        (&json!(2), &json!("workspace_preparation"))
    );
    let (commit, message) =
        sample::branch_head(&harness.origin, "feature/task-greeter-g.1").unwrap().unwrap();
    assert!(message.starts_with("feat(task-g.1): Add the greet command"));
    assert_eq!(
        sample::file_at(&harness.origin, &commit, sample::GREET_PATH).unwrap().as_deref(),
        Some(sample::GREET_CONTENT)
    );
    // The model was asked once: the first attempt never got past the clone.
    assert_eq!(harness.llm.requests().len(), 1);

    cleanup(harness, &config).await;
}

#[tokio::test]
async fn a_git_remote_that_answers_503_a_few_times_is_retried_in_place_on_the_first_attempt() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("retry-in-place", Script::responder(move |_| answer.clone())).await;
    let status = std::process::Command::new("git")
        .args(["--git-dir", &harness.origin.display().to_string(), "config", "http.receivepack", "true"])
        .status()
        .unwrap();
    assert!(status.success());
    let server = GitHttpServer::start(Behaviour::Serve(harness.dir.path().to_path_buf()), true).await;
    // Two 503s for the clone: within git_retry_count 3, so no task-level retry.
    server.fail_next.store(2, Ordering::SeqCst);
    let mut config = harness.config();
    config.git.allowed_remotes.push(RemotePrefix::parse(&format!("{}/", server.origin())).unwrap());
    config.retry.git = 3;
    config.reliability.retry_delays = vec![Duration::from_secs(1)];
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.#").await.unwrap();
    let task = sample::sample_task(&server.url("origin.git"), "g.2");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;

    let report = harness.run_worker(config.clone(), 1, 1).await;
    assert_eq!((report.acked, report.retried, report.dead_lettered), (1, 0, 0));
    let mut types = Vec::new();
    while let Some(body) = tap.next_body(Duration::from_secs(5)).await {
        let event: Value = serde_json::from_slice(&body).unwrap();
        types.push(event["type"].as_str().unwrap_or_default().to_string());
        if event["type"] == "TaskCompleted" {
            break;
        }
    }
    assert!(!types.iter().any(|t| t == "TaskRetrying"), "{types:?}");
    assert_eq!(types.last().map(String::as_str), Some("TaskCompleted"));
    // The two refused requests were the same discovery request, asked again.
    let seen: Vec<String> = server.seen().into_iter().map(|r| r.path_and_query).collect();
    let discovery = "/origin.git/info/refs?service=git-upload-pack";
    assert_eq!(seen[..3], [discovery, discovery, discovery]);
    assert!(sample::branch_head(&harness.origin, "feature/task-greeter-g.2").unwrap().is_some());
    assert_eq!(harness.llm.requests().len(), 1);

    cleanup(harness, &config).await;
}

#[tokio::test]
async fn a_remote_refusing_credentials_is_asked_once_not_retried_in_place() {
    let harness = Harness::new("no-retry-auth", Script::responder(|_| sample::scripted_answer())).await;
    let server = GitHttpServer::start(Behaviour::RefuseWithBasicAuth, true).await;
    let mut config = harness.config();
    config.git.allowed_remotes.push(RemotePrefix::parse(&format!("{}/", server.origin())).unwrap());
    config.retry.git = 3;
    let task = sample::sample_task(&server.url("origin.git"), "g.3");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;

    let report = harness.run_worker(config, 1, 1).await;
    assert_eq!((report.acked, report.retried, report.dead_lettered), (0, 0, 1));
    let discovery = "/origin.git/info/refs?service=git-upload-pack";
    let asked = server.seen().iter().filter(|r| r.path_and_query == discovery).count();
    // libgit2 asks once without credentials (and may ask once more after the 401 when it
    // has a credential to offer; this worker has none): never the 4 of an in-place retry.
    assert_eq!(asked, 1);
    harness.cleanup().await;
}

/// Deletes the harness's topology and the retry queues `config` declared.
async fn cleanup(harness: Harness, config: &agent_runner::config::RunnerConfig) {
    let retry = RetryQueues {
        work_queue: harness.names.work_queue.clone(),
        delays: config.reliability.retry_delays.clone(),
    };
    retry.delete(&harness.session).await.unwrap();
    harness.cleanup().await;
}
