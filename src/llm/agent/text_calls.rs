//! Tool calls written as text, the way many real servers deliver them.
//!
//! llama.cpp's server, Ollama and vLLM without a tool parser pass the model's text
//! through untouched, and small models write their calls in whatever format their
//! training showed: `<tool_call>{…}</tool_call>` (Hermes, Qwen 2.5), a ```json fence, a
//! bare JSON object or array, or Qwen-Agent's `✿FUNCTION✿:` lines. An answer with no
//! native `tool_calls` is read for these; only objects naming a declared tool count, so
//! a JSON file the model shows as code is never mistaken for a call.

use serde_json::{Map, Value};

use super::transcript::CallRecord;

/// Calls read from one answer at most: more is a runaway reply, not a plan.
const MAX_TEXT_CALLS: usize = 16;

/// How the calls were written, recorded in the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFormat {
    /// `<tool_call>…</tool_call>` tags (Hermes, Qwen 2.5).
    Tagged,
    /// `✿FUNCTION✿: name` and `✿ARGS✿: {…}` lines (Qwen-Agent).
    QwenAgent,
    /// JSON in the text, bare or in a code fence.
    Json,
}

impl CallFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            CallFormat::Tagged => "text: <tool_call> tags",
            CallFormat::QwenAgent => "text: ✿FUNCTION✿ lines",
            CallFormat::Json => "text: JSON",
        }
    }
}

/// What reading an answer's text for calls found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextCalls {
    /// No call, and nothing that looked like an attempt at one.
    None,
    Calls(CallFormat, Vec<CallRecord>),
    /// Something shaped like a call that could not be read; the reason, for the model.
    Malformed(String),
}

/// Reads the calls in `text` to the tools named in `declared`.
pub fn parse(text: &str, declared: &[&str]) -> TextCalls {
    let tagged = between_tags(text, "<tool_call>", "</tool_call>");
    if !tagged.is_empty() {
        let (mut calls, mut definitions) = (Vec::new(), 0);
        for body in tagged {
            let body = strip_fence(body);
            let parsed = serde_json::from_str::<Value>(body)
                .or_else(|e| serde_json::from_str::<Value>(&escape_raw_controls(body)).map_err(|_| e));
            match parsed {
                Ok(value) => collect(&value, declared, &mut calls, &mut definitions),
                Err(e) => {
                    return TextCalls::Malformed(format!(
                        "a <tool_call> block is not valid JSON ({e}); {JSON_STRING_RULES}"
                    ));
                }
            }
        }
        return finish(CallFormat::Tagged, calls, declared);
    }
    if text.contains("✿FUNCTION✿") {
        return qwen_agent(text, declared);
    }
    let (mut calls, mut definitions) = (Vec::new(), 0);
    for value in json_values(text) {
        collect(&value, declared, &mut calls, &mut definitions);
    }
    if let Some(name) = missing_call(text, declared, &calls) {
        // Small models leave line breaks and quotes raw in JSON strings (a file's
        // content); that much is mended. A call still unreadable is a call gone wrong,
        // not code to show, and the calls beside it are not run without it: they were
        // written to follow it.
        let start = text.find('{').unwrap_or(0);
        let mended = format!("{}{}", &text[..start], escape_raw_controls(&text[start..]));
        let (mut mended_calls, mut mended_definitions) = (Vec::new(), 0);
        for value in json_values(&mended) {
            collect(&value, declared, &mut mended_calls, &mut mended_definitions);
        }
        if missing_call(text, declared, &mended_calls).is_some() {
            return TextCalls::Malformed(format!("the {name} call is not valid JSON; {JSON_STRING_RULES}"));
        }
        calls = mended_calls;
    }
    if calls.is_empty() && definitions > 0 {
        // Small models echo the `<tools>` block their chat template showed them.
        return TextCalls::Malformed(
            "the answer repeats the tool definitions instead of calling a tool".into(),
        );
    }
    if calls.is_empty() {
        return TextCalls::None;
    }
    finish(CallFormat::Json, calls, declared)
}

/// What a model is told about a call it wrote as broken JSON.
const JSON_STRING_RULES: &str = "inside a JSON string write a line break as \\n, a tab as \\t and a double quote as \\\"; \
    for a long change, edit_file a few lines at a time";

/// A declared tool the answer tries to call (`"name": "edit_file"`) more often than
/// `calls`, the calls read from it, hold: a call whose JSON did not read.
fn missing_call<'d>(text: &str, declared: &[&'d str], calls: &[CallRecord]) -> Option<&'d str> {
    if !text.contains("\"arguments\"") {
        return None;
    }
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    declared.iter().copied().find(|name| {
        let written = squeezed.matches(&format!("\"name\":\"{name}\"")).count();
        written > calls.iter().filter(|c| c.name == *name).count()
    })
}

/// `text` with what small models leave raw inside JSON strings escaped: line breaks,
/// carriage returns, tabs, and double quotes that do not end the string (`"$1"` in a
/// shell line). A quote inside a string ends it only when what follows it (spaces
/// aside) is `,` `:` `}` `]` or the end; any other is taken as part of the text.
fn escape_raw_controls(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for (i, &c) in chars.iter().enumerate() {
        if in_string && !escaped {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '"' if !ends_string(&chars[i + 1..]) => out.push_str("\\\""),
                '"' => {
                    out.push(c);
                    in_string = false;
                }
                '\\' => {
                    out.push(c);
                    escaped = true;
                }
                _ => out.push(c),
            }
            continue;
        }
        out.push(c);
        if in_string {
            escaped = false;
        } else if c == '"' {
            in_string = true;
        }
    }
    out
}

/// Whether a quote followed by `rest` closes a JSON string.
fn ends_string(rest: &[char]) -> bool {
    rest.iter().find(|c| !c.is_whitespace()).is_none_or(|c| matches!(c, ',' | ':' | '}' | ']'))
}

fn finish(format: CallFormat, calls: Vec<CallRecord>, declared: &[&str]) -> TextCalls {
    if calls.is_empty() {
        return TextCalls::Malformed(format!(
            "the call names no declared tool; the tools are {}",
            declared.join(", ")
        ));
    }
    let calls = calls
        .into_iter()
        .take(MAX_TEXT_CALLS)
        .enumerate()
        .map(|(i, c)| CallRecord { id: format!("text_call_{i}"), ..c })
        .collect();
    TextCalls::Calls(format, calls)
}

/// The texts between each `open` and the next `close` (or the end: a model cut off at
/// its token limit, or one that forgets the closing tag).
fn between_tags<'t>(text: &'t str, open: &str, close: &str) -> Vec<&'t str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        let after = &rest[start + open.len()..];
        let end = after.find(close).unwrap_or(after.len());
        found.push(after[..end].trim());
        rest = &after[end..];
    }
    found
}

/// The body of a code fence around `text`, if it has one.
fn strip_fence(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(inner) = trimmed.strip_prefix("```") else { return trimmed };
    let inner = inner.split_once('\n').map_or("", |(_, body)| body);
    inner.trim_end().strip_suffix("```").unwrap_or(inner).trim()
}

/// Every JSON object or array found in `text`, in order, outside one another.
fn json_values(text: &str) -> Vec<Value> {
    let mut values = Vec::new();
    let mut at = 0;
    while let Some(offset) = text[at..].find(['{', '[']) {
        let start = at + offset;
        let mut stream = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(value)) => {
                values.push(value);
                at = start + stream.byte_offset();
            }
            _ => at = start + 1,
        }
    }
    values
}

/// Adds the calls `value` holds: one call object, an array of them, or a wrapper; counts
/// the tool definitions (a `description` beside the name) it holds instead.
fn collect(value: &Value, declared: &[&str], calls: &mut Vec<CallRecord>, definitions: &mut usize) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| collect(item, declared, calls, definitions)),
        Value::Object(object) => {
            if let Some(list) = object.get("tool_calls") {
                return collect(list, declared, calls, definitions);
            }
            if is_definition(object) {
                *definitions += 1;
            } else if let Some(call) = call_of(object, declared) {
                calls.push(call);
            }
        }
        _ => {}
    }
}

/// A tool's definition as the request declared it, echoed back: `{"type": "function",
/// "function": {"name", "description", "parameters"}}` or its inner object.
fn is_definition(object: &Map<String, Value>) -> bool {
    let inner = match object.get("function") {
        Some(Value::Object(inner)) => inner,
        _ => object,
    };
    inner.contains_key("description")
        && inner.get("parameters").is_some_and(|p| p.get("properties").is_some())
}

/// One call object in any of the spellings models use: `name` + `arguments`
/// (or `parameters`, `args`, `input`), `function` + `arguments`, or OpenAI's own
/// `{"function": {"name", "arguments"}}` shape.
fn call_of(object: &Map<String, Value>, declared: &[&str]) -> Option<CallRecord> {
    if let Some(Value::Object(inner)) = object.get("function") {
        return call_of(inner, declared);
    }
    let name = ["name", "function", "tool", "tool_name"]
        .iter()
        .find_map(|key| object.get(*key).and_then(Value::as_str))?;
    if !declared.contains(&name) {
        return None;
    }
    let arguments = ["arguments", "parameters", "args", "input", "tool_input"]
        .iter()
        .find_map(|key| object.get(*key))
        .map_or_else(|| "{}".to_string(), arguments_text);
    Some(CallRecord { id: String::new(), name: name.to_string(), arguments })
}

/// Arguments as the JSON text a native call carries; a string holding JSON is unwrapped.
fn arguments_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `✿FUNCTION✿: name` followed by `✿ARGS✿: {…}`, any number of times.
fn qwen_agent(text: &str, declared: &[&str]) -> TextCalls {
    let mut calls = Vec::new();
    for part in text.split("✿FUNCTION✿").skip(1) {
        let part = part.trim_start_matches([':', ' ']);
        let (name, rest) = part.split_once('\n').unwrap_or((part, ""));
        let name = name.trim();
        if !declared.contains(&name) {
            continue;
        }
        let arguments = rest
            .split_once("✿ARGS✿")
            .map(|(_, args)| args.trim_start_matches([':', ' ']))
            .map(|args| args.split("✿RESULT✿").next().unwrap_or(args).trim().to_string())
            .unwrap_or_else(|| "{}".to_string());
        calls.push(CallRecord { id: String::new(), name: name.to_string(), arguments });
    }
    finish(CallFormat::QwenAgent, calls, declared)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOLS: &[&str] = &["read_file", "write_file", "finish"];

    fn calls(text: &str) -> (CallFormat, Vec<(String, Value)>) {
        match parse(text, TOOLS) {
            TextCalls::Calls(format, calls) => (
                format,
                calls.into_iter().map(|c| (c.name, serde_json::from_str(&c.arguments).unwrap())).collect(),
            ),
            other => panic!("no calls in {text:?}: {other:?}"),
        }
    }

    #[test]
    fn every_format_small_models_write_is_read() {
        let read = ("read_file".to_string(), serde_json::json!({"path": "a.py"}));
        for text in [
            "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.py\"}}\n</tool_call>",
            "I will read it.\n```json\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.py\"}}\n```",
            "{\"name\": \"read_file\", \"parameters\": {\"path\": \"a.py\"}}",
            "{\"function\": {\"name\": \"read_file\", \"arguments\": \"{\\\"path\\\": \\\"a.py\\\"}\"}}",
            "[{\"tool\": \"read_file\", \"args\": {\"path\": \"a.py\"}}]",
            "✿FUNCTION✿: read_file\n✿ARGS✿: {\"path\": \"a.py\"}",
        ] {
            assert_eq!(calls(text).1, std::slice::from_ref(&read), "{text}");
        }
        assert_eq!(calls("<tool_call>{\"name\": \"finish\"}").0, CallFormat::Tagged);
    }

    #[test]
    fn several_calls_keep_their_order_and_get_ids() {
        let text = "<tool_call>{\"name\": \"write_file\", \"arguments\": {\"path\": \"a\", \"content\": \"x\"}}</tool_call>\n\
                    <tool_call>{\"name\": \"finish\", \"arguments\": {\"summary\": \"done\"}}</tool_call>";
        let TextCalls::Calls(_, found) = parse(text, TOOLS) else { panic!() };
        let names: Vec<(&str, &str)> = found.iter().map(|c| (c.id.as_str(), c.name.as_str())).collect();
        assert_eq!(names, [("text_call_0", "write_file"), ("text_call_1", "finish")]);
    }

    #[test]
    fn json_that_is_not_a_call_is_not_one() {
        assert_eq!(
            parse("```json\n{\"name\": \"my-app\", \"version\": \"1.0\"}\n```", TOOLS),
            TextCalls::None
        );
        assert_eq!(parse("def f(x): return {x: [1, 2]}", TOOLS), TextCalls::None);
        assert_eq!(parse("All done.", TOOLS), TextCalls::None);
    }

    #[test]
    fn echoed_tool_definitions_are_reported_not_run() {
        let echoed = "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"read_file\", \"description\": \"Read a file\", \
                      \"parameters\": {\"type\": \"object\", \"properties\": {\"path\": {\"type\": \"string\"}}}}}\n</tools>";
        assert_eq!(
            parse(echoed, TOOLS),
            TextCalls::Malformed("the answer repeats the tool definitions instead of calling a tool".into())
        );
    }

    #[test]
    fn a_broken_attempt_is_reported_not_ignored() {
        let TextCalls::Malformed(reason) = parse("<tool_call>{\"name\": \"read_file\", </tool_call>", TOOLS)
        else {
            panic!()
        };
        assert!(reason.starts_with("a <tool_call> block is not valid JSON"), "{reason}");
        let TextCalls::Malformed(reason) = parse("<tool_call>{\"name\": \"run_shell\"}</tool_call>", TOOLS)
        else {
            panic!()
        };
        assert_eq!(reason, "the call names no declared tool; the tools are read_file, write_file, finish");
    }

    #[test]
    fn python_triple_quotes_left_raw_in_a_call_are_mended() {
        // An answer of the evaluation (implement-is-prime), as the model wrote it.
        let text = r#"{"name": "read_file", "arguments": {"end_line": 1, "path": "primes.py", "start_line": 1}}
{"name": "write_file", "arguments": {"content": "def is_prime(n):\n    """True when n is prime."""\n    return n > 1", "path": "primes.py"}}
{"name": "finish", "arguments": {"summary": "done"}}"#;
        let (_, calls) = calls(text);
        let names: Vec<&str> = calls.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["read_file", "write_file", "finish"]);
        assert_eq!(
            calls[1].1["content"],
            "def is_prime(n):\n    \"\"\"True when n is prime.\"\"\"\n    return n > 1"
        );
    }

    #[test]
    fn one_unreadable_call_among_readable_ones_runs_none() {
        let text = "{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.py\"}}\n\
                    {\"name\": \"write_file\", \"arguments\": {\"path\": \"a.py\", \"content\": \"print(\"a\", 1)\"}}\n\
                    {\"name\": \"finish\", \"arguments\": {\"summary\": \"done\"}}";
        match parse(text, TOOLS) {
            TextCalls::Malformed(reason) => {
                assert!(reason.starts_with("the write_file call is not valid JSON"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn raw_line_breaks_in_a_call_are_mended_and_broken_calls_are_not_code() {
        let raw = "```json\n{\"name\": \"write_file\", \"arguments\": {\"path\": \"a.py\", \"content\": \"x = 1\n\ty = \\\"2\\\"\n\"}}\n```";
        let TextCalls::Calls(CallFormat::Json, calls) = parse(raw, TOOLS) else { panic!("{raw}") };
        let arguments: Value = serde_json::from_str(&calls[0].arguments).unwrap();
        assert_eq!(arguments["content"], "x = 1\n\ty = \"2\"\n");

        // Quotes a shell line holds, left unescaped, as seen from the model.
        let quoted = r#"{"name": "edit_file", "arguments": {"path":"c.sh","replace":"echo $(wc -l < "$1")","search":"wc -l < "$1"","replace_all":false}}"#;
        let TextCalls::Calls(_, calls) = parse(quoted, &["edit_file"]) else { panic!("{quoted}") };
        let arguments: Value = serde_json::from_str(&calls[0].arguments).unwrap();
        assert_eq!(
            (arguments["search"].as_str(), arguments["replace_all"].as_bool()),
            (Some(r#"wc -l < "$1""#), Some(false))
        );

        // A quote followed by a comma looks like the string's end: no repair reads that.
        let broken = "```json\n{\n  \"name\": \"write_file\",\n  \"arguments\": {\"path\": \"a.py\", \"content\": \"print(\"a\", \"b\")\n\"}}\n```";
        match parse(broken, TOOLS) {
            TextCalls::Malformed(reason) => {
                assert!(
                    reason.starts_with("the write_file call is not valid JSON; inside a JSON string"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
