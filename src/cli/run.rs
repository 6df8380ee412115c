//! `agent-runner run --task FILE`: one task, no broker; prints the run summary JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::config::RunnerConfig;
use crate::events::MemorySink;
use crate::pipeline::{Runner, RunnerSecrets};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The task message (JSON, schema version 1).
    #[arg(long, value_name = "FILE")]
    pub task: PathBuf,
}

pub async fn run(config: RunnerConfig, args: RunArgs) -> anyhow::Result<ExitCode> {
    let body = std::fs::read(&args.task).with_context(|| format!("cannot read {}", args.task.display()))?;
    let task = crate::task::parse_task(&body)
        .with_context(|| format!("{} is not a valid task", args.task.display()))?;
    let secrets = RunnerSecrets::from_env(&config, &crate::config::process_env)?;
    let runner = Runner::from_config(&config, secrets, Arc::new(MemorySink::default()))?;
    let result = runner.run(&task, 1, &super::shutdown_signal()).await;
    // The summary carries task text, test output and the model's explanation.
    println!("{}", runner.services.masker.mask(&serde_json::to_string_pretty(&result)?));
    Ok(if result.success { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
