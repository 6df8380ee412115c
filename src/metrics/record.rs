//! The recording points, one function per occurrence, each with fixed label values:
//! the only way the rest of the program touches metrics.

use super::{
    BROKER_RECONNECTS, DEAD_LETTERS, EVENT_OUTBOX_DEPTH, EVENT_OUTBOX_DROPPED, EXECUTION_MODES, IN_FLIGHT,
    LLM_COST, LLM_TOKENS, MIRROR_EVENTS, MIRROR_LAG, QUEUE_WAIT, RETRIES, STEP_DURATION, STEPS, TASK_CPU,
    TASK_DURATION, TASK_MEMORY, TASKS, WORKTREE_SCANS, global,
};

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

/// How one run of a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepResult {
    /// The step did its work, and the work held.
    Ok,
    /// The step ran to its end and found the work wanting: the tests ran and failed.
    Failed,
    /// The step itself could not complete (its error ends the run).
    Error,
}

impl StepResult {
    /// The `result` label, as in the README's metrics table.
    pub fn label(self) -> &'static str {
        match self {
            StepResult::Ok => "ok",
            StepResult::Failed => "failed",
            StepResult::Error => "error",
        }
    }
}

/// Counts one settled task.
pub fn record_task_outcome(outcome: TaskOutcome) {
    global().add(&TASKS, &[outcome.label()], 1.0);
}

/// Observes one delivery's time on this worker, receipt to settlement.
pub fn record_task_duration(outcome: TaskOutcome, seconds: f64) {
    global().observe(&TASK_DURATION, &[outcome.label()], seconds);
}

/// Observes how long a task message waited between its publication and its receipt.
/// Negative waits (the publisher's clock ahead of ours) count as 0.
pub fn record_queue_wait(seconds: f64) {
    global().observe(&QUEUE_WAIT, &[], seconds.max(0.0));
}

/// Observes one step's duration. Step names outside the closed set are counted as
/// `other`, so a future step with a dynamic name can never blow up the label set.
pub fn record_step(step: &str, result: StepResult, seconds: f64) {
    let step = STEPS.iter().find(|known| **known == step).copied().unwrap_or("other");
    global().observe(&STEP_DURATION, &[step, result.label()], seconds);
}

/// Observes one task run's command usage: CPU seconds and peak memory in bytes, in
/// execution `mode` (`Isolation::mode_name`; an unknown name is not observed).
pub fn record_task_usage(mode: &str, cpu_seconds: f64, peak_memory_bytes: f64) {
    let Some(mode) = EXECUTION_MODES.iter().find(|known| **known == mode) else { return };
    global().observe(&TASK_CPU, &[mode], cpu_seconds);
    global().observe(&TASK_MEMORY, &[mode], peak_memory_bytes);
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

/// Counts one walk of a whole task workspace by the worker: the figure the per-task cost
/// is judged by (the benchmark reads it), since each walk stats every file.
pub fn record_worktree_scan() {
    global().add(&WORKTREE_SCANS, &[], 1.0);
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
    use super::{StepResult, TaskOutcome};

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
        super::record_step("task-1.1-special", StepResult::Ok, 1.0);
        let text = super::global().render();
        assert!(text.contains("step=\"other\""));
        assert!(!text.contains("task-1.1-special"));
    }

    #[test]
    fn every_label_a_recording_point_can_pass_is_registered_at_zero() {
        use super::super::FAMILIES;
        let registered = Metrics::default().render();
        let has = |series: String| registered.lines().any(|l| l == format!("{series} 0"));
        for outcome in
            [TaskOutcome::Completed, TaskOutcome::Failed, TaskOutcome::Retried, TaskOutcome::Unsettled]
        {
            assert!(has(format!("agent_runner_tasks_total{{outcome=\"{}\"}}", outcome.label())));
            assert!(has(format!(
                "agent_runner_task_duration_seconds_count{{outcome=\"{}\"}}",
                outcome.label()
            )));
        }
        for result in [StepResult::Ok, StepResult::Failed, StepResult::Error] {
            let series = format!(
                "agent_runner_step_duration_seconds_count{{step=\"test\",result=\"{}\"}}",
                result.label()
            );
            assert!(has(series), "{registered}");
        }
        for kind in crate::error::FailureKind::ALL {
            assert!(has(format!("agent_runner_dead_letters_total{{kind=\"{}\"}}", kind.as_str())));
        }
        for service in crate::clients::Service::ALL {
            assert!(has(format!("agent_runner_retries_total{{operation=\"{}\"}}", service.name())));
        }
        for family in FAMILIES {
            assert_eq!(family.labels.len(), family.label_values.len(), "closed sets of {}", family.name);
        }
    }
}
