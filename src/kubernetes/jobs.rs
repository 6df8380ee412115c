//! The Job calls the mode makes, through kube's client: create (or find), watch until
//! the Job ends, follow its pod's log, read the pod's termination, delete.
//!
//! The client is configured the way every Kubernetes tool is (`KUBECONFIG` or
//! `~/.kube/config`, else the in-cluster service account), so the worker needs no
//! settings of its own for the API server. A watch ends whenever the server likes
//! (timeouts, restarts): the wait then reads the Job again and watches from there.

use std::time::Duration;

use futures_util::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy, WatchEvent, WatchParams,
};

/// Why a call to the Kubernetes API failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("no Kubernetes API configuration (KUBECONFIG, ~/.kube/config or in-cluster): {0}")]
    Config(String),
    #[error("the Kubernetes API refused to {action}: {reason}")]
    Refused { action: String, code: u16, reason: String },
    #[error("the Kubernetes API did not answer ({action}): {reason}")]
    Unreachable { action: String, reason: String },
    #[error("the Job manifest could not be built: {0}")]
    Manifest(#[from] serde_json::Error),
}

impl KubeError {
    /// Whether a later attempt may succeed: the API was away or overloaded, not
    /// refusing this Job for what it is (forbidden, invalid).
    pub fn transient(&self) -> bool {
        match self {
            KubeError::Unreachable { .. } => true,
            KubeError::Refused { code, .. } => *code == 429 || *code >= 500,
            KubeError::Config(_) | KubeError::Manifest(_) => false,
        }
    }

    fn of(action: &str, error: kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => KubeError::Refused {
                action: action.to_string(),
                code: status.code,
                reason: format!("{} ({})", status.message, status.reason),
            },
            other => KubeError::Unreachable { action: action.to_string(), reason: other.to_string() },
        }
    }
}

/// How a Job ended, with its pod's last word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEnd {
    /// The `Complete` condition: the pod exited 0.
    Succeeded { termination: Option<Termination> },
    /// The `Failed` condition, with its reason (`DeadlineExceeded`, `BackoffLimitExceeded`…).
    Failed { reason: String, message: String, termination: Option<Termination> },
    /// The Job is gone: deleted by someone else, or removed after it finished.
    Vanished,
}

/// The task container's termination, as its pod status reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    pub exit_code: i32,
    /// `OOMKilled`, `Error`, `Completed`, …
    pub reason: String,
    /// The termination message: the pod's outcome, or the log's tail.
    pub message: String,
}

/// Whether [`JobClient::start`] created the Job or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    Created,
    /// An earlier delivery of the task created it; it is running or finished.
    Found,
}

/// Jobs and pods of one namespace.
#[derive(Clone)]
pub struct JobClient {
    jobs: Api<Job>,
    pods: Api<Pod>,
}

/// How long one watch call may stay open before it is renewed.
const WATCH_SECONDS: u32 = 240;
/// Pauses between tries when the API did not answer, or a pod has no log yet.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

impl JobClient {
    /// A client for `namespace` (unset: the configuration's own), configured from the
    /// environment.
    pub async fn connect(namespace: Option<&str>) -> Result<Self, KubeError> {
        // kube builds its rustls configuration from the process default provider; a
        // library caller may not have gone through `cli::main`.
        crate::tls::install_crypto_provider();
        let config = kube::Config::infer().await.map_err(|e| KubeError::Config(e.to_string()))?;
        let namespace = namespace.map_or_else(|| config.default_namespace.clone(), str::to_string);
        let client = kube::Client::try_from(config).map_err(|e| KubeError::Config(e.to_string()))?;
        let namespace = namespace.as_str();
        Ok(JobClient {
            jobs: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client, namespace),
        })
    }

    /// Proves the API answers and lets this worker see Jobs (the start-up check).
    pub async fn check_access(&self) -> Result<(), KubeError> {
        self.jobs.list(&ListParams::default().limit(1)).await.map_err(|e| KubeError::of("list jobs", e))?;
        Ok(())
    }

    /// Creates `job`, or finds the one of the same name an earlier delivery created.
    pub async fn start(&self, job: &Job) -> Result<Started, KubeError> {
        match self.jobs.create(&PostParams::default(), job).await {
            Ok(_) => Ok(Started::Created),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Started::Found),
            Err(error) => Err(KubeError::of("create the job", error)),
        }
    }

    /// The Job's end, when it has one now (`None`: still running).
    pub async fn end_now(&self, name: &str) -> Result<Option<JobEnd>, KubeError> {
        match self.jobs.get_opt(name).await.map_err(|e| KubeError::of("read the job", e))? {
            None => Ok(Some(JobEnd::Vanished)),
            Some(job) => self.end_of(name, &job).await,
        }
    }

    /// Waits until the Job ends. Watches between reads; a watch the server closed, or a
    /// call that found no server, is followed by a fresh read.
    pub async fn wait(&self, name: &str) -> Result<JobEnd, KubeError> {
        loop {
            let job = match self.jobs.get_opt(name).await {
                Ok(Some(job)) => job,
                Ok(None) => return Ok(JobEnd::Vanished),
                Err(error) => {
                    let error = KubeError::of("read the job", error);
                    if !error.transient() {
                        return Err(error);
                    }
                    tracing::warn!(%error, job = name, "retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            if let Some(end) = self.end_of(name, &job).await? {
                return Ok(end);
            }
            let version = job.metadata.resource_version.clone().unwrap_or_else(|| "0".to_string());
            let params =
                WatchParams::default().fields(&format!("metadata.name={name}")).timeout(WATCH_SECONDS);
            let Ok(stream) = self.jobs.watch(&params, &version).await else {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            let mut stream = stream.boxed();
            while let Ok(Some(event)) = stream.try_next().await {
                match event {
                    WatchEvent::Modified(job) | WatchEvent::Added(job) => {
                        if let Some(end) = self.end_of(name, &job).await? {
                            return Ok(end);
                        }
                    }
                    WatchEvent::Deleted(_) => return Ok(JobEnd::Vanished),
                    // A too-old version (410) or a bookmark: read again.
                    WatchEvent::Error(_) => break,
                    WatchEvent::Bookmark(_) => {}
                }
            }
        }
    }

    /// `Some` when `job` carries a terminal condition.
    async fn end_of(&self, name: &str, job: &Job) -> Result<Option<JobEnd>, KubeError> {
        let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
        let terminal = conditions
            .into_iter()
            .flatten()
            .find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"));
        let Some(condition) = terminal else { return Ok(None) };
        let termination = self.termination(name).await?;
        Ok(Some(match condition.type_.as_str() {
            "Complete" => JobEnd::Succeeded { termination },
            _ => JobEnd::Failed {
                reason: condition.reason.clone().unwrap_or_default(),
                message: condition.message.clone().unwrap_or_default(),
                termination,
            },
        }))
    }

    /// The task container's termination in the Job's newest pod.
    async fn termination(&self, name: &str) -> Result<Option<Termination>, KubeError> {
        let Some(pod) = self.newest_pod(name).await? else { return Ok(None) };
        let statuses = pod.status.and_then(|s| s.container_statuses).unwrap_or_default();
        let terminated = statuses.into_iter().find_map(|s| s.state.and_then(|state| state.terminated));
        Ok(terminated.map(|t| Termination {
            exit_code: t.exit_code,
            reason: t.reason.unwrap_or_default(),
            message: t.message.unwrap_or_default(),
        }))
    }

    async fn newest_pod(&self, name: &str) -> Result<Option<Pod>, KubeError> {
        let params = ListParams::default().labels(&format!("job-name={name}"));
        let pods = self.pods.list(&params).await.map_err(|e| KubeError::of("list the job's pods", e))?;
        Ok(pods
            .items
            .into_iter()
            .max_by(|a, b| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp)))
    }

    /// Follows the Job's pod log, line by line, into `line` until the pod's log ends.
    /// Waits for the pod to exist and start; gives up quietly when the Job is gone.
    pub async fn follow_log(&self, name: &str, mut line: impl FnMut(&str)) {
        loop {
            let pod = match self.newest_pod(name).await {
                Ok(Some(pod)) => pod,
                Ok(None) | Err(_) => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            let Some(pod_name) = pod.metadata.name else { return };
            let params = LogParams { follow: true, ..LogParams::default() };
            // A pod still being scheduled or pulling its image has no log yet.
            let Ok(stream) = self.pods.log_stream(&pod_name, &params).await else {
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            };
            let mut lines = stream.lines();
            while let Ok(Some(text)) = lines.try_next().await {
                line(&text);
            }
            return;
        }
    }

    /// Deletes the Job and, in the background, its pods (which stops a running task).
    pub async fn delete(&self, name: &str) -> Result<(), KubeError> {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match self.jobs.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(KubeError::of("delete the job", error)),
        }
    }
}
