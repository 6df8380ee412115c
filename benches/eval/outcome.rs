//! One task's result in one mode: the independent verdict beside what the worker and the
//! model did, condensed from the run summary and the transcript artifact.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::verify::Verdict;
use crate::worker_run::WorkerRun;

/// Characters of the model's last words kept in a failure reason.
const LAST_WORDS_CHARS: usize = 160;

/// A row of the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskOutcome {
    pub task: String,
    pub stack: String,
    pub mode: String,
    /// The independent check passed.
    pub passed: bool,
    /// What the worker itself reported (`success` in its summary).
    pub worker_success: bool,
    pub turns: u64,
    pub tokens: u64,
    pub wall_seconds: f64,
    pub files: Vec<String>,
    /// Empty when passed; otherwise what went wrong and what the model did.
    pub reason: String,
}

/// Combines the worker's run and the harness's verdict (`None`: nothing was pushed).
pub fn outcome(
    task: &str,
    stack: &str,
    mode: &str,
    run: &WorkerRun,
    verdict: Option<&Verdict>,
) -> TaskOutcome {
    let summary = run.summary.as_ref().unwrap_or(&Value::Null);
    let implementation = &summary["impl_result"];
    let transcript_turns = count_entries(run.transcript.as_ref(), "assistant");
    let turns = implementation["turns"].as_u64().unwrap_or(transcript_turns);
    let tokens =
        implementation["tokens_used"].as_u64().unwrap_or_else(|| transcript_tokens(run.transcript.as_ref()));
    let files = match verdict {
        Some(v) => v.touched.clone(),
        None => strings(&implementation["files_changed"]),
    };
    let passed = verdict.is_some_and(|v| v.passed);
    let reason = if passed { String::new() } else { failure_reason(run, verdict) };
    TaskOutcome {
        task: task.to_string(),
        stack: stack.to_string(),
        mode: mode.to_string(),
        passed,
        worker_success: summary["success"].as_bool() == Some(true),
        turns,
        tokens,
        wall_seconds: run.wall_seconds,
        files,
        reason,
    }
}

/// Why the task did not pass: the check's finding, the worker's failure, the refused
/// writes, the tool calls and the model's last words.
fn failure_reason(run: &WorkerRun, verdict: Option<&Verdict>) -> String {
    let Some(summary) = run.summary.as_ref() else {
        return format!("no run summary (exit {:?}): {}", run.exit_code, run.stderr_tail);
    };
    let mut parts = Vec::new();
    if let Some(v) = verdict {
        parts.push(v.reason.clone());
    }
    let error = &summary["error"];
    if let Some(message) = error["message"].as_str() {
        let kind = error["kind"].as_str().unwrap_or("?");
        let step = error["step"].as_str().unwrap_or("?");
        parts.push(format!("{kind} at {step}: {}", clip(message, 300)));
    }
    let implementation = &summary["impl_result"];
    let refusals = strings(&implementation["refusals"]);
    if !refusals.is_empty() {
        parts.push(format!("refused writes: {}", refusals.join("; ")));
    }
    parts.push(format!("model: {}", model_activity(implementation, run.transcript.as_ref())));
    parts.retain(|p| !p.is_empty());
    parts.join(" — ")
}

/// Tool calls by name (or "no tool calls"), then the model's last answer text.
fn model_activity(implementation: &Value, transcript: Option<&Value>) -> String {
    let calls: Vec<String> = match implementation["tool_calls"].as_object() {
        Some(map) if !map.is_empty() => map.iter().map(|(name, n)| format!("{name}×{n}")).collect(),
        _ => transcript_calls(transcript),
    };
    let mut text =
        if calls.is_empty() { "no tool calls".to_string() } else { format!("calls {}", calls.join(" ")) };
    let engine_notes = entries(transcript, "engine");
    if let Some(note) = engine_notes.last() {
        text.push_str(&format!("; engine: {}", clip(note, LAST_WORDS_CHARS)));
    }
    if let Some(last) = entries(transcript, "assistant").last() {
        text.push_str(&format!("; last answer: \"{}\"", clip(last, LAST_WORDS_CHARS)));
    }
    text
}

fn entries(transcript: Option<&Value>, speaker: &str) -> Vec<String> {
    let Some(list) = transcript.and_then(|t| t["entries"].as_array()) else {
        return Vec::new();
    };
    list.iter()
        .filter(|e| e["speaker"] == speaker)
        .filter_map(|e| e["text"].as_str())
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|t| !t.is_empty())
        .collect()
}

fn count_entries(transcript: Option<&Value>, speaker: &str) -> u64 {
    transcript
        .and_then(|t| t["entries"].as_array())
        .map(|list| list.iter().filter(|e| e["speaker"] == speaker).count() as u64)
        .unwrap_or(0)
}

fn transcript_tokens(transcript: Option<&Value>) -> u64 {
    transcript
        .and_then(|t| t["entries"].as_array())
        .map(|list| list.iter().filter_map(|e| e["tokens"].as_u64()).sum())
        .unwrap_or(0)
}

fn transcript_calls(transcript: Option<&Value>) -> Vec<String> {
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    for entry in transcript.and_then(|t| t["entries"].as_array()).into_iter().flatten() {
        for call in entry["tool_calls"].as_array().into_iter().flatten() {
            *counts.entry(call["name"].as_str().unwrap_or("?").to_string()).or_default() += 1;
        }
    }
    counts.into_iter().map(|(name, n)| format!("{name}×{n}")).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect()
}

/// `text` on one line, at most `max` characters.
pub fn clip(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let kept: String = flat.chars().take(max).collect();
    format!("{kept}…")
}
