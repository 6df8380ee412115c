//! Start-up checks that the configured execution mode can run a command on this host, so
//! a worker that cannot run tasks refuses to start with one clear line instead of taking
//! tasks off the queue and failing each at its first step (spending model tokens on
//! repair rounds first).
//!
//! - `sandbox`: `true` run once through the whole sandbox ([`sandbox_preflight`]).
//! - `docker`: the engine answers (`docker version`) and the image is on it (`docker
//!   image inspect`); the worker never pulls, so a missing image would fail every step.
//! - `kubernetes`: the Kubernetes API answers and lets the worker list Jobs in its
//!   namespace (no configuration: exit 78; no answer or refused: exit 69).
//! - `local-process`: nothing to check.
//!
//! And the playbooks directory: every playbook in it must parse, since a broken shipped
//! playbook would fail each task routed to it (a missing directory is only a warning:
//! tasks then use the repository's own playbook or the built-in one).

use std::time::Duration;

use crate::config::{ExecutionMode, RunnerConfig};
use crate::process::{SandboxError, sandbox_preflight};

/// How long one docker CLI call may take: an engine that needs longer to answer
/// `version` is not going to start containers for test steps either.
const DOCKER_CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the configured execution mode cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("execution_mode sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    /// The engine is down or unreachable: an infrastructure failure, not a setting.
    #[error("execution_mode docker: the docker engine does not answer: {0}")]
    EngineUnreachable(String),
    /// No client configuration: neither a kubeconfig nor the in-cluster service account.
    #[error("execution_mode kubernetes: {0}")]
    KubernetesConfig(String),
    /// The API server does not answer, or refuses this worker the Jobs of its namespace.
    #[error("execution_mode kubernetes: {0}")]
    KubernetesUnreachable(String),
    #[error(
        "execution_mode docker: the image {image} is not on the docker engine (the worker never pulls: docker pull or docker load it)"
    )]
    ImageMissing { image: String },
    /// A playbook in `playbooks_dir` does not parse; the error names file, line and field.
    #[error("playbooks_dir: {0}")]
    Playbook(#[from] crate::playbook::PlaybookError),
    #[error("playbooks_dir: cannot read {path}: {reason}")]
    PlaybooksUnreadable { path: String, reason: String },
}

/// Everything a worker (or `run`) checks before it takes a task.
pub async fn preflight(config: &RunnerConfig) -> Result<(), PreflightError> {
    // The mode first: a worker that cannot run at all says only that.
    check_execution_mode(config).await?;
    check_playbooks_dir(&config.playbooks_dir).map(|_| ())
}

/// Parses every `.yaml`/`.yml` file in `dir`; returns how many there are.
pub fn check_playbooks_dir(dir: &std::path::Path) -> Result<usize, PreflightError> {
    let unreadable = |path: &std::path::Path, reason: String| PreflightError::PlaybooksUnreadable {
        path: path.display().to_string(),
        reason,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                playbooks_dir = %dir.display(),
                "playbooks_dir does not exist: tasks get their repository's playbook or the built-in one"
            );
            return Ok(0);
        }
        Err(error) => return Err(unreadable(dir, error.to_string())),
    };
    let mut paths: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    for path in &paths {
        let max = crate::playbook::MAX_PLAYBOOK_BYTES as u64;
        let bytes =
            crate::workspace_files::read_capped(path, max).map_err(|e| unreadable(path, e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| unreadable(path, "not UTF-8".to_string()))?;
        crate::playbook::parse_playbook(&text, &path.display().to_string())?;
    }
    Ok(paths.len())
}

/// Checks that `config.execution_mode` works on this host.
pub async fn check_execution_mode(config: &RunnerConfig) -> Result<(), PreflightError> {
    match config.execution_mode {
        ExecutionMode::LocalProcess => Ok(()),
        ExecutionMode::Kubernetes => kubernetes_preflight(config).await,
        ExecutionMode::Sandbox => Ok(sandbox_preflight(&config.sandbox).await?),
        ExecutionMode::Docker => {
            docker(&["version", "--format", "{{.Server.Version}}"])
                .await
                .map_err(PreflightError::EngineUnreachable)?;
            // Checked when the configuration was loaded: docker mode requires an image.
            let image = config.docker_image.clone().unwrap_or_default();
            match docker(&["image", "inspect", "--format", "{{.Id}}", &image]).await {
                Ok(_) => Ok(()),
                Err(reason) if reason.contains("No such image") => {
                    Err(PreflightError::ImageMissing { image })
                }
                Err(reason) => Err(PreflightError::EngineUnreachable(reason)),
            }
        }
    }
}

/// The API answers and the worker may list Jobs. A `file://` artifact store is only
/// warned about: the pods write into their own filesystem unless that path is shared.
async fn kubernetes_preflight(config: &RunnerConfig) -> Result<(), PreflightError> {
    use crate::kubernetes::{JobClient, KubeError};
    let client = JobClient::connect(config.kubernetes.namespace.as_deref()).await.map_err(|e| match e {
        KubeError::Config(_) => PreflightError::KubernetesConfig(e.to_string()),
        other => PreflightError::KubernetesUnreachable(other.to_string()),
    })?;
    client.check_access().await.map_err(|e| PreflightError::KubernetesUnreachable(e.to_string()))?;
    if matches!(config.services.artifact_store, crate::config::ArtifactStoreLocation::Filesystem(_)) {
        tracing::warn!(
            "artifact_store_url is a local directory: task pods store artifacts in their own filesystem, \
             where the worker cannot check them, unless both mount that path"
        );
    }
    Ok(())
}

/// Runs the docker CLI with `args`; its standard output, or why it failed (the CLI's own
/// first line of error).
async fn docker(args: &[&str]) -> Result<String, String> {
    let mut command = tokio::process::Command::new(crate::process::isolation::DOCKER_PROGRAM);
    // The same environment the step containers' CLI gets.
    let env = crate::process::isolation::docker_cli_env(|name| std::env::var_os(name));
    command.args(args).env_clear().envs(env).kill_on_drop(true);
    let output = match tokio::time::timeout(DOCKER_CHECK_TIMEOUT, command.output()).await {
        Err(_) => {
            return Err(format!(
                "`docker {}` took more than {} s",
                args.join(" "),
                DOCKER_CHECK_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err("the docker CLI is not installed".to_string());
        }
        Ok(Err(error)) => return Err(format!("cannot run the docker CLI: {error}")),
        Ok(Ok(output)) => output,
    };
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).trim().to_string());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim().to_string())
}
