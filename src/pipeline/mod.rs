//! One task, end to end: the seed's `RunnerOrchestrator`.
//!
//! [`Runner::run`] takes a validated [`Task`] through slot → workspace → implement →
//! test (with repair rounds) → commit → push → artifacts, publishing lifecycle events
//! on the way, and returns a [`RunResult`]: success or a classified failure. It never
//! touches the delivery: settling is the worker's job, from the result.
//!
//! Each step lives in its own file and returns an outcome; this file only sequences
//! them, bounds the whole run by the task deadline, and makes sure a failure still
//! leaves its artifacts and its `TaskFailed` event behind.

mod admission;
mod artifacts_step;
mod assemble;
mod git_retry;
mod in_pod;
mod log;
mod metrics;
mod preflight;
mod push_guard;
mod result;
mod resume;
mod run_context;
mod steps;
mod test_step;

pub use assemble::{AssembleError, RunnerSecrets};
pub use log::ExecutionLog;
pub use metrics::{RunMetrics, UsageTally};
pub use preflight::{PreflightError, check_execution_mode, check_playbooks_dir, preflight};
pub use result::{RunResult, StepTiming};
pub use run_context::RunContext;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::artifacts::ArtifactStore;
use crate::error::{FailureKind, TaskFailure};
use crate::events::{EventSink, EventType};
use crate::git::{GitAuthor, GitCredentials, LocalSlotPool};
use crate::llm::SharedLlmClient;
use crate::metrics::StepResult;
use crate::secrets::Masker;
use crate::task::Task;

/// Everything a runner needs, built once per process and shared by all tasks.
pub struct RunnerServices {
    pub artifact_store: Arc<dyn ArtifactStore>,
    pub events: Arc<dyn EventSink>,
    pub slot_pool: LocalSlotPool,
    /// The Repo Pool Manager, when `repo_pool_url` is set; slots then come from it
    /// instead of `slot_pool` (unless the message brings its own).
    pub repo_pool: Option<crate::clients::RepoPoolClient>,
    pub git_credentials: GitCredentials,
    pub git_author: GitAuthor,
    /// One client for every task, built on first use.
    pub llm: SharedLlmClient,
    pub masker: Masker,
    /// The push guard's scan: the known secrets (masked or not) and the allow-patterns.
    pub secret_scan: crate::secrets::SecretScan,
    /// `execution_mode: kubernetes`: tasks run in Jobs of their own (`in_pod.rs`).
    pub kubernetes: Option<Arc<crate::kubernetes::KubernetesJobs>>,
}

/// The knobs of a run that come from configuration.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    pub runner_id: String,
    /// Used when the message sets no `timeout_seconds`.
    pub default_timeout: Duration,
    pub playbooks_dir: PathBuf,
    pub default_step_timeout: Duration,
    pub output_cap_bytes: usize,
    /// Whether a message may carry a whole playbook (commands!) inline.
    pub allow_inline_playbooks: bool,
    /// How many times failing test output goes back to the model before giving up.
    pub repair_rounds: u32,
    /// Variables for playbook conditions, from the config (`lint_enabled`, ...).
    pub variables: std::collections::BTreeMap<String, String>,
    /// The longest task the broker tolerates (its consumer timeout): a message asking
    /// for more is refused instead of having its channel closed mid-task.
    pub max_task_timeout: Duration,
    /// Where playbook steps run and their resource limits (`execution_mode`, `limits`).
    pub execution: crate::playbook::StepExecution,
    /// The implementation engine: mode, budgets, protected paths, prices.
    pub engine: crate::llm::EngineSettings,
    /// Largest workspace file read for the model, added or grown by a commit, or shown in
    /// the diff artifact (`limits.max_file_bytes`).
    pub max_file_bytes: u64,
    /// `git.allowed_remotes`: the remotes a task may name.
    pub allowed_remotes: Vec<crate::git::RemotePrefix>,
    /// `pool.slot_roots`, absolute: where a task's own `slot_path` may lie.
    pub slot_roots: Vec<PathBuf>,
    /// `git_retry_count`: in-place retries of a clone, fetch or push that failed
    /// transiently, before the task-level retry.
    pub git_retry_count: u32,
}

/// Runs tasks. One per process; `run` may be called concurrently.
pub struct Runner {
    pub services: RunnerServices,
    pub settings: RunnerSettings,
}

/// Why a run's cancellation token fired. The worker records it before cancelling, so the
/// run can end the right way: left for redelivery (shutdown) or dead-lettered as
/// `cancelled` with a `TaskCancelled` event (operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The worker is shutting down: stop now, publish nothing final, let the broker
    /// redeliver. Also what a cancelled token without a recorded reason means.
    Shutdown,
    /// An operator cancelled the task (control exchange).
    Cancelled,
}

/// Where the worker records a [`StopReason`]; the first one recorded wins.
#[derive(Debug, Clone, Default)]
pub struct StopCause(Arc<OnceLock<StopReason>>);

impl StopCause {
    /// Records `reason` unless one was recorded already.
    pub fn set(&self, reason: StopReason) {
        let _ = self.0.set(reason);
    }

    /// The recorded reason, [`StopReason::Shutdown`] when none was.
    pub fn reason(&self) -> StopReason {
        self.0.get().copied().unwrap_or(StopReason::Shutdown)
    }
}

/// Failure artifacts and the final event get this long beyond the task deadline, so a
/// timed-out task still leaves its evidence behind, without hanging forever on a dead store.
const WRAP_UP_BUDGET: Duration = Duration::from_secs(60);

/// The failure of a run stopped from outside, at the step it was in.
fn stopped(ctx: &RunContext<'_>, cause: &StopCause) -> TaskFailure {
    let message = match cause.reason() {
        StopReason::Shutdown => "stopped by the worker's shutdown; left for redelivery",
        StopReason::Cancelled => "cancelled by an operator",
    };
    TaskFailure::new(FailureKind::Cancelled, ctx.current_step().as_str(), message)
}

impl Runner {
    pub fn new(services: RunnerServices, settings: RunnerSettings) -> Self {
        Runner { services, settings }
    }

    /// Refuses a task timeout the broker's consumer timeout cannot accommodate.
    fn check_timeout(&self, timeout: Duration) -> Result<(), TaskFailure> {
        if timeout < self.settings.max_task_timeout {
            return Ok(());
        }
        Err(TaskFailure::new(
            FailureKind::Validation,
            "validate",
            format!(
                "timeout_seconds: {} is not below the broker's consumer timeout of {} seconds",
                timeout.as_secs(),
                self.settings.max_task_timeout.as_secs()
            ),
        ))
    }

    /// The result of a run that never got going (the worker refused it or lost it).
    pub fn refused(&self, task: &Task, attempt: u32) -> RunResult {
        RunResult::begin(task, &self.settings.runner_id, attempt, &steps::RunState::default(), Vec::new())
    }

    /// Runs `task` (delivery attempt `attempt`, starting at 1) to completion or failure.
    /// `cancel` stops it early as a shutdown would; the task's own deadline is applied here.
    pub async fn run(&self, task: &Task, attempt: u32, cancel: &CancellationToken) -> RunResult {
        self.run_with(task, attempt, cancel, &StopCause::default()).await
    }

    /// [`Runner::run`], with `cause` saying why `cancel` fired when it does: a shutdown
    /// ends the run at once with a `cancelled` failure and nothing published or stored
    /// (the delivery goes back to the broker); an operator's cancel stores the failure
    /// artifacts and ends with `TaskCancelled`.
    ///
    /// The run's log lines sit in the task's span ([`crate::telemetry::task_span`]).
    pub async fn run_with(
        &self,
        task: &Task,
        attempt: u32,
        cancel: &CancellationToken,
        cause: &StopCause,
    ) -> RunResult {
        let span = crate::telemetry::task_span(
            Some(&task.task_id),
            Some(&task.spec_name),
            &self.settings.runner_id,
            attempt,
        );
        tracing::Instrument::instrument(self.run_in_span(task, attempt, cancel, cause), span).await
    }

    /// [`Runner::run_with`], inside the task's span.
    async fn run_in_span(
        &self,
        task: &Task,
        attempt: u32,
        cancel: &CancellationToken,
        cause: &StopCause,
    ) -> RunResult {
        let started = Instant::now();
        let ctx = RunContext::new(self, task, attempt, cancel.child_token());
        ctx.emit(
            EventType::TaskStarted,
            "",
            serde_json::json!({ "title": task.title, "metadata": task.metadata }),
        )
        .await;

        let timeout =
            Duration::from_secs(task.timeout_seconds.unwrap_or(self.settings.default_timeout.as_secs()));
        let mut state = steps::RunState::default();
        let mut pod_outcome = None;
        let outcome = match self.check_timeout(timeout).and_then(|()| self.admit(task)) {
            Err(refused) => Err(refused),
            Ok(()) => match self.services.kubernetes.as_deref() {
                Some(jobs) => {
                    let (outcome, reported) = in_pod::run_in_pod(&ctx, jobs, cause, timeout).await;
                    pod_outcome = reported;
                    outcome
                }
                None => tokio::select! {
                    outcome = steps::run_steps(&ctx, &mut state) => outcome,
                    () = tokio::time::sleep(timeout) => Err(TaskFailure::new(
                        FailureKind::Timeout,
                        ctx.current_step().as_str(),
                        format!("the task did not finish within {} seconds", timeout.as_secs()),
                    )),
                    () = cancel.cancelled() => Err(stopped(&ctx, cause)),
                },
            },
        };
        // A step may have noticed the cancellation first (its process killed, a test
        // "failing"); the run still ends as stopped, not as that step's failure.
        let outcome = match outcome {
            Err(failure) if cancel.is_cancelled() && failure.kind != FailureKind::Timeout => {
                Err(stopped(&ctx, cause))
            }
            other => other,
        };
        // Whatever is still running for this task (a test command) is stopped now.
        ctx.cancel.cancel();

        let mut result = RunResult::begin(task, &self.settings.runner_id, attempt, &state, ctx.timings());
        result.error =
            outcome.err().map(|f| TaskFailure { message: self.services.masker.mask(&f.message), ..f });
        result.success = result.error.is_none();
        result.metrics = ctx.usage.metrics();
        result.duration_seconds = started.elapsed().as_secs_f64();
        // A task pod's figures are its commands', measured in the pod.
        let mode = match &pod_outcome {
            Some(reported) => {
                in_pod::adopt_outcome(&mut result, reported);
                "kubernetes"
            }
            None => self.settings.execution.isolation.mode_name(),
        };
        if result.metrics.commands > 0 {
            crate::metrics::record_task_usage(
                mode,
                result.metrics.cpu_seconds,
                result.metrics.memory_bytes(),
            );
        }
        let stopped_by =
            result.error.as_ref().filter(|f| f.kind == FailureKind::Cancelled).map(|_| cause.reason());
        if stopped_by == Some(StopReason::Shutdown) {
            // The delivery goes back to the broker; the next attempt writes the artifacts.
            return result;
        }
        // Timed here rather than as a `ctx.step`: the upload is the run's wrap-up, after
        // the log and summary it stores were written, and has no events of its own.
        let uploading = Instant::now();
        // A task pod that reported an outcome stored its artifacts itself (the worker
        // checked them); one that died without a word gets the worker's log and summary.
        let wrap_up = async {
            match pod_outcome {
                Some(_) => Ok(()),
                None => artifacts_step::upload_all(&ctx, &state, &mut result).await,
            }
        };
        let uploaded = tokio::time::timeout(WRAP_UP_BUDGET, wrap_up).await;
        let upload_result = if matches!(uploaded, Ok(Ok(()))) { StepResult::Ok } else { StepResult::Error };
        crate::metrics::record_step("upload", upload_result, uploading.elapsed().as_secs_f64());
        match uploaded {
            Ok(Ok(())) => {}
            Ok(Err(upload_failure)) => {
                result.success = false;
                result.error.get_or_insert(upload_failure);
            }
            Err(_) => {
                result.success = false;
                result.error.get_or_insert(TaskFailure::new(
                    FailureKind::ArtifactUpload,
                    "upload",
                    "artifact upload did not finish in time",
                ));
            }
        }

        release_pool_slot(&ctx, &mut state).await;
        if let Some(implementation) = &result.impl_result {
            crate::metrics::record_llm_usage(
                u64::from(implementation.prompt_tokens),
                u64::from(implementation.completion_tokens),
            );
            if let Some(cost) = implementation.estimated_cost_usd {
                crate::metrics::record_llm_cost(cost);
            }
        }

        let (event, data) = match &result.error {
            None => (EventType::TaskCompleted, result.completion_event_data()),
            Some(failure) if failure.kind == FailureKind::Cancelled => {
                (EventType::TaskCancelled, result.failure_event_data(failure))
            }
            Some(failure) => (EventType::TaskFailed, result.failure_event_data(failure)),
        };
        ctx.emit(event, "", data).await;
        result
    }
}

/// Gives a Repo Pool slot back, whatever the outcome. A failed release is logged, not
/// fatal: the work is done, and the pool reclaims the slot after the allocation timeout.
async fn release_pool_slot(ctx: &RunContext<'_>, state: &mut steps::RunState) {
    let Some(slot) = state.pool_slot.take() else { return };
    let slot_id = slot.slot_id.clone();
    let pool = slot.client().clone();
    // The lease's workspace path is the pool's; forget it before the pool hands it out again.
    state.slot = None;
    match tokio::time::timeout(WRAP_UP_BUDGET, slot.release()).await {
        Ok(Ok(())) => ctx.log.record("release", &format!("Repo Pool slot {slot_id} released")),
        Ok(Err(error)) => {
            // What the pool thinks of the slot tells the operator whether anything is left
            // to do: already free (a lost answer) or still held until its timeout.
            let state = match tokio::time::timeout(WRAP_UP_BUDGET, pool.slot(&slot_id)).await {
                Ok(Ok(slot)) => slot.state.unwrap_or_else(|| "not stated".to_string()),
                Ok(Err(query)) => format!("unknown ({query})"),
                Err(_) => "unknown (no answer in time)".to_string(),
            };
            tracing::warn!(%error, slot_id, slot_state = %state, "Repo Pool slot not released");
        }
        Err(_) => tracing::warn!(slot_id, "Repo Pool slot release did not finish in time"),
    }
}
