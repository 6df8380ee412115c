//! The repository view of a clean checkout, read from its commit instead of the disk.
//!
//! Right after the workspace step the working tree is exactly the base commit's tree, so
//! the listing and the shown files can come from git's objects: no walk of the working
//! tree, and the same base (every task of a burst on one repository) is listed once per
//! process and served from a small cache keyed by tree id, which names the content.
//! Everything else follows [`super::repo_view`]: the same order, caps and exclusions, so
//! both give the same view of a clean checkout (a test compares them).

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use git2::{ObjectType, Odb, Oid, Repository, Tree};

use super::repo_view::{
    EntryKind, MAX_WALK_ENTRIES, RepoView, RepoViewBudget, SKIPPED_DIRS, TreeEntry, assemble,
};

/// Views kept: a worker serves a handful of repositories, each at a few bases at a time.
const CACHED_VIEWS: usize = 16;

type CachedView = ((Oid, RepoViewBudget), Arc<RepoView>);

fn cache() -> &'static Mutex<Vec<CachedView>> {
    static CACHE: OnceLock<Mutex<Vec<CachedView>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Vec::new()))
}

/// The view of `commit` (hex id) in the repository at `workspace`, within `budget`.
pub fn repo_view_at(workspace: &Path, commit: &str, budget: RepoViewBudget) -> Result<RepoView, git2::Error> {
    let repo = Repository::open(workspace)?;
    let tree = repo.find_commit(Oid::from_str(commit)?)?.tree()?;
    let key = (tree.id(), budget);
    let mut cached = cache().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, view)) = cached.iter().find(|(k, _)| *k == key) {
        return Ok(RepoView::clone(view));
    }
    drop(cached);
    let mut entries = Vec::new();
    let walk_truncated = !list(&repo, &repo.odb()?, &tree, "", &mut entries)?;
    let read = |path: &str| {
        let entry = tree.get_path(Path::new(path)).ok()?;
        let blob = repo.find_blob(entry.id()).ok()?;
        (blob.size() <= budget.max_file_bytes).then(|| blob.content().to_vec())
    };
    let view = Arc::new(assemble(entries, walk_truncated, budget, read));
    cached = cache().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if cached.len() >= CACHED_VIEWS {
        cached.remove(0);
    }
    cached.push((key, Arc::clone(&view)));
    Ok(RepoView::clone(&view))
}

/// Lists `tree` under `prefix` as the disk walk would list its checkout; false when
/// [`MAX_WALK_ENTRIES`] stopped it.
fn list(
    repo: &Repository,
    odb: &Odb<'_>,
    tree: &Tree<'_>,
    prefix: &str,
    out: &mut Vec<TreeEntry>,
) -> Result<bool, git2::Error> {
    for entry in tree.iter() {
        if out.len() >= MAX_WALK_ENTRIES {
            return Ok(false);
        }
        let name = String::from_utf8_lossy(entry.name_bytes()).into_owned();
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        match (entry.kind(), entry.filemode()) {
            (Some(ObjectType::Tree), _) if SKIPPED_DIRS.contains(&name.as_str()) => {
                out.push(TreeEntry { path, kind: EntryKind::SkippedDir });
            }
            (Some(ObjectType::Tree), _) => {
                let complete = list(repo, odb, &repo.find_tree(entry.id())?, &path, out)?;
                if !complete {
                    return Ok(false);
                }
            }
            (Some(ObjectType::Blob), 0o120000) => out.push(TreeEntry { path, kind: EntryKind::Symlink }),
            (Some(ObjectType::Blob), _) => {
                // The header alone gives the size; the blob is read only if it is shown.
                let (size, _) = odb.read_header(entry.id())?;
                out.push(TreeEntry { path, kind: EntryKind::File { size: size as u64 } });
            }
            // A submodule's commit: its checkout is not part of this repository.
            _ => {}
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let output = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    #[test]
    fn a_clean_checkout_looks_the_same_from_its_commit_as_from_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        let write = |path: &str, content: &[u8]| {
            let full = root.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        };
        write("README.md", b"# demo\n");
        write("Cargo.toml", b"[package]\n");
        write("src/lib.rs", b"pub fn f() {}\n");
        write("src/deep/er/mod.rs", b"// deep\n");
        write("logo.png", b"\x89PNG\0\0");
        write(".env.example", b"TOKEN=\n");
        write("node_modules/x/index.js", b"module.exports = 1;\n");
        write("big.txt", &[b'b'; 300]);
        std::os::unix::fs::symlink("src/lib.rs", root.join("link.rs")).unwrap();
        git(root, &["add", "-A"]);
        git(root, &["commit", "-q", "-m", "one"]);
        let head = git(root, &["rev-parse", "HEAD"]);
        let budget = RepoViewBudget { max_tree_entries: 100, max_content_bytes: 1000, max_file_bytes: 200 };

        let from_commit = repo_view_at(root, &head, budget).unwrap();
        let from_disk = super::super::repo_view(root, budget).unwrap();
        assert_eq!(from_commit, from_disk);
        assert!(from_commit.files.iter().any(|f| f.path == "src/deep/er/mod.rs"));
        assert!(from_commit.tree.iter().any(|e| e.path == "node_modules" && e.kind == EntryKind::SkippedDir));

        // Served again from the cache: the same view, even with the objects' files gone
        // from the disk view's point of view (the working tree changed).
        write("README.md", b"# changed on disk\n");
        assert_eq!(repo_view_at(root, &head, budget).unwrap(), from_commit);
    }
}
