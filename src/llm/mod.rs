//! The worker's implementation step: an OpenAI-compatible model changes the workspace.
//!
//! The inside is the [`agent`] engine: a bounded, tool-using loop (or edit blocks for
//! endpoints without function calling) that also accepts the original single-shot
//! `{"code_changes": [...]}` answer. Callers see [`ImplementRequest`] →
//! [`ImplementationResult`] / [`ImplementError`]. The pipeline drives
//! [`implement_round`] with a per-task [`AgentSession`] (budgets, transcript) and a test
//! runner; [`implement`] is one round with default settings and no tests. Repair rounds
//! are the caller's loop: it sets [`ImplementRequest::previous_failure`] and runs another
//! round.
//!
//! [`scripted`] is an OpenAI-compatible server of our own that plays back canned answers,
//! for the `demo` command and the tests.

pub mod agent;
mod client;
mod context_window;
mod edits;
mod error;
pub(crate) mod overflow;
mod probe;
mod prompt;
mod quirks;
mod repo_view;
mod repo_view_git;
pub mod scripted;
mod shared;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

pub use agent::{
    AgentSession, EngineContext, EngineMode, EngineSettings, PlaybookTests, TestRun, TestRunner, Transcript,
    implement_round,
};
pub use client::{ChatAnswer, LlmClient, LlmSettings};
pub use context_window::{
    ContextLimits, DEFAULT_CONTEXT_TOKENS, DEFAULT_TEMPERATURE, MAX_CONTEXT_TOKENS, MIN_CONTEXT_TOKENS,
    MIN_MAX_TOKENS, WindowSource, default_completion_cap,
};
pub use edits::{
    CodeChange, MAX_CHANGED_FILES, MAX_WRITE_BYTES, Operation, ProposedChanges, apply_changes,
    parse_code_changes,
};
pub use error::ImplementError;
pub use prompt::{Prompt, build_prompt};
pub use repo_view::{
    DEFAULT_MAX_CONTENT_BYTES, DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_TREE_ENTRIES, EntryKind, FileText,
    RepoView, RepoViewBudget, TreeEntry, repo_view,
};
pub use repo_view_git::repo_view_at;
pub use shared::SharedLlmClient;

/// What to implement, and what the model may see of the repository.
#[derive(Debug, Clone, Default)]
pub struct ImplementRequest {
    pub title: String,
    pub description: String,
    pub acceptance_criteria: Vec<String>,
    /// Titles or ids of the tasks this one builds on.
    pub dependencies: Vec<String>,
    /// How the playbook runs the tests, so the model writes tests that command finds.
    pub test_command_hint: Option<String>,
    /// Built by [`repo_view`] from the workspace, after any earlier round's edits.
    pub repo_view: RepoView,
    /// For a repair round: the failing test output, already trimmed and masked by the caller.
    pub previous_failure: Option<String>,
}

/// What the implementation step did, as recorded in the run summary and events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImplementationResult {
    /// The model the server says answered.
    pub llm_model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// `prompt_tokens + completion_tokens`.
    pub tokens_used: u32,
    /// Workspace-relative, `/`-separated, in the order the model gave them.
    pub files_changed: Vec<String>,
    /// The model's own account of the change.
    pub explanation: String,
    /// Implementation rounds (the first, then repair rounds).
    pub rounds: u32,
    /// Model turns (chat requests answered), over all rounds.
    pub turns: u32,
    /// Tool calls by tool name (edit-block actions count as the tool they use).
    pub tool_calls: BTreeMap<String, u32>,
    /// From `engine.prices`; `None` when the model has no price there.
    pub estimated_cost_usd: Option<f64>,
    /// Writes refused because the path is protected: `path (protected by `glob`)`.
    pub refusals: Vec<String>,
}

/// One implementation round for `req` in `workspace`, with the default engine settings
/// and no test runner; the transcript is dropped.
pub async fn implement(
    req: &ImplementRequest,
    workspace: &Path,
    settings: &LlmSettings,
) -> Result<ImplementationResult, ImplementError> {
    let engine = EngineSettings::default();
    let masker = crate::secrets::Masker::default();
    let ctx = EngineContext {
        settings: &engine,
        max_file_bytes: crate::workspace_files::DEFAULT_MAX_FILE_BYTES,
        tests: None,
        masker: &masker,
    };
    let mut session = AgentSession::new(&engine);
    let client = LlmClient::new(settings)?;
    implement_round(req, workspace, &client, &ctx, &mut session).await
}

/// At most `max` characters of `text`, with `…` when cut.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
