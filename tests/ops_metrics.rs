//! `/metrics` scraped while a worker runs a task: the task is in flight, then counted,
//! and its steps' durations are there, all with bounded labels.
//! (One test per binary: the metrics registry is process-wide.)

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use agent_runner::demo::sample;
use agent_runner::http::{HttpServer, Readiness};
use agent_runner::llm::scripted::Script;
use common::Harness;
use tokio_util::sync::CancellationToken;

/// `/metrics` as a map from series (`name{labels}`) to value.
async fn scrape(base: &str) -> BTreeMap<String, f64> {
    let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let text = response.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn count(metrics: &BTreeMap<String, f64>, step: &str) -> f64 {
    let series = format!("agent_runner_step_duration_seconds_count{{step=\"{step}\",result=\"ok\"}}");
    metrics.get(&series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_show_the_task_in_flight_then_counted_with_its_step_durations() {
    let asked = Arc::new(tokio::sync::Notify::new());
    let signal = asked.clone();
    let answer = sample::scripted_answer();
    let harness = Harness::new(
        "metrics",
        Script::responder(move |_| {
            signal.notify_one();
            answer.clone()
        }),
    )
    .await;
    let server = HttpServer::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let stop = CancellationToken::new();
    server.spawn(Readiness::process().clone(), stop.clone());

    let task = sample::sample_task(&harness.repo_url(), "1.1");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
    let worker = harness.run_worker(harness.config(), 1, 1);
    let during = async {
        // The model is asked mid-task: slot and workspace are done, the rest is not.
        asked.notified().await;
        scrape(&base).await
    };
    let (report, during) = tokio::join!(worker, during);
    assert_eq!(report.acked, 1);

    assert_eq!(during["agent_runner_tasks_in_flight"], 1.0);
    assert_eq!(
        (count(&during, "slot"), count(&during, "workspace"), count(&during, "push")),
        (1.0, 1.0, 0.0)
    );
    assert!(!during.contains_key("agent_runner_tasks_total{outcome=\"completed\"}"));

    let after = scrape(&base).await;
    assert_eq!(after["agent_runner_tasks_total{outcome=\"completed\"}"], 1.0);
    assert_eq!(after["agent_runner_tasks_in_flight"], 0.0);
    let steps = ["slot", "workspace", "implement", "test", "commit", "push"].map(|s| count(&after, s));
    assert_eq!(steps, [1.0; 6]);
    let bucket = "agent_runner_step_duration_seconds_bucket{step=\"test\",result=\"ok\",le=\"+Inf\"}";
    assert_eq!(after[bucket], 1.0);
    assert!(after["agent_runner_step_duration_seconds_sum{step=\"test\",result=\"ok\"}"] > 0.0);
    assert!(after["agent_runner_llm_tokens_total{direction=\"prompt\"}"] > 0.0);
    // Labels are bounded: no series names a task or a spec.
    assert!(after.keys().all(|series| !series.contains("1.1") && !series.contains("greeter")));

    stop.cancel();
    harness.cleanup().await;
}
