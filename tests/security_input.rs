//! Hostile task messages and playbooks through the real worker on the real broker: each
//! test is named for what the input tries, and asserts it is refused with a reason (a
//! dead letter) or contained (a failed task) without anything pushed.

mod common;

use agent_runner::demo::sample;
use agent_runner::llm::scripted::Script;
use agent_runner::playbook::parse_playbook;
use common::{Harness, drain_events};
use serde_json::json;

#[tokio::test]
async fn a_branch_name_trying_option_injection_is_dead_lettered_with_the_reason() {
    let harness = Harness::new("sec-branch", Script::replies(["unused"])).await;
    let mut task = sample::sample_task(&harness.repo_url(), "8.1");
    task["branch_name"] = json!("--upload-pack=touch /tmp/agent-runner-pwned");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;

    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    assert_eq!(
        harness.only_dead_letter().await,
        (
            "validation".into(),
            "validate".into(),
            "branch_name: must not start with '-' (it would read as a command-line option)".into()
        )
    );
    assert!(harness.llm.requests().is_empty());
    harness.cleanup().await;
}

#[tokio::test]
async fn a_base_branch_climbing_out_of_refs_heads_is_dead_lettered_with_the_reason() {
    let harness = Harness::new("sec-base", Script::replies(["unused"])).await;
    let mut task = sample::sample_task(&harness.repo_url(), "8.2");
    task["base_branch"] = json!("refs/heads/../../config");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;

    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    let (kind, _, message) = harness.only_dead_letter().await;
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("validation", "base_branch: must be a plain branch name, not a ref path or HEAD")
    );
    harness.cleanup().await;
}

#[tokio::test]
async fn an_oversized_message_is_dead_lettered_with_the_reason_unparsed() {
    let harness = Harness::new("sec-size", Script::replies(["unused"])).await;
    let mut task = sample::sample_task(&harness.repo_url(), "8.3");
    task["description"] = json!("x".repeat(agent_runner::task::MAX_MESSAGE_BYTES));
    let body = serde_json::to_vec(&task).unwrap();
    harness.publish("task.backend", &body).await;

    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    let (kind, step, message) = harness.only_dead_letter().await;
    assert_eq!((kind.as_str(), step.as_str()), ("validation", "validate"));
    assert_eq!(message, format!("message is {} bytes, above the 1048576-byte limit", body.len()));
    harness.cleanup().await;
}

#[tokio::test]
async fn an_inline_playbook_is_refused_when_the_config_forbids_it() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("sec-inline", Script::responder(move |_| answer.clone())).await;
    let mut task = sample::sample_task(&harness.repo_url(), "8.4");
    task["playbook"] = json!({ "name": "x", "steps": [{ "name": "s", "command": "true" }] });
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
    let mut config = harness.config();
    config.playbook.allow_inline = false;

    let report = harness.run_worker(config, 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    let (kind, _, message) = harness.only_dead_letter().await;
    assert_eq!(kind, "validation");
    assert!(message.contains("inline playbooks are disabled by configuration"), "{message}");
    assert_eq!(sample::branch_head(&harness.origin, "feature/task-greeter-8.4").unwrap(), None);
    harness.cleanup().await;
}

#[tokio::test]
async fn a_fork_bomb_in_the_tests_fails_the_task_cleanly_with_a_limit_warning_event() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("sec-bomb", Script::responder(move |_| answer.clone())).await;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.#").await.unwrap();
    let mut task = sample::sample_task(&harness.repo_url(), "8.5");
    // Depth-capped so a broken guard could not take the shared test machine down.
    let bomb = "b() { [ \"$1\" -lt 11 ] || { sleep 30; return; }; b $(($1+1)) & b $(($1+1)) & wait; }; b 0";
    task["playbook"] = json!({ "name": "bomb", "steps": [{ "name": "bomb", "command": bomb }] });
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
    let mut config = harness.config();
    config.limits.max_processes = Some(64);
    config.playbook.repair_rounds = 0;

    let report = harness.run_worker(config, 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    let (kind, step, message) = harness.only_dead_letter().await;
    assert_eq!((kind.as_str(), step.as_str()), ("test_execution", "test"));
    assert!(message.contains("'bomb' was stopped: process limit of 64 exceeded"), "{message}");
    let events = drain_events(&mut tap).await;
    let warning = events.iter().find(|e| e["type"] == "ResourceLimitReached").expect("a limit event");
    assert_eq!(
        (&warning["data"]["step"], &warning["data"]["limit"], &warning["data"]["limit_value"]),
        (&json!("bomb"), &json!("processes"), &json!(64))
    );
    assert_eq!(sample::branch_head(&harness.origin, "feature/task-greeter-8.5").unwrap(), None);
    harness.cleanup().await;
}

#[test]
fn a_playbook_with_an_alias_bomb_or_deep_nesting_is_refused() {
    // "Billion laughs": nine levels of nine aliases would expand to 9^9 strings.
    let mut yaml = String::from("a0: &a0 [\"lol\"]\n");
    for level in 1..10 {
        let refs = vec![format!("*a{}", level - 1); 9].join(", ");
        yaml.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    // The typed, unknown-field-refusing parse stops at the first key it does not know,
    // before any alias is expanded...
    let err = parse_playbook(&format!("{yaml}name: *a9\nsteps: []\n"), "bomb.yaml").unwrap_err();
    assert!(err.to_string().contains("unknown field `a0`"), "{err}");
    // ...and the YAML library's own cap (100 expansions per event) stops even an untyped read.
    let err = serde_yaml::from_str::<serde_yaml::Value>(&yaml).unwrap_err();
    assert!(err.to_string().contains("repetition limit exceeded"), "{err}");

    let nesting = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let err = parse_playbook(&format!("name: x\nsteps: {nesting}\n"), "deep.yaml").unwrap_err();
    assert!(err.to_string().contains("steps[0]: invalid type: sequence"), "{err}");
    let err = serde_yaml::from_str::<serde_yaml::Value>(&nesting).unwrap_err();
    assert!(err.to_string().contains("recursion limit exceeded"), "{err}");
}
