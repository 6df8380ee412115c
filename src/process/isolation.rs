//! Where a command runs: directly, under bubblewrap, or in a container. Each mode is
//! turned into a plain command line (program, arguments, environment) built as data, so
//! what a mode does can be read and unit-tested without running anything.
//!
//! - `LocalProcess`: `sh -c` as the worker's child; the limits and the scrubbed
//!   environment apply, the file system and the network are shared with the worker.
//! - `Sandbox`: bubblewrap as an unprivileged uid in a user namespace, a file-system view
//!   built for the job (system directories read-only, the working directory the one
//!   writable tree, its `.git` read-only again, a private `/tmp`), new PID, IPC and UTS
//!   namespaces, no capabilities, a seccomp filter, and no network unless the step opts
//!   in. Built in [`super::sandbox`].
//! - `Docker`: `docker run --rm` from the configured image (never pulled), the working
//!   directory mounted (its `.git` read-only), no network unless the step opts in,
//!   memory, CPU and process limits enforced by the engine, read-only root, no
//!   capabilities; the container reports its cgroup's usage as it ends.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use super::limits::ProcessLimits;
use super::sandbox::SandboxPolicy;

/// The bubblewrap executable (Debian/Ubuntu package `bubblewrap`).
pub const BWRAP_PROGRAM: &str = "bwrap";
/// The docker CLI; any engine with a compatible CLI (podman's `docker` shim) works.
pub const DOCKER_PROGRAM: &str = "docker";

/// Variables of the worker the docker CLI itself needs to reach the engine. They are the
/// CLI's, never the container's.
const DOCKER_CLIENT_ENV_VARS: &[&str] =
    &["DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"];

/// The docker CLI's own environment: the scrubbed allowlist plus what it needs to reach
/// the engine, from `parent`. Used for step containers and the start-up check alike.
pub fn docker_cli_env(parent: impl Fn(&str) -> Option<OsString>) -> BTreeMap<OsString, OsString> {
    super::env::INHERITED_ENV_VARS
        .iter()
        .chain(DOCKER_CLIENT_ENV_VARS)
        .filter_map(|name| parent(name).map(|v| (OsString::from(name), v)))
        .collect()
}

/// Variables passed into a container: only locale and terminal. The image decides `PATH`
/// and `HOME`; the host's values would point at directories the image does not have.
const CONTAINER_INHERITED_ENV_VARS: &[&str] = &["LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM"];

/// How a command is isolated from the worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Isolation {
    /// A child process of the worker.
    #[default]
    LocalProcess,
    /// Under bubblewrap.
    Sandbox {
        /// Share the host's network namespace (the step opted in).
        network: bool,
        /// The operator's uid, gid and read-only paths.
        policy: SandboxPolicy,
    },
    /// In a container from `image`.
    Docker {
        image: String,
        /// Use the engine's default bridge network (the step opted in).
        network: bool,
        /// `max_cpu_percent`: the engine can throttle a rate, which rlimits cannot.
        cpu_percent: Option<u32>,
        /// The operator's `docker_volumes`, mounted into every step container.
        volumes: Vec<crate::config::DockerVolume>,
    },
}

impl Isolation {
    /// `local-process`, `sandbox` or `docker`, as in the configuration.
    pub fn mode_name(&self) -> &'static str {
        match self {
            Isolation::LocalProcess => "local-process",
            Isolation::Sandbox { .. } => "sandbox",
            Isolation::Docker { .. } => "docker",
        }
    }
}

/// Files the sandbox covers with `/dev/null`: the worker's secret files (`GIT_TOKEN_FILE`
/// and the like). Most lie outside the sandbox's view anyway; one inside it (under `/etc`,
/// a read-only path or the workspace) would be readable without this. Process-wide, like
/// the secrets.
static HIDDEN_FILES: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Hides `path` from every sandboxed command started from now on.
pub fn hide_in_sandbox(path: &Path) {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if let Ok(mut hidden) = HIDDEN_FILES.lock()
        && !hidden.contains(&path)
    {
        hidden.push(path);
    }
}

pub(crate) fn hidden_files() -> Vec<std::path::PathBuf> {
    HIDDEN_FILES.lock().map(|h| h.clone()).unwrap_or_default()
}

/// A fully built command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// The complete environment of `program` (nothing else is inherited).
    pub env: BTreeMap<OsString, OsString>,
}

/// `sh -c <command>` with `env` as its whole environment.
pub fn local_command_line(command: &str, env: BTreeMap<OsString, OsString>) -> CommandLine {
    CommandLine { program: "sh".into(), args: vec!["-c".into(), command.into()], env }
}

/// What a docker command line needs besides the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerRun<'a> {
    pub image: &'a str,
    pub network: bool,
    /// `--name`, so the container can be removed even if the CLI is killed.
    pub container_name: &'a str,
    /// `uid:gid` the container runs as, so files it writes stay the worker's.
    pub user: &'a str,
    pub limits: ProcessLimits,
    /// `max_cpu_percent` (100 per core), enforced as a rate with `--cpus`.
    pub cpu_percent: Option<u32>,
    /// The operator's `docker_volumes`, read-only unless configured `rw`.
    pub volumes: &'a [crate::config::DockerVolume],
    /// A directory of the worker's, mounted at [`CONTAINER_USAGE_DIR`]: the step's
    /// container writes its cgroup's figures there as it ends ([`DOCKER_USAGE_SCRIPT`]).
    /// `None` runs the command as it is, unmeasured.
    pub usage_dir: Option<&'a Path>,
}

/// Where a step container finds the directory for its usage figures.
pub const CONTAINER_USAGE_DIR: &str = "/run/agent-runner-usage";

/// The file in that directory the figures are written to.
pub const CONTAINER_USAGE_FILE: &str = "usage";

/// Runs the step (`$1`) in a shell of its own, then, as the container's last act, copies
/// its cgroup's CPU and memory accounting (cgroup v2 or v1, whichever the engine gives
/// it) into the usage file, and exits with the step's status. The docker CLI's own usage
/// says nothing of what ran in the container; the container's cgroup holds exactly that.
pub const DOCKER_USAGE_SCRIPT: &str = r#"sh -c "$1"; status=$?
for f in /sys/fs/cgroup/cpu.stat /sys/fs/cgroup/memory.peak /sys/fs/cgroup/cpuacct/cpuacct.stat /sys/fs/cgroup/cpuacct/cpuacct.usage /sys/fs/cgroup/memory/memory.max_usage_in_bytes; do
  [ -r "$f" ] && { echo "== $f"; cat "$f"; }
done 2>/dev/null >/run/agent-runner-usage/usage
exit $status"#;

/// `docker run` for `sh -c <command>` in `workdir`, mounted at the same path. `step_env`
/// is the step's own variables; the container gets those plus locale and terminal.
pub fn docker_command_line(
    command: &str,
    workdir: &Path,
    run: &DockerRun<'_>,
    step_env: &BTreeMap<String, String>,
    parent: impl Fn(&str) -> Option<OsString>,
) -> CommandLine {
    // `--pull never`: the image is the operator's, made or loaded beforehand; a missing
    // one is an infrastructure failure now, not a registry download mid-task.
    let mut args: Vec<OsString> =
        ["run", "--rm", "--init", "--pull", "never", "--name", run.container_name].map(OsString::from).into();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["--network", if run.network { "bridge" } else { "none" }]);
    push(&["--user", run.user, "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]);
    push(&["--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev", "--env", "TMPDIR=/tmp"]);
    if let Some(mb) = run.limits.max_memory_mb {
        // Equal memory and memory+swap: no swap to hide in.
        push(&["--memory", &format!("{mb}m"), "--memory-swap", &format!("{mb}m")]);
    }
    if let Some(percent) = run.cpu_percent {
        push(&["--cpus", &format!("{}.{:02}", percent / 100, percent % 100)]);
    }
    if let Some(max) = run.limits.max_processes {
        push(&["--pids-limit", &max.to_string()]);
    }
    if let Some(seconds) = run.limits.cpu_seconds {
        push(&["--ulimit", &format!("cpu={seconds}:{}", seconds + 1)]);
    }
    let dir = workdir.display().to_string();
    push(&["--volume", &format!("{dir}:{dir}:rw"), "--workdir", &dir]);
    if workdir.join(".git").exists() {
        push(&["--volume", &format!("{dir}/.git:{dir}/.git:ro")]);
    }
    for volume in run.volumes {
        push(&["--volume", &volume.volume_argument()]);
    }
    if let Some(usage_dir) = run.usage_dir {
        push(&["--volume", &format!("{}:{CONTAINER_USAGE_DIR}:rw", usage_dir.display())]);
    }
    let mut container_env: BTreeMap<String, String> = CONTAINER_INHERITED_ENV_VARS
        .iter()
        .filter_map(|name| parent(name).map(|v| (name.to_string(), v.to_string_lossy().into_owned())))
        .collect();
    container_env.extend(step_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (name, value) in &container_env {
        push(&["--env", &format!("{name}={value}")]);
    }
    match run.usage_dir {
        Some(_) => push(&["--", run.image, "sh", "-c", DOCKER_USAGE_SCRIPT, "agent-runner-step", command]),
        None => push(&["--", run.image, "sh", "-c", command]),
    }
    let env = docker_cli_env(parent);
    CommandLine { program: DOCKER_PROGRAM.into(), args, env }
}

/// `docker rm --force <name>`: stops a container whose CLI was killed (killing the CLI
/// does not stop the container).
/// `env` is the run's CLI environment (it says how to reach the engine).
pub fn docker_cleanup_command_line(container_name: &str, env: &BTreeMap<OsString, OsString>) -> CommandLine {
    CommandLine {
        program: DOCKER_PROGRAM.into(),
        args: ["rm", "--force", container_name].map(OsString::from).into(),
        env: env.clone(),
    }
}
