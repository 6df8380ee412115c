//! `agent-runner worker`: consume tasks until SIGTERM/SIGINT.

use std::process::ExitCode;
use std::sync::Arc;

use crate::amqp::TopologyNames;
use crate::config::RunnerConfig;
use crate::worker::{Worker, WorkerOptions};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Tasks run at once (and the prefetch count).
    #[arg(long)]
    pub concurrency: Option<u64>,
    /// Take one task, finish it, exit (for Kubernetes Jobs and KEDA ScaledJobs, where
    /// scale-in must never kill a running task).
    #[arg(long)]
    pub once: bool,
    /// Exit 0 after this many seconds with nothing running and nothing delivered
    /// (overrides amqp.idle_timeout_seconds), so a Job that found the queue empty ends.
    #[arg(long, value_name = "SECONDS")]
    pub idle_timeout: Option<u64>,
    #[command(flatten)]
    pub runner: super::args::RunnerArgs,
    #[command(flatten)]
    pub serve: super::args::ServeArgs,
}

pub async fn run(config: RunnerConfig, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let secrets = super::ready_to_run(&config).await?;
    // Warnings only: see `clients::startup` for why a service that is down does not stop
    // the worker.
    crate::clients::check_services_at_startup(&config).await;
    let worker = Worker::connect(&config, secrets, TopologyNames::from(&config.amqp)).await?;
    let options = WorkerOptions {
        concurrency: u16::try_from(config.amqp.concurrency).unwrap_or(u16::MAX),
        stop_after: args.once.then_some(1),
        consumer_tag: config.runner_id.clone(),
        idle_timeout: config.amqp.idle_timeout,
    };
    // A signal ends the loop gracefully (see `worker::run_loop`); stopping on a signal is
    // success, even when running tasks had to be left for redelivery.
    let shutdown = super::serve_until_signal(&config).await?;
    let report = Arc::new(worker).run(options, shutdown).await?;
    tracing::info!(
        acked = report.acked,
        dead_lettered = report.dead_lettered,
        retried = report.retried,
        left_for_redelivery = report.unsettled,
        reconnects = report.reconnects,
        "worker stopped"
    );
    Ok(ExitCode::SUCCESS)
}
