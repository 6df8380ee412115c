//! The worker end to end on the real RabbitMQ, real bare git remotes and an
//! OpenAI-compatible endpoint of our own: consume → workspace → LLM → playbook →
//! commit/push → artifacts → events → settle.

mod common;

use std::collections::BTreeMap;

use agent_runner::demo::sample::{self, GREET_CONTENT, GREET_PATH};
use agent_runner::llm::scripted::Script;
use common::{Harness, drain_events, event_outline, read_uri};
use serde_json::json;

fn wrong_answer() -> String {
    json!({
        "code_changes": [{ "file_path": GREET_PATH, "operation": "create", "content": "#!/bin/sh\necho \"Hi $1\"\n" }],
        "explanation": "greets tersely"
    })
    .to_string()
}

#[tokio::test]
async fn a_task_becomes_a_pushed_branch_with_artifacts_events_and_an_ack() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("happy", Script::responder(move |_| answer.clone())).await;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "#").await.unwrap();
    let task = sample::sample_task(&harness.repo_url(), "1.1");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;

    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered, report.unsettled), (1, 0, 0));

    // The branch is on the remote, its commit carries the edit, the subject and the trailer.
    let (commit, message) =
        sample::branch_head(&harness.origin, "feature/task-greeter-1.1").unwrap().unwrap();
    assert_eq!(message, "feat(task-1.1): Add the greet command\n\nTask-Id: 1.1\nRunner-Id: test-runner\n");
    assert_eq!(
        sample::file_at(&harness.origin, &commit, GREET_PATH).unwrap().as_deref(),
        Some(GREET_CONTENT)
    );

    // Events in order, for this task.
    let events = drain_events(&mut tap).await;
    let outline = event_outline(&events, "1.1");
    let expected: Vec<(String, String)> = [
        ("TaskStarted", ""),
        ("StepStarted", "slot"),
        ("StepCompleted", "slot"),
        ("StepStarted", "workspace"),
        ("StepCompleted", "workspace"),
        ("StepStarted", "implement"),
        ("StepCompleted", "implement"),
        ("StepStarted", "test"),
        ("StepCompleted", "test"),
        ("StepStarted", "commit"),
        ("StepCompleted", "commit"),
        ("StepStarted", "push"),
        ("StepCompleted", "push"),
        ("ArtifactUploaded", "diff"),
        ("ArtifactUploaded", "test"),
        ("ArtifactUploaded", "log"),
        ("ArtifactUploaded", "transcript"),
        ("ArtifactUploaded", "summary"),
        ("TaskCompleted", ""),
    ]
    .iter()
    .map(|(t, d)| (t.to_string(), d.to_string()))
    .collect();
    assert_eq!(outline, expected);
    assert_eq!(events.first().unwrap()["type"], "RunnerStarted");
    assert_eq!(events.last().unwrap()["type"], "RunnerStopping");

    // Artifacts exist and parse.
    let completed = events.iter().find(|e| e["type"] == "TaskCompleted").unwrap();
    assert_eq!(completed["data"]["commit"], commit);
    let uris: BTreeMap<String, String> = completed["data"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["type"].as_str().unwrap().to_string(), a["uri"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(uris.keys().cloned().collect::<Vec<_>>(), ["diff", "log", "summary", "test", "transcript"]);
    assert!(read_uri(&uris["diff"]).contains("+echo \"Hello, ${1:-world}!\""));
    let tests: serde_json::Value = serde_json::from_str(&read_uri(&uris["test"])).unwrap();
    assert_eq!(tests["success"], true);
    assert_eq!(tests["steps"][0]["name"], "unit tests");
    assert!(read_uri(&uris["log"]).contains("[push]"));
    let summary_path = harness.artifacts_dir().join("greeter/1.1/summary.json");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary_path).unwrap()).unwrap();
    assert_eq!(summary["success"], true);
    assert_eq!(summary["pushed"], true);
    assert_eq!(summary["impl_result"]["llm_model"], "gpt-4o-mini");
    assert!(summary["impl_result"]["tokens_used"].as_u64().unwrap() > 0);
    // Present; its value is a sample a step of milliseconds can finish before (then 0):
    // tests/task_usage.rs checks it on a step that holds memory.
    assert!(summary["metrics"]["memory_mb"].as_f64().is_some_and(|mb| mb >= 0.0), "{summary}");

    // The model was asked about this task.
    let requests = harness.llm.requests();
    assert_eq!(requests.len(), 1);
    let prompt = requests[0].to_string();
    assert!(prompt.contains("Add the greet command") && prompt.contains("prints `Hello, World!`"));

    assert_eq!(harness.depths().await, (0, 0));
    harness.cleanup().await;
}

#[tokio::test]
async fn an_invalid_message_is_dead_lettered_with_its_reason_and_nothing_is_pushed() {
    let harness = Harness::new("invalid", Script::replies(["unused"])).await;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.#").await.unwrap();
    let mut message = sample::sample_task(&harness.repo_url(), "2.1");
    message["title"] = json!(42);
    harness.publish("task.backend", &serde_json::to_vec(&message).unwrap()).await;

    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    assert_eq!(harness.depths().await, (0, 1));

    // It never started: its one event is the dead letter, carrying the failure.
    let events = drain_events(&mut tap).await;
    let outline: Vec<String> = event_outline(&events, "2.1").into_iter().map(|(t, _)| t).collect();
    assert_eq!(outline, ["TaskDeadLettered"]);
    let data = &events[0]["data"];
    assert_eq!((&data["error_kind"], &data["failed_step"]), (&json!("validation"), &json!("validate")));
    assert_eq!(data["message"], "title: expected a string, found a number");
    assert_eq!(
        (&data["with_reason_headers"], &data["queue"]),
        (&json!(true), &json!(harness.names.dead_letter_queue))
    );

    let letters = agent_runner::amqp::browse_queue(&harness.session, &harness.names.dead_letter_queue, 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.header_text("x-failure-kind").as_deref(), Some("validation"));
    assert_eq!(letter.header_text("x-failed-step").as_deref(), Some("validate"));
    assert_eq!(
        letter.header_text("x-failure-message").as_deref(),
        Some("title: expected a string, found a number")
    );
    assert_eq!(letter.header_text("x-task-id").as_deref(), Some("2.1"));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&letter.body).unwrap(), message);
    // Browsing leaves the message in place.
    assert_eq!(common::settling(&(0, 1), || harness.depths()).await, (0, 1));

    assert!(harness.llm.requests().is_empty());
    assert_eq!(sample::branch_head(&harness.origin, "feature/task-greeter-2.1").unwrap(), None);
    harness.cleanup().await;
}

#[tokio::test]
async fn a_task_whose_tests_keep_failing_is_dead_lettered_after_repair_rounds_without_a_push() {
    let harness = Harness::new("failing", Script::responder(|_| wrong_answer())).await;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.#").await.unwrap();
    let task = sample::sample_task(&harness.repo_url(), "3.1");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;

    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    assert_eq!(harness.depths().await, (0, 1));

    // First attempt plus two repair rounds, each repair told what failed.
    let requests = harness.llm.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests[1].to_string().contains("expected 'Hello, World!', got 'Hi World'"));

    let events = drain_events(&mut tap).await;
    let types: Vec<String> = event_outline(&events, "3.1").into_iter().map(|(t, _)| t).collect();
    assert_eq!(&types[types.len() - 2..], ["TaskFailed", "TaskDeadLettered"]);
    // Steps repeated in repair rounds still get event ids of their own.
    let ids: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len());
    let failed = events.iter().find(|e| e["type"] == "TaskFailed").unwrap();
    assert_eq!(failed["data"]["error_kind"], "test_execution");
    assert_eq!(failed["data"]["failed_step"], "test");
    assert!(!outline_has_step(&events, "push"));

    // Failure artifacts are out: the test results say what failed, the diff shows the attempt.
    let tests: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(harness.artifacts_dir().join("greeter/3.1/test-results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(tests["success"], false);
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(harness.artifacts_dir().join("greeter/3.1/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["success"], false);
    assert_eq!(summary["pushed"], false);
    assert_eq!(summary["error"]["kind"], "test_execution");

    let letters = agent_runner::amqp::browse_queue(&harness.session, &harness.names.dead_letter_queue, 10)
        .await
        .unwrap();
    assert_eq!(letters[0].header_text("x-failure-kind").as_deref(), Some("test_execution"));
    assert_eq!(sample::branch_head(&harness.origin, "feature/task-greeter-3.1").unwrap(), None);
    harness.cleanup().await;
}

fn outline_has_step(events: &[serde_json::Value], step: &str) -> bool {
    events.iter().any(|e| e["type"] == "StepStarted" && e["data"]["step"] == step)
}

#[tokio::test]
async fn eight_tasks_at_concurrency_four_all_complete_each_in_a_slot_of_its_own() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("parallel", Script::responder(move |_| answer.clone())).await;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.#").await.unwrap();
    // A slow inline playbook makes the tasks overlap for sure.
    let playbook = json!({ "name": "slow", "steps": [{ "name": "test", "command": "sleep 1 && sh tests/test_greet.sh" }] });
    for n in 1..=8 {
        let mut task = sample::sample_task(&harness.repo_url(), &format!("4.{n}"));
        task["playbook"] = playbook.clone();
        harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
    }

    let report = harness.run_worker(harness.config(), 4, 8).await;
    assert_eq!((report.acked, report.dead_lettered, report.unsettled), (8, 0, 0));
    assert_eq!(harness.depths().await, (0, 0));

    let events = drain_events(&mut tap).await;
    let mut runs = Vec::new();
    for n in 1..=8 {
        let task_id = format!("4.{n}");
        let (commit, _) = sample::branch_head(&harness.origin, &format!("feature/task-greeter-{task_id}"))
            .unwrap()
            .unwrap();
        assert_eq!(
            sample::file_at(&harness.origin, &commit, GREET_PATH).unwrap().as_deref(),
            Some(GREET_CONTENT)
        );
        // From the slot step's end (the lease is held) to TaskCompleted (still held):
        // both stamps fall inside the lease, so overlapping intervals mean shared slots.
        let at = |kind: &str, step: Option<&str>| {
            let event = events
                .iter()
                .find(|e| {
                    e["task_id"] == task_id.as_str()
                        && e["type"] == kind
                        && step.is_none_or(|s| e["data"]["step"] == s)
                })
                .unwrap();
            chrono::DateTime::parse_from_rfc3339(event["occurred_at"].as_str().unwrap()).unwrap()
        };
        let completed =
            events.iter().find(|e| e["task_id"] == task_id.as_str() && e["type"] == "TaskCompleted").unwrap();
        let slot = completed["data"]["slot_id"].as_str().unwrap().to_string();
        runs.push((slot, at("StepCompleted", Some("slot")), at("TaskCompleted", None)));
    }
    // No two tasks that overlapped in time shared a slot, and tasks did overlap.
    let mut overlapping_pairs = 0;
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            let overlap = a.1 < b.2 && b.1 < a.2;
            if overlap {
                overlapping_pairs += 1;
                assert_ne!(a.0, b.0, "two concurrent tasks shared a slot: {runs:?}");
            }
        }
    }
    assert!(overlapping_pairs > 0, "tasks ran one at a time");
    let slots: std::collections::BTreeSet<_> = runs.iter().map(|r| r.0.clone()).collect();
    assert!(slots.len() <= 4 && slots.len() >= 2, "slots used: {slots:?}");
    harness.cleanup().await;
}

#[tokio::test]
async fn failures_are_classified_in_the_dead_letter_headers() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("classified", Script::responder(move |_| answer.clone())).await;
    // Allowed (under the harness's directory), but not there.
    let missing_url = format!("file://{}/nonexistent/origin.git", harness.dir.path().display());
    let mut missing_repo = sample::sample_task(&missing_url, "7.1");
    missing_repo["title"] = json!("Clone a repository that does not exist");
    let mut too_slow = sample::sample_task(&harness.repo_url(), "7.2");
    too_slow["timeout_seconds"] = json!(2);
    too_slow["playbook"] = json!({ "name": "slow", "steps": [{ "name": "hang", "command": "sleep 600" }] });
    let mut beyond_broker = sample::sample_task(&harness.repo_url(), "7.3");
    beyond_broker["timeout_seconds"] = json!(86_400);
    for task in [&missing_repo, &too_slow, &beyond_broker] {
        harness.publish("task.backend", &serde_json::to_vec(task).unwrap()).await;
    }

    let report = harness.run_worker(harness.config(), 3, 3).await;
    assert_eq!((report.acked, report.dead_lettered), (0, 3));

    let letters = agent_runner::amqp::browse_queue(&harness.session, &harness.names.dead_letter_queue, 10)
        .await
        .unwrap();
    let mut reasons: Vec<(String, String, String)> = letters
        .iter()
        .map(|l| {
            let header = |name| l.header_text(name).unwrap_or_default();
            (header("x-task-id"), header("x-failure-kind"), header("x-failed-step"))
        })
        .collect();
    reasons.sort();
    let expected = [
        ("7.1", "workspace_preparation", "slot"),
        ("7.2", "timeout", "test"),
        ("7.3", "validation", "validate"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(reasons, expected);
    let timeout_message =
        letters.iter().find(|l| l.header_text("x-task-id").as_deref() == Some("7.2")).unwrap();
    assert_eq!(
        timeout_message.header_text("x-failure-message").as_deref(),
        Some("the task did not finish within 2 seconds")
    );
    // The timed-out task still left its evidence behind.
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(harness.artifacts_dir().join("greeter/7.2/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["error"]["kind"], "timeout");
    harness.cleanup().await;
}
