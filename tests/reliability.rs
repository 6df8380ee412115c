//! Reliability on the real broker, in process: delayed retries that finish what the
//! first attempt pushed, dead-lettering after `max_attempts`, idempotent redelivery,
//! the push lease, operator cancellation and a consumer re-established after its queue
//! was deleted. Fault injection with the real binary is in `reliability_faults.rs`.

mod common;
mod reliability_support;

use std::time::Duration;

use agent_runner::amqp::{HeaderMap, Outgoing, RetryQueues};
use agent_runner::config::RunnerConfig;
use agent_runner::demo::sample;
use agent_runner::llm::scripted::Script;
use common::processes::{is_gone, wait_for};
use common::{Harness, drain_events, event_outline};
use serde_json::{Value, json};

/// Retries wait one second here, so the tests stay fast.
fn fast_retries(mut config: RunnerConfig, max_attempts: u32) -> RunnerConfig {
    config.reliability.retry_delays = vec![Duration::from_secs(1)];
    config.reliability.max_attempts = max_attempts;
    config
}

async fn delete_retry_queues(harness: &Harness, config: &RunnerConfig) {
    let retry = RetryQueues {
        work_queue: harness.names.work_queue.clone(),
        delays: config.reliability.retry_delays.clone(),
    };
    retry.delete(&harness.session).await.unwrap();
}

/// Waits on the tap for the first event of `event_type`, keeping everything read.
async fn wait_for_event(
    tap: &mut agent_runner::amqp::ExchangeTap,
    seen: &mut Vec<Value>,
    event_type: &str,
) -> Value {
    loop {
        let body = tap.next_body(Duration::from_secs(60)).await.expect("event in time");
        let event: Value = serde_json::from_slice(&body).unwrap();
        seen.push(event.clone());
        if event["type"] == event_type {
            return event;
        }
    }
}

fn answer() -> Script {
    let answer = sample::scripted_answer();
    Script::responder(move |_| answer.clone())
}

#[tokio::test]
async fn an_artifact_store_down_for_a_while_is_retried_later_and_the_retry_does_not_ask_the_model_again() {
    let harness = Harness::new("retry-store", answer()).await;
    let config = fast_retries(harness.config(), 3);
    // A file where the store's directory should be: every write fails with an I/O error.
    std::fs::write(harness.artifacts_dir(), "not a directory").unwrap();
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.#").await.unwrap();
    harness
        .publish(
            "task.backend",
            &serde_json::to_vec(&sample::sample_task(&harness.repo_url(), "r.1")).unwrap(),
        )
        .await;

    let mut events = Vec::new();
    let (report, retrying) = tokio::join!(harness.run_worker(config.clone(), 1, 2), async {
        let retrying = wait_for_event(&mut tap, &mut events, "TaskRetrying").await;
        std::fs::remove_file(harness.artifacts_dir()).unwrap(); // the store is back
        retrying
    });
    assert_eq!((report.acked, report.retried, report.dead_lettered), (1, 1, 0));
    assert_eq!(retrying["attempt"], 1);
    assert_eq!(
        (&retrying["data"]["next_attempt"], &retrying["data"]["delay_seconds"], &retrying["data"]["reason"]),
        (&json!(2), &json!(1), &json!("artifact_upload"))
    );

    // Attempt 2 found the branch its predecessor pushed: no model call, no second commit.
    events.extend(drain_events(&mut tap).await);
    let second: Vec<(String, String)> =
        event_outline(&events.iter().filter(|e| e["attempt"] == 2).cloned().collect::<Vec<_>>(), "r.1");
    let expected: Vec<(String, String)> = [
        ("TaskStarted", ""),
        ("StepStarted", "slot"),
        ("StepCompleted", "slot"),
        ("StepStarted", "workspace"),
        ("StepCompleted", "workspace"),
        ("ArtifactUploaded", "diff"),
        ("ArtifactUploaded", "test"),
        ("ArtifactUploaded", "log"),
        ("ArtifactUploaded", "summary"),
        ("TaskCompleted", ""),
    ]
    .map(|(t, d)| (t.to_string(), d.to_string()))
    .into();
    assert_eq!(second, expected);
    assert_eq!(harness.llm.requests().len(), 1);
    let (commit, _) = sample::branch_head(&harness.origin, "feature/task-greeter-r.1").unwrap().unwrap();
    let commits = reliability_support::commits_on_branch(&harness.origin, "main", "feature/task-greeter-r.1");
    assert_eq!(commits.unwrap().len(), 1);
    let summary: Value = serde_json::from_str(
        &std::fs::read_to_string(harness.artifacts_dir().join("greeter/r.1/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&summary["resumed"], &summary["commit"], &summary["attempt"]),
        (&json!(true), &json!(commit), &json!(2))
    );
    reliability_support::assert_depths(&harness, (0, 0)).await;
    delete_retry_queues(&harness, &config).await;
    harness.cleanup().await;
}

#[tokio::test]
async fn a_transient_failure_that_persists_is_dead_lettered_with_its_reason_after_max_attempts() {
    let harness = Harness::new("retry-exhausted", answer()).await;
    let config = fast_retries(harness.config(), 2);
    std::fs::write(harness.artifacts_dir(), "not a directory").unwrap();
    harness
        .publish(
            "task.backend",
            &serde_json::to_vec(&sample::sample_task(&harness.repo_url(), "r.2")).unwrap(),
        )
        .await;

    let report = harness.run_worker(config.clone(), 1, 2).await;
    assert_eq!((report.acked, report.retried, report.dead_lettered), (0, 1, 1));
    let letters = agent_runner::amqp::browse_queue(&harness.session, &harness.names.dead_letter_queue, 10)
        .await
        .unwrap();
    let header = |name| letters[0].header_text(name).unwrap_or_default();
    assert_eq!(
        [
            header("x-task-id"),
            header("x-failure-kind"),
            header("x-failed-step"),
            header("x-failure-transient"),
            header("x-attempts")
        ],
        ["r.2", "artifact_upload", "upload", "true", "2"].map(String::from)
    );
    // The Dispatcher's routing key survives the trip through the retry queue, for replay.
    assert_eq!(letters[0].routing_key, "task.backend");
    reliability_support::assert_depths(&harness, (0, 1)).await;
    delete_retry_queues(&harness, &config).await;
    harness.cleanup().await;
}

#[tokio::test]
async fn a_task_delivered_again_after_completing_finishes_once_with_the_same_completion_event() {
    let harness = Harness::new("redelivered", answer()).await;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.completed").await.unwrap();
    let body = serde_json::to_vec(&sample::sample_task(&harness.repo_url(), "r.3")).unwrap();
    harness.publish("task.backend", &body).await;
    harness.publish("task.backend", &body).await;

    let report = harness.run_worker(harness.config(), 1, 2).await;
    assert_eq!((report.acked, report.dead_lettered), (2, 0));
    assert_eq!(harness.llm.requests().len(), 1, "the second delivery must not ask the model");
    let completed = drain_events(&mut tap).await;
    assert_eq!(completed.len(), 2);
    assert_eq!(completed[0]["event_id"], completed[1]["event_id"], "the mirror sees one completion");
    assert_eq!(completed[0]["data"]["commit"], completed[1]["data"]["commit"]);
    let log = std::fs::read_to_string(harness.artifacts_dir().join("greeter/r.3/execution.log")).unwrap();
    assert!(log.contains("already carries this task's commit"), "{log}");
    harness.cleanup().await;
}

#[tokio::test]
async fn a_task_branch_holding_someone_elses_work_is_never_overwritten() {
    let harness = Harness::new("foreign-branch", answer()).await;
    // Someone else's commit on the task's branch name, without this task's trailer.
    reliability_support::plant_branch(
        &harness.origin,
        "main",
        "feature/task-greeter-r.4",
        "NOTES.md",
        "mine\n",
        "Human work",
    );
    let (before, _) = sample::branch_head(&harness.origin, "feature/task-greeter-r.4").unwrap().unwrap();
    harness
        .publish(
            "task.backend",
            &serde_json::to_vec(&sample::sample_task(&harness.repo_url(), "r.4")).unwrap(),
        )
        .await;

    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    assert!(harness.llm.requests().is_empty(), "refused before the model was asked");
    let (after, _) = sample::branch_head(&harness.origin, "feature/task-greeter-r.4").unwrap().unwrap();
    assert_eq!(after, before);
    let letters = agent_runner::amqp::browse_queue(&harness.session, &harness.names.dead_letter_queue, 10)
        .await
        .unwrap();
    assert_eq!(letters[0].header_text("x-failure-kind").as_deref(), Some("push"));
    assert!(letters[0].header_text("x-failure-message").unwrap().contains("not this task's work"));
    harness.cleanup().await;
}

#[tokio::test]
async fn a_control_message_cancels_the_running_task_kills_its_processes_and_dead_letters_it() {
    let harness = Harness::new("cancel", answer()).await;
    let marker = harness.dir.path().join("running.pid");
    let mut task = sample::sample_task(&harness.repo_url(), "r.5");
    task["playbook"] = json!({ "name": "hang", "steps": [{
        "name": "hang", "command": format!("echo $$ > {}.tmp && mv {0}.tmp {0} && exec sleep 600", marker.display())
    }]});
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.#").await.unwrap();
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;

    let (report, pid) = tokio::join!(harness.run_worker(harness.config(), 1, 1), async {
        wait_for("the test step started", || marker.exists()).await;
        let pid: i32 = std::fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
        let cancel = serde_json::to_vec(&json!({ "action": "cancel", "task_id": "r.5" })).unwrap();
        let outgoing = Outgoing {
            exchange: &harness.names.control_exchange,
            routing_key: "cancel",
            body: &cancel,
            headers: &HeaderMap::new(),
            mandatory: true,
        };
        harness.session.publisher.publish(outgoing).await.unwrap();
        pid
    });
    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    wait_for("the test process was killed", || is_gone(pid)).await;
    let types: Vec<String> =
        drain_events(&mut tap).await.iter().map(|e| e["type"].as_str().unwrap().to_string()).collect();
    let last_two = &types[types.len() - 2..];
    assert_eq!(last_two, ["TaskCancelled", "TaskDeadLettered"]);
    assert!(!types.contains(&"TaskFailed".to_string()));
    let letters = agent_runner::amqp::browse_queue(&harness.session, &harness.names.dead_letter_queue, 10)
        .await
        .unwrap();
    assert_eq!(
        (
            letters[0].header_text("x-failure-kind").as_deref(),
            letters[0].header_text("x-failed-step").as_deref()
        ),
        (Some("cancelled"), Some("test"))
    );
    harness.cleanup().await;
}

#[tokio::test]
async fn a_consumer_cancelled_by_the_broker_is_re_established() {
    let harness = Harness::new("consumer-cancelled", answer()).await;
    let queue = harness.names.work_queue.clone();
    let (report, ()) = tokio::join!(harness.run_worker(harness.config(), 1, 1), async {
        wait_until_consumed(&harness, &queue).await;
        // Deleting the queue makes the broker cancel the worker's consumer.
        harness.session.delete_queue(&queue).await.unwrap();
        wait_until_consumed(&harness, &queue).await;
        let task = sample::sample_task(&harness.repo_url(), "r.6");
        harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
    });
    assert_eq!((report.acked, report.reconnects), (1, 1));
    harness.cleanup().await;
}

/// Polls until `queue` exists with a consumer on it.
async fn wait_until_consumed(harness: &Harness, queue: &str) {
    for _ in 0..500 {
        if harness.session.consumer_count(queue).await.unwrap_or(0) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no consumer on {queue}");
}

#[tokio::test]
async fn git_locks_left_in_a_slot_by_a_killed_worker_do_not_fail_the_next_task() {
    let harness = Harness::new("stale-locks", answer()).await;
    harness
        .publish(
            "task.backend",
            &serde_json::to_vec(&sample::sample_task(&harness.repo_url(), "l.1")).unwrap(),
        )
        .await;
    assert_eq!(harness.run_worker(harness.config(), 1, 1).await.acked, 1);
    // What a worker SIGKILLed mid-fetch or mid-commit leaves behind.
    let repo_dir =
        std::fs::read_dir(harness.dir.path().join("slots")).unwrap().flatten().find(|e| e.path().is_dir());
    let git_dir = repo_dir.unwrap().path().join("slot-0/.git");
    let branch_lock = git_dir.join("refs/remotes/origin/feature/task-greeter-l.1.lock");
    std::fs::create_dir_all(branch_lock.parent().unwrap()).unwrap();
    // The fetch must write the tracking ref again, so it meets the lock.
    let _ = std::fs::remove_file(git_dir.join("refs/remotes/origin/feature/task-greeter-l.1"));
    for lock in [&git_dir.join("index.lock"), &git_dir.join("packed-refs.lock"), &branch_lock] {
        std::fs::write(lock, "").unwrap();
    }

    harness
        .publish(
            "task.backend",
            &serde_json::to_vec(&sample::sample_task(&harness.repo_url(), "l.2")).unwrap(),
        )
        .await;
    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (1, 0));
    assert!(!branch_lock.exists());
    harness.cleanup().await;
}
