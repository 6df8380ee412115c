//! The worker's configuration: embedded defaults, a YAML file, environment variables and
//! command-line flags, merged in that order (each later layer wins), then checked once
//! into the typed [`RunnerConfig`] the program uses.
//!
//! - [`mod@file`]: the raw YAML shape (deserialise only, unknown keys refused);
//! - [`mod@env`]: the environment overlay and its table of variables;
//! - [`ConfigOverrides`]: the flags' layer, filled in by the CLI;
//! - [`read_secret`]: the git token and LLM key, which are never part of the config.
//!
//! Each component takes only its sub-struct ([`AmqpConfig`], [`LlmConfig`], ...).
//! Errors name the layer, the dotted key and the reason (see [`ConfigError`]).

mod deployment;
mod engine;
pub mod env;
mod error;
pub mod file;
mod file_apply;
mod layer;
mod ops;
mod overrides;
mod pod_config;
mod reject;
mod remotes;
mod secret;
mod values;

#[cfg(test)]
mod llm_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;

pub use deployment::{DockerVolume, KubernetesConfig, MAX_DOCKER_VOLUMES};
pub use error::{ConfigError, ConfigSource};
pub use ops::{HttpConfig, MirrorConfig};
pub use overrides::ConfigOverrides;
pub use pod_config::{CONFIG_ENV, env_forwarded_to_pods};
pub use secret::read_secret;
pub use values::{
    AmqpUrl, ArtifactStoreLocation, ExecutionMode, LogLevel, MAX_CONCURRENCY, MAX_CPU_PERCENT,
    MAX_OUTPUT_CAP_BYTES, MAX_RETRY_COUNT, MAX_TIMEOUT_SECONDS,
};

/// The default LLM model: small, cheap and good enough for scoped tasks; any
/// OpenAI-compatible model name can be set instead.
pub const DEFAULT_LLM_MODEL: &str = "gpt-4o-mini";
/// The default broker: a local RabbitMQ with its stock `guest` account.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Environment variable naming the worker's data directory (slots, artifacts).
pub const HOME_ENV_VAR: &str = "AGENT_RUNNER_HOME";
/// The data directory when [`HOME_ENV_VAR`] is unset: beside the working directory.
pub const DEFAULT_HOME: &str = ".agent-runner";

/// Everything the worker needs to run, checked and typed. Secrets are not here: see
/// [`read_secret`]. `Debug` is safe to log: the AMQP password is masked and the other
/// URLs are refused when they carry one.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerConfig {
    /// Identifies this worker in events, DLQ headers and slot allocations.
    pub runner_id: String,
    /// How playbook commands and LLM tools are run.
    pub execution_mode: ExecutionMode,
    /// The image for [`ExecutionMode::Docker`]; `None` otherwise.
    pub docker_image: Option<String>,
    /// Bind mounts into every step container in [`ExecutionMode::Docker`].
    pub docker_volumes: Vec<DockerVolume>,
    /// The `k8s_*` keys, for [`ExecutionMode::Kubernetes`] (not available in this build).
    pub kubernetes: KubernetesConfig,
    /// Upper bound for one task, unless its message asks for another.
    pub default_timeout: Duration,
    /// Root of the embedded local slot pool (clones and worktrees).
    pub pool_dir: PathBuf,
    /// Where named playbooks are looked up.
    pub playbooks_dir: PathBuf,
    /// Where a task message's `slot_path` may lie.
    pub pool: PoolConfig,
    pub services: ServicesConfig,
    pub amqp: AmqpConfig,
    pub llm: LlmConfig,
    pub git: GitConfig,
    pub playbook: PlaybookConfig,
    pub retry: RetryConfig,
    pub reliability: ReliabilityConfig,
    pub limits: ResourceLimits,
    /// The sandbox's uid, gid and read-only paths (`sandbox:`), for `execution_mode: sandbox`.
    pub sandbox: crate::process::SandboxPolicy,
    pub logging: LoggingConfig,
    /// Health and metrics endpoints.
    pub http: HttpConfig,
    /// The Task Registry mirror (`agent-runner mirror`).
    pub mirror: MirrorConfig,
    /// The implementation engine (`engine:`): mode, budgets, protected paths, prices.
    pub engine: crate::llm::EngineSettings,
}

/// The external REST services; `None` means the embedded stand-in.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicesConfig {
    /// Task Registry; `None`: events go to the exchange only (a mirror may forward them).
    pub task_registry_url: Option<Url>,
    /// Repo Pool Manager; `None`: the local slot pool under `pool_dir`.
    pub repo_pool_url: Option<Url>,
    /// Where artifacts are stored.
    pub artifact_store: ArtifactStoreLocation,
}

/// The RabbitMQ topology and consumer settings (DESIGN §2).
#[derive(Debug, Clone, PartialEq)]
pub struct AmqpConfig {
    /// Broker URL; its `Debug` masks the password.
    pub url: AmqpUrl,
    /// Topic exchange the Dispatcher publishes tasks to.
    pub task_exchange: String,
    /// The quorum work queue this worker consumes.
    pub work_queue: String,
    /// Routing keys binding the work queue to the task exchange.
    pub binding_keys: Vec<String>,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    /// Topic exchange for lifecycle events.
    pub events_exchange: String,
    /// Exchange for operator commands (cancel).
    pub control_exchange: String,
    /// Quorum-queue `x-delivery-limit`: the crash-loop safety net.
    pub delivery_limit: u32,
    /// Tasks run at once by this process.
    pub concurrency: usize,
    /// `basic.qos` prefetch; equals `concurrency` unless set.
    pub prefetch: u16,
    /// The broker's `consumer_timeout`, as deployed; a task timeout must fit under it.
    pub consumer_timeout: Duration,
    /// Stop after this long with nothing running and nothing delivered; `None` waits
    /// for work forever.
    pub idle_timeout: Option<Duration>,
}

/// The OpenAI-compatible LLM endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    pub model: String,
    /// Base URL; `None` means OpenAI's own.
    pub endpoint: Option<Url>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Environment variable holding the API key (read with [`read_secret`]).
    pub api_key_env_var: String,
    /// `llm.context_tokens`: the model's context window; `None`: asked from the server
    /// once per worker (see `llm::context_window`).
    pub context_tokens: Option<u32>,
    /// `llm.temperature`, sent with every request.
    pub temperature: f32,
    /// `llm.max_tokens`: cap of completion tokens per request; `None`: derived from the
    /// window (`llm::default_completion_cap`).
    pub max_tokens: Option<u32>,
}

/// Git identity and remote for the commits the worker makes.
#[derive(Debug, Clone, PartialEq)]
pub struct GitConfig {
    pub author_name: String,
    pub author_email: String,
    /// The remote fetched from and pushed to.
    pub remote_name: String,
    /// Environment variable holding the git token (read with [`read_secret`]).
    pub token_env_var: String,
    /// `git.allowed_remotes`: a task's `repo_url` must match one of these.
    pub allowed_remotes: Vec<crate::git::RemotePrefix>,
    /// `git.token_hosts`: the only hosts the token goes to; a token with none refuses
    /// to start.
    pub token_hosts: Vec<crate::git::TokenHost>,
    /// What the push guard's secret scan lets through (`git.secret_scan_allow`).
    pub secret_scan_allow: crate::secrets::AllowPatterns,
}

/// Which directories the worker owns as slots.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolConfig {
    /// `pool.slot_roots`; `None`: `pool_dir` alone (see [`RunnerConfig::slot_roots`]).
    pub slot_roots: Option<Vec<PathBuf>>,
}

/// Playbook execution limits.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaybookConfig {
    /// Timeout of a step that sets none.
    pub default_step_timeout: Duration,
    /// Bytes of output kept per step stream; the rest is dropped with a marker.
    pub output_cap_bytes: usize,
    /// Whether a task message may carry its own inline playbook.
    pub allow_inline: bool,
    /// How many times failing test output goes back to the model before giving up.
    pub repair_rounds: u32,
    /// Variables step conditions can test (`lint_enabled == true`), besides the task's.
    pub variables: std::collections::BTreeMap<String, String>,
}

/// How often each kind of operation is retried (exponential backoff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    pub git: u32,
    pub network: u32,
    pub llm: u32,
}

/// Delivery reliability: delayed retries, shutdown and reconnection (README "Reliability
/// and the dead-letter queue").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReliabilityConfig {
    /// Attempts (the first run included) before a transient failure is dead-lettered.
    pub max_attempts: u32,
    /// The wait before attempt 2, 3, ...; the last one repeats. Strictly growing.
    pub retry_delays: Vec<Duration>,
    /// After SIGTERM, how long running tasks may finish before they are stopped and left
    /// for redelivery.
    pub shutdown_grace: Duration,
    /// The longest wait between two reconnection attempts (the backoff's ceiling).
    pub reconnect_max_delay: Duration,
}

impl Default for ReliabilityConfig {
    fn default() -> Self {
        ReliabilityConfig {
            max_attempts: 5,
            // Ten seconds rides out a blip, five minutes a deploy of the remote service.
            retry_delays: [10, 60, 300].into_iter().map(Duration::from_secs).collect(),
            shutdown_grace: Duration::from_secs(60),
            reconnect_max_delay: Duration::from_secs(30),
        }
    }
}

/// Resource limits applied to playbook processes; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimits {
    pub max_memory_mb: Option<u64>,
    /// 100 per core.
    pub max_cpu_percent: Option<u32>,
    /// Processes one command may have alive at once (`limits.max_processes`).
    pub max_processes: Option<u32>,
    /// Largest file the worker reads for the model or lets a task add or grow in its
    /// commit (`limits.max_file_bytes`); always set, a workspace can hold anything.
    pub max_file_bytes: u64,
}

/// Processes one command may have alive at once unless configured: far above what a
/// parallel build or test run starts, far below what exhausts a host's pid space (32768
/// by default).
pub const DEFAULT_MAX_PROCESSES: u32 = 1024;
/// Largest `limits.max_processes` accepted: the kernel's highest possible pid count.
pub const MAX_PROCESSES_LIMIT: u32 = 4_194_304;
/// Smallest `limits.max_file_bytes` accepted: below 4 KiB ordinary source files would be
/// refused and no task could do its work.
pub const MIN_MAX_FILE_BYTES: u64 = 4 * 1024;
/// Largest `limits.max_file_bytes` accepted: the model's tools read a file whole up to the
/// cap, so past 256 MiB the cap would no longer keep the worker's memory small.
pub const MAX_MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoggingConfig {
    pub level: LogLevel,
    /// JSON lines when true, human-readable text otherwise.
    pub structured: bool,
    /// Mask known secrets in logs, artifacts, events and DLQ headers.
    pub mask_secrets: bool,
}

impl RunnerConfig {
    /// The embedded defaults. `env` is consulted only for `HOSTNAME` (the runner id)
    /// and `AGENT_RUNNER_HOME` (the data directory).
    pub fn defaults_from(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let home = env(HOME_ENV_VAR)
            .filter(|h| !h.trim().is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_HOME), PathBuf::from);
        let runner_id =
            env("HOSTNAME").and_then(|h| values::runner_id(&h).ok()).unwrap_or_else(generated_runner_id);
        RunnerConfig {
            runner_id,
            execution_mode: ExecutionMode::LocalProcess,
            docker_image: None,
            docker_volumes: Vec::new(),
            kubernetes: KubernetesConfig::default(),
            default_timeout: Duration::from_secs(1800),
            pool_dir: home.join("slots"),
            playbooks_dir: PathBuf::from("playbooks"),
            pool: PoolConfig::default(),
            services: ServicesConfig {
                task_registry_url: None,
                repo_pool_url: None,
                artifact_store: ArtifactStoreLocation::Filesystem(home.join("artifacts")),
            },
            amqp: AmqpConfig::default(),
            llm: LlmConfig {
                model: DEFAULT_LLM_MODEL.to_string(),
                endpoint: None,
                timeout: Duration::from_secs(120),
                api_key_env_var: "OPENAI_API_KEY".to_string(),
                context_tokens: None,
                temperature: crate::llm::DEFAULT_TEMPERATURE,
                max_tokens: None,
            },
            git: GitConfig {
                author_name: "agent-runner".to_string(),
                author_email: "agent-runner@necrocode.local".to_string(),
                remote_name: "origin".to_string(),
                token_env_var: "GIT_TOKEN".to_string(),
                allowed_remotes: vec![crate::git::RemotePrefix::any_https()],
                token_hosts: Vec::new(),
                secret_scan_allow: crate::secrets::AllowPatterns::default(),
            },
            playbook: PlaybookConfig {
                default_step_timeout: Duration::from_secs(600),
                output_cap_bytes: 64 * 1024,
                allow_inline: true,
                repair_rounds: 2,
                variables: std::collections::BTreeMap::new(),
            },
            retry: RetryConfig { git: 3, network: 3, llm: 3 },
            reliability: ReliabilityConfig::default(),
            limits: ResourceLimits {
                max_memory_mb: None,
                max_cpu_percent: None,
                max_processes: Some(DEFAULT_MAX_PROCESSES),
                max_file_bytes: crate::workspace_files::DEFAULT_MAX_FILE_BYTES,
            },
            sandbox: crate::process::SandboxPolicy::default(),
            logging: LoggingConfig { level: LogLevel::Info, structured: true, mask_secrets: true },
            http: HttpConfig::default(),
            mirror: MirrorConfig::default(),
            engine: crate::llm::EngineSettings::default(),
        }
    }
}

impl RunnerConfig {
    /// The directories a task's `slot_path` may lie under: `pool.slot_roots`, or the
    /// pool directory when that is unset (read late, so a changed `pool_dir` counts).
    pub fn slot_roots(&self) -> Vec<PathBuf> {
        self.pool.slot_roots.clone().unwrap_or_else(|| vec![self.pool_dir.clone()])
    }
}

impl Default for RunnerConfig {
    /// [`RunnerConfig::defaults_from`] the process environment.
    fn default() -> Self {
        RunnerConfig::defaults_from(&process_env)
    }
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: AmqpUrl::parse(DEFAULT_AMQP_URL)
                .unwrap_or_else(|reason| unreachable!("the built-in AMQP URL is valid: {reason}")),
            task_exchange: "necrocode.tasks".to_string(),
            work_queue: "agent-runner.tasks".to_string(),
            binding_keys: vec!["task.#".to_string()],
            dead_letter_exchange: "necrocode.dlx".to_string(),
            dead_letter_queue: "agent-runner.dlq".to_string(),
            events_exchange: "necrocode.events".to_string(),
            control_exchange: "necrocode.control".to_string(),
            delivery_limit: 5,
            concurrency: 1,
            prefetch: 1,
            // Matches deploy/rabbitmq/rabbitmq.conf: two hours.
            consumer_timeout: Duration::from_secs(7200),
            idle_timeout: None,
        }
    }
}

/// `runner-` and eight hex digits: unique enough to tell replicas apart in events.
fn generated_runner_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("runner-{}", &id[..8])
}

/// The real process environment, as a lookup for [`load`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Builds the configuration: defaults, then `file` (if any), then `env`, then
/// `overrides`, each value checked as it is applied, then the cross-field checks.
pub fn load(
    file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &ConfigOverrides,
) -> Result<RunnerConfig, ConfigError> {
    let mut layered = layer::Layered::new(RunnerConfig::defaults_from(env));
    // A Kubernetes task pod gets its worker's file in the environment instead.
    let text = match file {
        Some(path) => Some((file::read_text(path)?, path.to_path_buf())),
        None => env(CONFIG_ENV)
            .filter(|t| !t.trim().is_empty())
            .map(|t| (t, PathBuf::from(format!("${CONFIG_ENV}")))),
    };
    if let Some((text, path)) = &text {
        let raw = file::parse(text, path)?;
        file_apply::apply(raw, &ConfigSource::File(path.clone()), &mut layered)?;
    }
    env::apply(env, &mut layered)?;
    ops::apply_env(env, &mut layered)?;
    overrides.apply(&mut layered)?;
    let mut config = layered.finish()?;
    if let (ExecutionMode::Kubernetes, Some((text, path))) = (config.execution_mode, &text) {
        config.kubernetes.pod_config = Some(pod_config::for_pods(text, path)?);
    }
    Ok(config)
}
