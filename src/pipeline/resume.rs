//! Idempotent redelivery: what an earlier attempt of the same task already did.
//!
//! RabbitMQ delivers at least once. A worker killed after its push but before its ack,
//! a reconnect that made an ack stale, a replay from the dead-letter queue: each brings
//! the task back although its work may already be on the remote. Before calling the
//! model, the run looks at the task branch as the workspace fetch saw it:
//!
//! - absent: nothing was pushed, run every step;
//! - carrying a commit with this task's `Task-Id` trailer: the work is done; the slot is
//!   moved to that commit and only the missing steps run (artifacts, summary, the
//!   terminal event, whose id is the same as the first attempt's), without the model;
//! - holding anything else: someone else's work; the task fails without touching it.
//!
//! The same check settles a push race: when two attempts of one task run at once (a
//! stale delivery after a reconnect), the second push is rejected, sees the first one's
//! commit, and adopts it instead of failing.

use std::path::{Path, PathBuf};

use super::RunContext;
use crate::artifacts::{ArtifactKey, ArtifactKind};
use crate::error::{Classify, FailureKind, TaskFailure};
use crate::git::{self, BranchOnRemote, CommitInfo, GitRemote};

/// The work an earlier attempt pushed for this task, if any (see the module docs).
/// On `Some`, the slot's task branch and tree are at the pushed commit.
pub async fn previous_push(
    ctx: &RunContext<'_>,
    path: &Path,
    branch: &str,
    base_commit: &str,
) -> Result<Option<CommitInfo>, TaskFailure> {
    match adopt_if_ours(ctx, path.to_path_buf(), branch, base_commit).await? {
        (BranchOnRemote::Other { commit }, _) => Err(TaskFailure::new(
            FailureKind::Push,
            "workspace",
            format!(
                "remote branch {branch} already holds commit {commit}, which is not this task's work \
                 (no 'Task-Id: {}' trailer); refusing to overwrite it",
                ctx.task.task_id
            ),
        )),
        (_, adopted) => Ok(adopted),
    }
}

/// After a push was rejected: fetches the branch again and adopts it when the commit
/// that won carries this task's trailer. `None` means it is someone else's (or the
/// fetch failed): the rejection stands.
pub async fn adopt_after_rejection(
    ctx: &RunContext<'_>,
    path: &Path,
    remote: &GitRemote,
    branch: &str,
    base_commit: &str,
) -> Option<CommitInfo> {
    let (fetch_path, fetch_remote, fetch_branch) = (path.to_path_buf(), remote.clone(), branch.to_string());
    let fetched = crate::telemetry::spawn_blocking_in_span(move || {
        git::fetch_branch(&fetch_path, &fetch_remote, &fetch_branch)
    })
    .await;
    if !matches!(fetched, Ok(Ok(()))) {
        return None;
    }
    match adopt_if_ours(ctx, path.to_path_buf(), branch, base_commit).await {
        Ok((_, adopted)) => adopted,
        Err(_) => None,
    }
}

async fn adopt_if_ours(
    ctx: &RunContext<'_>,
    path: PathBuf,
    branch: &str,
    base_commit: &str,
) -> Result<(BranchOnRemote, Option<CommitInfo>), TaskFailure> {
    let (branch, base, task_id) = (branch.to_string(), base_commit.to_string(), ctx.task.task_id.clone());
    let found = crate::telemetry::spawn_blocking_in_span(move || {
        let state = git::branch_on_remote(&path, &branch, &base, &task_id)?;
        let BranchOnRemote::ThisTask { commit } = &state else { return Ok((state, None)) };
        git::adopt_commit(&path, commit)?;
        let files_changed = git::changed_files(&path, &base)?;
        let info = CommitInfo { id: commit.clone(), files_changed };
        Ok((state, Some(info)))
    })
    .await;
    let (state, adopted) = match found {
        Ok(outcome) => outcome.map_err(|e: git::GitError| e.to_failure("workspace"))?,
        Err(join) => {
            return Err(TaskFailure::new(
                FailureKind::WorkspacePreparation,
                "workspace",
                format!("git worker panicked: {join}"),
            ));
        }
    };
    if let Some(info) = &adopted {
        ctx.log.record(
            "resume",
            &format!(
                "the remote branch already carries this task's commit {}; not implementing again",
                info.id
            ),
        );
    }
    Ok((state, adopted))
}

/// The test report for a run that resumed after the push: the one an earlier attempt
/// stored, or (when it never got that far) a note that the tests passed before that
/// attempt pushed, since a push only ever follows passing tests.
pub async fn previous_test_report(ctx: &RunContext<'_>) -> Vec<u8> {
    let key = ArtifactKey {
        spec_name: ctx.task.spec_name.clone(),
        task_id: ctx.task.task_id.clone(),
        kind: ArtifactKind::Test,
    };
    if let Ok(Some(stored)) = ctx.runner.services.artifact_store.find(&key).await {
        return stored;
    }
    let note = serde_json::json!({
        "success": true,
        "steps": [],
        "resumed": true,
        "note": "an earlier attempt pushed this commit after its tests passed; its report was not stored",
    });
    serde_json::to_vec_pretty(&note).unwrap_or_default()
}
