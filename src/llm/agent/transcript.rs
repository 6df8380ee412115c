//! The transcript: every message of every round, as uploaded with the task's artifacts.
//!
//! Long texts (file contents, test output) are cut to [`MAX_ENTRY_CHARS`] so the artifact
//! stays readable and bounded; the caller masks secrets before it leaves the worker.

use serde::Serialize;

use crate::llm::truncate_chars;

/// Characters kept of one message: enough for a test failure or a source file's head.
pub const MAX_ENTRY_CHARS: usize = 16 * 1024;
/// Entries kept per task: a run at the default turn budget with several tool calls per
/// turn stays well below; the cap protects the artifact from a configuration with huge budgets.
pub const MAX_ENTRIES: usize = 2000;

/// Who produced an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    System,
    User,
    Assistant,
    Tool,
    /// The engine's own notes: budget trips, refusals, wrap-up.
    Engine,
}

/// One tool call as the model sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallRecord {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// One message or note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Implementation round, from 1.
    pub round: u32,
    /// Model turn within the task, from 1; 0 before the first answer of a round.
    pub turn: u32,
    pub speaker: Speaker,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<CallRecord>,
    /// For tool results: the tool, and whether it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// For answers: tokens this turn cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u32>,
}

/// All entries of a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Transcript {
    pub entries: Vec<Entry>,
    /// Entries dropped by [`MAX_ENTRIES`].
    pub omitted_entries: usize,
}

impl Transcript {
    /// Appends an entry, cutting its text.
    pub fn push(&mut self, mut entry: Entry) {
        if self.entries.len() >= MAX_ENTRIES {
            self.omitted_entries += 1;
            return;
        }
        entry.text = truncate_chars(&entry.text, MAX_ENTRY_CHARS);
        for call in &mut entry.tool_calls {
            call.arguments = truncate_chars(&call.arguments, MAX_ENTRY_CHARS);
        }
        self.entries.push(entry);
    }

    /// A plain text entry.
    pub fn say(&mut self, round: u32, turn: u32, speaker: Speaker, text: impl Into<String>) {
        self.push(Entry {
            round,
            turn,
            speaker,
            text: text.into(),
            tool_calls: Vec::new(),
            tool: None,
            ok: None,
            tokens: None,
        });
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Pretty JSON, for the artifact.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}
