//! Docker runner: every playbook step in a container of its own — the workspace mounted,
//! no network unless the step asks, a read-only root, the resource limits as flags —
//! configured in the seed's `config.docker.yaml` spelling (`docker_image`,
//! `docker_volumes`).
//!
//! ```sh
//! docker pull debian:bookworm-slim    # the worker never pulls; any image with `sh`
//! EXAMPLE_DOCKER_IMAGE=debian:bookworm-slim cargo run --example docker_runner [DIR]
//! ```
//!
//! When no docker engine answers, it says so and stops (exit 0): nothing ran.

mod support;

use std::sync::Arc;

use agent_runner::config::{self, ConfigOverrides};
use agent_runner::events::MemorySink;
use agent_runner::pipeline::{PreflightError, Runner, check_execution_mode};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = support::workdir()?;
    let image = std::env::var("EXAMPLE_DOCKER_IMAGE").unwrap_or_else(|_| "debian:bookworm-slim".into());
    // A host directory every step container sees at /fixtures (read-write, as the seed's
    // `/var/necrocode/workspaces: /workspaces`).
    let fixtures = dir.path.join("fixtures");
    std::fs::create_dir_all(&fixtures)?;
    let file = dir.path.join("config.docker.yaml");
    let yaml = format!(
        "execution_mode: docker\ndocker_image: {image}\ndocker_volumes:\n  {}: /fixtures\n",
        fixtures.display()
    );
    std::fs::write(&file, yaml)?;
    let mut config = config::load(Some(&file), &config::process_env, &ConfigOverrides::default())?;

    // What a worker checks before it takes tasks: the engine answers, the image is there.
    match check_execution_mode(&config).await {
        Err(PreflightError::EngineUnreachable(why)) => {
            println!("skipped: no docker engine answers ({why})");
            return Ok(());
        }
        checked => checked?,
    }
    println!("steps run in containers of {image}");

    let repo_url = support::sample_origin(&dir.path, &[])?;
    let task = support::sample_task(&repo_url, serde_json::json!({}))?;
    let (secrets, _model) = support::runner_parts(&mut config, &dir.path, support::sample_answer()).await?;

    let runner = Runner::from_config(&config, secrets, Arc::new(MemorySink::default()))?;
    let result = runner.run(&task, 1, &CancellationToken::new()).await;
    for step in result.test_result.iter().flat_map(|report| &report.steps) {
        println!("  {}: {} {}", step.name, step.status.as_str(), step.output_tail.trim());
    }
    support::outcome(&result)
}
