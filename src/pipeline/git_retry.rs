//! In-place retries of git operations that talk to the remote (`git_retry_count`): a
//! clone, fetch or push that failed for a reason a moment may fix (a network error, a 5xx
//! or 408/429 answer) is tried again with exponential backoff, inside the step, before the
//! failure goes up to the task-level delayed retry, which costs a redelivery and a fresh
//! slot. Authentication failures and rejected pushes are never retried here: they would
//! fail the same way (see [`GitError::is_remote_transient`]).

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::error::{Classify, FailureKind, TaskFailure};
use crate::git::GitError;

/// The first wait: long enough for a load balancer to route around a restarting backend,
/// short enough that a blip costs the task under a second.
const GIT_RETRY_MIN_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between two tries: beyond this, an outage is better left to the
/// task-level retry, which frees the worker meanwhile.
const GIT_RETRY_MAX_DELAY: Duration = Duration::from_secs(8);

/// Runs the blocking git `work` on the blocking pool, trying again up to `retries` times
/// while it fails with a transient remote error; fails the step as `step` (the
/// workspace-preparation kind for a panic, as `steps::blocking` does).
pub(crate) async fn with_git_retries<T: Send + 'static>(
    step: &str,
    retries: u32,
    log: impl Fn(&str),
    work: impl Fn() -> Result<T, GitError> + Send + Sync + 'static,
) -> Result<T, TaskFailure> {
    match retry_git(retries, log, work).await {
        Ok(outcome) => outcome.map_err(|error| error.to_failure(step)),
        Err(join) => Err(TaskFailure::new(
            FailureKind::WorkspacePreparation,
            step,
            format!("git worker panicked: {join}"),
        )),
    }
}

/// [`with_git_retries`] keeping the last error as it is, for a caller that reacts to its
/// variant (the push, which adopts the winner of a rejected push). `log` hears each retry
/// with the redacted error, never a credential; `Err` is a panic in `work`.
pub(crate) async fn retry_git<T: Send + 'static>(
    retries: u32,
    log: impl Fn(&str),
    work: impl Fn() -> Result<T, GitError> + Send + Sync + 'static,
) -> Result<Result<T, GitError>, tokio::task::JoinError> {
    let work = Arc::new(work);
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(GIT_RETRY_MIN_DELAY)
        .with_max_delay(GIT_RETRY_MAX_DELAY)
        .with_max_times(retries as usize)
        .build();
    let mut tries = 1u32;
    loop {
        let attempt = Arc::clone(&work);
        let outcome = crate::telemetry::spawn_blocking_in_span(move || attempt()).await?;
        let Err(error) = outcome else { return Ok(outcome) };
        let delay = if error.is_remote_transient() { delays.next() } else { None };
        let Some(delay) = delay else { return Ok(Err(error)) };
        log(&format!("try {tries} of {} failed, again in {} ms: {error}", retries + 1, delay.as_millis()));
        tokio::time::sleep(delay).await;
        tries += 1;
    }
}
