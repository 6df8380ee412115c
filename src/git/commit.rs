//! Committing the agent's work and describing it (changed files, unified diff).
//!
//! libgit2 never runs repository hooks, so a `pre-commit` or `commit-msg` hook planted in
//! the checkout cannot run here or alter the commit. The author is always passed in
//! explicitly, never read from the repository's (agent-writable) config, and that config
//! is reset before committing (see [`super::harden_repository`]). The index is made to
//! hold HEAD's tree first (entries planted in `.git/index` are dropped), then the changes
//! one status of the working tree found are staged ([`super::staging`]).

use std::path::Path;

use git2::{Diff, DiffFormat, DiffOptions, Repository, Signature, Tree};

use super::error::GitError;
use super::workspace::open;

/// Who the worker's commits are attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitAuthor {
    pub name: String,
    pub email: String,
}

impl Default for GitAuthor {
    fn default() -> Self {
        GitAuthor { name: "agent-runner".to_string(), email: "agent-runner@necrocode.local".to_string() }
    }
}

/// What to commit with.
#[derive(Debug, Clone)]
pub struct CommitRequest<'a> {
    /// The subject and body; trailers are appended after a blank line.
    pub message: &'a str,
    /// Written as the `Task-Id:` trailer.
    pub task_id: &'a str,
    /// Written as the `Runner-Id:` trailer when present.
    pub runner_id: Option<&'a str>,
    pub author: &'a GitAuthor,
    /// The task's remote, written into the hardened config as `origin` so that the push
    /// right after finds the config it needs as it is (see [`super::harden_repository`]).
    pub remote: Option<&'a super::GitRemote>,
    /// Largest file the task may add or grow (`limits.max_file_bytes`); see
    /// [`super::oversized`].
    pub max_file_bytes: u64,
}

/// A commit that was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Hex commit id.
    pub id: String,
    /// Paths added, modified or deleted relative to the previous HEAD, sorted.
    pub files_changed: Vec<String>,
}

/// Stages every change (additions, modifications, deletions; `.gitignore` is honoured,
/// and build caches are left out: see [`super::is_build_cache`]) and commits it on HEAD. Returns `None` when the staged tree equals HEAD's tree.
///
/// FIFOs, sockets and devices are deleted first (git cannot store them), and a file the
/// task added or grew past `max_file_bytes` fails the commit before anything is staged.
pub fn commit_all(path: &Path, request: &CommitRequest<'_>) -> Result<Option<CommitInfo>, GitError> {
    // First: a FIFO planted in `.git` would block libgit2 in the hardening's own open.
    super::workspace::remove_special_files(path)?;
    // Whatever fails below, the slot is no longer as an earlier commit left it.
    super::slot_state::forget(path);
    super::harden::harden_repository(path, request.remote)?;
    let repo = open(path)?;
    let commit_error = |e: git2::Error| GitError::Commit { path: path.to_path_buf(), detail: e.into() };
    let head_tree = repo.head().and_then(|head| head.peel_to_tree()).ok();
    let mut index = repo.index().map_err(commit_error)?;
    super::staging::reset_index_to(&mut index, head_tree.as_ref()).map_err(commit_error)?;
    let changes = super::staging::working_tree_changes(&repo, path).map_err(commit_error)?;
    super::oversized::refuse_oversized(
        &repo,
        path,
        head_tree.as_ref(),
        &changes.present,
        request.max_file_bytes,
    )?;
    super::staging::stage(&mut index, &changes).map_err(commit_error)?;
    index.write().map_err(commit_error)?;
    let tree = repo.find_tree(index.write_tree().map_err(commit_error)?).map_err(commit_error)?;
    // An unborn HEAD (empty repository) commits as a root commit.
    let parent = repo.head().ok().and_then(|head| head.peel_to_commit().ok());
    let parent_tree = match &parent {
        Some(commit) => Some(commit.tree().map_err(commit_error)?),
        None => None,
    };
    let committed = if parent_tree.as_ref().is_some_and(|t| t.id() == tree.id()) {
        None
    } else {
        let files_changed = diff_paths(&repo, parent_tree.as_ref(), &tree).map_err(commit_error)?;
        let signature = Signature::now(&request.author.name, &request.author.email).map_err(commit_error)?;
        let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
        let id = repo
            .commit(Some("HEAD"), &signature, &signature, &full_message(request), &tree, &parents)
            .map_err(commit_error)?;
        Some(CommitInfo { id: id.to_string(), files_changed })
    };
    // HEAD as it is now, the new commit or the unchanged one, is what the record vouches for.
    super::slot_state::remember(&repo, path, changes.unstaged_untracked, changes.unstaged_tracked);
    Ok(committed)
}

/// The message with a blank line and the `Task-Id` (and `Runner-Id`) trailers.
fn full_message(request: &CommitRequest<'_>) -> String {
    let subject = request.message.trim_end();
    let subject = if subject.trim().is_empty() {
        format!("Task {}", one_line(request.task_id))
    } else {
        subject.to_string()
    };
    let mut message = format!("{subject}\n\nTask-Id: {}\n", one_line(request.task_id));
    if let Some(runner_id) = request.runner_id {
        message.push_str(&format!("Runner-Id: {}\n", one_line(runner_id)));
    }
    message
}

/// Trailer values are single lines: a newline in an id must not forge another trailer.
fn one_line(value: &str) -> String {
    value.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string()
}

/// Largest diff artifact: a reviewer reads far less, and the patch is held in memory
/// while it is built, masked and uploaded. Beyond it the patch is cut with a note.
pub const MAX_PATCH_BYTES: usize = 16 * 1024 * 1024;

/// Diff options for a patch meant to be read: a file over `max_file_bytes` counts as
/// binary, so libgit2 neither loads it nor prints its content.
pub fn patch_options(max_file_bytes: u64) -> DiffOptions {
    let mut options = DiffOptions::new();
    options.max_size(i64::try_from(max_file_bytes).unwrap_or(i64::MAX));
    options
}

/// The unified patch of `diff`, cut at [`MAX_PATCH_BYTES`].
pub fn patch_text(diff: &Diff<'_>) -> Result<String, git2::Error> {
    let mut patch = Vec::new();
    let mut cut = false;
    let printed = diff.print(DiffFormat::Patch, |_delta, _hunk, line| {
        if patch.len() + line.content().len() + 1 > MAX_PATCH_BYTES {
            cut = true;
            return false;
        }
        // Content lines carry their marker in `origin`; headers already include theirs.
        if matches!(line.origin(), '+' | '-' | ' ') {
            patch.push(line.origin() as u8);
        }
        patch.extend_from_slice(line.content());
        true
    });
    match printed {
        // Stopping the callback is how the cut ends the print; it is not a failure.
        Err(_) if cut => {
            patch.extend_from_slice(format!("\n(diff cut at {MAX_PATCH_BYTES} bytes)\n").as_bytes())
        }
        other => other?,
    }
    Ok(String::from_utf8_lossy(&patch).into_owned())
}

/// The unified patch of HEAD against `base_commit`, for the diff artifact. Call it after
/// [`commit_all`]: it compares committed trees, so it shows exactly what the pushed branch
/// carries and nothing left uncommitted in the working tree. Files over `max_file_bytes`
/// show as binary.
pub fn diff_since(path: &Path, base_commit: &str, max_file_bytes: u64) -> Result<String, GitError> {
    let repo = open(path)?;
    let diff_error = |e: git2::Error| GitError::Diff { base: base_commit.to_string(), detail: e.into() };
    let (base, head) = base_and_head_trees(&repo, base_commit).map_err(diff_error)?;
    let mut options = patch_options(max_file_bytes);
    let diff = repo.diff_tree_to_tree(Some(&base), Some(&head), Some(&mut options)).map_err(diff_error)?;
    patch_text(&diff).map_err(diff_error)
}

/// Paths that differ between `base_commit` and HEAD, sorted.
pub fn changed_files(path: &Path, base_commit: &str) -> Result<Vec<String>, GitError> {
    let repo = open(path)?;
    let diff_error = |e: git2::Error| GitError::Diff { base: base_commit.to_string(), detail: e.into() };
    let (base, head) = base_and_head_trees(&repo, base_commit).map_err(diff_error)?;
    diff_paths(&repo, Some(&base), &head).map_err(diff_error)
}

fn base_and_head_trees<'r>(
    repo: &'r Repository,
    base_commit: &str,
) -> Result<(Tree<'r>, Tree<'r>), git2::Error> {
    let base = repo.find_commit(git2::Oid::from_str(base_commit)?)?.tree()?;
    let head = repo.head()?.peel_to_tree()?;
    Ok((base, head))
}

fn diff_paths(repo: &Repository, old: Option<&Tree<'_>>, new: &Tree<'_>) -> Result<Vec<String>, git2::Error> {
    let diff = repo.diff_tree_to_tree(old, Some(new), None)?;
    let mut paths: Vec<String> = diff
        .deltas()
        .filter_map(|delta| {
            delta.new_file().path().or_else(|| delta.old_file().path()).map(|p| p.display().to_string())
        })
        .collect();
    paths.sort();
    paths.dedup();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_gets_trailers_and_ids_cannot_forge_lines() {
        let author = GitAuthor::default();
        let request = CommitRequest {
            message: "Add login\n\n",
            task_id: "t-1\nSigned-off-by: x",
            runner_id: Some("r-9"),
            author: &author,
            remote: None,
            max_file_bytes: 1024,
        };
        assert_eq!(full_message(&request), "Add login\n\nTask-Id: t-1 Signed-off-by: x\nRunner-Id: r-9\n");
        let empty = CommitRequest {
            message: "  ",
            task_id: "t-2",
            runner_id: None,
            author: &author,
            remote: None,
            max_file_bytes: 1024,
        };
        assert_eq!(full_message(&empty), "Task t-2\n\nTask-Id: t-2\n");
    }
}
