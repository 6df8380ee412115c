//! The retry loop of every HTTP call the worker makes (the NecroCode services and the
//! model): exponential backoff with jitter for transient failures (`Classify`), where a
//! server's `Retry-After` replaces the backoff's delay, up to [`MAX_RETRY_AFTER`].

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::error::Classify;

/// Longest `Retry-After` honoured: a server asking for more is effectively down, and the
/// caller's own policy (the delayed task retry, the mirror's outer loop) handles that
/// better than a call hanging for minutes.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// One failed attempt, with the delay the server asked for.
pub(crate) struct AttemptError<E> {
    pub error: E,
    pub retry_after: Option<Duration>,
}

/// Runs `attempt` until it succeeds, fails permanently, or `backoff` runs out of tries;
/// `on_retry` hears each transient failure with the delay before the next try.
pub(crate) async fn retry_transient<T, E, Fut>(
    attempt: impl FnMut() -> Fut,
    backoff: ExponentialBuilder,
    on_retry: impl Fn(&E, Duration),
) -> Result<T, E>
where
    E: Classify,
    Fut: Future<Output = Result<T, AttemptError<E>>>,
{
    attempt
        .retry(backoff)
        .when(|e: &AttemptError<E>| e.error.is_transient())
        .adjust(|e: &AttemptError<E>, delay| {
            delay.map(|d| e.retry_after.map_or(d, |r| r.min(MAX_RETRY_AFTER)))
        })
        .notify(|e: &AttemptError<E>, delay| on_retry(&e.error, delay))
        .await
        .map_err(|e| e.error)
}
