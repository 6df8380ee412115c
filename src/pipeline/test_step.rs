//! The test step: the task's playbook through the executor, for the pipeline's test step
//! and the engine's `run_tests` tool alike, with what each run feeds back (the log, the
//! task's resource usage, `ResourceLimitReached`, the model's repair text).

use std::path::Path;
use std::sync::Mutex;

use futures_util::future::BoxFuture;

use super::RunContext;
use crate::error::{FailureKind, TaskFailure};
use crate::llm::{TestRun, TestRunner};
use crate::playbook::{self, PlaybookReport, PlaybookRun, StepStatus};

/// The engine's `run_tests` tool: the playbook through the same executor as the test step.
pub(super) struct StepTests<'c, 'r> {
    pub ctx: &'c RunContext<'r>,
    pub playbook: &'c playbook::Playbook,
    pub workspace: &'c Path,
    /// The first infrastructure failure a tool run met: the round ends with it as the
    /// task's failure, instead of the model being told its tests "failed".
    pub unavailable: Mutex<Option<TaskFailure>>,
}

impl StepTests<'_, '_> {
    /// The infrastructure failure a tool run met, if any.
    pub fn take_unavailable(&self) -> Option<TaskFailure> {
        self.unavailable.lock().ok().and_then(|mut u| u.take())
    }
}

impl TestRunner for StepTests<'_, '_> {
    fn run_tests(&self) -> BoxFuture<'_, TestRun> {
        Box::pin(async move {
            match run_tests(self.ctx, self.playbook, self.workspace).await {
                Ok(report) if report.success => TestRun { passed: true, output: "all steps passed".into() },
                Ok(report) => TestRun { passed: false, output: repair_feedback(&report) },
                Err(failure) => {
                    let output = failure.message.clone();
                    if failure.kind == FailureKind::Infrastructure
                        && let Ok(mut first) = self.unavailable.lock()
                    {
                        first.get_or_insert(failure);
                    }
                    TestRun { passed: false, output }
                }
            }
        })
    }
}

/// Runs the playbook once (the test step, or the engine's tool), logs each step, counts
/// its usage toward the task's and reports crossed limits. A step the environment could
/// not run fails the task as `infrastructure`, transient: nothing was tested.
pub(super) async fn run_tests(
    ctx: &RunContext<'_>,
    playbook: &playbook::Playbook,
    workspace: &Path,
) -> Result<PlaybookReport, TaskFailure> {
    let settings = &ctx.runner.settings;
    let mut variables = settings.variables.clone();
    variables.insert("task.id".into(), ctx.task.task_id.clone());
    variables.insert("task.spec_name".into(), ctx.task.spec_name.clone());
    variables.insert("task.required_skill".into(), ctx.task.required_skill.clone().unwrap_or_default());
    let run = PlaybookRun {
        workdir: workspace,
        variables: &variables,
        default_step_timeout: settings.default_step_timeout,
        output_cap_bytes: settings.output_cap_bytes,
        cancel: &ctx.cancel,
        execution: &settings.execution,
    };
    let report = playbook::run_playbook(playbook, &run).await;
    ctx.usage.add(&report);
    for step in &report.steps {
        if let Some(breach) = &step.limit_exceeded {
            let data = serde_json::json!({
                "step": step.name, "limit": breach.kind, "limit_value": breach.limit,
                "observed": breach.observed, "message": breach.to_string(),
            });
            ctx.emit(crate::events::EventType::ResourceLimitReached, &step.name, data).await;
        }
        ctx.log.record(
            "test",
            &format!("{} -> {:?} (exit {:?})\n{}", step.name, step.status, step.exit_code, step.output_tail),
        );
    }
    if let Some(step) = report.unavailable_step() {
        let reason = step.reason.as_deref().unwrap_or("the container engine could not run it");
        let message = format!("step '{}': {reason}", step.name);
        return Err(TaskFailure::new(FailureKind::Infrastructure, "test", message).transient(true));
    }
    Ok(report)
}

/// What the model is told after failing tests: which steps failed and their output.
/// The LLM step keeps only the tail of this, where test runners put their verdict.
pub(super) fn repair_feedback(report: &PlaybookReport) -> String {
    let mut text = report.failure_summary().unwrap_or_else(|| "the playbook failed".to_string());
    let failed = |status: &StepStatus| matches!(status, StepStatus::Failed | StepStatus::TimedOut);
    for step in report.steps.iter().filter(|s| failed(&s.status)) {
        text.push_str(&format!(
            "\n\n$ {}\n(exit code {:?})\n{}",
            step.command, step.exit_code, step.output_tail
        ));
    }
    text
}
