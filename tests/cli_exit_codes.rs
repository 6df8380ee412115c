//! Every documented exit code, from the real binary: a script or a supervisor can tell a
//! typo from a bad configuration, an unreachable or refusing broker, a failed task and
//! an interrupted one. Each error is printed once, on one line, without lapin's dumps.

mod common;

use std::path::Path;
use std::process::Command;

use common::binary::{agent_runner, stderr};
use std::time::Duration;

use agent_runner::demo::sample;
use agent_runner::llm::scripted::{self, Script};

/// A task file whose inline playbook runs `command`, against a fresh sample origin.
fn task_running(dir: &Path, command: &str) {
    let origin = dir.join("origin.git");
    sample::create_origin(&origin, "main", sample::SAMPLE_FILES).unwrap();
    let mut task = sample::sample_task(&format!("file://{}", origin.display()), "x.1");
    task["playbook"] =
        serde_json::json!({ "name": "probe", "steps": [{ "name": "tests", "command": command }] });
    std::fs::write(dir.join("task.json"), serde_json::to_vec(&task).unwrap()).unwrap();
    let remotes = format!("git:\n  allowed_remotes: [\"file://{}/\"]\n", dir.display());
    let config = format!("playbook:\n  allow_inline: true\n  repair_rounds: 0\n{remotes}");
    std::fs::write(dir.join("c.yaml"), config).unwrap();
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let unknown_flag = agent_runner(&["worker", "--bogus"], dir.path());
    assert_eq!(unknown_flag.status.code(), Some(2), "{}", stderr(&unknown_flag));
    let missing_file = agent_runner(&["run", "--task", "missing.json"], dir.path());
    assert_eq!(missing_file.status.code(), Some(2));
    assert_eq!(
        stderr(&missing_file),
        "error: cannot read missing.json: No such file or directory (os error 2)\n"
    );
}

#[test]
fn configuration_errors_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent_runner(&["--timeout", "0", "dlq", "list"], dir.path());
    assert_eq!(output.status.code(), Some(78));
    assert_eq!(
        stderr(&output),
        "error: invalid default_timeout_seconds from --timeout: must be between 1 and 604800, got 0\n"
    );
    let mirror = agent_runner(&["mirror"], dir.path());
    assert_eq!(mirror.status.code(), Some(78), "{}", stderr(&mirror));
}

#[test]
fn an_unreachable_broker_exits_69_with_the_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let output = agent_runner(&["--amqp-url", &url, "dlq", "list"], dir.path());
    assert_eq!(output.status.code(), Some(69), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        format!(
            "error: cannot connect to the broker at amqp://guest:****@127.0.0.1:{port}/%2f: IO error: \
             Connection refused (os error 111)\n"
        )
    );
}

#[test]
fn refused_broker_credentials_exit_77_without_a_debug_dump() {
    let dir = tempfile::tempdir().unwrap();
    let url = "amqp://no-such-user:wrong@127.0.0.1:5672/%2f";
    let output = agent_runner(&["--amqp-url", url, "dlq", "list"], dir.path());
    assert_eq!(output.status.code(), Some(77), "{}", stderr(&output));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("ACCESS_REFUSED") && !text.contains("ShortString") && !text.contains("wrong"),
        "{text}"
    );
}

#[tokio::test]
async fn a_failed_task_exits_1_and_an_interrupted_one_130() {
    let answer = sample::scripted_answer();
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();
    let endpoint = llm.base_url();

    let failing = tempfile::tempdir().unwrap();
    task_running(failing.path(), "echo the test fails; exit 1");
    let (dir, url) = (failing.path().to_path_buf(), endpoint.clone());
    let output = tokio::task::spawn_blocking(move || {
        agent_runner(&["--config", "c.yaml", "--llm-endpoint", &url, "run", "--task", "task.json"], &dir)
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["success"], false);
    assert_eq!(summary["error"]["kind"], "test_execution", "{summary}");

    let interrupted = tempfile::tempdir().unwrap();
    let marker = interrupted.path().join("step-started");
    task_running(interrupted.path(), &format!("touch {} && sleep 60", marker.display()));
    let child = Command::new(env!("CARGO_BIN_EXE_agent-runner"))
        .args(["--config", "c.yaml", "--llm-endpoint", &endpoint, "run", "--task", "task.json"])
        .current_dir(interrupted.path())
        .env_remove("OPENAI_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !marker.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the test step never started");
    // SAFETY: kill(2) with SIGINT on our own child, as Ctrl-C would.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
}
