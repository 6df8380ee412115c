//! The task model: what a Dispatcher asks for, validated. Pure: no IO, no clock, no
//! broker. The wire format is DESIGN.md §3 (schema version 1); [`parse_task`] turns
//! message bytes into a [`Task`] or a [`ValidationError`] naming the field at fault.

mod message;
mod refname;

pub use message::{MAX_MESSAGE_BYTES, ValidationError, parse_task};
pub use refname::{MAX_BRANCH_NAME_BYTES, branch_name_problem};

use std::path::PathBuf;

/// The schema version this worker understands.
pub const SCHEMA_VERSION: u64 = 1;

/// The default task timeout when neither the message nor the config sets one (seconds).
pub const DEFAULT_TASK_TIMEOUT_SECONDS: u64 = 1800;

/// A validated task, ready for the pipeline. Field names follow the seed's TaskContext.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Task {
    pub task_id: String,
    pub spec_name: String,
    pub title: String,
    pub description: String,
    pub acceptance_criteria: Vec<String>,
    pub dependencies: Vec<String>,
    /// Selects the routing key and the default playbook (`backend`, `frontend`, ...).
    pub required_skill: Option<String>,
    /// Where to fetch from and push to; absent only when a slot was pre-allocated.
    pub repo_url: Option<String>,
    pub base_branch: String,
    /// The branch requested in the message, if any; see [`Task::branch_name`].
    pub requested_branch: Option<String>,
    /// A slot already allocated by the Dispatcher (id and path).
    pub slot: Option<PreallocatedSlot>,
    pub playbook: Option<PlaybookRequest>,
    /// Overrides the worker's default task timeout.
    pub timeout_seconds: Option<u64>,
    /// Passed through untouched to events and the run summary.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A workspace slot the Dispatcher allocated before publishing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PreallocatedSlot {
    pub slot_id: String,
    pub slot_path: PathBuf,
}

/// How the message names its playbook.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum PlaybookRequest {
    /// A playbook name under the playbooks directory, or a path in the repository.
    Named(String),
    /// A whole playbook carried in the message.
    Inline(serde_json::Value),
}

impl Task {
    /// The branch this task works on: the message's `branch_name`, else
    /// `feature/task-{spec_name}-{task_id}`. Not yet sanitised; the workspace step makes
    /// it a valid ref (and refuses names that cannot be made one).
    pub fn branch_name(&self) -> String {
        match &self.requested_branch {
            Some(name) => name.clone(),
            None => format!("feature/task-{}-{}", self.spec_name, self.task_id),
        }
    }

    /// The commit subject the seed prescribes: `feat(task-{id}): {title}`.
    pub fn commit_subject(&self) -> String {
        format!("feat(task-{}): {}", self.task_id, self.title)
    }

    /// The routing key a Dispatcher publishes this task with.
    pub fn routing_key(&self) -> String {
        format!("task.{}", self.required_skill.as_deref().unwrap_or("default"))
    }
}

#[cfg(test)]
mod tests;
