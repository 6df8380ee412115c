//! What a deployment relies on, on the real binary and the real broker: `worker --once`
//! ends on an empty queue after `--idle-timeout` (a Kubernetes Job that lost the race
//! for a task frees its pod), a worker with `amqp.idle_timeout_seconds` ends after its
//! last task, `agent-runner health` answers for the worker's readiness with its exit
//! code, as a container healthcheck without curl needs, and a worker whose execution
//! mode cannot run here refuses to start instead of failing every task it takes.

mod common;
mod reliability_support;

use std::path::Path;
use std::time::Duration;

use agent_runner::demo::sample;
use agent_runner::llm::scripted::Script;
use common::{AMQP_URL, Harness};
use reliability_support::{WorkerProcess, agent_runner, assert_depths, binary_config, commits_on_branch};

/// Bounds every wait for the binary, so a regression fails instead of hanging the suite.
const EXIT_LIMIT: Duration = Duration::from_secs(60);

/// The binary's config on the harness's topology, model and directories; `amqp_extra`
/// goes into the `amqp` section, `extra` at the top level.
fn write_config(harness: &Harness, amqp_extra: &str, extra: &str) {
    let dir = harness.dir.path();
    let top = format!(
        "{amqp_extra}runner_id: deploy-worker\n{}{extra}",
        reliability_support::harness_parts_yaml(harness)
    );
    std::fs::write(dir.join("c.yaml"), binary_config(&harness.names, AMQP_URL, &top)).unwrap();
}

fn log_of(dir: &Path, label: &str) -> String {
    std::fs::read_to_string(dir.join(format!("worker-{label}.log"))).unwrap_or_default()
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn worker_once_exits_0_after_the_idle_timeout_on_an_empty_queue() {
    let harness = Harness::new("deploy-idle-once", Script::replies(["unused"])).await;
    let dir = harness.dir.path().to_path_buf();
    write_config(&harness, "", "");
    let worker = WorkerProcess::start(&dir, "1", &["--once", "--idle-timeout", "1"]);
    let status = worker.wait(EXIT_LIMIT).await;
    assert!(status.success(), "{status:?}: {}", log_of(&dir, "1"));
    assert!(log_of(&dir, "1").contains("idle timeout"), "{}", log_of(&dir, "1"));
    assert!(harness.llm.requests().is_empty());
    harness.cleanup().await;
}

#[tokio::test]
async fn a_configured_idle_timeout_ends_the_worker_after_its_last_task() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("deploy-idle-config", Script::responder(move |_| answer.clone())).await;
    let dir = harness.dir.path().to_path_buf();
    write_config(&harness, "  idle_timeout_seconds: 2\n", "");
    let task = serde_json::to_vec(&sample::sample_task(&harness.repo_url(), "i.1")).unwrap();
    harness.publish("task.backend", &task).await;

    let worker = WorkerProcess::start(&dir, "1", &[]);
    let status = worker.wait(EXIT_LIMIT).await;
    assert!(status.success(), "{status:?}: {}", log_of(&dir, "1"));
    assert_eq!(
        commits_on_branch(&harness.origin, "main", "feature/task-greeter-i.1").map(|c| c.len()),
        Some(1)
    );
    assert_depths(&harness, (0, 0)).await;
    harness.cleanup().await;
}

#[tokio::test]
async fn health_exits_0_while_the_worker_is_ready_and_1_once_it_is_gone() {
    let harness = Harness::new("deploy-health", Script::replies(["unused"])).await;
    let dir = harness.dir.path().to_path_buf();
    let addr = format!("127.0.0.1:{}", free_port());
    write_config(&harness, "", &format!("http:\n  listen: {addr}\n"));
    let health = |args: &'static [&'static str]| {
        let dir = dir.clone();
        async move {
            let mut all = vec!["--config", "c.yaml", "health"];
            all.extend_from_slice(args);
            agent_runner(&dir, &all).await
        }
    };

    let worker = WorkerProcess::start(&dir, "1", &[]);
    let ready = async {
        loop {
            let answer = health(&[]).await;
            if answer.status.success() {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let answer = tokio::time::timeout(EXIT_LIMIT, ready).await.expect("the worker became ready");
    let stdout = String::from_utf8_lossy(&answer.stdout).into_owned();
    assert_eq!(stdout, format!("http://{addr}/readyz: ready\n"));
    let live = health(&["--live"]).await;
    assert_eq!(live.status.code(), Some(0), "{}", String::from_utf8_lossy(&live.stdout));

    worker.terminate();
    assert!(worker.wait(EXIT_LIMIT).await.success());
    let gone = health(&[]).await;
    assert_eq!(gone.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&gone.stdout).into_owned();
    assert!(stdout.starts_with(&format!("http://{addr}/readyz: no answer: ")), "{stdout}");
    harness.cleanup().await;
}

#[tokio::test]
async fn health_without_an_http_address_says_what_to_set() {
    let harness = Harness::new("deploy-health-none", Script::replies(["unused"])).await;
    let dir = harness.dir.path().to_path_buf();
    write_config(&harness, "", "");
    let answer = agent_runner(&dir, &["--config", "c.yaml", "health"]).await;
    assert!(!answer.status.success());
    let stderr = String::from_utf8_lossy(&answer.stderr).into_owned();
    assert!(stderr.contains("set http.listen in the configuration or pass --http-addr"), "{stderr}");
    harness.cleanup().await;
}

/// Starts the worker with `mode` and `env` on the harness's config; its exit and stderr.
async fn worker_refusal(harness: &Harness, mode: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_agent-runner"));
    command
        .args(["--config", "c.yaml", "--execution-mode", mode, "worker", "--once", "--idle-timeout", "5"])
        .current_dir(harness.dir.path())
        .env_remove("OPENAI_API_KEY")
        .env_remove("AMQP_URL");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test]
async fn a_sandbox_worker_without_bubblewrap_refuses_to_start_and_takes_no_task() {
    let harness = Harness::new("deploy-no-bwrap", Script::replies(["unused"])).await;
    write_config(&harness, "", "");
    let task = serde_json::to_vec(&sample::sample_task(&harness.repo_url(), "n.1")).unwrap();
    harness.publish("task.backend", &task).await;
    let empty_path = harness.dir.path().join("empty-path");
    std::fs::create_dir(&empty_path).unwrap();
    let path = empty_path.display().to_string();
    let (code, stderr) = worker_refusal(&harness, "sandbox", &[("PATH", &path)]).await;
    assert_eq!(code, Some(78), "{stderr}");
    assert_eq!(
        stderr,
        "error: execution_mode sandbox: the sandbox does not work here: `bwrap` is not installed \
         (Debian/Ubuntu package bubblewrap)\n"
    );
    assert_depths(&harness, (1, 0)).await;
    harness.cleanup().await;
}

#[tokio::test]
async fn a_docker_worker_whose_engine_does_not_answer_refuses_to_start_as_unavailable() {
    let harness = Harness::new("deploy-no-engine", Script::replies(["unused"])).await;
    write_config(&harness, "", "docker:\n  image: agent-runner-test:absent\n");
    let socket = format!("unix://{}/no-engine.sock", harness.dir.path().display());
    let (code, stderr) = worker_refusal(&harness, "docker", &[("DOCKER_HOST", &socket)]).await;
    assert_eq!(code, Some(69), "{stderr}");
    assert!(
        stderr.starts_with("error: execution_mode docker: the docker engine does not answer: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    harness.cleanup().await;
}

#[tokio::test]
async fn a_docker_worker_whose_image_is_absent_refuses_to_start() {
    let engine =
        std::process::Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
    if !engine.is_ok_and(|o| o.status.success()) {
        println!("skipped: no docker engine answers here (scripts/test-deploy starts one)");
        return;
    }
    let harness = Harness::new("deploy-no-image", Script::replies(["unused"])).await;
    let image = format!("agent-runner-test-absent:{}", uuid::Uuid::new_v4().simple());
    write_config(&harness, "", &format!("docker:\n  image: {image}\n"));
    let (code, stderr) = worker_refusal(&harness, "docker", &[]).await;
    assert_eq!(code, Some(78), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: execution_mode docker: the image {image} is not on the docker engine (the worker never \
             pulls: docker pull or docker load it)\n"
        )
    );
    harness.cleanup().await;
}

#[tokio::test]
async fn a_worker_whose_playbooks_dir_holds_a_broken_playbook_refuses_to_start_naming_it() {
    let harness = Harness::new("deploy-bad-playbook", Script::replies(["unused"])).await;
    let playbooks = harness.dir.path().join("playbooks");
    std::fs::create_dir(&playbooks).unwrap();
    std::fs::write(playbooks.join("backend.yaml"), "name: backend\nsteps:\n  - name: t\n    comand: true\n")
        .unwrap();
    let extra = format!("playbooks_dir: {}\n", playbooks.display());
    let dir = harness.dir.path();
    let config =
        binary_config(&harness.names, AMQP_URL, &format!("{}{extra}", common::local_remotes_yaml(dir)));
    std::fs::write(dir.join("c.yaml"), config).unwrap();
    let (code, stderr) = worker_refusal(&harness, "local-process", &[]).await;
    assert_eq!(code, Some(78), "{stderr}");
    let file = playbooks.join("backend.yaml");
    assert!(stderr.starts_with(&format!("error: playbooks_dir: {}:4:", file.display())), "{stderr}");
    assert!(stderr.contains("comand"), "{stderr}");
    harness.cleanup().await;
}
