//! Staging the task's work from one `git status` of the working tree.
//!
//! The commit used to walk the tree four times (a size check, `add_all`, `update_all`,
//! and the special-file sweep); one status gives everything the commit needs: the paths
//! to add, the tracked paths gone, and what is left unstaged (ignored files and build
//! caches), which the next task on the slot cleans without walking the tree again (see
//! [`super::slot_state`]). The index is kept as it is when it already matches HEAD, so
//! its stat cache spares the status from hashing unchanged files.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use git2::{Index, Repository, Status, StatusOptions, StatusShow, Tree};

/// What one status of the working tree found, relative to the workdir.
#[derive(Debug, Default)]
pub(crate) struct WorkingTreeChanges {
    /// New or modified paths git would stage: files, symlinks, and nested repositories
    /// (staged as a link to their HEAD, as `git add` does).
    pub present: Vec<PathBuf>,
    /// Tracked paths gone from the working tree (or replaced by a directory).
    pub gone: Vec<PathBuf>,
    /// Untracked or ignored paths that are never staged: ignored files and directories
    /// (reported whole) and untracked build caches.
    pub unstaged_untracked: Vec<PathBuf>,
    /// Tracked build caches the task changed: the commit keeps HEAD's version of them.
    pub unstaged_tracked: Vec<PathBuf>,
}

/// Makes the index hold exactly `head` (nothing planted in `.git/index` survives), keeping
/// the index and its stat cache when it already does.
pub(crate) fn reset_index_to(index: &mut Index, head: Option<&Tree<'_>>) -> Result<(), git2::Error> {
    match head {
        Some(tree) => {
            let matches = !index.has_conflicts() && index.write_tree().is_ok_and(|id| id == tree.id());
            if !matches {
                index.read_tree(tree)?;
            }
        }
        // An unborn HEAD: start from nothing.
        None => index.clear()?,
    }
    Ok(())
}

/// One status of the working tree against the index (untracked directories recursed,
/// ignored ones reported whole, submodules and renames left out).
pub(crate) fn working_tree_changes(
    repo: &Repository,
    workdir: &Path,
) -> Result<WorkingTreeChanges, git2::Error> {
    crate::metrics::record_worktree_scan();
    let mut options = StatusOptions::new();
    options
        .show(StatusShow::Workdir)
        .include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(true)
        .recurse_ignored_dirs(false)
        .exclude_submodules(true)
        .renames_index_to_workdir(false);
    let statuses = repo.statuses(Some(&mut options))?;
    let mut changes = WorkingTreeChanges::default();
    for entry in statuses.iter() {
        let raw = entry.path_bytes();
        let relative = PathBuf::from(OsStr::from_bytes(raw.strip_suffix(b"/").unwrap_or(raw)));
        // libgit2 reports paths relative to the workdir; refuse anything that is not.
        if !super::workspace::is_plain_relative(&relative) {
            continue;
        }
        let status = entry.status();
        let cache = super::is_build_cache(&relative);
        if status.contains(Status::IGNORED) {
            changes.unstaged_untracked.push(relative);
        } else if status.contains(Status::WT_NEW) {
            if cache { changes.unstaged_untracked.push(relative) } else { changes.present.push(relative) }
        } else if cache {
            changes.unstaged_tracked.push(relative);
        } else if status.contains(Status::WT_DELETED) || is_plain_dir(&workdir.join(&relative)) {
            // A tracked file replaced by a directory: the file is gone, the directory's
            // files are reported as new on their own.
            changes.gone.push(relative);
        } else if status.intersects(Status::WT_MODIFIED | Status::WT_TYPECHANGE) {
            changes.present.push(relative);
        }
    }
    Ok(changes)
}

/// A directory that is not a nested repository (which git stages as a link).
fn is_plain_dir(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|meta| meta.is_dir()) && path.join(".git").symlink_metadata().is_err()
}

/// Stages `changes` into `index`.
pub(crate) fn stage(index: &mut Index, changes: &WorkingTreeChanges) -> Result<(), git2::Error> {
    for path in &changes.present {
        index.add_path(path)?;
    }
    for path in &changes.gone {
        index.remove_path(path)?;
    }
    Ok(())
}
