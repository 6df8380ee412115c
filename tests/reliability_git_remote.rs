//! The git remote unavailable for a while: the task is retried with a delay and then
//! completes. The remote is real git over smart HTTP (`git http-backend` behind a small
//! server of the test's own, `common::git_http`), which answers 503 until the test
//! brings it back.

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

    let retry = RetryQueues {
        work_queue: harness.names.work_queue.clone(),
        delays: config.reliability.retry_delays.clone(),
    };
    retry.delete(&harness.session).await.unwrap();
    harness.cleanup().await;
}
