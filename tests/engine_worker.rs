//! The implementation engine inside the worker, end to end on the real RabbitMQ and bare
//! git remotes, with a tool-calling scripted model: a tool sequence becomes a pushed
//! commit, a failing test run leads to a repair round, and every budget ends the task as
//! `budget_exhausted` with the partial diff and the transcript uploaded.

mod common;

use agent_runner::config::RunnerConfig;
use agent_runner::demo::sample::{self, GREET_CONTENT, GREET_PATH};
use agent_runner::llm::agent::ModelPrice;
use agent_runner::llm::scripted::{Script, Step};
use common::{Harness, drain_events};
use serde_json::{Value, json};

fn read(harness: &Harness, task_id: &str, file: &str) -> String {
    std::fs::read_to_string(harness.artifacts_dir().join(format!("greeter/{task_id}/{file}"))).unwrap()
}

fn summary(harness: &Harness, task_id: &str) -> Value {
    serde_json::from_str(&read(harness, task_id, "summary.json")).unwrap()
}

fn last_user_text(request: &Value) -> String {
    let messages = request["messages"].as_array().unwrap();
    messages.iter().rev().find(|m| m["role"] == "user").unwrap()["content"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_read_write_test_finish_sequence_becomes_the_pushed_commit() {
    let harness = Harness::new(
        "engine-happy",
        Script::steps([
            Step::call("list_dir", json!({"path": ""})),
            Step::call("read_file", json!({"path": "tests/test_greet.sh"})),
            Step::call("write_file", json!({"path": GREET_PATH, "content": GREET_CONTENT})),
            Step::call("run_tests", json!({})),
            Step::call("finish", json!({"summary": "Added greet.sh"})),
        ]),
    )
    .await;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.#").await.unwrap();
    harness
        .publish(
            "task.backend",
            &serde_json::to_vec(&sample::sample_task(&harness.repo_url(), "e.1")).unwrap(),
        )
        .await;
    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (1, 0));

    let (commit, _) = sample::branch_head(&harness.origin, "feature/task-greeter-e.1").unwrap().unwrap();
    assert_eq!(
        sample::file_at(&harness.origin, &commit, GREET_PATH).unwrap().as_deref(),
        Some(GREET_CONTENT)
    );
    let requests = harness.llm.requests();
    assert_eq!(requests.len(), 5);
    let tests_result = requests[4]["messages"].as_array().unwrap().last().unwrap()["content"].clone();
    assert_eq!(tests_result, "tests PASSED\nall steps passed");

    let implementation = &summary(&harness, "e.1")["impl_result"];
    assert_eq!(implementation["turns"], 5);
    assert_eq!(implementation["rounds"], 1);
    assert_eq!(
        implementation["tool_calls"],
        json!({"finish": 1, "list_dir": 1, "read_file": 1, "run_tests": 1, "write_file": 1})
    );
    assert_eq!(implementation["files_changed"], json!([GREET_PATH]));
    assert_eq!(implementation["explanation"], "Added greet.sh");
    // The tool's test run went through the playbook executor, like the test step after it.
    let log = read(&harness, "e.1", "execution.log");
    assert_eq!(log.matches("unit tests -> Passed").count(), 2, "{log}");
    let transcript: Value = serde_json::from_str(&read(&harness, "e.1", "transcript.json")).unwrap();
    assert_eq!(transcript["entries"][0]["speaker"], "system");
    assert!(transcript.to_string().contains("tests PASSED"));

    let events = drain_events(&mut tap).await;
    let completed = events.iter().find(|e| e["type"] == "TaskCompleted").unwrap();
    let usage = &completed["data"]["usage"];
    assert_eq!((usage["turns"].clone(), usage["rounds"].clone()), (json!(5), json!(1)));
    assert_eq!(usage["tokens_used"], implementation["tokens_used"]);
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    harness.cleanup().await;
}

#[tokio::test]
async fn a_failing_test_run_leads_to_a_repair_round_that_passes() {
    repair_round_passes(agent_runner::config::ExecutionMode::LocalProcess, "engine-repair").await;
}

/// The same task with every test run in the bubblewrap sandbox (the playbook's commands
/// and the engine's own test runs).
#[tokio::test]
async fn in_the_sandbox_a_failing_test_run_leads_to_a_repair_round_that_passes() {
    repair_round_passes(agent_runner::config::ExecutionMode::Sandbox, "engine-repair-sandbox").await;
}

async fn repair_round_passes(mode: agent_runner::config::ExecutionMode, label: &str) {
    let harness = Harness::new(
        label,
        Script::steps([
            Step::call("write_file", json!({"path": GREET_PATH, "content": "#!/bin/sh\necho \"Hi $1\"\n"})),
            // Refused with the test output (the engine runs the untested change) ...
            Step::call("finish", json!({"summary": "first try"})),
            // ... and insisting ends the round: the test step fails it and a repair round follows.
            Step::call("finish", json!({"summary": "first try, really"})),
            Step::call(
                "edit_file",
                json!({"path": GREET_PATH, "search": "Hi $1", "replace": "Hello, ${1:-world}!"}),
            ),
            Step::call("finish", json!({"summary": "fixed the greeting"})),
        ]),
    )
    .await;
    harness
        .publish(
            "task.backend",
            &serde_json::to_vec(&sample::sample_task(&harness.repo_url(), "e.2")).unwrap(),
        )
        .await;
    let mut config = harness.config();
    config.execution_mode = mode;
    let report = harness.run_worker(config, 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (1, 0));

    let requests = harness.llm.requests();
    assert_eq!(requests.len(), 5);
    let refused = requests[2]["messages"].as_array().unwrap().last().unwrap()["content"].to_string();
    assert!(refused.contains("finish refused: the last test run failed"), "{refused}");
    // The repair round starts a fresh conversation that carries the failure output.
    assert_eq!(requests[3]["messages"].as_array().unwrap().len(), 2);
    let repair = last_user_text(&requests[3]);
    assert!(repair.contains("the tests failed with the output below"), "{repair}");
    assert!(repair.contains("expected 'Hello, World!', got 'Hi World'"), "{repair}");
    let (commit, _) = sample::branch_head(&harness.origin, "feature/task-greeter-e.2").unwrap().unwrap();
    assert_eq!(
        sample::file_at(&harness.origin, &commit, GREET_PATH).unwrap().as_deref(),
        Some("#!/bin/sh\necho \"Hello, ${1:-world}!\"\n")
    );
    let implementation = &summary(&harness, "e.2")["impl_result"];
    assert_eq!((implementation["rounds"].clone(), implementation["turns"].clone()), (json!(2), json!(5)));
    assert_eq!(implementation["explanation"], "fixed the greeting");
    harness.cleanup().await;
}

const PARTIAL: &str = "#!/bin/sh\necho partial\n";
const WRAP_UP: &str = "Wrote a partial greet.sh; the greeting text remains.";

/// What an exhausted task left behind.
struct Exhausted {
    /// The DLQ's `x-failure-message`.
    message: String,
    summary: Value,
}

/// Runs the sample task with `config` and a script that writes a partial greet.sh, then
/// plays `steps`, then answers the wrap-up; checks what every budget trip must leave.
async fn exhaust(
    name: &str,
    task_id: &str,
    config: impl FnOnce(&mut RunnerConfig),
    steps: Vec<Step>,
    playbook: Option<Value>,
) -> Exhausted {
    let mut script = vec![Step::call("write_file", json!({"path": GREET_PATH, "content": PARTIAL}))];
    script.extend(steps);
    script.push(Step::Reply(WRAP_UP.into()));
    let harness = Harness::new(name, Script::steps(script)).await;
    let mut task = sample::sample_task(&harness.repo_url(), task_id);
    if let Some(playbook) = playbook {
        task["playbook"] = playbook;
    }
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
    let mut worker_config = harness.config();
    config(&mut worker_config);
    let report = harness.run_worker(worker_config, 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (0, 1));

    let letters = agent_runner::amqp::browse_queue(&harness.session, &harness.names.dead_letter_queue, 10)
        .await
        .unwrap();
    assert_eq!(letters[0].header_text("x-failure-kind").as_deref(), Some("budget_exhausted"));
    assert_eq!(letters[0].header_text("x-failed-step").as_deref(), Some("implement"));
    let message = letters[0].header_text("x-failure-message").unwrap();
    // Nothing is lost: the partial diff and the transcript are uploaded; nothing is pushed.
    let diff = read(&harness, task_id, "diff.patch");
    assert!(diff.contains("+++ b/greet.sh") && diff.contains("+echo partial"), "{diff}");
    let transcript = read(&harness, task_id, "transcript.json");
    assert!(transcript.contains("BUDGET EXHAUSTED") && transcript.contains(WRAP_UP), "{transcript}");
    assert_eq!(
        sample::branch_head(&harness.origin, &format!("feature/task-greeter-{task_id}")).unwrap(),
        None
    );
    // The wrap-up turn: told why, tools listed but not callable.
    let requests = harness.llm.requests();
    let last = requests.last().unwrap();
    assert_eq!(last["tool_choice"], "none");
    assert!(last_user_text(last).starts_with("BUDGET EXHAUSTED: "), "{last}");
    let summary = summary(&harness, task_id);
    assert_eq!(summary["error"]["kind"], "budget_exhausted");
    assert_eq!(summary["impl_result"]["explanation"], WRAP_UP);
    harness.cleanup().await;
    Exhausted { message, summary }
}

fn read_readme() -> Step {
    Step::call("read_file", json!({"path": "README.md"}))
}

#[tokio::test]
async fn the_turn_budget_trips() {
    let steps = vec![read_readme(), Step::call("list_dir", json!({}))];
    let out = exhaust("budget-turns", "b.1", |c| c.engine.limits.max_turns = 3, steps, None).await;
    assert_eq!(out.message, "budget exhausted: 3 turns used of 3 (engine.max_turns)");
    assert_eq!(out.summary["impl_result"]["turns"], 4, "three turns and the wrap-up");
}

#[tokio::test]
async fn the_token_budget_trips() {
    let out = exhaust("budget-tokens", "b.2", |c| c.engine.limits.max_total_tokens = 100, vec![], None).await;
    assert!(
        out.message.starts_with("budget exhausted: ")
            && out.message.ends_with(" of 100 (engine.max_total_tokens)"),
        "{}",
        out.message
    );
}

#[tokio::test]
async fn the_cost_budget_trips() {
    let price = ModelPrice { prompt_per_1k: 1.0, completion_per_1k: 2.0 };
    let out = exhaust(
        "budget-cost",
        "b.3",
        |c| {
            c.engine.prices.insert(c.llm.model.clone(), price);
            c.engine.limits.max_cost_usd = 0.01;
        },
        vec![],
        None,
    )
    .await;
    assert!(out.message.ends_with(" spent of $0.0100 (engine.max_cost_usd)"), "{}", out.message);
    let implementation = &out.summary["impl_result"];
    let expected = implementation["prompt_tokens"].as_f64().unwrap() / 1000.0
        + implementation["completion_tokens"].as_f64().unwrap() * 2.0 / 1000.0;
    let cost = implementation["estimated_cost_usd"].as_f64().unwrap();
    assert!((cost - expected).abs() < 1e-9, "{cost} != {expected}");
}

#[tokio::test]
async fn the_wall_time_budget_trips() {
    let slow =
        json!({"name": "slow", "steps": [{"name": "test", "command": "sleep 2 && sh tests/test_greet.sh"}]});
    let steps = vec![Step::call("run_tests", json!({}))];
    let out = exhaust(
        "budget-wall",
        "b.4",
        |c| c.engine.limits.max_wall = std::time::Duration::from_secs(1),
        steps,
        Some(slow),
    )
    .await;
    assert!(out.message.ends_with("s of wall time used of 1s (engine.max_wall_seconds)"), "{}", out.message);
}

#[tokio::test]
async fn a_repeated_call_is_a_stall() {
    let steps = vec![read_readme(), read_readme()];
    let out =
        exhaust("budget-repeat", "b.5", |c| c.engine.limits.stall_repeated_calls = 2, steps, None).await;
    assert_eq!(
        out.message,
        "budget exhausted: the same read_file call was made 2 times in a row (engine.stall_repeated_calls)"
    );
}

#[tokio::test]
async fn turns_without_a_workspace_change_are_a_stall() {
    let steps = vec![Step::call("list_dir", json!({})), read_readme()];
    let out =
        exhaust("budget-idle", "b.6", |c| c.engine.limits.stall_turns_without_change = 2, steps, None).await;
    assert_eq!(
        out.message,
        "budget exhausted: 2 turns in a row without a workspace change (engine.stall_turns_without_change)"
    );
}
