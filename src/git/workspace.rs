//! Bringing a slot to a pristine state for one task: fetch, hard reset to the remote base
//! branch, remove every untracked and ignored file and every FIFO, socket and device, and
//! create the task branch.
//!
//! A reused slot holds whatever the previous task left (edits, build output, a half-done
//! merge, even a rewritten `.git/config`), so nothing in it is trusted: origin is pinned
//! back to the task's URL and the tree is forced to the fetched base commit. The one
//! shortcut: when this process's own commit was the last thing to touch the slot, what
//! it left is known ([`super::slot_state`]) and the reset rewrites only that
//! ([`super::slot_reset`]) instead of walking the whole tree three times.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use git2::build::CheckoutBuilder;
use git2::{
    AutotagOption, ErrorCode, FetchOptions, FetchPrune, Reference, Repository, ResetType, Status,
    StatusOptions,
};

use super::credentials::GitRemote;
use super::error::GitError;

/// The refspec fetching one remote branch into its tracking ref, overwriting it even on
/// non-fast-forward (the remote is the truth). Only the base and the task's own branch
/// (what an earlier attempt may have pushed) are fetched: a remote accumulates a branch
/// per task, and fetching them all would make every task slower than the last.
fn tracking_refspec(branch: &str) -> String {
    format!("+refs/heads/{branch}:refs/remotes/origin/{branch}")
}

/// A slot ready for the implementation step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedWorkspace {
    /// Hex id of the base commit the task branch starts from.
    pub base_commit: String,
    /// The checked-out task branch.
    pub branch: String,
    pub path: PathBuf,
}

/// Resets the clone at `path` to `origin/<base_branch>` and checks out a fresh
/// `branch_name` there (replacing any old branch of that name). `branch_name` is expected
/// to come from [`super::sanitize_branch_name`]; it is only validated here.
pub fn prepare_workspace(
    path: &Path,
    remote: &GitRemote,
    base_branch: &str,
    branch_name: &str,
) -> Result<PreparedWorkspace, GitError> {
    validate_branch(base_branch, "base branch is not a valid git reference name")?;
    validate_branch(branch_name, "task branch is not a valid git reference name")?;
    if branch_name == base_branch {
        return Err(GitError::InvalidBranchName {
            raw: branch_name.to_string(),
            reason: "task branch must differ from the base branch",
        });
    }
    // What this process's last commit here left behind, if nothing has touched it since.
    let known = super::slot_state::take(path).filter(|record| record.files_unchanged(path));
    if known.is_none() {
        // Before libgit2 opens anything: a FIFO planted in `.git` would block it for good.
        remove_special_files(path)?;
    }
    let repo = open(path)?;
    let known = match known {
        Some(record) if record.head_unchanged(&repo) => Some(record),
        // A moved branch under an unchanged HEAD file: unknown after all.
        Some(_) => {
            remove_special_files(path)?;
            None
        }
        None => None,
    };
    remove_stale_index_lock(&repo);
    fetch(&repo, remote, &[base_branch, branch_name])?;
    let base = base_commit(&repo, remote, base_branch)?;
    match known {
        Some(record) => super::slot_reset::reset_known_tree(&repo, path, &base, &record)?,
        None => {
            reset_to(&repo, &base)?;
            clean_untracked(&repo, path)?;
        }
    }
    for name in [base_branch, branch_name] {
        let branch_error = |e: git2::Error| GitError::Branch { branch: name.to_string(), detail: e.into() };
        repo.branch(name, &base, true).map_err(branch_error)?;
    }
    let head_ref = format!("refs/heads/{branch_name}");
    // The tree is already at `base`: moving HEAD onto the new branch is the checkout.
    repo.set_head(&head_ref).map_err(|e| GitError::Checkout { what: head_ref, detail: e.into() })?;
    forget_other_branches(&repo, base_branch, branch_name);
    Ok(PreparedWorkspace {
        base_commit: base.id().to_string(),
        branch: branch_name.to_string(),
        path: path.to_path_buf(),
    })
}

fn validate_branch(name: &str, reason: &'static str) -> Result<(), GitError> {
    if Reference::is_valid_name(&format!("refs/heads/{name}")) {
        Ok(())
    } else {
        Err(GitError::InvalidBranchName { raw: name.to_string(), reason })
    }
}

pub(crate) fn open(path: &Path) -> Result<Repository, GitError> {
    super::harden::isolate_from_user_config();
    Repository::open(path).map_err(|e| GitError::Open { path: path.to_path_buf(), detail: e.into() })
}

/// Points `origin` (fetch and push) back at the task's URL and returns it. The agent runs
/// inside the checkout and may have rewritten the remote; the credentials callback also
/// refuses foreign hosts, this keeps the data itself going to the right place.
pub(crate) fn pin_origin<'r>(
    repo: &'r Repository,
    remote: &GitRemote,
) -> Result<git2::Remote<'r>, git2::Error> {
    match repo.find_remote("origin") {
        Ok(existing) => {
            if existing.url_bytes() != remote.url().as_bytes() {
                repo.remote_set_url("origin", remote.url())?;
            }
            // libgit2 errors when deleting a key that is not there.
            if existing.pushurl_bytes().is_some() {
                repo.remote_set_pushurl("origin", None)?;
            }
            repo.find_remote("origin")
        }
        Err(e) if e.code() == ErrorCode::NotFound => repo.remote("origin", remote.url()),
        Err(e) => Err(e),
    }
}

/// A worker killed mid-write leaves git lock files behind (`index.lock`, a ref's `.lock`
/// during a fetch, `packed-refs.lock`, `config.lock`), and each blocks every later write
/// of that file: the redelivered task would fail on them for good. The slot lock
/// guarantees nobody else is using this clone, so every lock in it is stale.
fn remove_stale_index_lock(repo: &Repository) {
    remove_locks_under(repo.path(), 0);
}

/// Ref namespaces nest a few levels (`refs/remotes/origin/feature/x`); deeper is not git.
const MAX_LOCK_SEARCH_DEPTH: usize = 16;

fn remove_locks_under(dir: &Path, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        // Objects are written to temporary names and renamed, never locked.
        if kind.is_dir() && entry.file_name() != "objects" && depth < MAX_LOCK_SEARCH_DEPTH {
            remove_locks_under(&path, depth + 1);
        } else if kind.is_file()
            && path.extension().is_some_and(|e| e == "lock")
            && std::fs::remove_file(&path).is_ok()
        {
            tracing::warn!(path = %path.display(), "removed stale git lock");
        }
    }
}

fn fetch(repo: &Repository, remote: &GitRemote, branches: &[&str]) -> Result<(), GitError> {
    let fetch_error = |e: git2::Error| GitError::Fetch { url: remote.redacted_url(), detail: e.into() };
    let mut origin = pin_origin(repo, remote).map_err(fetch_error)?;
    let mut options = FetchOptions::new();
    options.remote_callbacks(remote.callbacks()).prune(FetchPrune::On).download_tags(AutotagOption::None);
    // A branch deleted on the remote must not still resolve to the tracking ref an
    // earlier task fetched: start from none, the fetch recreates what exists.
    for branch in branches {
        if let Ok(mut stale) = repo.find_reference(&format!("refs/remotes/origin/{branch}")) {
            let _ = stale.delete();
        }
    }
    let refspecs: Vec<String> = branches.iter().map(|b| tracking_refspec(b)).collect();
    origin.fetch(&refspecs, Some(&mut options), None).map_err(fetch_error)
}

/// Deletes every local branch but the base and the task branch, and every tracking ref
/// but theirs. A warm slot serves task after task: without this it would keep a
/// branch per task it ever ran (and the clone's tracking ref of every remote branch),
/// and each git operation walking refs would grow slower. Failures only cost speed.
fn forget_other_branches(repo: &Repository, base_branch: &str, branch_name: &str) {
    let keep = [
        format!("refs/heads/{base_branch}"),
        format!("refs/heads/{branch_name}"),
        format!("refs/remotes/origin/{base_branch}"),
        format!("refs/remotes/origin/{branch_name}"),
    ];
    let Ok(references) = repo.references() else { return };
    let doomed: Vec<String> = references
        .flatten()
        .filter_map(|r| r.name().ok().map(str::to_string))
        .filter(|name| name.starts_with("refs/heads/") || name.starts_with("refs/remotes/"))
        .filter(|name| !keep.contains(name))
        .collect();
    for name in doomed {
        if let Ok(mut reference) = repo.find_reference(&name) {
            let _ = reference.delete();
        }
    }
}

fn base_commit<'r>(
    repo: &'r Repository,
    remote: &GitRemote,
    base_branch: &str,
) -> Result<git2::Commit<'r>, GitError> {
    let tracking = format!("refs/remotes/origin/{base_branch}");
    let missing =
        || GitError::MissingBaseBranch { branch: base_branch.to_string(), url: remote.redacted_url() };
    let reference = repo.find_reference(&tracking).map_err(|e| match e.code() {
        ErrorCode::NotFound => missing(),
        _ => GitError::Checkout { what: tracking.clone(), detail: e.into() },
    })?;
    reference.peel_to_commit().map_err(|e| GitError::Checkout { what: tracking, detail: e.into() })
}

/// Detaches HEAD at `base` and hard-resets index and tree to it, dropping any merge or
/// rebase in progress. Detaching first lets the base and task branches be force-moved
/// afterwards even when one of them is the current branch.
fn reset_to(repo: &Repository, base: &git2::Commit<'_>) -> Result<(), GitError> {
    let checkout_error =
        |e: git2::Error| GitError::Checkout { what: base.id().to_string(), detail: e.into() };
    repo.cleanup_state().map_err(checkout_error)?;
    repo.set_head_detached(base.id()).map_err(checkout_error)?;
    let mut checkout = CheckoutBuilder::new();
    checkout.force().remove_untracked(true).remove_ignored(true);
    crate::metrics::record_worktree_scan();
    repo.reset(base.as_object(), ResetType::Hard, Some(&mut checkout)).map_err(checkout_error)
}

/// `git clean -fdx`: deletes every untracked and ignored path git still reports after the
/// reset. Untracked directories are reported (and removed) whole. Symlinks are removed,
/// never followed.
fn clean_untracked(repo: &Repository, workdir: &Path) -> Result<(), GitError> {
    crate::metrics::record_worktree_scan();
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(true)
        .recurse_ignored_dirs(false)
        .exclude_submodules(true);
    let statuses = repo
        .statuses(Some(&mut options))
        .map_err(|e| GitError::Checkout { what: "working tree status".to_string(), detail: e.into() })?;
    for entry in statuses.iter().filter(|e| e.status().intersects(Status::WT_NEW | Status::IGNORED)) {
        let relative = Path::new(OsStr::from_bytes(entry.path_bytes()));
        // libgit2 reports paths relative to the workdir; refuse anything that is not.
        if !is_plain_relative(relative) {
            continue;
        }
        remove_path(&workdir.join(relative))?;
    }
    Ok(())
}

/// Deletes the FIFOs, sockets and devices a test step of an earlier task left: libgit2's
/// status does not report them, so [`clean_untracked`] cannot see them.
pub(crate) fn remove_special_files(workdir: &Path) -> Result<(), GitError> {
    let removed = crate::workspace_files::remove_special_files(workdir)
        .map_err(|source| GitError::Clean { path: workdir.to_path_buf(), source })?;
    for path in removed {
        tracing::info!(path = %path.display(), "removed a special file from the workspace");
    }
    Ok(())
}

/// A non-empty path of plain names only: what a status entry under the workdir must be
/// before the clean joins it to the workdir and deletes it (no `..`, no root, not the
/// workdir itself).
pub(crate) fn is_plain_relative(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

pub(crate) fn remove_path(path: &Path) -> Result<(), GitError> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    removed.map_err(|source| GitError::Clean { path: path.to_path_buf(), source })
}

/// The URL of `origin` in the repository at `path`: the remote of a slot the Dispatcher
/// pre-allocated without naming a `repo_url`.
pub fn origin_url(path: &Path) -> Result<String, GitError> {
    let repo = open(path)?;
    let remote = repo
        .find_remote("origin")
        .map_err(|e| GitError::Open { path: path.to_path_buf(), detail: e.into() })?;
    remote
        .url()
        .map(str::to_string)
        .map_err(|e| GitError::Open { path: path.to_path_buf(), detail: e.into() })
}
