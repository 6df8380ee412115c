//! The standard `process_*` series (the names every Prometheus client library exports,
//! so existing dashboards work): CPU time, resident memory, open and maximum file
//! descriptors, start time. Read from `/proc/<own pid>` through sysinfo at each scrape,
//! never stored: a scrape sees the values of that moment.

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::MetricKind;

/// One process series as sampled now.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSample {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub value: f64,
}

/// The names, help and kinds of the process series, in the order `/metrics` lists them.
pub const PROCESS_SERIES: &[(&str, &str, MetricKind)] = &[
    ("process_cpu_seconds_total", "Total user and system CPU time spent in seconds", MetricKind::Counter),
    ("process_resident_memory_bytes", "Resident memory size in bytes", MetricKind::Gauge),
    ("process_open_fds", "Number of open file descriptors", MetricKind::Gauge),
    ("process_max_fds", "Maximum number of open file descriptors (the soft limit)", MetricKind::Gauge),
    (
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds",
        MetricKind::Gauge,
    ),
];

/// This process's series now. A value the system does not give (no /proc) is left out
/// rather than reported as 0, which would read as "no memory" or "no descriptors".
pub fn sample() -> Vec<ProcessSample> {
    let Ok(mut system) = System::new() else { return Vec::new() };
    let pid = Pid::from_u32(std::process::id());
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        false,
        ProcessRefreshKind::nothing().with_memory().with_cpu().without_tasks(),
    );
    let Some(process) = system.process(pid) else { return Vec::new() };
    let values = [
        Some(process.accumulated_cpu_time() as f64 / 1000.0),
        Some(process.memory() as f64),
        process.open_files().map(|n| n as f64),
        process.open_files_limit().map(|n| n as f64),
        Some(process.start_time() as f64),
    ];
    PROCESS_SERIES
        .iter()
        .zip(values)
        .filter_map(|(&(name, help, kind), value)| {
            value.map(|value| ProcessSample { name, help, kind, value })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_descriptors_and_a_start_in_the_past() {
        let samples = sample();
        let value = |name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value);
        assert!(value("process_resident_memory_bytes").is_some_and(|v| v > 1_000_000.0), "{samples:?}");
        let (open, max) = (value("process_open_fds"), value("process_max_fds"));
        assert!(open.is_some_and(|open| open >= 3.0 && max.is_some_and(|max| open <= max)), "{samples:?}");
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let started = value("process_start_time_seconds").unwrap_or(0.0);
        assert!(started > 1.6e9 && started <= now as f64 + 1.0, "{samples:?}");
        assert!(value("process_cpu_seconds_total").is_some_and(|v| v >= 0.0));
    }
}
