//! The options shared between subcommands, in three groups so that each subcommand's
//! `--help` lists only what applies to it: [`CommonArgs`] (every subcommand: where the
//! configuration, the broker and the logs are), [`RunnerArgs`] (the subcommands that run
//! tasks: `worker`, `run`, `demo`) and [`ServeArgs`] (the long-running processes that
//! serve health and metrics: `worker`, `mirror`). The runner and serve options are also
//! accepted before the subcommand, as in `agent-runner --llm-endpoint URL run …`; given
//! in both places, the subcommand's wins.

use std::path::PathBuf;

use crate::config::{self, ConfigOverrides, RunnerConfig};

/// Options every subcommand takes; each overrides the file and the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// YAML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Broker URL (overrides AMQP_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub amqp_url: Option<String>,
    /// trace, debug, info, warn or error.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// Human-readable logs instead of JSON lines.
    #[arg(long, global = true)]
    pub text_logs: bool,
}

/// Options of the subcommands that run tasks.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Runner options")]
pub struct RunnerArgs {
    /// Identifies this worker in events and DLQ headers.
    #[arg(long)]
    pub runner_id: Option<String>,
    /// Root of the local slot pool.
    #[arg(long, value_name = "DIR")]
    pub pool_dir: Option<PathBuf>,
    /// Where named playbooks are found.
    #[arg(long, value_name = "DIR")]
    pub playbooks_dir: Option<PathBuf>,
    /// Artifact store URL (file:///path).
    #[arg(long, value_name = "URL")]
    pub artifact_store_url: Option<String>,
    /// OpenAI-compatible base URL, e.g. http://127.0.0.1:11434/v1.
    #[arg(long, value_name = "URL")]
    pub llm_endpoint: Option<String>,
    /// Model name.
    #[arg(long)]
    pub llm_model: Option<String>,
    /// local-process, sandbox or docker.
    #[arg(long)]
    pub execution_mode: Option<String>,
    /// Default task timeout in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

/// Options of the processes that serve /livez, /readyz and /metrics.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Serving options")]
pub struct ServeArgs {
    /// Serve /livez, /readyz and /metrics on this address (ip:port).
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<String>,
}

impl RunnerArgs {
    /// These options, each one not given taken from `before` (the same options given
    /// before the subcommand).
    pub fn or(self, before: &RunnerArgs) -> RunnerArgs {
        let before = before.clone();
        RunnerArgs {
            runner_id: self.runner_id.or(before.runner_id),
            pool_dir: self.pool_dir.or(before.pool_dir),
            playbooks_dir: self.playbooks_dir.or(before.playbooks_dir),
            artifact_store_url: self.artifact_store_url.or(before.artifact_store_url),
            llm_endpoint: self.llm_endpoint.or(before.llm_endpoint),
            llm_model: self.llm_model.or(before.llm_model),
            execution_mode: self.execution_mode.or(before.execution_mode),
            timeout: self.timeout.or(before.timeout),
        }
    }
}

impl ServeArgs {
    /// As [`RunnerArgs::or`].
    pub fn or(self, before: &ServeArgs) -> ServeArgs {
        ServeArgs { http_addr: self.http_addr.or_else(|| before.http_addr.clone()) }
    }
}

impl CommonArgs {
    /// The flags as overrides; `worker` adds its own (`--concurrency`, `--idle-timeout`).
    fn overrides(
        &self,
        runner: &RunnerArgs,
        serve: &ServeArgs,
        worker: Option<&super::worker::WorkerArgs>,
    ) -> ConfigOverrides {
        ConfigOverrides {
            amqp_url: self.amqp_url.clone(),
            concurrency: worker.and_then(|w| w.concurrency),
            idle_timeout_seconds: worker.and_then(|w| w.idle_timeout),
            log_level: self.log_level.clone(),
            execution_mode: runner.execution_mode.clone(),
            pool_dir: runner.pool_dir.clone(),
            playbooks_dir: runner.playbooks_dir.clone(),
            artifact_store_url: runner.artifact_store_url.clone(),
            llm_endpoint: runner.llm_endpoint.clone(),
            llm_model: runner.llm_model.clone(),
            runner_id: runner.runner_id.clone(),
            default_timeout_seconds: runner.timeout,
            structured_logging: self.text_logs.then_some(false),
            http_listen: serve.http_addr.clone(),
            ..ConfigOverrides::default()
        }
    }

    /// The configuration (file < environment < flags), with logging started and the
    /// output masking armed.
    pub fn load(
        &self,
        runner: &RunnerArgs,
        serve: &ServeArgs,
        worker: Option<&super::worker::WorkerArgs>,
    ) -> anyhow::Result<RunnerConfig> {
        let overrides = self.overrides(runner, serve, worker);
        let config = config::load(self.config.as_deref(), &config::process_env, &overrides)?;
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
