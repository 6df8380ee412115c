//! What this process's last commit in a slot left behind, so the next task on the slot
//! can reset and clean it without walking the working tree again.
//!
//! The commit's single status (see [`super::staging`]) already lists everything that is
//! not in the new commit: ignored paths and build caches. Nothing of the task runs after
//! that status (the commit, the push and the uploads only read the tree), and the slot's
//! lease keeps every other task out, so that list is what the next reset must remove and
//! the diff between the commit and the next base is what it must rewrite. The record
//! lives in this process's memory only: a restarted worker, a task that failed before its
//! commit, or a slot whose HEAD or index changed since falls back to the full clean, so
//! nothing the task's commands could write (the repository's `.git` included) can vouch
//! for a slot being clean.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use git2::{Oid, Repository};

/// Slots remembered at most; a worker holds a handful, beyond that the oldest are forgotten
/// (they only get the full clean again).
const MAX_REMEMBERED_SLOTS: usize = 256;

/// The state a commit left a slot in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeftBehind {
    /// HEAD's commit right after the commit step.
    head: Oid,
    /// `.git/index` and `.git/HEAD` as that step left them.
    stamps: [FileStamp; 2],
    /// Untracked and ignored paths, relative to the workdir.
    pub untracked: Vec<PathBuf>,
    /// Tracked paths whose working copy differs from HEAD (build caches).
    pub tracked_changed: Vec<PathBuf>,
}

fn records() -> &'static Mutex<HashMap<PathBuf, LeftBehind>> {
    static RECORDS: OnceLock<Mutex<HashMap<PathBuf, LeftBehind>>> = OnceLock::new();
    RECORDS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// A regular file's size, modification time and inode: what any rewrite changes.
type FileStamp = (u64, i64, i64, u64);

/// The stamps of `.git/index` and `.git/HEAD`, read from the file system alone (before
/// libgit2 opens anything: they must be regular files, not a FIFO that blocks the open).
fn git_dir_stamps(workdir: &Path) -> Option<[FileStamp; 2]> {
    let stamp = |name: &str| {
        let meta = workdir.join(".git").join(name).symlink_metadata().ok()?;
        meta.is_file().then(|| (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino()))
    };
    Some([stamp("index")?, stamp("HEAD")?])
}

/// Records what the commit at HEAD left in the slot at `workdir`.
pub(crate) fn remember(
    repo: &Repository,
    workdir: &Path,
    untracked: Vec<PathBuf>,
    tracked_changed: Vec<PathBuf>,
) {
    let (Some(head), Some(stamps)) = (repo.head().ok().and_then(|h| h.target()), git_dir_stamps(workdir))
    else {
        forget(workdir);
        return;
    };
    let mut records = records().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if records.len() >= MAX_REMEMBERED_SLOTS && !records.contains_key(workdir) {
        records.clear();
    }
    records.insert(workdir.to_path_buf(), LeftBehind { head, stamps, untracked, tracked_changed });
}

/// Drops any record of the slot at `workdir`: its tree is no longer what the record says.
pub(crate) fn forget(workdir: &Path) {
    records().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(workdir);
}

/// Whether a record of the slot at `workdir` exists and its index and HEAD files are
/// still the ones it was taken with (the record stays for [`take`]).
pub(crate) fn vouches_for(workdir: &Path) -> bool {
    let records = records().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    records.get(workdir).is_some_and(|record| record.files_unchanged(workdir))
}

/// Takes the record of the slot at `workdir` (it is spent either way) when there is one.
pub(crate) fn take(workdir: &Path) -> Option<LeftBehind> {
    records().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(workdir)
}

impl LeftBehind {
    /// Whether the index and HEAD files of the slot at `workdir` are the ones the commit
    /// left (checked before opening the repository).
    pub(crate) fn files_unchanged(&self, workdir: &Path) -> bool {
        git_dir_stamps(workdir) == Some(self.stamps)
    }

    /// Whether HEAD still resolves to the commit the record was taken at.
    pub(crate) fn head_unchanged(&self, repo: &Repository) -> bool {
        repo.head().ok().and_then(|h| h.target()) == Some(self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_spent_once_and_fails_when_the_index_changes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("a.txt")).unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let who = git2::Signature::now("t", "t@t").unwrap();
        repo.commit(Some("HEAD"), &who, &who, "one", &tree, &[]).unwrap();

        remember(&repo, dir.path(), vec![PathBuf::from("ignored")], vec![]);
        assert!(vouches_for(dir.path()));
        let record = take(dir.path()).expect("remembered");
        assert!(record.files_unchanged(dir.path()) && record.head_unchanged(&repo));
        assert_eq!(record.untracked, [PathBuf::from("ignored")]);
        assert!(take(dir.path()).is_none(), "a record serves one reset only");
        assert!(!vouches_for(dir.path()));

        // A command rewriting the index after the record invalidates it.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(dir.path().join("b.txt"), "b").unwrap();
        index.add_path(Path::new("b.txt")).unwrap();
        index.write().unwrap();
        assert!(!record.files_unchanged(dir.path()));
    }
}
