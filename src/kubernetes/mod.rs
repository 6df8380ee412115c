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

mod job_spec;
mod jobs;
mod outcome;

pub use job_spec::{
    COMPONENT_LABEL, CONFIG_ENV, DATA_DIR, JobTemplate, SECRETS_DIR_ENV, SECRETS_MOUNT, TASK_ENV,
    TASK_ID_ANNOTATION, TERMINATION_LOG, TaskJob, job_name,
};
pub use jobs::{JobClient, JobEnd, KubeError, Started, Termination};
pub use outcome::{MAX_OUTCOME_BYTES, PodOutcome};

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

    /// The API client, configured from the environment on the first call.
    pub async fn client(&self) -> Result<&JobClient, KubeError> {
        self.client.get_or_try_init(|| JobClient::connect(self.namespace.as_deref())).await
    }
}
