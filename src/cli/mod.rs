//! The command line: `main` calls [`main`], which parses arguments, loads the
//! configuration (file < environment < flags) and runs one subcommand, one file each.

mod cancel;
mod config_validate;
mod demo;
mod dlq;
mod exit;
mod health;
mod mirror;
mod playbook;
mod publish;
mod run;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, ConfigOverrides, RunnerConfig};

/// agent-runner: takes coding tasks off RabbitMQ and turns each into a tested, pushed branch.
#[derive(Debug, Parser)]
#[command(name = "agent-runner", version = env!("AGENT_RUNNER_LONG_VERSION"), about)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand takes; each overrides the file and the environment.
#[derive(Debug, clap::Args)]
struct GlobalArgs {
    /// YAML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Broker URL (overrides AMQP_URL).
    #[arg(long, global = true, value_name = "URL")]
    amqp_url: Option<String>,
    /// trace, debug, info, warn or error.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Human-readable logs instead of JSON lines.
    #[arg(long, global = true)]
    text_logs: bool,
    /// Identifies this worker in events and DLQ headers.
    #[arg(long, global = true)]
    runner_id: Option<String>,
    /// Root of the local slot pool.
    #[arg(long, global = true, value_name = "DIR")]
    pool_dir: Option<PathBuf>,
    /// Where named playbooks are found.
    #[arg(long, global = true, value_name = "DIR")]
    playbooks_dir: Option<PathBuf>,
    /// Artifact store URL (file:///path).
    #[arg(long, global = true, value_name = "URL")]
    artifact_store_url: Option<String>,
    /// OpenAI-compatible base URL, e.g. http://127.0.0.1:11434/v1.
    #[arg(long, global = true, value_name = "URL")]
    llm_endpoint: Option<String>,
    /// Model name.
    #[arg(long, global = true)]
    llm_model: Option<String>,
    /// local-process, sandbox or docker.
    #[arg(long, global = true)]
    execution_mode: Option<String>,
    /// Default task timeout in seconds.
    #[arg(long, global = true, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Serve /livez, /readyz and /metrics on this address (ip:port), for worker and mirror.
    #[arg(long, global = true, value_name = "ADDR")]
    http_addr: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume tasks from the work queue and run them.
    Worker(worker::WorkerArgs),
    /// Run one task from a JSON file, without a broker; prints the run summary.
    Run(run::RunArgs),
    /// Publish a task file to the task exchange, as a Dispatcher would.
    Publish(publish::PublishArgs),
    /// Playbook tools.
    #[command(subcommand)]
    Playbook(playbook::PlaybookCommand),
    /// Configuration tools.
    #[command(subcommand)]
    Config(config_validate::ConfigCommand),
    /// Inspect, replay and purge the dead-letter queue.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Cancel a task wherever it runs (through the control exchange).
    Cancel(cancel::CancelArgs),
    /// The whole product on embedded defaults: sample repository, task, worker, results.
    Demo(demo::DemoArgs),
    /// Apply lifecycle events from the events exchange to the Task Registry.
    Mirror(mirror::MirrorArgs),
    /// Ask a running worker or mirror on this host whether it is ready (exit 0) or not
    /// (exit 1): a container healthcheck without curl.
    Health(health::HealthArgs),
}

impl GlobalArgs {
    /// The flags as overrides; `worker` adds its own (`--concurrency`, `--idle-timeout`).
    fn overrides(&self, worker: Option<&worker::WorkerArgs>) -> ConfigOverrides {
        ConfigOverrides {
            amqp_url: self.amqp_url.clone(),
            concurrency: worker.and_then(|w| w.concurrency),
            idle_timeout_seconds: worker.and_then(|w| w.idle_timeout),
            log_level: self.log_level.clone(),
            execution_mode: self.execution_mode.clone(),
            pool_dir: self.pool_dir.clone(),
            playbooks_dir: self.playbooks_dir.clone(),
            artifact_store_url: self.artifact_store_url.clone(),
            llm_endpoint: self.llm_endpoint.clone(),
            llm_model: self.llm_model.clone(),
            runner_id: self.runner_id.clone(),
            default_timeout_seconds: self.timeout,
            structured_logging: self.text_logs.then_some(false),
            http_listen: self.http_addr.clone(),
            ..ConfigOverrides::default()
        }
    }

    fn load(&self, worker: Option<&worker::WorkerArgs>) -> anyhow::Result<RunnerConfig> {
        let config = config::load(self.config.as_deref(), &config::process_env, &self.overrides(worker))?;
        crate::telemetry::init(&config.logging);
        // Every subcommand's output is masked, not only a runner's: `dlq show` prints
        // message bodies, errors may quote what they could not parse. A secret that cannot
        // be read here fails the commands that need it, later, with the reason.
        if let Ok(secrets) = crate::pipeline::RunnerSecrets::from_env(&config, &config::process_env) {
            crate::telemetry::mask_in_logs(&secrets.masker(&config));
        }
        Ok(config)
    }
}

/// Parses the command line and runs it. Errors are printed once, without a backtrace,
/// and end the process with the exit code of their kind (`exit`).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return exit::Exit::Internal.into();
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", crate::telemetry::mask_output(&exit::one_line(&error)));
            exit::exit_for(&error).into()
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let global = &cli.global;
    match cli.command {
        Command::Worker(args) => worker::run(global.load(Some(&args))?, args).await,
        Command::Run(args) => run::run(global.load(None)?, args).await,
        Command::Publish(args) => publish::run(global.load(None)?, args).await,
        Command::Playbook(command) => {
            // Validation needs no configuration; loading it only arms the output masking.
            let _ = global.load(None);
            playbook::run(command)
        }
        Command::Config(command) => {
            // The file under test is the argument; loading `--config` (if any) only arms
            // the output masking, and a failure there is not this command's verdict.
            let _ = global.load(None);
            config_validate::run(command)
        }
        Command::Dlq(command) => dlq::run(global.load(None)?, command).await,
        Command::Cancel(args) => cancel::run(global.load(None)?, args).await,
        Command::Demo(args) => demo::run(global.load(None)?, args).await,
        Command::Mirror(args) => mirror::run(global.load(None)?, args).await,
        Command::Health(args) => health::run(global.load(None)?, args).await,
    }
}

/// Starts the health and metrics endpoints when `http.listen` is configured; they stop
/// when `shutdown` is cancelled.
pub(crate) async fn serve_http(
    config: &RunnerConfig,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    if let Some(addr) = config.http.listen {
        let server = crate::http::HttpServer::bind(addr).await?;
        let addr = server.local_addr().map(|a| a.to_string());
        tracing::info!(addr = addr.as_deref(), "serving /livez, /readyz and /metrics");
        server.spawn(crate::http::Readiness::process().clone(), shutdown.clone());
    }
    Ok(())
}

/// A root cancellation token fired by SIGTERM or SIGINT.
pub(crate) fn shutdown_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        tracing::info!("shutdown requested");
        trigger.cancel();
    });
    token
}
