//! Where a task's own `slot_path` may point: under a configured slot root
//! (`pool.slot_roots`), never at the root itself, never elsewhere.
//!
//! The worker resets, cleans and rewrites the origin of a slot before a task runs in it,
//! so a `slot_path` naming any other checkout on the host would destroy the work in it.
//! The check resolves the part of the path that exists (symlinks and `..` included)
//! before comparing, so a link or a `..` cannot step out of a root; a not yet existing
//! rest may not contain `..`.

use std::path::{Component, Path, PathBuf};

/// The path `slot_path` really names, when it lies strictly under one of `roots`; the
/// reason otherwise (without the roots, which are the operator's business).
pub fn resolve_slot_path(slot_path: &Path, roots: &[PathBuf]) -> Result<PathBuf, String> {
    if !slot_path.is_absolute() {
        return Err("must be an absolute path".to_string());
    }
    let resolved = resolve_existing_part(slot_path)?;
    for root in roots {
        // A root that cannot be resolved (not created yet) admits nothing but its literal
        // spelling, which has no symlinks to resolve.
        let root = resolve_existing_part(root).unwrap_or_else(|_| root.clone());
        if resolved != root && resolved.starts_with(&root) {
            return Ok(resolved);
        }
    }
    Err("is not under any directory in pool.slot_roots".to_string())
}

/// `path` with its longest existing ancestor canonicalised and the rest appended.
fn resolve_existing_part(path: &Path) -> Result<PathBuf, String> {
    let mut existing = path;
    let mut rest = Vec::new();
    let canonical = loop {
        match existing.canonicalize() {
            Ok(canonical) => break canonical,
            Err(_) => {
                let Some(parent) = existing.parent() else {
                    return Err("has no existing ancestor".to_string());
                };
                let Some(name) = existing.file_name() else {
                    return Err("has a `..` in its part that does not exist yet".to_string());
                };
                rest.push(name.to_os_string());
                existing = parent;
            }
        }
    };
    // The loop only walked over names (`file_name` is `None` for a `..`); this is the
    // second guard, on the part that was not canonicalised.
    let missing_part = path.strip_prefix(existing).map_err(|_| "cannot be resolved".to_string())?;
    if missing_part.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err("has a `..` in its part that does not exist yet".to_string());
    }
    Ok(rest.iter().rev().fold(canonical, |path, name| path.join(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_under_a_root_is_admitted_and_the_root_itself_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("slots");
        std::fs::create_dir_all(root.join("repo-1")).unwrap();
        let roots = [root.clone()];
        let canonical_root = root.canonicalize().unwrap();
        assert_eq!(resolve_slot_path(&root.join("repo-1"), &roots), Ok(canonical_root.join("repo-1")));
        assert_eq!(resolve_slot_path(&root.join("new/slot"), &roots), Ok(canonical_root.join("new/slot")));
        assert!(resolve_slot_path(&root, &roots).is_err());
        assert!(resolve_slot_path(&root.join("repo-1/.."), &roots).is_err());
    }

    #[test]
    fn dot_dot_and_symlinks_cannot_climb_out_of_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("slots");
        let victim = dir.path().join("victim");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&victim).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("link")).unwrap();
        let roots = [root.clone()];
        for path in [
            root.join("../victim"),
            root.join("link"),
            root.join("link/sub"),
            root.join("missing/../../victim"),
            dir.path().join("slotsevil"),
            victim.clone(),
        ] {
            assert!(resolve_slot_path(&path, &roots).is_err(), "{} was admitted", path.display());
        }
        assert!(resolve_slot_path(Path::new("relative/slot"), &roots).is_err());
    }
}
