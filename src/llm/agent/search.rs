//! The `search_text` tool's walk: literal matches in the workspace's text files.
//!
//! Links are never followed, `.git` and build directories are skipped, and files go
//! through the same capped, metadata-first read as `read_file` (special files and files
//! over the cap are skipped), so a search is bounded in time and memory.

use std::path::Path;

use super::workspace::{MAX_SEARCH_FILES, MAX_SEARCH_MATCHES, read_text};
use crate::llm::repo_view::{SKIPPED_DIRS, looks_secret};
use crate::llm::truncate_chars;

/// Characters of a matching line shown.
const MAX_MATCH_LINE_CHARS: usize = 200;

/// A search in progress.
pub(super) struct Search<'a> {
    pattern: &'a str,
    pub(super) matches: Vec<String>,
    files: usize,
    /// A limit stopped the search: there may be more matches.
    pub(super) more: bool,
    /// Files larger than this are skipped.
    max_file_bytes: u64,
}

impl<'a> Search<'a> {
    pub(super) fn new(pattern: &'a str, max_file_bytes: u64) -> Self {
        Search { pattern, matches: Vec::new(), files: 0, more: false, max_file_bytes }
    }

    /// Searches every file under `dir` (shown as `shown`), never following links.
    pub(super) fn walk(&mut self, dir: &Path, shown: &str) {
        let Ok(reader) = std::fs::read_dir(dir) else { return };
        let mut children: Vec<_> = reader.flatten().collect();
        children.sort_by_key(|c| c.file_name());
        for child in children {
            if self.more {
                return;
            }
            let name = child.file_name().to_string_lossy().into_owned();
            let path = if shown.is_empty() { name.clone() } else { format!("{shown}/{name}") };
            // symlink_metadata: links are never followed, so a search cannot leave the workspace.
            let Ok(meta) = child.path().symlink_metadata() else { continue };
            if meta.is_dir() && !name.eq_ignore_ascii_case(".git") && !SKIPPED_DIRS.contains(&name.as_str()) {
                self.walk(&child.path(), &path);
            } else if meta.is_file() && meta.len() <= self.max_file_bytes {
                self.file(&child.path(), &path);
            }
        }
    }

    /// Searches one file, if it is text within the size cap.
    pub(super) fn file(&mut self, file: &Path, shown: &str) {
        self.files += 1;
        if self.files > MAX_SEARCH_FILES {
            self.more = true;
            return;
        }
        if looks_secret(shown) {
            return;
        }
        let Ok(text) = read_text(file, self.max_file_bytes) else { return };
        for (number, line) in text.lines().enumerate() {
            if line.contains(self.pattern) {
                if self.matches.len() >= MAX_SEARCH_MATCHES {
                    self.more = true;
                    return;
                }
                let line = truncate_chars(line.trim(), MAX_MATCH_LINE_CHARS);
                self.matches.push(format!("{shown}:{}: {line}", number + 1));
            }
        }
    }
}
