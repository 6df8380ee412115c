//! Per-task resource figures from the kernel's accounting of each command's processes:
//! a step that burns CPU and holds memory shows at least that in its command outcome, in
//! the run summary, in `TaskCompleted` and on `/metrics`; a task running beside it at the
//! same time shows only its own (idle) figures.

mod common;

use std::time::Duration;

use agent_runner::demo::sample;
use agent_runner::llm::scripted::Script;
use agent_runner::process::{CommandSpec, Isolation, run_command};
use common::processes::{BURN_CPU_AND_MEMORY, BURNT_CPU_SECONDS, BURNT_MEMORY_BYTES};
use common::{Harness, drain_events};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const MB: f64 = 1024.0 * 1024.0;

#[tokio::test]
async fn a_command_reports_the_cpu_and_memory_of_its_own_processes_only() {
    let dir = tempfile::tempdir().unwrap();
    let spec = |command: &str| CommandSpec::new(command, dir.path(), Duration::from_secs(60), 4096);
    let (burn, idle) = (spec(BURN_CPU_AND_MEMORY), spec("sleep 1"));
    let cancel = CancellationToken::new();
    // At the same time: the idle command must not be charged with the other's work.
    let (burnt, slept) = tokio::join!(run_command(&burn, &cancel), run_command(&idle, &cancel));
    let (burnt, slept) = (burnt.unwrap(), slept.unwrap());
    assert!(burnt.success(), "{}", burnt.output);
    let usage = burnt.usage.expect("figures for a command that ran");
    assert!(usage.cpu_seconds() >= BURNT_CPU_SECONDS, "{usage:?}");
    assert!(usage.peak_memory_bytes >= BURNT_MEMORY_BYTES, "{usage:?}");
    let idle = slept.usage.expect("figures for a command that ran");
    assert!(idle.cpu_seconds() < 0.2, "{idle:?}");
    assert!(idle.peak_memory_bytes < 20 * 1024 * 1024, "{idle:?}");

    // Killed at its timeout, a command's figures still count what it used: half a second
    // of CPU (by its own counters, whatever the load), then a sleep the timeout ends.
    let mut spinning = spec(
        "while read -r s < /proc/$$/stat; set -- $s; \
        [ $(( ${14} + ${15} )) -lt 50 ]; do :; done; echo spun; sleep 60",
    );
    spinning.timeout = Duration::from_secs(5);
    let stopped = run_command(&spinning, &cancel).await.unwrap();
    assert_eq!(stopped.end, agent_runner::process::CommandEnd::TimedOut, "{}", stopped.output);
    assert!(stopped.output.contains("spun"), "the spin did not finish in 5 s: {}", stopped.output);
    let usage = stopped.usage.expect("figures for a killed command");
    assert!(usage.cpu_seconds() >= 0.5, "{usage:?}");
}

#[tokio::test]
async fn a_sandboxed_command_reports_what_ran_under_bubblewrap() {
    // Outside /tmp: the sandbox has a /tmp of its own.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut spec = CommandSpec::new(BURN_CPU_AND_MEMORY, dir.path(), Duration::from_secs(60), 4096);
    spec.isolation = Isolation::Sandbox { network: false, policy: Default::default() };
    let outcome = run_command(&spec, &CancellationToken::new()).await.unwrap();
    assert!(outcome.success(), "{}", outcome.output);
    let usage = outcome.usage.expect("figures for a sandboxed command");
    assert!(usage.cpu_seconds() >= BURNT_CPU_SECONDS, "{usage:?}");
    assert!(usage.peak_memory_bytes >= BURNT_MEMORY_BYTES, "{usage:?}");
}

/// A task whose playbook is `command` followed by the sample's tests.
fn task_running(harness: &Harness, id: &str, command: &str) -> serde_json::Value {
    let mut task = sample::sample_task(&harness.repo_url(), id);
    task["playbook"] = json!({ "name": "usage", "steps": [
        { "name": "work", "command": command },
        { "name": "unit tests", "command": "sh tests/test_greet.sh" },
    ]});
    task
}

fn summary(harness: &Harness, id: &str) -> serde_json::Value {
    let path = harness.artifacts_dir().join(format!("greeter/{id}/summary.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn concurrent_tasks_each_report_their_own_commands_in_summary_event_and_metrics() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("usage", Script::responder(move |_| answer.clone())).await;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "#").await.unwrap();
    for (id, command) in [("7.1", BURN_CPU_AND_MEMORY), ("7.2", "sleep 2")] {
        let task = task_running(&harness, id, command);
        harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
    }
    let cpu_count = "agent_runner_task_cpu_seconds_count{mode=\"local-process\"}";
    let before = agent_runner::metrics::global().render();
    let report = harness.run_worker(harness.config(), 2, 2).await;
    assert_eq!((report.acked, report.dead_lettered), (2, 0));

    let (burner, idler) = (summary(&harness, "7.1"), summary(&harness, "7.2"));
    let metrics = &burner["metrics"];
    eprintln!("burner: {metrics}\nidler: {}", idler["metrics"]);
    assert!(metrics["cpu_seconds"].as_f64().unwrap() >= BURNT_CPU_SECONDS, "{metrics}");
    assert!(metrics["memory_mb"].as_f64().unwrap() >= BURNT_MEMORY_BYTES as f64 / MB, "{metrics}");
    assert_eq!(metrics["commands"], 2, "{metrics}");
    let percent = metrics["cpu_percent"].as_f64().unwrap();
    assert!(percent > 10.0 && percent < 250.0, "{metrics}");
    // Ran at the same time as the burner, on the same worker: nothing of it is here.
    let idle = &idler["metrics"];
    assert!(idle["cpu_seconds"].as_f64().unwrap() < 0.3, "{idle}");
    assert!(idle["memory_mb"].as_f64().unwrap() < 20.0, "{idle}");
    assert!(idle["command_seconds"].as_f64().unwrap() >= 2.0, "{idle}");

    // The terminal event carries the summary's figures.
    let events = drain_events(&mut tap).await;
    for (id, summary) in [("7.1", &burner), ("7.2", &idler)] {
        let completed = events.iter().find(|e| e["type"] == "TaskCompleted" && e["task_id"] == id).unwrap();
        assert_eq!(completed["data"]["metrics"], summary["metrics"], "{id}");
    }
    // And /metrics observed both runs, with the burner's CPU in the sum.
    let series = |text: &str, name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    };
    let after = agent_runner::metrics::global().render();
    assert_eq!(series(&after, cpu_count) - series(&before, cpu_count), 2.0);
    let cpu_sum = "agent_runner_task_cpu_seconds_sum{mode=\"local-process\"}";
    assert!(series(&after, cpu_sum) - series(&before, cpu_sum) >= BURNT_CPU_SECONDS);
    let big = "agent_runner_task_peak_memory_bytes_bucket{mode=\"local-process\",le=\"134217728\"}";
    assert_eq!(series(&after, big) - series(&before, big), 1.0, "only the idle task stayed under 128 MiB");
    harness.cleanup().await;
}
