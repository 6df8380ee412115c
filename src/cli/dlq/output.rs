//! How `dlq` prints: the list table, the per-reason summary, one task in full.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::filter::{age, reason, show_age};
use crate::amqp::{DeadLetter, header};

/// Characters of the failure message shown in the table; `dlq show` has it all.
const TABLE_MESSAGE_CHARS: usize = 80;
/// Task ids named per group in the summary; the count says how many there are.
const SUMMARY_EXAMPLES: usize = 3;

/// One DLQ entry as operators see it.
#[derive(Debug, serde::Serialize)]
pub struct Row {
    task_id: String,
    spec: String,
    reason: String,
    failed_step: String,
    attempts: String,
    age: String,
    failed_at: String,
    message: String,
}

fn row(letter: &DeadLetter, now: DateTime<Utc>) -> Row {
    let text = |name| letter.header_text(name).unwrap_or_else(|| "-".to_string());
    Row {
        task_id: text(header::TASK_ID),
        spec: text(header::SPEC),
        reason: reason(letter),
        failed_step: text(header::STEP),
        attempts: text(header::ATTEMPTS),
        age: show_age(age(letter, now)),
        failed_at: text(header::FAILED_AT),
        message: text(header::MESSAGE),
    }
}

pub fn rows(letters: &[DeadLetter], now: DateTime<Utc>) -> Vec<Row> {
    letters.iter().map(|l| row(l, now)).collect()
}

/// `1.1 (greeter, timeout at test)`: one message in a progress line.
pub fn one_line(letter: &DeadLetter, now: DateTime<Utc>) -> String {
    let r = row(letter, now);
    format!("{} ({}, {} at {}, {} old)", r.task_id, r.spec, r.reason, r.failed_step, r.age)
}

pub fn table(letters: &[DeadLetter], now: DateTime<Utc>) -> String {
    let mut out = format!("{} message(s)\n", letters.len());
    out.push_str(&format!(
        "{:<12} {:<16} {:<22} {:<10} {:<8} {:<5} {}\n",
        "TASK", "SPEC", "REASON", "STEP", "ATTEMPTS", "AGE", "MESSAGE"
    ));
    for r in rows(letters, now) {
        let message: String = r.message.chars().take(TABLE_MESSAGE_CHARS).collect();
        out.push_str(&format!(
            "{:<12} {:<16} {:<22} {:<10} {:<8} {:<5} {}\n",
            r.task_id, r.spec, r.reason, r.failed_step, r.attempts, r.age, message
        ));
    }
    out
}

/// Failures grouped by reason: how many, at which steps, the oldest, a few task ids.
#[derive(Debug, serde::Serialize)]
pub struct Group {
    reason: String,
    count: usize,
    steps: Vec<String>,
    oldest: String,
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
            Group {
                reason,
                count: members.len(),
                steps,
                oldest: show_age(members.iter().filter_map(|l| age(l, now)).max()),
                tasks: members
                    .iter()
                    .filter_map(|l| l.header_text(header::TASK_ID))
                    .take(SUMMARY_EXAMPLES)
                    .collect(),
            }
        })
        .collect();
    groups.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    groups
}

pub fn summary_table(letters: &[DeadLetter], now: DateTime<Utc>) -> String {
    let mut out = format!("{} message(s)\n", letters.len());
    out.push_str(&format!("{:<22} {:>5} {:<6} {:<24} {}\n", "REASON", "COUNT", "OLDEST", "STEPS", "TASKS"));
    for g in groups(letters, now) {
        out.push_str(&format!(
            "{:<22} {:>5} {:<6} {:<24} {}\n",
            g.reason,
            g.count,
            g.oldest,
            g.steps.join(","),
            g.tasks.join(",")
        ));
    }
    out
}

/// Every header and the body (pretty when it is JSON) of each letter.
pub fn details(letters: &[DeadLetter]) -> String {
    let mut out = String::new();
    for letter in letters {
        out.push_str(&format!("routing key: {}\nheaders:\n", letter.routing_key));
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
