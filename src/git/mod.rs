//! Git for one task: a pool of reusable clones (slots), preparing a slot on the base
//! branch, committing the agent's work, and pushing the task branch.
//!
//! Everything here is synchronous libgit2 work; async callers wrap each call in
//! `tokio::task::spawn_blocking`. Remotes may be HTTPS URLs (token via
//! [`GitCredentials`], to `git.token_hosts` only), `git://` and `file://` URLs or plain
//! paths (tests use local bare repositories), as far as `git.allowed_remotes` admits
//! them ([`check_allowed_remote`]).
//!
//! Order of use: [`LocalSlotPool::acquire`] → [`sanitize_branch_name`] →
//! [`prepare_workspace`] → (agent edits, tests run) → [`commit_all`] → [`diff_since`] →
//! [`push_branch`]. [`remote_branch_commit`] answers "was this already pushed?".
//!
//! [`commit_all`] and [`push_branch`] first reset the repository's configuration and hooks
//! ([`harden_repository`]): a test command ran in the checkout before them, and nothing it
//! planted in `.git` may steer the worker's own commit or push.

mod added;
mod branch_name;
mod build_cache;
mod commit;
mod credentials;
mod error;
mod harden;
mod oversized;
mod push;
mod remote_policy;
mod slot;
mod slot_reset;
mod slot_roots;
mod slot_state;
mod staging;
mod workspace;

pub use added::{AddedLines, added_lines};
pub use branch_name::sanitize_branch_name;
pub use build_cache::{BUILD_CACHE_DIRS, BUILD_CACHE_SUFFIXES, is_build_cache};
pub use commit::{
    CommitInfo, CommitRequest, GitAuthor, MAX_PATCH_BYTES, changed_files, commit_all, diff_since,
    patch_options, patch_text,
};
pub use credentials::{DEFAULT_TOKEN_USERNAME, GitCredentials, GitRemote};
pub use error::{GitDetail, GitError, redact_text, redact_url};
pub use harden::harden_repository;
pub use push::{
    BranchOnRemote, PushOutcome, adopt_commit, branch_on_remote, fetch_branch, push_branch,
    remote_branch_commit, task_branch_on_remote,
};
pub use remote_policy::{RemotePrefix, TokenHost, check_allowed_remote, is_token_host};
pub use slot::{DEFAULT_MAX_SLOTS_PER_REPO, LocalSlotPool, SlotLease};
pub use slot_roots::resolve_slot_path;
pub use workspace::{PreparedWorkspace, origin_url, prepare_workspace};
