//! `agent-runner demo`: the whole product on one machine with embedded defaults.
//!
//! It creates a sample origin repository, publishes a sample task to RabbitMQ on a
//! private topology (so a real fleet's queues are never touched), runs the worker until
//! the task is settled, and reports the pushed branch, the artifact URIs and the events
//! seen. Without an LLM endpoint or key it starts a local OpenAI-compatible endpoint that
//! plays back a prepared answer, and says so.

pub mod sample;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::amqp::{AmqpSession, TopologyNames};
use crate::config::RunnerConfig;
use crate::llm::scripted;
use crate::pipeline::RunnerSecrets;
use crate::worker::{Worker, WorkerOptions, WorkerReport};

/// How long to wait for the task's last events after the worker settled it.
const EVENT_GRACE: Duration = Duration::from_secs(5);

/// What the demo did, for printing and for tests.
#[derive(Debug)]
pub struct DemoReport {
    pub origin: PathBuf,
    pub branch: String,
    /// `(commit id, commit message)` of the branch on the origin, when pushed.
    pub pushed_commit: Option<(String, String)>,
    pub artifact_uris: Vec<String>,
    /// `(type, routing-relevant detail)` of each event seen, in order.
    pub events: Vec<serde_json::Value>,
    pub worker: WorkerReport,
    /// True when the scripted local endpoint stood in for a real model.
    pub scripted_llm: bool,
}

/// Runs the demo under `home` (wiped first), printing progress through `say`.
pub async fn run_demo(
    mut config: RunnerConfig,
    home: PathBuf,
    say: &dyn Fn(&str),
) -> anyhow::Result<DemoReport> {
    if home.exists() {
        std::fs::remove_dir_all(&home).with_context(|| format!("cannot clear {}", home.display()))?;
    }
    std::fs::create_dir_all(&home)?;
    let origin = home.join("origin.git");
    sample::create_origin(&origin, "main", sample::SAMPLE_FILES)
        .context("cannot create the sample repository")?;
    say(&format!("sample origin repository: {}", origin.display()));
    config.pool_dir = home.join("slots");
    // The sample origin is a local path: admit it, and nothing else local.
    let origin_prefix = crate::git::RemotePrefix::local_directory(&home)
        .map_err(|reason| anyhow::anyhow!("demo home {} {reason}", home.display()))?;
    config.git.allowed_remotes.push(origin_prefix);
    config.services.artifact_store = crate::config::ArtifactStoreLocation::Filesystem(home.join("artifacts"));

    let mut secrets = RunnerSecrets::from_env(&config, &crate::config::process_env)?;
    // The demo pushes to its own local origin, which needs no token.
    secrets.git_token = None;
    let scripted_llm = config.llm.endpoint.is_none() && secrets.llm_api_key.is_none();
    let _llm = if scripted_llm {
        let answer = sample::scripted_answer();
        let server = scripted::start(scripted::Script::responder(move |_| answer.clone())).await?;
        say(&format!(
            "no LLM configured (set OPENAI_API_KEY, or --llm-endpoint): using a local scripted \
             OpenAI-compatible endpoint at {} that plays back a prepared answer for the sample task",
            server.base_url()
        ));
        config.llm.endpoint = Some(server.base_url().parse().context("scripted endpoint URL")?);
        secrets.llm_api_key = None;
        Some(server)
    } else {
        say(&format!("using the configured model {}", config.llm.model));
        None
    };

    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let names = TopologyNames::isolated(&format!("agent-runner.demo-{suffix}"));
    let worker = Arc::new(Worker::connect(&config, secrets, names.clone()).await?);
    let mut tap = worker.session.tap(&names.events_exchange, "#").await?;
    say(&format!(
        "private topology declared: work queue {}, dead-letter queue {}",
        names.work_queue, names.dead_letter_queue
    ));

    let task = sample::sample_task(&format!("file://{}", origin.display()), "1.1");
    let task_body = serde_json::to_vec(&task)?;
    worker.session.publish_task(&names, "task.backend", &task_body).await?;
    say("published task 1.1 \"Add the greet command\"; running the worker until it is done");

    let report = worker
        .clone()
        .run(
            WorkerOptions {
                concurrency: 1,
                stop_after: Some(1),
                consumer_tag: "agent-runner-demo".into(),
                idle_timeout: None,
            },
            CancellationToken::new(),
        )
        .await?;
    let events = collect_events(&mut tap).await;
    let artifact_uris = events
        .iter()
        .filter(|e| e["type"] == "ArtifactUploaded")
        .filter_map(|e| e["data"]["uri"].as_str().map(str::to_string))
        .collect();
    let branch = "feature/task-greeter-1.1".to_string();
    let pushed_commit = sample::branch_head(&origin, &branch)?;
    cleanup(&worker.session, &names).await;
    Ok(DemoReport { origin, branch, pushed_commit, artifact_uris, events, worker: report, scripted_llm })
}

/// Reads events until the task's terminal event, or until the grace period passes.
async fn collect_events(tap: &mut crate::amqp::ExchangeTap) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    while let Some(body) = tap.next_body(EVENT_GRACE).await {
        let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) else { continue };
        let last = event["type"] == "RunnerStopping";
        events.push(event);
        if last {
            break;
        }
    }
    events
}

async fn cleanup(session: &AmqpSession, names: &TopologyNames) {
    if let Err(error) = session.delete(names).await {
        tracing::warn!(%error, "demo topology not deleted");
    }
}
