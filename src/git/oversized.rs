//! What the commit refuses by size: a file the task added, or grew, past
//! `limits.max_file_bytes`.
//!
//! Checked from metadata before staging, so a 3 GB sparse file is never hashed by
//! `index.add_all` and never pushed (every later clone of the remote would pay for it). A
//! file the base commit already holds above the cap is the repository's, not the task's:
//! it may stay as it is or shrink, only not grow. Files git would not stage (untracked
//! and ignored, or inside a nested repository) are not the commit's concern.

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

/// Fails with [`GitError::FileTooLarge`] when the working tree holds a file git would stage
/// that is over `max` bytes and larger than the same path in `head` (absent counts as 0).
pub(crate) fn refuse_oversized(
    repo: &Repository,
    workdir: &Path,
    head: Option<&Tree<'_>>,
    max: u64,
) -> Result<(), GitError> {
    let mut refused = Vec::new();
    for (rel, size) in large_files(workdir, max) {
        let shown = rel.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/");
        let tracked_size = head.and_then(|tree| tree.get_path(&rel).ok()).map(|entry| {
            // The header alone: the blob itself is never loaded.
            repo.odb().and_then(|odb| odb.read_header(entry.id())).map_or(0, |(len, _)| len as u64)
        });
        match tracked_size {
            Some(before) if size <= before => continue,
            // Untracked and ignored: `add_all` leaves it out.
            None if repo.status_should_ignore(&rel).unwrap_or(false) => continue,
            // A build cache: `commit_all` never stages it.
            _ if super::is_build_cache(&rel) => continue,
            _ => refused.push(OversizedFile { path: shown, size }),
        }
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

/// Regular files over `max` bytes under `workdir`, from metadata only, never following
/// symlinks; `.git` and nested repositories (git stages them as a link, not their files)
/// are skipped.
fn large_files(workdir: &Path, max: u64) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    // An explicit stack: a step can nest directories deeper than a recursion should go.
    let mut pending = vec![PathBuf::new()];
    while let Some(rel_dir) = pending.pop() {
        let dir = workdir.join(&rel_dir);
        if !rel_dir.as_os_str().is_empty() && dir.join(".git").symlink_metadata().is_ok() {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let rel = rel_dir.join(entry.file_name());
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() && entry.file_name() != ".git" {
                pending.push(rel);
            } else if meta.is_file() && meta.len() > max {
                found.push((rel, meta.len()));
            }
        }
    }
    found
}
