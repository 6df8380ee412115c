//! The worker's implementation step: ask an OpenAI-compatible model for the change, then
//! apply it to the workspace.
//!
//! This is the single-shot form (one chat call answering the original NecroCode JSON
//! format). Callers only see [`ImplementRequest`] → [`ImplementationResult`] /
//! [`ImplementError`], so a later tool-using agent loop can replace the inside of
//! [`implement`] without touching them. Repair rounds are the caller's loop: it sets
//! [`ImplementRequest::previous_failure`] and calls [`implement`] again.
//!
//! [`scripted`] is an OpenAI-compatible server of our own that plays back canned answers,
//! for the `demo` command and the tests.

mod client;
mod edits;
mod error;
mod probe;
mod prompt;
mod repo_view;
pub mod scripted;

use std::path::Path;

use async_openai::types::chat::{ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage};
use serde::Serialize;

pub use client::{ChatAnswer, LlmClient, LlmSettings};
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    /// Chat rounds spent; always 1 in the single-shot form.
    pub rounds: u32,
}

/// Asks the model for the change described by `req` and applies it under `workspace`.
pub async fn implement(
    req: &ImplementRequest,
    workspace: &Path,
    settings: &LlmSettings,
) -> Result<ImplementationResult, ImplementError> {
    let client = LlmClient::new(settings)?;
    let prompt = build_prompt(req);
    let messages = vec![
        ChatCompletionRequestSystemMessage::from(prompt.system).into(),
        ChatCompletionRequestUserMessage::from(prompt.user).into(),
    ];
    let answer = client.chat(messages).await?;
    let changes = parse_code_changes(&answer.content).map_err(|e| match e {
        // A cut-off answer explains the parse failure better than the parse error does.
        ImplementError::Answer(reason) if answer.truncated => {
            ImplementError::Answer(format!("{reason} (the answer was cut off at the token limit)"))
        }
        other => other,
    })?;
    let files_changed = apply_changes(workspace, &changes)?;
    tracing::info!(
        model = %answer.model,
        files = files_changed.len(),
        prompt_tokens = answer.prompt_tokens,
        completion_tokens = answer.completion_tokens,
        "implementation applied"
    );
    Ok(ImplementationResult {
        llm_model: answer.model,
        prompt_tokens: answer.prompt_tokens,
        completion_tokens: answer.completion_tokens,
        tokens_used: answer.prompt_tokens.saturating_add(answer.completion_tokens),
        files_changed,
        explanation: changes.explanation,
        rounds: 1,
    })
}

/// At most `max` characters of `text`, with `…` when cut.
pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
