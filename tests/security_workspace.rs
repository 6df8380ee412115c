//! Workspace content against the worker, end to end on the real RabbitMQ, a bare git
//! remote, real playbook steps and a tool-calling scripted model: a FIFO, a 3 GB sparse
//! file, a socket and a device node in the workspace are refused to the model, never
//! committed, and neither hang the worker nor grow its memory; the slot's clean removes
//! what a failed task left.
//!
//! The worker runs in this test process, so the process's peak resident memory (VmHWM,
//! reset at the start of the test that reads it) is the worker's.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use agent_runner::demo::sample::{self, GREET_CONTENT, GREET_PATH};
use agent_runner::llm::scripted::{Script, Step};
use common::Harness;
use serde_json::{Value, json};

/// Far below the 3 GiB file, far above what the worker and this test need themselves.
const MAX_PEAK_RESIDENT_KIB: u64 = 200 * 1024;

fn write_greet() -> Step {
    Step::call("write_file", json!({"path": GREET_PATH, "content": GREET_CONTENT}))
}

fn finish() -> Step {
    Step::call("finish", json!({"summary": "done"}))
}

/// The task, with an inline playbook of one step running `command`.
fn task(harness: &Harness, task_id: &str, command: &str) -> Value {
    let mut task = sample::sample_task(&harness.repo_url(), task_id);
    task["timeout_seconds"] = json!(120);
    task["playbook"] =
        json!({ "name": "workspace", "steps": [{ "name": "unit tests", "command": command }] });
    task
}

/// The tool answers the model had seen when it made its last request, in order.
fn tool_answers(harness: &Harness) -> Vec<String> {
    let requests = harness.llm.requests();
    let last = requests.last().expect("the model was called");
    last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The one slot the pool holds for the harness's origin.
fn slot_path(slots: &Path) -> PathBuf {
    let repo_dir = std::fs::read_dir(slots).unwrap().flatten().find(|e| e.path().is_dir()).unwrap();
    repo_dir.path().join("slot-0")
}

fn dead_letter_headers(letters: &[agent_runner::amqp::DeadLetter]) -> (String, String, String) {
    let header = |name: &str| letters[0].header_text(name).unwrap_or_default();
    (header("x-failure-kind"), header("x-failed-step"), header("x-failure-message"))
}

fn assert_answer(answers: &[String], index: usize, expected: &str) {
    assert!(answers[index].contains(expected), "answer {index}: {:?} lacks {expected:?}", answers[index]);
}

#[tokio::test]
async fn a_fifo_made_by_a_step_is_refused_to_every_tool_never_committed_and_cleaned_from_the_slot() {
    let harness = Harness::new(
        "workspace-fifo",
        Script::steps([
            // Task 1: the tools meet the FIFO the tests made.
            write_greet(),
            Step::call("run_tests", json!({})),
            Step::call("read_file", json!({"path": "fifo.txt"})),
            Step::call("list_dir", json!({"path": ""})),
            Step::call("search_text", json!({"pattern": "x", "path": "fifo.txt"})),
            Step::call("edit_file", json!({"path": "fifo.txt", "search": "a", "replace": "b"})),
            Step::call("write_file", json!({"path": "fifo.txt", "content": "x"})),
            finish(),
            // Task 2 fails its tests and leaves a FIFO in the slot; task 3 must not see it.
            // Its first finish is refused (the engine's own test run fails), the second ends
            // the round.
            write_greet(),
            finish(),
            finish(),
            write_greet(),
            finish(),
        ]),
    )
    .await;
    let make_fifo = "[ -p fifo.txt ] || mkfifo fifo.txt; sh tests/test_greet.sh";
    harness.publish("task.backend", &serde_json::to_vec(&task(&harness, "w.1", make_fifo)).unwrap()).await;
    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (1, 0));

    let answers = tool_answers(&harness);
    assert_eq!(answers.len(), 7, "{answers:?}");
    assert_answer(&answers, 1, "tests PASSED");
    assert_answer(&answers, 2, "fifo.txt: is a FIFO, not a regular file; special files are not read");
    assert_answer(&answers, 3, "fifo.txt (a FIFO, not readable)");
    assert_answer(&answers, 4, "fifo.txt is a FIFO; special files are not searched");
    assert_answer(&answers, 5, "fifo.txt: is a FIFO, not a regular file");
    assert_answer(&answers, 6, "the path is a FIFO; special files are neither read nor written");
    let (commit, _) = sample::branch_head(&harness.origin, "feature/task-greeter-w.1").unwrap().unwrap();
    assert_eq!(sample::file_at(&harness.origin, &commit, "fifo.txt").unwrap(), None);
    assert_eq!(
        sample::file_at(&harness.origin, &commit, GREET_PATH).unwrap().as_deref(),
        Some(GREET_CONTENT)
    );

    let mut config = harness.config();
    config.playbook.repair_rounds = 0;
    // Also in `.git`, where the slot pool reads its marker: reading a FIFO there would
    // block the next acquire for good.
    let marker = ".git/agent-runner-clone-complete";
    let leave_fifo = format!("mkfifo left.fifo; rm -f {marker}; mkfifo {marker}; exit 1");
    harness.publish("task.backend", &serde_json::to_vec(&task(&harness, "w.2", &leave_fifo)).unwrap()).await;
    let report = harness.run_worker(config, 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    let left = slot_path(&harness.dir.path().join("slots")).join("left.fifo");
    let kind = std::fs::symlink_metadata(&left).unwrap().file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&kind), "the failed task left its FIFO");
    let kind = std::fs::symlink_metadata(left.with_file_name(marker)).unwrap().file_type();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&kind), "and one in .git");

    let check_clean = "test ! -e left.fifo && sh tests/test_greet.sh";
    harness.publish("task.backend", &serde_json::to_vec(&task(&harness, "w.3", check_clean)).unwrap()).await;
    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (1, 0), "the next task on the slot saw no FIFO");
    harness.cleanup().await;
}

/// Peak resident memory of this process since the last reset, in KiB.
fn peak_resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_3gb_sparse_file_made_by_a_step_is_refused_to_the_model_and_to_the_commit() {
    let harness = Harness::new(
        "workspace-sparse",
        Script::steps([
            write_greet(),
            Step::call("run_tests", json!({})),
            Step::call("read_file", json!({"path": "big.txt"})),
            Step::call("edit_file", json!({"path": "big.txt", "search": "a", "replace": "b"})),
            Step::call("search_text", json!({"pattern": "zzz", "path": ""})),
            finish(),
        ]),
    )
    .await;
    // "5" resets VmHWM to the current resident size: what follows is the task's peak.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let make_sparse = "truncate -s 3G big.txt && sh tests/test_greet.sh";
    harness.publish("task.backend", &serde_json::to_vec(&task(&harness, "w.4", make_sparse)).unwrap()).await;
    let report = harness.run_worker(harness.config(), 1, 1).await;
    let peak = peak_resident_kib();
    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    assert!(peak < MAX_PEAK_RESIDENT_KIB, "the worker peaked at {peak} KiB");

    let answers = tool_answers(&harness);
    assert_eq!(answers.len(), 5, "{answers:?}");
    let too_large =
        "big.txt: is 3221225472 bytes, more than the 5242880-byte limit for files the worker reads";
    assert_answer(&answers, 2, too_large);
    assert_answer(&answers, 3, too_large);
    assert_answer(&answers, 4, "no match");

    let letters = agent_runner::amqp::browse_queue(&harness.session, &harness.names.dead_letter_queue, 10)
        .await
        .unwrap();
    let (kind, step, message) = dead_letter_headers(&letters);
    assert_eq!((kind.as_str(), step.as_str()), ("implementation", "commit"));
    assert!(message.contains("big.txt (3221225472 bytes)"), "{message}");
    assert!(message.contains("limits.max_file_bytes"), "{message}");
    assert_eq!(sample::branch_head(&harness.origin, "feature/task-greeter-w.4").unwrap(), None);
    // The failure's diff shows the work, with the huge file as binary, not as content.
    let diff = std::fs::read_to_string(harness.artifacts_dir().join("greeter/w.4/diff.patch")).unwrap();
    assert!(diff.contains("+++ b/greet.sh") && diff.len() < 64 * 1024, "{} bytes", diff.len());
    harness.cleanup().await;
}

/// Plants a socket and (as root) a device node in the slot when the model first answers:
/// a step cannot make a device (its capabilities are dropped), so the test stands in for
/// whatever else could have. `slots` is filled in once the harness exists.
fn plant_special_files(slots: Arc<OnceLock<PathBuf>>) -> Script {
    let calls = Arc::new(AtomicUsize::new(0));
    Script::step_responder(move |_request| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            let slot = slot_path(slots.get().expect("the harness is up"));
            drop(std::os::unix::net::UnixListener::bind(slot.join("sock")).unwrap());
            if is_root() {
                let mut mknod = std::process::Command::new("mknod");
                assert!(mknod.arg(slot.join("zero")).args(["c", "1", "5"]).status().unwrap().success());
            }
        }
        match n {
            0 => write_greet(),
            1 => Step::call("read_file", json!({"path": "sock"})),
            2 => Step::call("read_file", json!({"path": "zero"})),
            3 => Step::call("list_dir", json!({"path": ""})),
            4 => Step::call("edit_file", json!({"path": "zero", "search": "a", "replace": "b"})),
            5 => Step::call("search_text", json!({"pattern": "zzz", "path": ""})),
            _ => finish(),
        }
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
}

#[tokio::test]
async fn a_socket_and_a_device_node_in_the_workspace_are_refused_and_removed_before_the_commit() {
    if !is_root() {
        eprintln!("not root: mknod needs CAP_MKNOD, so only the socket is planted");
    }
    let slots = Arc::new(OnceLock::new());
    let harness = Harness::new("workspace-special", plant_special_files(slots.clone())).await;
    let slots = slots.get_or_init(|| harness.dir.path().join("slots")).clone();
    harness
        .publish(
            "task.backend",
            &serde_json::to_vec(&task(&harness, "w.5", "sh tests/test_greet.sh")).unwrap(),
        )
        .await;
    let report = harness.run_worker(harness.config(), 1, 1).await;
    assert_eq!((report.acked, report.dead_lettered), (1, 0));

    let answers = tool_answers(&harness);
    assert_eq!(answers.len(), 6, "{answers:?}");
    assert_answer(&answers, 1, "sock: is a socket, not a regular file; special files are not read");
    assert_answer(&answers, 3, "sock (a socket, not readable)");
    assert_answer(&answers, 5, "no match");
    if is_root() {
        assert_answer(&answers, 2, "zero: is a device node, not a regular file; special files are not read");
        assert_answer(&answers, 3, "zero (a device node, not readable)");
        assert_answer(&answers, 4, "zero: is a device node, not a regular file");
    }
    let (commit, _) = sample::branch_head(&harness.origin, "feature/task-greeter-w.5").unwrap().unwrap();
    assert_eq!(sample::file_at(&harness.origin, &commit, "sock").unwrap(), None);
    let slot = slot_path(&slots);
    assert!(slot.join("sock").symlink_metadata().is_err() && slot.join("zero").symlink_metadata().is_err());
    harness.cleanup().await;
}

#[test]
fn a_task_adding_or_growing_a_file_past_the_cap_cannot_commit_it_while_the_base_may_keep_its_own() {
    use agent_runner::error::{Classify, FailureKind};
    use agent_runner::git::{self, CommitRequest, GitAuthor, GitCredentials, GitError, GitRemote};
    const CAP: u64 = 4096;
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    let base_data = "d".repeat(6000);
    sample::create_origin(&origin, "main", &[("data.bin", base_data.as_str()), (".gitignore", "build/\n")])
        .unwrap();
    let remote = GitRemote::new(origin.to_str().unwrap(), GitCredentials::anonymous()).unwrap();
    let lease = git::LocalSlotPool::new(dir.path().join("slots")).acquire(&remote).unwrap();
    git::prepare_workspace(&lease.path, &remote, "main", "feature/t-1").unwrap();
    let author = GitAuthor::default();
    let request = CommitRequest {
        message: "work",
        task_id: "t-1",
        runner_id: None,
        author: &author,
        remote: Some(&remote),
        max_file_bytes: CAP,
    };
    let write = |path: &str, size: usize| {
        let full = lease.path.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, "x".repeat(size)).unwrap();
    };

    // Added past the cap: refused; ignored build output and the base's own file are not.
    write("new.txt", 5000);
    write("build/huge.out", 9000);
    let refused = git::commit_all(&lease.path, &request).unwrap_err();
    assert!(matches!(&refused, GitError::FileTooLarge { files, .. } if files == "new.txt (5000 bytes)"));
    assert_eq!(refused.to_failure("commit").kind, FailureKind::Implementation);
    assert!(!refused.is_transient());

    // Grown beyond its size in the base: refused.
    std::fs::remove_file(lease.path.join("new.txt")).unwrap();
    write("data.bin", 7000);
    let refused = git::commit_all(&lease.path, &request).unwrap_err();
    assert!(matches!(&refused, GitError::FileTooLarge { files, .. } if files == "data.bin (7000 bytes)"));

    // Changed but no larger than the base's: the repository's own file, committed.
    write("data.bin", 5000);
    let committed = git::commit_all(&lease.path, &request).unwrap().unwrap();
    assert_eq!(committed.files_changed, ["data.bin"]);
}
