//! A warm slot serving task after task: after this process's own commit the next reset
//! walks no working tree (the leftovers are known), and still ends exactly at the new
//! base; anything else that touched the slot since falls back to the full clean.
//!
//! One test function: the walk counter is process-wide, and the steps depend on each
//! other's slot.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use agent_runner::git::{
    CommitRequest, GitAuthor, GitCredentials, GitRemote, commit_all, diff_since, prepare_workspace,
    push_branch,
};
use agent_runner::metrics::{WORKTREE_SCANS, global};
use common::git;

fn write(root: &Path, path: &str, content: &str) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, content).unwrap();
}

/// Every file under `root` but `.git`, with its content (trimmed, as [`git`] gives it).
fn files_on_disk(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_name() == ".git" {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                found.insert(relative, std::fs::read_to_string(&path).unwrap().trim().to_string());
            }
        }
    }
    found
}

/// The files of `rev`'s tree in the slot's repository, with their content.
fn files_of(slot: &Path, rev: &str) -> BTreeMap<String, String> {
    git(slot, &["ls-tree", "-r", "--name-only", rev])
        .lines()
        .map(|path| (path.to_string(), git(slot, &["show", &format!("{rev}:{path}")])))
        .collect()
}

fn scans() -> f64 {
    global().value(&WORKTREE_SCANS, &[])
}

/// Asserts the slot is exactly `origin/main`'s tree on `branch`, with nothing else in it.
fn assert_pristine(slot: &Path, branch: &str, base: &str) {
    assert_eq!(files_on_disk(slot), files_of(slot, base), "the tree is the base's, nothing more");
    assert_eq!(git(slot, &["status", "--porcelain", "--ignored", "--untracked-files=all"]), "");
    assert_eq!(git(slot, &["rev-parse", "HEAD"]), base);
    assert_eq!(git(slot, &["symbolic-ref", "HEAD"]), format!("refs/heads/{branch}"));
}

#[test]
fn a_slot_after_our_commit_resets_without_a_walk_and_anything_else_gets_the_full_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = tmp.path().join("remote.git");
    git(tmp.path(), &["init", "-q", "--bare", "--initial-branch=main", bare.to_str().unwrap()]);
    let seed = tmp.path().join("seed");
    git(tmp.path(), &["clone", "-q", bare.to_str().unwrap(), seed.to_str().unwrap()]);
    git(&seed, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    write(&seed, "README.md", "hello\n");
    write(&seed, ".gitignore", "target/\n*.log\n");
    write(&seed, "old.txt", "to be deleted\n");
    write(&seed, "src/lib.py", "x = 1\n");
    write(&seed, "cache/tracked.pyc", "byte code v1\n");
    git(&seed, &["add", "-A", "-f"]);
    git(&seed, &["commit", "-q", "-m", "initial"]);
    git(&seed, &["push", "-q", "origin", "main"]);
    let slot = tmp.path().join("slot");
    git(tmp.path(), &["clone", "-q", bare.to_str().unwrap(), slot.to_str().unwrap()]);
    let remote = GitRemote::new(bare.to_str().unwrap(), GitCredentials::anonymous()).unwrap();
    let author = GitAuthor::default();
    let request = |message| CommitRequest {
        message,
        task_id: "t",
        runner_id: None,
        author: &author,
        remote: None,
        max_file_bytes: 1 << 20,
    };

    // Task 1 adds, changes, deletes, and leaves ignored output and caches behind.
    let first = prepare_workspace(&slot, &remote, "main", "task-1").unwrap();
    write(&slot, "new/deep/file.txt", "added\n");
    write(&slot, "README.md", "changed\n");
    std::fs::remove_file(slot.join("old.txt")).unwrap();
    write(&slot, "target/debug/out.bin", "build output\n");
    write(&slot, "run.log", "log\n");
    write(&slot, "src/__pycache__/lib.cpython-312.pyc", "untracked cache\n");
    write(&slot, "cache/tracked.pyc", "byte code v2\n");
    let before = scans();
    let committed = commit_all(&slot, &request("task 1")).unwrap().expect("a commit");
    assert_eq!(committed.files_changed, ["README.md", "new/deep/file.txt", "old.txt"]);
    assert_eq!(scans() - before, 2.0, "the commit walks twice: the special-file sweep and one status");
    assert_eq!(
        git(&slot, &["show", "HEAD:cache/tracked.pyc"]),
        "byte code v1",
        "a cache keeps HEAD's version"
    );
    // What the pipeline does after the commit only reads the tree.
    assert!(diff_since(&slot, &first.base_commit, 1 << 20).unwrap().contains("+added"));
    push_branch(&slot, &remote, "task-1").unwrap();

    // Someone else moves main on; task 2 starts on the new base without walking the tree.
    write(&seed, "upstream.txt", "theirs\n");
    write(&seed, "src/lib.py", "x = 2\n");
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "upstream"]);
    git(&seed, &["push", "-q", "origin", "main"]);
    let before = scans();
    let second = prepare_workspace(&slot, &remote, "main", "task-2").unwrap();
    assert_eq!(scans() - before, 0.0, "our own commit's leftovers are known: no walk");
    assert_ne!(second.base_commit, first.base_commit);
    assert_pristine(&slot, "task-2", &second.base_commit);

    // Task 2 changes nothing tracked but leaves ignored output: the record still serves.
    write(&slot, "target/again.bin", "more output\n");
    assert!(commit_all(&slot, &request("task 2")).unwrap().is_none());
    let before = scans();
    prepare_workspace(&slot, &remote, "main", "task-3").unwrap();
    assert_eq!(scans() - before, 0.0);
    assert_pristine(&slot, "task-3", &second.base_commit);

    // Task 3 commits, then something rewrites the index (a command in the checkout could):
    // the record no longer holds and the full clean runs.
    write(&slot, "third.txt", "three\n");
    commit_all(&slot, &request("task 3")).unwrap().expect("a commit");
    write(&slot, "stray.txt", "planted after the commit\n");
    std::thread::sleep(std::time::Duration::from_millis(20));
    git(&slot, &["add", "stray.txt"]);
    let before = scans();
    prepare_workspace(&slot, &remote, "main", "task-4").unwrap();
    assert_eq!(scans() - before, 3.0, "special-file sweep, checkout and clean");
    assert_pristine(&slot, "task-4", &second.base_commit);

    // Task 4 fails before committing: its junk is unknown, so the next reset walks.
    write(&slot, "junk/left.txt", "failed task's output\n");
    write(&slot, "README.md", "half-done edit\n");
    let before = scans();
    prepare_workspace(&slot, &remote, "main", "task-5").unwrap();
    assert_eq!(scans() - before, 3.0);
    assert_pristine(&slot, "task-5", &second.base_commit);
}
