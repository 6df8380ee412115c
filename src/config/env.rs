//! The environment layer: variables that override the config file.
//!
//! The lookup is injected (`&dyn Fn(&str) -> Option<String>`), so tests never touch
//! the process environment. An empty value counts as unset, so a compose file can
//! pass `LLM_ENDPOINT: ${LLM_ENDPOINT:-}` through without changing anything.
//!
//! | variable | config key | notes |
//! |---|---|---|
//! | `AMQP_URL` | `amqp.url` | `amqp://` or `amqps://` |
//! | `TASK_REGISTRY_URL` | `task_registry_url` | http/https |
//! | `REPO_POOL_URL` | `repo_pool_url` | http/https |
//! | `ARTIFACT_STORE_URL` | `artifact_store_url` | file/http/https/s3 |
//! | `RUNNER_LOG_LEVEL` | `log_level` | any case |
//! | `RUNNER_TIMEOUT` | `default_timeout_seconds` | seconds |
//! | `RUNNER_CONCURRENCY` | `amqp.concurrency` | 1..=64 |
//! | `RUNNER_EXECUTION_MODE` | `execution_mode` | local-process, sandbox, docker, kubernetes |
//! | `RUNNER_ID` | `runner_id` | |
//! | `RUNNER_POOL_DIR` | `pool_dir` | |
//! | `RUNNER_PLAYBOOKS_DIR` | `playbooks_dir` | |
//! | `RUNNER_STRUCTURED_LOGGING` | `structured_logging` | true/false, 1/0, yes/no, on/off |
//! | `LLM_MODEL` | `llm.model` | |
//! | `OPENAI_BASE_URL` | `llm.endpoint` | the OpenAI SDKs' name; `LLM_ENDPOINT` wins |
//! | `LLM_ENDPOINT` | `llm.endpoint` | http/https |
//! | `LLM_TIMEOUT_SECONDS` | `llm.timeout_seconds` | seconds |
//! | `LLM_CONTEXT_TOKENS` | `llm.context_tokens` | tokens |
//! | `LLM_TEMPERATURE` | `llm.temperature` | 0 to 2 |
//! | `LLM_MAX_TOKENS` | `llm.max_tokens` | tokens |
//! | `RUNNER_HTTP_LISTEN` | `http.listen` | `ip:port` (applied by `ops`) |
//! | `HOSTNAME` | default of `runner_id` | read for the defaults only |
//! | `AGENT_RUNNER_HOME` | default of `pool_dir`, `artifact_store_url` | data directory, default `./.agent-runner` |
//!
//! Secrets are not configuration: the variables named by `git_token_env_var`
//! (`GIT_TOKEN`) and `llm_api_key_env_var` (`OPENAI_API_KEY`), or the same names with
//! `_FILE` appended, are read by [`super::read_secret`].

use std::path::PathBuf;

use super::layer::Layered;
use super::values::{self as v, AmqpUrl, ArtifactStoreLocation, ExecutionMode, LogLevel};
use super::{ConfigError, ConfigSource, MAX_CONCURRENCY, RunnerConfig};

/// Every variable this layer reads, with the config key it sets, in the order applied
/// (later wins when two set the same key).
pub const VARIABLES: &[(&str, &str)] = &[
    ("AMQP_URL", "amqp.url"),
    ("TASK_REGISTRY_URL", "task_registry_url"),
    ("REPO_POOL_URL", "repo_pool_url"),
    ("ARTIFACT_STORE_URL", "artifact_store_url"),
    ("RUNNER_LOG_LEVEL", "log_level"),
    ("RUNNER_TIMEOUT", "default_timeout_seconds"),
    ("RUNNER_CONCURRENCY", "amqp.concurrency"),
    ("RUNNER_EXECUTION_MODE", "execution_mode"),
    ("RUNNER_ID", "runner_id"),
    ("RUNNER_POOL_DIR", "pool_dir"),
    ("RUNNER_PLAYBOOKS_DIR", "playbooks_dir"),
    ("RUNNER_STRUCTURED_LOGGING", "structured_logging"),
    ("LLM_MODEL", "llm.model"),
    ("OPENAI_BASE_URL", "llm.endpoint"),
    ("LLM_ENDPOINT", "llm.endpoint"),
    ("LLM_TIMEOUT_SECONDS", "llm.timeout_seconds"),
    ("LLM_CONTEXT_TOKENS", "llm.context_tokens"),
    ("LLM_TEMPERATURE", "llm.temperature"),
    ("LLM_MAX_TOKENS", "llm.max_tokens"),
    ("RUNNER_HTTP_LISTEN", "http.listen"),
];

/// One environment lookup, applied variable by variable.
struct EnvLayer<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl EnvLayer<'_> {
    /// Sets `key` from variable `var` when it is set and not empty; errors name
    /// `env <var>`.
    fn set<T>(
        &self,
        l: &mut Layered,
        (var, key): (&str, &'static str),
        check: impl FnOnce(&str) -> Result<T, String>,
        slot: fn(&mut RunnerConfig) -> &mut T,
    ) -> Result<(), ConfigError> {
        let value = (self.env)(var).filter(|value| !value.trim().is_empty());
        let origin = ConfigSource::Env(var.to_string());
        l.set(&origin, key, value, |s| check(&s), slot)
    }
}

/// Lays the environment's values over `l`.
pub(crate) fn apply(env: &dyn Fn(&str) -> Option<String>, l: &mut Layered) -> Result<(), ConfigError> {
    let e = EnvLayer { env };
    e.set(l, ("AMQP_URL", "amqp.url"), AmqpUrl::parse, |c| &mut c.amqp.url)?;
    e.set(
        l,
        ("TASK_REGISTRY_URL", "task_registry_url"),
        |s| v::http_url(s).map(Some),
        |c| &mut c.services.task_registry_url,
    )?;
    e.set(
        l,
        ("REPO_POOL_URL", "repo_pool_url"),
        |s| v::http_url(s).map(Some),
        |c| &mut c.services.repo_pool_url,
    )?;
    e.set(l, ("ARTIFACT_STORE_URL", "artifact_store_url"), ArtifactStoreLocation::parse, |c| {
        &mut c.services.artifact_store
    })?;
    e.set(l, ("RUNNER_LOG_LEVEL", "log_level"), LogLevel::parse, |c| &mut c.logging.level)?;
    e.set(
        l,
        ("RUNNER_TIMEOUT", "default_timeout_seconds"),
        |s| v::seconds(v::number(s)?),
        |c| &mut c.default_timeout,
    )?;
    e.set(
        l,
        ("RUNNER_CONCURRENCY", "amqp.concurrency"),
        |s| v::in_range(v::number(s)?, 1, MAX_CONCURRENCY),
        |c| &mut c.amqp.concurrency,
    )?;
    e.set(l, ("RUNNER_EXECUTION_MODE", "execution_mode"), ExecutionMode::parse, |c| &mut c.execution_mode)?;
    e.set(l, ("RUNNER_ID", "runner_id"), v::runner_id, |c| &mut c.runner_id)?;
    e.set(l, ("RUNNER_POOL_DIR", "pool_dir"), |s| v::directory(PathBuf::from(s)), |c| &mut c.pool_dir)?;
    e.set(
        l,
        ("RUNNER_PLAYBOOKS_DIR", "playbooks_dir"),
        |s| v::directory(PathBuf::from(s)),
        |c| &mut c.playbooks_dir,
    )?;
    e.set(l, ("RUNNER_STRUCTURED_LOGGING", "structured_logging"), v::boolean, |c| &mut c.logging.structured)?;
    apply_llm(&e, l)
}

fn apply_llm(e: &EnvLayer<'_>, l: &mut Layered) -> Result<(), ConfigError> {
    e.set(l, ("LLM_MODEL", "llm.model"), v::text_line, |c| &mut c.llm.model)?;
    // OPENAI_BASE_URL first so that the more specific LLM_ENDPOINT wins.
    for var in ["OPENAI_BASE_URL", "LLM_ENDPOINT"] {
        e.set(l, (var, "llm.endpoint"), |s| v::http_url(s).map(Some), |c| &mut c.llm.endpoint)?;
    }
    e.set(
        l,
        ("LLM_TIMEOUT_SECONDS", "llm.timeout_seconds"),
        |s| v::seconds(v::number(s)?),
        |c| &mut c.llm.timeout,
    )?;
    e.set(
        l,
        ("LLM_CONTEXT_TOKENS", "llm.context_tokens"),
        |s| v::context_tokens(v::number(s)?).map(Some),
        |c| &mut c.llm.context_tokens,
    )?;
    e.set(
        l,
        ("LLM_TEMPERATURE", "llm.temperature"),
        |s| v::temperature(s.trim().parse().map_err(|_| format!("expected a number, got `{s}`"))?),
        |c| &mut c.llm.temperature,
    )?;
    e.set(
        l,
        ("LLM_MAX_TOKENS", "llm.max_tokens"),
        |s| v::max_tokens(v::number(s)?).map(Some),
        |c| &mut c.llm.max_tokens,
    )
}
