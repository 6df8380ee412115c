//! What every example starts from, so each example file shows only its own subject: a
//! working directory (the first argument, or a temporary one), the sample origin
//! repository in it (a bare git repository standing in for GitHub), the runner's local
//! parts pointed into it, and a stand-in model when none is configured.
//!
//! A real model is used when one is configured the usual way (`OPENAI_API_KEY`,
//! `LLM_ENDPOINT` or `OPENAI_BASE_URL`, `LLM_MODEL`); otherwise the library's scripted
//! OpenAI-compatible server plays back `script` on 127.0.0.1.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use agent_runner::config::{ArtifactStoreLocation, RunnerConfig};
use agent_runner::demo::sample;
use agent_runner::git::RemotePrefix;
use agent_runner::llm::scripted::{self, Script, ScriptedLlmHandle};
use agent_runner::pipeline::{RunResult, RunnerSecrets};
use agent_runner::task::Task;

/// The example's working directory, kept while this lives.
pub struct Workdir {
    pub path: PathBuf,
    /// Set when no directory was given: removed when the example ends.
    _temporary: Option<tempfile::TempDir>,
}

/// The directory named by the first argument (created if need be, and kept afterwards so
/// you can look at the origin and the artifacts; it must not hold an earlier run's), or
/// a temporary one.
pub fn workdir() -> anyhow::Result<Workdir> {
    match std::env::args_os().nth(1) {
        Some(dir) => {
            let path = std::path::absolute(PathBuf::from(dir))?;
            std::fs::create_dir_all(&path)?;
            Ok(Workdir { path, _temporary: None })
        }
        None => {
            let temporary = tempfile::tempdir()?;
            Ok(Workdir { path: temporary.path().to_path_buf(), _temporary: Some(temporary) })
        }
    }
}

/// Creates `<dir>/origin.git` holding the sample project plus `extra` files; returns
/// its `file://` URL.
pub fn sample_origin(dir: &Path, extra: &[(&str, &str)]) -> anyhow::Result<String> {
    let origin = dir.join("origin.git");
    anyhow::ensure!(!origin.exists(), "{} holds an earlier run: give an empty directory", dir.display());
    let files: Vec<(&str, &str)> = sample::SAMPLE_FILES.iter().chain(extra).copied().collect();
    sample::create_origin(&origin, "main", &files)?;
    Ok(format!("file://{}", origin.display()))
}

/// Keeps the runner's local parts under `dir`: the slot pool in `slots/`, the embedded
/// `file://` artifact store (unless another store is configured) in `artifacts/`, and
/// admits the local origin there (`git.allowed_remotes` admits nothing local by default).
pub fn keep_under(config: &mut RunnerConfig, dir: &Path) -> anyhow::Result<()> {
    config.pool_dir = dir.join("slots");
    if let ArtifactStoreLocation::Filesystem(_) = config.services.artifact_store {
        config.services.artifact_store = ArtifactStoreLocation::Filesystem(dir.join("artifacts"));
    }
    let local = RemotePrefix::local_directory(dir).map_err(|reason| anyhow::anyhow!("{reason}"))?;
    config.git.allowed_remotes.push(local);
    Ok(())
}

/// The configured model, or the stand-in playing `script` (kept running while the
/// returned handle lives). Says which on standard output.
pub async fn model_or_stand_in(
    config: &mut RunnerConfig,
    secrets: &RunnerSecrets,
    script: Script,
) -> anyhow::Result<Option<ScriptedLlmHandle>> {
    if config.llm.endpoint.is_some() || secrets.llm_api_key.is_some() {
        println!("model: {} (configured)", config.llm.model);
        return Ok(None);
    }
    let server = scripted::start(script).await?;
    config.llm.endpoint = Some(server.base_url().parse()?);
    println!("model: {} (a scripted stand-in at {})", config.llm.model, server.base_url());
    Ok(Some(server))
}

/// The runner's parts for an example: local ones under `dir` ([`keep_under`]), the
/// secrets from the environment, and the configured model or the stand-in playing
/// `script` ([`model_or_stand_in`]; keep the handle while the runner works).
pub async fn runner_parts(
    config: &mut RunnerConfig,
    dir: &Path,
    script: Script,
) -> anyhow::Result<(RunnerSecrets, Option<ScriptedLlmHandle>)> {
    keep_under(config, dir)?;
    let secrets = RunnerSecrets::from_env(config, &agent_runner::config::process_env)?;
    let model = model_or_stand_in(config, &secrets, script).await?;
    Ok((secrets, model))
}

/// A stand-in's script for the sample task: the prepared answer the demo plays back.
pub fn sample_answer() -> Script {
    let answer = sample::scripted_answer();
    Script::responder(move |_| answer.clone())
}

/// Prints `task done` or why not, and fails the example when the task did not complete.
pub fn outcome(result: &RunResult) -> anyhow::Result<()> {
    match &result.error {
        None => println!("task done"),
        Some(error) => println!("{error}"),
    }
    anyhow::ensure!(result.success, "the task did not complete");
    Ok(())
}

/// The sample task ("Add the greet command") for the origin at `repo_url`, as a
/// validated task message; `fields` are laid over it (e.g. `playbook_path`).
pub fn sample_task(repo_url: &str, fields: serde_json::Value) -> anyhow::Result<Task> {
    let mut message = sample::sample_task(repo_url, "1.1");
    if let (Some(message), Some(fields)) = (message.as_object_mut(), fields.as_object()) {
        message.extend(fields.clone());
    }
    Ok(agent_runner::task::parse_task(&serde_json::to_vec(&message)?)?)
}
