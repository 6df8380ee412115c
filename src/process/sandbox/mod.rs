//! The `sandbox` execution mode: a command under bubblewrap, as an unprivileged uid in a
//! user namespace, seeing a file-system view built for the job, under a seccomp filter.
//!
//! What the command sees (and nothing else of the host):
//! - the system's executables, libraries and `/etc`, read-only (`/usr`, and `/bin`, `/lib`,
//!   ... as they exist: directories bound, merged-/usr symlinks recreated);
//! - the operator's `sandbox.read_only_paths` (toolchains outside `/usr`), read-only;
//! - the workspace, writable, its `.git` read-only again;
//! - a private `/tmp` (also `HOME`), a minimal `/dev`, its own `/proc`;
//! - no host `/run`, `/var`, `/tmp`, `/root`, `$HOME` or other slots, so no host Unix
//!   socket file is even addressable.
//!
//! Layers, any one of which stops the socket attacks of issue 12:
//! 1. the view above (socket files are not in it);
//! 2. the uid: a root worker drops to `sandbox.uid`/`sandbox.gid` before bubblewrap runs,
//!    so the user namespace bubblewrap creates maps to an unprivileged host uid and file
//!    permissions are that uid's, not root's (`/etc/shadow`, `/etc/ssl/private` stay
//!    closed); no capabilities, `no_new_privs`, no nested user namespaces;
//! 3. [`seccomp`]: `socket(AF_UNIX)` refused (abstract sockets live in the network
//!    namespace, which a `network: true` step shares with the host), and ptrace, mounts,
//!    keyrings, bpf, io_uring and namespace changes refused.
//!
//! A root worker cannot let bubblewrap bind the workspace by its path: bubblewrap runs as
//! the sandbox uid, which may not traverse the directories above it (a `0700` pool or
//! home). So the child, still root and in a private mount namespace of its own, binds
//! each source under [`STAGING_DIR`] first ([`child`]); bubblewrap binds from there.

pub(crate) mod child;
mod preflight;
pub mod seccomp;
mod workspace;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::isolation::{BWRAP_PROGRAM, CommandLine};
pub use child::MAX_READ_ONLY_PATHS;
pub use preflight::sandbox_preflight;
pub use workspace::{WorkspaceLease, hand_workspace_to, lend_workspace_to};

/// `nobody:nogroup` on Debian and most distributions: a uid that owns nothing else.
pub const DEFAULT_SANDBOX_UID: u32 = 65534;
/// See [`DEFAULT_SANDBOX_UID`].
pub const DEFAULT_SANDBOX_GID: u32 = 65534;

/// The command's `HOME`: inside the private `/tmp`, so tools that write caches and dot
/// files there (`~/.cache`, `~/.gitconfig`) write into the sandbox, not the host.
pub const SANDBOX_HOME: &str = "/tmp/home";

/// Where a root worker's child stages the sources of the view, in its own mount
/// namespace (a tmpfs is mounted over it there; the host's `/run` is untouched). `/run`
/// exists on every system the worker runs on, belongs to root, and nothing under it is
/// part of the view.
pub const STAGING_DIR: &str = "/run";

/// Top-level system paths shown read-only when they exist. Directories are bound;
/// symlinks (merged /usr: `/bin -> usr/bin`) are recreated. `/opt`, `/srv` and the like
/// come in only through `sandbox.read_only_paths`.
pub const SYSTEM_PATHS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"];

/// How the operator configured the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// The uid a root worker's commands run as (`sandbox.uid`); ignored when the worker
    /// is not root (its commands run as the worker's uid).
    pub uid: u32,
    /// The gid, likewise (`sandbox.gid`).
    pub gid: u32,
    /// Absolute paths shown read-only at the same place (`sandbox.read_only_paths`).
    pub read_only_paths: Vec<PathBuf>,
}

impl Default for SandboxPolicy {
    fn default() -> Self {
        SandboxPolicy { uid: DEFAULT_SANDBOX_UID, gid: DEFAULT_SANDBOX_GID, read_only_paths: Vec::new() }
    }
}

/// A sandbox could not be set up for a command.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot give the workspace {path} to the sandbox uid: {source}")]
    Workspace { path: PathBuf, source: std::io::Error },
    #[error("sandbox.read_only_paths: {path} does not exist")]
    MissingReadOnlyPath { path: PathBuf },
    #[error("cannot pass the seccomp filter to bubblewrap: {0}")]
    Filter(#[source] std::io::Error),
    #[error("the sandbox does not work here: {0}")]
    Unavailable(String),
}

/// One top-level system path and how it appears in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemEntry {
    /// Bound read-only at the same path.
    Directory(PathBuf),
    /// Recreated as a symlink with this target.
    Symlink { path: PathBuf, target: PathBuf },
}

/// [`SYSTEM_PATHS`] as they exist on this host.
pub fn system_entries() -> Vec<SystemEntry> {
    SYSTEM_PATHS
        .iter()
        .map(PathBuf::from)
        .filter_map(|path| {
            let metadata = std::fs::symlink_metadata(&path).ok()?;
            if metadata.file_type().is_symlink() {
                let target = std::fs::read_link(&path).ok()?;
                Some(SystemEntry::Symlink { path, target })
            } else if metadata.is_dir() {
                Some(SystemEntry::Directory(path))
            } else {
                None
            }
        })
        .collect()
}

/// Everything the bubblewrap command line is made of, decided before it is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxLayout {
    /// The workspace, at the same path inside.
    pub workdir: PathBuf,
    /// Share the host's network namespace (the step opted in).
    pub network: bool,
    pub system: Vec<SystemEntry>,
    /// Where bubblewrap finds the workspace: the workspace itself, or its staged bind.
    pub workspace_source: PathBuf,
    /// Whether the workspace has a `.git` to bind read-only.
    pub has_git: bool,
    /// `(source as bubblewrap finds it, destination)` for each read-only path.
    pub read_only: Vec<(PathBuf, PathBuf)>,
    /// Secret files inside the view, each covered by `/dev/null` (bound `nodev`, so
    /// reading it fails).
    pub hidden: Vec<PathBuf>,
    /// The descriptor bubblewrap reads the seccomp filter from.
    pub seccomp_fd: i32,
}

/// bubblewrap around `sh -c <command>`; `child_env` (already scrubbed) is set inside
/// with `--setenv` after `--clearenv`, with `TMPDIR` the private `/tmp` and `HOME` in it.
pub fn sandbox_command_line(
    command: &str,
    layout: &SandboxLayout,
    child_env: &BTreeMap<OsString, OsString>,
) -> CommandLine {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&OsStr]| args.extend(items.iter().map(|s| s.to_os_string()));
    push(&[s("--die-with-parent"), s("--new-session"), s("--cap-drop"), s("ALL")]);
    push(&[s("--unshare-user"), s("--disable-userns"), s("--unshare-pid"), s("--unshare-ipc")]);
    // The command's shell is the namespace's init, with no init of bubblewrap's between:
    // bubblewrap then waits for the shell itself before it exits, so the shell's resource
    // usage (and that of everything it reaped, orphans included) reaches bubblewrap's
    // account, which the worker reads (`process::usage`). With an init of its own,
    // bubblewrap exits on the init's word and nobody waits for it: the figures were lost.
    // `--die-with-parent` still kills the whole namespace when bubblewrap is killed.
    push(&[s("--as-pid-1")]);
    push(&[s("--unshare-uts"), s("--unshare-cgroup-try")]);
    if !layout.network {
        push(&[s("--unshare-net")]);
    }
    for entry in &layout.system {
        match entry {
            SystemEntry::Directory(dir) => push(&[s("--ro-bind"), dir.as_os_str(), dir.as_os_str()]),
            SystemEntry::Symlink { path, target } => {
                push(&[s("--symlink"), target.as_os_str(), path.as_os_str()])
            }
        }
    }
    // Order matters: later mounts go on top of earlier ones. /tmp is made before the
    // workspace and the read-only paths are bound, so those under /tmp stay visible.
    push(&[s("--dev"), s("/dev"), s("--proc"), s("/proc"), s("--tmpfs"), s("/tmp")]);
    push(&[s("--dir"), s(SANDBOX_HOME)]);
    for (source, destination) in &layout.read_only {
        push(&[s("--ro-bind"), source.as_os_str(), destination.as_os_str()]);
    }
    let dir = layout.workdir.as_os_str();
    push(&[s("--bind"), layout.workspace_source.as_os_str(), dir]);
    if layout.has_git {
        let source = layout.workspace_source.join(".git");
        let destination = layout.workdir.join(".git");
        push(&[s("--ro-bind"), source.as_os_str(), destination.as_os_str()]);
    }
    for secret in &layout.hidden {
        push(&[s("--ro-bind"), s("/dev/null"), secret.as_os_str()]);
    }
    push(&[s("--chdir"), dir, s("--clearenv")]);
    let mut inside = child_env.clone();
    inside.insert("TMPDIR".into(), "/tmp".into());
    inside.insert("HOME".into(), SANDBOX_HOME.into());
    for (name, value) in &inside {
        push(&[s("--setenv"), name, value]);
    }
    let seccomp_fd = OsString::from(layout.seccomp_fd.to_string());
    push(&[s("--seccomp"), &seccomp_fd]);
    push(&[s("--"), s("sh"), s("-c"), s(command)]);
    CommandLine { program: BWRAP_PROGRAM.into(), args, env: inside }
}

fn s(text: &str) -> &OsStr {
    OsStr::new(text)
}

/// Whether `path` is inside what the view shows, so a secret there must be covered.
pub(crate) fn is_in_view(path: &Path, layout: &SandboxLayout) -> bool {
    let system = layout.system.iter().filter_map(|e| match e {
        SystemEntry::Directory(dir) => Some(dir.as_path()),
        SystemEntry::Symlink { .. } => None,
    });
    let read_only = layout.read_only.iter().map(|(_, destination)| destination.as_path());
    system.chain(read_only).chain([layout.workdir.as_path()]).any(|root| path.starts_with(root))
}
