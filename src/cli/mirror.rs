//! `agent-runner mirror`: lifecycle events into the Task Registry until SIGTERM/SIGINT.

use std::process::ExitCode;

use crate::amqp::{AmqpSession, MirrorTopology};
use crate::clients::{ClientSettings, TaskRegistryClient};
use crate::config::RunnerConfig;
use crate::http::Readiness;
use crate::mirror::{Mirror, MirrorSettings};

#[derive(Debug, clap::Args)]
pub struct MirrorArgs {
    /// Stop after this many events (for a one-off catch-up run).
    #[arg(long, value_name = "N")]
    pub max_events: Option<usize>,
    #[command(flatten)]
    pub serve: super::args::ServeArgs,
}

pub async fn run(config: RunnerConfig, args: MirrorArgs) -> anyhow::Result<ExitCode> {
    let registry_url = config.services.task_registry_url.clone().ok_or_else(|| {
        super::exit::MissingSetting(
            "the mirror needs task_registry_url (TASK_REGISTRY_URL) to write to".into(),
        )
    })?;
    let settings = ClientSettings { retries: config.retry.network, ..ClientSettings::default() };
    let registry = TaskRegistryClient::new(registry_url, settings)?;
    let session = AmqpSession::connect(config.amqp.url.expose(), &config.runner_id).await?;
    let topology = MirrorTopology {
        events_exchange: config.amqp.events_exchange.clone(),
        queue: config.mirror.queue.clone(),
        binding_keys: config.mirror.binding_keys.clone(),
        dead_letter_exchange: config.mirror.dead_letter_exchange.clone(),
        dead_letter_queue: config.mirror.dead_letter_queue.clone(),
    };
    let mirror = Mirror {
        session,
        topology,
        registry,
        settings: MirrorSettings {
            runner_id: config.runner_id.clone(),
            prefetch: config.mirror.prefetch,
            retry_max_delay: config.mirror.retry_max_delay,
            ..MirrorSettings::default()
        },
        readiness: Readiness::process().clone(),
    };
    let shutdown = super::serve_until_signal(&config).await?;
    let report = mirror.run(shutdown, args.max_events).await?;
    tracing::info!(
        applied = report.applied,
        duplicates = report.duplicates,
        skipped = report.skipped,
        dead_lettered = report.dead_lettered,
        "mirror stopped"
    );
    Ok(ExitCode::SUCCESS)
}
