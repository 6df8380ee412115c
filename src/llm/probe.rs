//! The HTTP transport under async-openai, noting what its error type loses.
//!
//! async-openai turns a non-2xx response into an error that keeps neither the
//! `Retry-After` header nor, when the body is not OpenAI's error JSON, the status. The
//! probe wraps the plain reqwest transport and records both for the last response, so the
//! client can classify the failure and honour the server's requested wait.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService};

/// The status and `Retry-After` of the last HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastResponse {
    pub status: u16,
    pub retry_after: Option<Duration>,
}

/// The reader's side of a probe: what the last response was.
#[derive(Clone, Default)]
pub(crate) struct Seen(Arc<Mutex<Option<LastResponse>>>);

impl Seen {
    pub fn clear(&self) {
        self.set(None);
    }

    pub fn take(&self) -> Option<LastResponse> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
    }

    fn set(&self, value: Option<LastResponse>) {
        *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = value;
    }
}

/// The plain transport (no retry layer), noting each response.
#[derive(Clone)]
pub(crate) struct ResponseProbe {
    inner: ReqwestService,
    seen: Seen,
}

impl ResponseProbe {
    /// A probe sending through `http`, and the handle to read what it saw. One probe per
    /// chat call, so concurrent calls never read each other's responses.
    pub fn new(http: reqwest::Client) -> (Self, Seen) {
        let seen = Seen::default();
        (ResponseProbe { inner: ReqwestService::new(http), seen: seen.clone() }, seen)
    }
}

type ProbeFuture = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

impl tower::Service<HttpRequestFactory> for ResponseProbe {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = ProbeFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequestFactory) -> Self::Future {
        let sent = self.inner.call(request);
        let seen = self.seen.clone();
        Box::pin(async move {
            let result = sent.await;
            if let Ok(response) = &result {
                seen.set(Some(LastResponse {
                    status: response.status().as_u16(),
                    retry_after: parse_retry_after(response.headers()),
                }));
            }
            result
        })
    }
}

/// OpenAI's finer-grained companion of `Retry-After`, in milliseconds.
const RETRY_AFTER_MS: &str = "retry-after-ms";
/// Largest `Retry-After` converted, in seconds: the client caps the wait far below this
/// anyway; the bound only keeps the float-to-duration conversion from overflowing.
const MAX_PARSED_RETRY_AFTER_SECONDS: f64 = 86_400.0;

/// `retry-after-ms`, else `Retry-After` in (possibly fractional) seconds; the HTTP-date
/// form is rare for APIs and falls back to backoff.
fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text(RETRY_AFTER_MS).and_then(|v| v.parse::<u64>().ok()) {
        return Some(Duration::from_millis(ms));
    }
    let seconds = text(reqwest::header::RETRY_AFTER.as_str())?.parse::<f64>().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(MAX_PARSED_RETRY_AFTER_SECONDS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_is_read() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(parse_retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(reqwest::header::RETRY_AFTER, "1.5".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_millis(1500)));
        let date = "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap();
        headers.insert(reqwest::header::RETRY_AFTER, date);
        assert_eq!(parse_retry_after(&headers), None);
        headers.insert(RETRY_AFTER_MS, "250".parse().unwrap());
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_millis(250)));
    }
}
