//! Basic runner usage: the seed's programmatic entry point, without a broker. A task
//! context, a `RunnerConfig`, a `Runner`, one run, and the run result — the seed's
//! `RunnerOrchestrator(config).run(task_context)`.
//!
//! ```sh
//! cargo run --example basic_runner_usage [DIR]
//! ```
//!
//! It creates a sample origin repository in DIR (or a temporary directory), runs the
//! sample task against it with the slot pool and the `file://` artifact store under DIR,
//! and prints the result. With no model configured, a scripted stand-in answers.

mod support;

use std::sync::Arc;

use agent_runner::config::{self, ConfigOverrides};
use agent_runner::events::MemorySink;
use agent_runner::pipeline::Runner;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = support::workdir()?;
    let repo_url = support::sample_origin(&dir.path, &[])?;

    // 1. The task context: a validated task message (the seed's TaskContext fields).
    let task = support::sample_task(&repo_url, serde_json::json!({}))?;

    // 2 and 3. The configuration: file, environment and overrides, as the CLI builds it
    // (`execution_mode`, `default_timeout_seconds`, the services' URLs, `llm`).
    let overrides = ConfigOverrides { execution_mode: Some("local-process".into()), ..Default::default() };
    let mut config = config::load(None, &config::process_env, &overrides)?;
    let (secrets, _model) = support::runner_parts(&mut config, &dir.path, support::sample_answer()).await?;

    // 4. The runner, and one run. Events are kept in memory here instead of on an exchange.
    let events = MemorySink::default();
    let runner = Runner::from_config(&config, secrets, Arc::new(events.clone()))?;
    let result = runner.run(&task, 1, &CancellationToken::new()).await;

    if result.success {
        println!("task done on branch {}", result.branch.as_deref().unwrap_or("?"));
        for artifact in &result.artifacts {
            println!("  artifact {}: {}", artifact.kind.as_str(), artifact.uri);
        }
        if let Some(implementation) = &result.impl_result {
            println!("model {} used {} tokens", implementation.llm_model, implementation.tokens_used);
        }
    } else {
        let reason = result.error.as_ref().map_or_else(|| "unknown".to_string(), |e| e.to_string());
        println!("task failed: {reason}");
    }
    // The seed's figures: its commands' peak memory and CPU use while they ran.
    let metrics = &result.metrics;
    println!(
        "took {:.1} s, memory {:.1} MB, CPU {:.0}% ({:.2} s)",
        result.duration_seconds, metrics.memory_mb, metrics.cpu_percent, metrics.cpu_seconds
    );
    println!("{} events published", events.events().len());
    anyhow::ensure!(result.success, "the task did not complete");
    Ok(())
}
