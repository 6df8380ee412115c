//! Resource metrics for the run summary: peak resident memory and peak CPU of the
//! worker process and its children (the playbook's commands), sampled with sysinfo.

use std::time::Duration;

use serde::Serialize;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// How often usage is sampled. A second is fine-grained enough for steps that run for
/// seconds to minutes, and cheap: one /proc walk per second per running task.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// The seed's `metrics`: peak memory in MB and peak CPU percent (100 = one core).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
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
        let sampling = crate::telemetry::spawn_blocking_in_span(move || {
            let mut peak = RunMetrics::default();
            let Ok(mut system) = System::new() else {
                tracing::warn!("process metrics unavailable on this system");
                return peak;
            };
            let me = std::process::id();
            loop {
                let sample = tree_usage(&mut system, me);
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

/// More processes than a task's commands plausibly start: the walk stops there.
const MAX_TREE_SIZE: usize = 4096;

/// Memory and CPU of `root` and every process descending from it. Only those processes
/// are read, never the whole of /proc (a machine runs hundreds, and a sample is taken
/// per task), and threads are not counted as processes of their own: they share their
/// process's memory, which would be counted once per thread.
fn tree_usage(system: &mut System, root: u32) -> RunMetrics {
    let pids = process_tree(root);
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&pids),
        true,
        ProcessRefreshKind::nothing().with_memory().with_cpu().without_tasks(),
    );
    let mut total = RunMetrics::default();
    for process in pids.iter().filter_map(|pid| system.process(*pid)) {
        total.peak_memory_mb += process.memory() as f64 / (1024.0 * 1024.0);
        total.cpu_percent += f64::from(process.cpu_usage());
    }
    total
}

/// `root` and its descendants, from each thread's `/proc/<pid>/task/<tid>/children`.
/// A process that exits during the walk is simply missing from the result.
fn process_tree(root: u32) -> Vec<Pid> {
    let mut tree = vec![root];
    let mut next = 0;
    while next < tree.len() && tree.len() < MAX_TREE_SIZE {
        let pid = tree[next];
        next += 1;
        let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for thread in threads.flatten() {
            let Ok(children) = std::fs::read_to_string(thread.path().join("children")) else { continue };
            tree.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    tree.truncate(MAX_TREE_SIZE);
    tree.into_iter().map(Pid::from_u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_rss_mb() -> f64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }

    #[test]
    fn the_tree_holds_the_process_and_its_children() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().expect("sleep runs");
        let tree = process_tree(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tree.first(), Some(&Pid::from_u32(std::process::id())));
        assert!(tree.contains(&Pid::from_u32(child.id())), "child {} missing from {tree:?}", child.id());
    }

    #[test]
    fn threads_do_not_multiply_the_processes_memory() {
        let stop = std::sync::Arc::new(std::sync::Barrier::new(9));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    stop.wait();
                })
            })
            .collect();
        let mut system = System::new().expect("sysinfo works on Linux");
        let usage = tree_usage(&mut system, std::process::id());
        stop.wait();
        threads.into_iter().for_each(|t| t.join().expect("thread ends"));
        let rss = own_rss_mb();
        assert!(usage.peak_memory_mb > 0.0);
        // Other test threads may start children meanwhile; eight copies of our memory would
        // still be far beyond twice it.
        assert!(
            usage.peak_memory_mb < rss * 2.0,
            "{} MB counted for a {rss} MB process",
            usage.peak_memory_mb
        );
    }
}
