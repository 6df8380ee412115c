//! Fault injection on the real binary: the worker is SIGKILLed during implement, during
//! tests and after its push but before its ack, a poison message kills it every time,
//! and SIGTERM arrives with a task running. After each restart every task completes
//! exactly once: one branch with one task commit, one set of artifacts, one
//! `TaskCompleted` by event id.

mod common;
mod reliability_support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent_runner::amqp::RetryQueues;
use agent_runner::demo::sample;
use agent_runner::llm::scripted::Script;
use common::processes::is_gone;
use common::{AMQP_URL, Harness, drain_events};
use reliability_support::{
    WorkerProcess, assert_depths, binary_config, commits_on_branch, eventually, kill_group_of,
};
use serde_json::{Value, json};

/// Every wait for a worker to reach a point or to exit is bounded by this.
const STEP_LIMIT_SECONDS: u64 = 60;

/// The binary's config: the harness's topology, model and directories; one-second
/// retries so a retried task comes back quickly.
fn write_config(harness: &Harness, grace_seconds: u64) {
    let dir = harness.dir.path();
    let extra = format!(
        "runner_id: fault-worker\nreliability:\n  max_attempts: 2\n  retry_delays_seconds: [1]\n  \
         shutdown_grace_seconds: {grace_seconds}\n{}",
        reliability_support::harness_parts_yaml(harness)
    );
    std::fs::write(dir.join("c.yaml"), binary_config(&harness.names, AMQP_URL, &extra)).unwrap();
}

async fn cleanup(harness: Harness) {
    let retry =
        RetryQueues { work_queue: harness.names.work_queue.clone(), delays: vec![Duration::from_secs(1)] };
    retry.delete(&harness.session).await.unwrap();
    harness.cleanup().await;
}

fn task(harness: &Harness, id: &str, title: &str, step: Option<String>) -> Vec<u8> {
    let mut task = sample::sample_task(&harness.repo_url(), id);
    task["title"] = json!(title);
    if let Some(command) = step {
        task["playbook"] =
            json!({ "name": "faulty", "steps": [{ "name": "unit tests", "command": command }] });
    }
    serde_json::to_vec(&task).unwrap()
}

/// A test step that, the first time, records its pid in `marker` and hangs (the test
/// kills the worker then); on later runs it runs the real tests.
fn hang_once(marker: &Path) -> String {
    let m = marker.display();
    format!(
        "if [ -e {m} ]; then sh tests/test_greet.sh; else echo $$ > {m}.tmp && mv {m}.tmp {m} && exec sleep 600; fi"
    )
}

fn requests_about(harness: &Harness, title: &str) -> usize {
    harness.llm.requests().iter().filter(|r| r.to_string().contains(title)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_during_implement_tests_and_after_push_every_task_completes_exactly_once() {
    // The model hangs on the first request about "kill in implement" until released.
    let (hung, release) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (hung_seen, released) = (hung.clone(), release.clone());
    let answer = sample::scripted_answer();
    let script = Script::responder(move |request| {
        if request.to_string().contains("kill in implement") && !hung_seen.swap(true, Ordering::SeqCst) {
            // Hands this runtime thread's other tasks to another thread while it waits.
            tokio::task::block_in_place(|| {
                while !released.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        answer.clone()
    });
    let harness = Harness::new("faults-kill", script).await;
    let dir = harness.dir.path().to_path_buf();
    write_config(&harness, 5);
    let marker = dir.join("tests-running.pid");
    // A FIFO where the first artifact of k.3 is written: the worker blocks there after
    // its push, before its ack, until it is killed.
    let fifo = harness.artifacts_dir().join("greeter/k.3/diff.partial");
    std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.completed").await.unwrap();
    harness.publish("task.backend", &task(&harness, "k.1", "kill in implement", None)).await;
    harness.publish("task.backend", &task(&harness, "k.2", "kill in tests", Some(hang_once(&marker)))).await;
    harness.publish("task.backend", &task(&harness, "k.3", "kill after push", None)).await;

    let mut first = WorkerProcess::start(&dir, "1", &[]);
    eventually("the model was asked about k.1", STEP_LIMIT_SECONDS, || hung.load(Ordering::SeqCst)).await;
    first.kill_hard();
    release.store(true, Ordering::SeqCst);

    let mut second = WorkerProcess::start(&dir, "2", &[]);
    eventually("k.2's tests are running", STEP_LIMIT_SECONDS, || marker.exists()).await;
    second.kill_hard();
    kill_group_of(&marker);

    let mut third = WorkerProcess::start(&dir, "3", &[]);
    let k3_branch = "feature/task-greeter-k.3";
    eventually("k.3 was pushed", STEP_LIMIT_SECONDS, || {
        commits_on_branch(&harness.origin, "main", k3_branch).is_some()
    })
    .await;
    third.kill_hard();
    std::fs::remove_file(&fifo).unwrap();

    let last = WorkerProcess::start(&dir, "4", &["--once"]);
    let status = last.wait(Duration::from_secs(STEP_LIMIT_SECONDS)).await;
    assert!(status.success(), "{status:?}");

    // Effects, exactly once each.
    let completed = drain_events(&mut tap).await;
    let mut completion_ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for event in &completed {
        let (task_id, id) = (event["task_id"].as_str().unwrap(), event["event_id"].as_str().unwrap());
        completion_ids.entry(task_id.to_string()).or_default().insert(id.to_string());
    }
    assert_eq!(
        completion_ids.values().map(BTreeSet::len).collect::<Vec<_>>(),
        [1, 1, 1],
        "{completion_ids:?}"
    );
    for id in ["k.1", "k.2", "k.3"] {
        let commits =
            commits_on_branch(&harness.origin, "main", &format!("feature/task-greeter-{id}")).unwrap();
        assert_eq!(commits.len(), 1, "{id}: {commits:?}");
        assert!(commits[0].contains(&format!("Task-Id: {id}\n")));
        let files: BTreeSet<String> = std::fs::read_dir(harness.artifacts_dir().join("greeter").join(id))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut expected: BTreeSet<String> =
            ["diff.patch", "execution.log", "summary.json", "test-results.json"].map(String::from).into();
        // k.3 was killed after its push, before any upload: the resumed run does not call
        // the model again, so that attempt's transcript died with the worker.
        if id != "k.3" {
            expected.insert("transcript.json".to_string());
        }
        assert_eq!(files, expected, "{id}");
        let summary: Value = serde_json::from_str(
            &std::fs::read_to_string(harness.artifacts_dir().join(format!("greeter/{id}/summary.json")))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(summary["success"], true, "{id}");
    }
    // The model was asked again only where nothing had been pushed yet.
    let asked: Vec<usize> = ["kill in implement", "kill in tests", "kill after push"]
        .iter()
        .map(|title| requests_about(&harness, title))
        .collect();
    assert_eq!(asked, [2, 2, 1]);
    assert_depths(&harness, (0, 0)).await;
    cleanup(harness).await;
}

#[tokio::test]
async fn a_poison_message_that_kills_the_worker_every_time_ends_in_the_dlq_within_the_limit() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("faults-poison", Script::responder(move |_| answer.clone())).await;
    let dir = harness.dir.path().to_path_buf();
    write_config(&harness, 5);
    // The test step kills its parent: the worker itself.
    harness
        .publish("task.backend", &task(&harness, "p.1", "poison", Some("kill -9 $PPID".to_string())))
        .await;

    let mut statuses = Vec::new();
    for start in 1..=4 {
        let worker = WorkerProcess::start(&dir, &start.to_string(), &["--once"]);
        let status = worker.wait(Duration::from_secs(STEP_LIMIT_SECONDS)).await;
        statuses.push(status.signal().map_or(format!("exit {:?}", status.code()), |s| format!("signal {s}")));
        if status.success() {
            break;
        }
    }
    // max_attempts is 2: two runs die, the third delivery is refused and dead-lettered.
    assert_eq!(statuses, ["signal 9", "signal 9", "exit Some(0)"]);
    assert_depths(&harness, (0, 1)).await;
    let letters = agent_runner::amqp::browse_queue(&harness.session, &harness.names.dead_letter_queue, 10)
        .await
        .unwrap();
    let header = |name| letters[0].header_text(name).unwrap_or_default();
    assert_eq!([header("x-failure-kind"), header("x-attempts")], ["crashed".to_string(), "3".to_string()]);
    assert_eq!(harness.llm.requests().len(), 2);
    cleanup(harness).await;
}

#[tokio::test]
async fn sigterm_drains_a_task_that_finishes_within_the_grace_period() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("faults-drain", Script::responder(move |_| answer.clone())).await;
    let dir = harness.dir.path().to_path_buf();
    write_config(&harness, 60);
    let marker = dir.join("started");
    let step = format!("touch {} && sleep 1 && sh tests/test_greet.sh", marker.display());
    let mut tap = harness.session.tap(&harness.names.events_exchange, "#").await.unwrap();
    harness.publish("task.backend", &task(&harness, "g.1", "drained", Some(step))).await;

    let worker = WorkerProcess::start(&dir, "1", &[]);
    eventually("the test step started", STEP_LIMIT_SECONDS, || marker.exists()).await;
    worker.terminate();
    let status = worker.wait(Duration::from_secs(STEP_LIMIT_SECONDS)).await;
    assert!(status.success(), "{status:?}");
    assert_eq!(
        commits_on_branch(&harness.origin, "main", "feature/task-greeter-g.1").map(|c| c.len()),
        Some(1)
    );
    let types: Vec<String> =
        drain_events(&mut tap).await.iter().map(|e| e["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(types[types.len() - 2..], ["TaskCompleted", "RunnerStopping"]);
    assert_depths(&harness, (0, 0)).await;
    cleanup(harness).await;
}

#[tokio::test]
async fn sigterm_past_the_grace_period_stops_the_task_and_leaves_it_for_redelivery() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("faults-requeue", Script::responder(move |_| answer.clone())).await;
    let dir = harness.dir.path().to_path_buf();
    write_config(&harness, 1);
    let marker = dir.join("running.pid");
    let mut tap = harness.session.tap(&harness.names.events_exchange, "#").await.unwrap();
    harness.publish("task.backend", &task(&harness, "g.2", "requeued", Some(hang_once(&marker)))).await;

    let worker = WorkerProcess::start(&dir, "1", &[]);
    eventually("the test step started", STEP_LIMIT_SECONDS, || marker.exists()).await;
    let pid: i32 = std::fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
    worker.terminate();
    let status = worker.wait(Duration::from_secs(STEP_LIMIT_SECONDS)).await;
    assert!(status.success(), "{status:?}");
    eventually("the test process was killed", STEP_LIMIT_SECONDS, || is_gone(pid)).await;
    // Back in the queue, untouched by the DLQ, nothing final published.
    assert_depths(&harness, (1, 0)).await;
    let events = drain_events(&mut tap).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        !types.iter().any(|t| ["TaskFailed", "TaskCompleted", "TaskDeadLettered"].contains(t)),
        "{types:?}"
    );
    let stopping = events.last().unwrap();
    assert_eq!(
        (&stopping["type"], &stopping["data"]["left_for_redelivery"]),
        (&json!("RunnerStopping"), &json!(1))
    );

    // The next worker takes it over and completes it (the marker lets the tests pass).
    let next = WorkerProcess::start(&dir, "2", &["--once"]);
    assert!(next.wait(Duration::from_secs(STEP_LIMIT_SECONDS)).await.success());
    assert_eq!(
        commits_on_branch(&harness.origin, "main", "feature/task-greeter-g.2").map(|c| c.len()),
        Some(1)
    );
    assert_depths(&harness, (0, 0)).await;
    cleanup(harness).await;
}
