//! Whether a task may run here at all: its `repo_url` is under `git.allowed_remotes` and
//! its own `slot_path`, if it brings one, under `pool.slot_roots`.
//!
//! The task message is an adversary (SECURITY.md): without these checks it chooses which
//! host gets fetched from and pushed to, and which checkout on the host gets reset and
//! cleaned. A refusal is a permanent validation failure naming the field, decided before
//! any git operation; the worker dead-letters it without running the task.

use crate::error::{Classify, TaskFailure};
use crate::git;
use crate::task::{Task, ValidationError};

use super::Runner;

/// The step name refusals carry, as for every other refused message.
const ADMISSION_STEP: &str = "validate";

impl Runner {
    /// Refuses a task whose remote or slot lies outside what the configuration allows.
    pub fn admit(&self, task: &Task) -> Result<(), TaskFailure> {
        if let Some(url) = &task.repo_url {
            self.admit_remote(url)?;
        }
        if let Some(slot) = &task.slot {
            self.admitted_slot_path(&slot.slot_path)?;
        }
        Ok(())
    }

    /// Checks a task's `repo_url` against `git.allowed_remotes`.
    fn admit_remote(&self, url: &str) -> Result<(), TaskFailure> {
        git::check_allowed_remote(&self.settings.allowed_remotes, url)
            .map_err(|reason| refusal("repo_url", format!("{} {reason}", git::redact_url(url))))
    }

    /// Checks the origin of a message's own slot (used when it names no `repo_url`): it is
    /// whatever an earlier task's commands left in the slot's `.git/config`.
    pub(super) fn admit_slot_origin(&self, url: &str) -> Result<(), TaskFailure> {
        git::check_allowed_remote(&self.settings.allowed_remotes, url)
            .map_err(|reason| refusal("slot_path", format!("its origin {} {reason}", git::redact_url(url))))
    }

    /// The slot path as resolved (symlinks and `..` followed), when under a slot root.
    pub(super) fn admitted_slot_path(
        &self,
        path: &std::path::Path,
    ) -> Result<std::path::PathBuf, TaskFailure> {
        git::resolve_slot_path(path, &self.settings.slot_roots)
            .map_err(|reason| refusal("slot_path", format!("{} {reason}", path.display())))
    }
}

fn refusal(field: &str, reason: String) -> TaskFailure {
    ValidationError::Invalid { field: field.to_string(), reason }.to_failure(ADMISSION_STEP)
}
