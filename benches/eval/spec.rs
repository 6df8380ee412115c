//! The task set: one directory per task under `benches/eval/tasks/`, holding `task.json`
//! (what the model is told and how the harness checks it), `repo/` (the repository the
//! task starts from) and `solution/` (the reference solution, files laid over `repo/`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `task.json`: the task message's text and the harness's own test command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFile {
    pub title: String,
    pub description: String,
    #[serde(default)]
    pub acceptance_criteria: Vec<String>,
    /// `python`, `shell` or `node`: the stack, shown in the report and sent as the task's
    /// skill (the repository's own playbook wins over the skill default).
    pub required_skill: String,
    /// The command the independent check runs in a fresh clone of the pushed branch
    /// (through `bash -c`, from the clone's root). It is the harness's, not the
    /// repository's: a model that rewrites the playbook does not change what passes.
    pub check: String,
}

/// One task of the set.
#[derive(Debug, Clone)]
pub struct EvalTask {
    /// The directory name; also the task id and part of the branch name.
    pub name: String,
    pub file: TaskFile,
    pub repo: PathBuf,
    pub solution: PathBuf,
}

/// Every task under `tasks_dir`, by name; `only` keeps the named ones (each must exist).
pub fn load_tasks(tasks_dir: &Path, only: Option<&[String]>) -> anyhow::Result<Vec<EvalTask>> {
    let mut tasks = Vec::new();
    for entry in std::fs::read_dir(tasks_dir)? {
        let dir = entry?.path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(dir.join("task.json"))
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("task.json").display()))?;
        let file: TaskFile =
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{name}/task.json: {e}"))?;
        anyhow::ensure!(dir.join("repo").is_dir(), "{name}: no repo/ directory");
        anyhow::ensure!(dir.join("solution").is_dir(), "{name}: no solution/ directory");
        tasks.push(EvalTask { name, file, repo: dir.join("repo"), solution: dir.join("solution") });
    }
    tasks.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(only) = only {
        for wanted in only {
            anyhow::ensure!(
                tasks.iter().any(|t| &t.name == wanted),
                "no task named {wanted} in {}",
                tasks_dir.display()
            );
        }
        tasks.retain(|t| only.contains(&t.name));
    }
    anyhow::ensure!(!tasks.is_empty(), "no tasks in {}", tasks_dir.display());
    Ok(tasks)
}

/// Every file under `dir`, relative and `/`-separated, sorted.
pub fn files_under(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Copies the tree at `from` over `to` (files replace files of the same path), keeping
/// the executable bit.
pub fn overlay(from: &Path, to: &Path) -> anyhow::Result<()> {
    for relative in files_under(from)? {
        let target = to.join(&relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from.join(&relative), &target)?;
    }
    Ok(())
}
