//! Pushing the task branch, and asking the remote where a branch points.
//!
//! Pushes are never forced: if the remote branch moved (another attempt of the same task,
//! or a human), the push is rejected and reported, instead of silently overwriting work.
//! libgit2 runs no hooks (`pre-push` included).

use std::cell::RefCell;
use std::path::Path;

use git2::{Direction, ErrorCode, PushOptions, Remote};

use super::credentials::GitRemote;
use super::error::GitError;
use super::workspace::{open, pin_origin};

/// A branch that landed on the remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    pub branch: String,
    /// Hex id of the commit the remote branch now points at.
    pub commit: String,
}

/// Pushes `refs/heads/<branch>` to the same name on the remote (no force). A per-ref
/// rejection reported by the server is an error ([`GitError::PushRejected`]), not a
/// silent success.
pub fn push_branch(path: &Path, remote: &GitRemote, branch: &str) -> Result<PushOutcome, GitError> {
    super::harden::harden_repository(path, Some(remote))?;
    let repo = open(path)?;
    let push_error = |e: git2::Error| {
        if e.code() == ErrorCode::NotFastForward {
            return rejected(remote, branch, &super::error::redact_text(e.message()));
        }
        GitError::Push { branch: branch.to_string(), url: remote.redacted_url(), detail: e.into() }
    };
    let local_ref = format!("refs/heads/{branch}");
    let commit = repo.find_reference(&local_ref).and_then(|r| r.peel_to_commit()).map_err(push_error)?.id();
    let mut origin = pin_origin(&repo, remote).map_err(push_error)?;

    let rejection: RefCell<Option<String>> = RefCell::new(None);
    let mut callbacks = remote.callbacks();
    callbacks.push_update_reference(|refname, status| {
        if let Some(reason) = status {
            *rejection.borrow_mut() = Some(format!("{refname}: {reason}"));
        }
        Ok(())
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    origin.push(&[format!("{local_ref}:{local_ref}")], Some(&mut options)).map_err(push_error)?;
    drop(options);

    if let Some(reason) = rejection.into_inner() {
        return Err(rejected(remote, branch, &reason));
    }
    tracing::info!(branch, commit = %commit, url = %remote.redacted_url(), "branch pushed");
    Ok(PushOutcome { branch: branch.to_string(), commit: commit.to_string() })
}

fn rejected(remote: &GitRemote, branch: &str, reason: &str) -> GitError {
    GitError::PushRejected {
        branch: branch.to_string(),
        url: remote.redacted_url(),
        reason: reason.to_string(),
    }
}

/// Where `refs/heads/<branch>` points on the remote, or `None` when it does not exist
/// (`git ls-remote`). Uses a detached remote: no local clone or repository config is
/// involved, so it can run before a slot is acquired (idempotent redelivery).
pub fn remote_branch_commit(remote: &GitRemote, branch: &str) -> Result<Option<String>, GitError> {
    let query_error = |e: git2::Error| GitError::RemoteQuery {
        branch: branch.to_string(),
        url: remote.redacted_url(),
        detail: e.into(),
    };
    super::harden::isolate_from_user_config();
    let mut detached = Remote::create_detached(remote.url()).map_err(query_error)?;
    let connection =
        detached.connect_auth(Direction::Fetch, Some(remote.callbacks()), None).map_err(query_error)?;
    let wanted = format!("refs/heads/{branch}");
    let heads = connection.list().map_err(query_error)?;
    Ok(heads.iter().find(|head| head.name() == wanted).map(|head| head.oid().to_string()))
}
