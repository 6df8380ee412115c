//! The scenarios. Each returns figures; `main` prints and records them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_runner::amqp::{ExchangeTap, TopologyNames};
use agent_runner::git::{GitRemote, LocalSlotPool, prepare_workspace};
use agent_runner::pipeline::RunnerSecrets;
use agent_runner::worker::{Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

use crate::fixtures::{Bench, CpuClock, rss_mib};
use crate::spawned::WorkerProcess;
use crate::stats::Summary;

fn no_secrets() -> RunnerSecrets {
    RunnerSecrets { git_token: None, llm_api_key: None }
}

pub async fn start_worker(
    bench: &Bench,
    name: &str,
    names: &TopologyNames,
    concurrency: u16,
    tasks: usize,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let config = bench.config(name, usize::from(concurrency))?;
    let worker = Arc::new(Worker::connect(&config, no_secrets(), names.clone()).await?);
    let options = WorkerOptions {
        concurrency,
        stop_after: Some(tasks),
        consumer_tag: format!("bench-{name}"),
        idle_timeout: None,
    };
    Ok(tokio::spawn(async move {
        worker.run(options, CancellationToken::new()).await?;
        Ok(())
    }))
}

/// Waits for `task_id`'s TaskCompleted, collecting its step durations.
pub async fn wait_completed(
    tap: &mut ExchangeTap,
    task_id: &str,
    steps: &mut BTreeMap<String, Vec<f64>>,
) -> anyhow::Result<()> {
    loop {
        let body = tap
            .next_body(Duration::from_secs(60))
            .await
            .ok_or_else(|| anyhow::anyhow!("no event in 60 s"))?;
        let event: serde_json::Value = serde_json::from_slice(&body)?;
        if event["task_id"] != task_id {
            continue;
        }
        match event["type"].as_str() {
            Some("StepCompleted") => {
                let step = event["data"]["step"].as_str().unwrap_or("?").to_string();
                let ms = event["data"]["duration_ms"].as_f64().unwrap_or(0.0);
                steps.entry(step).or_default().push(ms);
            }
            Some("TaskCompleted") => return Ok(()),
            Some("TaskFailed") => anyhow::bail!("task {task_id} failed: {}", event["data"]),
            _ => {}
        }
    }
}

/// Per-task overhead, published → completed, one task at a time on a warm slot.
pub struct Overhead {
    pub total: Summary,
    pub steps: BTreeMap<String, Summary>,
}

pub async fn overhead(bench: &Bench, tasks: usize) -> anyhow::Result<Overhead> {
    let names = bench.topology("overhead").await?;
    let mut tap = bench.session.tap(&names.events_exchange, "task.#").await?;
    let worker = start_worker(bench, "overhead", &names, 1, tasks + 1).await?;
    let mut steps = BTreeMap::new();
    // One unmeasured task clones the slot: what follows is the warm steady state.
    bench.publish_tasks(&names, std::iter::once("warmup".to_string())).await?;
    wait_completed(&mut tap, "warmup", &mut BTreeMap::new()).await?;
    let mut totals = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let id = format!("o{i}");
        let started = Instant::now();
        bench.publish_tasks(&names, std::iter::once(id.clone())).await?;
        wait_completed(&mut tap, &id, &mut steps).await?;
        totals.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    worker.await??;
    bench.session.delete(&names).await?;
    Ok(Overhead {
        total: Summary::of(&totals),
        steps: steps.iter().map(|(k, v)| (k.clone(), Summary::of(v))).collect(),
    })
}

/// One point of the throughput curve.
pub struct ThroughputLevel {
    pub concurrency: u16,
    /// Tasks per second.
    pub rate: f64,
    /// CPU per task of each party.
    pub cpu: CpuClock,
}

/// The throughput curve: each level on a new origin, with its slots warmed first.
pub async fn throughput_curve(
    bench: &mut Bench,
    levels: &[u16],
    tasks: usize,
) -> anyhow::Result<Vec<ThroughputLevel>> {
    let mut curve = Vec::new();
    for &concurrency in levels {
        bench.reset_origin(&format!("throughput-{concurrency}"))?;
        warm_slots(bench, concurrency).await?;
        eprintln!("bench: throughput at concurrency {concurrency} over {tasks} tasks");
        let (rate, cpu) = throughput(bench, concurrency, tasks).await?;
        curve.push(ThroughputLevel { concurrency, rate, cpu });
    }
    Ok(curve)
}

/// Tasks per second at `concurrency` over `tasks` tasks, slots already warm, and the CPU
/// time each task cost the worker, the git server and the broker.
async fn throughput(bench: &Bench, concurrency: u16, tasks: usize) -> anyhow::Result<(f64, CpuClock)> {
    let names = bench.topology(&format!("throughput{concurrency}")).await?;
    bench.publish_tasks(&names, (0..tasks).map(|i| format!("c{concurrency}-{i}"))).await?;
    let cpu_before = bench.cpu_clock();
    let started = Instant::now();
    let worker = start_worker(bench, "throughput", &names, concurrency, tasks).await?;
    worker.await??;
    let rate = tasks as f64 / started.elapsed().as_secs_f64();
    let cpu = bench.cpu_clock().since(&cpu_before).per(tasks);
    bench.session.delete(&names).await?;
    Ok((rate, cpu))
}

/// Warms `concurrency` slots of the shared throughput pool.
async fn warm_slots(bench: &Bench, concurrency: u16) -> anyhow::Result<()> {
    let names = bench.topology("warm").await?;
    bench.publish_tasks(&names, (0..usize::from(concurrency) * 2).map(|i| format!("warm-{i}"))).await?;
    start_worker(bench, "throughput", &names, concurrency, usize::from(concurrency) * 2).await?.await??;
    bench.session.delete(&names).await?;
    Ok(())
}

/// Cold start (spawn → consuming) and resident memory idle and under load, of the
/// real binary.
pub struct Process {
    pub cold_start_ms: Summary,
    pub idle_rss_mib: f64,
    pub loaded_rss_mib: f64,
}

pub async fn process(
    bench: &Bench,
    binary: &std::path::Path,
    starts: usize,
    load_tasks: usize,
) -> anyhow::Result<Process> {
    let mut cold = Vec::new();
    let mut idle_rss = 0.0;
    let mut loaded_rss: f64 = 0.0;
    for run in 0..starts {
        let names = bench.topology("process").await?;
        let home = bench.dir.path().join("process-home");
        let worker = WorkerProcess::start(bench, binary, &names, &home, 4, false).await?;
        cold.push(worker.cold_start.as_secs_f64() * 1000.0);
        if run + 1 == starts {
            tokio::time::sleep(Duration::from_secs(1)).await;
            idle_rss = rss_mib(worker.pid).unwrap_or(0.0);
            let mut tap = bench.session.tap(&names.events_exchange, "task.completed").await?;
            bench.publish_tasks(&names, (0..load_tasks).map(|i| format!("p{i}"))).await?;
            let mut done = 0;
            while done < load_tasks {
                loaded_rss = loaded_rss.max(rss_mib(worker.pid).unwrap_or(0.0));
                if tap.next_body(Duration::from_millis(20)).await.is_some() {
                    done += 1;
                }
            }
        }
        worker.stop().await;
        bench.session.delete(&names).await?;
    }
    Ok(Process { cold_start_ms: Summary::of(&cold), idle_rss_mib: idle_rss, loaded_rss_mib: loaded_rss })
}

/// A warm slot (acquire + fetch, reset, clean, branch) beside a fresh clone.
pub fn slots(bench: &Bench, rounds: usize) -> anyhow::Result<(Summary, Summary)> {
    let remote = GitRemote::new(bench.repo_url(), Default::default())?;
    let pool = LocalSlotPool::new(bench.dir.path().join("slot-bench"));
    drop(pool.acquire(&remote)?);
    let mut warm = Vec::new();
    for i in 0..rounds {
        let started = Instant::now();
        let lease = pool.acquire(&remote)?;
        prepare_workspace(&lease.path, &remote, "main", &format!("warm-{i}"))?;
        warm.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let mut fresh = Vec::new();
    for i in 0..rounds {
        let started = Instant::now();
        let pool = LocalSlotPool::new(bench.dir.path().join(format!("fresh-{i}")));
        let lease = pool.acquire(&remote)?;
        prepare_workspace(&lease.path, &remote, "main", &format!("fresh-{i}"))?;
        fresh.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((Summary::of(&warm), Summary::of(&fresh)))
}
