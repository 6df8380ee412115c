//! The command line: `main` calls [`main`], which parses arguments, loads the
//! configuration (file < environment < flags) and runs one subcommand, one file each.

mod args;
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

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::RunnerConfig;

use args::{CommonArgs, RunnerArgs, ServeArgs};

/// agent-runner: takes coding tasks off RabbitMQ and turns each into a tested, pushed branch.
#[derive(Debug, Parser)]
#[command(name = "agent-runner", version = env!("AGENT_RUNNER_LONG_VERSION"), about)]
pub struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// Also accepted here, before the subcommand, for the subcommands that run tasks.
    #[command(flatten)]
    runner: RunnerArgs,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Command,
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

/// Parses the command line and runs it. Errors are printed once, without a backtrace,
/// and end the process with the exit code of their kind (`exit`).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread could build a rustls configuration from the process default.
    crate::tls::install_crypto_provider();
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
    let (common, top_runner, top_serve) = (&cli.common, &cli.runner, &cli.serve);
    // Options of the subcommand win over the same ones given before it.
    let load =
        |runner: Option<&RunnerArgs>, serve: Option<&ServeArgs>, worker: Option<&worker::WorkerArgs>| {
            let runner = runner.map_or_else(|| top_runner.clone(), |r| r.clone().or(top_runner));
            let serve = serve.map_or_else(|| top_serve.clone(), |s| s.clone().or(top_serve));
            common.load(&runner, &serve, worker)
        };
    let plain = || load(None, None, None);
    match cli.command {
        Command::Worker(args) => {
            worker::run(load(Some(&args.runner), Some(&args.serve), Some(&args))?, args).await
        }
        Command::Run(args) => run::run(load(Some(&args.runner), None, None)?, args).await,
        Command::Publish(args) => publish::run(plain()?, args).await,
        Command::Playbook(command) => {
            // Validation needs no configuration; loading it only arms the output masking.
            let _ = plain();
            playbook::run(command)
        }
        Command::Config(command) => {
            // The file under test is the argument; loading `--config` (if any) only arms
            // the output masking, and a failure there is not this command's verdict.
            let _ = plain();
            config_validate::run(command)
        }
        Command::Dlq(command) => dlq::run(plain()?, command).await,
        Command::Cancel(args) => cancel::run(plain()?, args).await,
        Command::Demo(args) => demo::run(load(Some(&args.runner), None, None)?, args).await,
        Command::Mirror(args) => mirror::run(load(None, Some(&args.serve), None)?, args).await,
        Command::Health(args) => health::run(plain()?, args).await,
    }
}

/// The start-up of the subcommands that run tasks (`worker`, `run`): the secrets, then
/// whether this host can run tasks at all (`pipeline::preflight`). Configuration before
/// the host: a refused token says so without the checks' noise.
async fn ready_to_run(config: &RunnerConfig) -> anyhow::Result<crate::pipeline::RunnerSecrets> {
    let secrets = crate::pipeline::RunnerSecrets::from_env(config, &crate::config::process_env)?;
    secrets.check_token_hosts(config)?;
    crate::pipeline::preflight(config).await?;
    Ok(secrets)
}

/// The start-up of the long-running processes (`worker`, `mirror`): the root shutdown
/// token, and the health and metrics endpoints when `http.listen` is configured, served
/// until that token fires.
async fn serve_until_signal(config: &RunnerConfig) -> anyhow::Result<tokio_util::sync::CancellationToken> {
    let shutdown = shutdown_signal();
    if let Some(addr) = config.http.listen {
        let server = crate::http::HttpServer::bind(addr).await?;
        let addr = server.local_addr().map(|a| a.to_string());
        tracing::info!(addr = addr.as_deref(), "serving /livez, /readyz and /metrics");
        server.spawn(crate::http::Readiness::process().clone(), shutdown.clone());
    }
    Ok(shutdown)
}

/// The start-up of the operator commands that talk to the broker (`publish`, `cancel`,
/// `dlq`): a session named `connection_name` with the configured topology declared.
async fn broker_session(
    config: &RunnerConfig,
    connection_name: &str,
) -> anyhow::Result<(crate::amqp::AmqpSession, crate::amqp::TopologyNames)> {
    let names = crate::amqp::TopologyNames::from(&config.amqp);
    let session = crate::amqp::AmqpSession::connect(config.amqp.url.expose(), connection_name).await?;
    session.declare(&names).await?;
    Ok((session, names))
}

/// A root cancellation token fired by SIGTERM or SIGINT.
fn shutdown_signal() -> tokio_util::sync::CancellationToken {
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
