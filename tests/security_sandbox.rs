//! Attacks on the host's real services from a `sandbox`-mode step (issue 12): each test
//! is named for the attack, runs it through the real runner (`process::run_command`,
//! which the playbook executor and the model's `run_tests` tool both use) under real
//! bubblewrap, and asserts that it reached nothing. Where a probe target is absent (no
//! PostgreSQL socket, no `socat`, no C compiler) the test says so and skips.

use std::io::ErrorKind;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_runner::process::{CommandEnd, CommandOutcome, CommandSpec, Isolation, run_command};
use tokio_util::sync::CancellationToken;

const CAP: usize = 64 * 1024;
const SOCAT: &str = "/usr/bin/socat";

/// A workspace outside `/tmp` (the sandbox replaces `/tmp`, so a host path there would
/// say nothing), with a `.git` like a real slot.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    dir
}

async fn run_in(mode: Isolation, command: &str, workspace: &Path) -> CommandOutcome {
    let spec =
        CommandSpec { isolation: mode, ..CommandSpec::new(command, workspace, Duration::from_secs(60), CAP) };
    run_command(&spec, &CancellationToken::new()).await.unwrap()
}

fn sandbox(network: bool) -> Isolation {
    Isolation::Sandbox { network, policy: Default::default() }
}

async fn sandboxed(command: &str, workspace: &Path, network: bool) -> CommandOutcome {
    run_in(sandbox(network), command, workspace).await
}

/// The uid a sandboxed command has on the host: the sandbox uid under a root worker.
fn expected_host_uid() -> u32 {
    // SAFETY: geteuid has no failure mode.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 { agent_runner::process::sandbox::DEFAULT_SANDBOX_UID } else { euid }
}

fn skip_without(path: &str, why: &str) -> bool {
    let missing = !Path::new(path).exists();
    if missing {
        eprintln!("skipped: {path} is absent ({why})");
    }
    missing
}

/// A listener on a socket file anyone may connect to, so only the sandbox stands between
/// the step and it.
fn socket_file_listener(dir: &str) -> (UnixListener, PathBuf) {
    let path = PathBuf::from(format!("{dir}/agent-runner-test-{}.sock", uuid::Uuid::new_v4().simple()));
    let listener = UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    listener.set_nonblocking(true).unwrap();
    (listener, path)
}

fn received_nothing(listener: &UnixListener) -> bool {
    matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// Sends a host file to `address` (a socat address) and prints whether it worked.
fn send_host_file(address: &str) -> String {
    format!("{SOCAT} -u OPEN:/etc/hostname {address} 2>/dev/null && echo sent || echo refused")
}

async fn a_socket_file_listener_receives_nothing(dir: &str) {
    if skip_without(SOCAT, "the probe that connects") {
        return;
    }
    let ws = workspace();
    let (listener, path) = socket_file_listener(dir);
    let _cleanup = RemoveOnDrop(path.clone());
    let p = path.display();
    let connect = format!(
        "test -e {p} && echo visible || echo absent; {}",
        send_host_file(&format!("UNIX-CONNECT:{p}"))
    );
    // Even with the host's network namespace, which a socket file does not need anyway.
    let out = sandboxed(&connect, ws.path(), true).await;
    assert_eq!(out.output, "absent\nrefused\n");
    assert!(received_nothing(&listener));
    // The same probe outside the sandbox reaches it: the check above means something.
    let control = run_in(Isolation::LocalProcess, &connect, ws.path()).await;
    assert_eq!(control.output, "visible\nsent\n");
    assert!(listener.accept().is_ok());
}

#[tokio::test]
async fn sending_a_host_file_to_a_socket_under_var_tmp_reaches_nothing() {
    a_socket_file_listener_receives_nothing("/var/tmp").await;
}

#[tokio::test]
async fn sending_a_host_file_to_a_socket_in_the_host_tmp_reaches_nothing() {
    a_socket_file_listener_receives_nothing("/tmp").await;
}

#[tokio::test]
async fn sending_a_host_file_to_an_abstract_socket_with_the_network_on_is_refused_by_seccomp() {
    if skip_without(SOCAT, "the probe that connects") {
        return;
    }
    let ws = workspace();
    // Abstract sockets belong to the network namespace a `network: true` step shares.
    let name = format!("agent-runner-test-{}", uuid::Uuid::new_v4().simple());
    let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
    listener.set_nonblocking(true).unwrap();
    let connect = send_host_file(&format!("ABSTRACT-CONNECT:{name}"));
    let out = sandboxed(&connect, ws.path(), true).await;
    assert_eq!(out.output, "refused\n");
    assert!(received_nothing(&listener));
    let control = run_in(Isolation::LocalProcess, &connect, ws.path()).await;
    assert_eq!(control.output, "sent\n");
    assert!(listener.accept().is_ok());
}

#[tokio::test]
async fn psql_through_the_host_postgres_socket_cannot_run_a_program_on_the_server() {
    if skip_without("/run/postgresql/.s.PGSQL.5432", "no local PostgreSQL")
        || skip_without("/usr/bin/psql", "no psql")
    {
        return;
    }
    let ws = workspace();
    let marker = format!("/tmp/agent-runner-test-pg-{}", uuid::Uuid::new_v4().simple());
    let attack = format!(
        "psql -h /run/postgresql -U postgres -c \"COPY (SELECT 1) TO PROGRAM 'id > {marker}'\" 2>&1; echo exit=$?"
    );
    // Refused twice over: the socket file is not in the view, and seccomp refuses the
    // Unix socket psql would connect it with.
    for network in [false, true] {
        let out = sandboxed(&attack, ws.path(), network).await;
        assert!(out.output.starts_with("psql: error:") && out.output.ends_with("exit=2\n"), "{}", out.output);
    }
    assert!(!Path::new(&marker).exists(), "the postgres server ran the step's program");
}

#[tokio::test]
async fn mariadb_as_root_through_the_host_socket_is_not_reached() {
    if skip_without("/run/mysqld/mysqld.sock", "no local MariaDB")
        || skip_without("/usr/bin/mariadb", "no client")
    {
        return;
    }
    let ws = workspace();
    let attack = "mariadb -S /run/mysqld/mysqld.sock -u root -e 'select 1' 2>&1; echo exit=$?";
    for network in [false, true] {
        let out = sandboxed(attack, ws.path(), network).await;
        assert!(out.output.starts_with("ERROR 200") && out.output.ends_with("exit=1\n"), "{}", out.output);
    }
}

#[tokio::test]
async fn looking_around_the_host_finds_only_the_view_built_for_the_job() {
    let ws = workspace();
    let other_slot = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(other_slot.path().join("their-file"), "other task").unwrap();
    let host_tmp = tempfile::NamedTempFile::new().unwrap();
    let secret = ws.path().join("mounted-token");
    std::fs::write(&secret, "ghp_in_the_workspace").unwrap();
    agent_runner::process::isolation::hide_in_sandbox(&secret);
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let probes = [
        host_tmp.path().display().to_string(),
        "/var/tmp".into(),
        "/run".into(),
        "/var/run".into(),
        "/root".into(),
        home.clone(),
        other_slot.path().join("their-file").display().to_string(),
    ];
    let command = format!(
        "for p in {}; do test -e \"$p\" && echo \"visible $p\" || echo \"absent $p\"; done; \
         echo \"secret=[$(cat mounted-token 2>/dev/null)]\"; ls /",
        probes.join(" ")
    );
    let out = sandboxed(&command, ws.path(), false).await;
    let mut expected: Vec<String> = probes.iter().map(|p| format!("absent {p}")).collect();
    expected.push("secret=[]".into());
    let lines: Vec<&str> = out.output.lines().collect();
    assert_eq!(lines[..expected.len()], expected.iter().map(String::as_str).collect::<Vec<_>>()[..]);
    // The root holds the system paths, /dev, /proc, /tmp and the way to the workspace.
    let top = ws.path().components().nth(1).unwrap().as_os_str().to_string_lossy().into_owned();
    let mut allowed: Vec<String> = agent_runner::process::sandbox::SYSTEM_PATHS
        .iter()
        .map(|p| p.trim_start_matches('/').to_string())
        .chain(["dev", "proc", "tmp", top.as_str()].map(String::from))
        .collect();
    allowed.sort();
    for entry in &lines[expected.len()..] {
        assert!(allowed.iter().any(|a| a == entry), "unexpected /{entry} in the view: {}", out.output);
    }
}

#[tokio::test]
async fn writing_outside_the_workspace_and_reading_shadow_fail_and_the_step_is_not_root() {
    let ws = workspace();
    let command = "for target in /etc/agent-runner-probe /usr/agent-runner-probe /proc/sys/kernel/hostname; do \
           (echo x > \"$target\") 2>/dev/null && echo \"wrote $target\" || echo \"refused $target\"; done; \
         cat /etc/shadow >/dev/null 2>&1 && echo shadow-read || echo shadow-refused; \
         grep NoNewPrivs /proc/self/status; grep CapEff /proc/self/status; echo made > made-here";
    let out = sandboxed(command, ws.path(), false).await;
    assert_eq!(
        out.output,
        "refused /etc/agent-runner-probe\nrefused /usr/agent-runner-probe\nrefused /proc/sys/kernel/hostname\n\
         shadow-refused\nNoNewPrivs:\t1\nCapEff:\t0000000000000000\n"
    );
    assert!(!Path::new("/etc/agent-runner-probe").exists() && !Path::new("/usr/agent-runner-probe").exists());
    // The file the step made belongs to the sandbox uid on the host, not to root.
    let made = std::fs::metadata(ws.path().join("made-here")).unwrap();
    assert_eq!(made.uid(), expected_host_uid());
    assert_ne!(made.uid(), 0);
}

/// Each refused call and what the kernel answered, from inside the sandbox.
const SYSCALL_PROBE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long result) {
    printf("%s %s\n", name, result == -1 ? strerrorname_np(errno) : "allowed");
}

int main(void) {
    int pair[2];
    report("ptrace", ptrace(PTRACE_TRACEME, 0, 0, 0));
    report("mount", mount("none", "/tmp", "tmpfs", 0, 0));
    report("unshare-user", unshare(CLONE_NEWUSER));
    report("unshare-mount", unshare(CLONE_NEWNS));
    report("keyctl", syscall(SYS_keyctl, 0, -3, 0));
    report("add_key", syscall(SYS_add_key, "user", "probe", "x", 1, -3));
    report("bpf", syscall(SYS_bpf, 0, 0, 0));
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, 0));
    report("clone3", syscall(SYS_clone3, 0, 0));
    report("socket-unix", socket(AF_UNIX, SOCK_STREAM, 0));
    report("socket-inet", socket(AF_INET, SOCK_STREAM, 0));
    report("socketpair-unix", socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
    report("personality-no-aslr", personality(ADDR_NO_RANDOMIZE));
    report("personality-query", personality(0xffffffff));
    pid_t child = fork();
    if (child == 0) _exit(0);
    report("fork", child == -1 ? -1 : waitpid(child, 0, 0));
    return 0;
}
"#;

#[tokio::test]
async fn ptrace_mount_keyctl_unshare_and_unix_sockets_are_refused_by_seccomp() {
    if skip_without("/usr/bin/cc", "the system-call probe is compiled on the host") {
        return;
    }
    let ws = workspace();
    std::fs::write(ws.path().join("probe.c"), SYSCALL_PROBE).unwrap();
    let compiled = std::process::Command::new("cc")
        .args(["-o", "probe", "probe.c"])
        .current_dir(ws.path())
        .status()
        .unwrap();
    assert!(compiled.success());
    let out = sandboxed(
        "./probe; unshare -U true 2>/dev/null || echo unshare-cli-refused; \
                         mkdir -p /tmp/y; mount -t tmpfs x /tmp/y 2>/dev/null || echo mount-cli-refused",
        ws.path(),
        false,
    )
    .await;
    assert_eq!(
        out.output,
        "ptrace EPERM\nmount EPERM\nunshare-user EPERM\nunshare-mount EPERM\nkeyctl EPERM\nadd_key EPERM\n\
         bpf EPERM\nio_uring_setup EPERM\nclone3 ENOSYS\nsocket-unix EPERM\nsocket-inet allowed\n\
         socketpair-unix allowed\npersonality-no-aslr EPERM\npersonality-query allowed\nfork allowed\n\
         unshare-cli-refused\nmount-cli-refused\n"
    );
}

#[tokio::test]
async fn a_step_that_hangs_ends_at_its_timeout_with_the_reason() {
    let ws = workspace();
    let spec = CommandSpec {
        isolation: sandbox(false),
        ..CommandSpec::new("echo started; sleep 600", ws.path(), Duration::from_secs(1), CAP)
    };
    let out = run_command(&spec, &CancellationToken::new()).await.unwrap();
    assert_eq!(out.end, CommandEnd::TimedOut);
    assert_eq!(out.output, "started\n");
}

#[tokio::test]
async fn the_worker_still_commits_and_pushes_a_workspace_the_sandbox_uid_owns() {
    use agent_runner::demo::sample;
    use agent_runner::llm::scripted::{self, Script};
    // The slot pool lies under a 0700 directory the sandbox uid cannot traverse; the same
    // slot serves two tasks, so the second resets a tree the first handed to that uid.
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    sample::create_origin(&origin, "main", sample::SAMPLE_FILES).unwrap();
    let answer = sample::scripted_answer();
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();
    let remotes = format!("git:\n  allowed_remotes: [\"file://{}/\"]\n", dir.path().display());
    std::fs::write(dir.path().join("c.yaml"), remotes).unwrap();
    for task_id in ["12.1", "12.2"] {
        let task = sample::sample_task(&format!("file://{}", origin.display()), task_id);
        std::fs::write(dir.path().join("task.json"), serde_json::to_vec(&task).unwrap()).unwrap();
        let (dir_path, base_url) = (dir.path().to_path_buf(), llm.base_url());
        let output = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_agent-runner"))
                .args([
                    "--config",
                    "c.yaml",
                    "--llm-endpoint",
                    &base_url,
                    "--execution-mode",
                    "sandbox",
                    "run",
                    "--task",
                    "task.json",
                ])
                .current_dir(&dir_path)
                .env_remove("OPENAI_API_KEY")
                .env_remove("AMQP_URL")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("no summary: {}", String::from_utf8_lossy(&output.stderr)));
        assert_eq!((&summary["success"], &summary["pushed"]), (&true.into(), &true.into()), "{summary}");
        let branch = format!("feature/task-greeter-{task_id}");
        assert!(sample::branch_head(&origin, &branch).unwrap().is_some(), "{branch} not pushed");
    }
}

#[tokio::test]
async fn a_workspace_under_run_is_still_the_one_the_step_writes() {
    // The staging directory covers /run in the child's own mount namespace; a workspace
    // there must still be reached (through the descriptor opened before).
    let Ok(under_run) = tempfile::tempdir_in("/run") else {
        eprintln!("skipped: cannot create a directory under /run");
        return;
    };
    let out = sandboxed("echo from-the-step > here && cat here", under_run.path(), false).await;
    assert_eq!(out.output, "from-the-step\n");
    assert_eq!(std::fs::read_to_string(under_run.path().join("here")).unwrap(), "from-the-step\n");
}

#[tokio::test]
async fn the_preflight_passes_on_this_host_and_names_a_missing_read_only_path() {
    use agent_runner::process::{SandboxError, SandboxPolicy, sandbox_preflight};
    sandbox_preflight(&SandboxPolicy::default()).await.unwrap();
    let missing = PathBuf::from(format!("/opt/agent-runner-test-{}", uuid::Uuid::new_v4().simple()));
    let policy = SandboxPolicy { read_only_paths: vec![missing.clone()], ..SandboxPolicy::default() };
    let error = sandbox_preflight(&policy).await.unwrap_err();
    assert!(matches!(&error, SandboxError::MissingReadOnlyPath { path } if *path == missing), "{error}");
    assert_eq!(error.to_string(), format!("sandbox.read_only_paths: {} does not exist", missing.display()));
}

/// Removes a socket file the test bound outside its temporary directory.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
