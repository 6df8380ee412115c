//! `agent-runner dlq list`: what is in the dead-letter queue, and why.

use std::process::ExitCode;

use crate::amqp::{AmqpSession, DeadLetter, TopologyNames, browse_queue, header};
use crate::config::RunnerConfig;

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered tasks (without removing them).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// At most this many messages.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

pub async fn run(config: RunnerConfig, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let DlqCommand::List { json, limit } = command;
    let names = TopologyNames::from(&config.amqp);
    let session = AmqpSession::connect(config.amqp.url.expose(), "agent-runner dlq").await?;
    session.declare(&names).await?;
    let letters = browse_queue(&session, &names.dead_letter_queue, limit).await?;
    if json {
        let rows: Vec<_> = letters.iter().map(row).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", table(&letters));
    }
    Ok(ExitCode::SUCCESS)
}

/// One DLQ entry as operators see it.
#[derive(Debug, serde::Serialize)]
struct Row {
    task_id: String,
    spec: String,
    reason: String,
    failed_step: String,
    attempts: String,
    failed_at: String,
    message: String,
}

fn row(letter: &DeadLetter) -> Row {
    let text = |name| letter.header_text(name).unwrap_or_else(|| "-".to_string());
    Row {
        task_id: text(header::TASK_ID),
        spec: text(header::SPEC),
        reason: letter.header_text(header::KIND).unwrap_or_else(|| "broker (x-death)".to_string()),
        failed_step: text(header::STEP),
        attempts: text(header::ATTEMPTS),
        failed_at: text(header::FAILED_AT),
        message: text(header::MESSAGE),
    }
}

fn table(letters: &[DeadLetter]) -> String {
    let mut out = format!("{} message(s)\n", letters.len());
    out.push_str(&format!(
        "{:<12} {:<16} {:<22} {:<10} {:<8} {}\n",
        "TASK", "SPEC", "REASON", "STEP", "ATTEMPTS", "MESSAGE"
    ));
    for letter in letters {
        let r = row(letter);
        let message: String = r.message.chars().take(80).collect();
        out.push_str(&format!(
            "{:<12} {:<16} {:<22} {:<10} {:<8} {}\n",
            r.task_id, r.spec, r.reason, r.failed_step, r.attempts, message
        ));
    }
    out
}
