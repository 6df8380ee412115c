//! `execution_mode: kubernetes`: every task in a Kubernetes Job of its own, the pattern
//! of Airflow's KubernetesExecutor. The only module that imports kube and k8s-openapi.
//!
//! The worker keeps the delivery; the pod does the work. For each task the worker
//! creates a Job (named after the task id: a redelivery finds it instead of starting a
//! second one) whose pod runs `agent-runner run` on the task: slot, workspace, model,
//! tests, push and artifacts, as a local process inside the pod. The worker watches the
//! Job, follows the pod's log into the task's execution log, reads the pod's outcome
//! from its termination message, checks the effects the outcome claims (the task's
//! commit on the remote branch, the artifacts in the store), and settles the delivery
//! as in every other mode. Where the Job is kept or deleted: ARCHITECTURE.md
//! "Kubernetes execution mode".
//!
//! - `job_spec.rs`: the Job manifest and name (pure).
//! - `jobs.rs`: the API calls (create or find, watch, log, delete).
//! - `outcome.rs`: what the pod reports and how it fits a termination message.
//! - `pod_events.rs`: the pod's step events as log lines, relayed by the worker.

mod job_spec;
mod jobs;
mod outcome;
mod pod_events;

pub use job_spec::{
    ATTEMPT_ENV, COMPONENT_LABEL, CONFIG_ENV, DATA_DIR, JobTemplate, SECRETS_DIR_ENV, SECRETS_MOUNT,
    TASK_ENV, TASK_ID_ANNOTATION, TERMINATION_LOG, TaskJob, job_name,
};
pub use jobs::{JobClient, JobEnd, KubeError, Started, Termination};
pub use outcome::{MAX_OUTCOME_BYTES, PodOutcome};
pub use pod_events::{EVENT_LINE_PREFIX, EventLines, relayed_event};

use tokio::sync::OnceCell;

/// The mode as a worker service: the template of its Jobs and one API client, built on
/// first use and shared by every task.
pub struct KubernetesJobs {
    /// `k8s_namespace`; unset: the namespace of the client configuration (in a pod, its own).
    pub namespace: Option<String>,
    pub template: JobTemplate,
    client: OnceCell<JobClient>,
}

impl KubernetesJobs {
    pub fn new(namespace: Option<String>, template: JobTemplate) -> Self {
        KubernetesJobs { namespace, template, client: OnceCell::new() }
    }

    /// The mode as `config` sets it: `k8s_*`, the limits as the pods' resources, and the
    /// worker's configuration for the pods (its file, and what it read from the
    /// environment). Secrets reach the pods only as the `k8s_secrets` they mount: a value
    /// written into a Job would be readable by anyone who may read Jobs.
    pub fn from_config(config: &crate::config::RunnerConfig) -> Self {
        let forwarded_env = crate::config::env_forwarded_to_pods()
            .filter_map(|name| {
                crate::config::process_env(name).filter(|v| !v.is_empty()).map(|v| (name.to_string(), v))
            })
            .collect();
        let template = JobTemplate {
            // Checked when the configuration was loaded: the mode requires an image.
            image: config.kubernetes.image.clone().unwrap_or_default(),
            secrets: config.kubernetes.secrets.clone(),
            memory_mb: config.limits.max_memory_mb,
            cpu_percent: config.limits.max_cpu_percent,
            config_yaml: config.kubernetes.pod_config.clone(),
            forwarded_env,
        };
        KubernetesJobs::new(config.kubernetes.namespace.clone(), template)
    }

    /// The API client, configured from the environment on the first call.
    pub async fn client(&self) -> Result<&JobClient, KubeError> {
        self.client.get_or_try_init(|| JobClient::connect(self.namespace.as_deref())).await
    }
}
