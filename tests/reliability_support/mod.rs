//! Git helpers shared by the reliability tests: planting a branch on a bare origin and
//! counting what a task branch carries.
#![allow(dead_code)]

use std::path::Path;

use git2::{Repository, Signature};

/// Commits `file` = `content` on top of `base` in the bare repository at `origin` and
/// points `branch` at it, as a human pushing to the task's branch name would.
pub fn plant_branch(origin: &Path, base: &str, branch: &str, file: &str, content: &str, message: &str) {
    let repo = Repository::open_bare(origin).unwrap();
    let parent = repo.find_reference(&format!("refs/heads/{base}")).unwrap().peel_to_commit().unwrap();
    let mut builder = repo.treebuilder(Some(&parent.tree().unwrap())).unwrap();
    builder.insert(file, repo.blob(content.as_bytes()).unwrap(), 0o100644).unwrap();
    let tree = repo.find_tree(builder.write().unwrap()).unwrap();
    let who = Signature::now("Someone", "someone@example.com").unwrap();
    repo.commit(Some(&format!("refs/heads/{branch}")), &who, &who, message, &tree, &[&parent]).unwrap();
}

/// The messages of the commits `branch` has on top of `base`, newest first; `None` when
/// the branch does not exist.
pub fn commits_on_branch(origin: &Path, base: &str, branch: &str) -> Option<Vec<String>> {
    let repo = Repository::open_bare(origin).unwrap();
    let tip = repo.find_reference(&format!("refs/heads/{branch}")).ok()?.peel_to_commit().unwrap().id();
    let base = repo.find_reference(&format!("refs/heads/{base}")).unwrap().peel_to_commit().unwrap().id();
    let mut walk = repo.revwalk().unwrap();
    walk.push(tip).unwrap();
    walk.hide(base).unwrap();
    Some(
        walk.map(|oid| repo.find_commit(oid.unwrap()).unwrap().message().unwrap_or("").to_string()).collect(),
    )
}

/// A config file for the binary on `names`' private topology, with `extra` YAML lines
/// appended (top-level keys other than `amqp`).
pub fn binary_config(names: &agent_runner::amqp::TopologyNames, amqp_url: &str, extra: &str) -> String {
    format!("{}  url: {amqp_url}\n{extra}", names.config_yaml())
}

/// The top-level YAML pointing the binary at the harness's parts: the slot pool and the
/// artifact store under its directory, the shipped playbooks, its scripted model, and
/// its local origins admitted as remotes.
pub fn harness_parts_yaml(harness: &crate::common::Harness) -> String {
    let dir = harness.dir.path();
    format!(
        "pool_dir: {}\nartifact_store_url: file://{}\nplaybooks_dir: {}\nllm:\n  endpoint: {}\n{}",
        dir.join("slots").display(),
        harness.artifacts_dir().display(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks").display(),
        harness.llm.base_url(),
        crate::common::local_remotes_yaml(dir),
    )
}

/// Runs the binary to completion in `dir` with `args`, off the async runtime.
pub async fn agent_runner(dir: &Path, args: &[&str]) -> std::process::Output {
    let (dir, args): (std::path::PathBuf, Vec<String>) =
        (dir.to_path_buf(), args.iter().map(|a| a.to_string()).collect());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_agent-runner"))
            .args(&args)
            .current_dir(&dir)
            .env_remove("OPENAI_API_KEY")
            .env_remove("AMQP_URL")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Waits until the ready counts of the work queue and the DLQ are `expected`, then
/// asserts them. Quorum queues settle requeues (a closed browsing channel) and counts a
/// moment after the operation returned, so a single read could see the message missing.
pub async fn assert_depths(harness: &crate::common::Harness, expected: (u32, u32)) {
    let depths = crate::common::settling(&expected, || harness.depths()).await;
    assert_eq!(depths, expected, "(work queue, dead-letter queue) ready messages");
}

/// A worker process of the real binary, started with `--config c.yaml` in `dir`. Its
/// output goes to `worker-<n>.log` there, for post-mortems.
pub struct WorkerProcess {
    pub child: std::process::Child,
}

impl WorkerProcess {
    pub fn start(dir: &Path, label: &str, extra_args: &[&str]) -> WorkerProcess {
        Self::start_with_env(dir, label, extra_args, &[])
    }

    /// [`WorkerProcess::start`] with `env` added to the worker's environment.
    pub fn start_with_env(
        dir: &Path,
        label: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let log = std::fs::File::create(dir.join(format!("worker-{label}.log"))).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_agent-runner"))
            .args(["--config", "c.yaml", "--text-logs", "worker"])
            .args(extra_args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .env_remove("OPENAI_API_KEY")
            .env_remove("AMQP_URL")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        WorkerProcess { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGKILL: the worker gets no chance to settle anything.
    pub fn kill_hard(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
    }

    /// Waits for the process to exit (bounded by `limit`), off the runtime.
    pub async fn wait(mut self, limit: std::time::Duration) -> std::process::ExitStatus {
        let waited = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + limit;
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    return Some(status);
                }
                if std::time::Instant::now() > deadline {
                    let _ = self.child.kill();
                    return None;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        });
        waited.await.unwrap().expect("the worker exited in time")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 20 ms for at most `seconds`; panics naming `what` otherwise.
pub async fn eventually(what: &str, seconds: u64, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "condition never became true: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Kills a process group left behind by a killed worker (its test step's sleep).
pub fn kill_group_of(pid_file: &Path) {
    if let Ok(text) = std::fs::read_to_string(pid_file)
        && let Ok(pid) = text.trim().parse::<i32>()
    {
        // SAFETY: kill(2) on a process group our test step created; it is ours to end.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}
