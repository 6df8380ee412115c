//! `agent-runner run --task FILE`: one task, no broker; prints the run summary JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::exit::{Exit, UsageError};
use crate::config::RunnerConfig;
use crate::events::MemorySink;
use crate::pipeline::Runner;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The task message (JSON, schema version 1).
    #[arg(long, value_name = "FILE")]
    pub task: PathBuf,
    #[command(flatten)]
    pub runner: super::args::RunnerArgs,
}

pub async fn run(config: RunnerConfig, args: RunArgs) -> anyhow::Result<ExitCode> {
    let shown = args.task.display();
    let body = std::fs::read(&args.task).map_err(|e| UsageError(format!("cannot read {shown}: {e}")))?;
    let task = crate::task::parse_task(&body)
        .map_err(|e| UsageError(format!("{shown} is not a valid task: {e}")))?;
    let secrets = super::ready_to_run(&config).await?;
    let runner = Runner::from_config(&config, secrets, Arc::new(MemorySink::default()))?;
    let shutdown = super::shutdown_signal();
    let result = runner.run(&task, 1, &shutdown).await;
    // The summary carries task text, test output and the model's explanation.
    println!("{}", runner.services.masker.mask(&serde_json::to_string_pretty(&result)?));
    let exit = match (result.success, shutdown.is_cancelled()) {
        (true, _) => Exit::Success,
        (false, true) => Exit::Interrupted,
        (false, false) => Exit::TaskFailed,
    };
    Ok(exit.into())
}
