//! The YAML config file (`--config`): its raw shape, read and parsed.
//!
//! These structs only deserialise. Every field is optional, so a file sets any subset;
//! unknown keys are refused with the parser's line and column and the list of expected
//! keys. Secrets are refused with a message saying where they belong (see `reject`); the
//! seed's flat Docker and Kubernetes keys load (see `deployment`). Value checks happen in `file_apply`, by the rules
//! shared with the other layers. The raw structs have no `Debug`: `amqp.url` may hold a
//! password.

use std::convert::Infallible;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use super::reject;

/// The whole file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `local-process`, `sandbox`, `docker` or `kubernetes` (loads; the worker refuses it).
    pub execution_mode: Option<String>,
    /// Task Registry base URL (http/https); unset: events go to the exchange only.
    pub task_registry_url: Option<String>,
    /// Repo Pool Manager base URL (http/https); unset: the local slot pool.
    pub repo_pool_url: Option<String>,
    /// Artifact store: `file:///abs/dir`, an http(s) Artifact Store, or `s3://bucket/prefix`.
    pub artifact_store_url: Option<String>,
    /// The LLM endpoint.
    pub llm: Option<RawLlm>,
    /// Task timeout in seconds, unless the task message sets one.
    pub default_timeout_seconds: Option<u64>,
    /// Retries of git operations (fetch, push).
    pub git_retry_count: Option<u64>,
    /// Retries of calls to the REST services.
    pub network_retry_count: Option<u64>,
    /// Retries of LLM requests (rate limits, 5xx).
    pub llm_retry_count: Option<u64>,
    /// Memory limit for playbook processes, in MiB.
    pub max_memory_mb: Option<u64>,
    /// CPU limit for playbook processes, 100 per core.
    pub max_cpu_percent: Option<u64>,
    /// trace, debug, info, warn or error (any case).
    pub log_level: Option<String>,
    /// JSON log lines when true.
    pub structured_logging: Option<bool>,
    /// Name of the environment variable holding the git token.
    pub git_token_env_var: Option<String>,
    /// Name of the environment variable holding the LLM API key.
    pub llm_api_key_env_var: Option<String>,
    /// Mask known secrets in every output.
    pub mask_secrets: Option<bool>,
    /// This worker's id in events and headers; default `$HOSTNAME` or `runner-<8 hex>`.
    pub runner_id: Option<String>,
    /// Root directory of the local slot pool.
    pub pool_dir: Option<PathBuf>,
    /// Where a task's own `slot_path` may lie.
    pub pool: Option<RawPool>,
    /// Directory of named playbooks.
    pub playbooks_dir: Option<PathBuf>,
    /// RabbitMQ connection and topology.
    pub amqp: Option<RawAmqp>,
    /// Commit identity and remote.
    pub git: Option<RawGit>,
    /// Playbook limits.
    pub playbook: Option<RawPlaybook>,
    /// Retries, dead-lettering, shutdown and reconnection.
    pub reliability: Option<RawReliability>,
    /// Settings for `execution_mode: docker`.
    pub docker: Option<RawDocker>,
    /// Health and metrics endpoints.
    pub http: Option<super::ops::RawHttp>,
    /// The Task Registry mirror.
    pub mirror: Option<super::ops::RawMirror>,
    /// Resource limits for playbook commands beyond memory and CPU.
    pub limits: Option<RawLimits>,
    /// Settings for `execution_mode: sandbox`.
    pub sandbox: Option<RawSandbox>,
    /// The implementation engine: mode, budgets, protected paths, prices.
    pub engine: Option<RawEngine>,
    /// The seed's spelling of `docker.image` (set one of the two).
    pub docker_image: Option<String>,
    /// The seed's spelling of `docker.volumes`: `host: container` (`:rw` to allow writes).
    pub docker_volumes: Option<super::deployment::Volumes>,
    /// Kubernetes namespace for `execution_mode: kubernetes` (not available in this build).
    pub k8s_namespace: Option<String>,
    /// Image for `execution_mode: kubernetes` (not available in this build).
    pub k8s_image: Option<String>,
    /// Kubernetes Secrets for `execution_mode: kubernetes` (not available in this build).
    pub k8s_secrets: Option<Vec<String>>,
}

/// `llm:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLlm {
    /// Model name, as the endpoint knows it.
    pub model: Option<String>,
    /// OpenAI-compatible base URL (http/https); unset: OpenAI's.
    pub endpoint: Option<String>,
    /// Per-request timeout in seconds.
    pub timeout_seconds: Option<u64>,
    /// The model's context window in tokens; unset: asked from the server.
    pub context_tokens: Option<u64>,
    /// Sampling temperature, 0 to 2.
    pub temperature: Option<f64>,
    /// Cap of completion tokens per request; unset: a quarter of the window, 256 to 4096.
    pub max_tokens: Option<u64>,
    /// Refused: the key comes from the environment or a secret file.
    #[serde(default, deserialize_with = "reject::api_key")]
    pub api_key: Option<Infallible>,
}

/// `amqp:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAmqp {
    /// Broker URL, `amqp://` or `amqps://`.
    pub url: Option<String>,
    /// Topic exchange tasks are published to.
    pub task_exchange: Option<String>,
    /// Quorum queue this worker consumes.
    pub work_queue: Option<String>,
    /// Routing keys binding the work queue to the task exchange.
    pub binding_keys: Option<Vec<String>>,
    /// Dead-letter exchange.
    pub dead_letter_exchange: Option<String>,
    /// Queue collecting dead-lettered tasks.
    pub dead_letter_queue: Option<String>,
    /// Topic exchange for lifecycle events.
    pub events_exchange: Option<String>,
    /// Exchange for operator commands.
    pub control_exchange: Option<String>,
    /// Deliveries of one message before the broker dead-letters it.
    pub delivery_limit: Option<u64>,
    /// Tasks run at once.
    pub concurrency: Option<u64>,
    /// Unacked deliveries held; defaults to `concurrency`.
    pub prefetch: Option<u64>,
    /// The broker's `consumer_timeout` in seconds, as deployed.
    pub consumer_timeout_seconds: Option<u64>,
    /// Stop the worker (exit 0) after this many seconds with nothing running and nothing
    /// delivered: a Kubernetes Job that lost the race for a task frees its pod.
    pub idle_timeout_seconds: Option<u64>,
}

/// `git:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGit {
    /// Commit author name.
    pub author_name: Option<String>,
    /// Commit author email.
    pub author_email: Option<String>,
    /// Remote fetched from and pushed to.
    pub remote_name: Option<String>,
    /// URL prefixes a task's `repo_url` must start with (at a `/` boundary); replaces the
    /// default `[https://]`. `file:///dir/` admits local paths under `/dir`.
    pub allowed_remotes: Option<Vec<String>>,
    /// Hosts (`github.com`, `host:port`) that may receive the git token, over https, or
    /// over http for an entry written `http://host:port`. Empty by default: a worker
    /// given a token refuses to start until this names its host.
    pub token_hosts: Option<Vec<String>>,
    /// Regexes for known false positives of the push guard's secret scan, matched against
    /// the offending added line or against `path:line`.
    pub secret_scan_allow: Option<Vec<String>>,
    /// Refused: the token comes from the environment or a secret file.
    #[serde(default, deserialize_with = "reject::git_token")]
    pub token: Option<Infallible>,
}

/// `pool:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    /// Directories a task message's `slot_path` must lie under (a root itself is not a
    /// slot); default: `pool_dir`.
    pub slot_roots: Option<Vec<PathBuf>>,
}

/// `playbook:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlaybook {
    /// Timeout in seconds of a step that sets none.
    pub default_step_timeout_seconds: Option<u64>,
    /// Bytes of output kept per step stream.
    pub output_cap_bytes: Option<u64>,
    /// Whether task messages may carry inline playbooks.
    pub allow_inline: Option<bool>,
    /// How many times failing test output goes back to the model before the task fails.
    pub repair_rounds: Option<u64>,
    /// Variables for step conditions (`lint_enabled: true`); scalars only.
    pub variables: Option<std::collections::BTreeMap<String, serde_yaml::Value>>,
}

/// `engine:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    /// `tools` (function calling) or `edit_blocks` (for endpoints without it).
    pub mode: Option<String>,
    /// Model turns per task, over all rounds.
    pub max_turns: Option<u64>,
    /// Prompt plus completion tokens per task.
    pub max_total_tokens: Option<u64>,
    /// Estimated dollars per task (needs the model in `prices`).
    pub max_cost_usd: Option<f64>,
    /// Wall time of the implement phase per task, in seconds.
    pub max_wall_seconds: Option<u64>,
    /// The same tool call this many times in a row counts as a stall.
    pub stall_repeated_calls: Option<u64>,
    /// This many turns in a row without a workspace change count as a stall.
    pub stall_turns_without_change: Option<u64>,
    /// Globs the model may read but not write (replaces the default list).
    pub protected_paths: Option<Vec<String>>,
    /// Per-model prices: `{model: {prompt_per_1k, completion_per_1k}}` in dollars.
    pub prices: Option<std::collections::BTreeMap<String, RawPrice>>,
}

/// One model's price under `engine.prices`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    /// Dollars per 1000 prompt tokens.
    pub prompt_per_1k: f64,
    /// Dollars per 1000 completion tokens.
    pub completion_per_1k: f64,
}

/// `reliability:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReliability {
    /// Attempts (first run included) before a transiently failing task is dead-lettered.
    pub max_attempts: Option<u64>,
    /// Waits before attempt 2, 3, ...; the last one repeats. One retry queue each.
    pub retry_delays_seconds: Option<Vec<u64>>,
    /// How long running tasks may finish after SIGTERM before they are stopped.
    pub shutdown_grace_seconds: Option<u64>,
    /// The longest wait between two reconnection attempts to the broker.
    pub reconnect_max_delay_seconds: Option<u64>,
}

/// `docker:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDocker {
    /// Image playbook commands run in.
    pub image: Option<String>,
    /// Bind mounts into every step container: `host:container` (read-only) or
    /// `host:container:rw`, or the seed's `host: container` map.
    pub volumes: Option<super::deployment::Volumes>,
}

/// `limits:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Processes one playbook command may have alive at once (fork-bomb guard).
    pub max_processes: Option<u64>,
    /// Largest file (bytes) the worker reads for the model or lets a task add or grow in
    /// its commit.
    pub max_file_bytes: Option<u64>,
}

/// `sandbox:`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSandbox {
    /// The uid a root worker's sandboxed commands run as (not 0); default 65534 (nobody).
    pub uid: Option<u64>,
    /// The gid they run as (not 0); default 65534 (nogroup).
    pub gid: Option<u64>,
    /// Absolute paths shown read-only in the sandbox, at the same place: toolchains outside
    /// `/usr` (`/opt/...`, `/root/.cargo`, `/root/.rustup`). Each must exist.
    pub read_only_paths: Option<Vec<PathBuf>>,
}

/// Reads the file's text (parsed by [`parse`]).
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile { path: path.to_path_buf(), source })
}

/// Parses file text; `path` is only for messages.
pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    // A file of comments only is a valid "change nothing", not an EOF error.
    if text.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#')) {
        return Ok(RawConfig::default());
    }
    serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: e.location().map(|l| l.line()),
        column: e.location().map(|l| l.column()),
        message: e.to_string(),
    })
}
