//! The Task Registry mirror on the real broker, against a recording HTTP fake of the
//! registry: a task's whole event stream becomes the right registry calls, once each,
//! even when events arrive twice or are redelivered after a mirror restart; an outage
//! of the registry delays but loses nothing; poison events land in the mirror's own
//! dead-letter queue with their reason.

mod common;
mod ops_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent_runner::amqp::{AmqpSession, HeaderMap, MirrorTopology, Outgoing, browse_queue, header};
use agent_runner::clients::{ClientSettings, TaskRegistryClient};
use agent_runner::demo::sample;
use agent_runner::events::{EventSubject, EventType};
use agent_runner::http::Readiness;
use agent_runner::llm::scripted::Script;
use agent_runner::mirror::{Mirror, MirrorReport, MirrorSettings};
use common::{AMQP_URL, Harness, drain_events};
use ops_support::{FakeService, Recorded, Reply};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Quick retries: the tests exercise the retry paths, not their pacing.
async fn mirror(harness: &Harness, topology: &MirrorTopology, registry: &FakeService, name: &str) -> Mirror {
    assert_eq!(topology.events_exchange, harness.names.events_exchange);
    let client_settings = ClientSettings {
        retries: 1,
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(10),
        ..ClientSettings::default()
    };
    Mirror {
        session: AmqpSession::connect(AMQP_URL, name).await.unwrap(),
        topology: topology.clone(),
        registry: TaskRegistryClient::new(registry.url().parse().unwrap(), client_settings).unwrap(),
        settings: MirrorSettings {
            runner_id: name.to_string(),
            prefetch: 8,
            retry_initial_delay: Duration::from_millis(10),
            retry_max_delay: Duration::from_millis(50),
            ..MirrorSettings::default()
        },
        readiness: Readiness::new(),
    }
}

async fn run_mirror(mirror: &Mirror, events: usize) -> MirrorReport {
    let run = mirror.run(CancellationToken::new(), Some(events));
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("mirror finished in time").unwrap()
}

async fn publish_event(session: &AmqpSession, exchange: &str, event: &Value) {
    let routing_key = match event["type"].as_str().unwrap() {
        "TaskStarted" => "task.started".to_string(),
        other => format!("task.{}", other.to_ascii_lowercase()),
    };
    let body = event.to_string();
    let outgoing = Outgoing {
        exchange,
        routing_key: &routing_key,
        body: body.as_bytes(),
        headers: &HeaderMap::new(),
        mandatory: true,
    };
    session.publisher.publish(outgoing).await.unwrap();
}

/// The registry calls a task's events should become, worked out from the events alone.
fn expected_calls(events: &[Value]) -> Vec<(String, String)> {
    let mut calls = Vec::new();
    for event in events.iter().filter(|e| e["task_id"].is_string()) {
        let task = event["task_id"].as_str().unwrap();
        calls.push(("POST".to_string(), format!("/tasks/{task}/events")));
        match event["type"].as_str().unwrap() {
            "ArtifactUploaded" => calls.push(("POST".to_string(), format!("/tasks/{task}/artifacts"))),
            "TaskStarted" | "TaskCompleted" | "TaskFailed" | "TaskDeadLettered" => {
                calls.push(("PUT".to_string(), format!("/tasks/{task}/status")))
            }
            _ => {}
        }
    }
    calls
}

fn calls(requests: &[Recorded]) -> Vec<(String, String)> {
    requests.iter().map(|r| (r.method.clone(), r.path.clone())).collect()
}

fn assert_keys_unique(requests: &[Recorded]) {
    let mut keys: Vec<&str> = requests.iter().map(|r| r.key.as_deref().unwrap()).collect();
    keys.sort_unstable();
    let total = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), total, "each idempotency key is sent once");
}

#[tokio::test]
async fn a_tasks_event_stream_becomes_registry_calls_once_each_even_when_events_arrive_twice() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("mirror-stream", Script::responder(move |_| answer.clone())).await;
    let topology =
        MirrorTopology::isolated(&format!("{}.m", harness.names.work_queue), &harness.names.events_exchange);
    harness.session.declare_mirror(&topology).await.unwrap();
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.#").await.unwrap();
    let task = sample::sample_task(&harness.repo_url(), "1.1");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!(report.acked, 1);
    let events = drain_events(&mut tap).await;
    // Every event again, as a broker redelivery or a duplicate publish would bring it.
    for event in &events {
        publish_event(&harness.session, &harness.names.events_exchange, event).await;
    }

    let registry = FakeService::start(|_| Reply::ok(json!({}))).await;
    let mirror = mirror(&harness, &topology, &registry, "mirror-stream").await;
    let report = run_mirror(&mirror, events.len() * 2).await;
    assert_eq!(
        report,
        MirrorReport { applied: events.len(), duplicates: events.len(), skipped: 0, dead_lettered: 0 }
    );

    let requests = registry.requests();
    assert_eq!(calls(&requests), expected_calls(&events));
    assert_keys_unique(&requests);
    let statuses: Vec<&str> =
        requests.iter().filter(|r| r.method == "PUT").map(|r| r.body["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["in_progress", "done"]);
    let artifacts: Vec<(&str, bool)> = requests
        .iter()
        .filter(|r| r.path.ends_with("/artifacts"))
        .map(|r| (r.body["type"].as_str().unwrap(), r.body["uri"].as_str().unwrap().starts_with("file://")))
        .collect();
    let expected = [("diff", true), ("test", true), ("log", true), ("transcript", true), ("summary", true)];
    assert_eq!(artifacts, expected);
    let first = &requests[0];
    assert_eq!(first.body["event_type"], "TaskStarted");
    assert_eq!(first.body["event_id"], events[0]["event_id"]);
    assert!(first.body["timestamp"].as_i64().unwrap() > 1_700_000_000);

    assert_eq!(harness.session.ready_count(&topology.queue).await.unwrap(), 0);
    harness.session.delete_mirror(&topology).await.unwrap();
    harness.cleanup().await;
}

fn synthetic_events(task_id: &str) -> Vec<Value> {
    let subject = EventSubject {
        task_id: Some(task_id.into()),
        spec_name: Some("chat".into()),
        runner_id: "r1".into(),
        attempt: 1,
    };
    let artifact = json!({ "type": "diff", "uri": "s3://b/chat/1.1/diff.patch", "size_bytes": 42 });
    [
        subject.event(EventType::TaskStarted, "", json!({})),
        subject.event(EventType::StepCompleted, "test", json!({ "step": "test", "ok": true })),
        subject.event(EventType::ArtifactUploaded, "diff", artifact),
        subject.event(EventType::TaskCompleted, "", json!({})),
    ]
    .iter()
    .map(|e| serde_json::to_value(e).unwrap())
    .collect()
}

#[tokio::test]
async fn a_registry_outage_delays_the_mirror_but_loses_nothing_across_a_restart() {
    let harness = Harness::new("mirror-outage", Script::replies(["unused"])).await;
    let topology =
        MirrorTopology::isolated(&format!("{}.m", harness.names.work_queue), &harness.names.events_exchange);
    harness.session.declare_mirror(&topology).await.unwrap();
    let events = synthetic_events("1.1");
    for event in &events {
        publish_event(&harness.session, &harness.names.events_exchange, event).await;
    }

    let up = Arc::new(AtomicBool::new(false));
    let registry_up = up.clone();
    let registry = FakeService::start(move |_| {
        if registry_up.load(Ordering::SeqCst) { Reply::ok(json!({})) } else { Reply::status(503) }
    })
    .await;

    // A first mirror meets the outage, keeps retrying the first event, and is stopped.
    let first = mirror(&harness, &topology, &registry, "mirror-outage-1").await;
    let stop = CancellationToken::new();
    let running = first.run(stop.clone(), None);
    let failing = async {
        registry.wait_until(|r| r.len() >= 6).await;
        stop.cancel();
    };
    let (report, ()) = tokio::join!(running, failing);
    assert_eq!(report.unwrap(), MirrorReport::default());
    assert!(registry.accepted().is_empty());
    // Nothing was acked: all of it is still in the queue once the first mirror is gone.
    first.session.close().await;
    let expected = events.len() as u32;
    let ready = || async { harness.session.ready_count(&topology.queue).await.unwrap() };
    assert_eq!(common::settling(&expected, ready).await, expected);

    // The registry comes back; a new mirror applies everything, once.
    up.store(true, Ordering::SeqCst);
    let second = mirror(&harness, &topology, &registry, "mirror-outage-2").await;
    let report = run_mirror(&second, events.len()).await;
    assert_eq!(report.applied, events.len());
    let accepted = registry.accepted();
    assert_eq!(calls(&accepted), expected_calls(&events));
    assert_keys_unique(&accepted);
    let artifact = accepted.iter().find(|r| r.path == "/tasks/1.1/artifacts").unwrap();
    assert_eq!(
        (artifact.body["type"].clone(), artifact.body["uri"].clone(), artifact.body["size_bytes"].clone()),
        (json!("diff"), json!("s3://b/chat/1.1/diff.patch"), json!(42))
    );

    harness.session.delete_mirror(&topology).await.unwrap();
    harness.cleanup().await;
}

#[tokio::test]
async fn events_that_can_never_apply_go_to_the_mirror_dead_letter_queue_with_the_reason() {
    let harness = Harness::new("mirror-poison", Script::replies(["unused"])).await;
    let topology =
        MirrorTopology::isolated(&format!("{}.m", harness.names.work_queue), &harness.names.events_exchange);
    harness.session.declare_mirror(&topology).await.unwrap();
    let exchange = harness.names.events_exchange.clone();
    let raw = Outgoing {
        exchange: &exchange,
        routing_key: "task.started",
        body: b"{not json",
        headers: &HeaderMap::new(),
        mandatory: true,
    };
    harness.session.publisher.publish(raw).await.unwrap();
    let mut broken = synthetic_events("1.1")[2].clone();
    broken["data"] = json!({ "type": "diff", "size_bytes": 1 });
    publish_event(&harness.session, &exchange, &broken).await;
    let unknown = synthetic_events("gone")[0].clone();
    publish_event(&harness.session, &exchange, &unknown).await;
    let good = synthetic_events("1.1")[1].clone();
    publish_event(&harness.session, &exchange, &good).await;

    // The registry knows no task "gone".
    let registry =
        FakeService::start(
            |r| if r.path.contains("/gone/") { Reply::status(404) } else { Reply::ok(json!({})) },
        )
        .await;
    let mirror = mirror(&harness, &topology, &registry, "mirror-poison").await;
    let report = run_mirror(&mirror, 4).await;
    assert_eq!(report, MirrorReport { applied: 1, duplicates: 0, skipped: 0, dead_lettered: 3 });
    assert_eq!(calls(&registry.accepted()), [("POST".to_string(), "/tasks/1.1/events".to_string())]);

    let letters = browse_queue(&harness.session, &topology.dead_letter_queue, 10).await.unwrap();
    let reasons: Vec<(String, String, String)> = letters
        .iter()
        .map(|l| {
            let text = |name| l.header_text(name).unwrap_or_default();
            (text(header::KIND), text(header::STEP), text(header::MESSAGE))
        })
        .collect();
    let event_id = broken["event_id"].as_str().unwrap();
    assert_eq!(reasons[0].0, "malformed_event");
    assert!(reasons[0].2.starts_with("not a lifecycle event: key must be a string"), "{}", reasons[0].2);
    assert_eq!(
        reasons[1],
        (
            "malformed_event".to_string(),
            "mirror".to_string(),
            format!("ArtifactUploaded event {event_id}: data.uri is missing or not a string")
        )
    );
    assert_eq!(
        reasons[2],
        (
            "registry_refused".to_string(),
            "mirror".to_string(),
            "the Task Registry refused it: Task Registry POST /tasks/gone/events: answered HTTP 404: {\"error\":\"fake\"}"
                .to_string()
        )
    );
    assert_eq!(letters[2].body, unknown.to_string());

    harness.session.delete_mirror(&topology).await.unwrap();
    harness.cleanup().await;
}
