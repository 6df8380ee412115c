//! Runs every example under `examples/` as a reader would — the built binary, with a
//! working directory of the test's and no model or service settings from the test's
//! own environment — against local stand-ins (the scripted model the examples start,
//! bare git origins, the `file://` store, HTTP fakes of the NecroCode services, a real
//! docker engine when one answers), and checks what each did: the branch pushed, the
//! artifacts written, the services called, the result printed.
//!
//! One test per example; a new example gets one more test on [`run_example`]. The
//! Kubernetes runner's cluster is the API stand-in of the kubernetes mode's tests.

mod kubernetes_support;
mod ops_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use agent_runner::demo::sample;
use ops_support::{FakeService, Reply, fake_repo_pool};
use serde_json::{Value, json};

const BRANCH: &str = "feature/task-greeter-1.1";

/// The built example `name`. The examples are built once per test binary (`cargo build
/// --examples`; nothing to do after `cargo test --examples`, which built them), so a
/// test never runs a stale binary.
fn example_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--locked", "--examples"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "the examples build");
    });
    // target/<profile>/deps/examples-<hash> → target/<profile>/examples/<name>
    let test_binary = std::env::current_exe().unwrap();
    test_binary.parent().and_then(Path::parent).unwrap().join("examples").join(name)
}

/// Runs example `name` with working directory `dir` (its first argument) and only
/// `env` besides `PATH`, `HOME` and how to reach a docker engine.
fn run_example(name: &str, dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(example_binary(name));
    command.arg(dir).env_clear();
    for inherited in ["PATH", "HOME", "DOCKER_HOST"] {
        if let Some(value) = std::env::var_os(inherited) {
            command.env(inherited, value);
        }
    }
    command.envs(env.iter().copied()).output().unwrap()
}

fn stdout_of(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// The lines of `stdout` that start with one of `prefixes`, in order.
fn lines_starting<'a>(stdout: &'a str, prefixes: &[&str]) -> Vec<&'a str> {
    stdout.lines().filter(|line| prefixes.iter().any(|p| line.starts_with(p))).collect()
}

/// `greet.sh` as the task branch on `dir/origin.git` has it.
fn pushed_greet(dir: &Path) -> Option<String> {
    let origin = dir.join("origin.git");
    let (commit, _) = sample::branch_head(&origin, BRANCH).unwrap()?;
    sample::file_at(&origin, &commit, sample::GREET_PATH).unwrap()
}

fn read_json(path: PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn basic_runner_usage_pushes_the_branch_and_writes_the_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = stdout_of(&run_example("basic_runner_usage", dir.path(), &[]));

    let artifacts = dir.path().join("artifacts/greeter/1.1");
    let uri =
        |kind: &str, file: &str| format!("  artifact {kind}: file://{}", artifacts.join(file).display());
    assert_eq!(
        lines_starting(&stdout, &["task", "  artifact"]),
        [
            format!("task done on branch {BRANCH}"),
            uri("diff", "diff.patch"),
            uri("test", "test-results.json"),
            uri("log", "execution.log"),
            uri("transcript", "transcript.json"),
            uri("summary", "summary.json"),
        ]
    );
    assert_eq!(pushed_greet(dir.path()).as_deref(), Some(sample::GREET_CONTENT));
    let summary = read_json(artifacts.join("summary.json"));
    assert_eq!((summary["success"].clone(), summary["branch"].clone()), (json!(true), json!(BRANCH)));
    let diff = std::fs::read_to_string(artifacts.join("diff.patch")).unwrap();
    assert!(diff.contains("+echo \"Hello, ${1:-world}!\""), "{diff}");
}

#[test]
fn llm_integration_plays_the_tool_loop_with_the_model_named_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = stdout_of(&run_example("llm_integration", dir.path(), &[("LLM_MODEL", "example-model")]));

    assert_eq!(
        lines_starting(&stdout, &["model example-model in", "  ", "files changed", "explanation", "task"]),
        [
            "model example-model in 3 turns, 3 tool calls:",
            "  finish x1",
            "  run_tests x1",
            "  write_file x1",
            "files changed: greet.sh",
            "explanation: Added greet.sh; the tests pass.",
            "task done",
        ]
    );
    assert_eq!(pushed_greet(dir.path()).as_deref(), Some(sample::GREET_CONTENT));
    let transcript = read_json(dir.path().join("artifacts/greeter/1.1/transcript.json"));
    let calls: Vec<&Value> = transcript["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["tool_calls"].as_array())
        .flatten()
        .map(|call| &call["name"])
        .collect();
    assert_eq!(calls, [&json!("write_file"), &json!("run_tests"), &json!("finish")]);
}

#[test]
fn custom_playbook_runs_the_named_playbook_and_skips_the_step_whose_condition_is_false() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = stdout_of(&run_example("custom_playbook", dir.path(), &[]));

    assert_eq!(
        lines_starting(&stdout, &["playbook", "ran playbook", "  ", "task"]),
        [
            "playbook \"Backend Task Playbook\": 3 steps",
            "ran playbook: playbooks/backend-task.yaml in the repository",
            "  Install dependencies: passed (attempts: 1)",
            "  Run linter: skipped (attempts: 0)",
            "  Run unit tests: passed (attempts: 1)",
            "task done",
        ]
    );
    let report = read_json(dir.path().join("artifacts/greeter/1.1/test-results.json"));
    assert_eq!(report["playbook"], "Backend Task Playbook");
    assert_eq!(pushed_greet(dir.path()).as_deref(), Some(sample::GREET_CONTENT));
}

#[tokio::test(flavor = "multi_thread")]
async fn external_services_uses_the_repo_pool_the_artifact_store_and_the_task_registry() {
    let dir = tempfile::tempdir().unwrap();
    let registry = FakeService::start(|_| Reply::ok(json!({}))).await;
    // The example creates its origin in `dir` before it asks for a slot.
    let pool = fake_repo_pool(dir.path().join("origin.git"), dir.path().join("pool"), || {}).await;
    let store = FakeService::start(|request| match request.body["metadata"].as_str() {
        Some(metadata) => {
            let path = serde_json::from_str::<Value>(metadata).unwrap()["path"].clone();
            Reply::ok(json!({ "uri": format!("/artifacts/{}", path.as_str().unwrap_or("?")) }))
        }
        None => Reply::ok(json!({})),
    })
    .await;
    let env = [
        ("TASK_REGISTRY_URL", registry.url()),
        ("REPO_POOL_URL", pool.url()),
        ("ARTIFACT_STORE_URL", store.url()),
    ];
    let path = dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_example("external_services", &path, &env)
    })
    .await
    .unwrap();
    let stdout = stdout_of(&output);

    assert_eq!(
        lines_starting(&stdout, &["slot", "uploaded", "task", "warning"]),
        [
            "slot from the Repo Pool: slot-1",
            "uploaded diff: /artifacts/greeter/1.1/diff.patch",
            "uploaded test: /artifacts/greeter/1.1/test-results.json",
            "uploaded log: /artifacts/greeter/1.1/execution.log",
            "uploaded transcript: /artifacts/greeter/1.1/transcript.json",
            "uploaded summary: /artifacts/greeter/1.1/summary.json",
            "task done",
        ]
    );
    let calls = |service: &FakeService| -> Vec<String> {
        service.accepted().iter().map(|r| format!("{} {}", r.method, r.path)).collect()
    };
    assert_eq!(calls(&pool), ["GET /health", "POST /slots/allocate", "POST /slots/slot-1/release"]);
    assert_eq!(calls(&store).iter().filter(|c| *c == "POST /artifacts").count(), 5);
    let requests = registry.accepted();
    let statuses: Vec<&Value> =
        requests.iter().filter(|r| r.path == "/tasks/1.1/status").map(|r| &r.body["status"]).collect();
    assert_eq!(statuses, [&json!("in_progress"), &json!("done")]);
    let event_types: Vec<&str> = requests
        .iter()
        .filter(|r| r.path == "/tasks/1.1/events")
        .filter_map(|r| r.body["event_type"].as_str())
        .collect();
    assert_eq!((event_types.first(), event_types.last()), (Some(&"TaskStarted"), Some(&"TaskCompleted")));
    assert_eq!(requests.iter().filter(|r| r.path == "/tasks/1.1/artifacts").count(), 5);
    assert_eq!(requests[0].path, "/health");
    assert_eq!(pushed_greet(dir.path()).as_deref(), Some(sample::GREET_CONTENT));
}

#[test]
fn external_services_without_the_service_urls_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_example("external_services", dir.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "Error: set TASK_REGISTRY_URL, REPO_POOL_URL and ARTIFACT_STORE_URL to the services\n"
    );
    assert!(!dir.path().join("origin.git").exists(), "nothing was set up");
}

#[test]
fn docker_runner_says_it_skipped_when_no_docker_engine_answers() {
    let dir = tempfile::tempdir().unwrap();
    let nowhere = format!("unix://{}", dir.path().join("no-engine.sock").display());
    let stdout = stdout_of(&run_example("docker_runner", dir.path(), &[("DOCKER_HOST", &nowhere)]));
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("skipped: no docker engine answers ("), "{stdout}");
    assert!(!dir.path().join("origin.git").exists(), "nothing ran");
}

/// Whether a docker engine answers here.
fn docker_answers() -> bool {
    Command::new("docker").args(["version"]).output().is_ok_and(|o| o.status.success())
}

/// Imports an image holding only `/bin/sh` (the host's dash and its libraries): no
/// registry is reachable, and the sample's steps need nothing but a shell.
fn import_shell_image(tag: &str) {
    let root = tempfile::tempdir().unwrap();
    let shell = std::fs::canonicalize("/bin/sh").unwrap();
    let ldd = Command::new("ldd").arg(&shell).output().unwrap();
    let libraries = String::from_utf8_lossy(&ldd.stdout).into_owned();
    let mut files: Vec<(PathBuf, PathBuf)> = vec![(shell, root.path().join("bin/sh"))];
    for library in libraries.split_whitespace().filter(|w| w.starts_with('/')) {
        files.push((PathBuf::from(library), root.path().join(library.trim_start_matches('/'))));
    }
    for (from, to) in files {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
    let tar = format!("tar -C {} -c . | docker import - {tag} >/dev/null", root.path().display());
    assert!(Command::new("sh").args(["-c", &tar]).status().unwrap().success(), "docker import");
}

#[test]
fn docker_runner_runs_the_steps_in_containers_or_says_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    if !docker_answers() {
        let stdout = stdout_of(&run_example("docker_runner", dir.path(), &[]));
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(stdout.starts_with("skipped: no docker engine answers ("), "{stdout}");
        println!("no docker engine answers here: only the skip was checked");
        return;
    }
    let tag = format!("agent-runner-example-sh:{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    import_shell_image(&tag);
    let since = chrono::Utc::now().timestamp().to_string();
    let output = run_example("docker_runner", dir.path(), &[("EXAMPLE_DOCKER_IMAGE", &tag)]);
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let events = Command::new("docker")
        .args(["events", "--since", &since, "--until", &until, "--filter", "event=start"])
        .args(["--filter", &format!("image={tag}"), "--format", "{{.Actor.Attributes.image}}"])
        .output()
        .unwrap();
    let removed = Command::new("docker").args(["image", "rm", "--force", &tag]).output().unwrap();
    let stdout = stdout_of(&output);

    assert_eq!(
        lines_starting(&stdout, &["steps run", "  ", "task"]),
        [
            format!("steps run in containers of {tag}"),
            "  unit tests: passed greet: ok".into(),
            "task done".into()
        ]
    );
    let started = String::from_utf8_lossy(&events.stdout).into_owned();
    assert_eq!(started.lines().collect::<Vec<_>>(), [tag.as_str()], "one step container started");
    assert!(removed.status.success());
    assert_eq!(pushed_greet(dir.path()).as_deref(), Some(sample::GREET_CONTENT));
}

#[tokio::test(flavor = "multi_thread")]
async fn kubernetes_runner_runs_the_task_in_a_job_and_checks_what_its_pod_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_agent-runner"));
    let api =
        kubernetes_support::KubeApi::start(binary, &dir.path().join("pods"), std::time::Duration::ZERO).await;
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, "examples");
    let work = dir.path().join("work");
    let kubeconfig = kubeconfig.to_str().unwrap().to_string();
    let output = tokio::task::spawn_blocking(move || {
        run_example("kubernetes_runner", &work, &[("KUBECONFIG", &kubeconfig), ("K8S_NAMESPACE", "examples")])
    })
    .await
    .unwrap();
    let stdout = stdout_of(&output);

    assert_eq!(
        lines_starting(&stdout, &["tasks run", "task"]),
        ["tasks run as Jobs of ghcr.io/necrocode/agent-runner:0.1.0 in namespace examples", "task done"]
    );
    assert!(stdout.contains(&format!("branch {BRANCH} commit ")), "{stdout}");
    assert_eq!(pushed_greet(&dir.path().join("work")).as_deref(), Some(sample::GREET_CONTENT));
    assert_eq!(api.created().len(), 1, "one Job");
    assert_eq!(api.pods_started(), 1);
    assert!(api.job_names().is_empty(), "deleted once read");
}

#[test]
fn kubernetes_runner_says_it_skipped_when_no_cluster_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let output = Command::new(example_binary("kubernetes_runner"))
        .arg(dir.path().join("work"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .output()
        .unwrap();
    let stdout = stdout_of(&output);
    assert!(
        stdout.lines().last().unwrap_or("").starts_with("skipped: no Kubernetes cluster configured ("),
        "{stdout}"
    );
}
