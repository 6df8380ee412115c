//! Shared test harness: a private RabbitMQ topology per test, a sample origin
//! repository, a scripted OpenAI-compatible endpoint, and a worker wired to all three.
#![allow(dead_code)]

pub mod binary;
pub mod broker;
pub mod git_http;
pub mod processes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent_runner::amqp::{AmqpSession, TopologyNames};
use agent_runner::config::{self, ArtifactStoreLocation, ConfigOverrides, RunnerConfig};
use agent_runner::llm::scripted::{self, Script, ScriptedLlmHandle};
use agent_runner::pipeline::RunnerSecrets;
use agent_runner::worker::{Worker, WorkerOptions, WorkerReport};
use tokio_util::sync::CancellationToken;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// An HTTP client on the product's shared TLS configuration. reqwest's own default
/// client (`reqwest::get`, `Client::new`) wants a process-wide crypto provider, which
/// only the binary installs.
pub fn http_client() -> reqwest::Client {
    agent_runner::tls::http_client_builder().build().unwrap()
}

/// Everything one test needs, in its own temporary directory and private topology.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub names: TopologyNames,
    pub session: AmqpSession,
    pub origin: PathBuf,
    pub llm: ScriptedLlmHandle,
}

impl Harness {
    /// A fresh harness whose origin holds the sample project and whose model answers
    /// with `script`.
    pub async fn new(test_name: &str, script: Script) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("origin.git");
        agent_runner::demo::sample::create_origin(&origin, "main", agent_runner::demo::sample::SAMPLE_FILES)
            .unwrap();
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let names = TopologyNames::isolated(&format!("test.{test_name}.{suffix}"));
        let session = AmqpSession::connect(AMQP_URL, test_name).await.unwrap();
        session.declare(&names).await.unwrap();
        let llm = scripted::start(script).await.unwrap();
        Harness { dir, names, session, origin, llm }
    }

    pub fn repo_url(&self) -> String {
        format!("file://{}", self.origin.display())
    }

    pub fn artifacts_dir(&self) -> PathBuf {
        self.dir.path().join("artifacts")
    }

    /// The worker's configuration: defaults, with this harness's directories and model.
    pub fn config(&self) -> RunnerConfig {
        let empty_env = |_: &str| None;
        let overrides = ConfigOverrides {
            llm_endpoint: Some(self.llm.base_url()),
            pool_dir: Some(self.dir.path().join("slots")),
            playbooks_dir: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks")),
            runner_id: Some("test-runner".into()),
            ..ConfigOverrides::default()
        };
        let mut config = config::load(None, &empty_env, &overrides).unwrap();
        config.services.artifact_store = ArtifactStoreLocation::Filesystem(self.artifacts_dir());
        config.git.allowed_remotes.push(local_remotes(self.dir.path()));
        config
    }

    /// Publishes a raw body to the task exchange (confirmed).
    pub async fn publish(&self, routing_key: &str, body: &[u8]) {
        self.session.publish_task(&self.names, routing_key, body).await.unwrap();
    }

    /// Runs a worker with `config` until it has settled `tasks` deliveries.
    pub async fn run_worker(&self, config: RunnerConfig, concurrency: u16, tasks: usize) -> WorkerReport {
        let secrets = RunnerSecrets { git_token: None, llm_api_key: None };
        self.run_worker_with(config, secrets, concurrency, tasks).await
    }

    /// [`Harness::run_worker`] holding `secrets` (a git token, for the token tests).
    pub async fn run_worker_with(
        &self,
        config: RunnerConfig,
        secrets: RunnerSecrets,
        concurrency: u16,
        tasks: usize,
    ) -> WorkerReport {
        let worker = Worker::connect(&config, secrets, self.names.clone()).await.unwrap();
        let options = WorkerOptions {
            concurrency,
            stop_after: Some(tasks),
            consumer_tag: "test-worker".into(),
            idle_timeout: None,
        };
        let run = Arc::new(worker).run(options, CancellationToken::new());
        tokio::time::timeout(Duration::from_secs(120), run).await.expect("worker finished in time").unwrap()
    }

    /// The kind, step and message reason headers of the only dead letter.
    pub async fn only_dead_letter(&self) -> (String, String, String) {
        let letters =
            agent_runner::amqp::browse_queue(&self.session, &self.names.dead_letter_queue, 10).await.unwrap();
        assert_eq!(letters.len(), 1);
        let header = |name: &str| letters[0].header_text(name).unwrap_or_default();
        (header("x-failure-kind"), header("x-failed-step"), header("x-failure-message"))
    }

    /// Ready messages in the work queue and the dead-letter queue.
    pub async fn depths(&self) -> (u32, u32) {
        (
            self.session.ready_count(&self.names.work_queue).await.unwrap(),
            self.session.ready_count(&self.names.dead_letter_queue).await.unwrap(),
        )
    }

    pub async fn cleanup(self) {
        self.session.delete(&self.names).await.unwrap();
    }
}

/// Runs the git CLI with a fixed identity and no user or system config, and returns its
/// standard output trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args(["-c", "user.name=seed", "-c", "user.email=seed@example.test", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// The `git.allowed_remotes` entry admitting the local origins a test creates under `dir`.
pub fn local_remotes(dir: &Path) -> agent_runner::git::RemotePrefix {
    agent_runner::git::RemotePrefix::local_directory(dir).unwrap()
}

/// The same for a config file the real binary reads: https plus the origins under `dir`.
pub fn local_remotes_yaml(dir: &Path) -> String {
    format!("git:\n  allowed_remotes: [\"https://\", \"file://{}/\"]\n", dir.display())
}

/// What `read` gives once it gives `expected`, or after 5 s as it then is. For queue
/// depths: a quorum queue takes back returned messages (and applies acks) through its
/// log, so a count may lag a channel close or an ack by a moment.
pub async fn settling<T: PartialEq, F: Future<Output = T>>(expected: &T, mut read: impl FnMut() -> F) -> T {
    let mut seen = read().await;
    for _ in 0..250 {
        if &seen == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = read().await;
    }
    seen
}

/// Reads events from a tap until `count` arrived or a quiet second passed.
pub async fn drain_events(tap: &mut agent_runner::amqp::ExchangeTap) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    while let Some(body) = tap.next_body(Duration::from_secs(1)).await {
        events.push(serde_json::from_slice(&body).unwrap());
    }
    events
}

/// The `(type, step-or-artifact)` sequence of a task's events, for whole-value asserts.
pub fn event_outline(events: &[serde_json::Value], task_id: &str) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["task_id"] == task_id)
        .map(|e| {
            let detail = e["data"]["step"].as_str().or_else(|| e["data"]["type"].as_str()).unwrap_or("");
            (e["type"].as_str().unwrap_or("").to_string(), detail.to_string())
        })
        .collect()
}

/// Reads a `file://` URI's content.
pub fn read_uri(uri: &str) -> String {
    std::fs::read_to_string(uri.strip_prefix("file://").unwrap()).unwrap()
}
