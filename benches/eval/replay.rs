//! `--replay-solutions`: the project's scripted model server answering every task with its
//! reference solution, in the wire format of each engine mode. It drives the whole
//! harness — real binary, real pipeline, push, summary, transcript, independent check —
//! without a model, so a harness change can be tried in a minute.

use std::collections::BTreeMap;

use agent_runner::llm::scripted::{self, Script, ScriptedCall, ScriptedLlmHandle, Step};
use serde_json::{Value, json};

use crate::spec::{EvalTask, files_under};

/// A solution file: its path, the base content (`None`: new file) and the new content.
#[derive(Debug, Clone)]
struct SolutionFile {
    path: String,
    base: Option<String>,
    content: String,
}

/// Starts the scripted server for `tasks`.
pub async fn start(tasks: &[EvalTask]) -> anyhow::Result<ScriptedLlmHandle> {
    let mut solutions = BTreeMap::new();
    for task in tasks {
        let mut files = Vec::new();
        for path in files_under(&task.solution)? {
            files.push(SolutionFile {
                base: std::fs::read_to_string(task.repo.join(&path)).ok(),
                content: std::fs::read_to_string(task.solution.join(&path))?,
                path,
            });
        }
        solutions.insert(task.file.title.clone(), files);
    }
    Ok(scripted::start(Script::step_responder(move |request| answer(&solutions, request))).await?)
}

/// The first turn of a task writes its solution; any later turn finishes.
fn answer(solutions: &BTreeMap<String, Vec<SolutionFile>>, request: &Value) -> Step {
    let messages = request["messages"].to_string();
    let Some(files) = solutions.iter().find(|(title, _)| messages.contains(title.as_str())).map(|(_, f)| f)
    else {
        return Step::Reply("I cannot tell which task this is.".to_string());
    };
    let answered_before =
        request["messages"].as_array().into_iter().flatten().any(|m| m["role"] == "assistant");
    let tools_mode = request["tools"].as_array().is_some_and(|t| !t.is_empty());
    match (tools_mode, answered_before) {
        (true, false) => Step::ToolCalls(
            files
                .iter()
                .map(|f| ScriptedCall::new("write_file", json!({"path": f.path, "content": f.content})))
                .collect(),
        ),
        (true, true) => Step::call("finish", json!({"summary": "Wrote the reference solution."})),
        (false, false) => Step::Reply(edit_blocks(files)),
        (false, true) => Step::Reply("Wrote the reference solution.".to_string()),
    }
}

/// The solution as edit blocks: the whole base file as SEARCH (empty for a new file).
fn edit_blocks(files: &[SolutionFile]) -> String {
    let mut text = String::from("Here is the change.\n\n");
    for file in files {
        text.push_str(&format!(
            "{}\n<<<<<<< SEARCH\n{}=======\n{}>>>>>>> REPLACE\n\n",
            file.path,
            file.base.as_deref().unwrap_or(""),
            file.content
        ));
    }
    text
}
