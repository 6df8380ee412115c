//! Resetting a slot whose state is known ([`super::slot_state`]) to the next base commit
//! without walking its working tree: remove what the last commit left unstaged, then
//! check out only the paths that differ between that commit and the base.
//!
//! The paths come from a tree-to-tree diff of two commits (object reads, no file system),
//! and the checkout is limited to them by an exact path list, which libgit2 also uses to
//! bound its working-tree iteration. The index the last commit wrote equals its tree, so
//! after the checkout rewrote the differing paths index and tree equal the base.

use std::path::{Path, PathBuf};

use git2::Repository;
use git2::build::CheckoutBuilder;

use super::error::GitError;
use super::slot_state::LeftBehind;
use super::workspace::{is_plain_relative, remove_path};

/// Brings the slot at `workdir`, as `record` describes it, to `base` with HEAD detached
/// there (like the full reset).
pub(crate) fn reset_known_tree(
    repo: &Repository,
    workdir: &Path,
    base: &git2::Commit<'_>,
    record: &LeftBehind,
) -> Result<(), GitError> {
    let checkout_error =
        |e: git2::Error| GitError::Checkout { what: base.id().to_string(), detail: e.into() };
    repo.cleanup_state().map_err(checkout_error)?;
    for relative in &record.untracked {
        if is_plain_relative(relative) {
            remove_path(&workdir.join(relative))?;
        }
    }
    let head_tree = repo.head().and_then(|head| head.peel_to_tree()).map_err(checkout_error)?;
    let base_tree = base.tree().map_err(checkout_error)?;
    let mut paths = differing_paths(repo, &head_tree, &base_tree).map_err(checkout_error)?;
    paths.extend(record.tracked_changed.iter().filter(|p| is_plain_relative(p)).cloned());
    if !paths.is_empty() {
        let mut checkout = CheckoutBuilder::new();
        // Exact paths, no pattern matching: nothing else is looked at. HEAD is still the
        // last commit here, the baseline that says which files the checkout may delete.
        checkout.force().disable_pathspec_match(true);
        for path in &paths {
            checkout.path(path.as_path());
        }
        repo.checkout_tree(base.as_object(), Some(&mut checkout)).map_err(checkout_error)?;
    }
    repo.set_head_detached(base.id()).map_err(checkout_error)
}

/// Every path added, changed or deleted between `from` and `to`.
fn differing_paths(
    repo: &Repository,
    from: &git2::Tree<'_>,
    to: &git2::Tree<'_>,
) -> Result<Vec<PathBuf>, git2::Error> {
    let diff = repo.diff_tree_to_tree(Some(from), Some(to), None)?;
    let mut paths = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(path) = file.path() {
                paths.push(path.to_path_buf());
            }
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}
