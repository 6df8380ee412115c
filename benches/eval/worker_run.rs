//! One task through the real release binary: its origin, task message and configuration
//! written under the run directory, `agent-runner run` with a timeout, the summary it
//! prints and the transcript artifact it stores read back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};

use crate::spec::EvalTask;

/// How every task of a run talks to the model and what it may spend.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub binary: PathBuf,
    /// The repository's `playbooks/` (skill defaults; every task brings its own playbook).
    pub playbooks_dir: PathBuf,
    pub endpoint: String,
    pub model: String,
    pub max_turns: u32,
    pub max_wall_seconds: u64,
    pub repair_rounds: u32,
    pub llm_timeout_seconds: u64,
    /// Written as `llm.temperature`, `llm.max_tokens`, `llm.context_tokens` only when set:
    /// those keys are not in every engine yet, and the config refuses unknown keys.
    pub sampling: Option<Sampling>,
}

/// Sampling keys for engines that have them.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    pub temperature: f64,
    pub max_tokens: u32,
    pub context_tokens: u32,
}

/// What the binary left behind: its summary (when it printed one), exit status and
/// the transcript artifact.
#[derive(Debug)]
pub struct WorkerRun {
    pub summary: Option<Value>,
    pub exit_code: Option<i32>,
    pub stderr_tail: String,
    pub transcript: Option<Value>,
    pub wall_seconds: f64,
}

impl WorkerRun {
    /// The pushed branch, when the summary says one was pushed.
    pub fn pushed_branch(&self) -> Option<String> {
        let summary = self.summary.as_ref()?;
        if summary["pushed"].as_bool() != Some(true) {
            return None;
        }
        summary["branch"].as_str().map(str::to_string)
    }
}

/// The task message (schema version 1) for `task` against `repo_url`.
pub fn task_message(task: &EvalTask, mode: &str, repo_url: &str) -> Value {
    json!({
        "schema_version": 1,
        "task_id": task.name,
        "spec_name": format!("eval-{}", mode.replace('_', "-")),
        "title": task.file.title,
        "description": task.file.description,
        "acceptance_criteria": task.file.acceptance_criteria,
        "required_skill": task.file.required_skill,
        "repo_url": repo_url,
        "base_branch": "main",
        "metadata": { "evaluation": true, "mode": mode },
    })
}

/// The worker configuration for one task: everything under `dir`, the origin's
/// directory allowed as a `file://` remote, artifacts in the embedded file store.
pub fn config_yaml(settings: &RunSettings, mode: &str, dir: &Path) -> anyhow::Result<String> {
    let mut llm = json!({
        "model": settings.model,
        "endpoint": settings.endpoint,
        "timeout_seconds": settings.llm_timeout_seconds,
    });
    if let Some(sampling) = settings.sampling {
        llm["temperature"] = json!(sampling.temperature);
        llm["max_tokens"] = json!(sampling.max_tokens);
        llm["context_tokens"] = json!(sampling.context_tokens);
    }
    let config = json!({
        "execution_mode": "local-process",
        // The implement phase's budget plus the playbook runs and git around it.
        "default_timeout_seconds": settings.max_wall_seconds + 600,
        "log_level": "INFO",
        "structured_logging": false,
        "pool_dir": dir.join("slots"),
        "playbooks_dir": settings.playbooks_dir,
        "artifact_store_url": format!("file://{}", dir.join("artifacts").display()),
        "llm": llm,
        // A slow local model times out rather than fails; retrying the same long request
        // would spend the task's wall budget on one turn.
        "llm_retry_count": 1,
        "git": { "allowed_remotes": [format!("file://{}/", dir.display())] },
        "playbook": { "repair_rounds": settings.repair_rounds },
        "engine": {
            "mode": mode,
            "max_turns": settings.max_turns,
            "max_wall_seconds": settings.max_wall_seconds,
        },
    });
    Ok(serde_yaml::to_string(&config)?)
}

/// Runs `agent-runner run` for `task` in `dir` (which holds `origin.git`).
pub fn run_worker(
    settings: &RunSettings,
    task: &EvalTask,
    mode: &str,
    dir: &Path,
    repo_url: &str,
) -> anyhow::Result<WorkerRun> {
    let task_path = dir.join("task.json");
    std::fs::write(&task_path, serde_json::to_string_pretty(&task_message(task, mode, repo_url))?)?;
    let config_path = dir.join("config.yaml");
    std::fs::write(&config_path, config_yaml(settings, mode, dir)?)?;
    let outer_timeout = settings.max_wall_seconds + 900;
    let started = Instant::now();
    let stderr_file = std::fs::File::create(dir.join("worker.log"))?;
    let output = Command::new("timeout")
        .args(["-k", "30", &outer_timeout.to_string()])
        .arg(&settings.binary)
        .args(["run", "--task"])
        .arg(&task_path)
        .arg("--config")
        .arg(&config_path)
        .current_dir(dir)
        .env_remove("GIT_TOKEN")
        .env_remove("OPENAI_API_KEY")
        .env("AGENT_RUNNER_HOME", dir.join("home"))
        .stdin(Stdio::null())
        .stderr(stderr_file)
        .output()?;
    let wall_seconds = started.elapsed().as_secs_f64();
    std::fs::write(dir.join("summary.json"), &output.stdout)?;
    let summary: Option<Value> = serde_json::from_slice(&output.stdout).ok();
    let transcript = summary.as_ref().and_then(read_transcript);
    let log = std::fs::read_to_string(dir.join("worker.log")).unwrap_or_default();
    Ok(WorkerRun {
        summary,
        exit_code: output.status.code(),
        stderr_tail: crate::verify::tail(&log),
        transcript,
        wall_seconds,
    })
}

/// The transcript artifact the summary lists, read from the file store.
fn read_transcript(summary: &Value) -> Option<Value> {
    let artifacts = summary["artifacts"].as_array()?;
    let uri = artifacts.iter().find(|a| a["type"] == "transcript")?["uri"].as_str()?;
    let path = uri.strip_prefix("file://")?;
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}
