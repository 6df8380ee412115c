//! The upload step: diff, execution log, test results, the engine's transcript and the
//! run summary go to the artifact store, each announced with an `ArtifactUploaded` event.
//! Runs after success and after failure alike, so a failed task leaves its evidence
//! behind: before a commit the diff is the workspace's own (partial work included).

use super::steps::RunState;
use super::{RunContext, RunResult};
use crate::artifacts::{ArtifactKey, ArtifactKind, StoredArtifact};
use crate::error::{Classify, FailureKind, TaskFailure};
use crate::events::EventType;

/// Uploads every artifact and records them in `result`. The summary goes last, so it
/// lists the others.
pub async fn upload_all(
    ctx: &RunContext<'_>,
    state: &RunState,
    result: &mut RunResult,
) -> Result<(), TaskFailure> {
    let masker = &ctx.runner.services.masker;
    let diff = diff_text(state, ctx.runner.settings.max_file_bytes).await;
    // Credential shapes too: a refused push names where they are, the artifact must not show them.
    let diff = crate::secrets::mask_credential_shapes(&masker.mask(&diff));
    upload(ctx, ArtifactKind::Diff, diff.into_bytes(), result).await?;

    let tests = match &state.test_report {
        Some(report) => serde_json::to_string_pretty(report),
        None if state.resumed => {
            Ok(String::from_utf8_lossy(&super::resume::previous_test_report(ctx).await).into_owned())
        }
        None => serde_json::to_string_pretty(
            &serde_json::json!({ "success": false, "steps": [], "not_run": true }),
        ),
    }
    .map_err(|e| TaskFailure::new(FailureKind::ArtifactUpload, "upload", e.to_string()))?;
    upload(ctx, ArtifactKind::Test, masker.mask(&tests).into_bytes(), result).await?;

    if let Some(failure) = &result.error {
        ctx.log.record("result", &format!("FAILED: {failure}"));
    }
    upload(ctx, ArtifactKind::Log, ctx.log.contents().into_bytes(), result).await?;

    if let Some(session) = state.engine.as_ref().filter(|s| !s.transcript().is_empty()) {
        let transcript = masker.mask(&session.transcript().to_json());
        upload(ctx, ArtifactKind::Transcript, transcript.into_bytes(), result).await?;
    }

    let summary = serde_json::to_string_pretty(&*result)
        .map_err(|e| TaskFailure::new(FailureKind::ArtifactUpload, "upload", e.to_string()))?;
    upload(ctx, ArtifactKind::Summary, masker.mask(&summary).into_bytes(), result).await
}

async fn upload(
    ctx: &RunContext<'_>,
    kind: ArtifactKind,
    content: Vec<u8>,
    result: &mut RunResult,
) -> Result<(), TaskFailure> {
    let key = ArtifactKey { spec_name: ctx.task.spec_name.clone(), task_id: ctx.task.task_id.clone(), kind };
    let uri =
        ctx.runner.services.artifact_store.put(&key, &content).await.map_err(|e| e.to_failure("upload"))?;
    let artifact = StoredArtifact { kind, uri, size_bytes: content.len() as u64 };
    ctx.emit(EventType::ArtifactUploaded, kind.as_str(), serde_json::to_value(&artifact).unwrap_or_default())
        .await;
    result.artifacts.push(artifact);
    Ok(())
}

/// The task's changes against its base: the committed diff once committed, else
/// whatever the workspace holds (so a failed task's partial work is still visible).
async fn diff_text(state: &RunState, max_file_bytes: u64) -> String {
    let (Some(path), Some(workspace)) = (state.workspace_path(), state.workspace.as_ref()) else {
        return String::new();
    };
    let base = workspace.base_commit.clone();
    let committed = state.commit.is_some();
    let diff = crate::telemetry::spawn_blocking_in_span(move || {
        if committed {
            crate::git::diff_since(&path, &base, max_file_bytes).map_err(|e| e.to_string())
        } else {
            workspace_diff(&path, &base, max_file_bytes).map_err(|e| e.message().to_string())
        }
    })
    .await;
    match diff {
        Ok(Ok(text)) => text,
        Ok(Err(error)) => format!("(diff unavailable: {error})\n"),
        Err(join) => format!("(diff unavailable: {join})\n"),
    }
}

/// The uncommitted workspace against `base`, new (untracked, not ignored) files included;
/// files over `max_file_bytes` show as binary (never loaded), FIFOs and sockets not at all
/// (libgit2's tree walk skips them).
fn workspace_diff(path: &std::path::Path, base: &str, max_file_bytes: u64) -> Result<String, git2::Error> {
    let repo = git2::Repository::open(path)?;
    crate::metrics::record_worktree_scan();
    let tree = repo.find_commit(git2::Oid::from_str(base)?)?.tree()?;
    let mut options = crate::git::patch_options(max_file_bytes);
    options.include_untracked(true).recurse_untracked_dirs(true).show_untracked_content(true);
    let diff = repo.diff_tree_to_workdir_with_index(Some(&tree), Some(&mut options))?;
    crate::git::patch_text(&diff)
}
