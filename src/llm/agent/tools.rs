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
            "Replace the one exact occurrence of `search` in a file with `replace`; with replace_all, every \
             occurrence (for a rename).",
            json!({
            "type": "object", "properties": {"path": path, "search": {"type": "string"}, "replace": {"type": "string"},
            "replace_all": {"type": "boolean"}},
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
    /// A test run's verdict, when this was one.
    pub tests_passed: Option<bool>,
}

impl ToolOutcome {
    fn ok(text: String) -> Self {
        ToolOutcome { text, ok: true, ..Self::default() }
    }

    pub(crate) fn error(text: String) -> Self {
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
#[serde(deny_unknown_fields)]
struct PathArgs {
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    path: String,
    start_line: Option<usize>,
    end_line: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchArgs {
    pattern: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditArgs {
    path: String,
    search: String,
    replace: String,
    #[serde(default)]
    replace_all: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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
                let path = a.path.clone();
                let work = move |ws: &Workspace| ws.edit_file(&a.path, &a.search, &a.replace, a.replace_all);
                write(path, Box::new(work)).await
            }
            "delete_file" => {
                let a: PathArgs = args(name, arguments)?;
                write(a.path.clone(), Box::new(move |ws| ws.delete_file(&a.path))).await
            }
            "run_tests" => {
                let _: NoArgs = args(name, arguments)?;
                self.run_tests().await
            }
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
        ToolOutcome { tests_passed: Some(run.passed), ..ToolOutcome::ok(text) }
    }
}

/// Parses a call's arguments; `""` counts as `{}` (some servers send it for no arguments).
/// Unknown keys are refused rather than ignored: a small model that echoes the tool's
/// schema (`{"properties": …}`) would otherwise run the tool on defaults. Every refusal
/// ends with one correct call of that tool.
fn args<T: DeserializeOwned>(tool: &str, arguments: &str) -> Result<T, String> {
    let text = if arguments.trim().is_empty() { "{}" } else { arguments };
    let echoed_schema = serde_json::from_str::<Value>(text).is_ok_and(|v| {
        v.get("properties").is_some() || v.get("type").and_then(Value::as_str) == Some("object")
    });
    if echoed_schema {
        return Err(format!(
            "the arguments of {tool} are its JSON schema, not values; send the values themselves, e.g. {}",
            example(tool)
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        format!(
            "the arguments of {tool} are not valid: {e} (got {:?}); send one JSON object like {}",
            truncate_chars(arguments, MAX_QUOTED_ARGUMENTS),
            example(tool)
        )
    })
}

/// One correct call of `tool`, on one line.
pub fn example(tool: &str) -> String {
    let arguments = match tool {
        "list_dir" => json!({"path": "src"}),
        "read_file" => json!({"path": "src/app.py", "start_line": 1, "end_line": 40}),
        "search_text" => json!({"pattern": "def main", "path": "src"}),
        "write_file" => json!({"path": "src/app.py", "content": "print('hello')\n"}),
        "edit_file" => json!({"path": "src/app.py", "search": "return a - b", "replace": "return a + b"}),
        "delete_file" => json!({"path": "src/old.py"}),
        "finish" => json!({"summary": "what you changed"}),
        _ => json!({}),
    };
    super::nudge::call_text(tool, &arguments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_echoed_schemas_are_refused_with_an_example() {
        let schema = r#"{"properties":{"path":{"type":"string"}},"required":[],"type":"object"}"#;
        let error = args::<PathArgs>("list_dir", schema).err().unwrap();
        assert!(error.starts_with("the arguments of list_dir are its JSON schema"), "{error}");
        assert!(error.ends_with(r#"{"name": "list_dir", "arguments": {"path":"src"}}"#), "{error}");

        let error = args::<ReadArgs>("read_file", r#"{"file": "a.py"}"#).err().unwrap();
        assert!(
            error.contains("unknown field `file`") && error.contains(r#""name": "read_file""#),
            "{error}"
        );
        let error = args::<ReadArgs>("read_file", "{}").err().unwrap();
        assert!(error.contains("missing field `path`") && error.contains("start_line"), "{error}");

        assert!(args::<NoArgs>("run_tests", "").is_ok());
        let edit: EditArgs = args("edit_file", r#"{"path":"a","search":"x","replace":"y"}"#).unwrap();
        assert!(!edit.replace_all);
    }
}
