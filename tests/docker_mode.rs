//! Docker mode on the real engine: each step in a container of the locally made test
//! image (`scripts/docker-engine` installs docker.io, starts dockerd and imports the
//! image; `scripts/test` runs it first). A task fails its test in a container, is
//! repaired, passes in another and is pushed and acked; the container's own CPU and
//! memory are what the run reports; an engine that stops answering mid-task, or a missing
//! image, is an infrastructure failure: retried, then dead-lettered as such, never a
//! failing test.
//!
//! Without an engine these tests fail under CI (`CI=true`) and elsewhere print a line
//! saying they were skipped.

mod common;
mod reliability_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent_runner::amqp::RetryQueues;
use agent_runner::config::ExecutionMode;
use agent_runner::demo::sample;
use agent_runner::llm::scripted::Script;
use agent_runner::process::{CommandEnd, CommandSpec, Isolation, ProcessError, run_command};
use common::processes::{BURN_CPU_AND_MEMORY, BURNT_CPU_SECONDS, BURNT_MEMORY_BYTES};
use common::{AMQP_URL, Harness, drain_events};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The image `scripts/docker-engine` makes (`AGENT_RUNNER_TEST_IMAGE` names another).
const DEFAULT_IMAGE: &str = "agent-runner-base:bookworm";

/// The test image when the engine answers and has it; otherwise a panic under CI, and a
/// skip line elsewhere.
fn engine_image(test: &str) -> Option<String> {
    let image = std::env::var("AGENT_RUNNER_TEST_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_string());
    let inspect = Command::new("docker").args(["image", "inspect", "--format", "{{.Id}}", &image]).output();
    let why = match inspect {
        Ok(output) if output.status.success() => return Some(image),
        Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_string(),
        Err(error) => format!("no docker CLI: {error}"),
    };
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{test}: CI needs the docker engine and {image} (scripts/docker-engine): {why}");
    }
    eprintln!("SKIPPED {test}: no docker engine with {image} here ({why}); run scripts/docker-engine");
    None
}

fn docker_spec(image: &str, command: &str, dir: &Path) -> CommandSpec {
    let mut spec = CommandSpec::new(command, dir, Duration::from_secs(120), 64 * 1024);
    spec.isolation =
        Isolation::Docker { image: image.into(), network: false, cpu_percent: None, volumes: vec![] };
    spec
}

#[tokio::test]
async fn a_container_step_reports_the_containers_cpu_and_memory_and_its_own_exit_codes() {
    let Some(image) = engine_image("docker container figures") else { return };
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    // Inside the container: its own root (the image's Debian), the workspace mounted.
    let probe = "cat /etc/debian_version; touch made-inside; ".to_string() + BURN_CPU_AND_MEMORY;
    let started = Instant::now();
    let outcome = run_command(&docker_spec(&image, &probe, dir.path()), &cancel).await.unwrap();
    eprintln!("container step with 1 s of CPU took {:.2} s", started.elapsed().as_secs_f64());
    assert!(outcome.success(), "{}", outcome.output);
    assert!(outcome.output.contains("burnt"), "{}", outcome.output);
    assert!(dir.path().join("made-inside").exists());
    let usage = outcome.usage.expect("the container's figures");
    eprintln!("container figures: {usage:?}");
    assert!(usage.cpu_seconds() >= BURNT_CPU_SECONDS, "{usage:?}");
    assert!(usage.peak_memory_bytes >= BURNT_MEMORY_BYTES, "{usage:?}");

    // 125 from the command inside is the command's exit code, not the engine's failure,
    // even when it prints what the CLI would.
    let lookalike = "echo 'docker: Cannot connect to the Docker daemon' >&2; exit 125";
    let inside = run_command(&docker_spec(&image, lookalike, dir.path()), &cancel).await;
    assert!(matches!(inside, Ok(ref o) if o.end == CommandEnd::Exited(125)), "{inside:?}");
    // A failing test is a failing test: code 1, with the container's figures.
    let failing = run_command(&docker_spec(&image, "exit 3", dir.path()), &cancel).await.unwrap();
    assert_eq!(failing.end, CommandEnd::Exited(3));
    assert!(failing.usage.is_some());
}

#[tokio::test]
async fn a_missing_image_is_the_engines_failure_with_its_reason_not_an_exit_code() {
    if engine_image("docker missing image").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("agent-runner-missing:{}", uuid::Uuid::new_v4().simple());
    let outcome = run_command(&docker_spec(&missing, "true", dir.path()), &CancellationToken::new()).await;
    match outcome {
        Err(ProcessError::ContainerEngine { message }) => {
            assert!(message.contains("No such image"), "{message}");
            assert!(message.contains(&missing), "{message}");
        }
        other => panic!("expected the engine's failure, got {other:?}"),
    }
}

/// The implementation the sample tests reject: "Hi World" instead of "Hello, World!".
fn wrong_answer() -> String {
    json!({
        "code_changes": [{ "file_path": sample::GREET_PATH, "operation": "create", "content": "#!/bin/sh\necho \"Hi $1\"\n" }],
        "explanation": "greets tersely"
    })
    .to_string()
}

/// Containers of `image` started since `since` (unix seconds), by the engine's events.
fn containers_started(image: &str, since: u64) -> usize {
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    let output = Command::new("docker")
        .args(["events", "--since", &since.to_string(), "--until", &until.to_string()])
        .args(["--filter", "type=container", "--filter", "event=start", "--format", "{{.From}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).lines().filter(|from| *from == image).count()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn a_task_fails_its_test_in_a_container_is_repaired_passes_and_is_pushed_and_acked() {
    let Some(image) = engine_image("docker end to end") else { return };
    let answers = Arc::new(AtomicUsize::new(0));
    let answer = sample::scripted_answer();
    let counter = answers.clone();
    let script = Script::responder(move |_| match counter.fetch_add(1, Ordering::SeqCst) {
        0 => wrong_answer(),
        _ => answer.clone(),
    });
    let harness = Harness::new("docker-e2e", script).await;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "#").await.unwrap();
    let task = sample::sample_task(&harness.repo_url(), "d.1");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
    let mut config = harness.config();
    config.execution_mode = ExecutionMode::Docker;
    config.docker_image = Some(image.clone());
    agent_runner::pipeline::preflight(&config).await.unwrap();

    let (since, started) = (unix_now(), Instant::now());
    let report = harness.run_worker(config, 1, 1).await;
    eprintln!(
        "docker-mode task (two test rounds in containers) took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!((report.acked, report.dead_lettered, report.unsettled), (1, 0, 0));
    assert_eq!(harness.llm.requests().len(), 2, "a repair round after the failing test");
    let (commit, _) = sample::branch_head(&harness.origin, "feature/task-greeter-d.1").unwrap().unwrap();
    assert_eq!(
        sample::file_at(&harness.origin, &commit, sample::GREET_PATH).unwrap().as_deref(),
        Some(sample::GREET_CONTENT)
    );
    // Both test rounds ran in containers of the image, and none was left behind.
    assert!(containers_started(&image, since) >= 2, "no step containers of {image} started");
    // `--rm`: a container that ended is gone (others of this binary may be running now).
    let ended = Command::new("docker")
        .args(["ps", "-aq", "--filter", "name=agent-runner-", "--filter", "status=exited"])
        .output()
        .unwrap();
    assert!(ended.stdout.is_empty(), "containers left behind: {}", String::from_utf8_lossy(&ended.stdout));

    let events = drain_events(&mut tap).await;
    let tests: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "StepCompleted" && e["data"]["step"] == "test")
        .map(|e| e["data"]["result"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(tests, ["failed", "ok"]);
    let completed = events.iter().find(|e| e["type"] == "TaskCompleted").expect("TaskCompleted");
    let metrics = &completed["data"]["metrics"];
    // The containers' own figures: the sample test is a few shell commands.
    assert_eq!(metrics["commands"], 2, "{metrics}");
    assert!(metrics["memory_mb"].as_f64().unwrap() > 0.0, "{metrics}");
    assert!(metrics["cpu_seconds"].as_f64().unwrap() > 0.0, "{metrics}");
    let summary_path = harness.artifacts_dir().join("greeter/d.1/summary.json");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(summary_path).unwrap()).unwrap();
    assert_eq!(summary["success"], true);
    assert_eq!(&summary["metrics"], metrics);
    harness.cleanup().await;
}

/// A Unix socket at `socket` forwarding to the engine's, so the engine can be made to
/// vanish for one worker: socat, killed and its socket removed when the test says.
struct EngineProxy {
    child: std::process::Child,
}

impl EngineProxy {
    fn start(socket: &Path) -> EngineProxy {
        let child = Command::new("socat")
            .arg(format!("UNIX-LISTEN:{},fork", socket.display()))
            .arg("UNIX-CONNECT:/var/run/docker.sock")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat (scripts/setup installs it)");
        EngineProxy { child }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn an_engine_gone_mid_task_is_retried_then_dead_lettered_as_infrastructure_not_as_a_test() {
    let Some(image) = engine_image("docker engine gone") else { return };
    let answer = sample::scripted_answer();
    let harness = Harness::new("docker-gone", Script::responder(move |_| answer.clone())).await;
    let dir = harness.dir.path().to_path_buf();
    let socket = dir.join("engine.sock");
    let mut proxy = EngineProxy::start(&socket);
    reliability_support::eventually("the proxy listens", 10, || socket.exists()).await;
    let extra = format!(
        "runner_id: docker-gone\npool_dir: {}\nartifact_store_url: file://{}\nplaybooks_dir: {}\n\
         execution_mode: docker\ndocker:\n  image: {image}\nllm:\n  endpoint: {}\n\
         reliability:\n  max_attempts: 2\n  retry_delays_seconds: [1]\n{}",
        dir.join("slots").display(),
        harness.artifacts_dir().display(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks").display(),
        harness.llm.base_url(),
        common::local_remotes_yaml(&dir),
    );
    let config = reliability_support::binary_config(&harness.names, AMQP_URL, &extra);
    std::fs::write(dir.join("c.yaml"), config).unwrap();
    let mut tap = harness.session.tap(&harness.names.events_exchange, "#").await.unwrap();
    let docker_host = format!("unix://{}", socket.display());
    let worker =
        reliability_support::WorkerProcess::start_with_env(&dir, "1", &[], &[("DOCKER_HOST", &docker_host)]);
    // The worker checked the engine through the proxy at start-up (it answered) ...
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !events.iter().any(|e: &serde_json::Value| e["type"] == "RunnerStarted") {
        assert!(Instant::now() < deadline, "the worker did not start: {}", worker_log(&dir));
        if let Some(body) = tap.next_body(Duration::from_secs(1)).await {
            events.push(serde_json::from_slice(&body).unwrap());
        }
    }
    // ... and then the engine is gone.
    proxy.stop();
    std::fs::remove_file(&socket).unwrap();
    let task = sample::sample_task(&harness.repo_url(), "g.1");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;

    let waited = tokio::time::timeout(Duration::from_secs(90), async {
        while harness.depths().await.1 == 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let outcome = waited.await;
    worker.terminate();
    worker.wait(Duration::from_secs(60)).await;
    assert!(outcome.is_ok(), "no dead letter within 90 s: {}", worker_log(&dir));

    let (kind, step, message) = harness.only_dead_letter().await;
    assert_eq!((kind.as_str(), step.as_str()), ("infrastructure", "test"), "{message}");
    assert!(message.contains("Cannot connect to the Docker daemon"), "{message}");
    let letters = agent_runner::amqp::browse_queue(&harness.session, &harness.names.dead_letter_queue, 10)
        .await
        .unwrap();
    assert_eq!(letters[0].header_text("x-attempts").as_deref(), Some("2"));
    events.extend(drain_events(&mut tap).await);
    let of_task = |kind: &str| events.iter().filter(|e| e["type"] == kind && e["task_id"] == "g.1").count();
    assert_eq!((of_task("TaskRetrying"), of_task("TaskFailed"), of_task("TaskDeadLettered")), (1, 2, 1));
    let failed = events.iter().find(|e| e["type"] == "TaskFailed").unwrap();
    assert_eq!(failed["data"]["error_kind"], "infrastructure");
    assert_eq!(failed["data"]["transient"], true);
    // Never a failing test: no repair round, one model call per attempt.
    assert_eq!(harness.llm.requests().len(), 2);
    let tests: Vec<_> =
        events.iter().filter(|e| e["type"] == "StepCompleted" && e["data"]["step"] == "test").collect();
    assert!(tests.iter().all(|e| e["data"]["result"] == "error"), "{tests:?}");

    let retry =
        RetryQueues { work_queue: harness.names.work_queue.clone(), delays: vec![Duration::from_secs(1)] };
    retry.delete(&harness.session).await.unwrap();
    harness.cleanup().await;
}

fn worker_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("worker-1.log")).unwrap_or_default()
}
