//! Applying proposed changes: confinement to the workspace and all-or-nothing validation.

use std::path::Path;

use agent_runner::llm::{
    CodeChange, ImplementError, MAX_CHANGED_FILES, MAX_WRITE_BYTES, Operation, ProposedChanges, apply_changes,
};

fn change(path: &str, operation: Operation, content: Option<&str>) -> CodeChange {
    CodeChange { file_path: path.into(), operation, content: content.map(str::to_string) }
}

fn create(path: &str, content: &str) -> CodeChange {
    change(path, Operation::Create, Some(content))
}

fn changes(list: Vec<CodeChange>) -> ProposedChanges {
    ProposedChanges { code_changes: list, explanation: String::new() }
}

/// Lists every path under `root`, so a test can prove nothing was written.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Applies `[valid create, bad]` and asserts the bad one is rejected and nothing changed.
fn assert_rejected(workspace: &Path, bad: CodeChange, reason: &str) {
    let before = listing(workspace);
    let shown = bad.file_path.clone();
    let err = apply_changes(workspace, &changes(vec![create("first.txt", "1"), bad])).unwrap_err();
    assert_eq!(err.to_string(), format!("change 1 ({shown}) rejected: {reason}"));
    assert_eq!(listing(workspace), before, "something was written for {shown}");
}

#[test]
fn unsafe_paths_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::create_dir(ws.join(".git")).unwrap();
    std::fs::write(ws.join(".git/config"), "[core]\n").unwrap();
    assert_rejected(ws, create("/tmp/abs.txt", "x"), "absolute paths are not allowed");
    assert_rejected(ws, create("../x", "x"), "\"..\" is not allowed in paths");
    assert_rejected(ws, create("src/../../x", "x"), "\"..\" is not allowed in paths");
    assert_rejected(ws, create(".git/config", "x"), "writes into .git are not allowed");
    assert_rejected(ws, create("a/.GIT/x", "x"), "writes into .git are not allowed");
    assert_rejected(
        ws,
        change("gone.txt", Operation::Modify, Some("x")),
        "modify of a file that does not exist (use create)",
    );
    assert_rejected(
        ws,
        change("new.txt", Operation::Create, None),
        "content is missing for create or modify",
    );
    let big = "x".repeat(MAX_WRITE_BYTES + 1);
    let reason = format!("content is {} bytes, more than the {MAX_WRITE_BYTES} allowed", big.len());
    assert_rejected(ws, create("big.txt", &big), &reason);
    assert_eq!(std::fs::read_to_string(ws.join(".git/config")).unwrap(), "[core]\n");
}

#[cfg(unix)]
#[test]
fn symlinks_cannot_lead_out_of_the_workspace_or_into_git() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("target.txt"), "outside").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::create_dir(ws.join(".git")).unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("target.txt"), ws.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(ws.join(".git"), ws.join("g")).unwrap();
    std::os::unix::fs::symlink(ws.join("nowhere"), ws.join("dangling")).unwrap();

    assert_rejected(ws, create("out/evil.txt", "x"), "out resolves outside the workspace through a symlink");
    assert_rejected(
        ws,
        create("out/deeper/evil.txt", "x"),
        "out resolves outside the workspace through a symlink",
    );
    assert_rejected(ws, create("link.txt", "x"), "the path is a symlink; writing through it is not allowed");
    assert_rejected(ws, create("g/hooks/pre-commit", "x"), "g resolves into .git through a symlink");
    assert_rejected(ws, create("dangling/x.txt", "x"), "dangling is a dangling symlink or unreadable");
    assert_eq!(std::fs::read_to_string(outside.path().join("target.txt")).unwrap(), "outside");
    assert_eq!(listing(outside.path()), ["target.txt"]);
}

#[test]
fn conflicting_and_malformed_change_sets_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::write(ws.join("file.txt"), "x").unwrap();
    assert_rejected(ws, create("first.txt", "again"), "the same file is changed twice");
    assert_rejected(ws, create("first.txt/inner.txt", "x"), "first.txt is also changed as a file");
    assert_rejected(ws, create("file.txt/inner.txt", "x"), "file.txt is a file, not a directory");

    let too_many: Vec<_> = (0..=MAX_CHANGED_FILES).map(|i| create(&format!("f{i}"), "x")).collect();
    let err = apply_changes(ws, &changes(too_many)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "LLM answer unusable: the model proposed 51 file changes, more than the 50 allowed"
    );
    assert!(matches!(apply_changes(ws, &changes(vec![])).unwrap_err(), ImplementError::NoChanges));
    assert_eq!(listing(ws), ["file.txt"]);
}

#[cfg(unix)]
#[test]
fn create_modify_and_delete_apply_in_order() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::write(ws.join("run.sh"), "echo old\n").unwrap();
    std::fs::set_permissions(ws.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(ws.join("old.txt"), "bye").unwrap();
    std::fs::write(ws.join("existing.txt"), "before").unwrap();

    let list = vec![
        change("run.sh", Operation::Modify, Some("echo new\n")),
        change("old.txt", Operation::Delete, None),
        change("never-was.txt", Operation::Delete, None),
        create("./src/nested/new.rs", "fn main() {}\n"),
        create("existing.txt", "after"),
    ];
    let changed = apply_changes(ws, &changes(list)).unwrap();
    assert_eq!(changed, ["run.sh", "old.txt", "src/nested/new.rs", "existing.txt"]);
    assert_eq!(std::fs::read_to_string(ws.join("run.sh")).unwrap(), "echo new\n");
    assert_eq!(std::fs::metadata(ws.join("run.sh")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::read_to_string(ws.join("src/nested/new.rs")).unwrap(), "fn main() {}\n");
    assert_eq!(std::fs::read_to_string(ws.join("existing.txt")).unwrap(), "after");
    assert_eq!(listing(ws), ["existing.txt", "run.sh", "src", "src/nested", "src/nested/new.rs"]);
}
