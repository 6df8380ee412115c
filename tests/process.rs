//! Runs real `sh` processes through `process::run_command`.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use agent_runner::process::env::INHERITED_ENV_VARS;
use agent_runner::process::{CommandEnd, CommandSpec, ProcessError, run_command};
use tokio_util::sync::CancellationToken;

mod common;
use common::processes::{is_gone, wait_for};

fn spec(command: &str, cwd: &Path) -> CommandSpec {
    CommandSpec::new(command, cwd, Duration::from_secs(60), 64 * 1024)
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn exit_codes_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ok = run_command(&spec("true", dir.path()), &CancellationToken::new()).await.unwrap();
    assert_eq!(ok.end, CommandEnd::Exited(0));
    assert!(ok.success());
    assert_eq!(ok.exit_code(), Some(0));

    let failed = run_command(&spec("exit 3", dir.path()), &CancellationToken::new()).await.unwrap();
    assert_eq!(failed.end, CommandEnd::Exited(3));
    assert!(!failed.success());
    assert_eq!(failed.exit_code(), Some(3));
}

#[tokio::test]
async fn a_signal_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_command(&spec("kill -9 $$", dir.path()), &CancellationToken::new()).await.unwrap();
    assert_eq!(out.end, CommandEnd::Signalled(9));
    assert_eq!(out.exit_code(), None);
    assert!(!out.success());
}

#[tokio::test]
async fn stdout_and_stderr_are_interleaved_in_order_and_cwd_is_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("here.txt"), "x").unwrap();
    let cmd = "echo one; echo two >&2; ls; echo three >&2";
    let out = run_command(&spec(cmd, dir.path()), &CancellationToken::new()).await.unwrap();
    assert_eq!(out.output, "one\ntwo\nhere.txt\nthree\n");
    assert!(!out.truncated);
}

#[tokio::test]
async fn output_over_the_cap_keeps_head_and_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("printf 'start'; head -c 10000 /dev/zero | tr '\\0' x; printf 'end'", dir.path());
    s.output_cap_bytes = 16;
    let out = run_command(&s, &CancellationToken::new()).await.unwrap();
    assert!(out.truncated);
    assert_eq!(out.output, "startxxx\n[... 9992 bytes omitted ...]\nxxxxxend");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg.pid");
    let mut s = spec("sleep 30 & echo $! > bg.pid; sleep 30", dir.path());
    s.timeout = Duration::from_secs(2);
    let out = run_command(&s, &CancellationToken::new()).await.unwrap();
    assert_eq!(out.end, CommandEnd::TimedOut);
    assert_eq!(out.exit_code(), None);
    let pid = read_pid(&pidfile);
    wait_for("background sleep killed", || is_gone(pid)).await;
}

#[tokio::test]
async fn cancellation_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg.pid");
    let cancel = CancellationToken::new();
    let s = spec("sleep 30 & echo $! > bg.pid.tmp && mv bg.pid.tmp bg.pid; sleep 30", dir.path());
    let task = {
        let cancel = cancel.clone();
        tokio::spawn(async move { run_command(&s, &cancel).await })
    };
    wait_for("background pid written", || pidfile.exists()).await;
    cancel.cancel();
    let out = task.await.unwrap().unwrap();
    assert_eq!(out.end, CommandEnd::Cancelled);
    let pid = read_pid(&pidfile);
    wait_for("background sleep killed", || is_gone(pid)).await;
}

#[tokio::test]
async fn an_already_cancelled_token_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let out = run_command(&spec("touch ran", dir.path()), &cancel).await.unwrap();
    assert_eq!(out.end, CommandEnd::Cancelled);
    assert!(!dir.path().join("ran").exists());
}

#[tokio::test]
async fn dropping_the_future_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("bg.pid");
    let s = spec("sleep 30 & echo $! > bg.pid.tmp && mv bg.pid.tmp bg.pid; sleep 30", dir.path());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(async move { run_command(&s, &cancel).await });
    wait_for("background pid written", || pidfile.exists()).await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let pid = read_pid(&pidfile);
    wait_for("background sleep killed", || is_gone(pid)).await;
}

#[tokio::test]
async fn background_jobs_do_not_outlive_a_finished_command() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        run_command(&spec("sleep 30 & echo $! > bg.pid; echo done", dir.path()), &CancellationToken::new())
            .await
            .unwrap();
    assert_eq!(out.end, CommandEnd::Exited(0));
    assert_eq!(out.output, "done\n");
    let pid = read_pid(&dir.path().join("bg.pid"));
    wait_for("background sleep killed", || is_gone(pid)).await;
}

#[tokio::test]
async fn the_child_sees_only_allowlisted_and_explicit_variables() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("env", dir.path());
    s.env.insert("STEP_VAR".into(), "given".into());
    let out = run_command(&s, &CancellationToken::new()).await.unwrap();
    let seen: BTreeSet<&str> = out.output.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k).collect();

    // What sh exports by itself, whatever its environment was.
    let shell_own = ["PWD", "OLDPWD", "SHLVL", "_"];
    // cargo runs tests with many CARGO_* variables set; none of them is allowlisted.
    let parent_only: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| !INHERITED_ENV_VARS.contains(&k.as_str()) && !shell_own.contains(&k.as_str()))
        .collect();
    assert!(parent_only.iter().any(|k| k == "CARGO_PKG_NAME"), "test premise: cargo sets CARGO_PKG_NAME");
    for name in &parent_only {
        assert!(!seen.contains(name.as_str()), "{name} leaked into the child");
    }
    // What the child sees: inherited allowlist, the explicit variable, and what sh itself exports.
    for name in &seen {
        assert!(
            INHERITED_ENV_VARS.contains(name) || *name == "STEP_VAR" || shell_own.contains(name),
            "unexpected variable {name}"
        );
    }
    assert!(out.output.lines().any(|l| l == "STEP_VAR=given"));
    assert!(seen.contains("PATH"));
}

#[tokio::test]
async fn a_missing_working_directory_is_a_spawn_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let err = run_command(&spec("true", &missing), &CancellationToken::new()).await.unwrap_err();
    assert!(matches!(err, ProcessError::Spawn { ref cwd, .. } if *cwd == missing), "{err:?}");
}
