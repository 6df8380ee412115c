//! Writing the proposed changes into the workspace, confined to it.
//!
//! Every path is checked before anything is written: relative, no `..`, nothing in `.git`
//! (any case: case-insensitive filesystems would map `.GIT` onto it), no existing parent
//! that resolves outside the workspace or into `.git` through a symlink, no write through
//! a symlink, no FIFO, socket or device as the target. Files are written to a temporary sibling and renamed into place, so a file
//! is never left half-written.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use super::{CodeChange, Operation, ProposedChanges};
use crate::llm::{ImplementError, truncate_chars};

/// Files one answer may touch: a task changes a handful; more means a runaway answer.
pub const MAX_CHANGED_FILES: usize = 50;
/// Largest file the model may write: bigger ones are generated artifacts, not source,
/// and the cap bounds the disk an answer can fill.
pub const MAX_WRITE_BYTES: usize = 1024 * 1024;
/// Length of a proposed path quoted back in an error.
const MAX_SHOWN_PATH: usize = 200;

/// One validated change, ready to execute.
struct Planned<'a> {
    /// Normalized relative path.
    rel: PathBuf,
    /// `rel` with `/` separators, as reported back.
    shown: String,
    operation: Operation,
    content: &'a str,
    exists: bool,
}

/// Applies `changes` under `workspace` and returns the files written or deleted, in order.
///
/// All changes are validated first; if any is rejected nothing is written. An I/O error
/// while writing (disk full) can still leave earlier files of the same answer in place.
pub fn apply_changes(workspace: &Path, changes: &ProposedChanges) -> Result<Vec<String>, ImplementError> {
    let count = changes.code_changes.len();
    if count == 0 {
        return Err(ImplementError::NoChanges);
    }
    if count > MAX_CHANGED_FILES {
        return Err(ImplementError::Answer(format!(
            "the model proposed {count} file changes, more than the {MAX_CHANGED_FILES} allowed"
        )));
    }
    let root =
        workspace.canonicalize().map_err(|source| io_error("resolving workspace", workspace, source))?;
    let mut plans = Vec::with_capacity(count);
    for (index, change) in changes.code_changes.iter().enumerate() {
        plans.push(validate(&root, index, change)?);
    }
    check_overlaps(&plans, changes)?;
    let mut changed = Vec::with_capacity(count);
    for plan in &plans {
        if execute(&root, plan)? {
            changed.push(plan.shown.clone());
        }
    }
    Ok(changed)
}

fn validate<'a>(root: &Path, index: usize, change: &'a CodeChange) -> Result<Planned<'a>, ImplementError> {
    let reject = |reason: String| ImplementError::Rejected {
        index,
        path: truncate_chars(&change.file_path, MAX_SHOWN_PATH),
        reason,
    };
    let rel = confine_path(&change.file_path).map_err(|r| reject(r.to_string()))?;
    let content = match (change.operation, change.content.as_deref()) {
        (Operation::Delete, _) => "",
        (_, None) => return Err(reject("content is missing for create or modify".into())),
        (_, Some(text)) if text.len() > MAX_WRITE_BYTES => {
            return Err(reject(format!(
                "content is {} bytes, more than the {MAX_WRITE_BYTES} allowed",
                text.len()
            )));
        }
        (_, Some(text)) => text,
    };
    check_parent_chain(root, &rel).map_err(reject)?;
    let target = root.join(&rel);
    let exists = match target.symlink_metadata() {
        Ok(meta) if meta.file_type().is_symlink() && change.operation != Operation::Delete => {
            return Err(reject("the path is a symlink; writing through it is not allowed".into()));
        }
        Ok(meta) if meta.is_dir() => return Err(reject("the path is a directory".into())),
        // A FIFO, socket or device left by a test step: not source, and the slot's clean
        // removes it.
        Ok(meta) if crate::workspace_files::special_kind(&meta).is_some() => {
            let kind = crate::workspace_files::special_kind(&meta).unwrap_or("a special file");
            return Err(reject(format!("the path is {kind}; special files are neither read nor written")));
        }
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => return Err(io_error("inspecting", &target, source)),
    };
    if change.operation == Operation::Modify && !exists {
        return Err(reject("modify of a file that does not exist (use create)".into()));
    }
    let shown = rel.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/");
    Ok(Planned { rel, shown, operation: change.operation, content, exists })
}

/// Normalizes a proposed path, or says why it may not be used.
pub(crate) fn confine_path(path: &str) -> Result<PathBuf, &'static str> {
    if path.is_empty() {
        return Err("the path is empty");
    }
    // A backslash is a separator on Windows checkouts of the same repository, and NUL
    // cannot be in a file name at all.
    if path.contains('\\') || path.contains('\0') {
        return Err("the path contains a backslash or NUL");
    }
    let mut rel = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(name) if name.eq_ignore_ascii_case(".git") => {
                return Err("writes into .git are not allowed");
            }
            Component::Normal(name) => rel.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err("\"..\" is not allowed in paths"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute paths are not allowed");
            }
        }
    }
    if rel.as_os_str().is_empty() {
        return Err("the path names no file");
    }
    let name = rel.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    if let Some(reason) = super::credential_files::credential_file(&name) {
        return Err(reason);
    }
    Ok(rel)
}

/// The deepest existing ancestor of the target must resolve to a directory inside the
/// workspace and outside `.git`; the parts below it do not exist yet, so they are plain
/// directories we create.
fn check_parent_chain(root: &Path, rel: &Path) -> Result<(), String> {
    let parent = root.join(rel.parent().unwrap_or(Path::new("")));
    let existing = parent
        .ancestors()
        .find(|a| a.symlink_metadata().is_ok())
        .ok_or_else(|| "no part of the path exists".to_string())?;
    let resolved = existing
        .canonicalize()
        .map_err(|_| format!("{} is a dangling symlink or unreadable", shown_rel(root, existing)))?;
    let inside = resolved.strip_prefix(root).map_err(|_| {
        format!("{} resolves outside the workspace through a symlink", shown_rel(root, existing))
    })?;
    if inside.iter().any(|c| c.eq_ignore_ascii_case(".git")) {
        return Err(format!("{} resolves into .git through a symlink", shown_rel(root, existing)));
    }
    if !resolved.is_dir() {
        return Err(format!("{} is a file, not a directory", shown_rel(root, existing)));
    }
    Ok(())
}

fn shown_rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// Two changes to one path, or to a path and a path below it, have no clear order.
fn check_overlaps(plans: &[Planned<'_>], changes: &ProposedChanges) -> Result<(), ImplementError> {
    let all: HashSet<&Path> = plans.iter().map(|p| p.rel.as_path()).collect();
    let mut seen = HashSet::new();
    for (index, plan) in plans.iter().enumerate() {
        let reject = |reason: String| ImplementError::Rejected {
            index,
            path: truncate_chars(&changes.code_changes[index].file_path, MAX_SHOWN_PATH),
            reason,
        };
        if !seen.insert(plan.rel.as_path()) {
            return Err(reject("the same file is changed twice".into()));
        }
        if let Some(ancestor) = plan.rel.ancestors().skip(1).find(|a| all.contains(a)) {
            return Err(reject(format!("{} is also changed as a file", ancestor.display())));
        }
    }
    Ok(())
}

/// Carries out one change; false when there was nothing to do (deleting a missing file).
fn execute(root: &Path, plan: &Planned<'_>) -> Result<bool, ImplementError> {
    let target = root.join(&plan.rel);
    if plan.operation == Operation::Delete {
        if plan.exists {
            std::fs::remove_file(&target).map_err(|source| io_error("deleting", &target, source))?;
        }
        return Ok(plan.exists);
    }
    let parent = target.parent().unwrap_or(root);
    std::fs::create_dir_all(parent).map_err(|source| io_error("creating directory", parent, source))?;
    let mut temp = tempfile::NamedTempFile::new_in(parent)
        .map_err(|source| io_error("creating a temporary file in", parent, source))?;
    temp.write_all(plan.content.as_bytes()).map_err(|source| io_error("writing", &target, source))?;
    if plan.exists {
        // Keep the mode of the file being replaced (an executable script stays executable).
        let permissions =
            std::fs::metadata(&target).map_err(|source| io_error("inspecting", &target, source))?;
        std::fs::set_permissions(temp.path(), permissions.permissions())
            .map_err(|source| io_error("setting permissions of", &target, source))?;
    }
    temp.persist(&target).map_err(|e| io_error("writing", &target, e.error))?;
    Ok(true)
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> ImplementError {
    ImplementError::Io { action, path: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confine_path_normalizes_and_refuses() {
        assert_eq!(confine_path("./src//a.rs"), Ok(PathBuf::from("src/a.rs")));
        assert_eq!(confine_path("/etc/passwd"), Err("absolute paths are not allowed"));
        assert_eq!(confine_path("a/../../x"), Err("\"..\" is not allowed in paths"));
        assert_eq!(confine_path("a/.GiT/x"), Err("writes into .git are not allowed"));
        assert_eq!(confine_path("a\\b"), Err("the path contains a backslash or NUL"));
        assert_eq!(confine_path("."), Err("the path names no file"));
        assert_eq!(confine_path(""), Err("the path is empty"));
        assert_eq!(confine_path(".github/ci.yml"), Ok(PathBuf::from(".github/ci.yml")));
        assert!(confine_path("app/.env").unwrap_err().starts_with("a .env file holds credentials"));
        assert_eq!(confine_path(".env/lib/site.py"), Ok(PathBuf::from(".env/lib/site.py")));
    }
}
