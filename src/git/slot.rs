//! The embedded local slot pool: reusable clones of a repository, one per concurrent task.
//!
//! Layout under the pool root: `<repo-name>-<hash8>/slot-<n>/` (the clone) next to
//! `slot-<n>.lock`. A slot belongs to whoever holds an exclusive lock on its lock file; the
//! lock is an OS file lock, so a crashed worker's slots become free when its process dies,
//! and two workers sharing the root (or two threads in one) never get the same slot.
//! Lock files are never deleted: unlinking a lock file while another process has it open
//! would let two holders lock two different files for the same slot.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use git2::build::RepoBuilder;
use git2::{FetchOptions, Repository};
use sha2::{Digest, Sha256};

use super::credentials::GitRemote;
use super::error::GitError;
use super::workspace::pin_origin;

/// Slots per repository when the caller does not choose: more concurrent tasks than this
/// on one repository from one host means something is leaking leases, and each slot is a
/// full clone on disk.
pub const DEFAULT_MAX_SLOTS_PER_REPO: usize = 8;

/// Longest readable repository name kept in a directory name; the hash keeps it unique.
const REPO_NAME_MAX_CHARS: usize = 40;

/// Hex digits of the URL's sha256 in the directory name: enough that two repositories
/// with the same readable name do not collide in one pool.
const URL_HASH_HEX_CHARS: usize = 8;

/// Written into `.git` once a clone has completed. A slot without it was left half-cloned
/// by a crash (or tampered with) and is wiped and cloned again. It holds the number of
/// leases the clone has served (empty means none yet).
const CLONE_COMPLETE_MARKER: &str = "agent-runner-clone-complete";

/// The marker holds a lease count: a few digits. A bigger one was not written by us.
const MAX_MARKER_BYTES: u64 = 64;

/// Leases a clone serves before it is wiped and cloned afresh. A warm clone only grows:
/// every task leaves its commit's objects loose, every fetch that brings objects adds a
/// pack, and a push walks every remote branch whose commit the clone holds (each past
/// task still branched on the remote). Without a bound, each task would be slower than
/// the last over a worker's lifetime; one fresh clone per hundred tasks is a small
/// price for that.
pub const DEFAULT_RECYCLE_AFTER_USES: u32 = 100;

/// A pool of reusable clones under one root directory.
#[derive(Debug, Clone)]
pub struct LocalSlotPool {
    root: PathBuf,
    max_slots: usize,
    recycle_after_uses: u32,
}

/// A slot held by one task. Dropping it unlocks the lock file.
#[derive(Debug)]
pub struct SlotLease {
    /// `<repo-dir>/slot-<n>`, stable across runs; shown in events and summaries.
    pub slot_id: String,
    /// The clone's working directory.
    pub path: PathBuf,
    /// Held only for its lock; `None` for a pre-allocated slot.
    lock: Option<File>,
}

impl Drop for SlotLease {
    /// Unlocks explicitly rather than by closing: the lock belongs to the open file, and
    /// a child forked by another thread at that moment holds a copy of the descriptor
    /// until its `exec` closes it, so a close alone can leave the slot locked for a while
    /// after its lease ended.
    fn drop(&mut self) {
        if let Some(lock) = &self.lock {
            let _ = lock.unlock();
        }
    }
}

impl SlotLease {
    /// A slot allocated by someone else (an external slot manager): no lock is taken and
    /// the directory is used as is.
    pub fn preallocated(slot_id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        SlotLease { slot_id: slot_id.into(), path: path.into(), lock: None }
    }
}

impl LocalSlotPool {
    /// A pool rooted at `root` with [`DEFAULT_MAX_SLOTS_PER_REPO`] slots per repository.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalSlotPool {
            root: root.into(),
            max_slots: DEFAULT_MAX_SLOTS_PER_REPO,
            recycle_after_uses: DEFAULT_RECYCLE_AFTER_USES,
        }
    }

    /// Changes how many leases a clone serves before it is cloned afresh (at least one).
    pub fn with_recycle_after_uses(mut self, uses: u32) -> Self {
        self.recycle_after_uses = uses.max(1);
        self
    }

    /// Changes the per-repository slot cap (at least one).
    pub fn with_max_slots(mut self, max_slots: usize) -> Self {
        self.max_slots = max_slots.max(1);
        self
    }

    /// The directory holding every slot of `repo_url`.
    pub fn repo_dir(&self, repo_url: &str) -> PathBuf {
        self.root.join(repo_dir_name(repo_url))
    }

    /// Takes the first free slot of the remote's repository, cloning it on first use. A
    /// reused slot is handed back as it is: [`super::prepare_workspace`] resets it.
    pub fn acquire(&self, remote: &GitRemote) -> Result<SlotLease, GitError> {
        let dir = self.repo_dir(remote.url());
        std::fs::create_dir_all(&dir).map_err(|source| GitError::SlotIo { path: dir.clone(), source })?;
        for n in 0..self.max_slots {
            let lock_path = dir.join(format!("slot-{n}.lock"));
            let Some(lock) = try_lock(&lock_path)? else {
                continue;
            };
            let path = dir.join(format!("slot-{n}"));
            ensure_clone(&path, remote, self.recycle_after_uses)?;
            let slot_id = format!("{}/slot-{n}", repo_dir_name(remote.url()));
            tracing::debug!(slot_id, "workspace slot acquired");
            return Ok(SlotLease { slot_id, path, lock: Some(lock) });
        }
        Err(GitError::SlotsBusy { url: remote.redacted_url(), max: self.max_slots })
    }
}

/// Opens (creating if needed) and locks `path`; `None` when another holder has it.
fn try_lock(path: &Path) -> Result<Option<File>, GitError> {
    let io_error = |source| GitError::SlotIo { path: path.to_path_buf(), source };
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(source)) => Err(io_error(source)),
    }
}

/// Makes `path` a complete clone of the remote, with origin pointing at the remote's URL,
/// and counts the lease; a clone that has served `recycle_after_uses` leases is cloned
/// afresh.
fn ensure_clone(path: &Path, remote: &GitRemote, recycle_after_uses: u32) -> Result<(), GitError> {
    super::harden::isolate_from_user_config();
    // The clean for what the last task's steps left that git cannot see, before anything
    // here or in libgit2 opens a file of the clone; unless this process's own commit was
    // the last to touch it (that commit swept it, see `slot_state`).
    if path.exists() && !super::slot_state::vouches_for(path) {
        super::workspace::remove_special_files(path)?;
    }
    let marker = path.join(".git").join(CLONE_COMPLETE_MARKER);
    let uses = crate::workspace_files::read_capped(&marker, MAX_MARKER_BYTES)
        .ok()
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().parse::<u32>().unwrap_or(0));
    let write_uses = |uses: u32| {
        std::fs::write(&marker, uses.to_string())
            .map_err(|source| GitError::SlotIo { path: marker.clone(), source })
    };
    match uses {
        Some(uses) if uses < recycle_after_uses => {
            if let Ok(repo) = Repository::open(path) {
                // The last task's agent could have rewritten origin; put it back.
                pin_origin(&repo, remote)
                    .map_err(|e| GitError::Open { path: path.to_path_buf(), detail: e.into() })?;
                return write_uses(uses + 1);
            }
            tracing::warn!(path = %path.display(), "wiping a workspace slot git cannot open");
        }
        Some(uses) => {
            tracing::info!(path = %path.display(), uses, "recycling a workspace slot: cloning afresh")
        }
        None if path.exists() => tracing::warn!(path = %path.display(), "wiping half-cloned workspace slot"),
        None => {}
    }
    if path.exists() {
        std::fs::remove_dir_all(path)
            .map_err(|source| GitError::SlotIo { path: path.to_path_buf(), source })?;
    }
    let mut fetch = FetchOptions::new();
    fetch.remote_callbacks(remote.callbacks());
    let cloned = RepoBuilder::new().fetch_options(fetch).clone(remote.url(), path);
    if let Err(error) = cloned {
        // Leave no partial clone behind; the next acquire would wipe it anyway.
        let _ = std::fs::remove_dir_all(path);
        return Err(GitError::Clone {
            url: remote.redacted_url(),
            path: path.to_path_buf(),
            detail: error.into(),
        });
    }
    write_uses(1)
}

/// `<readable-name>-<hash8>` for a repository URL. The hash covers the URL without
/// userinfo, so a changed username does not fork the slots.
fn repo_dir_name(repo_url: &str) -> String {
    let url = super::error::redact_url(repo_url);
    let hash = hex::encode(Sha256::digest(url.as_bytes()));
    format!("{}-{}", readable_repo_name(&url), &hash[..URL_HASH_HEX_CHARS])
}

/// The last path segment without `.git`, limited to `[A-Za-z0-9._-]`, never starting
/// with a dot (so never `.` or `..`).
fn readable_repo_name(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let last = trimmed.rsplit(['/', ':', '\\']).next().unwrap_or_default();
    let last = last.strip_suffix(".git").unwrap_or(last);
    let name: String = last
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '-' })
        .take(REPO_NAME_MAX_CHARS)
        .collect();
    let name = name.trim_start_matches('.');
    if name.is_empty() { "repo".to_string() } else { name.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_are_readable_unique_and_safe() {
        assert_eq!(readable_repo_name("https://github.com/org/my-app.git"), "my-app");
        assert_eq!(readable_repo_name("git@github.com:org/my app.git/"), "my-app");
        assert_eq!(readable_repo_name("/srv/git/.."), "repo");
        assert_eq!(readable_repo_name("https://host/"), "host");
        let a = repo_dir_name("https://github.com/a/app.git");
        let b = repo_dir_name("https://github.com/b/app.git");
        assert!(a.starts_with("app-") && b.starts_with("app-") && a != b, "{a} {b}");
        assert_eq!(a.len(), "app-".len() + URL_HASH_HEX_CHARS);
        assert_eq!(repo_dir_name("https://u@github.com/a/app.git"), a);
    }
}
