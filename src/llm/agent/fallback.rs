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

/// Answers parsed at most this many actions: more in one answer is a runaway reply.
pub const MAX_ACTIONS: usize = 50;

const SEARCH: &str = "<<<<<<< SEARCH";
const DIVIDER: &str = "=======";
const REPLACE: &str = ">>>>>>> REPLACE";

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
        if line == SEARCH {
            let path = block_path(&lines[..i]).ok_or_else(|| {
                format!("the edit block at line {} has no file path on the line before it", i + 1)
            })?;
            let (search, replace, next) = block_body(&lines, i + 1)?;
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
    Ok(actions)
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
        .find(|&j| lines[j].trim_end() == DIVIDER)
        .ok_or_else(|| format!("the edit block at line {start} has no {DIVIDER} line"))?;
    let end = (divider + 1..lines.len())
        .find(|&j| lines[j].trim_end() == REPLACE)
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
}
