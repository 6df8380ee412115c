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

/// What a task branch holds on the remote, as the slot's last fetch saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BranchOnRemote {
    /// No such branch: nothing was pushed yet.
    Absent,
    /// The branch carries a commit with this task's `Task-Id` trailer: an earlier attempt
    /// pushed this task's work. `commit` is the branch tip.
    ThisTask { commit: String },
    /// The branch exists but none of its commits since the base is this task's: someone
    /// else's work, which a push must never replace.
    Other { commit: String },
}

/// Commits walked back from a branch tip looking for the task's trailer. A task branch
/// holds one commit per task (plus any a human added on top); a hundred is generous.
const MAX_TRAILER_WALK: usize = 100;

/// Reads `refs/remotes/origin/<branch>` (left by the workspace fetch or
/// [`fetch_branch`]) and looks for a commit since `base_commit` whose message carries
/// the trailer `Task-Id: <task_id>`.
pub fn branch_on_remote(
    path: &Path,
    branch: &str,
    base_commit: &str,
    task_id: &str,
) -> Result<BranchOnRemote, GitError> {
    let repo = open(path)?;
    let tracking = format!("refs/remotes/origin/{branch}");
    let read_error = |e: git2::Error| GitError::Checkout { what: tracking.clone(), detail: e.into() };
    let tip = match repo.find_reference(&tracking) {
        Ok(reference) => reference.peel_to_commit().map_err(read_error)?.id(),
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(BranchOnRemote::Absent),
        Err(e) => return Err(read_error(e)),
    };
    let trailer = format!("Task-Id: {task_id}");
    let mut walk = repo.revwalk().map_err(read_error)?;
    walk.push(tip).map_err(read_error)?;
    if let Ok(base) = git2::Oid::from_str(base_commit) {
        // A base the branch does not descend from cannot be hidden; the walk stays bounded.
        let _ = walk.hide(base);
    }
    for oid in walk.take(MAX_TRAILER_WALK) {
        let commit = repo.find_commit(oid.map_err(read_error)?).map_err(read_error)?;
        let message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
        if message.lines().any(|line| line.trim_end() == trailer) {
            return Ok(BranchOnRemote::ThisTask { commit: tip.to_string() });
        }
    }
    Ok(BranchOnRemote::Other { commit: tip.to_string() })
}

/// Fetches the remote's `refs/heads/<branch>` into `refs/remotes/origin/<branch>`; a
/// branch that does not exist (any more) removes the tracking ref.
pub fn fetch_branch(path: &Path, remote: &GitRemote, branch: &str) -> Result<(), GitError> {
    let repo = open(path)?;
    let fetch_error = |e: git2::Error| GitError::Fetch { url: remote.redacted_url(), detail: e.into() };
    let tracking = format!("refs/remotes/origin/{branch}");
    match remote_branch_commit(remote, branch)? {
        None => {
            if let Ok(mut stale) = repo.find_reference(&tracking) {
                stale.delete().map_err(fetch_error)?;
            }
            Ok(())
        }
        Some(_) => {
            let mut origin = pin_origin(&repo, remote).map_err(fetch_error)?;
            let mut options = git2::FetchOptions::new();
            options.remote_callbacks(remote.callbacks()).download_tags(git2::AutotagOption::None);
            let refspec = format!("+refs/heads/{branch}:{tracking}");
            origin.fetch(&[refspec], Some(&mut options), None).map_err(fetch_error)
        }
    }
}

/// What `branch` holds on the remote, asked without a workspace: the branch's recent
/// history is fetched into a scratch repository and walked for this task's trailer (the
/// worker checking what a Kubernetes task pod says it pushed).
pub fn task_branch_on_remote(
    remote: &GitRemote,
    branch: &str,
    task_id: &str,
) -> Result<BranchOnRemote, GitError> {
    let scratch_error = |e: std::io::Error| GitError::RemoteQuery {
        branch: branch.to_string(),
        url: remote.redacted_url(),
        detail: git2::Error::from_str(&format!("no scratch repository: {e}")).into(),
    };
    let scratch = tempfile::tempdir().map_err(scratch_error)?;
    let fetch_error = |e: git2::Error| GitError::Fetch { url: remote.redacted_url(), detail: e.into() };
    let repo = git2::Repository::init_bare(scratch.path()).map_err(fetch_error)?;
    if remote_branch_commit(remote, branch)?.is_none() {
        return Ok(BranchOnRemote::Absent);
    }
    let mut origin = pin_origin(&repo, remote).map_err(fetch_error)?;
    let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
    let mut fetch = |depth: Option<i32>| {
        let mut options = git2::FetchOptions::new();
        options.remote_callbacks(remote.callbacks()).download_tags(git2::AutotagOption::None);
        if let Some(depth) = depth {
            options.depth(depth);
        }
        origin.fetch(std::slice::from_ref(&refspec), Some(&mut options), None)
    };
    // Deep enough for the trailer walk, never the whole history of a large repository;
    // libgit2's local transport (`file://`) fetches only whole histories.
    let depth = i32::try_from(MAX_TRAILER_WALK).unwrap_or(i32::MAX);
    match fetch(Some(depth)) {
        Err(e) if e.message().contains("shallow") => fetch(None).map_err(fetch_error)?,
        other => other.map_err(fetch_error)?,
    }
    branch_on_remote(scratch.path(), branch, "", task_id)
}

/// Moves the checked-out task branch, index and tree to `commit` (already fetched): the
/// slot then holds exactly what an earlier attempt pushed, for the diff artifact.
pub fn adopt_commit(path: &Path, commit: &str) -> Result<(), GitError> {
    let repo = open(path)?;
    let checkout_error = |e: git2::Error| GitError::Checkout { what: commit.to_string(), detail: e.into() };
    let oid = git2::Oid::from_str(commit).map_err(checkout_error)?;
    let target = repo.find_commit(oid).map_err(checkout_error)?;
    let mut checkout = git2::build::CheckoutBuilder::new();
    checkout.force().remove_untracked(true);
    repo.reset(target.as_object(), git2::ResetType::Hard, Some(&mut checkout)).map_err(checkout_error)
}
