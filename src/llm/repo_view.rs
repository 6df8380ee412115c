//! What the model gets to see of the repository: the file tree and a few small files.
//!
//! The view is bounded (entries, bytes) so a large repository cannot crowd the task out of
//! the context window. It never follows symlinks (a link could point at `/etc` or a
//! secret outside the checkout), never reads `.git`, never opens FIFOs, sockets or devices
//! (their metadata is checked first), and never sends files whose names suggest secrets,
//! since the text leaves the machine.

use std::path::Path;

/// Tree lines shown: ~40 bytes each, so ~16 KB (~4k tokens) — enough to see the layout.
pub const DEFAULT_MAX_TREE_ENTRIES: usize = 400;
/// File text shown: ~48 KB (~12k tokens), leaving room in a 32k-token local model for the
/// task, the instructions and the answer.
pub const DEFAULT_MAX_CONTENT_BYTES: usize = 48 * 1024;
/// Largest single file shown: a bigger one would take a third of the budget by itself.
pub const DEFAULT_MAX_FILE_BYTES: usize = 16 * 1024;
/// Entries walked at most: bounds the time spent on huge checkouts (vendored trees).
pub(crate) const MAX_WALK_ENTRIES: usize = 20_000;
/// Bytes inspected for NUL to call a file binary (git's own heuristic looks at 8000).
pub(crate) const BINARY_SNIFF_BYTES: usize = 8000;
/// Build output and dependency caches: listed as one entry, not descended into.
pub(crate) const SKIPPED_DIRS: &[&str] =
    &["node_modules", "target", ".venv", "venv", "__pycache__", ".tox", ".mypy_cache"];
/// The repository's own worker configuration (its playbook): listed, its text not shown.
/// Its one fact the model needs, the test command, is in the task section already, and a
/// small model shown a YAML file it may not change (a protected path) tends to edit it.
const CONFIG_DIR: &str = ".necrocode/";
/// Top-level files that say what the project is and how it builds; shown before others.
const MANIFESTS: &[&str] = &[
    "Cargo.toml",
    "package.json",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "requirements.txt",
    "go.mod",
    "Makefile",
    "CMakeLists.txt",
    "pom.xml",
    "build.gradle",
    "Gemfile",
    "tsconfig.json",
];

/// Limits for [`repo_view`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RepoViewBudget {
    pub max_tree_entries: usize,
    pub max_content_bytes: usize,
    pub max_file_bytes: usize,
}

impl Default for RepoViewBudget {
    fn default() -> Self {
        RepoViewBudget {
            max_tree_entries: DEFAULT_MAX_TREE_ENTRIES,
            max_content_bytes: DEFAULT_MAX_CONTENT_BYTES,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// One line of the file tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Relative, `/`-separated.
    pub path: String,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File {
        size: u64,
    },
    Symlink,
    /// A build or dependency directory that was not walked.
    SkippedDir,
}

/// A file shown in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileText {
    pub path: String,
    pub content: String,
}

/// The bounded view of a workspace, ready to render into the prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoView {
    /// Sorted by path, at most `max_tree_entries`.
    pub tree: Vec<TreeEntry>,
    /// Entries left out of `tree` by the cap.
    pub omitted_entries: usize,
    /// The walk stopped at its own limit, so `omitted_entries` is a lower bound.
    pub walk_truncated: bool,
    pub files: Vec<FileText>,
}

impl RepoView {
    /// The tree as text, one `path (N bytes)` line per entry, then `... and K more`.
    pub fn render_tree(&self) -> String {
        let mut out = String::new();
        for entry in &self.tree {
            let line = match entry.kind {
                EntryKind::File { size } => format!("{} ({size} bytes)\n", entry.path),
                EntryKind::Symlink => format!("{} (symlink)\n", entry.path),
                EntryKind::SkippedDir => format!("{}/ (not listed)\n", entry.path),
            };
            out.push_str(&line);
        }
        if self.omitted_entries > 0 || self.walk_truncated {
            let more = if self.walk_truncated { "at least " } else { "" };
            out.push_str(&format!("... and {more}{} more\n", self.omitted_entries));
        }
        out
    }
}

/// Builds the view of `workspace` within `budget`, from the disk (a workspace the task
/// has changed; [`super::repo_view_at`] serves a clean checkout from its commit).
pub fn repo_view(workspace: &Path, budget: RepoViewBudget) -> std::io::Result<RepoView> {
    crate::metrics::record_worktree_scan();
    let mut entries = Vec::new();
    let walk_truncated = !walk(workspace, "", &mut entries)?;
    // Metadata first and at most the cap: the file may have become a FIFO or grown since
    // the walk; such a file is simply not shown.
    let read = |path: &str| {
        crate::workspace_files::read_capped(&workspace.join(path), budget.max_file_bytes as u64).ok()
    };
    Ok(assemble(entries, walk_truncated, budget, read))
}

/// The view from the listed `entries` (in any order) and a reader of a listed file's
/// bytes (`None`: not shown).
pub(crate) fn assemble(
    mut entries: Vec<TreeEntry>,
    walk_truncated: bool,
    budget: RepoViewBudget,
    read: impl FnMut(&str) -> Option<Vec<u8>>,
) -> RepoView {
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let files = pick_files(&entries, budget, read);
    let omitted_entries = entries.len().saturating_sub(budget.max_tree_entries);
    entries.truncate(budget.max_tree_entries);
    RepoView { tree: entries, omitted_entries, walk_truncated, files }
}

/// Collects entries under `dir`; false when [`MAX_WALK_ENTRIES`] stopped the walk.
fn walk(root: &Path, prefix: &str, out: &mut Vec<TreeEntry>) -> std::io::Result<bool> {
    let dir = if prefix.is_empty() { root.to_path_buf() } else { root.join(prefix) };
    let mut children: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    children.sort_by_key(|c| c.file_name());
    for child in children {
        if out.len() >= MAX_WALK_ENTRIES {
            return Ok(false);
        }
        let name = child.file_name().to_string_lossy().into_owned();
        if name == ".git" {
            continue;
        }
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        // symlink_metadata: a link is reported, never followed.
        let meta = child.path().symlink_metadata()?;
        if meta.file_type().is_symlink() {
            out.push(TreeEntry { path, kind: EntryKind::Symlink });
        } else if meta.is_dir() {
            if SKIPPED_DIRS.contains(&name.as_str()) {
                out.push(TreeEntry { path, kind: EntryKind::SkippedDir });
            } else if !walk(root, &path, out)? {
                return Ok(false);
            }
        } else if meta.is_file() {
            out.push(TreeEntry { path, kind: EntryKind::File { size: meta.len() } });
        }
    }
    Ok(true)
}

/// Order of preference: top-level README, top-level manifests, then the rest smallest first.
fn rank(path: &str) -> u8 {
    let top_level = !path.contains('/');
    if top_level && path.to_ascii_lowercase().starts_with("readme") {
        0
    } else if top_level && MANIFESTS.contains(&path) {
        1
    } else {
        2
    }
}

/// Names whose content may be a credential; the view leaves the machine, so never send them.
pub(crate) fn looks_secret(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    name.starts_with(".env")
        || name.starts_with("id_rsa")
        || name.starts_with("id_ed25519")
        || name.starts_with(".netrc")
        || name.starts_with(".npmrc")
        || name.starts_with(".pypirc")
        || [".pem", ".key", ".p12", ".pfx", ".keystore"].iter().any(|ext| name.ends_with(ext))
}

fn pick_files(
    entries: &[TreeEntry],
    budget: RepoViewBudget,
    mut read: impl FnMut(&str) -> Option<Vec<u8>>,
) -> Vec<FileText> {
    let mut candidates: Vec<(u8, u64, &str)> = entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::File { size }
                if size as usize <= budget.max_file_bytes
                    && !looks_secret(&e.path)
                    && !e.path.starts_with(CONFIG_DIR) =>
            {
                Some((rank(&e.path), size, e.path.as_str()))
            }
            _ => None,
        })
        .collect();
    candidates.sort();
    let mut used = 0usize;
    let mut files = Vec::new();
    for (_, size, path) in candidates {
        if used + size as usize > budget.max_content_bytes {
            continue;
        }
        let Some(bytes) = read(path) else {
            continue;
        };
        if bytes[..bytes.len().min(BINARY_SNIFF_BYTES)].contains(&0) {
            continue;
        }
        // Not UTF-8 is binary for our purpose; the size may have changed since the walk.
        let Ok(content) = String::from_utf8(bytes) else {
            continue;
        };
        if used + content.len() > budget.max_content_bytes {
            continue;
        }
        used += content.len();
        files.push(FileText { path: path.to_string(), content });
    }
    // Shown in path order so related files sit together in the prompt.
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, content: &[u8]) {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, content).unwrap();
    }

    #[test]
    fn skips_git_and_binaries_and_secrets_and_prefers_readme() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, ".git/config", b"[core]\n");
        write(root, "README.md", &[b'r'; 100]);
        write(root, "Cargo.toml", b"[package]\n");
        write(root, "src/lib.rs", b"pub fn answer() -> u32 { 42 }\n");
        write(root, "logo.gif", b"GIF\0\0data");
        write(root, ".env", b"TOKEN=abc\n");
        write(root, "big.txt", &[b'x'; 300]);
        let budget = RepoViewBudget { max_tree_entries: 100, max_content_bytes: 125, max_file_bytes: 200 };
        let view = repo_view(root, budget).unwrap();
        let paths: Vec<&str> = view.tree.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, [".env", "Cargo.toml", "README.md", "big.txt", "logo.gif", "src/lib.rs"]);
        let shown: Vec<&str> = view.files.iter().map(|f| f.path.as_str()).collect();
        // README (100) + Cargo.toml (11) fit; logo.gif (9) would fit but holds NUL bytes;
        // src/lib.rs (30) would pass the 125-byte budget; big.txt is over the per-file cap;
        // .env looks like a secret.
        assert_eq!(shown, ["Cargo.toml", "README.md"]);
        assert_eq!(view.omitted_entries, 0);
    }

    #[test]
    fn the_repositorys_playbook_is_listed_but_not_shown() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".necrocode/playbook.yaml", b"name: t\nsteps: []\n");
        write(dir.path(), "main.py", b"print(1)\n");
        let view = repo_view(dir.path(), RepoViewBudget::default()).unwrap();
        let listed: Vec<&str> = view.tree.iter().map(|e| e.path.as_str()).collect();
        let shown: Vec<&str> = view.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            (listed.as_slice(), shown.as_slice()),
            (&[".necrocode/playbook.yaml", "main.py"][..], &["main.py"][..])
        );
    }

    #[test]
    fn tree_is_capped_with_a_count_of_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..7 {
            write(dir.path(), &format!("f{i}.txt"), b"abc");
        }
        let budget = RepoViewBudget { max_tree_entries: 3, max_content_bytes: 5, max_file_bytes: 5 };
        let view = repo_view(dir.path(), budget).unwrap();
        assert_eq!(
            view.render_tree(),
            "f0.txt (3 bytes)\nf1.txt (3 bytes)\nf2.txt (3 bytes)\n... and 4 more\n"
        );
        assert_eq!(view.files, [FileText { path: "f0.txt".into(), content: "abc".into() }]);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_listed_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.txt", b"do not send");
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("s.txt")).unwrap();
        let view = repo_view(dir.path(), RepoViewBudget::default()).unwrap();
        assert_eq!(
            view.tree,
            [
                TreeEntry { path: "out".into(), kind: EntryKind::Symlink },
                TreeEntry { path: "s.txt".into(), kind: EntryKind::Symlink }
            ]
        );
        assert!(view.files.is_empty());
    }
}
