//! The workspace as the tools see it: confined reads, searches and writes.
//!
//! Reads resolve the path (following symlinks) and refuse anything that lands outside the
//! workspace or inside `.git`, and files whose names suggest credentials (their text would
//! leave the machine). Writes go through [`apply_changes`], which refuses `..`, absolute
//! paths, `.git`, symlinked parents pointing out and writing through symlinks; before that
//! the protected globs are checked on the path as written AND as resolved, so a symlinked
//! directory cannot be used to reach a protected file.
//!
//! Files are opened only through [`crate::workspace_files::read_capped`]: FIFOs, sockets
//! and devices are refused (a FIFO would block the worker in `open` for good) and so are
//! files over the configured size cap (read whole they would grow the worker by their
//! size). The calls are synchronous; [`Workspace::off_thread`] runs them on the blocking
//! pool so the task's deadline and cancellation never wait on a slow file system.
//!
//! Every failure is text for the model, never an error of the step.

use std::path::{Component, Path, PathBuf};

use super::glob::ProtectedPaths;
use super::search::Search;
use crate::llm::edits::confine_path;
use crate::llm::repo_view::{BINARY_SNIFF_BYTES, looks_secret};
use crate::llm::{CodeChange, ImplementError, Operation, ProposedChanges, apply_changes, truncate_chars};
use crate::workspace_files::{ReadRefusal, read_capped, special_kind};

/// Bytes of a file returned by one read: ~8k tokens; the model asks for line ranges beyond.
pub const MAX_READ_BYTES: usize = 32 * 1024;
/// Entries listed per directory.
pub const MAX_LIST_ENTRIES: usize = 500;
/// Matches returned by one search.
pub const MAX_SEARCH_MATCHES: usize = 100;
/// Files visited by one search: bounds the time spent in huge trees.
pub const MAX_SEARCH_FILES: usize = 20_000;
/// Files larger than this are not searched (generated or data files).
pub const MAX_SEARCH_FILE_BYTES: u64 = 1024 * 1024;

/// A write the tools refused because the path is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub path: String,
    pub pattern: String,
}

/// What a write did.
pub type WriteResult = Result<String, WriteError>;

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// The path is protected: recorded, and told to the model.
    Protected(Refusal),
    /// The file already holds exactly this: nothing was written, and it is no change
    /// (a model rewriting the same content again and again is stalled, not working).
    Unchanged(String),
    /// Anything else, in words for the model.
    Other(String),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Protected(r) => write!(
                f,
                "{} is protected (matches `{}`): it may be read but not created, changed or deleted; \
                 make the tests pass by changing the code, not the tests",
                r.path, r.pattern
            ),
            WriteError::Unchanged(path) => write!(f, "no change: {path} already holds exactly this"),
            WriteError::Other(text) => f.write_str(text),
        }
    }
}

/// The workspace root and its protection rules.
#[derive(Debug, Clone)]
pub struct Workspace {
    root: PathBuf,
    protected: ProtectedPaths,
    /// Largest file read (`limits.max_file_bytes`).
    max_file_bytes: u64,
}

impl Workspace {
    /// Opens `root` (resolved once, so symlinks in its own path do not matter); files over
    /// `max_file_bytes` are refused to the model.
    pub fn new(root: &Path, protected: ProtectedPaths, max_file_bytes: u64) -> Result<Self, ImplementError> {
        let root = root.canonicalize().map_err(|source| ImplementError::Io {
            action: "resolving workspace",
            path: root.display().to_string(),
            source,
        })?;
        Ok(Workspace { root, protected, max_file_bytes })
    }

    /// Runs `work` on a clone of this workspace on the blocking pool. The caller's future
    /// can then be dropped by the task's deadline or a shutdown, whatever the file system
    /// does; `on_panic` words a panicked call for the model.
    pub async fn off_thread<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Workspace) -> T + Send + 'static,
        on_panic: impl FnOnce(String) -> T,
    ) -> T {
        let workspace = self.clone();
        match crate::telemetry::spawn_blocking_in_span(move || work(&workspace)).await {
            Ok(outcome) => outcome,
            Err(join) => on_panic(format!("the tool failed: {join}")),
        }
    }

    /// Resolves a path for reading; `allow_root` lets `""` and `.` name the root.
    fn resolve(&self, path: &str, allow_root: bool) -> Result<(PathBuf, String), String> {
        let rel = normalize(path)?;
        if rel.as_os_str().is_empty() && !allow_root {
            return Err("the path names no file".into());
        }
        let real = self.root.join(&rel).canonicalize().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{path}: no such file or directory"),
            _ => format!("{path}: cannot be opened: {e}"),
        })?;
        let inside =
            real.strip_prefix(&self.root).map_err(|_| format!("{path} resolves outside the workspace"))?;
        if has_git(inside) {
            return Err(format!("{path} resolves into .git, which is not readable"));
        }
        let shown = slash_path(inside);
        if looks_secret(&shown) || looks_secret(&slash_path(&rel)) {
            return Err(format!("{path} may hold credentials; such files are not shown"));
        }
        Ok((real, shown))
    }

    /// Lists a directory: `name/` for directories, `name (N bytes)` for files.
    pub fn list_dir(&self, path: &str) -> Result<String, String> {
        let (dir, shown) = self.resolve(path, true)?;
        let meta = std::fs::symlink_metadata(&dir).map_err(|e| format!("{path}: cannot be listed: {e}"))?;
        if let Some(kind) = special_kind(&meta) {
            return Err(format!("{shown} is {kind}; special files are neither read nor listed"));
        }
        if !meta.is_dir() {
            return Err(format!("{shown} is a file, not a directory; use read_file"));
        }
        let reader = std::fs::read_dir(&dir).map_err(|e| format!("{path}: cannot be listed: {e}"))?;
        let mut lines = Vec::new();
        for entry in reader.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.eq_ignore_ascii_case(".git") {
                continue;
            }
            let line = match entry.path().symlink_metadata() {
                Ok(m) if m.file_type().is_symlink() => format!("{name} (symlink)"),
                Ok(m) if m.is_dir() => format!("{name}/"),
                Ok(m) => match special_kind(&m) {
                    Some(kind) => format!("{name} ({kind}, not readable)"),
                    None => format!("{name} ({} bytes)", m.len()),
                },
                Err(_) => continue,
            };
            lines.push(line);
        }
        lines.sort();
        let total = lines.len();
        lines.truncate(MAX_LIST_ENTRIES);
        let title = if shown.is_empty() { "(workspace root)".to_string() } else { format!("{shown}/") };
        let mut out = format!("{title}: {total} entries\n{}", lines.join("\n"));
        if total > MAX_LIST_ENTRIES {
            out.push_str(&format!("\n... and {} more", total - MAX_LIST_ENTRIES));
        }
        Ok(out)
    }

    /// Reads a file, or lines `start..=end` of it (1-based).
    /// The whole text of a file, as `read_file` reads it, without its heading.
    pub fn text_of(&self, path: &str) -> Result<String, String> {
        let (file, shown) = self.resolve(path, false)?;
        read_text(&file, self.max_file_bytes).map_err(|reason| format!("{shown}: {reason}"))
    }

    pub fn read_file(&self, path: &str, start: Option<usize>, end: Option<usize>) -> Result<String, String> {
        let (file, shown) = self.resolve(path, false)?;
        let text = read_text(&file, self.max_file_bytes).map_err(|reason| format!("{shown}: {reason}"))?;
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let total = lines.len();
        let first = start.unwrap_or(1).max(1);
        let last = end.unwrap_or(total).min(total);
        if total > 0 && first > last {
            return Err(format!("{shown}: the range {first}-{last} is empty; the file has {total} lines"));
        }
        let mut out = String::new();
        let mut shown_last = first.saturating_sub(1);
        for line in lines.iter().take(last).skip(first.saturating_sub(1)) {
            if out.len() + line.len() > MAX_READ_BYTES {
                break;
            }
            out.push_str(line);
            shown_last += 1;
        }
        let mut header = format!("{shown} (lines {first}-{shown_last} of {total})\n");
        if shown_last < last {
            header = format!(
                "{shown} (lines {first}-{shown_last} of {total}; cut at {MAX_READ_BYTES} bytes, \
                 read from line {} on for more)\n",
                shown_last + 1
            );
        }
        Ok(header + &out)
    }

    /// Lines containing `pattern` (literal, case-sensitive) under `path`.
    pub fn search(&self, pattern: &str, path: &str) -> Result<String, String> {
        if pattern.is_empty() {
            return Err("the search pattern is empty".into());
        }
        let (start, shown) = self.resolve(path, true)?;
        let meta =
            std::fs::symlink_metadata(&start).map_err(|e| format!("{path}: cannot be searched: {e}"))?;
        if let Some(kind) = special_kind(&meta) {
            return Err(format!("{shown} is {kind}; special files are not searched"));
        }
        let max_file_bytes = self.max_file_bytes.min(MAX_SEARCH_FILE_BYTES);
        let mut state = Search::new(pattern, max_file_bytes);
        if meta.is_file() {
            state.file(&start, &shown);
        } else {
            state.walk(&start, &shown);
        }
        if state.matches.is_empty() {
            return Ok(format!("no match for {pattern:?}"));
        }
        let mut out = state.matches.join("\n");
        if state.more {
            out.push_str(&format!("\n(stopped at {MAX_SEARCH_MATCHES} matches or {MAX_SEARCH_FILES} files)"));
        }
        Ok(out)
    }

    /// Creates or overwrites a file.
    pub fn write_file(&self, path: &str, content: &str) -> WriteResult {
        if self.text_of(path).is_ok_and(|current| current == content) {
            return Err(WriteError::Unchanged(self.shown(path)));
        }
        self.change(path, Operation::Create, Some(content.to_string()))?;
        Ok(format!("wrote {} ({} bytes)", self.shown(path), content.len()))
    }

    /// Replaces the one occurrence of `search` with `replace`.
    pub fn edit_file(&self, path: &str, search: &str, replace: &str, replace_all: bool) -> WriteResult {
        if search.is_empty() {
            return Err(WriteError::Other(
                "the search text is empty; use write_file to create a file".into(),
            ));
        }
        self.check_protected(path)?;
        let (file, shown) = self.resolve(path, false).map_err(WriteError::Other)?;
        let text =
            read_text(&file, self.max_file_bytes).map_err(|r| WriteError::Other(format!("{shown}: {r}")))?;
        match text.matches(search).count() {
            0 => Err(WriteError::Other(not_found(&shown, &text))),
            _ if search == replace => Err(WriteError::Unchanged(shown)),
            1 => {
                let updated = text.replacen(search, replace, 1);
                self.change(path, Operation::Modify, Some(updated))?;
                Ok(format!("edited {shown}"))
            }
            n if replace_all => {
                let updated = text.replace(search, replace);
                self.change(path, Operation::Modify, Some(updated))?;
                Ok(format!("edited {shown}: {n} occurrences replaced"))
            }
            n => Err(WriteError::Other(format!(
                "the search text occurs {n} times in {shown}; include more surrounding lines so it \
                 occurs exactly once, or set replace_all to true to replace every occurrence (a rename)"
            ))),
        }
    }

    /// Deletes a file.
    pub fn delete_file(&self, path: &str) -> WriteResult {
        self.check_protected(path)?;
        let (file, shown) = self.resolve(path, false).map_err(WriteError::Other)?;
        if !file.is_file() {
            return Err(WriteError::Other(format!("{shown} is not a file")));
        }
        self.change(path, Operation::Delete, None)?;
        Ok(format!("deleted {shown}"))
    }

    /// The resolved workspace root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `path` names a readable file.
    pub fn exists(&self, path: &str) -> bool {
        self.resolve(path, false).is_ok_and(|(file, _)| file.is_file())
    }

    /// Refuses a write to a protected path, as written or as resolved.
    pub fn check_protected(&self, path: &str) -> Result<(), WriteError> {
        let Ok(rel) = confine_path(path) else { return Ok(()) }; // apply_changes names the problem
        let written = slash_path(&rel);
        let resolved = self.resolved_rel(&rel);
        for candidate in [Some(written.clone()), resolved].into_iter().flatten() {
            if let Some(pattern) = self.protected.matching(&candidate) {
                return Err(WriteError::Protected(Refusal { path: written, pattern: pattern.to_string() }));
            }
        }
        Ok(())
    }

    /// `rel` with its deepest existing ancestor resolved through symlinks, if that stays inside.
    fn resolved_rel(&self, rel: &Path) -> Option<String> {
        let full = self.root.join(rel);
        let existing = full.ancestors().find(|a| a.exists())?;
        let rest = full.strip_prefix(existing).ok()?;
        let real = existing.canonicalize().ok()?.join(rest);
        real.strip_prefix(&self.root).ok().map(slash_path)
    }

    fn change(&self, path: &str, operation: Operation, content: Option<String>) -> Result<(), WriteError> {
        self.check_protected(path)?;
        let change = CodeChange { file_path: path.to_string(), operation, content };
        let changes = ProposedChanges { code_changes: vec![change], explanation: String::new() };
        apply_changes(&self.root, &changes).map(|_| ()).map_err(|e| match e {
            ImplementError::Rejected { path, reason, .. } => WriteError::Other(format!("{path}: {reason}")),
            other => WriteError::Other(other.to_string()),
        })
    }

    /// The path as reported back: normalized when it can be.
    pub fn shown(&self, path: &str) -> String {
        confine_path(path).map(|p| slash_path(&p)).unwrap_or_else(|_| truncate_chars(path, 200))
    }
}

/// A small file is shown whole when a search text missed it: a small model that searched
/// for a line it imagined then has the real ones to copy.
const NOT_FOUND_SHOWS_BYTES: usize = 3000;

fn not_found(shown: &str, text: &str) -> String {
    let mut reason =
        format!("the search text was not found in {shown}; copy the text exactly, including whitespace");
    if text.len() <= NOT_FOUND_SHOWS_BYTES {
        reason.push_str(&format!(". {shown} now reads:\n{text}"));
    } else {
        reason.push_str(&format!(" (read_file {shown} to see it)"));
    }
    reason
}

/// Normalizes a relative path for reading (`""` and `.` are the root).
fn normalize(path: &str) -> Result<PathBuf, String> {
    if path.contains('\0') || path.contains('\\') {
        return Err("the path contains a backslash or NUL".into());
    }
    let mut rel = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(name) if name.eq_ignore_ascii_case(".git") => {
                return Err("paths inside .git are not allowed".into());
            }
            Component::Normal(name) => rel.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err("\"..\" is not allowed in paths".into()),
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute paths are not allowed; paths are relative to the workspace root".into());
            }
        }
    }
    Ok(rel)
}

fn has_git(rel: &Path) -> bool {
    rel.components().any(|c| matches!(c, Component::Normal(n) if n.eq_ignore_ascii_case(".git")))
}

fn slash_path(path: &Path) -> String {
    path.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// A file's text; special, oversized, binary and non-UTF-8 files are refused.
pub(super) fn read_text(file: &Path, max_bytes: u64) -> Result<String, String> {
    let bytes = read_capped(file, max_bytes).map_err(|refusal| match refusal {
        ReadRefusal::TooLarge { .. } => format!("{refusal}; it is not shown"),
        other => other.to_string(),
    })?;
    if bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0) {
        return Err("is a binary file".into());
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".into())
}
