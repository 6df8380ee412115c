//! Resource metrics for the run summary: peak resident memory and peak CPU of the
//! worker process and its children (the playbook's commands), sampled with sysinfo.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio_util::sync::CancellationToken;

/// How often usage is sampled. A second is fine-grained enough for steps that run for
/// seconds to minutes, and cheap: one /proc walk per second per running task.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// The seed's `metrics`: peak memory in MB and peak CPU percent (100 = one core).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RunMetrics {
    pub peak_memory_mb: f64,
    pub cpu_percent: f64,
}

/// Samples usage in the background until stopped.
pub struct MetricsSampler {
    peak: Arc<Mutex<RunMetrics>>,
    stop: CancellationToken,
}

impl MetricsSampler {
    /// Starts sampling this process and its descendants.
    pub fn start() -> Self {
        let peak = Arc::new(Mutex::new(RunMetrics::default()));
        let stop = CancellationToken::new();
        let (shared, token) = (peak.clone(), stop.clone());
        tokio::task::spawn_blocking(move || {
            let mut system = System::new();
            let me = Pid::from_u32(std::process::id());
            loop {
                system.refresh_processes_specifics(
                    ProcessesToUpdate::All,
                    true,
                    ProcessRefreshKind::nothing().with_memory().with_cpu(),
                );
                let sample = tree_usage(&system, me);
                if let Ok(mut peak) = shared.lock() {
                    peak.peak_memory_mb = peak.peak_memory_mb.max(sample.peak_memory_mb);
                    peak.cpu_percent = peak.cpu_percent.max(sample.cpu_percent);
                }
                // Blocking sleep in a blocking-pool thread, never on the async runtime.
                std::thread::sleep(SAMPLE_INTERVAL);
                if token.is_cancelled() {
                    break;
                }
            }
        });
        MetricsSampler { peak, stop }
    }

    /// Stops sampling and returns the peaks seen.
    pub fn finish(self) -> RunMetrics {
        self.stop.cancel();
        self.peak.lock().map(|p| *p).unwrap_or_default()
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
