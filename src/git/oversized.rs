//! What the commit refuses by size: a file the task added, or grew, past
//! `limits.max_file_bytes`.
//!
//! Checked from metadata before staging, so a 3 GB sparse file is never hashed into the
//! index and never pushed (every later clone of the remote would pay for it). A file the
//! base commit already holds above the cap is the repository's, not the task's: it may
//! stay as it is or shrink, only not grow. Only the paths the commit's status would stage
//! are checked ([`super::staging`]): ignored files, build caches and the insides of nested
//! repositories are not the commit's concern.

use std::path::{Path, PathBuf};

use git2::{Repository, Tree};

use super::error::GitError;

/// Oversized files named in one failure: enough to see the pattern (a build directory
/// that is not ignored), short enough for a DLQ header.
const MAX_NAMED_FILES: usize = 5;

/// A file the commit refused, with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizedFile {
    /// Relative to the workdir, `/`-separated.
    pub path: String,
    pub size: u64,
}

/// Fails with [`GitError::FileTooLarge`] when one of `candidates` (the paths the commit
/// is about to stage, relative to `workdir`) is a regular file over `max` bytes and larger
/// than the same path in `head` (absent counts as 0).
pub(crate) fn refuse_oversized(
    repo: &Repository,
    workdir: &Path,
    head: Option<&Tree<'_>>,
    candidates: &[PathBuf],
    max: u64,
) -> Result<(), GitError> {
    let mut refused = Vec::new();
    for rel in candidates {
        // Metadata only, never following a link: the file itself is never read.
        let Ok(meta) = workdir.join(rel).symlink_metadata() else { continue };
        let size = meta.len();
        if !meta.is_file() || size <= max {
            continue;
        }
        let shown = rel.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/");
        let tracked_size = head.and_then(|tree| tree.get_path(rel).ok()).map(|entry| {
            // The header alone: the blob itself is never loaded.
            repo.odb().and_then(|odb| odb.read_header(entry.id())).map_or(0, |(len, _)| len as u64)
        });
        if tracked_size.is_some_and(|before| size <= before) {
            continue;
        }
        refused.push(OversizedFile { path: shown, size });
    }
    if refused.is_empty() {
        return Ok(());
    }
    refused.sort_by(|a, b| a.path.cmp(&b.path));
    let count = refused.len();
    let mut named: Vec<String> =
        refused.iter().take(MAX_NAMED_FILES).map(|f| format!("{} ({} bytes)", f.path, f.size)).collect();
    if count > MAX_NAMED_FILES {
        named.push(format!("and {} more", count - MAX_NAMED_FILES));
    }
    Err(GitError::FileTooLarge { files: named.join(", "), max })
}
