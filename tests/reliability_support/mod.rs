//! Git helpers shared by the reliability tests: planting a branch on a bare origin and
//! counting what a task branch carries.
#![allow(dead_code)]

use std::path::Path;

use git2::{Repository, Signature};

/// Commits `file` = `content` on top of `base` in the bare repository at `origin` and
/// points `branch` at it, as a human pushing to the task's branch name would.
pub fn plant_branch(origin: &Path, base: &str, branch: &str, file: &str, content: &str, message: &str) {
    let repo = Repository::open_bare(origin).unwrap();
    let parent = repo.find_reference(&format!("refs/heads/{base}")).unwrap().peel_to_commit().unwrap();
    let mut builder = repo.treebuilder(Some(&parent.tree().unwrap())).unwrap();
    builder.insert(file, repo.blob(content.as_bytes()).unwrap(), 0o100644).unwrap();
    let tree = repo.find_tree(builder.write().unwrap()).unwrap();
    let who = Signature::now("Someone", "someone@example.com").unwrap();
    repo.commit(Some(&format!("refs/heads/{branch}")), &who, &who, message, &tree, &[&parent]).unwrap();
}

/// The messages of the commits `branch` has on top of `base`, newest first; `None` when
/// the branch does not exist.
pub fn commits_on_branch(origin: &Path, base: &str, branch: &str) -> Option<Vec<String>> {
    let repo = Repository::open_bare(origin).unwrap();
    let tip = repo.find_reference(&format!("refs/heads/{branch}")).ok()?.peel_to_commit().unwrap().id();
    let base = repo.find_reference(&format!("refs/heads/{base}")).unwrap().peel_to_commit().unwrap().id();
    let mut walk = repo.revwalk().unwrap();
    walk.push(tip).unwrap();
    walk.hide(base).unwrap();
    Some(
        walk.map(|oid| repo.find_commit(oid.unwrap()).unwrap().message().unwrap_or("").to_string()).collect(),
    )
}
