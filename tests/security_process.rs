//! Adversarial commands against `process::run_command`: each test is named for what the
//! command tries, and asserts that it is contained and reported. Sandbox cases run real
//! bubblewrap (installed by scripts/setup).

mod common;

use std::path::Path;
use std::time::Duration;

use agent_runner::process::{
    CommandEnd, CommandOutcome, CommandSpec, Isolation, LimitBreach, LimitKind, ProcessLimits, SandboxPolicy,
    run_command,
};
use tokio_util::sync::CancellationToken;

use common::processes::{is_gone, wait_for};

const CAP: usize = 64 * 1024;

fn spec(command: &str, cwd: &Path, isolation: Isolation, limits: ProcessLimits) -> CommandSpec {
    CommandSpec { isolation, limits, ..CommandSpec::new(command, cwd, Duration::from_secs(60), CAP) }
}

async fn run(spec: &CommandSpec) -> CommandOutcome {
    run_command(spec, &CancellationToken::new()).await.unwrap()
}

fn sandbox(network: bool) -> Isolation {
    Isolation::Sandbox { network, policy: Default::default() }
}

fn procs(max: u32) -> ProcessLimits {
    ProcessLimits { max_processes: Some(max), ..ProcessLimits::default() }
}

/// A fork bomb with a depth cap, so that a broken watchdog would leave ~4000 sleeping
/// shells on a shared test machine instead of exhausting its pid space. Every process
/// writes its pid, so the test can check that all of them are gone.
const FORK_BOMB: &str = "b() { echo $$ >> pids; [ \"$1\" -lt 11 ] || { sleep 30; return; }; \
                         b $(($1+1)) & b $(($1+1)) & wait; }; b 0";

#[tokio::test]
async fn a_fork_bomb_is_killed_at_the_process_limit() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&spec(FORK_BOMB, dir.path(), Isolation::LocalProcess, procs(32))).await;
    let CommandEnd::LimitExceeded(breach) = out.end else { panic!("not stopped at the limit: {out:?}") };
    assert_eq!((breach.kind, breach.limit), (LimitKind::Processes, 32));
    assert!(breach.observed > 32, "{breach:?}");
    eprintln!("fork bomb stopped at {} processes", breach.observed);
    let pids = std::fs::read_to_string(dir.path().join("pids")).unwrap();
    for pid in pids.lines().filter_map(|p| p.parse::<i32>().ok()) {
        wait_for(&format!("bomb process {pid} gone"), || is_gone(pid)).await;
    }
}

#[tokio::test]
async fn a_fork_bomb_in_the_sandbox_is_killed_at_the_process_limit() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&spec(FORK_BOMB, dir.path(), sandbox(false), procs(32))).await;
    let CommandEnd::LimitExceeded(breach) = out.end else { panic!("not stopped at the limit: {out:?}") };
    assert_eq!((breach.kind, breach.limit), (LimitKind::Processes, 32));
    // Its pids are namespace-local; the namespace dying with bubblewrap is the cleanup.
}

#[tokio::test]
async fn a_single_memory_hog_is_refused_its_memory() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ProcessLimits { max_memory_mb: Some(256), ..ProcessLimits::default() };
    let hog = "awk 'BEGIN { s = sprintf(\"%1000000s\", \"\"); while (1) s = s s }'";
    let out = run(&spec(hog, dir.path(), Isolation::LocalProcess, limits)).await;
    assert_eq!(out.end, CommandEnd::Exited(2));
    assert!(out.output.contains("Cannot allocate memory"), "{}", out.output);
}

#[tokio::test]
async fn memory_spread_over_many_processes_is_killed_at_the_group_limit() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ProcessLimits { max_memory_mb: Some(256), ..ProcessLimits::default() };
    // Eight buffers of 64 MiB each: every process is under the per-process rlimit, the
    // group is twice over the limit.
    let hogs = "for i in 1 2 3 4 5 6 7 8; do { head -c 64M /dev/zero; sleep 60; } | tail -c 64M >/dev/null & done; wait";
    let out = run(&spec(hogs, dir.path(), Isolation::LocalProcess, limits)).await;
    let CommandEnd::LimitExceeded(breach) = out.end else { panic!("not stopped at the limit: {out:?}") };
    assert_eq!((breach.kind, breach.limit), (LimitKind::Memory, 256));
}

#[tokio::test]
async fn a_cpu_burner_is_killed_at_its_cpu_time_budget() {
    let dir = tempfile::tempdir().unwrap();
    let limits = ProcessLimits { cpu_seconds: Some(1), ..ProcessLimits::default() };
    let out = run(&spec("while :; do :; done", dir.path(), Isolation::LocalProcess, limits)).await;
    let CommandEnd::LimitExceeded(LimitBreach { kind: LimitKind::CpuTime, limit: 1, .. }) = out.end else {
        panic!("not stopped at the budget: {out:?}")
    };
}

#[tokio::test]
async fn a_process_ignoring_sigterm_is_killed_at_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let stubborn = "trap '' TERM; sh -c 'trap \"\" TERM; echo $$ > child; while :; do sleep 1; done' & wait";
    let mut s = spec(stubborn, dir.path(), Isolation::LocalProcess, ProcessLimits::default());
    s.timeout = Duration::from_secs(1);
    let out = run(&s).await;
    assert_eq!(out.end, CommandEnd::TimedOut);
    let child: i32 = std::fs::read_to_string(dir.path().join("child")).unwrap().trim().parse().unwrap();
    wait_for("the SIGTERM-ignoring child is gone", || is_gone(child)).await;
}

#[tokio::test]
async fn a_flood_of_output_is_capped_and_the_flooder_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec("yes flood", dir.path(), Isolation::LocalProcess, ProcessLimits::default());
    s.timeout = Duration::from_secs(1);
    s.output_cap_bytes = 4096;
    let out = run(&s).await;
    assert_eq!(out.end, CommandEnd::TimedOut);
    assert!(out.truncated);
    assert!(out.output.len() < 4096 + 100, "{} bytes kept", out.output.len());
    assert!(out.output.starts_with("flood\nflood\n") && out.output.contains("bytes omitted"));
}

#[tokio::test]
async fn connecting_out_of_the_sandbox_fails_unless_the_step_opted_in() {
    let dir = tempfile::tempdir().unwrap();
    // The shared RabbitMQ is known to listen on loopback.
    let connect = "bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 2>/dev/null && echo connected || echo blocked";
    let blocked = run(&spec(connect, dir.path(), sandbox(false), ProcessLimits::default())).await;
    assert_eq!(blocked.output, "blocked\n");
    let allowed = run(&spec(connect, dir.path(), sandbox(true), ProcessLimits::default())).await;
    assert_eq!(allowed.output, "connected\n");
}

#[tokio::test]
async fn writing_outside_the_workspace_or_into_git_fails_in_the_sandbox() {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let workspace = root.path().join("ws");
    std::fs::create_dir_all(workspace.join(".git/hooks")).unwrap();
    // Not under /tmp (the checkout, and so the target directory, may well be): the
    // sandbox's /tmp is private, so a path there would be writable in its own tmpfs
    // without saying anything about the host.
    let outside = outside_tmp("outside");
    let home = std::env::var("HOME").unwrap_or_default();
    let attempts = format!(
        "for target in {out} .git/hooks/pre-push /etc/agent-runner-probe {home}/.gitconfig; do \
           (echo x > \"$target\") 2>/dev/null && echo \"wrote $target\" || echo \"refused $target\"; done; \
         echo ok > inside && echo wrote-inside; echo tmp > /tmp/probe && echo wrote-tmp; \
         echo '[user]' > $HOME/.gitconfig && echo \"wrote $HOME/.gitconfig\"",
        out = outside.display()
    );
    let out = run(&spec(&attempts, &workspace, sandbox(false), ProcessLimits::default())).await;
    assert_eq!(
        out.output,
        format!(
            "refused {}\nrefused .git/hooks/pre-push\nrefused /etc/agent-runner-probe\nrefused {home}/.gitconfig\n\
             wrote-inside\nwrote-tmp\nwrote /tmp/home/.gitconfig\n",
            outside.display()
        )
    );
    assert!(!outside.exists() && !workspace.join(".git/hooks/pre-push").exists());
    assert_eq!(std::fs::read_to_string(workspace.join("inside")).unwrap(), "ok\n");
    // /tmp inside was private, and so was the HOME in it.
    assert!(!Path::new("/tmp/probe").exists() || std::fs::read_to_string("/tmp/probe").unwrap() != "tmp\n");
    assert!(!Path::new("/tmp/home/.gitconfig").exists());
}

#[tokio::test]
async fn the_sandbox_sees_none_of_the_workers_processes_and_no_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let probe = "ls -d /proc/[0-9]* | wc -l; grep CapEff /proc/self/status; \
                 cat /proc/1/cmdline | tr '\\0' ' ' | cut -d' ' -f1";
    let out = run(&spec(probe, dir.path(), sandbox(false), ProcessLimits::default())).await;
    // The command's shell (the namespace's init) and the pipeline's commands: nothing of
    // the host.
    let lines: Vec<&str> = out.output.lines().collect();
    let visible: u32 = lines[0].trim().parse().unwrap();
    assert!(visible <= 8, "{}", out.output);
    assert_eq!(lines[1], "CapEff:\t0000000000000000");
    assert_eq!(lines[2], "sh");
}

#[tokio::test]
async fn a_local_child_of_a_root_worker_holds_no_capabilities_and_cannot_regain_them() {
    let dir = tempfile::tempdir().unwrap();
    let probe = "grep -E 'CapEff|NoNewPrivs' /proc/self/status";
    let out = run(&spec(probe, dir.path(), Isolation::LocalProcess, ProcessLimits::default())).await;
    assert_eq!(out.output, "CapEff:\t0000000000000000\nNoNewPrivs:\t1\n");
}

#[tokio::test]
async fn reading_the_workers_mounted_secret_file_from_the_sandbox_gets_nothing() {
    // A mounted secret inside a directory the operator shows read-only (a toolchain
    // directory, say): visible in the sandbox unless hidden.
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let shown = outside_tmp("shown");
    std::fs::create_dir(&shown).unwrap();
    let _cleanup = RemoveOnDrop(shown.clone());
    let secret = shown.join("git-token");
    std::fs::write(&secret, "ghp_mounted_secret_value\n").unwrap();
    std::fs::write(shown.join("not-a-secret"), "visible\n").unwrap();
    let workspace = root.path().join("ws");
    std::fs::create_dir_all(&workspace).unwrap();
    agent_runner::process::isolation::hide_in_sandbox(&secret);
    let isolation = Isolation::Sandbox {
        network: false,
        policy: SandboxPolicy { read_only_paths: vec![shown.clone()], ..SandboxPolicy::default() },
    };
    let read =
        format!("cat {dir}/git-token 2>/dev/null; echo end; cat {dir}/not-a-secret", dir = shown.display());
    let out = run(&spec(&read, &workspace, isolation, ProcessLimits::default())).await;
    // Not hidden, the file beside it is readable: the check means something.
    assert_eq!(out.output, "end\nvisible\n");
    // The worker itself still reads it.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "ghp_mounted_secret_value\n");
}

/// A unique path in `$HOME`, which the sandbox does not show (and, unlike a path in
/// `/tmp`, which it replaces, one it could not write in its own tmpfs either).
fn outside_tmp(name: &str) -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let unique = format!(".agent-runner-test-{name}-{}", uuid::Uuid::new_v4().simple());
    std::path::Path::new(&home).join(unique)
}

/// Removes a file or directory the test created outside its temporary directory.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
