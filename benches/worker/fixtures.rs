//! What the benchmark runs against: a generated repository of many files, a model that
//! answers at once with a one-file edit, and a private topology on the real broker.

use std::path::PathBuf;

use agent_runner::amqp::{AmqpSession, HeaderMap, Outgoing, TopologyNames};
use agent_runner::config::{self, ArtifactStoreLocation, ConfigOverrides, RunnerConfig};
use agent_runner::llm::scripted::{self, Script, ScriptedLlmHandle};

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Files in the generated repository: large enough that a fresh clone costs what it
/// costs on a real project, small enough to generate in a second.
pub const REPO_FILES: usize = 1000;

/// Everything a scenario needs.
pub struct Bench {
    pub dir: tempfile::TempDir,
    pub origin: PathBuf,
    pub llm: ScriptedLlmHandle,
    pub session: AmqpSession,
}

impl Bench {
    pub async fn new() -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir()?;
        let origin = generate_origin(&dir.path().join("origin.git"))?;
        // Each task gets a distinct edit: the answer names a file from the task title.
        let llm = scripted::start(Script::responder(one_file_edit)).await?;
        let session = AmqpSession::connect(AMQP_URL, "agent-runner bench").await?;
        Ok(Bench { dir, origin, llm, session })
    }

    /// Starts the next scenario on a new origin holding only `main`: every task pushes a
    /// branch, and a remote with hundreds of them makes fetches and clones slower, which
    /// would bias whichever scenario runs last.
    pub fn reset_origin(&mut self, name: &str) -> anyhow::Result<()> {
        self.origin = generate_origin(&self.dir.path().join(format!("origin-{name}.git")))?;
        Ok(())
    }

    pub fn repo_url(&self) -> String {
        format!("file://{}", self.origin.display())
    }

    /// Worker configuration under this bench's directory, with `concurrency` tasks.
    pub fn config(&self, name: &str, concurrency: usize) -> anyhow::Result<RunnerConfig> {
        let env = |_: &str| None;
        let overrides = ConfigOverrides {
            llm_endpoint: Some(self.llm.base_url()),
            pool_dir: Some(self.dir.path().join(format!("slots-{name}"))),
            runner_id: Some(format!("bench-{name}")),
            concurrency: Some(concurrency as u64),
            ..ConfigOverrides::default()
        };
        let mut config = config::load(None, &env, &overrides)?;
        config.services.artifact_store = ArtifactStoreLocation::Filesystem(self.dir.path().join("artifacts"));
        Ok(config)
    }

    /// A private topology for one scenario.
    pub async fn topology(&self, name: &str) -> anyhow::Result<TopologyNames> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let names = TopologyNames::isolated(&format!("bench.{name}.{suffix}"));
        self.session.declare(&names).await?;
        Ok(names)
    }

    /// Publishes one task per id with the `true` playbook.
    pub async fn publish_tasks(
        &self,
        names: &TopologyNames,
        ids: impl Iterator<Item = String>,
    ) -> anyhow::Result<()> {
        for id in ids {
            self.publish(names, &serde_json::to_vec(&task(&self.repo_url(), &id))?).await?;
        }
        Ok(())
    }

    pub async fn publish(&self, names: &TopologyNames, body: &[u8]) -> anyhow::Result<()> {
        self.session
            .publisher
            .publish(Outgoing {
                exchange: &names.task_exchange,
                routing_key: "task.bench",
                body,
                headers: &HeaderMap::new(),
                mandatory: true,
            })
            .await?;
        Ok(())
    }
}

/// A bare repository of [`REPO_FILES`] files at `path`.
fn generate_origin(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    let contents: Vec<(String, String)> = (0..REPO_FILES)
        .map(|i| (format!("src/module_{:02}/file_{i:04}.txt", i % 40), format!("line {i}\n").repeat(20)))
        .collect();
    let files: Vec<(&str, &str)> = contents.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    agent_runner::demo::sample::create_origin(path, "main", &files)?;
    Ok(path.to_path_buf())
}

/// A task whose playbook is `true`: the benchmark measures the worker, not the tests.
pub fn task(repo_url: &str, id: &str) -> serde_json::Value {
    serde_json::json!({
        "schema_version": 1,
        "task_id": id,
        "spec_name": "bench",
        "title": format!("Add note {id}"),
        "description": "Add a note file.",
        "repo_url": repo_url,
        "playbook": { "name": "noop", "steps": [{ "name": "true", "command": "true" }] }
    })
}

/// The model's answer: one new file named after the task.
fn one_file_edit(request: &serde_json::Value) -> String {
    let text = request.to_string();
    let id = text
        .split("Add note ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-')).next())
        .unwrap_or("x")
        .to_string();
    serde_json::json!({
        "code_changes": [{ "file_path": format!("notes/{id}.md"), "operation": "create", "content": format!("note {id}\n") }],
        "explanation": "added a note"
    })
    .to_string()
}

/// Resident memory of a process in MiB, from /proc.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 =
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
