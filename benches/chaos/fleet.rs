//! The chaos run's fleet: worker processes of the real binary (killed and restarted at
//! will), and what the origin and the event capture say afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// One worker slot: a process of the binary with its own config and log, restartable.
pub struct Worker {
    dir: PathBuf,
    child: Option<Child>,
    pub starts: usize,
}

impl Worker {
    /// Writes the worker's config (`yaml`) under `dir` and starts it.
    pub fn start(dir: PathBuf, yaml: &str) -> Worker {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("c.yaml"), yaml).unwrap();
        let mut worker = Worker { dir, child: None, starts: 0 };
        worker.spawn();
        worker
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("worker-{}.log", self.starts))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_agent-runner"))
            .args(["--config", "c.yaml", "worker"])
            .current_dir(&self.dir)
            .env_remove("AMQP_URL")
            .env_remove("OPENAI_API_KEY")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// SIGKILL, then a fresh process in its place (a crashed pod rescheduled).
    pub fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }

    /// SIGTERM and wait: the graceful end of the run.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Lines of every log of this slot that contain `needle`.
    pub fn log_lines_with(&self, needle: &str) -> usize {
        (1..=self.starts)
            .filter_map(|n| std::fs::read_to_string(self.dir.join(format!("worker-{n}.log"))).ok())
            .map(|log| log.lines().filter(|l| l.contains(needle)).count())
            .sum()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Commits carrying `Task-Id: <id>` on each task branch of the bare `origin`, by task.
pub fn task_commits(origin: &Path, task_ids: &[String]) -> Vec<usize> {
    let repo = git2::Repository::open_bare(origin).unwrap();
    let base = repo.find_reference("refs/heads/main").unwrap().peel_to_commit().unwrap().id();
    task_ids
        .iter()
        .map(|id| {
            let Ok(branch) = repo.find_reference(&format!("refs/heads/feature/task-greeter-{id}")) else {
                return 0;
            };
            let mut walk = repo.revwalk().unwrap();
            walk.push(branch.peel_to_commit().unwrap().id()).unwrap();
            walk.hide(base).unwrap();
            let trailer = format!("Task-Id: {id}");
            walk.filter_map(Result::ok)
                .filter_map(|oid| repo.find_commit(oid).ok())
                .filter(|c| c.message().unwrap_or("").lines().any(|l| l == trailer))
                .count()
        })
        .collect()
}
