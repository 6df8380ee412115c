//! Giving the workspace to the sandbox uid, so a command running as that uid can write
//! what the worker (root) checked out and what the model's edits wrote.
//!
//! Ownership, not permissions: a `chmod o+w` would open the tree to every user of the
//! host, and ACLs are not on every file system. The worker, as root, still reads, resets
//! and deletes the tree afterwards. libgit2 (like git) refuses a repository whose work
//! tree or git directory another user owns, and looks at those two directories only: so
//! `.git` stays root's (it is bound read-only anyway) and the work tree's top directory
//! goes back to the worker when the command ends ([`WorkspaceLease`]).
//!
//! The walk never follows a symlink (`lchown`, `symlink_metadata`), so a link planted by an
//! earlier step cannot hand a file outside the workspace to the sandbox. A file with more
//! than one hard link and another owner is left alone: one of its other names may be
//! outside the workspace.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::SandboxError;

/// The workspace's top directory lent to the sandbox uid for one command; dropping the
/// lease gives it back to the worker, whether the command ended, failed to start or was
/// abandoned.
#[derive(Debug)]
pub struct WorkspaceLease {
    workdir: std::path::PathBuf,
}

impl Drop for WorkspaceLease {
    fn drop(&mut self) {
        // SAFETY: geteuid/getegid have no failure mode and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if let Err(error) = std::os::unix::fs::lchown(&self.workdir, Some(uid), Some(gid)) {
            tracing::warn!(%error, workdir = %self.workdir.display(), "cannot take the workspace back from the sandbox uid");
        }
    }
}

/// Lends `workdir` to `uid:gid` for one command: see [`hand_workspace_to`].
pub fn lend_workspace_to(workdir: &Path, uid: u32, gid: u32) -> Result<WorkspaceLease, SandboxError> {
    let lease = WorkspaceLease { workdir: workdir.to_path_buf() };
    hand_workspace_to(workdir, uid, gid)?;
    Ok(lease)
}

/// Makes `uid:gid` the owner of `workdir` and everything in it except `.git`, changing
/// only entries owned by someone else (a warm workspace costs one `lstat` per entry).
pub fn hand_workspace_to(workdir: &Path, uid: u32, gid: u32) -> Result<(), SandboxError> {
    let fail = |path: &Path, source: io::Error| SandboxError::Workspace { path: path.to_path_buf(), source };
    crate::metrics::record_worktree_scan();
    let mut pending = vec![workdir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        give(&dir, uid, gid).map_err(|e| fail(&dir, e))?;
        for entry in std::fs::read_dir(&dir).map_err(|e| fail(&dir, e))? {
            let entry = entry.map_err(|e| fail(&dir, e))?;
            let path = entry.path();
            if dir == workdir && entry.file_name() == ".git" {
                continue;
            }
            let metadata = std::fs::symlink_metadata(&path).map_err(|e| fail(&path, e))?;
            if metadata.is_dir() {
                pending.push(path);
            } else if metadata.nlink() <= 1 || metadata.is_symlink() {
                give(&path, uid, gid).map_err(|e| fail(&path, e))?;
            }
        }
    }
    Ok(())
}

/// `lchown` when the owner differs.
fn give(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let metadata = std::fs::symlink_metadata(path)?;
    if metadata.uid() == uid && metadata.gid() == gid {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_changes_owner_but_git_and_symlink_targets_do_not() {
        // SAFETY: geteuid has no failure mode.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: changing owners needs root");
            return;
        }
        let outside = tempfile::NamedTempFile::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path();
        std::fs::create_dir_all(ws.join("src/deep")).unwrap();
        std::fs::create_dir_all(ws.join(".git/objects")).unwrap();
        std::fs::write(ws.join("src/deep/lib.rs"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), ws.join("link")).unwrap();
        hand_workspace_to(ws, 65534, 65534).unwrap();
        let owner = |p: &Path| std::fs::symlink_metadata(p).map(|m| (m.uid(), m.gid())).unwrap();
        for path in [ws.to_path_buf(), ws.join("src"), ws.join("src/deep/lib.rs"), ws.join("link")] {
            assert_eq!(owner(&path), (65534, 65534), "{}", path.display());
        }
        assert_eq!(owner(&ws.join(".git")), (0, 0));
        assert_eq!(owner(&ws.join(".git/objects")), (0, 0));
        assert_eq!(owner(outside.path()), (0, 0));
    }
}
