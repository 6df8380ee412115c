//! The tools offered to the model: their JSON schemas, and dispatching a call.
//!
//! Arguments arrive as text the model wrote; anything that does not parse, or names an
//! unknown tool, becomes an error result the model reads, never a failure of the step.

use async_openai::types::chat::{ChatCompletionTool, ChatCompletionTools, FunctionObject};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::prompt::{CONTENT_PLACEHOLDER, REPLACE_PLACEHOLDER};
use super::workspace::{Refusal, Workspace, WriteError, WriteResult};
use super::{TestRunner, tail_chars};
use crate::llm::truncate_chars;
use crate::secrets::Masker;

/// Characters of test output returned to the model: the tail, where runners put verdicts.
pub const MAX_TEST_OUTPUT_CHARS: usize = 8 * 1024;
/// Characters of bad arguments quoted back in an error.
const MAX_QUOTED_ARGUMENTS: usize = 300;
/// Files shorter than this are rewritten whole without a second asking.
const MIN_LINES_GUARDED: usize = 4;

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

/// The function definitions sent with every request. (Example arguments in the
/// descriptions were tried against Qwen2.5-Coder-1.5B: it sent the example's own values.)
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
            Err(unchanged @ WriteError::Unchanged(_)) => ToolOutcome::ok(unchanged.to_string()),
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
    #[serde(default, deserialize_with = "lenient_line")]
    start_line: Option<usize>,
    #[serde(default, deserialize_with = "lenient_line")]
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
    #[serde(default, deserialize_with = "lenient_bool")]
    replace_all: bool,
}

/// A line number, also when written as a string (`"4"`, seen from small models).
fn lenient_line<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Spelled {
        Number(usize),
        Text(String),
    }
    match Option::<Spelled>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Spelled::Number(line)) => Ok(Some(line)),
        Some(Spelled::Text(text)) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected a line number, got {text:?}"))),
    }
}

/// A boolean, also when written as the string `"true"` or `"false"` (seen from small
/// models); anything else is refused as usual.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Spelled {
        Bool(bool),
        Text(String),
    }
    match Spelled::deserialize(deserializer)? {
        Spelled::Bool(value) => Ok(value),
        Spelled::Text(text) if text.eq_ignore_ascii_case("true") => Ok(true),
        Spelled::Text(text) if text.eq_ignore_ascii_case("false") => Ok(false),
        Spelled::Text(text) => Err(serde::de::Error::custom(format!("expected true or false, got {text:?}"))),
    }
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
    /// A real file of the repository, for the example calls in argument errors.
    pub example_path: String,
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
                let a: PathArgs = args(name, arguments, &self.example_path)?;
                read(Box::new(move |ws| ws.list_dir(&a.path))).await
            }
            "read_file" => {
                let a: ReadArgs = args(name, arguments, &self.example_path)?;
                read(Box::new(move |ws| ws.read_file(&a.path, a.start_line, a.end_line))).await
            }
            "search_text" => {
                let a: SearchArgs = args(name, arguments, &self.example_path)?;
                read(Box::new(move |ws| ws.search(&a.pattern, &a.path))).await
            }
            "write_file" => {
                let a: WriteArgs = args(name, arguments, &self.example_path)?;
                if a.content.trim() == CONTENT_PLACEHOLDER {
                    return Err(format!(
                        "the content is the example's {CONTENT_PLACEHOLDER}: nothing was written; put the file's \
                         real content in content"
                    ));
                }
                if let Some(refusal) = self.shrinking_write(&a.path, &a.content).await {
                    return Err(refusal);
                }
                write(a.path.clone(), Box::new(move |ws| ws.write_file(&a.path, &a.content))).await
            }
            "edit_file" => {
                let a: EditArgs = args(name, arguments, &self.example_path)?;
                if a.replace.trim() == REPLACE_PLACEHOLDER {
                    return Err(format!(
                        "the replace text is the example's {REPLACE_PLACEHOLDER}: nothing was changed; put your \
                         real new lines in replace"
                    ));
                }
                let path = a.path.clone();
                let work = move |ws: &Workspace| ws.edit_file(&a.path, &a.search, &a.replace, a.replace_all);
                write(path, Box::new(work)).await
            }
            "delete_file" => {
                let a: PathArgs = args(name, arguments, &self.example_path)?;
                write(a.path.clone(), Box::new(move |ws| ws.delete_file(&a.path))).await
            }
            "run_tests" => {
                let _: NoArgs = args(name, arguments, &self.example_path)?;
                self.run_tests().await
            }
            "finish" => {
                let a: FinishArgs = args(name, arguments, &self.example_path)?;
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

    /// The refusal of a `write_file` that would keep less than half of an existing file's
    /// lines. Small models send the part they changed as the whole file (seen: a 14-line
    /// script written as its one new line); offered to send the write again to confirm,
    /// the same model did exactly that, so the refusal holds: a file really meant to
    /// shrink that much is deleted first, a step no model takes by accident.
    async fn shrinking_write(&self, path: &str, content: &str) -> Option<String> {
        let p = path.to_string();
        let old = self.workspace.off_thread(move |ws| ws.text_of(&p), Err).await.ok()?.lines().count();
        let new = content.lines().count();
        (old >= MIN_LINES_GUARDED && new * 2 < old).then(|| {
            format!(
                "not written: this would replace the {old} lines of {path} with {new}. If your content is only \
                 the part that changes, use edit_file on those lines instead; to replace the whole file with \
                 a much shorter one, delete_file it first, then write_file"
            )
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
fn args<T: DeserializeOwned>(tool: &str, arguments: &str, example_path: &str) -> Result<T, String> {
    let text = if arguments.trim().is_empty() { "{}" } else { arguments };
    let echoed_schema = serde_json::from_str::<Value>(text).is_ok_and(|v| {
        v.get("properties").is_some() || v.get("type").and_then(Value::as_str) == Some("object")
    });
    if echoed_schema {
        return Err(format!(
            "the arguments of {tool} are its JSON schema, not values; send the values themselves, e.g. {}",
            example(tool, example_path)
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        format!(
            "the arguments of {tool} are not valid: {e} (got {:?}); send one JSON object like {}",
            truncate_chars(arguments, MAX_QUOTED_ARGUMENTS),
            example(tool, example_path)
        )
    })
}

/// One correct call of `tool` on `path`, on one line.
pub fn example(tool: &str, path: &str) -> String {
    super::nudge::call_text(tool, &example_arguments(tool, path))
}

/// Arguments of one correct call of `tool` on the file `path`.
fn example_arguments(tool: &str, path: &str) -> Value {
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    match tool {
        "list_dir" => json!({"path": dir}),
        "read_file" => json!({"path": path, "start_line": 1, "end_line": 40}),
        "search_text" => json!({"pattern": "def main", "path": dir}),
        "write_file" => json!({"path": path, "content": "print('hello')\n"}),
        "edit_file" => json!({"path": path, "search": "return a - b", "replace": "return a + b"}),
        "delete_file" => json!({"path": path}),
        "finish" => json!({"summary": "what you changed"}),
        _ => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_echoed_schemas_are_refused_with_an_example() {
        let schema = r#"{"properties":{"path":{"type":"string"}},"required":[],"type":"object"}"#;
        let error = args::<PathArgs>("list_dir", schema, "lib/greet.py").err().unwrap();
        assert!(error.starts_with("the arguments of list_dir are its JSON schema"), "{error}");
        assert!(error.ends_with(r#"{"name": "list_dir", "arguments": {"path":"lib"}}"#), "{error}");

        let error = args::<ReadArgs>("read_file", r#"{"file": "a.py"}"#, "greet.py").err().unwrap();
        assert!(
            error.contains("unknown field `file`")
                && error.contains(r#"{"name": "read_file", "arguments": {"end_line":40,"path":"greet.py""#),
            "{error}"
        );
        let error = args::<ReadArgs>("read_file", "{}", "greet.py").err().unwrap();
        assert!(error.contains("missing field `path`") && error.contains("start_line"), "{error}");

        assert!(args::<NoArgs>("run_tests", "", "greet.py").is_ok());
        let edit: EditArgs =
            args("edit_file", r#"{"path":"a","search":"x","replace":"y"}"#, "greet.py").unwrap();
        assert!(!edit.replace_all);
        let read: ReadArgs = args("read_file", r#"{"path":"a","start_line":"4","end_line":9}"#, "a").unwrap();
        assert_eq!((read.start_line, read.end_line), (Some(4), Some(9)));
        let error = args::<ReadArgs>("read_file", r#"{"path":"a","start_line":"four"}"#, "a").err().unwrap();
        assert!(error.contains(r#"expected a line number, got "four""#), "{error}");
        let spelled = r#"{"path":"a","search":"x","replace":"y","replace_all":"true"}"#;
        assert!(args::<EditArgs>("edit_file", spelled, "greet.py").unwrap().replace_all);
        let wrong = r#"{"path":"a","search":"x","replace":"y","replace_all":"yes"}"#;
        let error = args::<EditArgs>("edit_file", wrong, "greet.py").err().unwrap();
        assert!(error.contains(r#"expected true or false, got "yes""#), "{error}");
    }
}
