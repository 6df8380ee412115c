//! The command lines the execution modes build, as data: every flag of the `docker run`
//! line and of the sandbox, compared whole. Containers run for real on the engine in
//! tests/docker_mode.rs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use agent_runner::config::DockerVolume;
use agent_runner::process::ProcessLimits;
use agent_runner::process::isolation::{
    CONTAINER_USAGE_DIR, CONTAINER_USAGE_FILE, DOCKER_USAGE_SCRIPT, DockerRun, docker_cleanup_command_line,
    docker_command_line,
};
use agent_runner::process::sandbox::{SandboxLayout, SystemEntry, sandbox_command_line};

fn strings(args: &[OsString]) -> Vec<String> {
    args.iter().map(|a| a.to_string_lossy().into_owned()).collect()
}

fn fake_parent(name: &str) -> Option<OsString> {
    let vars = [
        ("PATH", "/usr/bin"),
        ("LANG", "C.UTF-8"),
        ("DOCKER_HOST", "unix:///run/docker.sock"),
        ("GIT_TOKEN", "ghp_never"),
        ("OPENAI_API_KEY", "sk-never"),
    ];
    vars.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(v))
}

#[test]
fn docker_runs_without_network_capabilities_or_a_writable_root_and_with_the_limits() {
    let workdir = tempfile::tempdir().unwrap();
    std::fs::create_dir(workdir.path().join(".git")).unwrap();
    let dir = workdir.path().display().to_string();
    let run = DockerRun {
        image: "rust:1-bookworm",
        network: false,
        container_name: "agent-runner-test",
        user: "1000:1000",
        limits: ProcessLimits { max_memory_mb: Some(2048), cpu_seconds: Some(480), max_processes: Some(256) },
        cpu_percent: Some(150),
        volumes: &[
            DockerVolume { host: "/opt/tools".into(), container: "/opt/tools".into(), read_only: true },
            DockerVolume { host: "/srv/cache".into(), container: "/cache".into(), read_only: false },
        ],
        usage_dir: Some(Path::new("/var/tmp/usage-1")),
    };
    let env = BTreeMap::from([("CI".to_string(), "true".to_string())]);
    let line = docker_command_line("cargo test", workdir.path(), &run, &env, fake_parent);
    assert_eq!(line.program, "docker");
    // One group of related flags per line; compared as one string for a readable diff.
    let expected = [
        "run --rm --init --pull never --name agent-runner-test".to_string(),
        "--network none".into(),
        "--user 1000:1000 --cap-drop ALL --security-opt no-new-privileges".into(),
        "--read-only --tmpfs /tmp:rw,nosuid,nodev --env TMPDIR=/tmp".into(),
        "--memory 2048m --memory-swap 2048m --cpus 1.50 --pids-limit 256 --ulimit cpu=480:481".into(),
        format!("--volume {dir}:{dir}:rw --workdir {dir} --volume {dir}/.git:{dir}/.git:ro"),
        "--volume /opt/tools:/opt/tools:ro --volume /srv/cache:/cache:rw".into(),
        format!("--volume /var/tmp/usage-1:{CONTAINER_USAGE_DIR}:rw"),
        "--env CI=true --env LANG=C.UTF-8".into(),
        format!("-- rust:1-bookworm sh -c {DOCKER_USAGE_SCRIPT} agent-runner-step cargo test"),
    ]
    .join(" ");
    assert_eq!(strings(&line.args).join(" "), expected);
    // The CLI gets what it needs to reach the engine; no secret reaches CLI or container.
    let cli_env: Vec<String> = line.env.keys().map(|k| k.to_string_lossy().into_owned()).collect();
    assert_eq!(cli_env, ["DOCKER_HOST", "LANG", "PATH"]);
    let cleanup = docker_cleanup_command_line("agent-runner-test", &line.env);
    assert_eq!(strings(&cleanup.args), ["rm", "--force", "agent-runner-test"]);
}

#[test]
fn docker_gets_the_bridge_network_only_when_the_step_opted_in() {
    let run = DockerRun {
        image: "alpine",
        network: true,
        container_name: "c",
        user: "0:0",
        limits: ProcessLimits::default(),
        cpu_percent: None,
        volumes: &[],
        usage_dir: None,
    };
    let line = docker_command_line("true", Path::new("/ws"), &run, &BTreeMap::new(), |_| None);
    let args = strings(&line.args);
    let at = args.iter().position(|a| a == "--network").unwrap();
    assert_eq!(args[at + 1], "bridge");
    assert!(!args.iter().any(|a| a == "--memory" || a == "--pids-limit" || a == "--cpus"));
    // Without a usage directory the command runs as it is.
    assert_eq!(args[args.len() - 4..], ["alpine", "sh", "-c", "true"]);
}

#[test]
fn the_usage_script_writes_where_the_usage_directory_is_mounted() {
    let target = format!("{CONTAINER_USAGE_DIR}/{CONTAINER_USAGE_FILE}");
    assert!(DOCKER_USAGE_SCRIPT.contains(&format!(">{target}\n")), "{DOCKER_USAGE_SCRIPT}");
}

#[test]
fn the_sandbox_shows_system_paths_read_only_the_workspace_writable_and_runs_under_seccomp() {
    let layout = SandboxLayout {
        workdir: "/pool/slot-1".into(),
        network: false,
        system: vec![
            SystemEntry::Directory("/usr".into()),
            SystemEntry::Symlink { path: "/bin".into(), target: "usr/bin".into() },
            SystemEntry::Directory("/etc".into()),
        ],
        workspace_source: "/run/workspace".into(),
        has_git: true,
        read_only: vec![("/run/read-only-0".into(), "/root/.cargo".into())],
        hidden: vec!["/etc/agent-runner/token".into()],
        seccomp_fd: 9,
    };
    let env = BTreeMap::from([(OsString::from("PATH"), OsString::from("/usr/bin"))]);
    let line = sandbox_command_line("make test", &layout, &env);
    assert_eq!(line.program, "bwrap");
    let expected = [
        "--die-with-parent --new-session --cap-drop ALL",
        "--unshare-user --disable-userns --unshare-pid --unshare-ipc --as-pid-1 --unshare-uts --unshare-cgroup-try",
        "--unshare-net",
        "--ro-bind /usr /usr --symlink usr/bin /bin --ro-bind /etc /etc",
        "--dev /dev --proc /proc --tmpfs /tmp --dir /tmp/home",
        "--ro-bind /run/read-only-0 /root/.cargo",
        "--bind /run/workspace /pool/slot-1 --ro-bind /run/workspace/.git /pool/slot-1/.git",
        "--ro-bind /dev/null /etc/agent-runner/token",
        "--chdir /pool/slot-1 --clearenv",
        "--setenv HOME /tmp/home --setenv PATH /usr/bin --setenv TMPDIR /tmp",
        "--seccomp 9",
        "-- sh -c make test",
    ]
    .join(" ");
    assert_eq!(strings(&line.args).join(" "), expected);
    let with_network = sandbox_command_line("true", &SandboxLayout { network: true, ..layout }, &env);
    assert!(!strings(&with_network.args).contains(&"--unshare-net".to_string()));
}

#[test]
fn a_step_opts_into_the_network_and_lowers_but_never_raises_the_limits() {
    use agent_runner::playbook::{StepExecution, parse_playbook};
    use agent_runner::process::{Isolation, SandboxPolicy};
    let policy = SandboxPolicy { uid: 1500, gid: 1500, read_only_paths: vec!["/opt/node".into()] };
    let yaml = "name: p\nsteps:\n  - name: fetch\n    command: npm ci\n    network: true\n    \
                max_processes: 8\n    max_memory_mb: 99999\n  - name: test\n    command: npm test\n";
    let playbook = parse_playbook(yaml, "p.yaml").unwrap();
    let execution = StepExecution {
        isolation: Isolation::Sandbox { network: false, policy: policy.clone() },
        limits: ProcessLimits { max_memory_mb: Some(1024), cpu_seconds: None, max_processes: Some(512) },
        max_cpu_percent: Some(50),
    };
    let timeout = std::time::Duration::from_secs(60);
    assert_eq!(
        execution.for_step(&playbook.steps[0], timeout),
        (
            Isolation::Sandbox { network: true, policy: policy.clone() },
            ProcessLimits { max_memory_mb: Some(1024), cpu_seconds: Some(30), max_processes: Some(8) }
        )
    );
    assert_eq!(
        execution.for_step(&playbook.steps[1], timeout).0,
        Isolation::Sandbox { network: false, policy }
    );
}
