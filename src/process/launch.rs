//! Turning a [`CommandSpec`] into a running child: the command line for its isolation
//! mode, the work done in the child before `exec` (limits, privileges), and the docker
//! container's cleanup.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::isolation::{self, CommandLine, DockerRun, Isolation};
use super::limits::{self, RlimitPlan};
use super::sandbox::child::ChildPlan;
use super::sandbox::{self, SandboxError, SandboxLayout, SandboxPolicy};
use super::{CommandSpec, ProcessError, env};

/// How long `docker rm --force` may take when a container's CLI was killed; an engine
/// that does not answer in this time is not going to, and the worker must move on.
const CONTAINER_REMOVAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A command line ready to spawn, and the container to remove if it is stopped early.
#[derive(Debug)]
pub(crate) struct Launch {
    pub line: CommandLine,
    /// `docker rm --force <name>` for docker mode.
    pub cleanup: Option<CommandLine>,
    /// Sandbox mode: what the child does before `exec`ing bubblewrap.
    sandbox: Option<SandboxChild>,
    /// Docker mode: where the container leaves its usage figures; removed with the launch.
    pub usage_dir: Option<tempfile::TempDir>,
}

/// The sandbox's pre-`exec` plan and the pipe holding its seccomp filter, kept open
/// until the child has inherited it.
#[derive(Debug)]
struct SandboxChild {
    plan: std::sync::Arc<ChildPlan>,
    _filter: std::os::fd::OwnedFd,
}

/// Whether the worker runs as root, and so drops its sandboxed commands to the sandbox uid.
pub(crate) fn worker_is_root() -> bool {
    // SAFETY: geteuid has no failure mode and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

impl Launch {
    pub(crate) fn build(spec: &CommandSpec) -> Result<Launch, SandboxError> {
        Ok(match &spec.isolation {
            Isolation::LocalProcess => Launch {
                line: isolation::local_command_line(&spec.command, env::child_env_from_process(&spec.env)),
                cleanup: None,
                sandbox: None,
                usage_dir: None,
            },
            Isolation::Sandbox { network, policy } => sandbox_launch(spec, *network, policy)?,
            Isolation::Docker { image, network, cpu_percent, volumes } => {
                let name = format!("agent-runner-{}", uuid::Uuid::new_v4().simple());
                // SAFETY: getuid/getgid have no failure mode and touch no memory.
                let user = unsafe { format!("{}:{}", libc::getuid(), libc::getgid()) };
                // No directory (a full temporary file system) only costs the figures.
                let usage_dir = tempfile::Builder::new().prefix("agent-runner-usage-").tempdir().ok();
                let run = DockerRun {
                    image,
                    network: *network,
                    container_name: &name,
                    user: &user,
                    limits: spec.limits,
                    cpu_percent: *cpu_percent,
                    volumes,
                    usage_dir: usage_dir.as_ref().map(|d| d.path()),
                };
                let line = isolation::docker_command_line(&spec.command, &spec.cwd, &run, &spec.env, |n| {
                    std::env::var_os(n)
                });
                let cleanup = Some(isolation::docker_cleanup_command_line(&name, &line.env));
                Launch { line, cleanup, sandbox: None, usage_dir }
            }
        })
    }
}

/// The bubblewrap command line and the child's plan: staged sources and a uid change for a
/// root worker, the real paths otherwise.
fn sandbox_launch(spec: &CommandSpec, network: bool, policy: &SandboxPolicy) -> Result<Launch, SandboxError> {
    if let Some(missing) = policy.read_only_paths.iter().find(|p| !p.exists()) {
        return Err(SandboxError::MissingReadOnlyPath { path: missing.clone() });
    }
    let filter = seccomp_pipe()?;
    let seccomp_fd = std::os::fd::AsRawFd::as_raw_fd(&filter);
    let (plan, workspace_source, read_only) = if worker_is_root() {
        let (plan, staged) =
            ChildPlan::staged(&spec.cwd, &policy.read_only_paths, policy.uid, policy.gid, seccomp_fd)
                .map_err(|e| SandboxError::Unavailable(e.to_string()))?;
        (plan, staged.workspace, staged.read_only)
    } else {
        let same_place = policy.read_only_paths.iter().map(|p| (p.clone(), p.clone())).collect();
        (ChildPlan::unprivileged(seccomp_fd), spec.cwd.clone(), same_place)
    };
    let mut layout = SandboxLayout {
        workdir: spec.cwd.clone(),
        network,
        system: sandbox::system_entries(),
        workspace_source,
        has_git: spec.cwd.join(".git").exists(),
        read_only,
        hidden: Vec::new(),
        seccomp_fd,
    };
    layout.hidden = isolation::hidden_files()
        .into_iter()
        .filter(|f| f.is_file() && sandbox::is_in_view(f, &layout))
        .collect();
    let line = sandbox::sandbox_command_line(&spec.command, &layout, &env::child_env_from_process(&spec.env));
    let sandbox = Some(SandboxChild { plan: std::sync::Arc::new(plan), _filter: filter });
    Ok(Launch { line, cleanup: None, sandbox, usage_dir: None })
}

/// A pipe holding the compiled seccomp filter, its write end closed, so bubblewrap reads
/// the filter to the end. The filter is far below a pipe's capacity.
fn seccomp_pipe() -> Result<std::os::fd::OwnedFd, SandboxError> {
    use std::io::Write;
    let (reader, mut writer) = std::io::pipe().map_err(SandboxError::Filter)?;
    writer.write_all(&sandbox::seccomp::compiled_filter()).map_err(SandboxError::Filter)?;
    drop(writer);
    Ok(reader.into())
}

/// Starts the command line in its own process group with one pipe for both output streams.
pub(crate) fn spawn(
    launch: &Launch,
    spec: &CommandSpec,
) -> Result<(Child, tokio::net::unix::pipe::Receiver), ProcessError> {
    let (reader, writer) = std::io::pipe().map_err(ProcessError::Pipe)?;
    let writer_for_stderr = writer.try_clone().map_err(ProcessError::Pipe)?;
    let line = &launch.line;
    let mut cmd = Command::new(&line.program);
    cmd.args(&line.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(&line.env)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_for_stderr)
        .kill_on_drop(true);
    // Docker enforces limits in the container; rlimits on the CLI would only limit the CLI.
    let plan = match spec.isolation {
        Isolation::Docker { .. } => RlimitPlan::new(&Default::default()),
        _ => RlimitPlan::new(&spec.limits),
    };
    // A sandboxed command's child stages its view and drops to the sandbox uid itself.
    let sandbox_plan = launch.sandbox.as_ref().map(|s| std::sync::Arc::clone(&s.plan));
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe syscalls (setrlimit, prctl, capset, mount, setresuid) on values
    // computed beforehand.
    unsafe {
        cmd.pre_exec(move || {
            new_session()?;
            plan.apply()?;
            match &sandbox_plan {
                Some(sandbox) => sandbox.enter(),
                None => limits::drop_privileges(),
            }
        });
    }
    let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: line.program.to_string_lossy().into_owned(),
        cwd: spec.cwd.clone(),
        source,
    })?;
    // The command still owns our copies of the write end; until they close, EOF never comes.
    drop(cmd);
    let reader =
        tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).map_err(ProcessError::Pipe)?;
    Ok((child, reader))
}

/// Runs in the forked child before `exec`: a new session, which is also a new process
/// group whose id is the child's pid (what the kill paths rely on). A session has no
/// controlling terminal, so a command cannot push keystrokes into the operator's terminal
/// (`TIOCSTI`); and where the kernel groups scheduling by session (autogroup), a fork
/// bomb competes with the worker as one group, so the watchdog keeps getting CPU.
fn new_session() -> std::io::Result<()> {
    // SAFETY: setsid takes no arguments; async-signal-safe.
    if unsafe { libc::setsid() } == -1 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

/// Removes a docker run's container when the run is stopped early or abandoned: killing
/// the CLI does not stop the container it started.
pub(crate) struct ContainerGuard {
    cleanup: Option<CommandLine>,
}

impl ContainerGuard {
    pub(crate) fn new(launch: &Launch) -> Self {
        ContainerGuard { cleanup: launch.cleanup.clone() }
    }

    /// The command ended on its own; `--rm` already removed the container.
    pub(crate) fn disarm(&mut self) {
        self.cleanup = None;
    }

    /// Removes the container now and waits (bounded) for the engine to confirm.
    pub(crate) async fn remove(&mut self) {
        let Some(line) = self.cleanup.take() else { return };
        let removal = removal_command(&line).status();
        match tokio::time::timeout(CONTAINER_REMOVAL_TIMEOUT, removal).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot remove the step's container"),
            Err(_) => tracing::warn!("removing the step's container did not finish in time"),
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        // An abandoned run: fire and forget; tokio reaps the CLI in the background.
        if let Some(line) = self.cleanup.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = removal_command(&line).spawn();
        }
    }
}

fn removal_command(line: &CommandLine) -> Command {
    let mut cmd = Command::new(&line.program);
    cmd.args(&line.args)
        .env_clear()
        .envs(&line.env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}
