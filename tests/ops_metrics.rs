//! `/metrics` from start-up through one task: every family listed at zero before any
//! work, the build and the process described, then a task whose tests fail once and pass
//! after a repair round — in flight, counted, its steps timed with what they found, its
//! queue wait and duration observed — all with bounded labels.
//! (One test per binary: the metrics registry is process-wide.)

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agent_runner::demo::sample;
use agent_runner::http::{HttpServer, Readiness};
use agent_runner::llm::scripted::Script;
use common::Harness;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// `/metrics` as text, after checking the status and content type.
async fn scrape_text(base: &str) -> String {
    let response = common::http_client().get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    response.text().await.unwrap()
}

/// The samples of a scrape as a map from series (`name{labels}`) to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn steps(metrics: &BTreeMap<String, f64>, step: &str, result: &str) -> f64 {
    let series = format!("agent_runner_step_duration_seconds_count{{step=\"{step}\",result=\"{result}\"}}");
    metrics[&series]
}

/// The implementation the tests reject: "Hi World" instead of "Hello, World!".
fn wrong_answer() -> String {
    json!({
        "code_changes": [{ "file_path": sample::GREET_PATH, "operation": "create", "content": "#!/bin/sh\necho \"Hi $1\"\n" }],
        "explanation": "greets tersely"
    })
    .to_string()
}

fn head_revision() -> String {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Before any task: every family with its series at zero, `build_info` naming this
/// build, and the process series plausible. Returns the series listed.
fn assert_start_up(text: &str) -> Vec<String> {
    for family in agent_runner::metrics::FAMILIES {
        assert!(text.contains(&format!("\n# TYPE {} ", family.name)), "{} missing from\n{text}", family.name);
    }
    let metrics = samples(text);
    assert_eq!(metrics["agent_runner_tasks_in_flight"], 0.0);
    for outcome in ["completed", "failed", "retried", "unsettled"] {
        assert_eq!(metrics[&format!("agent_runner_tasks_total{{outcome=\"{outcome}\"}}")], 0.0);
        assert_eq!(
            metrics[&format!("agent_runner_task_duration_seconds_count{{outcome=\"{outcome}\"}}")],
            0.0
        );
    }
    for step in ["slot", "workspace", "implement", "test", "commit", "push", "upload"] {
        for result in ["ok", "failed", "error"] {
            assert_eq!(steps(&metrics, step, result), 0.0, "{step} {result}");
        }
    }
    assert_eq!(metrics["agent_runner_queue_wait_seconds_count"], 0.0);
    assert_eq!(metrics["agent_runner_dead_letters_total{kind=\"test_execution\"}"], 0.0);
    assert_eq!(metrics["agent_runner_retries_total{operation=\"artifact_store\"}"], 0.0);
    assert_eq!(metrics["agent_runner_mirror_events_total{outcome=\"applied\"}"], 0.0);
    let moved: Vec<_> = metrics
        .iter()
        .filter(|(series, value)| series.starts_with("agent_runner_") && **value != 0.0)
        .filter(|(series, _)| !series.starts_with("agent_runner_build_info"))
        .collect();
    assert!(moved.is_empty(), "non-zero at start-up: {moved:?}");

    let build: Vec<_> = metrics.iter().filter(|(s, _)| s.starts_with("agent_runner_build_info{")).collect();
    assert_eq!(build.len(), 1, "{build:?}");
    let (labels, value) = build[0];
    assert_eq!(*value, 1.0);
    let revision = head_revision();
    assert!(!revision.is_empty());
    assert!(labels.contains(&format!("revision=\"{revision}")), "{labels} is not revision {revision}");
    assert!(labels.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{labels}");
    assert!(labels.contains("target=\"") && !labels.contains("target=\"\""), "{labels}");

    assert!(metrics["process_resident_memory_bytes"] > 1e6);
    assert!(metrics["process_open_fds"] > 0.0);
    assert!(metrics["process_max_fds"] >= metrics["process_open_fds"]);
    assert!(metrics["process_cpu_seconds_total"] >= 0.0);
    let now = chrono::Utc::now().timestamp() as f64;
    let started = metrics["process_start_time_seconds"];
    assert!(started <= now + 1.0 && started > now - 3600.0, "started {started}, now {now}");
    metrics.into_keys().collect()
}

#[tokio::test]
async fn metrics_list_every_family_at_start_up_then_a_task_with_one_failed_test_round() {
    let server = HttpServer::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let stop = CancellationToken::new();
    server.spawn(Readiness::process().clone(), stop.clone());
    let at_start_up = assert_start_up(&scrape_text(&base).await);

    // The model's first answer fails the tests; the repair round's passes.
    let asked = Arc::new(tokio::sync::Notify::new());
    let (signal, answers) = (asked.clone(), Arc::new(AtomicUsize::new(0)));
    let answer = sample::scripted_answer();
    let script = Script::responder(move |_| match answers.fetch_add(1, Ordering::SeqCst) {
        0 => {
            signal.notify_one();
            wrong_answer()
        }
        _ => answer.clone(),
    });
    let harness = Harness::new("metrics", script).await;
    let task = sample::sample_task(&harness.repo_url(), "1.1");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
    let worker = harness.run_worker(harness.config(), 1, 1);
    let during = async {
        // The model is asked mid-task: slot and workspace are done, the rest is not.
        asked.notified().await;
        samples(&scrape_text(&base).await)
    };
    let (report, during) = tokio::join!(worker, during);
    assert_eq!(report.acked, 1);
    assert_eq!(harness.llm.requests().len(), 2);

    assert_eq!(during["agent_runner_tasks_in_flight"], 1.0);
    let early = ["slot", "workspace", "push"].map(|s| steps(&during, s, "ok"));
    assert_eq!(early, [1.0, 1.0, 0.0]);
    assert_eq!(during["agent_runner_tasks_total{outcome=\"completed\"}"], 0.0);

    let after = samples(&scrape_text(&base).await);
    assert_eq!(after["agent_runner_tasks_total{outcome=\"completed\"}"], 1.0);
    assert_eq!(after["agent_runner_tasks_in_flight"], 0.0);
    // The tests' two rounds recorded as what they were: one failed, one ok.
    assert_eq!([steps(&after, "test", "failed"), steps(&after, "test", "ok")], [1.0, 1.0]);
    assert_eq!(steps(&after, "test", "error"), 0.0);
    assert_eq!(steps(&after, "implement", "ok"), 2.0);
    let once = ["slot", "workspace", "commit", "push", "upload"].map(|s| steps(&after, s, "ok"));
    assert_eq!(once, [1.0; 5]);
    let bucket = "agent_runner_step_duration_seconds_bucket{step=\"test\",result=\"failed\",le=\"+Inf\"}";
    assert_eq!(after[bucket], 1.0);
    assert!(after["agent_runner_step_duration_seconds_sum{step=\"test\",result=\"ok\"}"] > 0.0);

    // End to end and in the queue: one observation each, the whole longer than its tests.
    let completed = "{outcome=\"completed\"}";
    assert_eq!(after[&format!("agent_runner_task_duration_seconds_count{completed}")], 1.0);
    let total = after[&format!("agent_runner_task_duration_seconds_sum{completed}")];
    let tests = after["agent_runner_step_duration_seconds_sum{step=\"test\",result=\"ok\"}"]
        + after["agent_runner_step_duration_seconds_sum{step=\"test\",result=\"failed\"}"];
    assert!(total > tests, "task {total} s, its tests {tests} s");
    assert_eq!(after["agent_runner_queue_wait_seconds_count"], 1.0);
    assert_eq!(after["agent_runner_queue_wait_seconds_bucket{le=\"+Inf\"}"], 1.0);
    assert!((0.0..60.0).contains(&after["agent_runner_queue_wait_seconds_sum"]));

    // One run's commands (the sample test, twice), observed once, in its mode. Their
    // memory is a sample, and a step of a few milliseconds can be over before the first
    // one (then 0): tests/task_usage.rs checks the figure on a step that holds memory.
    assert_eq!(after["agent_runner_task_cpu_seconds_count{mode=\"local-process\"}"], 1.0);
    assert_eq!(after["agent_runner_task_peak_memory_bytes_count{mode=\"local-process\"}"], 1.0);
    assert!(after["agent_runner_task_peak_memory_bytes_sum{mode=\"local-process\"}"] >= 0.0);
    assert_eq!(after["agent_runner_task_cpu_seconds_count{mode=\"docker\"}"], 0.0);
    assert!(after["agent_runner_llm_tokens_total{direction=\"prompt\"}"] > 0.0);
    // Labels are bounded: no series names a task or a spec, and the task added none.
    assert!(after.keys().all(|series| !series.contains("1.1") && !series.contains("greeter")));
    assert_eq!(after.keys().cloned().collect::<Vec<_>>(), at_start_up);

    stop.cancel();
    harness.cleanup().await;
}
