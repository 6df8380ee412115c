//! What the model is told after an answer that did nothing: the exact call to make.
//!
//! A small model often answers with the right code in a Markdown fence instead of a call.
//! The engine does not write that code itself: a fence is as often a fragment of a file
//! as the whole of it, and writing a fragment over a file destroys the rest (a wrong
//! guess is committed as the attempt). Instead the nudge names the file and spells out
//! the one call that writes it, with the model's own code in it, so the next turn only
//! has to repeat it; for an existing file it also shows the edit_file form.

use serde_json::json;

/// Code longer than this is not repeated in the nudge: the call is shown with a
/// placeholder, so one nudge cannot double a long answer's cost in the context.
const MAX_QUOTED_CODE_CHARS: usize = 3000;

/// Code in a fence, and the file it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedCode {
    pub path: String,
    pub code: String,
    pub exists: bool,
}

/// The first fenced block of `text` that names a file: in its info string, in a comment
/// on its first line, or in the text just before it. `exists` says whether a path is a
/// file of the workspace; an existing file wins over a path only mentioned.
pub fn fenced_code(text: &str, exists: &dyn Fn(&str) -> bool) -> Option<FencedCode> {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let end =
            (i + 1..lines.len()).find(|&j| lines[j].trim_start().starts_with("```")).unwrap_or(lines.len());
        let body = &lines[i + 1..end];
        let before = lines[i.saturating_sub(3)..i].join(" ");
        let mut candidates = path_tokens(info);
        candidates.extend(body.first().map_or_else(Vec::new, |first| comment_path(first)));
        candidates.extend(path_tokens(&before).into_iter().rev());
        candidates.extend(path_tokens(text));
        let chosen = candidates.iter().find(|p| exists(p)).or_else(|| candidates.first());
        if let Some(path) = chosen
            && !body.is_empty()
        {
            let code: String = body.iter().map(|l| format!("{l}\n")).collect();
            return Some(FencedCode { path: path.clone(), exists: exists(path), code });
        }
        i = end + 1;
    }
    None
}

/// A path named in a first-line comment: `# file: a.py`, `// src/x.js`.
fn comment_path(line: &str) -> Vec<String> {
    let trimmed = line.trim();
    let comment = ["#", "//", "--", "/*"].iter().find_map(|mark| trimmed.strip_prefix(mark));
    comment.map_or_else(Vec::new, path_tokens)
}

/// Words of `text` shaped like a relative file path with an extension.
pub(crate) fn path_tokens(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '`' | '*' | '"' | '\'' | '(' | ')' | ',' | ':'))
        .map(|word| word.trim_end_matches(['.', ';', '!', '?']))
        .filter(|word| looks_like_path(word))
        .map(str::to_string)
        .collect()
}

fn looks_like_path(word: &str) -> bool {
    let Some((stem, extension)) = word.rsplit_once('.') else { return false };
    !stem.is_empty()
        && !word.starts_with('/')
        && !word.contains("..")
        && !word.contains("://")
        && (1..=6).contains(&extension.len())
        && extension.chars().all(|c| c.is_ascii_alphanumeric())
        && extension.chars().any(|c| c.is_ascii_alphabetic())
        && word.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
}

/// The nudge for code shown in a fence instead of written.
pub fn code_nudge(found: &FencedCode) -> String {
    let content = if found.code.chars().count() <= MAX_QUOTED_CODE_CHARS {
        json!(found.code)
    } else {
        json!("<the complete new content of the file>")
    };
    let call = call_text("write_file", &json!({"path": found.path, "content": content}));
    let mut text = format!(
        "Your answer shows code for {path} but calls no tool, so nothing was written. To write it, answer \
         with exactly this call (the content must be the complete file):\n<tool_call>\n{call}\n</tool_call>",
        path = found.path
    );
    if found.exists {
        let edit = call_text(
            "edit_file",
            &json!({"path": found.path, "search": "<the exact current lines to replace>", "replace": "<your new lines>"}),
        );
        text.push_str(&format!(
            "\n{path} exists already: if your code is only part of it, change that part instead with\n\
             <tool_call>\n{edit}\n</tool_call>",
            path = found.path
        ));
    }
    text
}

/// One call as text, the name first as the Hermes format has it.
pub fn call_text(name: &str, arguments: &serde_json::Value) -> String {
    format!("{{\"name\": {}, \"arguments\": {arguments}}}", json!(name))
}

/// An `edit_file` call on `line` of `path`, with the replacement left as the placeholder
/// the tools refuse: the example the system message and the repeated-look reply show.
pub fn edit_example(path: &str, line: &str) -> String {
    let arguments = json!({"path": path, "search": line, "replace": super::prompt::REPLACE_PLACEHOLDER});
    call_text("edit_file", &arguments)
}

/// A `write_file` call creating `path`, its content left as the placeholder the tools
/// refuse.
pub fn write_example(path: &str) -> String {
    call_text("write_file", &json!({"path": path, "content": super::prompt::CONTENT_PLACEHOLDER}))
}

/// The reply to a look (list_dir, read_file, search_text) made again right after the
/// same one: it is not run, since its answer is already above, and the model is shown
/// the edit to make instead. A small model at low temperature, shown its own call and
/// the result, tends to make that call again; a different reply breaks the loop.
pub fn repeated_look(name: &str, edit: &str, own_file: Option<&str>) -> String {
    let what = match own_file {
        Some(path) => format!(
            "you read {path} in your previous call and it has not changed; its content is in that result"
        ),
        None => format!(
            "this is the same {name} call as your previous one; its answer is above and has not changed"
        ),
    };
    format!(
        "not run: {what}. Looking again shows nothing new. Change the code now, for example:\n<tool_call>\n{edit}\n</tool_call>\n\
         with the exact current lines in search and your new lines in replace."
    )
}

/// The reply to an answer cut off at the completion limit before its call was whole: a
/// small model asked again to "write the file" writes the same too-long answer, so it is
/// told to send less per answer.
pub fn cut_off_nudge(completion_limit: u32) -> String {
    let limit = format!("the {completion_limit}-token limit");
    format!(
        "Your answer was cut off at {limit} before it ended, so nothing was run. Send smaller pieces: one \
         call per answer, edit_file on just the lines that change rather than write_file of a whole file, \
         a long new file in parts (write_file the first part, then edit_file to append), and no explanation."
    )
}

/// The nudge after an answer with neither a call nor code: the tools, and the call that
/// changes the example file, spelled out.
pub fn plain_nudge(example_call: &str) -> String {
    let call = example_call;
    format!(
        "Your answer did not call any tool, so nothing changed. Work through the tools: read_file or \
         list_dir to look, edit_file or write_file to change files, run_tests to check, finish when the tests \
         pass. Write each call like this:\n<tool_call>\n{call}\n</tool_call>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exists(path: &str) -> bool {
        path == "mathutils.py"
    }

    #[test]
    fn the_file_is_found_before_in_or_at_the_top_of_the_fence() {
        for text in [
            "Here is the fixed `mathutils.py`:\n```python\ndef is_prime(n):\n    return n > 1\n```",
            "```python mathutils.py\ndef is_prime(n):\n    return n > 1\n```",
            "```python\n# mathutils.py\ndef is_prime(n):\n    return n > 1\n```",
            "Update the function as follows.\n```python\ndef is_prime(n):\n    return n > 1\n```\nin mathutils.py.",
        ] {
            let found = fenced_code(text, &exists).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(found.path, "mathutils.py", "{text}");
            assert!(found.exists && found.code.contains("def is_prime(n):\n"), "{text}");
        }
        let new = fenced_code("Create `src/app.js`:\n```js\nexport const x = 1;\n```", &exists).unwrap();
        assert_eq!((new.path.as_str(), new.exists), ("src/app.js", false));
    }

    #[test]
    fn prose_and_nameless_code_name_no_file() {
        assert_eq!(fenced_code("I fixed it, version 1.2 works.", &exists), None);
        assert_eq!(fenced_code("```\nx = 1\n```", &exists), None);
        assert_eq!(fenced_code("See https://example.com/a.html\n```\nx\n```", &exists), None);
    }

    #[test]
    fn the_code_nudge_spells_out_the_call_with_the_code() {
        let found =
            FencedCode { path: "mathutils.py".into(), code: "def f():\n    return 1\n".into(), exists: true };
        let nudge = code_nudge(&found);
        assert!(
            nudge.contains(
                r#"{"name": "write_file", "arguments": {"content":"def f():\n    return 1\n","path":"mathutils.py"}}"#
            ),
            "{nudge}"
        );
        assert!(nudge.contains("edit_file"), "{nudge}");
        let long = FencedCode { code: "x".repeat(MAX_QUOTED_CODE_CHARS + 1), exists: false, ..found };
        let nudge = code_nudge(&long);
        assert!(nudge.contains("<the complete new content of the file>") && !nudge.contains("edit_file"));
    }
}
