//! The release binary as a process of its own, as it runs in production, and what is read
//! of it from outside: its CPU clocks in /proc, its /metrics endpoint, and, for a process
//! run to its end, the resource usage `wait4` reports.
//!
//! Measuring from outside keeps the harness and the scripted model out of the figures:
//! the in-process scenarios share one process (and its clocks) with both.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent_runner::amqp::TopologyNames;

use crate::fixtures::{Bench, clock_ticks_per_second, proc_stat_times};

/// A `worker` process on a private topology; killed when dropped.
pub struct WorkerProcess {
    child: tokio::process::Child,
    pub pid: u32,
    /// Spawn until the broker showed its consumer.
    pub cold_start: Duration,
    /// Its /metrics, when it serves one.
    metrics_url: Option<String>,
}

/// The CPU time a process has used so far, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessCpu {
    /// Its own threads (utime + stime).
    pub own_ms: f64,
    /// Its children it has waited for (cutime + cstime): the test command, any git.
    pub children_ms: f64,
}

impl ProcessCpu {
    pub fn since(&self, earlier: &ProcessCpu) -> ProcessCpu {
        ProcessCpu {
            own_ms: self.own_ms - earlier.own_ms,
            children_ms: self.children_ms - earlier.children_ms,
        }
    }
}

/// A config file for a process of the binary on `names` (when given), allowed to push to
/// this bench's `git daemon`.
pub fn config_file(bench: &Bench, file_name: &str, names: Option<&TopologyNames>) -> anyhow::Result<PathBuf> {
    let path = bench.dir.path().join(file_name);
    let amqp = names.map(TopologyNames::config_yaml).unwrap_or_default();
    let remotes = format!("git:\n  allowed_remotes: [\"{}\"]\n", bench.allowed_remote());
    std::fs::write(&path, format!("{amqp}{remotes}"))?;
    Ok(path)
}

/// The binary with `config` and the bench's model, its data under `home`, quiet, and
/// without a key the machine may hold: every process the bench starts looks the same.
pub fn command(binary: &Path, config: &Path, home: &Path, llm_endpoint: &str) -> std::process::Command {
    let mut command = std::process::Command::new(binary);
    command
        .arg("--config")
        .arg(config)
        .args(["--llm-endpoint", llm_endpoint, "--log-level", "warn"])
        .env("AGENT_RUNNER_HOME", home)
        .env_remove("OPENAI_API_KEY")
        .env_remove("GIT_TOKEN");
    command
}

impl WorkerProcess {
    /// Starts `worker --concurrency N` on `names`, its data under `home`, and waits until
    /// it consumes. With `serve_metrics`, it serves /metrics on a free port; without, it
    /// starts as the cold-start and memory records were taken, with no HTTP server.
    pub async fn start(
        bench: &Bench,
        binary: &Path,
        names: &TopologyNames,
        home: &Path,
        concurrency: u16,
        serve_metrics: bool,
    ) -> anyhow::Result<WorkerProcess> {
        let config = config_file(bench, &format!("{}.yaml", names.work_queue), Some(names))?;
        let mut command = command(binary, &config, home, &bench.llm.base_url());
        command.args(["worker", "--concurrency", &concurrency.to_string()]);
        let mut metrics_url = None;
        if serve_metrics {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            command.arg(format!("--http-addr=127.0.0.1:{port}"));
            metrics_url = Some(format!("http://127.0.0.1:{port}/metrics"));
        }
        let started = Instant::now();
        let child = tokio::process::Command::from(command).kill_on_drop(true).spawn()?;
        let pid = child.id().ok_or_else(|| anyhow::anyhow!("worker exited at once"))?;
        while bench.session.consumer_count(&names.work_queue).await? == 0 {
            anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "worker never consumed");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let cold_start = started.elapsed();
        Ok(WorkerProcess { child, pid, cold_start, metrics_url })
    }

    /// Its CPU clocks now.
    pub fn cpu(&self) -> ProcessCpu {
        let ticks_ms = 1000.0 / clock_ticks_per_second();
        let (own, children) = proc_stat_times(self.pid).unwrap_or_default();
        ProcessCpu { own_ms: own * ticks_ms, children_ms: children * ticks_ms }
    }

    /// The sum of the samples named `sample` on its /metrics, `None` when it serves none
    /// (a family this build does not have).
    pub async fn metric(&self, sample: &str) -> anyhow::Result<Option<f64>> {
        let url = self.metrics_url.as_deref().ok_or_else(|| anyhow::anyhow!("started without /metrics"))?;
        let client = agent_runner::tls::http_client_builder().build()?;
        let text = client.get(url).send().await?.error_for_status()?.text().await?;
        Ok(sum_samples(&text, sample))
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// The sum over every label set of the samples named `sample` in a Prometheus text page.
fn sum_samples(text: &str, sample: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, rest) = line.split_at(line.find([' ', '{'])?);
            let value = rest.rsplit_once('}').map_or(rest, |(_, v)| v);
            (name == sample).then(|| value.split_whitespace().next()?.parse().ok()).flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// What one process run to its end cost: wall time, and the CPU time of it and of every
/// descendant it waited for.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub success: bool,
    pub wall_ms: f64,
    pub cpu_ms: f64,
}

/// Runs `command` to its end and reads its resource usage from `wait4`: that of this one
/// child, where `RUSAGE_CHILDREN` would also count whatever else this process reaps
/// meanwhile. Blocks the thread.
pub fn run_measured(command: &mut std::process::Command) -> anyhow::Result<Finished> {
    let started = Instant::now();
    let child = command.spawn()?;
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: rusage is plain data, all zeros a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our child, not yet reaped (std reaps only through `wait`, which
        // is never called on `child`); both pointers are to live locals.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        anyhow::ensure!(error.kind() == std::io::ErrorKind::Interrupted, "wait4({pid}): {error}");
    }
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    Ok(Finished {
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        wall_ms,
        cpu_ms: ms(usage.ru_utime) + ms(usage.ru_stime),
    })
}
