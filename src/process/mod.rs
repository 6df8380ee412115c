//! The one way the worker runs a shell command.
//!
//! Every command (playbook steps, anything else that shells out) goes through
//! [`run_command`] so that all of them share the same guarantees:
//! - the child runs in its own process group, and on timeout, cancellation, a dropped
//!   future, or plain completion the whole group is killed — no step leaves processes behind;
//! - the child sees a scrubbed environment (see [`env::INHERITED_ENV_VARS`]), never the
//!   worker's credentials unless the caller passes them explicitly;
//! - stdout and stderr share one pipe, so the captured text is interleaved exactly as the
//!   child wrote it, and it is capped (head and tail kept) so a chatty test cannot exhaust memory;
//! - resource limits ([`ProcessLimits`]) are set as rlimits in the child and enforced over
//!   the whole group by the [`watchdog`], which kills it and reports the breach;
//! - the child can never gain privileges, a root worker's child holds no capabilities, and
//!   the worker itself is made non-dumpable, so its `/proc/<pid>/environ` and memory are
//!   out of a child's reach;
//! - [`Isolation`] picks where it runs: directly, under bubblewrap (as an unprivileged uid
//!   in a user namespace, in a view built for the job, under seccomp: [`sandbox`]), or in
//!   a container.

pub mod env;
pub mod isolation;
mod launch;
pub mod limits;
mod output;
pub mod sandbox;
pub mod usage;
pub mod watchdog;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use crate::error::{Classify, FailureKind};
use isolation::CONTAINER_USAGE_FILE;
pub use isolation::{CommandLine, Isolation};
pub use limits::{LimitBreach, LimitKind, ProcessLimits};
pub use output::OutputCollector;
pub use sandbox::{SandboxError, SandboxPolicy, sandbox_preflight};
pub use usage::ResourceUsage;

/// How long a process group gets to exit after SIGTERM before it is SIGKILLed: enough for
/// test runners to flush reports, short enough that a timeout still means "stopped now".
pub const TERM_GRACE: Duration = Duration::from_secs(2);

/// How long to keep reading output once the group is dead. Only a descendant that escaped
/// the group (`setsid`) can still hold the pipe open; it must not stall the worker.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Read size for the output pipe; matches a typical pipe buffer page multiple.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// What to run and under which limits.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Shell text, run as `sh -c <command>`.
    pub command: String,
    /// Working directory of the child.
    pub cwd: PathBuf,
    /// Variables added on top of the scrubbed base environment (they win over inherited ones).
    pub env: BTreeMap<String, String>,
    /// Wall-clock limit; past it the whole process group is killed.
    pub timeout: Duration,
    /// Maximum bytes of output kept (half head, half tail).
    pub output_cap_bytes: usize,
    /// Where the command runs.
    pub isolation: Isolation,
    /// What the command may use; crossing a limit kills its group.
    pub limits: ProcessLimits,
}

impl CommandSpec {
    /// A local command with no extra variables and no resource limits.
    pub fn new(
        command: impl Into<String>,
        cwd: impl Into<PathBuf>,
        timeout: Duration,
        output_cap_bytes: usize,
    ) -> Self {
        CommandSpec {
            command: command.into(),
            cwd: cwd.into(),
            env: BTreeMap::new(),
            timeout,
            output_cap_bytes,
            isolation: Isolation::LocalProcess,
            limits: ProcessLimits::default(),
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandEnd {
    /// The shell exited with this code.
    Exited(i32),
    /// The shell was killed by this signal (not by us).
    Signalled(i32),
    /// The timeout fired and the group was killed.
    TimedOut,
    /// The cancellation token fired and the group was killed.
    Cancelled,
    /// A resource limit was crossed and the group was killed.
    LimitExceeded(LimitBreach),
}

/// The result of one command run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    pub end: CommandEnd,
    /// stdout and stderr interleaved as written, lossily decoded; when over the cap, head and
    /// tail are kept with a `[... N bytes omitted ...]` marker between them.
    pub output: String,
    /// Wall-clock time from spawn to the end of output collection.
    pub duration: Duration,
    /// Whether output bytes were dropped to respect the cap.
    pub truncated: bool,
    /// CPU time and peak memory of the command's processes (see [`usage`]); `None` when
    /// nothing ran or the figures could not be read.
    pub usage: Option<ResourceUsage>,
}

impl CommandOutcome {
    /// True only for exit code 0.
    pub fn success(&self) -> bool {
        self.end == CommandEnd::Exited(0)
    }

    /// The exit code, when the shell exited on its own.
    pub fn exit_code(&self) -> Option<i32> {
        match self.end {
            CommandEnd::Exited(code) => Some(code),
            _ => None,
        }
    }
}

/// A command could not be started or waited for (as opposed to running and failing).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot create the output pipe: {0}")]
    Pipe(#[source] std::io::Error),
    #[error("cannot start `{program}` in {cwd}: {source}")]
    Spawn { program: String, cwd: PathBuf, source: std::io::Error },
    #[error("cannot wait for the command: {0}")]
    Wait(#[source] std::io::Error),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// `docker run` itself failed (exit 125 with the CLI's own `docker:` line): the
    /// engine did not answer, or the image is missing. The step's command never ran.
    #[error("the container engine could not run the step: {message}")]
    ContainerEngine { message: String },
}

impl Classify for ProcessError {
    fn failure_kind(&self) -> FailureKind {
        match self {
            ProcessError::ContainerEngine { .. } => FailureKind::Infrastructure,
            _ => FailureKind::TestExecution,
        }
    }

    /// Running out of processes or file descriptors passes; a missing directory does not.
    /// An engine that did not answer may be back (restarted, the image loaded) later.
    fn is_transient(&self) -> bool {
        let io = match self {
            ProcessError::ContainerEngine { .. } => return true,
            ProcessError::Pipe(e) | ProcessError::Spawn { source: e, .. } | ProcessError::Wait(e) => e,
            ProcessError::Sandbox(SandboxError::Workspace { source, .. } | SandboxError::Filter(source)) => {
                source
            }
            // The operator's configuration or the host's bubblewrap: not going to pass.
            ProcessError::Sandbox(_) => return false,
        };
        matches!(io.raw_os_error(), Some(libc::EAGAIN | libc::EMFILE | libc::ENFILE))
    }
}

/// Tries to read the shell's resident size right after spawn. While the shell is in
/// the middle of an `exec` (dash execs a lone command) its size reads as zero, so it is
/// read again for a few milliseconds; a command over by then (exited: a zombie until it
/// is reaped) has no figure, and is not waited on.
async fn first_resident_bytes(pid: i32) -> u64 {
    for _ in 0..FIRST_READING_TRIES {
        match watchdog::resident_bytes(pid) {
            Some(0) => tokio::time::sleep(Duration::from_millis(1)).await,
            Some(resident) => return resident,
            None => return 0,
        }
    }
    0
}

/// Tries of [`first_resident_bytes`], a millisecond apart.
const FIRST_READING_TRIES: u32 = 10;

/// Runs `spec.command` under `sh -c` as `spec.isolation` says, enforcing the timeout,
/// cancellation, resource limits and output cap.
///
/// A token already cancelled returns [`CommandEnd::Cancelled`] without starting anything.
/// Dropping the returned future kills the process group (and removes a docker container).
pub async fn run_command(
    spec: &CommandSpec,
    cancel: &CancellationToken,
) -> Result<CommandOutcome, ProcessError> {
    let started = Instant::now();
    if cancel.is_cancelled() {
        return Ok(CommandOutcome {
            end: CommandEnd::Cancelled,
            output: String::new(),
            duration: started.elapsed(),
            truncated: false,
            usage: None,
        });
    }
    limits::make_worker_undumpable();
    // Declared before the process group's guard, so dropped after it: the workspace goes
    // back to the worker once nothing of the command runs.
    let _workspace_lease = lend_workspace_for(spec).await?;
    let launch = launch::Launch::build(spec)?;
    let tasks_before_spawn = watchdog::system_task_count();
    let (mut child, reader) = launch::spawn(&launch, spec)?;
    let leader = child.id().and_then(|id| i32::try_from(id).ok());
    // The shell read at once, before anything else: it has `exec`ed (spawn returns after
    // that), so it is no copy of the worker, and a step of a few milliseconds is over
    // before the watchdog's first walk; its shell's size is then the memory figure.
    let first_resident = match leader {
        Some(pid) => first_resident_bytes(pid).await,
        None => 0,
    };
    let mut group = GroupGuard { pgid: leader };
    let exit_watch = leader.and_then(usage::ExitWatch::open);
    let mut container = launch::ContainerGuard::new(&launch);
    let collector = Arc::new(Mutex::new(OutputCollector::new(spec.output_cap_bytes)));
    let pump =
        tokio::spawn(tracing::Instrument::in_current_span(pump_output(reader, Arc::clone(&collector))));
    let peak_resident = std::sync::atomic::AtomicU64::new(first_resident);
    let peak = &peak_resident;
    let watched = async move {
        match leader {
            Some(pid) => watchdog::watch(pid, spec.limits, tasks_before_spawn, peak).await,
            None => std::future::pending().await,
        }
    };
    let mut reaper = Reaper { child: &mut child, exit_watch: exit_watch.as_ref(), usage: None };
    let end = wait_for_end(&mut reaper, &mut group, watched, spec, cancel).await?;
    // A container's figures are its own; the CLI's rusage would only measure the CLI. A
    // container that wrote them ran to its end: whatever its exit code, it is the step's.
    let (usage, container_ran) = match &launch.usage_dir {
        Some(dir) => {
            (usage::read_container_usage(dir.path()), dir.path().join(CONTAINER_USAGE_FILE).exists())
        }
        // CPU from the kernel's account, memory from the samples (see `usage`).
        None => {
            let peak_memory_bytes = peak_resident.load(std::sync::atomic::Ordering::Relaxed);
            (reaper.usage.map(|cpu| ResourceUsage { peak_memory_bytes, ..cpu }), false)
        }
    };
    // Background jobs the step started die with it; this also releases the pipe they hold.
    group.kill(libc::SIGKILL);
    // Disarm: once the group is empty its id may be reused, and a later kill could hit a stranger.
    group.pgid = None;
    match end {
        CommandEnd::Exited(_) | CommandEnd::Signalled(_) => container.disarm(),
        _ => container.remove().await,
    }
    drain(pump).await;

    let collected = collector.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(message) = engine_failure(spec, end, container_ran, &collected.render()) {
        return Err(ProcessError::ContainerEngine { message });
    }
    Ok(CommandOutcome {
        end,
        output: collected.render(),
        duration: started.elapsed(),
        truncated: collected.truncated(),
        usage,
    })
}

/// `docker run`'s own exit code for "the container could not be run" (the engine did not
/// answer, the image is missing, the container could not be created); 126 and 127 are the
/// command's inside the container, any other code is the command's own exit.
pub const DOCKER_RUN_FAILED: i32 = 125;

/// The engine's reason when a docker-mode command ended with [`DOCKER_RUN_FAILED`], its
/// container never got to its end (no usage figures written: see
/// `isolation::DOCKER_USAGE_SCRIPT`), and the CLI said why on a `docker: ` line (the last
/// such line, as the CLI writes it). A command inside the container that exits 125
/// itself, whatever it prints, stays the command's exit code.
fn engine_failure(spec: &CommandSpec, end: CommandEnd, container_ran: bool, output: &str) -> Option<String> {
    let docker = matches!(spec.isolation, Isolation::Docker { .. });
    if !docker || container_ran || end != CommandEnd::Exited(DOCKER_RUN_FAILED) {
        return None;
    }
    let line = output.lines().rev().find_map(|line| line.trim().strip_prefix("docker: "))?;
    Some(line.trim_end_matches('.').trim().to_string())
}

/// A root worker's sandboxed command needs to write the workspace as the sandbox uid.
async fn lend_workspace_for(spec: &CommandSpec) -> Result<Option<sandbox::WorkspaceLease>, ProcessError> {
    let Isolation::Sandbox { policy, .. } = &spec.isolation else { return Ok(None) };
    if !launch::worker_is_root() {
        return Ok(None);
    }
    let (workdir, uid, gid) = (spec.cwd.clone(), policy.uid, policy.gid);
    let lease =
        crate::telemetry::spawn_blocking_in_span(move || sandbox::lend_workspace_to(&workdir, uid, gid))
            .await
            .map_err(|e| SandboxError::Unavailable(format!("the ownership walk stopped: {e}")))??;
    Ok(Some(lease))
}

/// Waits for whichever comes first: the shell's exit, a crossed limit, the timeout or
/// cancellation; in the last three cases the processes are killed before returning.
async fn wait_for_end(
    child: &mut Reaper<'_>,
    group: &mut GroupGuard,
    watched: impl Future<Output = LimitBreach>,
    spec: &CommandSpec,
    cancel: &CancellationToken,
) -> Result<CommandEnd, ProcessError> {
    Ok(tokio::select! {
        status = child.reap() => status_to_end(status.map_err(ProcessError::Wait)?, &spec.limits),
        breach = watched => {
            // No grace for a fork bomb or a memory hog: straight to SIGKILL, pass after pass.
            if let Some(pgid) = group.pgid {
                watchdog::kill_all(pgid).await;
            }
            let _ = child.reap().await;
            tracing::warn!(%breach, mode = spec.isolation.mode_name(), "command stopped at a resource limit");
            CommandEnd::LimitExceeded(breach)
        }
        () = tokio::time::sleep(spec.timeout) => {
            terminate(child, group).await;
            CommandEnd::TimedOut
        }
        () = cancel.cancelled() => {
            terminate(child, group).await;
            CommandEnd::Cancelled
        }
    })
}

/// Copies the pipe into the collector until EOF or a read error.
async fn pump_output(mut reader: tokio::net::unix::pipe::Receiver, sink: Arc<Mutex<OutputCollector>>) {
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => sink.lock().unwrap_or_else(|p| p.into_inner()).push(&buf[..n]),
        }
    }
}

/// Waits for the pump to reach EOF, but no longer than [`DRAIN_TIMEOUT`].
async fn drain(pump: tokio::task::JoinHandle<()>) {
    let abort = pump.abort_handle();
    if tokio::time::timeout(DRAIN_TIMEOUT, pump).await.is_err() {
        tracing::warn!("command output still open after the process group was killed; stopped reading");
        abort.abort();
    }
}

/// SIGTERM to the group, a short grace for the shell to exit, then SIGKILL and reap.
async fn terminate(child: &mut Reaper<'_>, group: &mut GroupGuard) {
    group.kill(libc::SIGTERM);
    let _ = tokio::time::timeout(TERM_GRACE, child.exited()).await;
    group.kill(libc::SIGKILL);
    // After SIGKILL the leader exits promptly; reaping avoids a zombie per timed-out step.
    let _ = child.reap().await;
}

/// The command's shell, reaped only after its resource usage was read (see [`usage`]).
struct Reaper<'a> {
    child: &'a mut Child,
    exit_watch: Option<&'a usage::ExitWatch>,
    /// Filled in by [`Reaper::reap`].
    usage: Option<ResourceUsage>,
}

impl Reaper<'_> {
    /// Resolves once the shell has exited, without reaping it.
    async fn exited(&mut self) {
        match self.exit_watch {
            Some(watch) => watch.exited().await,
            // No pidfd: reaping is the only way to learn of the exit.
            None => {
                let _ = self.child.wait().await;
            }
        }
    }

    /// Waits for the exit, reads the usage, then reaps. Cancel-safe: dropped before the
    /// exit, nothing is lost.
    async fn reap(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(watch) = self.exit_watch {
            watch.exited().await;
            if self.usage.is_none() {
                self.usage = watch.usage();
            }
        }
        self.child.wait().await
    }
}

/// The shell's exit status as a [`CommandEnd`]. `SIGXCPU` is the per-process CPU rlimit
/// firing before the watchdog did: reported as the CPU-time breach it is.
fn status_to_end(status: ExitStatus, limits: &ProcessLimits) -> CommandEnd {
    match (status.code(), status.signal()) {
        (None, Some(libc::SIGXCPU)) if limits.cpu_seconds.is_some() => {
            let budget = limits.cpu_seconds.unwrap_or_default();
            CommandEnd::LimitExceeded(LimitBreach {
                kind: LimitKind::CpuTime,
                limit: budget,
                observed: budget,
            })
        }
        (Some(code), _) => CommandEnd::Exited(code),
        (None, Some(signal)) => CommandEnd::Signalled(signal),
        (None, None) => CommandEnd::Signalled(0),
    }
}

/// Owns the child's process group id and kills the group when dropped, so an abandoned
/// `run_command` future (task aborted, `select!` lost) leaves no orphans.
struct GroupGuard {
    pgid: Option<i32>,
}

impl GroupGuard {
    fn kill(&mut self, signal: libc::c_int) {
        if let Some(pgid) = self.pgid {
            // SAFETY: killpg only takes integers; a group that is already gone yields ESRCH,
            // which is the outcome we want anyway.
            unsafe {
                libc::killpg(pgid, signal);
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill(libc::SIGKILL);
    }
}
