//! `agent-runner cancel TASK_ID`: ask every worker to cancel a task (control exchange).

use std::process::ExitCode;

use crate::amqp::{HeaderMap, Outgoing};
use crate::config::RunnerConfig;
use crate::worker::{ControlAction, ControlMessage};

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The task to cancel. A running task is stopped and dead-lettered as `cancelled`;
    /// one still queued is dead-lettered when a worker that saw this message takes it.
    pub task_id: String,
}

pub async fn run(config: RunnerConfig, args: CancelArgs) -> anyhow::Result<ExitCode> {
    let (session, names) = super::broker_session(&config, "agent-runner cancel").await?;
    let body =
        serde_json::to_vec(&ControlMessage { action: ControlAction::Cancel, task_id: args.task_id.clone() })?;
    // Not mandatory: with no worker running there is nobody to tell, which is not an error.
    session
        .publisher
        .publish(Outgoing {
            exchange: &names.control_exchange,
            routing_key: "cancel",
            body: &body,
            headers: &HeaderMap::new(),
            mandatory: false,
        })
        .await?;
    println!("cancel requested for task {} on {}", args.task_id, names.control_exchange);
    Ok(ExitCode::SUCCESS)
}
