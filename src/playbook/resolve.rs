//! Which playbook a task gets.
//!
//! Resolution order, first match wins:
//! 1. an inline playbook object in the task message;
//! 2. a name from the message: `<playbooks_dir>/<name>.yaml` for a plain name, or — when the
//!    string ends in `.yaml`/`.yml` — a path inside the repository workspace, confined to it;
//! 3. the repository's own `.necrocode/playbook.yaml`;
//! 4. the skill default `<playbooks_dir>/<required_skill>.yaml`;
//! 5. `<playbooks_dir>/generic.yaml`;
//! 6. the compiled-in [`BUILTIN_PLAYBOOK_YAML`].
//!
//! Levels 1 and 2 are explicit requests: if they cannot be honoured the task fails rather
//! than silently running something else. Levels 3–5 are used only when the file exists.

use std::path::{Component, Path, PathBuf};

use super::PlaybookError;
use super::model::Playbook;
use super::parse::{MAX_PLAYBOOK_BYTES, parse_playbook, playbook_from_json};

/// Where a repository keeps its own playbook, relative to its root.
pub const REPOSITORY_PLAYBOOK: &str = ".necrocode/playbook.yaml";

/// Used when nothing else applies: proves the workspace is a readable git repository
/// without assuming any toolchain.
pub const BUILTIN_PLAYBOOK_YAML: &str = "\
name: built-in default
steps:
  - name: workspace is a git repository
    command: git status --porcelain >/dev/null
    timeout_seconds: 60
";

/// The `playbook` field of a task message.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaybookSpec {
    /// A plain name in the playbooks directory, or a `.yaml`/`.yml` path in the repository.
    Named(String),
    /// A playbook object given in the message itself.
    Inline(serde_json::Value),
}

/// A playbook with a human-readable account of where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPlaybook {
    pub playbook: Playbook,
    /// For logs and the summary, e.g. `playbooks/rust.yaml (default for skill 'rust')`.
    pub source: String,
}

/// Picks the task's playbook following the module's resolution order.
pub fn resolve_playbook(
    spec: Option<&PlaybookSpec>,
    required_skill: Option<&str>,
    playbooks_dir: &Path,
    workspace: &Path,
) -> Result<ResolvedPlaybook, PlaybookError> {
    match spec {
        Some(PlaybookSpec::Inline(value)) => {
            let source = "inline playbook in the task message".to_string();
            return Ok(ResolvedPlaybook { playbook: playbook_from_json(value, &source)?, source });
        }
        Some(PlaybookSpec::Named(name)) if is_path_like(name) => {
            let path = confined_path(workspace, name)?;
            return load(&path, name, format!("{name} in the repository"));
        }
        Some(PlaybookSpec::Named(name)) => {
            check_plain_name(name)?;
            let path = playbooks_dir.join(format!("{name}.yaml"));
            let shown = path.display().to_string();
            return load(&path, &shown, format!("{shown} (named in the task)"));
        }
        None => {}
    }
    let own = workspace.join(REPOSITORY_PLAYBOOK);
    if own.exists() {
        let path = confined_path(workspace, REPOSITORY_PLAYBOOK)?;
        let source = format!("{REPOSITORY_PLAYBOOK} in the repository");
        return load(&path, REPOSITORY_PLAYBOOK, source);
    }
    if let Some(skill) = required_skill {
        match check_plain_name(skill) {
            Ok(()) => {
                let path = playbooks_dir.join(format!("{skill}.yaml"));
                if path.exists() {
                    let shown = path.display().to_string();
                    return load(&path, &shown, format!("{shown} (default for skill '{skill}')"));
                }
            }
            // A skill is a routing label first; one that is not a file name just has no default.
            Err(e) => {
                tracing::warn!(error = %e, "required_skill cannot name a playbook; ignoring it")
            }
        }
    }
    let generic = playbooks_dir.join("generic.yaml");
    if generic.exists() {
        let shown = generic.display().to_string();
        return load(&generic, &shown, shown.clone());
    }
    let source = "built-in default".to_string();
    Ok(ResolvedPlaybook { playbook: parse_playbook(BUILTIN_PLAYBOOK_YAML, &source)?, source })
}

fn is_path_like(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// A plain name is a file stem: no separators, no dot-files, nothing that walks directories.
fn check_plain_name(name: &str) -> Result<(), PlaybookError> {
    let bad = |reason| Err(PlaybookError::BadName { name: name.to_string(), reason });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.starts_with('.') {
        return bad("it starts with '.'");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return bad("only letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

/// Resolves `relative` inside `workspace`, refusing absolute paths, `..`, and symlinks that
/// lead outside: the repository is untrusted input.
fn confined_path(workspace: &Path, relative: &str) -> Result<PathBuf, PlaybookError> {
    let outside = || PlaybookError::OutsideWorkspace { path: relative.to_string() };
    let rel = Path::new(relative);
    if !rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(outside());
    }
    let shown = relative.to_string();
    let real = workspace.join(rel).canonicalize().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => PlaybookError::NotFound { path: shown.clone() },
        _ => PlaybookError::Read { path: shown.clone(), source },
    })?;
    let root = workspace
        .canonicalize()
        .map_err(|source| PlaybookError::Read { path: workspace.display().to_string(), source })?;
    if !real.starts_with(&root) {
        return Err(outside());
    }
    Ok(real)
}

/// Reads and parses a playbook file, refusing oversized files before reading them.
/// `shown` names the file in errors (repository files by their path in the repository).
fn load(path: &Path, shown: &str, source: String) -> Result<ResolvedPlaybook, PlaybookError> {
    let shown = shown.to_string();
    let read_error = |source| PlaybookError::Read { path: shown.clone(), source };
    let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PlaybookError::NotFound { path: shown.clone() },
        _ => read_error(e),
    })?;
    if metadata.len() > MAX_PLAYBOOK_BYTES as u64 {
        let max = MAX_PLAYBOOK_BYTES as u64;
        return Err(PlaybookError::TooLarge { path: shown, size: metadata.len(), max });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    let playbook = parse_playbook(&text, &shown)?;
    Ok(ResolvedPlaybook { playbook, source })
}
