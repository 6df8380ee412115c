//! The failure vocabulary shared by every pipeline step.
//!
//! Each module keeps its own `thiserror` enum (its callers react differently), and each of
//! those enums maps itself onto a [`FailureKind`] — the seed's error hierarchy — and says
//! whether it is transient. The worker's delivery loop only ever looks at a
//! [`TaskFailure`], so the dead-letter headers, the `TaskFailed` event and the run summary
//! all speak the same words.

use serde::{Deserialize, Serialize};

/// Why a task did not complete, following the seed's `RunnerError` hierarchy.
///
/// The snake_case name is what operators see: the `x-failure-kind` DLQ header, the
/// `TaskFailed` event and the run summary all carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The message or the task context is malformed (`TaskContextValidationError`).
    Validation,
    /// Slot acquisition, fetch, checkout or branch creation failed (`WorkspacePreparationError`).
    WorkspacePreparation,
    /// The LLM could not produce or apply an implementation (`ImplementationError`).
    Implementation,
    /// The playbook's tests failed or could not run (`TestExecutionError`).
    TestExecution,
    /// Commit or push failed (`PushError`).
    Push,
    /// An artifact could not be stored (`ArtifactUploadError`).
    ArtifactUpload,
    /// The task ran past its deadline (`TimeoutError`).
    Timeout,
    /// The implementation engine used up a per-task budget (turns, tokens, cost, wall
    /// time) or stalled; the partial diff and transcript are uploaded.
    BudgetExhausted,
    /// An operator cancelled the task through the control exchange, or the worker stopped
    /// it on shutdown (then it is left for redelivery, not dead-lettered).
    Cancelled,
    /// Delivered more often than `max_attempts` without ever settling: the worker died
    /// (killed, out of memory, panicked) each time it ran this task.
    Crashed,
    /// The push guard found a known secret or a credential shape on a line the task's
    /// commit adds; the push was refused. Permanent: the same work would be refused again.
    SecretDetected,
    /// The execution environment failed the task, not the task itself: the container
    /// engine could not run a step (`docker run` exit 125: the engine did not answer, the
    /// image is missing), the Kubernetes API did not answer, a task pod could not start or
    /// was killed (out of memory, evicted). Never a test failure; transient unless the
    /// environment refused the task for good.
    Infrastructure,
}

impl FailureKind {
    /// Every kind, for the closed label set of the dead-letter metric.
    pub const ALL: [FailureKind; 12] = [
        FailureKind::Validation,
        FailureKind::WorkspacePreparation,
        FailureKind::Implementation,
        FailureKind::TestExecution,
        FailureKind::Push,
        FailureKind::ArtifactUpload,
        FailureKind::Timeout,
        FailureKind::BudgetExhausted,
        FailureKind::Cancelled,
        FailureKind::Crashed,
        FailureKind::SecretDetected,
        FailureKind::Infrastructure,
    ];

    /// The stable wire name, as used in headers, events and summaries.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Validation => "validation",
            FailureKind::WorkspacePreparation => "workspace_preparation",
            FailureKind::Implementation => "implementation",
            FailureKind::TestExecution => "test_execution",
            FailureKind::Push => "push",
            FailureKind::ArtifactUpload => "artifact_upload",
            FailureKind::Timeout => "timeout",
            FailureKind::BudgetExhausted => "budget_exhausted",
            FailureKind::Cancelled => "cancelled",
            FailureKind::Crashed => "crashed",
            FailureKind::SecretDetected => "secret_detected",
            FailureKind::Infrastructure => "infrastructure",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task's failure as the delivery loop sees it: what kind, at which step, why, and
/// whether trying again later could help.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFailure {
    pub kind: FailureKind,
    /// The pipeline step that failed (`validate`, `slot`, `workspace`, `implement`, `test`,
    /// `commit`, `push`, `upload`).
    pub step: String,
    /// A human-readable reason, already masked of secrets.
    pub message: String,
    /// True when the cause is outside the task (network, broker, remote unavailable,
    /// rate limit): a later attempt may succeed. Delayed retries key off this.
    pub transient: bool,
}

impl TaskFailure {
    pub fn new(kind: FailureKind, step: &str, message: impl Into<String>) -> Self {
        TaskFailure { kind, step: step.to_string(), message: message.into(), transient: false }
    }

    /// The failure as every event that reports one carries it (`TaskFailed`,
    /// `TaskDeadLettered`, `TaskCancelled`): `error_kind`, `failed_step`, `message`,
    /// `transient`.
    pub fn event_fields(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut fields = serde_json::Map::new();
        fields.insert("error_kind".into(), self.kind.as_str().into());
        fields.insert("failed_step".into(), self.step.clone().into());
        fields.insert("message".into(), self.message.clone().into());
        fields.insert("transient".into(), self.transient.into());
        fields
    }

    /// Marks the failure as transient (see [`TaskFailure::transient`]).
    pub fn transient(mut self, transient: bool) -> Self {
        self.transient = transient;
        self
    }
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed at step {}: {}", self.kind, self.step, self.message)
    }
}

/// Implemented by each module's error enum so the pipeline can turn any of them into a
/// [`TaskFailure`] without knowing its variants.
pub trait Classify: std::fmt::Display {
    /// The seed-hierarchy kind this error belongs to.
    fn failure_kind(&self) -> FailureKind;
    /// Whether a later attempt could succeed; see [`TaskFailure::transient`].
    fn is_transient(&self) -> bool;

    /// Builds the delivery loop's view of this error at `step`.
    fn to_failure(&self, step: &str) -> TaskFailure {
        TaskFailure::new(self.failure_kind(), step, self.to_string()).transient(self.is_transient())
    }
}
