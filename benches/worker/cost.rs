//! What one trivial task costs (the model creates one file, the test is `true`), each
//! party measured from outside its own process, beside the floor it is judged against:
//!
//! - the worker release binary's own CPU per task at concurrency 1, apart from the
//!   harness and the scripted model, and its children's (the test command, any git);
//! - the git command-line sequence the original Python component runs per task, in a
//!   shell on a warm clone (the original itself cannot be fetched here);
//! - `agent-runner run --task`, one process per task;
//! - how the worker's cost grows with a ten times larger repository and with a remote
//!   holding hundreds of branches;
//! - how many times per task the worker scans the working tree, from its /metrics.

use std::path::Path;
use std::time::Duration;

use crate::contenders::{RunTask, Sequence, WorkerRun};
use crate::fixtures::{Bench, REPO_FILES};
use crate::spawned::{Finished, ProcessCpu};
use crate::stats::Summary;

/// The larger repository, against [`REPO_FILES`].
pub const LARGE_REPO_FILES: usize = 10_000;

/// Branches on the crowded remote, against none but `main`.
pub const REMOTE_BRANCHES: usize = 500;

/// The counter of working-tree scans on the worker's /metrics.
pub const SCANS_SAMPLE: &str = "agent_runner_worktree_scans_total";

/// Per-iteration wall and CPU time of a process run to its end, in milliseconds.
pub struct WallCpu {
    pub wall: Summary,
    pub cpu: Summary,
}

impl WallCpu {
    pub fn of(runs: &[Finished]) -> WallCpu {
        let pick = |f: fn(&Finished) -> f64| Summary::of(&runs.iter().map(f).collect::<Vec<_>>());
        WallCpu { wall: pick(|r| r.wall_ms), cpu: pick(|r| r.cpu_ms) }
    }
}

/// The worker process over a run of tasks, one at a time.
pub struct WorkerCost {
    /// Its own CPU per task (utime + stime), and its children's (cutime + cstime).
    pub per_task: ProcessCpu,
    /// The push step's durations, from its StepCompleted events.
    pub push: Summary,
    /// Working-tree scans per task; `None` when this build does not count them.
    pub scans_per_task: Option<f64>,
}

/// Every figure of the cost scenarios.
pub struct Cost {
    /// The git CLI sequence (stands in for the original), per iteration.
    pub sequence: WallCpu,
    /// `agent-runner run --task`, per process.
    pub run_task: WallCpu,
    /// The worker on the [`REPO_FILES`]-file repository, remote holding only `main`.
    pub base: WorkerCost,
    /// The same on the [`LARGE_REPO_FILES`]-file repository.
    pub large_repo: WorkerCost,
    /// The same on a remote holding [`REMOTE_BRANCHES`] more branches.
    pub many_branches: WorkerCost,
}

/// Runs the cost scenarios: `tasks` measured rounds after an unmeasured one that clones
/// every slot, each round the trivial task once each way (the git CLI sequence, `run
/// --task`, then each worker) so that whatever else the machine does meanwhile falls on
/// all of them alike; figures compared in a ratio were measured in the same minutes.
/// Each way has an origin of its own, as pushed branches pile up on it. The three workers
/// run side by side, each on its own topology, idle while the others work: /proc keeps
/// their clocks apart.
pub async fn measure(bench: &mut Bench, binary: &Path, tasks: usize) -> anyhow::Result<Cost> {
    eprintln!("bench: cost of a trivial task, origins of {REPO_FILES} and {LARGE_REPO_FILES} files");
    let url = origin(bench, "sequence", REPO_FILES, 0)?;
    let sequence = Sequence::new(bench, &url)?;
    let url = origin(bench, "run-task", REPO_FILES, 0)?;
    let run_task = RunTask::new(bench, binary, &url)?;
    let mut workers = Vec::new();
    for (name, files, branches) in
        [("base", REPO_FILES, 0), ("large", LARGE_REPO_FILES, 0), ("branches", REPO_FILES, REMOTE_BRANCHES)]
    {
        let url = origin(bench, &format!("cost-{name}"), files, branches)?;
        workers.push(WorkerRun::start(bench, binary, name, url).await?);
    }
    eprintln!("bench: {tasks} rounds of the trivial task, each way in turn");
    let (mut sequence_runs, mut run_task_runs) = (Vec::new(), Vec::new());
    for round in 0..=tasks {
        let measured = round > 0;
        if round == 1 {
            for worker in &mut workers {
                worker.begin().await?;
            }
        }
        // Both block on their child: off the runtime's worker threads.
        let run = tokio::task::block_in_place(|| sequence.iteration(&format!("seq-{round}")))?;
        sequence_runs.extend(measured.then_some(run));
        let run = tokio::task::block_in_place(|| run_task.run(&format!("run-{round}")))?;
        run_task_runs.extend(measured.then_some(run));
        for worker in &mut workers {
            worker.task(bench, round, measured).await?;
        }
    }
    // TaskCompleted goes out just before the ack and the slot's release: let the last
    // task's tail land inside the window, as every earlier task's does.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut finished = Vec::new();
    for worker in workers {
        finished.push(worker.finish(bench, tasks).await?);
    }
    let [base, large_repo, many_branches] =
        <[WorkerCost; 3]>::try_from(finished).map_err(|_| anyhow::anyhow!("three workers"))?;
    Ok(Cost {
        sequence: WallCpu::of(&sequence_runs),
        run_task: WallCpu::of(&run_task_runs),
        base,
        large_repo,
        many_branches,
    })
}

/// A new origin of `files` files and `branches` branches besides `main`; its URL.
fn origin(bench: &mut Bench, name: &str, files: usize, branches: usize) -> anyhow::Result<String> {
    bench.reset_origin_sized(name, files)?;
    if branches > 0 {
        bench.add_branches(branches)?;
    }
    Ok(bench.repo_url())
}
