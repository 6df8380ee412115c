//! Resource metrics for the run summary and the terminal event: CPU time and peak memory
//! of the task's own commands (its playbook steps, in the test step and through the
//! engine's `run_tests` tool), added up from each command's [`ResourceUsage`].
//!
//! Per command, not sampled from the worker's process tree: concurrent tasks share that
//! tree, so its figures would mix them, and a sample misses whatever ran between two
//! samples. What the worker itself does for a task (git through libgit2, the model's
//! HTTP calls, applying edits) is not a command and is not counted.

use std::sync::Mutex;

use serde::Serialize;

use crate::playbook::PlaybookReport;
use crate::process::ResourceUsage;

const BYTES_PER_MB: f64 = 1024.0 * 1024.0;

/// The seed's `metrics`, with its names: `memory_mb` and `cpu_percent`, plus the CPU time
/// they are derived from. Deserialised too: a kubernetes-mode pod's outcome carries them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct RunMetrics {
    /// Peak memory in MiB of the task's largest command: its processes' resident memory
    /// together, sampled (local-process, sandbox), or its container's peak (docker).
    pub memory_mb: f64,
    /// CPU time of the task's commands, user plus system, in seconds.
    pub cpu_seconds: f64,
    pub cpu_user_seconds: f64,
    pub cpu_system_seconds: f64,
    /// CPU use while the commands ran: `100 × cpu_seconds / command_seconds` (100 = one
    /// core busy the whole time); 0 when no command ran.
    pub cpu_percent: f64,
    /// Wall-clock time the task's commands ran, in seconds.
    pub command_seconds: f64,
    /// Command runs measured (each attempt of each step, in every test run).
    pub commands: u32,
}

/// The running totals of one task, fed by each playbook run.
#[derive(Debug, Default)]
pub struct UsageTally {
    totals: Mutex<Totals>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    usage: ResourceUsage,
    command_ms: u64,
    commands: u32,
}

impl UsageTally {
    /// Adds the measured steps of one playbook run.
    pub fn add(&self, report: &PlaybookReport) {
        let Ok(mut totals) = self.totals.lock() else { return };
        for step in &report.steps {
            let Some(usage) = step.usage else { continue };
            totals.usage = totals.usage.combined(usage);
            totals.command_ms = totals.command_ms.saturating_add(step.duration_ms);
            totals.commands = totals.commands.saturating_add(step.attempts);
        }
    }

    /// The totals so far, as the summary states them.
    pub fn metrics(&self) -> RunMetrics {
        let totals = self.totals.lock().map(|t| *t).unwrap_or_default();
        let command_seconds = totals.command_ms as f64 / 1000.0;
        let cpu_seconds = totals.usage.cpu_seconds();
        RunMetrics {
            memory_mb: totals.usage.peak_memory_bytes as f64 / BYTES_PER_MB,
            cpu_seconds,
            cpu_user_seconds: totals.usage.cpu_user_us as f64 / 1e6,
            cpu_system_seconds: totals.usage.cpu_system_us as f64 / 1e6,
            cpu_percent: if command_seconds > 0.0 { 100.0 * cpu_seconds / command_seconds } else { 0.0 },
            command_seconds,
            commands: totals.commands,
        }
    }
}

impl RunMetrics {
    /// The peak memory in bytes, for `/metrics`.
    pub fn memory_bytes(&self) -> f64 {
        self.memory_mb * BYTES_PER_MB
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::{StepReport, StepStatus};

    fn step(duration_ms: u64, attempts: u32, usage: Option<ResourceUsage>) -> StepReport {
        StepReport {
            name: "s".into(),
            command: "c".into(),
            status: StepStatus::Passed,
            exit_code: Some(0),
            attempts,
            duration_ms,
            output_tail: String::new(),
            reason: None,
            limit_exceeded: None,
            usage,
        }
    }

    #[test]
    fn runs_add_up_cpu_keep_the_peak_and_skip_unmeasured_steps() {
        let tally = UsageTally::default();
        let usage = |user, system, mb: u64| ResourceUsage {
            cpu_user_us: user,
            cpu_system_us: system,
            peak_memory_bytes: mb * 1024 * 1024,
        };
        let report = |steps| PlaybookReport { playbook: "p".into(), success: true, steps, duration_ms: 0 };
        tally.add(&report(vec![step(1000, 1, Some(usage(600_000, 200_000, 40))), step(500, 0, None)]));
        tally.add(&report(vec![step(3000, 2, Some(usage(1_000_000, 200_000, 25)))]));
        assert_eq!(
            tally.metrics(),
            RunMetrics {
                memory_mb: 40.0,
                cpu_seconds: 2.0,
                cpu_user_seconds: 1.6,
                cpu_system_seconds: 0.4,
                cpu_percent: 50.0,
                command_seconds: 4.0,
                commands: 3,
            }
        );
    }

    #[test]
    fn no_command_is_zero_not_a_division_by_zero() {
        assert_eq!(UsageTally::default().metrics(), RunMetrics::default());
    }
}
