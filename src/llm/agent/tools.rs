//! The tools offered to the model: their JSON schemas, and dispatching a call.
//!
//! Arguments arrive as text the model wrote; anything that does not parse, or names an
//! unknown tool, becomes an error result the model reads, never a failure of the step.

use async_openai::types::chat::{ChatCompletionTool, ChatCompletionTools, FunctionObject};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::workspace::{Refusal, Workspace, WriteError, WriteResult};
use super::{TestRunner, tail_chars};
use crate::llm::truncate_chars;
use crate::secrets::Masker;

/// Characters of test output returned to the model: the tail, where runners put verdicts.
pub const MAX_TEST_OUTPUT_CHARS: usize = 8 * 1024;
/// Characters of bad arguments quoted back in an error.
const MAX_QUOTED_ARGUMENTS: usize = 300;

/// The tool names, in the order they are offered.
pub const TOOL_NAMES: &[&str] = &[
    "list_dir",
    "read_file",
    "search_text",
    "write_file",
    "edit_file",
    "delete_file",
    "run_tests",
    "finish",
];

/// The function definitions sent with every request.
pub fn definitions(with_tests: bool) -> Vec<ChatCompletionTools> {
    let path = json!({"type": "string", "description": "Relative to the repository root, / separated"});
    let mut tools = vec![
        tool(
            "list_dir",
            "List a directory of the repository (\"\" for the root).",
            json!({
            "type": "object", "properties": {"path": path}, "required": []}),
        ),
        tool(
            "read_file",
            "Read a text file, optionally only lines start_line..end_line (1-based, inclusive).",
            json!({
            "type": "object", "properties": {"path": path, "start_line": {"type": "integer"}, "end_line": {"type": "integer"}},
            "required": ["path"]}),
        ),
        tool(
            "search_text",
            "Find lines containing a literal text (case-sensitive) in the files under path.",
            json!({
            "type": "object", "properties": {"pattern": {"type": "string"}, "path": path}, "required": ["pattern"]}),
        ),
        tool(
            "write_file",
            "Create a file or replace its whole content.",
            json!({
            "type": "object", "properties": {"path": path, "content": {"type": "string"}}, "required": ["path", "content"]}),
        ),
        tool(
            "edit_file",
            "Replace the one exact occurrence of `search` in a file with `replace`.",
            json!({
            "type": "object", "properties": {"path": path, "search": {"type": "string"}, "replace": {"type": "string"}},
            "required": ["path", "search", "replace"]}),
        ),
        tool(
            "delete_file",
            "Delete a file.",
            json!({
            "type": "object", "properties": {"path": path}, "required": ["path"]}),
        ),
    ];
    if with_tests {
        tools.push(tool(
            "run_tests",
            "Run the repository's test steps and get their result and output.",
            json!({
            "type": "object", "properties": {}, "required": []}),
        ));
    }
    tools.push(tool(
        "finish",
        "Declare the task done, with a summary of what you changed.",
        json!({
        "type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}),
    ));
    tools
}

fn tool(name: &str, description: &str, parameters: Value) -> ChatCompletionTools {
    ChatCompletionTools::Function(ChatCompletionTool {
        function: FunctionObject {
            name: name.to_string(),
            description: Some(description.to_string()),
            parameters: Some(parameters),
            strict: None,
        },
    })
}

/// What one tool call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolOutcome {
    /// The tool result the model reads.
    pub text: String,
    pub ok: bool,
    /// The file written or deleted, when the workspace changed.
    pub changed: Option<String>,
    /// A refused write to a protected path.
    pub refusal: Option<Refusal>,
    /// `finish` was called, with this summary.
    pub finish: Option<String>,
}

impl ToolOutcome {
    fn ok(text: String) -> Self {
        ToolOutcome { text, ok: true, ..Self::default() }
    }

    fn error(text: String) -> Self {
        ToolOutcome { text: format!("error: {text}"), ok: false, ..Self::default() }
    }

    pub fn from_read(result: Result<String, String>) -> Self {
        result.map_or_else(ToolOutcome::error, ToolOutcome::ok)
    }

    /// A write's result; `path` is what changed on success.
    pub fn from_write(result: WriteResult, path: String) -> Self {
        match result {
            Ok(text) => ToolOutcome { changed: Some(path), ..ToolOutcome::ok(text) },
            Err(WriteError::Protected(refusal)) => {
                let text = WriteError::Protected(refusal.clone()).to_string();
                ToolOutcome { refusal: Some(refusal), ..ToolOutcome::error(text) }
            }
            Err(other) => ToolOutcome::error(other.to_string()),
        }
    }
}

#[derive(Deserialize)]
struct PathArgs {
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct ReadArgs {
    path: String,
    start_line: Option<usize>,
    end_line: Option<usize>,
}

#[derive(Deserialize)]
struct SearchArgs {
    pattern: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize)]
struct EditArgs {
    path: String,
    search: String,
    replace: String,
}

#[derive(Deserialize)]
struct FinishArgs {
    #[serde(default)]
    summary: String,
}

/// A reading tool's file work, run off the runtime thread.
type ReadWork = dyn FnOnce(&Workspace) -> Result<String, String> + Send;
/// A writing tool's file work, run off the runtime thread.
type WriteWork = dyn FnOnce(&Workspace) -> WriteResult + Send;

/// The tools bound to one workspace and test runner.
pub struct ToolBox<'a> {
    pub workspace: Workspace,
    pub tests: Option<&'a dyn TestRunner>,
    pub masker: &'a Masker,
}

impl ToolBox<'_> {
    /// Runs the call `name(arguments)`; its result text is masked.
    pub async fn call(&self, name: &str, arguments: &str) -> ToolOutcome {
        let mut outcome = match self.dispatch(name, arguments).await {
            Ok(outcome) => outcome,
            Err(reason) => ToolOutcome::error(reason),
        };
        outcome.text = self.masker.mask(&outcome.text);
        outcome
    }

    async fn dispatch(&self, name: &str, arguments: &str) -> Result<ToolOutcome, String> {
        let ws = &self.workspace;
        // File work runs off the runtime thread (see `Workspace::off_thread`).
        let read =
            |work: Box<ReadWork>| async move { ToolOutcome::from_read(ws.off_thread(work, Err).await) };
        let write = |path: String, work: Box<WriteWork>| async move {
            let shown = ws.shown(&path);
            ToolOutcome::from_write(ws.off_thread(work, |e| Err(WriteError::Other(e))).await, shown)
        };
        Ok(match name {
            "list_dir" => {
                let a: PathArgs = args(name, arguments)?;
                read(Box::new(move |ws| ws.list_dir(&a.path))).await
            }
            "read_file" => {
                let a: ReadArgs = args(name, arguments)?;
                read(Box::new(move |ws| ws.read_file(&a.path, a.start_line, a.end_line))).await
            }
            "search_text" => {
                let a: SearchArgs = args(name, arguments)?;
                read(Box::new(move |ws| ws.search(&a.pattern, &a.path))).await
            }
            "write_file" => {
                let a: WriteArgs = args(name, arguments)?;
                write(a.path.clone(), Box::new(move |ws| ws.write_file(&a.path, &a.content))).await
            }
            "edit_file" => {
                let a: EditArgs = args(name, arguments)?;
                write(a.path.clone(), Box::new(move |ws| ws.edit_file(&a.path, &a.search, &a.replace))).await
            }
            "delete_file" => {
                let a: PathArgs = args(name, arguments)?;
                write(a.path.clone(), Box::new(move |ws| ws.delete_file(&a.path))).await
            }
            "run_tests" => self.run_tests().await,
            "finish" => {
                let a: FinishArgs = args(name, arguments)?;
                ToolOutcome { finish: Some(a.summary), ..ToolOutcome::ok("finished".into()) }
            }
            other => {
                return Err(format!(
                    "there is no tool named {:?}; the tools are {}",
                    truncate_chars(other, 64),
                    TOOL_NAMES.join(", ")
                ));
            }
        })
    }

    /// Runs the playbook's test steps through the caller's runner.
    pub async fn run_tests(&self) -> ToolOutcome {
        let Some(tests) = self.tests else {
            return ToolOutcome::error("no test steps are available in this run".into());
        };
        let run = tests.run_tests().await;
        let verdict = if run.passed { "PASSED" } else { "FAILED" };
        let text = format!("tests {verdict}\n{}", tail_chars(&run.output, MAX_TEST_OUTPUT_CHARS));
        ToolOutcome::ok(text)
    }
}

/// Parses a call's arguments; `""` counts as `{}` (some servers send it for no arguments).
fn args<T: DeserializeOwned>(tool: &str, arguments: &str) -> Result<T, String> {
    let text = if arguments.trim().is_empty() { "{}" } else { arguments };
    serde_json::from_str(text).map_err(|e| {
        format!(
            "the arguments of {tool} are not valid: {e}; send one JSON object with the documented \
             fields (got {:?})",
            truncate_chars(arguments, MAX_QUOTED_ARGUMENTS)
        )
    })
}
