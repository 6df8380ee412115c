//! The push guard: before the task branch is pushed, its added lines are scanned for the
//! known secrets in every form the masker knows and for well-known credential shapes. A
//! finding refuses the push; the task is dead-lettered as `secret_detected`, naming file
//! and line, never the secret.
//!
//! It runs inside the push step, right before the only call to `git::push_branch`, so
//! every push a run makes (first attempt, retry, redelivery) is scanned. It reads the
//! diff of the local branch against the task's base, so it costs one tree diff and a
//! pass over the added lines, capped at [`MAX_SCANNED_BYTES`].

use std::path::PathBuf;

use super::RunContext;
use crate::error::{Classify, FailureKind, TaskFailure};
use crate::git::{self, AddedLines};
use crate::secrets::{MAX_SCANNED_BYTES, ScanError};

/// Refuses the push when the branch adds a secret.
pub async fn check_before_push(
    ctx: &RunContext<'_>,
    path: PathBuf,
    branch: &str,
    base_commit: &str,
) -> Result<(), TaskFailure> {
    let (branch, base) = (branch.to_string(), base_commit.to_string());
    let added = crate::telemetry::spawn_blocking_in_span(move || {
        git::added_lines(&path, &base, &branch, MAX_SCANNED_BYTES)
    })
    .await
    .map_err(|join| TaskFailure::new(FailureKind::Push, "push", format!("git worker panicked: {join}")))?
    .map_err(|e| e.to_failure("push"))?;
    let files = match added {
        AddedLines::Files(files) => files,
        AddedLines::OverCap { .. } => return Err(ScanError::TooLarge.to_failure("push")),
    };
    let scanned: usize = files.iter().map(|f| f.lines.len()).sum();
    let findings = ctx.runner.services.secret_scan.scan(&files);
    if findings.is_empty() {
        ctx.log.record(
            "push",
            &format!("secret scan: {scanned} added line(s) in {} file(s), nothing found", files.len()),
        );
        return Ok(());
    }
    let error = ScanError::Detected(findings);
    tracing::warn!(error = %error, "push refused by the secret scan");
    ctx.log.record("push", &error.to_string());
    Err(error.to_failure("push"))
}
