//! `agent-runner publish FILE`: enqueue a task as a Dispatcher would, with confirms.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::RunnerConfig;

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The task message (JSON). It is validated first: an invalid task is not published.
    pub file: PathBuf,
    /// Publish even an invalid message (to exercise the dead-letter path).
    #[arg(long)]
    pub no_validate: bool,
}

pub async fn run(config: RunnerConfig, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let body = std::fs::read(&args.file)
        .map_err(|e| super::exit::UsageError(format!("cannot read {}: {e}", args.file.display())))?;
    let routing_key = match crate::task::parse_task(&body) {
        Ok(task) => task.routing_key(),
        Err(_) if args.no_validate => "task.default".to_string(),
        Err(error) => {
            let reason = format!("{} is not a valid task: {error}", args.file.display());
            return Err(super::exit::UsageError(reason).into());
        }
    };
    let (session, names) = super::broker_session(&config, "agent-runner publish").await?;
    session.publish_task(&names, &routing_key, &body).await?;
    println!("published to {} with key {routing_key}", names.task_exchange);
    Ok(ExitCode::SUCCESS)
}
