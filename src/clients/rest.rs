//! The transport the three clients share: timeouts, retries with backoff, `Retry-After`.

use std::time::Duration;

use backon::ExponentialBuilder;
use reqwest::{Client, Method, RequestBuilder, Url};

use super::error::{ClientError, Service, is_transient_status};
use super::retry::{AttemptError, retry_transient};

/// Error bodies are kept up to this many bytes: enough for a JSON error object, not a
/// whole HTML error page in a log line or a DLQ header.
const MAX_ERROR_BODY_BYTES: usize = 512;

/// Timeouts and retry policy of one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSettings {
    /// Whole-request timeout (connect, send, answer).
    pub timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Retries after the first attempt, for transient failures only.
    pub retries: u32,
    /// First backoff delay; doubles each retry (with jitter) up to `max_delay`.
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for ClientSettings {
    /// 30 s per request (uploads of a few MB on a slow link), 5 s to connect (a service
    /// that takes longer to accept is down), 3 retries from 200 ms up to 10 s.
    fn default() -> Self {
        ClientSettings {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retries: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// A base URL plus a configured HTTP client, for one service.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: Client,
    base: Url,
    service: Service,
    settings: ClientSettings,
}

impl RestClient {
    /// A client for `service` at `base` (path prefixes are kept: `http://gw/registry/`).
    pub fn new(service: Service, base: Url, settings: ClientSettings) -> Result<Self, ClientError> {
        let http = crate::tls::http_client_builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!("agent-runner/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Setup { service, reason: e.to_string() })?;
        Ok(RestClient { http, base, service, settings })
    }

    /// The service this client talks to.
    pub fn service(&self) -> Service {
        self.service
    }

    /// The base URL, as configured.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `base` with `segments` appended, each percent-encoded as one path segment.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends the request `build` makes (again for each attempt) and returns the body of a
    /// 2xx answer. `call` names it in errors, e.g. `PUT /tasks/1.1/status`.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Vec<u8>, ClientError> {
        let call = format!("{method} {}", url.path());
        let attempt =
            || async { self.attempt(&call, build(self.http.request(method.clone(), url.clone()))).await };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.settings.min_delay)
            .with_max_delay(self.settings.max_delay)
            .with_max_times(self.settings.retries as usize)
            .with_jitter();
        retry_transient(attempt, backoff, |error, delay| {
            crate::metrics::record_retry(self.service.name());
            tracing::info!(%error, delay_ms = delay.as_millis() as u64, "retrying");
        })
        .await
    }

    async fn attempt(
        &self,
        call: &str,
        request: RequestBuilder,
    ) -> Result<Vec<u8>, AttemptError<ClientError>> {
        let service = self.service;
        let plain = |error| AttemptError { error, retry_after: None };
        let response = request.send().await.map_err(|e| plain(self.transport_error(call, &e)))?;
        let status = response.status().as_u16();
        let retry_after = response.headers().get(reqwest::header::RETRY_AFTER).and_then(parse_retry_after);
        let body = response.bytes().await.map_err(|e| plain(self.transport_error(call, &e)))?;
        if (200..300).contains(&status) {
            return Ok(body.to_vec());
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY_BYTES)]).into_owned();
        let error = ClientError::Status { service, call: call.to_string(), status, body: text };
        let retry_after = if is_transient_status(status) { retry_after } else { None };
        Err(AttemptError { error, retry_after })
    }

    fn transport_error(&self, call: &str, error: &reqwest::Error) -> ClientError {
        if error.is_timeout() {
            return ClientError::TimedOut {
                service: self.service,
                call: call.to_string(),
                seconds: self.settings.timeout.as_secs(),
            };
        }
        // reqwest's Display includes the URL; ours carries no credentials (config refuses them).
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        ClientError::Unreachable {
            service: self.service,
            call: call.to_string(),
            base_url: self.base.to_string(),
            reason,
        }
    }

    /// Decodes a JSON answer, naming the call on failure.
    pub fn decode<T: serde::de::DeserializeOwned>(&self, call: &str, body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| ClientError::BadAnswer {
            service: self.service,
            call: call.to_string(),
            reason: e.to_string(),
        })
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn parse_retry_after(value: &reqwest::header::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let header = |s: &str| reqwest::header::HeaderValue::from_str(s).unwrap();
        assert_eq!(parse_retry_after(&header("3")), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(&header("Wed, 21 Oct 2015 07:28:00 GMT")), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(&header("soon")), None);
    }

    #[test]
    fn urls_keep_the_base_path_and_encode_segments() {
        let base = Url::parse("http://gw:8080/registry/").unwrap();
        let client = RestClient::new(Service::TaskRegistry, base, ClientSettings::default()).unwrap();
        assert_eq!(
            client.url(&["tasks", "1.1", "status"]).as_str(),
            "http://gw:8080/registry/tasks/1.1/status"
        );
        assert_eq!(client.url(&["tasks", "a/b"]).as_str(), "http://gw:8080/registry/tasks/a%2Fb");
    }
}
