//! `scripts/chaos`: the fleet under fire. Publishes N tasks to a private topology on a
//! broker it starts (one node, or a 3-node cluster with `--cluster`), runs W worker
//! processes of the real binary against a git server over HTTP and the scripted model,
//! and while they work injects K worker SIGKILLs (each worker restarted at once), B
//! broker node restarts (`kill -9`, then started again; one node at a time) and G
//! git-remote outages (the server answers 503 for a few seconds), spread over the run.
//! Then it waits for quiet and prints one table; it exits 1 when a task is lost, pushed
//! twice, or completed under two event ids, or a completion never reached the exchange.
//!
//! ```sh
//! scripts/chaos --tasks 1000 --workers 4 --kills 20 --restarts 5 --remote-outages 3 --cluster
//! ```

#[path = "../../tests/cluster_support/mod.rs"]
mod cluster_support;
mod fleet;
#[allow(dead_code)]
#[path = "../../tests/common/git_http.rs"]
mod git_http;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agent_runner::amqp::{AmqpSession, DlqCursor, MirrorTopology, TopologyNames};
use agent_runner::demo::sample;
use agent_runner::llm::scripted::{self, Script};
use clap::Parser;
use cluster_support::RabbitCluster;

#[derive(Parser, Debug)]
#[command(about = "Publish tasks, break things while workers run them, count what survived")]
struct Args {
    #[arg(long, default_value_t = 200)]
    tasks: usize,
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Tasks each worker runs at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    #[arg(long, default_value_t = 5)]
    kills: usize,
    #[arg(long, default_value_t = 2)]
    restarts: usize,
    #[arg(long = "remote-outages", default_value_t = 2)]
    remote_outages: usize,
    /// A 3-node cluster instead of a single broker node.
    #[arg(long)]
    cluster: bool,
    /// Seed of the order the faults come in.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `cargo bench` passes this; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillWorker,
    RestartNode,
    RemoteOutage,
}

/// A small deterministic generator (the seed picks the same run again).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let nodes = if args.cluster { 3 } else { 1 };
    eprintln!("chaos: starting {nodes} broker node(s)");
    let cluster =
        tokio::task::spawn_blocking(move || RabbitCluster::start_nodes("chaos", nodes)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let served = dir.path().join("served");
    sample::create_origin(&served.join("origin.git"), "main", sample::SAMPLE_FILES).unwrap();
    let remote = git_http::GitHttpServer::start(git_http::Behaviour::Serve(served.clone()), true).await;
    let answer = sample::scripted_answer();
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();

    let prefix = format!("chaos.{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let names = TopologyNames::isolated(&prefix);
    let capture = MirrorTopology::isolated(&format!("{prefix}.capture"), &names.events_exchange);
    let session = AmqpSession::connect(&cluster.url_list(0), "chaos").await.unwrap();
    session.declare(&names).await.unwrap();
    session.declare_mirror(&capture).await.unwrap();
    let task_ids: Vec<String> = (0..args.tasks).map(|i| format!("chaos.{i}")).collect();
    for id in &task_ids {
        let task = sample::sample_task(&remote.url("origin.git"), id);
        session.publish_task(&names, "task.backend", &serde_json::to_vec(&task).unwrap()).await.unwrap();
    }
    eprintln!("chaos: published {} tasks", args.tasks);

    let mut workers: Vec<fleet::Worker> = (0..args.workers)
        .map(|i| {
            let worker_dir = dir.path().join(format!("worker-{i}"));
            let yaml = worker_config(
                &names,
                &cluster.url_list(i % nodes),
                &args,
                &worker_dir,
                dir.path(),
                &remote.origin(),
                &llm.base_url(),
            );
            fleet::Worker::start(worker_dir, &yaml)
        })
        .collect();

    let mut faults: Vec<Fault> = std::iter::repeat_n(Fault::KillWorker, args.kills)
        .chain(std::iter::repeat_n(Fault::RestartNode, args.restarts))
        .chain(std::iter::repeat_n(Fault::RemoteOutage, args.remote_outages))
        .collect();
    let mut random = Lcg(args.seed);
    for i in (1..faults.len()).rev() {
        faults.swap(i, random.below(i + 1));
    }
    // The k-th fault comes once k/(faults+1) of the tasks are pushed: all mid-run.
    let origin = served.join("origin.git");
    let mut cluster = cluster;
    let total = faults.len();
    for (k, fault) in faults.into_iter().enumerate() {
        let due = args.tasks * (k + 1) / (total + 1);
        while pushed(&origin, &task_ids) < due {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!("chaos: {:?} at {due} of {} pushed", fault, args.tasks);
        match fault {
            Fault::KillWorker => workers[random.below(args.workers)].kill_and_restart(),
            Fault::RestartNode => {
                let node = random.below(nodes);
                cluster = tokio::task::spawn_blocking(move || {
                    cluster.kill_node(node);
                    std::thread::sleep(Duration::from_secs(1));
                    cluster.start_node(node);
                    cluster
                })
                .await
                .unwrap();
            }
            Fault::RemoteOutage => {
                remote.up.store(false, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(4)).await;
                remote.up.store(true, Ordering::SeqCst);
            }
        }
    }

    // Quiet: every task either pushed or dead-lettered, and nothing left to deliver.
    let check = AmqpSession::connect(&cluster.url_list(nodes - 1), "chaos-check").await.unwrap();
    loop {
        let dead = check.ready_count(&names.dead_letter_queue).await.unwrap_or(0) as usize;
        let ready = check.ready_count(&names.work_queue).await.unwrap_or(1);
        if pushed(&origin, &task_ids) + dead >= args.tasks && ready == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let quiet = started.elapsed();
    // The last completions' events and acks: a moment to land, then a graceful stop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for worker in &mut workers {
        worker.stop();
    }
    let report = Report::collect(&check, &names, &capture, &origin, &task_ids, &workers, quiet).await;
    report.print(&args);
    check.delete_mirror(&capture).await.ok();
    check.delete(&names).await.ok();
    std::process::exit(i32::from(!report.clean()));
}

fn pushed(origin: &std::path::Path, task_ids: &[String]) -> usize {
    fleet::task_commits(origin, task_ids).iter().filter(|c| **c > 0).count()
}

fn worker_config(
    names: &TopologyNames,
    urls: &str,
    args: &Args,
    dir: &std::path::Path,
    shared: &std::path::Path,
    remote: &str,
    llm: &str,
) -> String {
    format!(
        "{}  url: {urls}\n  concurrency: {}\nrunner_id: {}\npool_dir: {}\nartifact_store_url: file://{}\n\
         playbooks_dir: {}\nllm:\n  endpoint: {llm}\ngit:\n  allowed_remotes: [\"{remote}/\"]\n\
         reliability:\n  max_attempts: 20\n  retry_delays_seconds: [1, 2, 4]\n  shutdown_grace_seconds: 30\n\
         log_level: info\n",
        names.config_yaml(),
        args.concurrency,
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("worker"),
        dir.join("slots").display(),
        shared.join("artifacts").display(),
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks").display(),
    )
}

/// What the run left behind.
struct Report {
    completed: usize,
    dead_lettered: usize,
    lost: usize,
    duplicate_commits: usize,
    completions: usize,
    /// Completed tasks whose `TaskStarted` never reached the exchange.
    starts_missing: usize,
    duplicate_completions: usize,
    events: usize,
    reconnects: usize,
    quiet: Duration,
}

impl Report {
    async fn collect(
        session: &AmqpSession,
        names: &TopologyNames,
        capture: &MirrorTopology,
        origin: &std::path::Path,
        task_ids: &[String],
        workers: &[fleet::Worker],
        quiet: Duration,
    ) -> Report {
        let commits = fleet::task_commits(origin, task_ids);
        let completed = commits.iter().filter(|c| **c > 0).count();
        let dead_lettered = session.ready_count(&names.dead_letter_queue).await.unwrap_or(0) as usize;
        let mut completion_ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut started: BTreeSet<String> = BTreeSet::new();
        let mut events = 0;
        loop {
            let mut cursor = DlqCursor::open(session, &capture.queue).await.unwrap();
            let mut read = 0;
            while let Ok(Some(held)) = cursor.next().await {
                read += 1;
                if let Ok(event) = serde_json::from_slice::<serde_json::Value>(held.body()) {
                    events += 1;
                    let task = event["task_id"].as_str().unwrap_or("").to_string();
                    if event["type"] == "TaskCompleted" {
                        let id = event["event_id"].as_str().unwrap_or("").to_string();
                        completion_ids.entry(task).or_default().insert(id);
                    } else if event["type"] == "TaskStarted" {
                        started.insert(task);
                    }
                }
                cursor.remove(held).await.unwrap();
            }
            cursor.release().await;
            if read == 0 {
                break;
            }
        }
        Report {
            completed,
            dead_lettered,
            lost: task_ids.len().saturating_sub(completed + dead_lettered),
            duplicate_commits: commits.iter().filter(|c| **c > 1).count(),
            completions: completion_ids.len(),
            starts_missing: completion_ids.keys().filter(|task| !started.contains(*task)).count(),
            duplicate_completions: completion_ids.values().filter(|ids| ids.len() > 1).count(),
            events,
            reconnects: workers.iter().map(|w| w.log_lines_with("consuming again")).sum(),
            quiet,
        }
    }

    fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicate_commits == 0
            && self.duplicate_completions == 0
            && self.starts_missing == 0
            && self.completions == self.completed
    }

    fn print(&self, args: &Args) {
        let rows = [
            ("published", args.tasks.to_string()),
            ("completed (pushed)", self.completed.to_string()),
            ("dead-lettered", self.dead_lettered.to_string()),
            ("lost", self.lost.to_string()),
            ("duplicate commits", self.duplicate_commits.to_string()),
            ("TaskCompleted published (tasks)", self.completions.to_string()),
            ("duplicate completions by event id", self.duplicate_completions.to_string()),
            (
                "completions missing from the exchange",
                self.completed.saturating_sub(self.completions).to_string(),
            ),
            ("TaskStarted missing (completed tasks)", self.starts_missing.to_string()),
            ("events captured", self.events.to_string()),
            ("worker reconnects (consuming again)", self.reconnects.to_string()),
            ("time to quiet", format!("{:.1} s", self.quiet.as_secs_f64())),
        ];
        println!(
            "chaos: {} tasks, {} workers x {}, {} kills, {} node restarts ({}), {} remote outages",
            args.tasks,
            args.workers,
            args.concurrency,
            args.kills,
            args.restarts,
            if args.cluster { "3-node cluster" } else { "one node" },
            args.remote_outages
        );
        for (what, value) in rows {
            println!("| {what:<40} | {value:>10} |");
        }
        println!("{}", if self.clean() { "result: nothing lost or duplicated" } else { "result: FAILED" });
    }
}
