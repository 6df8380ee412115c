//! The command-line layer: values given as flags, the highest precedence.
//!
//! The CLI fills a [`ConfigOverrides`] from its parsed arguments; values stay raw
//! (strings and plain numbers) so they are checked by the same rules as the other
//! layers, and errors name the flag as documented on each field.

use std::fmt;
use std::path::PathBuf;

use super::layer::Layered;
use super::values::{self as v, AmqpUrl, ArtifactStoreLocation, ExecutionMode, LogLevel};
use super::{ConfigError, ConfigSource, MAX_CONCURRENCY};

/// Flag values; `None` leaves the lower layers' value. Each field's doc gives the flag
/// name the CLI must use, which is also how errors refer to it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConfigOverrides {
    /// `--amqp-url`. Masked in `Debug`: it usually holds a password.
    pub amqp_url: Option<String>,
    /// `--concurrency`.
    pub concurrency: Option<u64>,
    /// `--prefetch`.
    pub prefetch: Option<u64>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--execution-mode`.
    pub execution_mode: Option<String>,
    /// `--pool-dir`.
    pub pool_dir: Option<PathBuf>,
    /// `--playbooks-dir`.
    pub playbooks_dir: Option<PathBuf>,
    /// `--artifact-store-url`.
    pub artifact_store_url: Option<String>,
    /// `--task-registry-url`.
    pub task_registry_url: Option<String>,
    /// `--repo-pool-url`.
    pub repo_pool_url: Option<String>,
    /// `--llm-endpoint`.
    pub llm_endpoint: Option<String>,
    /// `--llm-model`.
    pub llm_model: Option<String>,
    /// `--runner-id`.
    pub runner_id: Option<String>,
    /// `--timeout` (seconds): the default task timeout.
    pub default_timeout_seconds: Option<u64>,
    /// `--structured-logging` / `--text-logs` (false).
    pub structured_logging: Option<bool>,
    /// `--http-addr`: where to serve health and metrics.
    pub http_listen: Option<String>,
    /// `worker --idle-timeout` (seconds).
    pub idle_timeout_seconds: Option<u64>,
}

impl fmt::Debug for ConfigOverrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let amqp_url = self.amqp_url.as_deref().map(|url| match AmqpUrl::parse(url) {
            Ok(url) => url.redacted().to_string(),
            Err(_) => "<unparsable, hidden>".to_string(),
        });
        f.debug_struct("ConfigOverrides")
            .field("amqp_url", &amqp_url)
            .field("concurrency", &self.concurrency)
            .field("prefetch", &self.prefetch)
            .field("log_level", &self.log_level)
            .field("execution_mode", &self.execution_mode)
            .field("pool_dir", &self.pool_dir)
            .field("playbooks_dir", &self.playbooks_dir)
            .field("artifact_store_url", &self.artifact_store_url)
            .field("task_registry_url", &self.task_registry_url)
            .field("repo_pool_url", &self.repo_pool_url)
            .field("llm_endpoint", &self.llm_endpoint)
            .field("llm_model", &self.llm_model)
            .field("runner_id", &self.runner_id)
            .field("default_timeout_seconds", &self.default_timeout_seconds)
            .field("structured_logging", &self.structured_logging)
            .field("http_listen", &self.http_listen)
            .field("idle_timeout_seconds", &self.idle_timeout_seconds)
            .finish()
    }
}

impl ConfigOverrides {
    /// Lays the flags' values over `l`.
    pub(crate) fn apply(&self, l: &mut Layered) -> Result<(), ConfigError> {
        let o = self.clone();
        let f = ConfigSource::Flag;
        l.set(&f("--amqp-url"), "amqp.url", o.amqp_url, |s| AmqpUrl::parse(&s), |c| &mut c.amqp.url)?;
        let max = MAX_CONCURRENCY;
        l.set(
            &f("--concurrency"),
            "amqp.concurrency",
            o.concurrency,
            |n| v::in_range(n, 1, max),
            |c| &mut c.amqp.concurrency,
        )?;
        let max = u64::from(u16::MAX);
        l.set(
            &f("--prefetch"),
            "amqp.prefetch",
            o.prefetch,
            |n| v::in_range(n, 1, max),
            |c| &mut c.amqp.prefetch,
        )?;
        l.set(
            &f("--idle-timeout"),
            "amqp.idle_timeout_seconds",
            o.idle_timeout_seconds,
            |s| v::seconds(s).map(Some),
            |c| &mut c.amqp.idle_timeout,
        )?;
        l.set(
            &f("--log-level"),
            "log_level",
            o.log_level,
            |s| LogLevel::parse(&s),
            |c| &mut c.logging.level,
        )?;
        l.set(
            &f("--execution-mode"),
            "execution_mode",
            o.execution_mode,
            |s| ExecutionMode::parse(&s),
            |c| &mut c.execution_mode,
        )?;
        l.set(&f("--pool-dir"), "pool_dir", o.pool_dir, v::directory, |c| &mut c.pool_dir)?;
        l.set(&f("--playbooks-dir"), "playbooks_dir", o.playbooks_dir, v::directory, |c| {
            &mut c.playbooks_dir
        })?;
        self.apply_services(l)?;
        super::ops::apply_flag(o.http_listen, l)?;
        l.set(&f("--llm-model"), "llm.model", o.llm_model, |s| v::text_line(&s), |c| &mut c.llm.model)?;
        l.set(&f("--runner-id"), "runner_id", o.runner_id, |s| v::runner_id(&s), |c| &mut c.runner_id)?;
        l.set(&f("--timeout"), "default_timeout_seconds", o.default_timeout_seconds, v::seconds, |c| {
            &mut c.default_timeout
        })?;
        l.set(&f("--structured-logging"), "structured_logging", o.structured_logging, Ok, |c| {
            &mut c.logging.structured
        })
    }

    fn apply_services(&self, l: &mut Layered) -> Result<(), ConfigError> {
        let o = self.clone();
        let f = ConfigSource::Flag;
        let http = |s: String| v::http_url(&s).map(Some);
        l.set(
            &f("--artifact-store-url"),
            "artifact_store_url",
            o.artifact_store_url,
            |s| ArtifactStoreLocation::parse(&s),
            |c| &mut c.services.artifact_store,
        )?;
        l.set(&f("--task-registry-url"), "task_registry_url", o.task_registry_url, http, |c| {
            &mut c.services.task_registry_url
        })?;
        l.set(&f("--repo-pool-url"), "repo_pool_url", o.repo_pool_url, http, |c| {
            &mut c.services.repo_pool_url
        })?;
        l.set(&f("--llm-endpoint"), "llm.endpoint", o.llm_endpoint, http, |c| &mut c.llm.endpoint)
    }
}
