//! `agent-runner dlq` on a private topology of the real broker: list with filters and
//! the per-reason summary, show, purge with its confirmation, and replay end to end
//! (the replayed task completes, non-matching letters stay).

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

fn task_ids(rows: &Value) -> BTreeSet<String> {
    rows.as_array().unwrap().iter().map(|r| r["task_id"].as_str().unwrap().to_string()).collect()
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
    assert!(String::from_utf8_lossy(&table.stdout).contains("timeout                    2 3d"));

    let shown = json_of(&dlq(dir, &["show", "a.2", "--json"]).await);
    assert_eq!(shown.as_array().unwrap().len(), 1);
    assert_eq!(shown[0]["headers"]["x-failed-step"], "push");
    assert_eq!(serde_json::from_str::<Value>(shown[0]["body"].as_str().unwrap()).unwrap()["task_id"], "a.2");
    assert_eq!(dlq(dir, &["show", "zz.9"]).await.status.code(), Some(1));

    let unconfirmed = dlq(dir, &["purge", "--reason", "timeout"]).await;
    assert_eq!(unconfirmed.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("refusing to purge without --yes"));
    let dry = dlq(dir, &["purge", "--reason", "timeout", "--dry-run"]).await;
    assert!(String::from_utf8_lossy(&dry.stdout).contains("2 message(s) would be purged"));
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
