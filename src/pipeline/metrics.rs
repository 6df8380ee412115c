//! Resource metrics for the run summary: peak resident memory and peak CPU of the
//! worker process and its children (the playbook's commands), sampled with sysinfo.

use std::time::Duration;

use serde::Serialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// How often usage is sampled. A second is fine-grained enough for steps that run for
/// seconds to minutes, and cheap: one /proc walk per second per running task.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// The seed's `metrics`: peak memory in MB and peak CPU percent (100 = one core).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RunMetrics {
    pub peak_memory_mb: f64,
    pub cpu_percent: f64,
}

/// Samples usage on a blocking-pool thread until [`MetricsSampler::finish`].
pub struct MetricsSampler {
    stop: std::sync::mpsc::Sender<()>,
    sampling: tokio::task::JoinHandle<RunMetrics>,
}

impl MetricsSampler {
    /// Starts sampling this process and its descendants.
    pub fn start() -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let sampling = tokio::task::spawn_blocking(move || {
            let mut peak = RunMetrics::default();
            let Ok(mut system) = System::new() else {
                tracing::warn!("process metrics unavailable on this system");
                return peak;
            };
            let me = Pid::from_u32(std::process::id());
            loop {
                system.refresh_processes_specifics(
                    ProcessesToUpdate::All,
                    true,
                    ProcessRefreshKind::nothing().with_memory().with_cpu(),
                );
                let sample = tree_usage(&system, me);
                peak.peak_memory_mb = peak.peak_memory_mb.max(sample.peak_memory_mb);
                peak.cpu_percent = peak.cpu_percent.max(sample.cpu_percent);
                // Waiting on the channel is the sleep: `finish` ends it at once.
                match stopped.recv_timeout(SAMPLE_INTERVAL) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => return peak,
                }
            }
        });
        MetricsSampler { stop, sampling }
    }

    /// Stops sampling and returns the peaks seen (at least one sample is always taken).
    pub async fn finish(self) -> RunMetrics {
        let _ = self.stop.send(());
        self.sampling.await.unwrap_or_default()
    }
}

/// Memory and CPU of `root` and every process descending from it.
fn tree_usage(system: &System, root: Pid) -> RunMetrics {
    let mut total = RunMetrics::default();
    for (pid, process) in system.processes() {
        let mut cursor = Some(*pid);
        let mut in_tree = false;
        // Walk up the parent chain; depth-bounded in case of a pid cycle during reuse.
        for _ in 0..64 {
            match cursor {
                Some(p) if p == root => {
                    in_tree = true;
                    break;
                }
                Some(p) => cursor = system.process(p).and_then(|proc| proc.parent()),
                None => break,
            }
        }
        if in_tree {
            total.peak_memory_mb += process.memory() as f64 / (1024.0 * 1024.0);
            total.cpu_percent += f64::from(process.cpu_usage());
        }
    }
    total
}
