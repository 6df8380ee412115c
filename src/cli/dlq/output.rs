//! How `dlq` prints: the list table, the per-reason summary, one letter in full.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::filter::{age, reason, show_age};
use crate::amqp::{DeadLetter, HeaderValue, header};

/// Width the failure message is wrapped to under its row in the table: the whole cause
/// is shown, on continuation lines, rather than cut.
const TABLE_MESSAGE_WIDTH: usize = 100;
/// Distinct task ids named per group in the summary; `task_count` says how many there are.
const SUMMARY_EXAMPLES: usize = 5;

/// One DLQ entry as operators see it. Absent headers are `null` in JSON (`-` in the
/// table); counts are numbers.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    id: String,
    task_id: Option<String>,
    spec: Option<String>,
    reason: String,
    failed_step: Option<String>,
    attempts: Option<i64>,
    age: String,
    age_seconds: Option<u64>,
    failed_at: Option<String>,
    message: Option<String>,
}

fn row(letter: &DeadLetter, now: DateTime<Utc>) -> Row {
    let text = |name| letter.header_text(name);
    let age_now = age(letter, now);
    Row {
        id: letter.id.clone(),
        task_id: text(header::TASK_ID),
        spec: text(header::SPEC),
        reason: reason(letter),
        failed_step: text(header::STEP),
        attempts: letter.headers.get(header::ATTEMPTS).and_then(HeaderValue::as_int),
        age: show_age(age_now),
        age_seconds: age_now.map(|a| a.as_secs()),
        failed_at: text(header::FAILED_AT),
        message: text(header::MESSAGE),
    }
}

pub fn rows(letters: &[DeadLetter], now: DateTime<Utc>) -> Vec<Row> {
    letters.iter().map(|l| row(l, now)).collect()
}

fn or_dash(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

/// `1.1 [3f9c…] (greeter, timeout at test, 2h old)`: one message in a progress line.
pub fn one_line(letter: &DeadLetter, now: DateTime<Utc>) -> String {
    let r = row(letter, now);
    format!(
        "{} [{}] ({}, {} at {}, {} old)",
        or_dash(&r.task_id),
        r.id,
        or_dash(&r.spec),
        r.reason,
        or_dash(&r.failed_step),
        r.age
    )
}

/// One row per letter, its failure message whole on indented lines below it.
pub fn table(letters: &[DeadLetter], now: DateTime<Utc>) -> String {
    let mut out = format!("{} message(s)\n", letters.len());
    out.push_str(&format!(
        "{:<16} {:<12} {:<16} {:<22} {:<10} {:<8} {}\n",
        "ID", "TASK", "SPEC", "REASON", "STEP", "ATTEMPTS", "AGE"
    ));
    for r in rows(letters, now) {
        let attempts = r.attempts.map_or_else(|| "-".to_string(), |n| n.to_string());
        out.push_str(&format!(
            "{:<16} {:<12} {:<16} {:<22} {:<10} {:<8} {}\n",
            r.id,
            or_dash(&r.task_id),
            or_dash(&r.spec),
            r.reason,
            or_dash(&r.failed_step),
            attempts,
            r.age
        ));
        for line in wrapped(r.message.as_deref().unwrap_or(""), TABLE_MESSAGE_WIDTH) {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

/// `text` broken into lines of at most `width` characters, at spaces where it can.
fn wrapped(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split(' ') {
            let mut word = word.to_string();
            while word.chars().count() > width {
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                let head: String = word.chars().take(width).collect();
                word = word.chars().skip(width).collect();
                lines.push(head);
            }
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        lines.push(line);
    }
    lines
}

/// Failures grouped by reason: how many letters, how many distinct tasks (a few of
/// them named), at which steps, the oldest.
#[derive(Debug, serde::Serialize)]
pub struct Group {
    reason: String,
    count: usize,
    task_count: usize,
    steps: Vec<String>,
    oldest: String,
    oldest_seconds: Option<u64>,
    tasks: Vec<String>,
}

pub fn groups(letters: &[DeadLetter], now: DateTime<Utc>) -> Vec<Group> {
    let mut by_reason: BTreeMap<String, Vec<&DeadLetter>> = BTreeMap::new();
    for letter in letters {
        by_reason.entry(reason(letter)).or_default().push(letter);
    }
    let mut groups: Vec<Group> = by_reason
        .into_iter()
        .map(|(reason, members)| {
            let mut steps: Vec<String> = members.iter().filter_map(|l| l.header_text(header::STEP)).collect();
            steps.sort();
            steps.dedup();
            let mut tasks: Vec<String> =
                members.iter().filter_map(|l| l.header_text(header::TASK_ID)).collect();
            tasks.sort();
            tasks.dedup();
            let task_count = tasks.len();
            tasks.truncate(SUMMARY_EXAMPLES);
            let oldest = members.iter().filter_map(|l| age(l, now)).max();
            Group {
                reason,
                count: members.len(),
                task_count,
                steps,
                oldest: show_age(oldest),
                oldest_seconds: oldest.map(|a| a.as_secs()),
                tasks,
            }
        })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    groups
}

pub fn summary_table(letters: &[DeadLetter], now: DateTime<Utc>) -> String {
    let mut out = format!("{} message(s)\n", letters.len());
    out.push_str(&format!(
        "{:<22} {:>5} {:>5} {:<6} {:<24} {}\n",
        "REASON", "COUNT", "TASKS", "OLDEST", "STEPS", "SOME TASKS"
    ));
    for g in groups(letters, now) {
        let more = g.task_count.saturating_sub(g.tasks.len());
        let named = if more > 0 { format!("{} (+{more})", g.tasks.join(",")) } else { g.tasks.join(",") };
        out.push_str(&format!(
            "{:<22} {:>5} {:>5} {:<6} {:<24} {}\n",
            g.reason,
            g.count,
            g.task_count,
            g.oldest,
            g.steps.join(","),
            named
        ));
    }
    out
}

/// Every header and the body (pretty when it is JSON) of each letter.
pub fn details(letters: &[DeadLetter]) -> String {
    let mut out = String::new();
    for letter in letters {
        out.push_str(&format!("id: {}\nrouting key: {}\nheaders:\n", letter.id, letter.routing_key));
        for (name, value) in &letter.headers {
            let value = serde_json::to_string(value).unwrap_or_default();
            out.push_str(&format!("  {name}: {value}\n"));
        }
        let body = serde_json::from_str::<serde_json::Value>(&letter.body)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| letter.body.clone());
        out.push_str(&format!("body:\n{body}\n\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::wrapped;

    #[test]
    fn a_long_cause_is_wrapped_whole_never_cut() {
        let cause = format!("tests still failing after 2 repair rounds: {} end", "x".repeat(25));
        let lines = wrapped(&cause, 20);
        assert_eq!(
            lines,
            ["tests still failing", "after 2 repair", "rounds:", "xxxxxxxxxxxxxxxxxxxx", "xxxxx end"]
        );
        assert_eq!(wrapped("one\ntwo", 20), ["one", "two"]);
    }
}
