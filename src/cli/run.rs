//! `agent-runner run --task FILE`: one task, no broker; prints the run summary JSON.
//!
//! Also the entry point of a Kubernetes task pod: the task comes in `AGENT_RUNNER_TASK`
//! and the compact outcome goes to `--outcome-file` (the termination message the worker
//! reads, `crate::kubernetes::PodOutcome`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use super::exit::{Exit, UsageError};
use crate::config::RunnerConfig;
use crate::events::MemorySink;
use crate::kubernetes::{ATTEMPT_ENV, EventLines, PodOutcome, TASK_ENV};
use crate::pipeline::Runner;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The task message (JSON, schema version 1).
    #[arg(long, value_name = "FILE", required_unless_present = "task_json")]
    pub task: Option<PathBuf>,
    /// The task message itself (a Kubernetes task pod gets it this way).
    #[arg(long, value_name = "JSON", env = TASK_ENV, hide_env_values = true, conflicts_with = "task")]
    pub task_json: Option<String>,
    /// Also write the outcome, compact (at most 4096 bytes), to this file.
    #[arg(long, value_name = "FILE")]
    pub outcome_file: Option<PathBuf>,
    /// Write each lifecycle event as a line on standard output, for a worker following
    /// this log to publish (a Kubernetes task pod).
    #[arg(long)]
    pub event_lines: bool,
    /// The delivery attempt this run is (events' ids depend on it).
    #[arg(long, value_name = "N", env = ATTEMPT_ENV, default_value_t = 1)]
    pub attempt: u32,
    #[command(flatten)]
    pub runner: super::args::RunnerArgs,
}

pub async fn run(config: RunnerConfig, args: RunArgs) -> anyhow::Result<ExitCode> {
    let (shown, body) = match (&args.task, &args.task_json) {
        (Some(path), _) => {
            let shown = path.display().to_string();
            let body = std::fs::read(path).map_err(|e| UsageError(format!("cannot read {shown}: {e}")))?;
            (shown, body)
        }
        (None, Some(json)) => (format!("${TASK_ENV}"), json.clone().into_bytes()),
        (None, None) => return Err(UsageError("give --task FILE".to_string()).into()),
    };
    let task = crate::task::parse_task(&body)
        .map_err(|e| UsageError(format!("{shown} is not a valid task: {e}")))?;
    let secrets = super::ready_to_run(&config).await?;
    let events: Arc<dyn crate::events::EventSink> = match args.event_lines {
        true => Arc::new(EventLines),
        false => Arc::new(MemorySink::default()),
    };
    let runner = Runner::from_config(&config, secrets, events)?;
    let shutdown = super::shutdown_signal();
    let result = runner.run(&task, args.attempt.max(1), &shutdown).await;
    // The summary carries task text, test output and the model's explanation.
    println!("{}", runner.services.masker.mask(&serde_json::to_string_pretty(&result)?));
    if let Some(path) = &args.outcome_file {
        let outcome = PodOutcome::of(&result).to_message();
        std::fs::write(path, outcome)
            .map_err(|e| anyhow::anyhow!("cannot write the outcome to {}: {e}", path.display()))?;
    }
    let exit = match (result.success, shutdown.is_cancelled()) {
        (true, _) => Exit::Success,
        (false, true) => Exit::Interrupted,
        (false, false) => Exit::TaskFailed,
    };
    Ok(exit.into())
}
