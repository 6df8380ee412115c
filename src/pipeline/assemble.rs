//! Building a [`Runner`] from configuration: the seed's programmatic entry point
//! (`RunnerOrchestrator(config)`), also what the CLI uses.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::{Runner, RunnerServices, RunnerSettings};
use crate::artifacts::{ArtifactStore, StoreOptions};
use crate::clients::{ClientSettings, RepoPoolClient};
use crate::config::{ConfigError, ConfigSource, ExecutionMode, RunnerConfig, read_secret};
use crate::events::EventSink;
use crate::git::{GitAuthor, GitCredentials, LocalSlotPool};
use crate::llm::{LlmSettings, SharedLlmClient};
use crate::playbook::StepExecution;
use crate::process::{Isolation, ProcessLimits};
use crate::secrets::{Masker, SecretScan};

/// Why a runner could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("artifact store: {0}")]
    ArtifactStore(#[from] crate::artifacts::ArtifactError),
    #[error("Repo Pool: {0}")]
    RepoPool(#[from] crate::clients::ClientError),
}

/// The secrets a runner holds, read once at start from the environment or `*_FILE`.
pub struct RunnerSecrets {
    pub git_token: Option<SecretString>,
    pub llm_api_key: Option<SecretString>,
}

impl RunnerSecrets {
    /// Reads the variables the configuration names.
    pub fn from_env(
        config: &RunnerConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        // A secret read from a file stays on disk: hide it from sandboxed commands.
        for name in [&config.git.token_env_var, &config.llm.api_key_env_var] {
            if let Some(path) = env(&format!("{name}_FILE")).filter(|p| !p.is_empty()) {
                crate::process::isolation::hide_in_sandbox(std::path::Path::new(&path));
            }
        }
        Ok(RunnerSecrets {
            git_token: read_secret(&config.git.token_env_var, env)?,
            llm_api_key: read_secret(&config.llm.api_key_env_var, env)?,
        })
    }

    /// A token with nowhere it may go is a configuration mistake that would otherwise
    /// show up only as failing pushes: refuse to start instead, saying what to set.
    /// [`Runner::from_config`] checks it; `agent-runner worker` checks it before it
    /// connects to the broker.
    pub fn check_token_hosts(&self, config: &RunnerConfig) -> Result<(), ConfigError> {
        if self.git_token.is_none() || !config.git.token_hosts.is_empty() {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            origin: ConfigSource::Default,
            key: "git.token_hosts".to_string(),
            reason: format!(
                "a git token is set ({}) but no host may receive it: list its hosts, e.g. [github.com]",
                config.git.token_env_var
            ),
        })
    }
}

impl RunnerSecrets {
    /// The masker for these secrets, or one that masks nothing when `mask_secrets` is off.
    /// Every outward path (events, artifacts, logs, DLQ headers) uses the same one.
    pub fn masker(&self, config: &RunnerConfig) -> Masker {
        if config.logging.mask_secrets {
            Masker::new([self.git_token.as_ref(), self.llm_api_key.as_ref()])
        } else {
            Masker::default()
        }
    }
}

impl Runner {
    /// Builds a runner from `config`, publishing events to `events`.
    pub fn from_config(
        config: &RunnerConfig,
        secrets: RunnerSecrets,
        events: Arc<dyn EventSink>,
    ) -> Result<Runner, AssembleError> {
        secrets.check_token_hosts(config)?;
        for (name, secret) in [("git token", &secrets.git_token), ("LLM api key", &secrets.llm_api_key)] {
            if secret.as_ref().is_some_and(|s| s.expose_secret().len() < crate::secrets::MIN_MASKABLE_LEN) {
                // Not an error (a local model server takes any key), but the operator
                // should know this value is neither masked nor caught by the push scan.
                tracing::warn!(
                    "the {name} is shorter than {} characters: it is not masked",
                    crate::secrets::MIN_MASKABLE_LEN
                );
            }
        }
        let masker = secrets.masker(config);
        // Logs are written by the whole process, not just this runner: mask them too.
        crate::telemetry::mask_in_logs(&masker);
        let client_settings = ClientSettings { retries: config.retry.network, ..ClientSettings::default() };
        let store_options = StoreOptions::for_location(
            &config.services.artifact_store,
            client_settings,
            &crate::config::process_env,
        )?;
        let artifact_store: Arc<dyn ArtifactStore> =
            crate::artifacts::open_location(&config.services.artifact_store, &store_options)?;
        let repo_pool = match &config.services.repo_pool_url {
            Some(url) => Some(RepoPoolClient::new(url.clone(), client_settings)?),
            None => None,
        };
        // The push guard and the model's requests know the secrets even when `mask_secrets`
        // is off: pushing one, or sending it to a third party, is never right.
        let known = Masker::new([secrets.git_token.as_ref(), secrets.llm_api_key.as_ref()]);
        let secret_scan = SecretScan::new(known.clone(), config.git.secret_scan_allow.clone());
        let services = RunnerServices {
            artifact_store,
            events,
            slot_pool: LocalSlotPool::new(absolute(&config.pool_dir)),
            repo_pool,
            git_credentials: match secrets.git_token {
                Some(token) => GitCredentials::with_token(token, config.git.token_hosts.clone()),
                None => GitCredentials::anonymous(),
            },
            git_author: GitAuthor {
                name: config.git.author_name.clone(),
                email: config.git.author_email.clone(),
            },
            llm: SharedLlmClient::new(
                LlmSettings {
                    endpoint: config.llm.endpoint.as_ref().map(|u| u.to_string()),
                    model: config.llm.model.clone(),
                    api_key: secrets.llm_api_key,
                    timeout: config.llm.timeout,
                    retry_count: config.retry.llm,
                    context_tokens: config.llm.context_tokens,
                    temperature: config.llm.temperature,
                    max_tokens: config.llm.max_tokens,
                },
                known,
            ),
            masker,
            secret_scan,
            kubernetes: match config.execution_mode {
                ExecutionMode::Kubernetes => {
                    Some(Arc::new(crate::kubernetes::KubernetesJobs::from_config(config)))
                }
                _ => None,
            },
        };
        let settings = RunnerSettings {
            runner_id: config.runner_id.clone(),
            default_timeout: config.default_timeout,
            playbooks_dir: config.playbooks_dir.clone(),
            default_step_timeout: config.playbook.default_step_timeout,
            output_cap_bytes: config.playbook.output_cap_bytes,
            allow_inline_playbooks: config.playbook.allow_inline,
            repair_rounds: config.playbook.repair_rounds,
            variables: config.playbook.variables.clone(),
            max_task_timeout: config.amqp.consumer_timeout,
            execution: step_execution(config),
            engine: config.engine.clone(),
            max_file_bytes: config.limits.max_file_bytes,
            allowed_remotes: config.git.allowed_remotes.clone(),
            slot_roots: config.slot_roots().iter().map(|root| absolute(root)).collect(),
            git_retry_count: config.retry.git,
        };
        Ok(Runner::new(services, settings))
    }
}

/// The execution mode and limits from the configuration, for the playbook executor.
fn step_execution(config: &RunnerConfig) -> StepExecution {
    let isolation = match config.execution_mode {
        ExecutionMode::LocalProcess => Isolation::LocalProcess,
        ExecutionMode::Sandbox => Isolation::Sandbox { network: false, policy: config.sandbox.clone() },
        ExecutionMode::Docker => Isolation::Docker {
            // Checked when the configuration was loaded: docker mode requires an image.
            image: config.docker_image.clone().unwrap_or_default(),
            network: false,
            cpu_percent: config.limits.max_cpu_percent,
            volumes: config.docker_volumes.clone(),
        },
        // The steps run in the task's pod, never here; the strictest mode, should one run.
        ExecutionMode::Kubernetes => Isolation::Sandbox { network: false, policy: config.sandbox.clone() },
    };
    StepExecution {
        isolation,
        limits: ProcessLimits {
            max_memory_mb: config.limits.max_memory_mb,
            cpu_seconds: None,
            max_processes: config.limits.max_processes,
        },
        max_cpu_percent: config.limits.max_cpu_percent,
    }
}

/// Slots and artifacts must not depend on the directory a child process runs in.
fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
