//! `agent-runner dlq` on a private topology of the real broker: list with filters and
//! the per-reason summary, show, purge with its confirmation, and replay end to end
//! (the replayed task completes, non-matching letters stay); browsing that leaves the
//! queue as it was (order, delivery counts); a dead letter that is not JSON addressed by
//! its id.

mod common;
mod reliability_support;

use std::collections::BTreeSet;

use agent_runner::amqp::{HeaderMap, HeaderValue, Outgoing, browse_queue};
use agent_runner::demo::sample;
use agent_runner::llm::scripted::Script;
use common::{AMQP_URL, Harness};
use reliability_support::{agent_runner, binary_config};
use serde_json::{Value, json};

/// Puts a dead letter straight into the DLQ, as a worker would have, `age_seconds` ago.
async fn plant_letter(harness: &Harness, task: Option<(&str, &str, &str, &str)>, age_seconds: i64) {
    let mut headers = HeaderMap::new();
    if let Some((task_id, spec, kind, step)) = task {
        let at = chrono::Utc::now() - chrono::Duration::seconds(age_seconds);
        for (name, value) in [
            ("x-task-id", task_id),
            ("x-spec-name", spec),
            ("x-failure-kind", kind),
            ("x-failed-step", step),
            ("x-failure-message", "planted"),
            ("x-failed-at", &at.to_rfc3339()),
        ] {
            headers.insert(name.into(), HeaderValue::Text(value.into()));
        }
        headers.insert("x-attempts".into(), HeaderValue::Int(1));
    }
    let body = json!({ "task_id": task.map_or("?", |t| t.0) }).to_string();
    let outgoing = Outgoing {
        exchange: &harness.names.dead_letter_exchange,
        routing_key: "task.backend",
        body: body.as_bytes(),
        headers: &headers,
        mandatory: true,
    };
    harness.session.publisher.publish(outgoing).await.unwrap();
}

/// `agent-runner --config c.yaml dlq ARGS...` in `dir`.
async fn dlq(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--config", "c.yaml", "dlq"];
    all.extend_from_slice(args);
    agent_runner(dir, &all).await
}

fn json_of(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The rows' task ids, `-` standing for a row without one (`null` in the JSON).
fn task_ids(rows: &Value) -> BTreeSet<String> {
    rows.as_array().unwrap().iter().map(|r| r["task_id"].as_str().unwrap_or("-").to_string()).collect()
}

fn ids(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn list_filters_summarise_show_and_purge_with_confirmation() {
    let harness = Harness::new("dlq-list", Script::replies(["unused"])).await;
    let dir = harness.dir.path();
    std::fs::write(dir.join("c.yaml"), binary_config(&harness.names, AMQP_URL, "")).unwrap();
    plant_letter(&harness, Some(("a.1", "s1", "timeout", "test")), 2 * 3600).await;
    plant_letter(&harness, Some(("a.2", "s1", "push", "push")), 600).await;
    plant_letter(&harness, Some(("a.3", "s2", "timeout", "test")), 3 * 86_400).await;
    plant_letter(&harness, None, 0).await;

    let all = json_of(&dlq(dir, &["list", "--json"]).await);
    assert_eq!(task_ids(&all), ids(&["a.1", "a.2", "a.3", "-"]));
    let broker_row = all.as_array().unwrap().iter().find(|r| r["task_id"].is_null()).unwrap();
    assert_eq!(
        (broker_row["attempts"].clone(), broker_row["reason"].clone()),
        (Value::Null, json!("broker"))
    );
    let old_timeouts =
        json_of(&dlq(dir, &["list", "--json", "--reason", "timeout", "--older-than", "1d"]).await);
    assert_eq!(task_ids(&old_timeouts), ids(&["a.3"]));
    assert_eq!(old_timeouts[0]["age"], "3d");
    assert_eq!(
        task_ids(&json_of(&dlq(dir, &["list", "--json", "--spec", "s1"]).await)),
        ids(&["a.1", "a.2"])
    );
    let summary = json_of(&dlq(dir, &["list", "--json", "--summary"]).await);
    let groups: Vec<(String, u64)> = summary
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["reason"].as_str().unwrap().to_string(), g["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(groups, [("timeout".to_string(), 2), ("broker".to_string(), 1), ("push".to_string(), 1)]);
    let table = dlq(dir, &["list", "--summary"]).await;
    assert!(String::from_utf8_lossy(&table.stdout).contains("timeout                    2     2 3d"));

    let shown = json_of(&dlq(dir, &["show", "a.2", "--json"]).await);
    assert_eq!(shown.as_array().unwrap().len(), 1);
    assert_eq!(shown[0]["headers"]["x-failed-step"], "push");
    assert_eq!(serde_json::from_str::<Value>(shown[0]["body"].as_str().unwrap()).unwrap()["task_id"], "a.2");
    assert_eq!(dlq(dir, &["show", "zz.9"]).await.status.code(), Some(1));
    assert_eq!(dlq(dir, &["show", "-"]).await.status.code(), Some(1), "'-' is no dead letter's id");

    let unconfirmed = dlq(dir, &["purge", "--reason", "timeout"]).await;
    assert_eq!(unconfirmed.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("refusing to purge without --yes"));
    let dry = dlq(dir, &["purge", "--reason", "timeout", "--dry-run"]).await;
    let printed = String::from_utf8_lossy(&dry.stdout);
    assert!(printed.contains("2 message(s) would be purged"));
    // Progress off a terminal: a plain line per message, n/total, in queue order.
    let lines: Vec<&str> = printed.lines().filter(|l| l.starts_with("would purge ")).collect();
    assert_eq!(lines.len(), 2, "{printed}");
    assert!(lines[0].starts_with("would purge 1/2 (50%") && lines[0].contains("a.1"), "{printed}");
    assert!(lines[1].starts_with("would purge 2/2 (100%") && lines[1].contains("a.3"), "{printed}");
    assert!(!printed.contains('\r') && !printed.contains('\x1b'), "no terminal control off a terminal");
    reliability_support::assert_depths(&harness, (0, 4)).await;
    let purged = dlq(dir, &["purge", "--reason", "timeout", "--older-than", "1d", "--yes"]).await;
    assert!(String::from_utf8_lossy(&purged.stdout).contains("1 message(s) purged"));
    assert_eq!(task_ids(&json_of(&dlq(dir, &["list", "--json"]).await)), ids(&["a.1", "a.2", "-"]));
    harness.cleanup().await;
}

fn wrong_answer() -> String {
    json!({
        "code_changes": [{ "file_path": sample::GREET_PATH, "operation": "create", "content": "#!/bin/sh\necho \"Hi $1\"\n" }],
        "explanation": "greets tersely"
    })
    .to_string()
}

#[tokio::test]
async fn replay_republishes_with_a_fresh_attempt_count_and_the_task_then_completes() {
    let harness =
        Harness::new("dlq-replay", Script::replies([wrong_answer(), sample::scripted_answer()])).await;
    let dir = harness.dir.path();
    std::fs::write(dir.join("c.yaml"), binary_config(&harness.names, AMQP_URL, "")).unwrap();
    let mut config = harness.config();
    config.playbook.repair_rounds = 0;
    harness
        .publish(
            "task.backend",
            &serde_json::to_vec(&sample::sample_task(&harness.repo_url(), "p.1")).unwrap(),
        )
        .await;
    let first = harness.run_worker(config.clone(), 1, 1).await;
    assert_eq!(first.dead_lettered, 1);
    plant_letter(&harness, Some(("p.2", "greeter", "timeout", "test")), 60).await;

    let dry =
        agent_runner(dir, &["--config", "c.yaml", "dlq", "replay", "--task-id", "p.1", "--dry-run"]).await;
    assert!(String::from_utf8_lossy(&dry.stdout).contains("1 message(s) would be replayed"));
    reliability_support::assert_depths(&harness, (0, 2)).await;

    let replay = agent_runner(
        dir,
        &["--config", "c.yaml", "dlq", "replay", "--reason", "test_execution", "--rate", "100"],
    )
    .await;
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    assert!(String::from_utf8_lossy(&replay.stdout).contains("1 message(s) replayed"));
    // Replayed to the work queue; the other letter stays.
    reliability_support::assert_depths(&harness, (1, 1)).await;
    let queued = browse_queue(&harness.session, &harness.names.work_queue, 1).await.unwrap();
    let header = |name| queued[0].header_text(name);
    assert_eq!(
        (
            header("x-replay-count"),
            header("x-replayed-reason"),
            header("x-failure-kind"),
            header("x-attempts")
        ),
        (Some("1".to_string()), Some("test_execution".to_string()), None, None)
    );

    let second = harness.run_worker(config, 1, 1).await;
    assert_eq!(second.acked, 1);
    let (_, message) = sample::branch_head(&harness.origin, "feature/task-greeter-p.1").unwrap().unwrap();
    assert!(message.contains("Task-Id: p.1"));
    reliability_support::assert_depths(&harness, (0, 1)).await;
    let left = browse_queue(&harness.session, &harness.names.dead_letter_queue, 10).await.unwrap();
    assert_eq!(left[0].header_text("x-task-id").as_deref(), Some("p.2"));
    harness.cleanup().await;
}

/// The worker asks the broker for small frames (its buffers are 32 frames each); a
/// message many frames long still arrives whole and is dead-lettered byte for byte.
#[tokio::test]
async fn a_message_many_frames_long_is_dead_lettered_intact() {
    let harness = Harness::new("dlq-large", Script::replies(["unused"])).await;
    // Invalid (no task_id, no repo_url), 300 KiB: about twenty 16 KiB frames.
    let filler = "x".repeat(300 * 1024);
    let body = json!({ "schema_version": 1, "description": filler }).to_string();
    harness.publish("task.backend", body.as_bytes()).await;
    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!(report.dead_lettered, 1);
    let letters = browse_queue(&harness.session, &harness.names.dead_letter_queue, 2).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].body, body, "the dead letter's body differs from the message");
    assert_eq!(letters[0].header_text("x-failure-kind").as_deref(), Some("validation"));
    harness.cleanup().await;
}

/// The delivery count the broker reports for each message of `queue`, in queue order,
/// read with a plain `basic.get` (not the `dlq` pass under test); the reading itself
/// returns them, so it is done once, at the end.
async fn broker_delivery_counts(queue: &str) -> Vec<i64> {
    use lapin::options::BasicGetOptions;
    use lapin::types::AMQPValue;
    let connection =
        lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut counts = Vec::new();
    while let Some(message) =
        channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await.unwrap()
    {
        let headers = message.delivery.properties.headers().clone().unwrap_or_default();
        counts.push(match headers.inner().get("x-delivery-count") {
            None => 0,
            Some(AMQPValue::LongLongInt(n)) => *n,
            Some(AMQPValue::LongInt(n)) => i64::from(*n),
            Some(other) => panic!("unexpected x-delivery-count {other:?}"),
        });
    }
    connection.close(200, "counted".into()).await.unwrap();
    counts
}

fn row_ids(rows: &Value) -> Vec<String> {
    rows.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn listing_ten_times_keeps_every_letter_its_order_and_its_delivery_count() {
    let harness = Harness::new("dlq-browse", Script::replies(["unused"])).await;
    let dir = harness.dir.path();
    std::fs::write(dir.join("c.yaml"), binary_config(&harness.names, AMQP_URL, "")).unwrap();
    plant_letter(&harness, Some(("b.1", "s1", "timeout", "test")), 60).await;
    plant_letter(&harness, None, 0).await;
    plant_letter(&harness, Some(("b.2", "s1", "push", "push")), 30).await;

    let first = json_of(&dlq(dir, &["list", "--json"]).await);
    let order = row_ids(&first);
    assert_eq!(order.len(), 3);
    for round in 0..10 {
        let listed =
            if round % 2 == 0 { dlq(dir, &["list"]).await } else { dlq(dir, &["list", "--summary"]).await };
        assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    }
    let shown = dlq(dir, &["show", &order[1]]).await;
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let last = json_of(&dlq(dir, &["list", "--json"]).await);
    assert_eq!(row_ids(&last), order, "ids and order after twelve passes");
    assert_eq!(
        last,
        first
            .as_array()
            .unwrap()
            .iter()
            .zip(last.as_array().unwrap())
            .map(|(a, b)| {
                // Everything but the age, which the clock moves.
                let mut a = a.clone();
                a["age"] = b["age"].clone();
                a["age_seconds"] = b["age_seconds"].clone();
                a
            })
            .collect::<Value>()
    );
    reliability_support::assert_depths(&harness, (0, 3)).await;
    assert_eq!(broker_delivery_counts(&harness.names.dead_letter_queue).await, [0, 0, 0]);
    // The control: a plain read that returns the messages (channel closed) is counted.
    assert_eq!(broker_delivery_counts(&harness.names.dead_letter_queue).await, [1, 1, 1]);
    harness.cleanup().await;
}

#[tokio::test]
async fn a_dead_letter_that_is_not_json_is_shown_replayed_and_purged_by_its_id() {
    let harness = Harness::new("dlq-raw", Script::replies(["unused"])).await;
    let dir = harness.dir.path();
    std::fs::write(dir.join("c.yaml"), binary_config(&harness.names, AMQP_URL, "")).unwrap();
    harness.publish("task.backend", b"<not json at all>").await;
    assert_eq!(harness.run_worker(harness.config(), 1, 1).await.dead_lettered, 1);

    let rows = json_of(&dlq(dir, &["list", "--json"]).await);
    assert_eq!(rows.as_array().unwrap().len(), 1);
    let row = &rows[0];
    assert_eq!((row["task_id"].clone(), row["reason"].clone()), (Value::Null, json!("validation")));
    assert_eq!(row["attempts"], json!(1), "a number, not text");
    let id = row["id"].as_str().unwrap().to_string();
    let table = String::from_utf8_lossy(&dlq(dir, &["list"]).await.stdout).into_owned();
    assert!(table.contains(&id), "{table}");
    assert!(table.contains(row["message"].as_str().unwrap()), "the whole cause is listed: {table}");

    let shown = dlq(dir, &["show", &id]).await;
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    assert!(String::from_utf8_lossy(&shown.stdout).contains("<not json at all>"));

    let replayed = dlq(dir, &["replay", "--id", &id, "--rate", "100"]).await;
    assert!(String::from_utf8_lossy(&replayed.stdout).contains("1 message(s) replayed"), "{replayed:?}");
    reliability_support::assert_depths(&harness, (1, 0)).await;
    assert_eq!(harness.run_worker(harness.config(), 1, 1).await.dead_lettered, 1);
    let again = json_of(&dlq(dir, &["list", "--json"]).await);
    let new_id = again[0]["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id, "dead-lettered anew, at another time");

    let wrong = dlq(dir, &["purge", "--id", &id, "--yes"]).await;
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("0 message(s) purged"));
    let purged = dlq(dir, &["purge", "--id", &new_id, "--yes"]).await;
    assert!(String::from_utf8_lossy(&purged.stdout).contains("1 message(s) purged"), "{purged:?}");
    reliability_support::assert_depths(&harness, (0, 0)).await;
    harness.cleanup().await;
}

#[tokio::test]
async fn the_summary_counts_letters_and_names_each_task_once() {
    let harness = Harness::new("dlq-summary", Script::replies(["unused"])).await;
    let dir = harness.dir.path();
    std::fs::write(dir.join("c.yaml"), binary_config(&harness.names, AMQP_URL, "")).unwrap();
    for age in [300, 200, 100] {
        plant_letter(&harness, Some(("bad.1", "s1", "timeout", "test")), age).await;
    }
    plant_letter(&harness, Some(("bad.2", "s1", "timeout", "test")), 50).await;

    let summary = json_of(&dlq(dir, &["list", "--json", "--summary"]).await);
    assert_eq!(
        summary,
        json!([{
            "reason": "timeout", "count": 4, "task_count": 2, "steps": ["test"],
            "oldest": "5m", "oldest_seconds": summary[0]["oldest_seconds"], "tasks": ["bad.1", "bad.2"]
        }])
    );
    assert!(summary[0]["oldest_seconds"].as_u64().unwrap() >= 300);
    let table = String::from_utf8_lossy(&dlq(dir, &["list", "--summary"]).await.stdout).into_owned();
    assert!(table.contains("bad.1,bad.2") && !table.contains("bad.1,bad.1"), "{table}");
    harness.cleanup().await;
}
