//! The three ways the cost scenarios run the trivial task, each set up once and then run
//! a task at a time: the git CLI sequence in a shell, `agent-runner run --task` as one
//! process per task, and the worker release binary consuming from its own topology.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agent_runner::amqp::{ExchangeTap, TopologyNames};

use crate::cost::{SCANS_SAMPLE, WorkerCost};
use crate::fixtures::{Bench, task};
use crate::measure::wait_completed;
use crate::spawned::{self, Finished, ProcessCpu, WorkerProcess};
use crate::stats::Summary;

/// The git command lines the original Python component runs per task, in a warm clone.
pub struct Sequence {
    clone: PathBuf,
}

impl Sequence {
    /// Clones `url` and sets the committer, as the original's deployment does once.
    pub fn new(bench: &Bench, url: &str) -> anyhow::Result<Sequence> {
        let clone = bench.dir.path().join("sequence-clone");
        let clone_arg = clone.display().to_string();
        for args in [
            &["clone", "-q", url, &clone_arg][..],
            &["-C", &clone_arg, "config", "user.name", "bench"],
            &["-C", &clone_arg, "config", "user.email", "bench@bench"],
        ] {
            let status = std::process::Command::new("git").args(args).status()?;
            anyhow::ensure!(status.success(), "git {args:?} failed");
        }
        Ok(Sequence { clone })
    }

    /// One task, in one shell: back to `main`, fetch, rebase, branch, write the file,
    /// diff, add, commit, rev-parse, push, then the test command as the worker runs it
    /// (`sh -c`). The shell stands in for the Python process around these commands and
    /// costs less than it would. Blocks the thread.
    pub fn iteration(&self, id: &str) -> anyhow::Result<Finished> {
        let script = format!(
            "set -e; git checkout -q main; git fetch -q origin; git rebase -q origin/main; \
             git checkout -q -b {id}; mkdir -p notes; printf 'note {id}\\n' > notes/{id}.md; \
             git diff > /dev/null; git add -A; git commit -q -m 'feat(task-{id}): add note {id}'; \
             git rev-parse HEAD > /dev/null; git push -q origin {id}; sh -c true"
        );
        let mut command = std::process::Command::new("sh");
        command.arg("-c").arg(&script).current_dir(&self.clone);
        let run = spawned::run_measured(&mut command)?;
        anyhow::ensure!(run.success, "git CLI sequence {id} failed");
        Ok(run)
    }
}

/// `agent-runner run --task FILE`, one process per task, every process sharing one data
/// directory so that each finds the slot the one before it left, as the worker's tasks do.
pub struct RunTask {
    binary: PathBuf,
    config: PathBuf,
    home: PathBuf,
    dir: PathBuf,
    url: String,
    llm_endpoint: String,
}

impl RunTask {
    pub fn new(bench: &Bench, binary: &Path, url: &str) -> anyhow::Result<RunTask> {
        Ok(RunTask {
            binary: binary.to_path_buf(),
            config: spawned::config_file(bench, "run-task.yaml", None)?,
            home: bench.dir.path().join("run-task-home"),
            dir: bench.dir.path().to_path_buf(),
            url: url.to_string(),
            llm_endpoint: bench.llm.base_url(),
        })
    }

    /// One process for the task `id`, its log kept for the error should it fail. Blocks
    /// the thread.
    pub fn run(&self, id: &str) -> anyhow::Result<Finished> {
        let task_path = self.dir.join(format!("{id}.json"));
        std::fs::write(&task_path, serde_json::to_vec(&task(&self.url, id))?)?;
        let log_path = self.dir.join(format!("{id}.log"));
        let mut command = spawned::command(&self.binary, &self.config, &self.home, &self.llm_endpoint);
        command.arg("run").arg("--task").arg(&task_path);
        command.stdout(std::process::Stdio::null()).stderr(std::fs::File::create(&log_path)?);
        let run = spawned::run_measured(&mut command)?;
        if !run.success {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            anyhow::bail!("run --task {id} failed: {}", log.trim());
        }
        Ok(run)
    }
}

/// A worker process at concurrency 1 on a topology and an origin of its own.
pub struct WorkerRun {
    name: String,
    url: String,
    names: TopologyNames,
    tap: ExchangeTap,
    worker: WorkerProcess,
    /// The measured tasks' step durations.
    steps: BTreeMap<String, Vec<f64>>,
    /// Its clocks and scan counter when the measured tasks began.
    before: (ProcessCpu, Option<f64>),
}

impl WorkerRun {
    pub async fn start(bench: &Bench, binary: &Path, name: &str, url: String) -> anyhow::Result<WorkerRun> {
        let names = bench.topology(&format!("cost-{name}")).await?;
        let tap = bench.session.tap(&names.events_exchange, "task.#").await?;
        let home = bench.dir.path().join(format!("cost-home-{name}"));
        let worker = WorkerProcess::start(bench, binary, &names, &home, 1, true).await?;
        let before = (worker.cpu(), None);
        Ok(WorkerRun { name: name.to_string(), url, names, tap, worker, steps: BTreeMap::new(), before })
    }

    /// Marks the start of the measured tasks.
    pub async fn begin(&mut self) -> anyhow::Result<()> {
        self.before = (self.worker.cpu(), self.worker.metric(SCANS_SAMPLE).await?);
        Ok(())
    }

    /// Publishes the round's task and waits for it to complete.
    pub async fn task(&mut self, bench: &Bench, round: usize, measured: bool) -> anyhow::Result<()> {
        let id = format!("{}-{round}", self.name);
        bench.publish(&self.names, &serde_json::to_vec(&task(&self.url, &id))?).await?;
        let mut unmeasured = BTreeMap::new();
        let steps = if measured { &mut self.steps } else { &mut unmeasured };
        wait_completed(&mut self.tap, &id, steps).await
    }

    /// Its cost per task over the `tasks` measured tasks; stops it.
    pub async fn finish(self, bench: &Bench, tasks: usize) -> anyhow::Result<WorkerCost> {
        let (cpu, scans) = (self.worker.cpu(), self.worker.metric(SCANS_SAMPLE).await?);
        self.worker.stop().await;
        bench.session.delete(&self.names).await?;
        let spent = cpu.since(&self.before.0);
        let n = tasks.max(1) as f64;
        Ok(WorkerCost {
            per_task: ProcessCpu { own_ms: spent.own_ms / n, children_ms: spent.children_ms / n },
            push: Summary::of(self.steps.get("push").map_or(&[][..], Vec::as_slice)),
            scans_per_task: self.before.1.zip(scans).map(|(before, after)| (after - before) / n),
        })
    }
}
