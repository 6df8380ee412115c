//! Finding the `code_changes` object in a chat answer.
//!
//! Models surround JSON with prose or Markdown fences, and smaller ones put raw newlines
//! inside JSON strings. We scan for balanced `{...}` spans (string-aware, so braces in
//! code do not confuse the count), take the first one that is an object with
//! `code_changes`, and if a span is not valid JSON we retry it with raw control
//! characters inside strings escaped.

use serde_json::Value;

use super::ProposedChanges;
use crate::llm::{ImplementError, truncate_chars};

/// Opening braces tried at most: bounds the quadratic worst case on a long answer that
/// holds no usable object.
const MAX_OBJECT_STARTS: usize = 200;
/// Length of a format error quoted back (serde messages name line and column).
const MAX_ERROR_TEXT: usize = 300;

/// Parses the model's answer into the changes it proposes.
///
/// An empty `code_changes` list is [`ImplementError::NoChanges`].
pub fn parse_code_changes(content: &str) -> Result<ProposedChanges, ImplementError> {
    let starts = content.match_indices('{').map(|(i, _)| i).take(MAX_OBJECT_STARTS);
    for start in starts {
        let Some(end) = balanced_end(&content[start..]) else {
            continue;
        };
        let span = &content[start..start + end];
        let Some(value) = parse_lenient(span) else {
            continue;
        };
        if value.get("code_changes").is_none() {
            continue;
        }
        // The object meant to be the answer: a shape error here is the real problem.
        let changes: ProposedChanges = serde_json::from_value(value).map_err(|e| {
            ImplementError::Answer(format!(
                "code_changes does not match the format: {}",
                truncate_chars(&e.to_string(), MAX_ERROR_TEXT)
            ))
        })?;
        if changes.code_changes.is_empty() {
            return Err(ImplementError::NoChanges);
        }
        return Ok(changes);
    }
    Err(ImplementError::Answer("the answer holds no JSON object with \"code_changes\"".into()))
}

fn parse_lenient(span: &str) -> Option<Value> {
    serde_json::from_str::<Value>(span)
        .ok()
        .or_else(|| serde_json::from_str::<Value>(&escape_raw_controls(span)).ok())
        .filter(Value::is_object)
}

/// Byte length of the balanced object starting at `text[0] == '{'`, if it closes.
fn balanced_end(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    // Structural characters are ASCII, and UTF-8 continuation bytes never equal them.
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' => depth += 1,
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Escapes control characters that appear raw inside JSON strings.
fn escape_raw_controls(span: &str) -> String {
    let mut out = String::with_capacity(span.len() + 64);
    let mut in_string = false;
    let mut escaped = false;
    for c in span.chars() {
        if in_string && !escaped && c.is_control() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                other => out.push_str(&format!("\\u{:04x}", other as u32)),
            }
            continue;
        }
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::edits::{CodeChange, Operation};

    fn one_create(path: &str, content: &str, explanation: &str) -> ProposedChanges {
        ProposedChanges {
            code_changes: vec![CodeChange {
                file_path: path.into(),
                operation: Operation::Create,
                content: Some(content.into()),
            }],
            explanation: explanation.into(),
        }
    }

    #[test]
    fn fenced_json_after_prose_with_braces_in_code() {
        let answer = "Sure {here} it is:\n```json\n{\"code_changes\": [{\"file_path\": \"src/a.rs\", \
                      \"operation\": \"create\", \"content\": \"fn a() { \\\"}\\\"; }\\n\"}], \
                      \"explanation\": \"adds a\"}\n```\nDone.";
        assert_eq!(
            parse_code_changes(answer).unwrap(),
            one_create("src/a.rs", "fn a() { \"}\"; }\n", "adds a")
        );
    }

    #[test]
    fn raw_newlines_inside_strings_are_tolerated() {
        let answer = "{\"code_changes\": [{\"file_path\": \"a.txt\", \"operation\": \"create\", \
                      \"content\": \"line 1\nline\t2\n\"}], \"explanation\": null}";
        assert_eq!(parse_code_changes(answer).unwrap(), one_create("a.txt", "line 1\nline\t2\n", ""));
    }

    #[test]
    fn an_object_without_code_changes_is_skipped() {
        let answer = r#"{"note": 1} then {"code_changes": [{"file_path": "b", "operation": "delete"}]}"#;
        let parsed = parse_code_changes(answer).unwrap();
        assert_eq!(parsed.code_changes[0].operation, Operation::Delete);
        assert_eq!(parsed.code_changes[0].content, None);
    }

    #[test]
    fn failures_are_named() {
        let none = parse_code_changes("I cannot do that.").unwrap_err();
        assert_eq!(
            none.to_string(),
            "LLM answer unusable: the answer holds no JSON object with \"code_changes\""
        );
        let empty = parse_code_changes(r#"{"code_changes": [], "explanation": "nothing"}"#).unwrap_err();
        assert!(matches!(empty, ImplementError::NoChanges));
        let bad = parse_code_changes(r#"{"code_changes": [{"file_path": "a", "operation": "rename"}]}"#)
            .unwrap_err();
        assert!(
            bad.to_string().starts_with(
                "LLM answer unusable: code_changes does not match the format: unknown variant `rename`"
            ),
            "{bad}"
        );
    }
}
