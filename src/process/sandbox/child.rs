//! What the forked child does before it executes bubblewrap, and what is computed for it
//! beforehand (the child only makes system calls on prepared values: no allocation).
//!
//! A root worker's child:
//! 1. enters a mount namespace of its own, made private so nothing propagates to the host;
//! 2. opens the workspace and each read-only path (`O_PATH`; root traverses any
//!    directory), mounts a tmpfs over [`super::STAGING_DIR`] and binds each source under
//!    it through `/proc/self/fd/N`, so a source under `/run` itself is still reached once
//!    the tmpfs covers it (descriptors opened before `unshare` would name mounts of the
//!    host's namespace, which `mount` refuses to bind);
//! 3. drops to the sandbox uid and gid (no supplementary groups; the kernel clears every
//!    capability on that change, and the bounding set is emptied first);
//!
//! then, as any worker's child, sets `no_new_privs` and keeps the seccomp filter's
//! descriptor open across `exec` for bubblewrap. bubblewrap, unprivileged now, creates the
//! user namespace, which maps the command's uid to the sandbox uid on the host.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::STAGING_DIR;

/// The staged workspace, under [`STAGING_DIR`].
const STAGED_WORKSPACE: &str = "workspace";
/// Mount options of the staging tmpfs: traversable by the sandbox uid, small (it holds
/// only mount points).
const STAGING_TMPFS_OPTIONS: &str = "mode=0755,size=64k";
/// The most read-only paths a sandbox takes: the child, which may not allocate, keeps
/// one descriptor per source in a fixed array. Far more than a few toolchains need.
pub const MAX_READ_ONLY_PATHS: usize = 32;
/// The workspace and the read-only paths.
const MAX_STAGED_SOURCES: usize = MAX_READ_ONLY_PATHS + 1;
/// `/proc/self/fd/` and the ten digits of the largest descriptor, NUL-terminated.
const PROC_FD_PATH_BYTES: usize = 32;
/// Highest capability number any kernel we run on defines; unknown numbers fail harmlessly.
const LAST_CAPABILITY: libc::c_ulong = 63;

/// One source bound under the staging directory.
#[derive(Debug)]
struct StagedBind {
    source: CString,
    mount_point: CString,
    is_dir: bool,
}

/// Root only: the staging binds and the uid to become.
#[derive(Debug)]
struct Staging {
    dir: CString,
    tmpfs_options: CString,
    binds: Vec<StagedBind>,
    uid: libc::uid_t,
    gid: libc::gid_t,
}

/// Everything the child does before `exec`, prepared.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    staging: Option<Staging>,
    seccomp_fd: RawFd,
}

/// Where bubblewrap finds the workspace and the read-only paths once staged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StagedSources {
    pub workspace: PathBuf,
    /// `(staged source, destination)`, in the order given.
    pub read_only: Vec<(PathBuf, PathBuf)>,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("a path holds a NUL byte"))
}

impl StagedBind {
    fn new(source: &Path, mount_point: &Path) -> io::Result<StagedBind> {
        Ok(StagedBind { source: c_path(source)?, mount_point: c_path(mount_point)?, is_dir: source.is_dir() })
    }
}

/// `/proc/self/fd/<fd>` as a NUL-terminated string, without allocating.
fn proc_fd_path(fd: RawFd) -> [u8; PROC_FD_PATH_BYTES] {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let mut path = [0u8; PROC_FD_PATH_BYTES];
    path[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let (mut rest, mut count) = (fd.unsigned_abs(), 0);
    loop {
        digits[count] = b'0' + (rest % 10) as u8;
        count += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for (slot, digit) in path[PREFIX.len()..].iter_mut().zip(digits[..count].iter().rev()) {
        *slot = *digit;
    }
    path
}

impl ChildPlan {
    /// A worker that is not root: bubblewrap binds the real paths.
    pub(crate) fn unprivileged(seccomp_fd: RawFd) -> ChildPlan {
        ChildPlan { staging: None, seccomp_fd }
    }

    /// A root worker: stage `workdir` and `read_only` and become `uid:gid`.
    pub(crate) fn staged(
        workdir: &Path,
        read_only: &[PathBuf],
        uid: u32,
        gid: u32,
        seccomp_fd: RawFd,
    ) -> io::Result<(ChildPlan, StagedSources)> {
        if read_only.len() > MAX_READ_ONLY_PATHS {
            return Err(io::Error::other(format!("more than {MAX_READ_ONLY_PATHS} read-only paths")));
        }
        let dir = Path::new(STAGING_DIR);
        let mut binds = Vec::with_capacity(read_only.len() + 1);
        let workspace = dir.join(STAGED_WORKSPACE);
        binds.push(StagedBind::new(workdir, &workspace)?);
        let mut staged_read_only = Vec::with_capacity(read_only.len());
        for (index, path) in read_only.iter().enumerate() {
            let mount_point = dir.join(format!("read-only-{index}"));
            binds.push(StagedBind::new(path, &mount_point)?);
            staged_read_only.push((mount_point, path.clone()));
        }
        let staging = Staging {
            dir: c_path(dir)?,
            tmpfs_options: CString::new(STAGING_TMPFS_OPTIONS).map_err(io::Error::other)?,
            binds,
            uid,
            gid,
        };
        Ok((
            ChildPlan { staging: Some(staging), seccomp_fd },
            StagedSources { workspace, read_only: staged_read_only },
        ))
    }

    /// Runs in the forked child before `exec`: only async-signal-safe system calls.
    pub(crate) fn enter(&self) -> io::Result<()> {
        // SAFETY: fcntl on a descriptor we own, integers only.
        check(unsafe { libc::fcntl(self.seccomp_fd, libc::F_SETFD, 0) })?;
        if let Some(staging) = &self.staging {
            staging.stage()?;
            staging.become_sandbox_user()?;
        }
        super::super::limits::forbid_new_privileges()
    }
}

impl Staging {
    fn stage(&self) -> io::Result<()> {
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: every pointer is a NUL-terminated string owned by `self` or null, as
        // mount(2) allows; unshare and mkdir take plain values. All async-signal-safe.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            let root = c"/";
            check(libc::mount(null, root.as_ptr(), null, libc::MS_REC | libc::MS_PRIVATE, null.cast()))?;
            let mut sources: [RawFd; MAX_STAGED_SOURCES] = [-1; MAX_STAGED_SOURCES];
            for (slot, bind) in sources.iter_mut().zip(&self.binds) {
                *slot = libc::open(bind.source.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
                check(*slot)?;
            }
            let tmpfs = c"tmpfs";
            check(libc::mount(
                tmpfs.as_ptr(),
                self.dir.as_ptr(),
                tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                self.tmpfs_options.as_ptr().cast(),
            ))?;
            for (bind, source) in self.binds.iter().zip(sources) {
                if bind.is_dir {
                    check(libc::mkdir(bind.mount_point.as_ptr(), 0o755))?;
                } else {
                    let fd = libc::open(bind.mount_point.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
                    check(fd)?;
                    libc::close(fd);
                }
                let source_path = proc_fd_path(source);
                check(libc::mount(
                    source_path.as_ptr().cast(),
                    bind.mount_point.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    null.cast(),
                ))?;
                libc::close(source);
            }
        }
        Ok(())
    }

    /// The bounding set first (it needs `CAP_SETPCAP`), then groups, gid and uid: the
    /// change away from uid 0 clears the permitted, effective and ambient sets.
    fn become_sandbox_user(&self) -> io::Result<()> {
        // SAFETY: prctl, setgroups, setresgid and setresuid with integers and a null list.
        unsafe {
            for cap in 0..=LAST_CAPABILITY {
                // EINVAL past the kernel's last capability is expected and ignored.
                libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
            }
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(self.gid, self.gid, self.gid))?;
            check(libc::setresuid(self.uid, self.uid, self.uid))?;
        }
        Ok(())
    }
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_paths_are_spelled_without_allocating() {
        let text = |fd| {
            let path = proc_fd_path(fd);
            let end = path.iter().position(|b| *b == 0).unwrap();
            String::from_utf8(path[..end].to_vec()).unwrap()
        };
        assert_eq!(text(0), "/proc/self/fd/0");
        assert_eq!(text(7), "/proc/self/fd/7");
        assert_eq!(text(1048576), "/proc/self/fd/1048576");
        assert_eq!(text(i32::MAX), "/proc/self/fd/2147483647");
    }
}
