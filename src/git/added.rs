//! The lines a task branch adds to its base, for the push guard's secret scan.
//!
//! Only added lines are read: removed and context lines were on the remote already, and
//! the scan must stay cheap on large repositories. Every file is diffed as text, so a
//! NUL byte (which makes git call a file binary) cannot hide a secret from the scan.

use std::cell::RefCell;
use std::path::Path;

use git2::{DiffOptions, Oid};

use super::error::GitError;
use super::workspace::open;
use crate::secrets::AddedFile;

/// What a branch adds: its files' added lines, or how many bytes there were when they
/// passed the cap (nothing past the cap is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddedLines {
    Files(Vec<AddedFile>),
    OverCap { bytes: usize },
}

/// The lines `refs/heads/<branch>` adds to `base_commit`, at most `max_bytes` of them.
pub fn added_lines(
    path: &Path,
    base_commit: &str,
    branch: &str,
    max_bytes: usize,
) -> Result<AddedLines, GitError> {
    let repo = open(path)?;
    let diff_error = |e: git2::Error| GitError::Diff { base: base_commit.to_string(), detail: e.into() };
    let base = repo.find_commit(Oid::from_str(base_commit).map_err(diff_error)?).map_err(diff_error)?;
    let tip = repo.find_reference(&format!("refs/heads/{branch}")).and_then(|r| r.peel_to_commit());
    let tip = tip.map_err(diff_error)?;
    let mut options = DiffOptions::new();
    options.force_text(true).context_lines(0);
    let diff = repo
        .diff_tree_to_tree(
            Some(&base.tree().map_err(diff_error)?),
            Some(&tip.tree().map_err(diff_error)?),
            Some(&mut options),
        )
        .map_err(diff_error)?;

    let files: RefCell<Vec<AddedFile>> = RefCell::new(Vec::new());
    let mut bytes = 0usize;
    let walked = diff.foreach(
        &mut |delta, _| {
            let path = delta.new_file().path().map(|p| p.display().to_string()).unwrap_or_default();
            files.borrow_mut().push(AddedFile { path, lines: Vec::new() });
            true
        },
        None,
        None,
        Some(&mut |_delta, _hunk, line| {
            if line.origin() != '+' {
                return true;
            }
            bytes += line.content().len();
            if bytes > max_bytes {
                return false; // stop the walk: the caller refuses the push
            }
            let text = String::from_utf8_lossy(line.content()).trim_end_matches(['\n', '\r']).to_string();
            if let (Some(file), Some(number)) = (files.borrow_mut().last_mut(), line.new_lineno()) {
                file.lines.push((number, text));
            }
            true
        }),
    );
    if bytes > max_bytes {
        return Ok(AddedLines::OverCap { bytes });
    }
    walked.map_err(diff_error)?;
    Ok(AddedLines::Files(files.into_inner().into_iter().filter(|f| !f.lines.is_empty()).collect()))
}
