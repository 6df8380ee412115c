//! The per-task context the steps share: the task, its cancellation token, its event
//! subject, its execution log and the step timings.

use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{ExecutionLog, Runner, StepTiming};
use crate::error::TaskFailure;
use crate::events::{EventSubject, EventType};
use crate::metrics::StepResult;
use crate::task::Task;

/// One task run in progress.
pub struct RunContext<'a> {
    pub runner: &'a Runner,
    pub task: &'a Task,
    pub attempt: u32,
    /// Cancelled on shutdown or when the task deadline passes; steps pass it down to
    /// whatever they run so nothing outlives the task.
    pub cancel: CancellationToken,
    pub log: ExecutionLog,
    /// CPU time and peak memory of the task's commands so far.
    pub usage: super::metrics::UsageTally,
    subject: EventSubject,
    timings: Mutex<Vec<StepTiming>>,
    current_step: Mutex<String>,
}

impl<'a> RunContext<'a> {
    pub fn new(runner: &'a Runner, task: &'a Task, attempt: u32, cancel: CancellationToken) -> Self {
        RunContext {
            runner,
            task,
            attempt,
            cancel,
            log: ExecutionLog::new(runner.services.masker.clone()),
            usage: Default::default(),
            subject: EventSubject {
                task_id: Some(task.task_id.clone()),
                spec_name: Some(task.spec_name.clone()),
                runner_id: runner.settings.runner_id.clone(),
                attempt,
            },
            timings: Mutex::new(Vec::new()),
            current_step: Mutex::new("validate".to_string()),
        }
    }

    /// Publishes a lifecycle event, best-effort (see [`crate::events::publish_best_effort`]).
    pub async fn emit(&self, event_type: EventType, discriminator: &str, data: serde_json::Value) {
        let event = self.subject.event(event_type, discriminator, data);
        self.log.record("event", &format!("{} {}", event_type.name(), discriminator));
        crate::events::publish_best_effort(self.runner.services.events.as_ref(), &event).await;
    }

    /// Runs one named step: `StepStarted`/`StepCompleted` events, a log entry, a timing.
    pub async fn step<T>(
        &self,
        name: &str,
        work: impl Future<Output = Result<T, TaskFailure>>,
    ) -> Result<T, TaskFailure> {
        self.judged_step(name, work, |_| true).await
    }

    /// [`RunContext::step`] for a step that can complete and still find the work wanting
    /// (tests that ran and failed): `held` judges the value, and a `false` is recorded as
    /// `failed` (metric, timing, event) while the value goes back for the caller to act on.
    pub async fn judged_step<T>(
        &self,
        name: &str,
        work: impl Future<Output = Result<T, TaskFailure>>,
        held: impl FnOnce(&T) -> bool,
    ) -> Result<T, TaskFailure> {
        if let Ok(mut current) = self.current_step.lock() {
            *current = name.to_string();
        }
        if self.cancel.is_cancelled() {
            return Err(TaskFailure::new(crate::error::FailureKind::Cancelled, name, "the task was stopped"));
        }
        // A step repeats in repair rounds; each run needs its own (still deterministic)
        // event id, or the mirror would drop the later rounds as duplicates.
        let earlier_runs = self.timings().iter().filter(|t| t.step == name).count();
        let discriminator = match earlier_runs {
            0 => name.to_string(),
            n => format!("{name}#{}", n + 1),
        };
        self.emit(EventType::StepStarted, &discriminator, serde_json::json!({ "step": name })).await;
        self.log.record(name, "started");
        let started = Instant::now();
        let outcome = work.await;
        let elapsed = started.elapsed();
        let duration_ms = elapsed.as_millis() as u64;
        let result = match &outcome {
            Ok(value) if held(value) => StepResult::Ok,
            Ok(_) => StepResult::Failed,
            Err(_) => StepResult::Error,
        };
        let ok = result == StepResult::Ok;
        crate::metrics::record_step(name, result, elapsed.as_secs_f64());
        match &outcome {
            Ok(_) if ok => self.log.record(name, &format!("completed in {duration_ms} ms")),
            Ok(_) => self.log.record(name, &format!("completed in {duration_ms} ms, with failures")),
            Err(failure) => self.log.record(name, &format!("failed after {duration_ms} ms: {failure}")),
        }
        if let Ok(mut timings) = self.timings.lock() {
            timings.push(StepTiming { step: name.to_string(), duration_ms, ok });
        }
        let data = serde_json::json!({
            "step": name, "duration_ms": duration_ms, "ok": ok, "result": result.label(),
        });
        self.emit(EventType::StepCompleted, &discriminator, data).await;
        outcome
    }

    /// The step running now (or last run), for timeout attribution.
    pub fn current_step(&self) -> String {
        self.current_step.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The timings of the steps run so far.
    pub fn timings(&self) -> Vec<StepTiming> {
        self.timings.lock().map(|t| t.clone()).unwrap_or_default()
    }
}
