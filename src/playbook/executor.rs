//! Runs a playbook's steps in order and reports each one.
//!
//! The report is data, not an error: a failing test run is an expected outcome that the
//! pipeline feeds back to the LLM, stores as the test-results artifact and summarises.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::model::{Playbook, PlaybookStep};
use crate::process::{
    CommandEnd, CommandOutcome, CommandSpec, Isolation, LimitBreach, ProcessError, ProcessLimits,
    ResourceUsage, run_command,
};

/// Variables every step gets unless it sets them itself: Python writes no byte-code
/// (`__pycache__/` beside the sources and tests), which would otherwise need cleaning out of
/// the commit (see `git::is_build_cache`, which keeps any that appear out anyway).
pub const STEP_DEFAULT_ENV: &[(&str, &str)] = &[("PYTHONDONTWRITEBYTECODE", "1")];

/// A step's environment: [`STEP_DEFAULT_ENV`] under the step's own `env`.
fn step_env(step: &PlaybookStep) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> =
        STEP_DEFAULT_ENV.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
    env.extend(step.env.clone());
    env
}

/// Everything a playbook run needs besides the playbook.
#[derive(Debug, Clone, Copy)]
pub struct PlaybookRun<'a> {
    /// Directory the steps run in (the task's workspace).
    pub workdir: &'a Path,
    /// Values for step conditions (see [`super::condition`]).
    pub variables: &'a BTreeMap<String, String>,
    /// Timeout for steps that do not set `timeout_seconds`.
    pub default_step_timeout: Duration,
    /// Output kept per step attempt (head and tail).
    pub output_cap_bytes: usize,
    /// Stops the running step (its process group is killed) and skips the rest.
    pub cancel: &'a CancellationToken,
    /// Where steps run and what they may use.
    pub execution: &'a StepExecution,
}

/// How every step of a run is executed: the configured mode and the operator's limits.
/// A step may opt into the network and lower (never raise) the limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepExecution {
    /// The mode; the `network` flag inside is replaced by each step's own.
    pub isolation: Isolation,
    /// Memory and process limits for each step (`cpu_seconds` is derived per step).
    pub limits: ProcessLimits,
    /// `max_cpu_percent`: becomes each step's CPU-time budget over its timeout.
    pub max_cpu_percent: Option<u32>,
}

impl StepExecution {
    /// The isolation and limits for one step with the given timeout.
    pub fn for_step(&self, step: &PlaybookStep, timeout: Duration) -> (Isolation, ProcessLimits) {
        let isolation = match &self.isolation {
            Isolation::LocalProcess => Isolation::LocalProcess,
            Isolation::Sandbox { policy, .. } => {
                Isolation::Sandbox { network: step.network, policy: policy.clone() }
            }
            Isolation::Docker { image, cpu_percent, volumes, .. } => Isolation::Docker {
                image: image.clone(),
                network: step.network,
                cpu_percent: *cpu_percent,
                volumes: volumes.clone(),
            },
        };
        let cpu_seconds =
            self.max_cpu_percent.map(|p| ProcessLimits::cpu_budget_seconds(timeout.as_secs().max(1), p));
        let requested = ProcessLimits {
            max_memory_mb: step.max_memory_mb,
            cpu_seconds,
            max_processes: step.max_processes,
        };
        (isolation, self.limits.tightened_by(requested))
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Passed,
    Failed,
    /// Its condition was false.
    Skipped,
    TimedOut,
    Cancelled,
    /// The environment could not run the step at all (the container engine did not
    /// answer, the image is missing): no test ran, the rest are not run, and the task
    /// fails as `infrastructure`, never as a failing test.
    Unavailable,
    /// An earlier step failed with `fail_fast`, or the run was cancelled.
    NotRun,
}

impl StepStatus {
    /// The name used in test results and log lines (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Passed => "passed",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::TimedOut => "timed_out",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Unavailable => "unavailable",
            StepStatus::NotRun => "not_run",
        }
    }
}

/// What happened to one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    pub name: String,
    pub command: String,
    pub status: StepStatus,
    /// Exit code of the last attempt, when the shell exited on its own.
    pub exit_code: Option<i32>,
    /// Attempts made (0 for skipped and not-run steps).
    pub attempts: u32,
    /// Wall-clock time over all attempts.
    pub duration_ms: u64,
    /// Output of the last attempt, capped by `output_cap_bytes` (head and tail kept, the
    /// middle replaced by an `[... N bytes omitted ...]` marker).
    pub output_tail: String,
    /// Why the step did not pass, or was not run, in words.
    pub reason: Option<String>,
    /// The resource limit the last attempt crossed (its processes were killed for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_exceeded: Option<LimitBreach>,
    /// CPU time and peak memory over all attempts (`None` when no attempt was measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<ResourceUsage>,
}

/// The outcome of a whole playbook; serialised as the test-results artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlaybookReport {
    pub playbook: String,
    /// True when no step failed, timed out or was cancelled.
    pub success: bool,
    pub steps: Vec<StepReport>,
    pub duration_ms: u64,
}

impl PlaybookReport {
    /// The step the environment could not run (see [`StepStatus::Unavailable`]).
    pub fn unavailable_step(&self) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.status == StepStatus::Unavailable)
    }

    /// One line naming the steps that did not pass and why, or `None` on success.
    pub fn failure_summary(&self) -> Option<String> {
        if self.success {
            return None;
        }
        let failed: Vec<String> = self
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s.status,
                    StepStatus::Failed
                        | StepStatus::TimedOut
                        | StepStatus::Cancelled
                        | StepStatus::Unavailable
                )
            })
            .map(|s| format!("'{}' {}", s.name, s.reason.as_deref().unwrap_or("failed")))
            .collect();
        Some(format!("playbook '{}' failed: {}", self.playbook, failed.join("; ")))
    }
}

/// Runs the steps in order: conditions first, then the command with retries; stops after
/// a failing `fail_fast` step or on cancellation, marking the rest as not run.
#[tracing::instrument(skip_all, fields(playbook = %playbook.name))]
pub async fn run_playbook(playbook: &Playbook, ctx: &PlaybookRun<'_>) -> PlaybookReport {
    let started = Instant::now();
    let mut steps = Vec::with_capacity(playbook.steps.len());
    let mut success = true;
    let mut stopped_because: Option<String> = None;
    for step in &playbook.steps {
        if let Some(reason) = &stopped_because {
            steps.push(not_attempted(step, StepStatus::NotRun, reason.clone()));
            continue;
        }
        if let Some(condition) = &step.condition
            && !condition.evaluate(ctx.variables)
        {
            let reason = format!("condition `{condition}` is false");
            steps.push(not_attempted(step, StepStatus::Skipped, reason));
            continue;
        }
        let report = run_step(step, ctx).await;
        tracing::info!(step = %step.name, status = report.status.as_str(), attempts = report.attempts, "playbook step finished");
        match report.status {
            StepStatus::Cancelled => stopped_because = Some("the run was cancelled".to_string()),
            StepStatus::Unavailable => {
                stopped_because = Some(format!("step '{}' could not be run", step.name));
            }
            StepStatus::Failed | StepStatus::TimedOut if step.fail_fast => {
                stopped_because = Some(format!("step '{}' failed and is fail_fast", step.name));
            }
            _ => {}
        }
        success &= report.status == StepStatus::Passed;
        steps.push(report);
    }
    PlaybookReport { playbook: playbook.name.clone(), success, steps, duration_ms: millis(started.elapsed()) }
}

fn not_attempted(step: &PlaybookStep, status: StepStatus, reason: String) -> StepReport {
    StepReport {
        name: step.name.clone(),
        command: step.command.clone(),
        status,
        exit_code: None,
        attempts: 0,
        duration_ms: 0,
        output_tail: String::new(),
        reason: Some(reason),
        limit_exceeded: None,
        usage: None,
    }
}

/// Runs one step, retrying failures and timeouts up to `retry_count` times. A command that
/// cannot even start is not retried: the same spawn would fail the same way.
async fn run_step(step: &PlaybookStep, ctx: &PlaybookRun<'_>) -> StepReport {
    let timeout = step.timeout_seconds.map_or(ctx.default_step_timeout, Duration::from_secs);
    let (isolation, limits) = ctx.execution.for_step(step, timeout);
    let spec = CommandSpec {
        command: step.command.clone(),
        cwd: ctx.workdir.to_path_buf(),
        env: step_env(step),
        timeout,
        output_cap_bytes: ctx.output_cap_bytes,
        isolation,
        limits,
    };
    let started = Instant::now();
    let mut attempts = 0;
    let mut usage: Option<ResourceUsage> = None;
    let report = |attempts, verdict: Verdict, usage| StepReport {
        name: step.name.clone(),
        command: step.command.clone(),
        status: verdict.status,
        exit_code: verdict.exit_code,
        attempts,
        duration_ms: millis(started.elapsed()),
        output_tail: verdict.output,
        reason: verdict.reason,
        limit_exceeded: verdict.limit_exceeded,
        usage,
    };
    loop {
        attempts += 1;
        let verdict = match run_command(&spec, ctx.cancel).await {
            Ok(outcome) => {
                usage = match (usage, outcome.usage) {
                    (Some(before), Some(this)) => Some(before.combined(this)),
                    (before, this) => before.or(this),
                };
                judge(outcome, timeout)
            }
            Err(e @ ProcessError::ContainerEngine { .. }) => {
                let unavailable =
                    Verdict { status: StepStatus::Unavailable, ..Verdict::failed(e.to_string()) };
                return report(attempts, unavailable, usage);
            }
            Err(e) => return report(attempts, Verdict::failed(format!("could not start: {e}")), usage),
        };
        // A breached limit is not flaky: the same command would breach it again.
        let failed = matches!(verdict.status, StepStatus::Failed | StepStatus::TimedOut)
            && verdict.limit_exceeded.is_none();
        if !failed || attempts > step.retry_count {
            return report(attempts, verdict, usage);
        }
        tracing::info!(step = %step.name, attempt = attempts, "playbook step failed; retrying");
    }
}

/// A step attempt's result, before it becomes a [`StepReport`].
struct Verdict {
    status: StepStatus,
    exit_code: Option<i32>,
    output: String,
    reason: Option<String>,
    limit_exceeded: Option<LimitBreach>,
}

impl Verdict {
    fn failed(reason: String) -> Verdict {
        Verdict {
            status: StepStatus::Failed,
            exit_code: None,
            output: String::new(),
            reason: Some(reason),
            limit_exceeded: None,
        }
    }
}

/// Maps a command outcome onto a step verdict.
fn judge(outcome: CommandOutcome, timeout: Duration) -> Verdict {
    let (status, reason) = match outcome.end {
        CommandEnd::Exited(0) => (StepStatus::Passed, None),
        CommandEnd::Exited(code) => (StepStatus::Failed, Some(format!("exited with code {code}"))),
        CommandEnd::Signalled(signal) => (StepStatus::Failed, Some(format!("was killed by signal {signal}"))),
        CommandEnd::TimedOut => {
            (StepStatus::TimedOut, Some(format!("timed out after {}s", timeout.as_secs_f64())))
        }
        CommandEnd::Cancelled => (StepStatus::Cancelled, Some("was cancelled".to_string())),
        CommandEnd::LimitExceeded(breach) => (StepStatus::Failed, Some(format!("was stopped: {breach}"))),
    };
    let limit_exceeded = match outcome.end {
        CommandEnd::LimitExceeded(breach) => Some(breach),
        _ => None,
    };
    Verdict { status, exit_code: outcome.exit_code(), output: outcome.output, reason, limit_exceeded }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
