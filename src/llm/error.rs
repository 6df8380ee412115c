//! Why the implementation step failed, and whether a later attempt could help.
//!
//! Every variant is an [`FailureKind::Implementation`] except an exhausted budget
//! ([`FailureKind::BudgetExhausted`]); only request failures can be transient (network,
//! timeout, 5xx, 429). Messages never carry the API key: the client
//! builds them from statuses, server bodies and a redacted endpoint, never from headers.

use crate::error::{Classify, FailureKind};

/// A failure of the implementation step (LLM call, answer parsing or applying the edits).
#[derive(Debug, thiserror::Error)]
pub enum ImplementError {
    /// The settings cannot produce a working client (bad endpoint, unusable key).
    #[error("LLM settings are invalid: {0}")]
    Settings(String),

    /// The chat request failed after the retries allowed for it.
    #[error("LLM request to {endpoint} failed{}: {message}", status_suffix(*.status))]
    Request {
        /// The endpoint without user info or query, safe to show.
        endpoint: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
        /// What went wrong, trimmed to a readable length.
        message: String,
        /// True for connection errors, timeouts, HTTP 5xx, 408 and 429.
        transient: bool,
    },

    /// The request did not fit the model's context window (HTTP 400 with an overflow
    /// message); the engine shrinks and asks again, so this ends a round only when even
    /// the smallest request did not fit.
    #[error("LLM request to {endpoint} did not fit the model's context window: {message}")]
    ContextOverflow {
        endpoint: String,
        /// The server's words, trimmed.
        message: String,
        /// The window the server stated, if it did.
        window: Option<u32>,
        /// The prompt's size in the server's tokens, if stated.
        prompt_tokens: Option<u32>,
    },

    /// The server answered, but not with something we can use.
    #[error("LLM answer unusable: {0}")]
    Answer(String),

    /// The answer parsed, but asked for nothing.
    #[error("the model proposed no changes")]
    NoChanges,

    /// A proposed change breaks the confinement or size rules; nothing was written.
    #[error("change {index} ({path}) rejected: {reason}")]
    Rejected {
        /// Position of the change in `code_changes`, from 0.
        index: usize,
        /// The path as the model wrote it.
        path: String,
        reason: String,
    },

    /// A per-task budget (turns, tokens, cost, wall time, stall) ran out; the partial work
    /// and the transcript are kept by the caller.
    #[error("budget exhausted: {detail} ({limit})")]
    BudgetExhausted {
        /// The configuration key of the limit, e.g. `engine.max_turns`.
        limit: &'static str,
        detail: String,
    },

    /// Reading or writing the workspace failed.
    #[error("{action} {path} failed: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" with HTTP {s}")).unwrap_or_default()
}

impl Classify for ImplementError {
    fn failure_kind(&self) -> FailureKind {
        match self {
            ImplementError::BudgetExhausted { .. } => FailureKind::BudgetExhausted,
            _ => FailureKind::Implementation,
        }
    }

    fn is_transient(&self) -> bool {
        // Only the remote side can get better by itself; a bad answer, a rejected path or
        // a workspace I/O error would fail the same way on redelivery.
        matches!(self, ImplementError::Request { transient: true, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_requests_are_transient() {
        let request = |transient| ImplementError::Request {
            endpoint: "http://127.0.0.1:1/v1".into(),
            status: Some(503),
            message: "busy".into(),
            transient,
        };
        assert!(request(true).is_transient());
        assert!(!request(false).is_transient());
        assert!(!ImplementError::NoChanges.is_transient());
        let failure = request(true).to_failure("implement");
        assert_eq!(failure.kind, FailureKind::Implementation);
        assert_eq!(failure.message, "LLM request to http://127.0.0.1:1/v1 failed with HTTP 503: busy");
        assert!(failure.transient);
        let budget =
            ImplementError::BudgetExhausted { limit: "engine.max_turns", detail: "3 turns used of 3".into() };
        let failure = budget.to_failure("implement");
        assert_eq!(failure.kind, FailureKind::BudgetExhausted);
        assert_eq!(failure.message, "budget exhausted: 3 turns used of 3 (engine.max_turns)");
        assert!(!failure.transient);
    }
}
