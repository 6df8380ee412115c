//! The fallback for endpoints without function calling: edit blocks in plain text.
//!
//! The format (documented in the README and in the system prompt):
//!
//! ```text
//! path/to/file.py
//! <<<<<<< SEARCH
//! exact existing lines
//! =======
//! replacement lines
//! >>>>>>> REPLACE
//! ```
//!
//! An empty SEARCH creates a new file. Commands on lines of their own: `READ FILE: path`,
//! `DELETE FILE: path`, `RUN TESTS`. An answer with none of these is the final summary.
//! The actions are carried out by the same tools as in tool mode, so confinement,
//! protected paths and limits are identical.

use super::prompt::REPLACE_PLACEHOLDER;

/// Answers parsed at most this many actions: more in one answer is a runaway reply.
pub const MAX_ACTIONS: usize = 50;

const DIVIDER: &str = "=======";
const REPLACE: &str = ">>>>>>> REPLACE";
/// The path the format's description uses; a model that copies it has not named a file.
const PLACEHOLDER_PREFIX: &str = "path/to/";

/// One thing an answer asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Replace `search` with `replace`; an empty `search` creates the file.
    Edit {
        path: String,
        search: String,
        replace: String,
    },
    Read {
        path: String,
    },
    Delete {
        path: String,
    },
    RunTests,
}

/// Parses an answer into its actions, or says what is malformed.
pub fn parse_actions(answer: &str) -> Result<Vec<Action>, String> {
    let lines: Vec<&str> = answer.lines().collect();
    let mut actions = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if is_marker(line, '<', "SEARCH") {
            let path = block_path(&lines[..i]).ok_or_else(|| {
                format!("the edit block at line {} has no file path on the line before it", i + 1)
            })?;
            if path.starts_with(PLACEHOLDER_PREFIX) {
                return Err(format!(
                    "the edit block at line {} is for {path}, the example's placeholder: put the real path of \
                     the file on the line before <<<<<<< SEARCH",
                    i + 1
                ));
            }
            let (search, replace, next) = block_body(&lines, i + 1)?;
            if replace.trim() == REPLACE_PLACEHOLDER {
                return Err(format!(
                    "the edit block for {path} keeps the example's {REPLACE_PLACEHOLDER}: write the real new lines"
                ));
            }
            actions.push(Action::Edit { path, search, replace });
            i = next;
        } else {
            if let Some(path) = command(line, "READ FILE:") {
                actions.push(Action::Read { path });
            } else if let Some(path) = command(line, "DELETE FILE:") {
                actions.push(Action::Delete { path });
            } else if line == "RUN TESTS" {
                actions.push(Action::RunTests);
            }
            i += 1;
        }
        if actions.len() > MAX_ACTIONS {
            return Err(format!("the answer holds more than {MAX_ACTIONS} actions; send fewer at a time"));
        }
    }
    if actions.is_empty()
        && let Some(at) =
            lines.iter().position(|l| is_divider(l.trim()) || is_marker(l.trim(), '>', "REPLACE"))
    {
        return Err(format!(
            "line {} is an edit-block marker but no block starts with <<<<<<< SEARCH: write the file path, \
             then <<<<<<< SEARCH, the exact current lines, =======, the new lines, >>>>>>> REPLACE",
            at + 1
        ));
    }
    Ok(actions)
}

/// A marker line: five to nine `mark` characters and the word, as models miscount them.
fn is_marker(line: &str, mark: char, word: &str) -> bool {
    let rest = line.trim_start_matches(mark);
    let count = line.len() - rest.len();
    (5..=9).contains(&count) && rest.trim() == word
}

/// The divider, exactly: a Markdown heading underline inside the SEARCH text of a README
/// edit must not split the block, so only the start and end markers are read leniently.
fn is_divider(line: &str) -> bool {
    line == DIVIDER
}

fn command(line: &str, prefix: &str) -> Option<String> {
    let rest = line.strip_prefix(prefix)?;
    let path = clean_path(rest);
    (!path.is_empty()).then_some(path)
}

/// The nearest non-empty line before the block that is not a code fence.
fn block_path(before: &[&str]) -> Option<String> {
    let line = before.iter().rev().map(|l| l.trim()).find(|l| !l.is_empty() && !l.starts_with("```"))?;
    let path = clean_path(line);
    (!path.is_empty() && !path.contains(' ')).then_some(path)
}

/// Models decorate paths with Markdown: backticks, bold, a heading mark, a trailing colon.
fn clean_path(text: &str) -> String {
    text.trim()
        .trim_start_matches('#')
        .trim()
        .trim_matches(|c| c == '`' || c == '*')
        .trim_end_matches(':')
        .trim()
        .to_string()
}

/// The SEARCH and REPLACE texts of a block whose body starts at `start`, and the line after it.
fn block_body(lines: &[&str], start: usize) -> Result<(String, String, usize), String> {
    let divider = (start..lines.len())
        .find(|&j| is_divider(lines[j].trim()))
        .ok_or_else(|| format!("the edit block at line {start} has no {DIVIDER} line"))?;
    let end = (divider + 1..lines.len())
        .find(|&j| is_marker(lines[j].trim(), '>', "REPLACE"))
        .ok_or_else(|| format!("the edit block at line {start} has no {REPLACE} line"))?;
    Ok((joined(&lines[start..divider]), joined(&lines[divider + 1..end]), end + 1))
}

/// Lines with their newlines back; a non-empty block ends with one.
fn joined(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_commands_are_parsed_in_order() {
        let answer = "I will fix it.\n\nREAD FILE: src/a.py\n`src/app.py`\n```python\n<<<<<<< SEARCH\n\
                      def f():\n    return 1\n=======\ndef f():\n    return 2\n>>>>>>> REPLACE\n```\n\
                      **new.txt**\n<<<<<<< SEARCH\n=======\nhello\n>>>>>>> REPLACE\nDELETE FILE: old.txt\nRUN TESTS\n";
        assert_eq!(
            parse_actions(answer).unwrap(),
            vec![
                Action::Read { path: "src/a.py".into() },
                Action::Edit {
                    path: "src/app.py".into(),
                    search: "def f():\n    return 1\n".into(),
                    replace: "def f():\n    return 2\n".into()
                },
                Action::Edit { path: "new.txt".into(), search: String::new(), replace: "hello\n".into() },
                Action::Delete { path: "old.txt".into() },
                Action::RunTests,
            ]
        );
        assert_eq!(parse_actions("All done: the greeting works.").unwrap(), vec![]);
    }

    #[test]
    fn malformed_blocks_are_named() {
        assert_eq!(
            parse_actions("a.txt\n<<<<<<< SEARCH\nx\n").unwrap_err(),
            "the edit block at line 2 has no ======= line"
        );
        assert_eq!(
            parse_actions("a.txt\n<<<<<<< SEARCH\nx\n=======\ny\n").unwrap_err(),
            "the edit block at line 2 has no >>>>>>> REPLACE line"
        );
        assert_eq!(
            parse_actions("<<<<<<< SEARCH\n=======\n>>>>>>> REPLACE").unwrap_err(),
            "the edit block at line 1 has no file path on the line before it"
        );
    }

    #[test]
    fn copied_placeholders_and_orphan_markers_are_format_errors() {
        let error =
            parse_actions("path/to/README.md\n<<<<<<< SEARCH\n=======\nx\n>>>>>>> REPLACE\n").unwrap_err();
        assert!(error.contains("path/to/README.md, the example's placeholder"), "{error}");
        let error = parse_actions("README.md\nold\n=======\nnew\n>>>>>>> REPLACE\n").unwrap_err();
        assert!(error.starts_with("line 3 is an edit-block marker but no block starts"), "{error}");
    }

    #[test]
    fn miscounted_markers_still_parse() {
        let actions = parse_actions("a.txt\n<<<<<<<< SEARCH\nx\n=======\ny\n>>>>>> REPLACE\n").unwrap();
        assert_eq!(
            actions,
            vec![Action::Edit { path: "a.txt".into(), search: "x\n".into(), replace: "y\n".into() }]
        );
    }
}
