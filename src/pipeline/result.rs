//! The run result: the seed's `RunnerResult`, also uploaded as the `summary` artifact
//! and printed by `agent-runner run`.

use serde::Serialize;

use super::metrics::RunMetrics;
use super::steps::RunState;
use crate::artifacts::StoredArtifact;
use crate::error::TaskFailure;
use crate::llm::ImplementationResult;
use crate::playbook::PlaybookReport;
use crate::task::Task;

/// How long one step took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepTiming {
    pub step: String,
    pub duration_ms: u64,
    /// `false` when the step failed, or completed and found the work wanting (tests that
    /// ran and failed).
    pub ok: bool,
}

/// The outcome of one task run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub success: bool,
    pub task_id: String,
    pub spec_name: String,
    pub runner_id: String,
    pub attempt: u32,
    pub branch: Option<String>,
    pub base_commit: Option<String>,
    pub commit: Option<String>,
    pub pushed: bool,
    /// An earlier attempt had already pushed this task's commit; this run only finished
    /// the steps after it (no model call).
    pub resumed: bool,
    pub slot_id: Option<String>,
    pub playbook: Option<String>,
    pub duration_seconds: f64,
    pub artifacts: Vec<StoredArtifact>,
    pub impl_result: Option<ImplementationResult>,
    pub test_result: Option<PlaybookReport>,
    pub metrics: RunMetrics,
    pub steps: Vec<StepTiming>,
    pub error: Option<TaskFailure>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl RunResult {
    pub(super) fn begin(
        task: &Task,
        runner_id: &str,
        attempt: u32,
        state: &RunState,
        steps: Vec<StepTiming>,
    ) -> Self {
        RunResult {
            success: false,
            task_id: task.task_id.clone(),
            spec_name: task.spec_name.clone(),
            runner_id: runner_id.to_string(),
            attempt,
            branch: state.workspace.as_ref().map(|w| w.branch.clone()),
            base_commit: state.workspace.as_ref().map(|w| w.base_commit.clone()),
            commit: state.commit.as_ref().map(|c| c.id.clone()),
            pushed: state.pushed,
            resumed: state.resumed,
            slot_id: state.slot.as_ref().map(|s| s.slot_id.clone()),
            playbook: state.playbook_source.clone(),
            duration_seconds: 0.0,
            artifacts: Vec::new(),
            impl_result: state.implementation.clone(),
            test_result: state.test_report.clone(),
            metrics: RunMetrics::default(),
            steps,
            error: None,
            metadata: task.metadata.clone(),
        }
    }

    /// `TaskCompleted` data: where the work is and what it cost.
    pub(super) fn completion_event_data(&self) -> serde_json::Value {
        serde_json::json!({
            "branch": self.branch,
            "commit": self.commit,
            "slot_id": self.slot_id,
            "artifacts": self.artifacts,
            "duration_seconds": self.duration_seconds,
            "llm_model": self.impl_result.as_ref().map(|i| i.llm_model.clone()),
            "tokens_used": self.impl_result.as_ref().map(|i| i.tokens_used),
            "usage": self.usage(),
            "metrics": self.metrics,
            "metadata": self.metadata,
        })
    }

    /// Tokens, cost, turns and rounds of the implementation engine, for the events.
    fn usage(&self) -> serde_json::Value {
        match &self.impl_result {
            None => serde_json::Value::Null,
            Some(i) => serde_json::json!({
                "prompt_tokens": i.prompt_tokens,
                "completion_tokens": i.completion_tokens,
                "tokens_used": i.tokens_used,
                "estimated_cost_usd": i.estimated_cost_usd,
                "turns": i.turns,
                "rounds": i.rounds,
            }),
        }
    }

    /// `TaskFailed` data: the classified reason and the evidence.
    pub(super) fn failure_event_data(&self, failure: &TaskFailure) -> serde_json::Value {
        let mut data = failure.event_fields();
        data.insert("usage".into(), self.usage());
        data.insert("metrics".into(), serde_json::json!(self.metrics));
        data.insert("artifacts".into(), serde_json::json!(self.artifacts));
        data.insert("duration_seconds".into(), serde_json::json!(self.duration_seconds));
        data.insert("metadata".into(), serde_json::json!(self.metadata));
        data.into()
    }
}
