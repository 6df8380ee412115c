//! The model's proposed edits: the original single-shot JSON format, parsed leniently and
//! applied strictly.
//!
//! Parsing tolerates what chat models wrap around JSON (prose, ```json fences, raw
//! newlines inside strings). Applying is confined to the workspace and all-or-nothing at
//! validation: every change is checked before the first byte is written.

mod apply;
mod credential_files;
mod parse;

use serde::{Deserialize, Deserializer, Serialize};

pub(crate) use apply::confine_path;
pub use apply::{MAX_CHANGED_FILES, MAX_WRITE_BYTES, apply_changes};
pub use parse::parse_code_changes;

/// The answer's content: `{"code_changes": [...], "explanation": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedChanges {
    pub code_changes: Vec<CodeChange>,
    /// The model's own account of the change; empty when it gave none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub explanation: String,
}

/// One file to create, overwrite or delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeChange {
    /// Relative to the workspace root, `/`-separated.
    pub file_path: String,
    pub operation: Operation,
    /// The complete new file content for create and modify; ignored for delete.
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// Writes the file; an existing file is overwritten (models often say create for both).
    Create,
    /// Overwrites an existing file; a missing one is an error.
    Modify,
    /// Removes the file; a missing one is a no-op.
    Delete,
}

fn null_as_empty<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}
