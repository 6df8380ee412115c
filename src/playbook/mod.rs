//! Playbooks: the YAML-described steps (install, lint, test) that check a task's result.
//!
//! - [`model`]: the types and their validation (limits, unique names, conditions);
//! - [`parse`]: YAML text or an inline JSON object in, errors with file, line, column and field;
//! - [`condition`]: the tiny language of a step's `condition:`;
//! - [`executor`]: runs the steps through [`crate::process`] and reports each one;
//! - [`resolve`]: which playbook a task gets (inline, named, repository, skill, generic, built-in).
//!
//! Architecture invariant: nothing here runs a shell except through `process::run_command`,
//! and conditions are evaluated without one.

pub mod condition;
pub mod executor;
pub mod model;
pub mod parse;
pub mod resolve;

pub use condition::{Condition, ConditionError};
pub use executor::{PlaybookReport, PlaybookRun, StepExecution, StepReport, StepStatus, run_playbook};
pub use model::{Playbook, PlaybookStep};
pub use parse::{MAX_PLAYBOOK_BYTES, parse_playbook, playbook_from_json};
pub use resolve::{PlaybookSpec, ResolvedPlaybook, resolve_playbook};

use crate::error::{Classify, FailureKind};

/// A 1-based line and column in a playbook's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextPosition {
    pub line: usize,
    pub column: usize,
}

/// A playbook that does not parse or validate, with where the problem is.
///
/// Displays as `origin:line:column: field: message`, leaving out the parts that are unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPlaybook {
    /// Where the playbook came from (a path, or a description for inline playbooks).
    pub origin: String,
    /// Position in the text; `None` for inline JSON playbooks or position-less YAML errors.
    pub position: Option<TextPosition>,
    /// Field path such as `steps[1].condition`, when the error is about one field.
    /// Type errors from the YAML parser carry their path inside `message` instead.
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for InvalidPlaybook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why no playbook could be obtained for a task.
#[derive(Debug, thiserror::Error)]
pub enum PlaybookError {
    #[error("{0}")]
    Invalid(InvalidPlaybook),
    #[error("{path}: {size} bytes exceed the playbook limit of {max} bytes")]
    TooLarge { path: String, size: u64, max: u64 },
    #[error("cannot read playbook {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("playbook {path} does not exist")]
    NotFound { path: String },
    #[error("playbook name '{name}' is not a plain name: {reason}")]
    BadName { name: String, reason: &'static str },
    #[error("playbook path '{path}' is outside the repository workspace")]
    OutsideWorkspace { path: String },
}

impl Classify for PlaybookError {
    /// Every variant means the task asked for, or the repository holds, a playbook that
    /// cannot be used: the task is malformed, not the test run.
    fn failure_kind(&self) -> FailureKind {
        FailureKind::Validation
    }

    /// Retrying reads the same bad file or message again.
    fn is_transient(&self) -> bool {
        false
    }
}
