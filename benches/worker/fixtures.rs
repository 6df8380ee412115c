//! What the benchmark runs against: a generated repository of many files, a model that
//! answers at once with a one-file edit, and a private topology on the real broker.

use std::path::PathBuf;

use agent_runner::amqp::{AmqpSession, HeaderMap, Outgoing, TopologyNames};
use agent_runner::config::{self, ArtifactStoreLocation, ConfigOverrides, RunnerConfig};
use agent_runner::git::RemotePrefix;
use agent_runner::llm::scripted::{self, Script, ScriptedLlmHandle};

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Files in the generated repository: large enough that a fresh clone costs what it
/// costs on a real project, small enough to generate in a second.
pub const REPO_FILES: usize = 1000;

/// Everything a scenario needs.
pub struct Bench {
    pub dir: tempfile::TempDir,
    pub origin: PathBuf,
    /// The origin is served by `git daemon`, a process of its own, as a remote is in
    /// production: over `file://` libgit2 would run the server's side of every fetch and
    /// push inside the worker (reading every ref's object, across a pack per push) and
    /// count a git server's work as the worker's.
    daemon: GitDaemon,
    pub llm: ScriptedLlmHandle,
    pub session: AmqpSession,
}

impl Bench {
    pub async fn new() -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir()?;
        let origin = generate_origin(&dir.path().join("origin.git"), REPO_FILES)?;
        // Each task gets a distinct edit: the answer names a file from the task title.
        let llm = scripted::start(Script::responder(one_file_edit)).await?;
        let session = AmqpSession::connect(AMQP_URL, "agent-runner bench").await?;
        let daemon = GitDaemon::start(dir.path())?;
        Ok(Bench { dir, origin, daemon, llm, session })
    }

    /// Starts the next scenario on a new origin holding only `main`: every task pushes a
    /// branch, and a remote with hundreds of them makes fetches and clones slower, which
    /// would bias whichever scenario runs last.
    pub fn reset_origin(&mut self, name: &str) -> anyhow::Result<()> {
        self.reset_origin_sized(name, REPO_FILES)
    }

    /// As [`Bench::reset_origin`], with a repository of `files` files.
    pub fn reset_origin_sized(&mut self, name: &str, files: usize) -> anyhow::Result<()> {
        self.origin = generate_origin(&self.dir.path().join(format!("origin-{name}.git")), files)?;
        Ok(())
    }

    /// Gives the current origin `count` more branches, each one commit on `main` adding a
    /// file, as the branches earlier tasks pushed are. One `git fast-import` writes them
    /// all (then `pack-refs`, as a long-lived remote keeps them): hundreds of pushes would
    /// take longer than the scenario that needs them.
    pub fn add_branches(&self, count: usize) -> anyhow::Result<()> {
        let mut stream = String::new();
        for i in 0..count {
            let content = format!("note {i}\n");
            stream.push_str(&format!(
                "commit refs/heads/task/old-{i}\ncommitter b <b@b> 1700000000 +0000\ndata 9\nold task\n\
                 from refs/heads/main^0\nM 100644 inline notes/old-{i}.md\ndata {}\n{content}\n",
                content.len()
            ));
        }
        let mut import = std::process::Command::new("git")
            .args(["fast-import", "--quiet"])
            .current_dir(&self.origin)
            .stdin(std::process::Stdio::piped())
            .spawn()?;
        std::io::Write::write_all(&mut import.stdin.take().expect("piped stdin"), stream.as_bytes())?;
        anyhow::ensure!(import.wait()?.success(), "git fast-import failed");
        let packed = std::process::Command::new("git")
            .args(["pack-refs", "--all"])
            .current_dir(&self.origin)
            .status()?;
        anyhow::ensure!(packed.success(), "git pack-refs failed");
        Ok(())
    }

    pub fn repo_url(&self) -> String {
        let name = self.origin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        format!("git://127.0.0.1:{}/{name}", self.daemon.port)
    }

    /// The `git.allowed_remotes` entry for this bench's `git daemon`.
    pub fn allowed_remote(&self) -> String {
        format!("git://127.0.0.1:{}/", self.daemon.port)
    }

    /// Worker configuration under this bench's directory, with `concurrency` tasks.
    pub fn config(&self, name: &str, concurrency: usize) -> anyhow::Result<RunnerConfig> {
        let env = |_: &str| None;
        let overrides = ConfigOverrides {
            llm_endpoint: Some(self.llm.base_url()),
            pool_dir: Some(self.dir.path().join(format!("slots-{name}"))),
            runner_id: Some(format!("bench-{name}")),
            concurrency: Some(concurrency as u64),
            ..ConfigOverrides::default()
        };
        let mut config = config::load(None, &env, &overrides)?;
        config.services.artifact_store = ArtifactStoreLocation::Filesystem(self.dir.path().join("artifacts"));
        let remote =
            RemotePrefix::parse(&self.allowed_remote()).map_err(|reason| anyhow::anyhow!("{reason}"))?;
        config.git.allowed_remotes.push(remote);
        Ok(config)
    }

    /// A private topology for one scenario.
    pub async fn topology(&self, name: &str) -> anyhow::Result<TopologyNames> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let names = TopologyNames::isolated(&format!("bench.{name}.{suffix}"));
        self.session.declare(&names).await?;
        Ok(names)
    }

    /// Publishes one task per id with the `true` playbook.
    pub async fn publish_tasks(
        &self,
        names: &TopologyNames,
        ids: impl Iterator<Item = String>,
    ) -> anyhow::Result<()> {
        for id in ids {
            self.publish(names, &serde_json::to_vec(&task(&self.repo_url(), &id))?).await?;
        }
        Ok(())
    }

    pub async fn publish(&self, names: &TopologyNames, body: &[u8]) -> anyhow::Result<()> {
        self.session
            .publisher
            .publish(Outgoing {
                exchange: &names.task_exchange,
                routing_key: "task.bench",
                body,
                headers: &HeaderMap::new(),
                mandatory: true,
            })
            .await?;
        Ok(())
    }
}

/// `git daemon` serving every repository under a directory, fetch and push, on a free
/// local port; stopped when dropped.
struct GitDaemon {
    port: u16,
    process: std::process::Child,
}

impl GitDaemon {
    fn start(base: &std::path::Path) -> anyhow::Result<GitDaemon> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // The daemon itself, not `git daemon`: that wrapper would stand between us and the
        // daemon's CPU clocks, which count the server-side work per connection.
        let exec_path = std::process::Command::new("git").arg("--exec-path").output()?.stdout;
        let daemon = PathBuf::from(String::from_utf8_lossy(&exec_path).trim()).join("git-daemon");
        let process = std::process::Command::new(daemon)
            .args(["--reuseaddr", "--export-all", "--enable=receive-pack", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(std::process::Stdio::null())
            // Its only chatter is about the readiness probe below hanging up.
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let daemon = GitDaemon { port, process };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(std::time::Instant::now() < deadline, "git daemon did not listen on {port}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(daemon)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A bare repository of `files` files at `path`, forty directories of them.
fn generate_origin(path: &std::path::Path, files: usize) -> anyhow::Result<PathBuf> {
    let contents: Vec<(String, String)> = (0..files)
        .map(|i| (format!("src/module_{:02}/file_{i:04}.txt", i % 40), format!("line {i}\n").repeat(20)))
        .collect();
    let files: Vec<(&str, &str)> = contents.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    agent_runner::demo::sample::create_origin(path, "main", &files)?;
    Ok(path.to_path_buf())
}

/// A task whose playbook is `true`: the benchmark measures the worker, not the tests.
pub fn task(repo_url: &str, id: &str) -> serde_json::Value {
    serde_json::json!({
        "schema_version": 1,
        "task_id": id,
        "spec_name": "bench",
        "title": format!("Add note {id}"),
        "description": "Add a note file.",
        "repo_url": repo_url,
        "playbook": { "name": "noop", "steps": [{ "name": "true", "command": "true" }] }
    })
}

/// The model's answer: one new file named after the task.
fn one_file_edit(request: &serde_json::Value) -> String {
    let text = request.to_string();
    let id = text
        .split("Add note ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-')).next())
        .unwrap_or("x")
        .to_string();
    serde_json::json!({
        "code_changes": [{ "file_path": format!("notes/{id}.md"), "operation": "create", "content": format!("note {id}\n") }],
        "explanation": "added a note"
    })
    .to_string()
}

/// Resident memory of a process in MiB, from /proc.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 =
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU time used so far, in milliseconds, by the parties sharing the machine's cores.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuClock {
    /// This process: the worker under test, the scripted model and the harness.
    pub worker_ms: f64,
    /// The git server: the daemon's finished children (upload-pack, receive-pack, ...).
    pub git_server_ms: f64,
    /// RabbitMQ's Erlang VM.
    pub broker_ms: f64,
    /// The whole machine, every core, from /proc/stat: the parties above plus what no
    /// process is charged for (the kernel's own threads, file system journaling).
    pub machine_ms: f64,
}

impl CpuClock {
    pub fn since(&self, earlier: &CpuClock) -> CpuClock {
        CpuClock {
            worker_ms: self.worker_ms - earlier.worker_ms,
            git_server_ms: self.git_server_ms - earlier.git_server_ms,
            broker_ms: self.broker_ms - earlier.broker_ms,
            machine_ms: self.machine_ms - earlier.machine_ms,
        }
    }

    pub fn plus(&self, other: &CpuClock) -> CpuClock {
        CpuClock {
            worker_ms: self.worker_ms + other.worker_ms,
            git_server_ms: self.git_server_ms + other.git_server_ms,
            broker_ms: self.broker_ms + other.broker_ms,
            machine_ms: self.machine_ms + other.machine_ms,
        }
    }

    pub fn per(&self, tasks: usize) -> CpuClock {
        let n = tasks.max(1) as f64;
        CpuClock {
            worker_ms: self.worker_ms / n,
            git_server_ms: self.git_server_ms / n,
            broker_ms: self.broker_ms / n,
            machine_ms: self.machine_ms / n,
        }
    }

    /// Cores the machine kept busy at `rate` units per second, when `self` is per unit.
    pub fn cores_busy(&self, rate: f64) -> f64 {
        self.machine_ms * rate / 1000.0
    }

    pub fn total_ms(&self) -> f64 {
        self.worker_ms + self.git_server_ms + self.broker_ms
    }
}

impl Bench {
    /// Reads the CPU clocks now.
    pub fn cpu_clock(&self) -> CpuClock {
        let ticks_ms = 1000.0 / clock_ticks_per_second();
        let own = proc_stat_times(std::process::id()).map_or(0.0, |(own, _)| own);
        let server = proc_stat_times(self.daemon.process.id()).map_or(0.0, |(_, children)| children);
        let broker = broker_pid().and_then(proc_stat_times).map_or(0.0, |(own, _)| own);
        CpuClock {
            worker_ms: own * ticks_ms,
            git_server_ms: server * ticks_ms,
            broker_ms: broker * ticks_ms,
            machine_ms: machine_busy_ticks().unwrap_or(0.0) * ticks_ms,
        }
    }
}

/// `(utime + stime, cutime + cstime)` of a process, in clock ticks.
pub fn proc_stat_times(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may itself hold spaces.
    let fields: Vec<f64> =
        stat.rsplit_once(')')?.1.split_whitespace().skip(11).take(4).filter_map(|f| f.parse().ok()).collect();
    (fields.len() == 4).then(|| (fields[0] + fields[1], fields[2] + fields[3]))
}

/// Busy time of all cores together, in clock ticks: the `cpu` line of /proc/stat less
/// idle and I/O wait.
fn machine_busy_ticks() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<f64> =
        stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: f64 = fields.iter().take(8).sum::<f64>() - fields.get(3)? - fields.get(4)?;
    Some(busy)
}

/// The local RabbitMQ's Erlang VM, found by its command name.
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        (comm.trim() == "beam.smp").then_some(pid)
    })
}

pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}
