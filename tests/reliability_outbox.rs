//! Lifecycle events the worker publishes while its broker link is down are parked in
//! its outbox and reach the events exchange once the link is back: in order, once each,
//! with the ids they were given when they happened. (One test per binary: the outbox
//! gauge is process-wide.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use agent_runner::demo::sample;
use agent_runner::events::{EventSubject, EventType};
use agent_runner::llm::scripted::Script;
use agent_runner::metrics::{EVENT_OUTBOX_DEPTH, EVENT_OUTBOX_DROPPED, global};
use agent_runner::pipeline::RunnerSecrets;
use agent_runner::worker::{Worker, WorkerOptions};
use common::broker::{BrokerUser, close_connection_named};
use common::{Harness, drain_events, event_outline};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The attempt's events after the test step started: what the worker emits while the
/// test holds its broker link down (test done, commit, push, artifacts, completion).
const EVENTS_WHILE_DOWN: usize = 11;

/// Polls `condition` every 20 ms, failing after `seconds`.
async fn eventually(what: &str, seconds: u64, mut condition: impl FnMut() -> bool) {
    let wait = async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(seconds), wait).await.unwrap_or_else(|_| panic!("{what}"));
}

/// Every event of a completed run of the sample task, as `(type, step or artifact)`.
fn completed_run() -> Vec<(String, String)> {
    let mut outline = vec![("TaskStarted", "")];
    for step in ["slot", "workspace", "implement", "test", "commit", "push"] {
        outline.extend([("StepStarted", step), ("StepCompleted", step)]);
    }
    for artifact in ["diff", "test", "log", "transcript", "summary"] {
        outline.push(("ArtifactUploaded", artifact));
    }
    outline.push(("TaskCompleted", ""));
    outline.into_iter().map(|(t, d)| (t.to_string(), d.to_string())).collect()
}

fn event_type(name: &str) -> EventType {
    match name {
        "TaskStarted" => EventType::TaskStarted,
        "StepStarted" => EventType::StepStarted,
        "StepCompleted" => EventType::StepCompleted,
        "ArtifactUploaded" => EventType::ArtifactUploaded,
        "TaskCompleted" => EventType::TaskCompleted,
        other => panic!("unexpected event type {other}"),
    }
}

#[tokio::test]
async fn events_published_while_the_broker_link_is_down_arrive_after_it_returns_in_order_once_each() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("outbox", Script::responder(move |_| answer.clone())).await;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.#").await.unwrap();
    // The test step waits for this file, which the test creates once the link is down.
    let link_is_down = harness.dir.path().join("link-is-down");
    let mut task = sample::sample_task(&harness.repo_url(), "3.1");
    let gated =
        format!("while [ ! -e '{}' ]; do sleep 0.05; done; sh tests/test_greet.sh", link_is_down.display());
    task["playbook"] = json!({ "name": "gated", "steps": [{ "name": "unit tests", "command": gated }] });
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;

    let user = BrokerUser::create("outbox");
    let mut config = harness.config();
    config.amqp.url = agent_runner::config::AmqpUrl::parse(&user.url()).unwrap();
    config.runner_id = format!("outbox-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let secrets = RunnerSecrets { git_token: None, llm_api_key: None };
    let worker = Arc::new(Worker::connect(&config, secrets, harness.names.clone()).await.unwrap());
    // Two deliveries: the attempt whose ack the outage makes stale, and its redelivery.
    let options = WorkerOptions {
        concurrency: 1,
        stop_after: Some(2),
        consumer_tag: config.runner_id.clone(),
        idle_timeout: None,
    };
    let running = tokio::spawn(worker.clone().run(options, CancellationToken::new()));

    let mut seen: Vec<Value> = Vec::new();
    while !seen.iter().any(|e| e["type"] == "StepStarted" && e["data"]["step"] == "test") {
        let body = tap.next_body(Duration::from_secs(60)).await.expect("the test step started");
        seen.push(serde_json::from_slice(&body).unwrap());
    }

    // The broker drops the worker's connection and refuses new ones; then the test step
    // may finish, and the rest of the attempt happens with the link down.
    user.limit_connections(0);
    close_connection_named(&config.runner_id);
    eventually("the worker saw its connection go", 30, || !worker.session.is_connected()).await;
    std::fs::write(&link_is_down, "").unwrap();
    eventually("the attempt's remaining events were parked", 120, || {
        worker.outbox.depth() == EVENTS_WHILE_DOWN
    })
    .await;
    assert_eq!(global().value(&EVENT_OUTBOX_DEPTH, &[]), EVENTS_WHILE_DOWN as f64);

    // The link comes back: the outbox drains, the redelivery finishes the pushed work.
    user.limit_connections(-1);
    let report = tokio::time::timeout(Duration::from_secs(120), running)
        .await
        .expect("the worker finished both deliveries")
        .unwrap()
        .unwrap();
    assert_eq!((report.acked, report.unsettled), (1, 1), "{report:?}");
    assert_eq!(worker.outbox.depth(), 0);
    assert_eq!(global().value(&EVENT_OUTBOX_DEPTH, &[]), 0.0);
    assert_eq!(global().value(&EVENT_OUTBOX_DROPPED, &[]), 0.0);

    seen.extend(drain_events(&mut tap).await);
    let first: Vec<Value> = seen.iter().filter(|e| e["attempt"] == 1).cloned().collect();
    // Every event of the first attempt arrived, once, in order...
    assert_eq!(event_outline(&first, "3.1"), completed_run());
    // ...with the id it was given when it happened.
    let subject = EventSubject {
        task_id: Some("3.1".into()),
        spec_name: Some("greeter".into()),
        runner_id: config.runner_id.clone(),
        attempt: 1,
    };
    let expected_ids: Vec<String> = completed_run()
        .iter()
        .map(|(kind, detail)| subject.event(event_type(kind), detail, json!({})).event_id)
        .collect();
    let ids: Vec<&str> = first.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected_ids);
    // The redelivery's events queued behind the parked ones: none overtook them.
    let last_of_first = seen.iter().rposition(|e| e["attempt"] == 1).unwrap();
    let first_of_second = seen.iter().position(|e| e["attempt"] == 2).expect("the redelivery ran");
    assert!(last_of_first < first_of_second, "{seen:#?}");
    assert!(seen.iter().all(|e| e["attempt"] == 1 || e["attempt"] == 2), "{seen:#?}");

    assert_eq!(harness.depths().await, (0, 0));
    harness.cleanup().await;
}
