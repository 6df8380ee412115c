//! Broker loss on a RabbitMQ node of this test's own (the shared broker on 5672 is never
//! touched): a batch of tasks runs while the node's application is stopped and started
//! (`rabbitmqctl stop_app` / `start_app`) and the worker is SIGKILLed and restarted.
//! Every task completes, none is lost, none has its effects twice.

mod common;
mod reliability_support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agent_runner::amqp::{AmqpSession, HeaderMap, Outgoing, TopologyNames};
use agent_runner::demo::sample;
use agent_runner::llm::scripted::{self, Script};
use reliability_support::{WorkerProcess, binary_config, commits_on_branch, eventually};
use serde_json::json;

/// Tasks in the batch.
const TASKS: usize = 6;
/// Starting a fresh node (Erlang VM, Mnesia, plugins) takes a few seconds; a minute is
/// far beyond it and still bounds the test.
const NODE_START_SECONDS: u64 = 60;
const BATCH_SECONDS: u64 = 120;

/// A RabbitMQ node in a temporary directory, stopped and removed on drop.
struct OwnBroker {
    node: String,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl OwnBroker {
    async fn start() -> OwnBroker {
        let dir = tempfile::tempdir().unwrap();
        // The node runs as the rabbitmq user, which must be able to write here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let (port, dist_port) = (free_port(), free_port());
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let node = format!("ar-test-{suffix}@localhost");
        let base = dir.path();
        std::fs::write(base.join("rabbitmq.conf"), format!("listeners.tcp.local = 127.0.0.1:{port}\n"))
            .unwrap();
        std::fs::write(base.join("enabled_plugins"), "[].\n").unwrap();
        for file in ["rabbitmq.conf", "enabled_plugins"] {
            std::fs::set_permissions(base.join(file), std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        let started = Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", base.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", base.join("log"))
            .env("RABBITMQ_CONFIG_FILE", base.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", base.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", base.join("pid"))
            .status()
            .expect("rabbitmq-server is installed");
        assert!(started.success(), "rabbitmq-server -detached failed: {started:?}");
        let broker = OwnBroker { node, port, _dir: dir };
        // The node registers with epmd only once its VM is up; until then await_startup
        // fails at once, so it is retried.
        let deadline = std::time::Instant::now() + Duration::from_secs(NODE_START_SECONDS);
        while !broker.ctl(&["await_startup", "--timeout", "5"]).await {
            assert!(std::time::Instant::now() < deadline, "node {} did not start", broker.node);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        broker
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `rabbitmqctl -n NODE ARGS...`, off the runtime; whether it succeeded.
    async fn ctl(&self, args: &[&str]) -> bool {
        self.ctl_output(args).await.status.success()
    }

    async fn ctl_output(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new("rabbitmqctl");
        command.args(["-n", &self.node]).args(args);
        tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
    }

    /// Messages (ready and unacked) in `queue`, from the node itself.
    async fn messages_in(&self, queue: &str) -> Option<u64> {
        let output =
            self.ctl_output(&["list_queues", "--quiet", "--no-table-headers", "name", "messages"]).await;
        String::from_utf8_lossy(&output.stdout).lines().find_map(|line| {
            let mut fields = line.split_whitespace();
            (fields.next() == Some(queue)).then(|| fields.next()?.parse().ok())?
        })
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["-n", &self.node, "stop"]).output();
    }
}

fn completed(artifacts: &Path) -> usize {
    (1..=TASKS)
        .filter(|n| {
            let summary = artifacts.join(format!("greeter/b.{n}/summary.json"));
            std::fs::read_to_string(summary)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .is_some_and(|s| s["success"] == true)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_survives_a_broker_restart_and_a_worker_kill_with_nothing_lost_or_doubled() {
    let broker = OwnBroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    sample::create_origin(&origin, "main", sample::SAMPLE_FILES).unwrap();
    let answer = sample::scripted_answer();
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();
    let names = TopologyNames::isolated("restart");
    let artifacts = dir.path().join("artifacts");
    let extra = format!(
        "runner_id: restart-worker\npool_dir: {}\nartifact_store_url: file://{}\nllm:\n  endpoint: {}\n\
         reliability:\n  retry_delays_seconds: [1]\n  reconnect_max_delay_seconds: 1\n{}",
        dir.path().join("slots").display(),
        artifacts.display(),
        llm.base_url(),
        common::local_remotes_yaml(dir.path()),
    );
    std::fs::write(dir.path().join("c.yaml"), binary_config(&names, &broker.url(), &extra)).unwrap();

    let session = AmqpSession::connect(&broker.url(), "restart-test").await.unwrap();
    session.declare(&names).await.unwrap();
    for n in 1..=TASKS {
        let mut task = sample::sample_task(&format!("file://{}", origin.display()), &format!("b.{n}"));
        // A second in the tests keeps tasks in flight when the broker goes away.
        task["playbook"] = json!({ "name": "slow", "steps": [{ "name": "unit tests", "command": "sh tests/test_greet.sh && sleep 1" }] });
        let body = serde_json::to_vec(&task).unwrap();
        let outgoing = Outgoing {
            exchange: &names.task_exchange,
            routing_key: "task.backend",
            body: &body,
            headers: &HeaderMap::new(),
            mandatory: true,
        };
        session.publisher.publish(outgoing).await.unwrap();
    }
    drop(session);

    let mut worker = WorkerProcess::start(dir.path(), "1", &["--concurrency", "2"]);
    eventually("a first task completed", BATCH_SECONDS, || completed(&artifacts) >= 1).await;
    assert!(broker.ctl(&["stop_app"]).await);
    assert!(broker.ctl(&["start_app"]).await);
    let first_log = dir.path().join("worker-1.log");
    let reconnected = || std::fs::read_to_string(&first_log).unwrap_or_default().contains("consuming again");
    eventually("the worker reconnected and consumes again", BATCH_SECONDS, reconnected).await;
    eventually("half the batch completed", BATCH_SECONDS, || completed(&artifacts) >= TASKS / 2).await;
    worker.kill_hard();
    let worker = WorkerProcess::start(dir.path(), "2", &["--concurrency", "2"]);
    let done = tokio::time::timeout(
        Duration::from_secs(BATCH_SECONDS),
        eventually("the whole batch completed", BATCH_SECONDS + 1, || completed(&artifacts) == TASKS),
    )
    .await;
    if done.is_err() {
        let logs: Vec<String> = ["1", "2"]
            .iter()
            .map(|n| std::fs::read_to_string(dir.path().join(format!("worker-{n}.log"))).unwrap_or_default())
            .collect();
        panic!("the batch did not complete; worker logs:\n{}\n-----\n{}", logs[0], logs[1]);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(BATCH_SECONDS);
    while broker.messages_in(&names.work_queue).await != Some(0) {
        assert!(std::time::Instant::now() < deadline, "the work queue never emptied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.terminate();
    assert!(worker.wait(Duration::from_secs(BATCH_SECONDS)).await.success());

    // Lost: none (all completed, nothing dead-lettered). Doubled: none (one commit each).
    assert_eq!(broker.messages_in(&names.dead_letter_queue).await, Some(0));
    let commits: Vec<usize> = (1..=TASKS)
        .map(|n| {
            commits_on_branch(&origin, "main", &format!("feature/task-greeter-b.{n}")).map_or(0, |c| c.len())
        })
        .collect();
    assert_eq!(commits, vec![1; TASKS]);
    eprintln!(
        "figure: {TASKS} tasks, 1 worker kill, 1 broker restart: lost 0, duplicate commits 0, model calls {}",
        llm.requests().len()
    );
}
