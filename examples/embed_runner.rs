//! Embedding agent-runner: the seed's programmatic entry point, without a broker.
//!
//! Builds a `RunnerConfig`, a task context and a `Runner`, runs the task and prints the
//! run result, like the seed's `RunnerOrchestrator(config).run(task_context)`.
//!
//! ```sh
//! cargo run --example embed_runner
//! ```
//!
//! With no `OPENAI_API_KEY` it answers from a local scripted OpenAI-compatible endpoint,
//! against a sample repository it creates in a temporary directory.

use std::sync::Arc;

use agent_runner::config::{self, ArtifactStoreLocation, ConfigOverrides};
use agent_runner::demo::sample;
use agent_runner::events::MemorySink;
use agent_runner::llm::scripted::{self, Script};
use agent_runner::pipeline::{Runner, RunnerSecrets};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let workdir = tempfile::tempdir()?;
    let origin = workdir.path().join("origin.git");
    sample::create_origin(&origin, "main", sample::SAMPLE_FILES)?;

    // The configuration: file, environment and overrides, as the CLI builds it.
    let mut config = config::load(None, &config::process_env, &ConfigOverrides::default())?;
    config.pool_dir = workdir.path().join("slots");
    config.services.artifact_store = ArtifactStoreLocation::Filesystem(workdir.path().join("artifacts"));
    let secrets = RunnerSecrets::from_env(&config, &config::process_env)?;
    let _scripted = if secrets.llm_api_key.is_none() && config.llm.endpoint.is_none() {
        let answer = sample::scripted_answer();
        let server = scripted::start(Script::responder(move |_| answer.clone())).await?;
        config.llm.endpoint = Some(server.base_url().parse()?);
        Some(server)
    } else {
        None
    };

    // The task context (a validated task message).
    let message = sample::sample_task(&format!("file://{}", origin.display()), "1.1");
    let task = agent_runner::task::parse_task(&serde_json::to_vec(&message)?)?;

    // The runner, and one run. Events are kept in memory here instead of on an exchange.
    let events = MemorySink::default();
    let runner = Runner::from_config(&config, secrets, Arc::new(events.clone()))?;
    let result = runner.run(&task, 1, &CancellationToken::new()).await;

    if result.success {
        println!("task done on branch {:?}", result.branch);
        for artifact in &result.artifacts {
            println!("  {:?}: {}", artifact.kind, artifact.uri);
        }
        if let Some(implementation) = &result.impl_result {
            println!("model {} used {} tokens", implementation.llm_model, implementation.tokens_used);
        }
    } else {
        println!("task failed: {:?}", result.error);
    }
    println!("{} events published", events.events().len());
    Ok(())
}
