//! `agent-runner dlq`: list, show, replay and purge dead-lettered tasks.
//!
//! Every subcommand makes one pass over the dead-letter queue (see
//! [`crate::amqp::DlqCursor`]): every message not replayed or purged is put back
//! unchanged, in its order, without growing its delivery count. Each dead letter has a
//! stable id (`dlq list` shows it) that `show`, `replay --id` and `purge --id` accept,
//! so a message that is not a task (no task id) is addressable too. Replay republishes to the task exchange under
//! publisher confirms and removes the dead letter only after the broker confirmed, so a
//! failure at any point leaves the task in one place or (at worst, if the process dies
//! between the two) in both, never in neither.
//!
//! Replay and purge count the matching letters first (a browsing pass), then act in queue
//! order with `n/total`, rate and time left ([`progress`]). An interrupted replay resumes
//! by running it again: what was replayed is gone from the queue, the rest is still there,
//! and the one message in flight at the interruption may be in both places; its second
//! copy costs no new work, since a redelivered task finds its branch and artifacts by its
//! task id and completes as a resume.

mod filter;
mod output;
mod progress;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::amqp::{
    AmqpSession, DeadLetter, DlqCursor, HeaderMap, HeaderValue, HeldLetter, Outgoing, TopologyNames, header,
};
use crate::config::RunnerConfig;
use crate::telemetry::mask_output;
use filter::Filters;
use progress::Progress;

/// The default replay pace: fast enough to drain hundreds in a minute, slow enough not to
/// flood the workers (and whatever service made the tasks fail) all at once.
const DEFAULT_REPLAY_RATE: u32 = 10;

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List dead-lettered tasks (without removing them).
    List {
        #[command(flatten)]
        filters: Filters,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Group by failure kind instead of listing each message.
        #[arg(long)]
        summary: bool,
    },
    /// Show dead letters in full, every header and the message body: the one with this
    /// id, or all of a task's.
    Show {
        /// A dead letter's id (from `dlq list`) or a task id.
        id_or_task_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Republish dead-lettered tasks to the task exchange, with a fresh attempt count.
    Replay {
        #[command(flatten)]
        filters: Filters,
        /// Say what would be replayed, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Messages replayed per second at most.
        #[arg(long, default_value_t = DEFAULT_REPLAY_RATE, value_parser = clap::value_parser!(u32).range(1..=1000))]
        rate: u32,
    },
    /// Delete dead-lettered tasks for good.
    Purge {
        #[command(flatten)]
        filters: Filters,
        /// Say what would be purged, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Confirm the deletion (required unless --dry-run).
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(config: RunnerConfig, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let (session, names) = super::broker_session(&config, "agent-runner dlq").await?;
    match command {
        DlqCommand::List { filters, json, summary } => {
            let letters = collect(&session, &names, &filters).await?;
            let now = chrono::Utc::now();
            match (json, summary) {
                (true, true) => {
                    println!(
                        "{}",
                        mask_output(&serde_json::to_string_pretty(&output::groups(&letters, now))?)
                    )
                }
                (true, false) => {
                    println!("{}", mask_output(&serde_json::to_string_pretty(&output::rows(&letters, now))?))
                }
                (false, true) => print!("{}", mask_output(&output::summary_table(&letters, now))),
                (false, false) => print!("{}", mask_output(&output::table(&letters, now))),
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { id_or_task_id, json } => {
            let mut letters = collect(&session, &names, &Filters::default()).await?;
            letters.retain(|letter| {
                letter.id == id_or_task_id
                    || letter.header_text(header::TASK_ID).as_deref() == Some(id_or_task_id.as_str())
            });
            if letters.is_empty() {
                eprintln!("no dead letter with id or task id {id_or_task_id}");
                return Ok(ExitCode::FAILURE);
            }
            if json {
                println!("{}", mask_output(&serde_json::to_string_pretty(&letters)?));
            } else {
                print!("{}", mask_output(&output::details(&letters)));
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay { filters, dry_run, rate } => {
            replay(&session, &names, &filters, dry_run, rate).await
        }
        DlqCommand::Purge { filters, dry_run, yes } => {
            if !yes && !dry_run {
                let reason = "refusing to purge without --yes (try --dry-run to see what would go)";
                return Err(crate::cli::exit::UsageError(reason.into()).into());
            }
            purge(&session, &names, &filters, dry_run).await
        }
    }
}

/// The matching dead letters, left in the queue.
async fn collect(
    session: &AmqpSession,
    names: &TopologyNames,
    filters: &Filters,
) -> anyhow::Result<Vec<DeadLetter>> {
    let mut pass = Selection::open(session, names, filters, chrono::Utc::now()).await?;
    let mut letters = Vec::new();
    let passed = async {
        while let Some(held) = pass.next().await? {
            letters.push(held.letter.clone());
            pass.cursor.keep(held).await?;
        }
        Ok::<(), crate::amqp::AmqpError>(())
    }
    .await;
    pass.cursor.release().await;
    passed?;
    Ok(letters)
}

/// One pass over the DLQ that hands out, in queue order, the letters `filters` select
/// (up to `--limit`) and puts every other one back as it passes it; the caller keeps or
/// removes what it is handed. Every message is passed over, even past the limit:
/// stopping early would leave the rest ahead of the kept ones and change the order.
struct Selection<'a> {
    cursor: DlqCursor<'a>,
    filters: &'a Filters,
    now: chrono::DateTime<chrono::Utc>,
    limit: usize,
    /// How many letters were handed out so far.
    taken: usize,
}

impl<'a> Selection<'a> {
    async fn open(
        session: &'a AmqpSession,
        names: &TopologyNames,
        filters: &'a Filters,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Selection<'a>, crate::amqp::AmqpError> {
        let cursor = DlqCursor::open(session, &names.dead_letter_queue).await?;
        Ok(Selection { cursor, filters, now, limit: filters.limit.unwrap_or(usize::MAX), taken: 0 })
    }

    /// The next selected letter, held for the caller.
    async fn next(&mut self) -> Result<Option<HeldLetter>, crate::amqp::AmqpError> {
        while let Some(held) = self.cursor.next().await? {
            if self.taken < self.limit && self.filters.matches(&held.letter, self.now) {
                self.taken += 1;
                return Ok(Some(held));
            }
            self.cursor.keep(held).await?;
        }
        Ok(None)
    }
}

async fn replay(
    session: &AmqpSession,
    names: &TopologyNames,
    filters: &Filters,
    dry_run: bool,
    rate: u32,
) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let mut pace = tokio::time::interval(Duration::from_secs(1) / rate);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let total = collect(session, names, filters).await?.len();
    let mut progress = Progress::new(if dry_run { "would replay" } else { "replayed" }, total);
    let mut pass = Selection::open(session, names, filters, now).await?;
    while let Some(held) = pass.next().await? {
        let (routing_key, headers) = replayed(&held.letter, now);
        let line = output::one_line(&held.letter, now);
        if dry_run {
            progress.step(&format!("{line} -> {} '{routing_key}'", names.task_exchange));
            pass.cursor.keep(held).await?;
            continue;
        }
        pace.tick().await;
        let published = session
            .publisher
            .publish(Outgoing {
                exchange: &names.task_exchange,
                routing_key: &routing_key,
                body: held.body(),
                headers: &headers,
                mandatory: true,
            })
            .await;
        if let Err(error) = published {
            progress.finish();
            pass.cursor.keep(held).await?;
            let replayed = pass.taken - 1;
            pass.cursor.release().await;
            return Err(error).with_context(|| {
                format!("replaying {line} failed after {replayed} replayed; it stays in the DLQ")
            });
        }
        pass.cursor
            .remove(held)
            .await
            .with_context(|| format!("{line} was replayed but could not be removed from the DLQ"))?;
        progress.step(&format!("{line} -> {} '{routing_key}'", names.task_exchange));
    }
    let done = pass.taken;
    pass.cursor.release().await;
    progress.finish();
    println!("{done} message(s) {}", if dry_run { "would be replayed" } else { "replayed" });
    Ok(ExitCode::SUCCESS)
}

/// The routing key and headers a replayed message goes out with: the Dispatcher's key,
/// no failure or attempt headers (the attempt count starts over), and the replay noted.
fn replayed(letter: &DeadLetter, now: chrono::DateTime<chrono::Utc>) -> (String, HeaderMap) {
    let routing_key =
        letter.header_text(header::ORIGINAL_ROUTING_KEY).unwrap_or_else(|| letter.routing_key.clone());
    let replays = letter.headers.get(header::REPLAY_COUNT).and_then(HeaderValue::as_int).unwrap_or(0);
    let mut headers: HeaderMap = letter
        .headers
        .iter()
        .filter(|(name, _)| !name.starts_with("x-"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    headers.insert(header::REPLAYED_AT.into(), HeaderValue::Text(now.to_rfc3339()));
    headers.insert(header::REPLAY_COUNT.into(), HeaderValue::Int(replays + 1));
    headers.insert("x-replayed-reason".into(), HeaderValue::Text(filter::reason(letter)));
    (routing_key, headers)
}

async fn purge(
    session: &AmqpSession,
    names: &TopologyNames,
    filters: &Filters,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let now = chrono::Utc::now();
    let total = collect(session, names, filters).await?.len();
    let mut progress = Progress::new(if dry_run { "would purge" } else { "purged" }, total);
    let mut pass = Selection::open(session, names, filters, now).await?;
    while let Some(held) = pass.next().await? {
        let line = output::one_line(&held.letter, now);
        if dry_run {
            pass.cursor.keep(held).await?;
        } else {
            pass.cursor.remove(held).await?;
        }
        progress.step(&line);
    }
    let done = pass.taken;
    pass.cursor.release().await;
    progress.finish();
    println!("{done} message(s) {}", if dry_run { "would be purged" } else { "purged" });
    Ok(ExitCode::SUCCESS)
}
