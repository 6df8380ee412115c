//! The recording points, one function per occurrence, each with fixed label values:
//! the only way the rest of the program touches metrics.

use super::{
    BROKER_RECONNECTS, DEAD_LETTERS, EVENT_OUTBOX_DEPTH, EVENT_OUTBOX_DROPPED, IN_FLIGHT, LLM_COST,
    LLM_TOKENS, MIRROR_EVENTS, MIRROR_LAG, RETRIES, STEP_DURATION, TASKS, global,
};

/// Step names that get their own series; anything else is counted as `other`, so a
/// future step with a dynamic name can never blow up the label set.
const KNOWN_STEPS: &[&str] =
    &["validate", "slot", "workspace", "implement", "test", "commit", "push", "upload", "release"];

/// How a task delivery was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskOutcome {
    /// Pushed, uploaded, acked.
    Completed,
    /// Dead-lettered with its reason.
    Failed,
    /// Parked in a retry queue after a transient failure.
    Retried,
    /// Neither acked nor dead-lettered: the broker redelivers it.
    Unsettled,
}

impl TaskOutcome {
    fn label(self) -> &'static str {
        match self {
            TaskOutcome::Completed => "completed",
            TaskOutcome::Failed => "failed",
            TaskOutcome::Retried => "retried",
            TaskOutcome::Unsettled => "unsettled",
        }
    }
}

/// Counts one settled task.
pub fn record_task_outcome(outcome: TaskOutcome) {
    global().add(&TASKS, &[outcome.label()], 1.0);
}

/// Observes one step's duration.
pub fn record_step(step: &str, ok: bool, seconds: f64) {
    let step = KNOWN_STEPS.iter().find(|known| **known == step).copied().unwrap_or("other");
    global().observe(&STEP_DURATION, &[step, if ok { "ok" } else { "error" }], seconds);
}

/// Counts one retry of `operation` (`task_registry`, `repo_pool`, `artifact_store`,
/// `task`, ...). Callers pass a literal, which keeps the label set closed.
pub fn record_retry(operation: &'static str) {
    global().add(&RETRIES, &[operation], 1.0);
}

/// Counts one dead letter of failure `kind` (a `FailureKind` wire name or a mirror reason).
pub fn record_dead_letter(kind: &'static str) {
    global().add(&DEAD_LETTERS, &[kind], 1.0);
}

/// Adds one task's LLM token usage.
pub fn record_llm_usage(prompt_tokens: u64, completion_tokens: u64) {
    global().add(&LLM_TOKENS, &["prompt"], prompt_tokens as f64);
    global().add(&LLM_TOKENS, &["completion"], completion_tokens as f64);
}

/// Adds LLM cost, for an engine that knows its prices.
pub fn record_llm_cost(usd: f64) {
    global().add(&LLM_COST, &[], usd);
}

/// Counts one successful broker reconnection.
pub fn record_broker_reconnect() {
    global().add(&BROKER_RECONNECTS, &[], 1.0);
}

/// Counts one event handled by the mirror: `applied`, `duplicate` or `dead_lettered`.
pub fn record_mirror_event(outcome: &'static str) {
    global().add(&MIRROR_EVENTS, &[outcome], 1.0);
}

/// Sets the mirror lag: how old the event it just applied was.
pub fn set_mirror_lag(seconds: f64) {
    global().set(&MIRROR_LAG, &[], seconds.max(0.0));
}

/// Sets the number of lifecycle events parked in the outbox.
pub fn set_event_outbox_depth(depth: usize) {
    global().set(&EVENT_OUTBOX_DEPTH, &[], depth as f64);
}

/// Counts one lifecycle event the full outbox dropped.
pub fn record_event_outbox_dropped() {
    global().add(&EVENT_OUTBOX_DROPPED, &[], 1.0);
}

/// Counts a task as in flight until dropped; dropping (also on panic or cancellation)
/// is what keeps the gauge honest.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    /// Marks one more task as running.
    pub fn start() -> InFlight {
        global().add(&IN_FLIGHT, &[], 1.0);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        global().add(&IN_FLIGHT, &[], -1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Metrics, STEP_DURATION, TASKS};

    #[test]
    fn renders_counters_and_histograms_in_the_text_format() {
        let metrics = Metrics::default();
        metrics.add(&TASKS, &["completed"], 1.0);
        metrics.observe(&STEP_DURATION, &["test", "ok"], 0.3);
        let text = metrics.render();
        assert!(
            text.contains(
                "# TYPE agent_runner_tasks_total counter\nagent_runner_tasks_total{outcome=\"completed\"} 1\n"
            ),
            "{text}"
        );
        for line in [
            "agent_runner_step_duration_seconds_bucket{step=\"test\",result=\"ok\",le=\"0.25\"} 0",
            "agent_runner_step_duration_seconds_bucket{step=\"test\",result=\"ok\",le=\"0.5\"} 1",
            "agent_runner_step_duration_seconds_bucket{step=\"test\",result=\"ok\",le=\"+Inf\"} 1",
            "agent_runner_step_duration_seconds_sum{step=\"test\",result=\"ok\"} 0.3",
            "agent_runner_step_duration_seconds_count{step=\"test\",result=\"ok\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn unknown_step_names_collapse_into_other() {
        super::record_step("task-1.1-special", true, 1.0);
        let text = super::global().render();
        assert!(text.contains("step=\"other\""));
        assert!(!text.contains("task-1.1-special"));
    }
}
