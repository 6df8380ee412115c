//! What a task pod tells its worker: the outcome `agent-runner run --outcome-file`
//! writes, which Kubernetes hands back as the container's termination message.
//!
//! The kubelet keeps at most 4096 bytes of it, so the outcome is compact (no test output,
//! no transcript: those are in the artifacts) and its failure message is shortened until
//! the whole fits. The worker does not take it on trust: a reported push is checked on the
//! remote and reported artifacts in the store before the delivery is acked.

use serde::{Deserialize, Serialize};

use crate::artifacts::StoredArtifact;
use crate::error::TaskFailure;
use crate::pipeline::{RunMetrics, RunResult};

/// The most the kubelet keeps of a termination message.
pub const MAX_OUTCOME_BYTES: usize = 4096;

/// A task pod's own account of its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodOutcome {
    pub success: bool,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub pushed: bool,
    pub resumed: bool,
    pub artifacts: Vec<StoredArtifact>,
    pub error: Option<TaskFailure>,
    #[serde(default)]
    pub metrics: Option<RunMetrics>,
    /// Tokens the implementation used (prompt + completion), when it ran.
    #[serde(default)]
    pub tokens_used: Option<u64>,
}

impl PodOutcome {
    /// The outcome of `result`, as the pod reports it.
    pub fn of(result: &RunResult) -> Self {
        PodOutcome {
            success: result.success,
            branch: result.branch.clone(),
            commit: result.commit.clone(),
            pushed: result.pushed,
            resumed: result.resumed,
            artifacts: result.artifacts.clone(),
            error: result.error.clone(),
            metrics: Some(result.metrics),
            tokens_used: result.impl_result.as_ref().map(|i| u64::from(i.tokens_used)),
        }
    }

    /// The outcome as JSON of at most [`MAX_OUTCOME_BYTES`]: the failure message is cut
    /// (at a character boundary, marked) until it fits.
    pub fn to_message(&self) -> String {
        let mut outcome = self.clone();
        loop {
            let text = serde_json::to_string(&outcome).unwrap_or_default();
            let Some(error) = outcome.error.as_mut().filter(|_| text.len() > MAX_OUTCOME_BYTES) else {
                return text;
            };
            if error.message.is_empty() {
                // Nothing left to cut: the artifact list alone is too long; drop it (the
                // worker then finds the artifacts missing and says so).
                outcome.artifacts.clear();
                continue;
            }
            let excess = text.len() - MAX_OUTCOME_BYTES + "… (cut)".len();
            let mut keep = error.message.len().saturating_sub(excess);
            while !error.message.is_char_boundary(keep) {
                keep -= 1;
            }
            error.message.truncate(keep);
            if !error.message.is_empty() {
                error.message.push_str("… (cut)");
            }
        }
    }

    /// Reads a termination message; `None` when it is not an outcome (the pod died before
    /// writing one, and Kubernetes fell back to the log's tail).
    pub fn from_message(message: &str) -> Option<Self> {
        serde_json::from_str(message.trim()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FailureKind;

    fn failed(message: String) -> PodOutcome {
        PodOutcome {
            success: false,
            branch: Some("feature/x".into()),
            commit: None,
            pushed: false,
            resumed: false,
            artifacts: Vec::new(),
            error: Some(TaskFailure::new(FailureKind::TestExecution, "test", message)),
            metrics: None,
            tokens_used: Some(12),
        }
    }

    #[test]
    fn an_outcome_survives_the_termination_message_round_trip() {
        let outcome = failed("tests failed: 1 of 3".into());
        assert_eq!(PodOutcome::from_message(&outcome.to_message()), Some(outcome));
        assert_eq!(PodOutcome::from_message("panicked at src/main.rs"), None);
    }

    #[test]
    fn a_long_failure_is_cut_to_what_the_kubelet_keeps() {
        let outcome = failed("é".repeat(10_000));
        let message = outcome.to_message();
        assert!(message.len() <= MAX_OUTCOME_BYTES, "{}", message.len());
        let read = PodOutcome::from_message(&message).unwrap();
        let text = read.error.unwrap().message;
        assert!(text.ends_with("… (cut)") && text.starts_with("éé"), "{text}");
    }
}
