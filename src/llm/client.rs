//! The chat call to an OpenAI-compatible endpoint, with our own retry policy.
//!
//! async-openai's default HTTP executor retries 429/5xx/connect errors by itself (three
//! times, honouring any `Retry-After` however long). We install a plain transport instead
//! (the `middleware` feature's `with_http_service`) so that `retry_count` is the only retry
//! budget, timeouts are retried too, and the wait a server may impose is capped. The
//! [`ResponseProbe`] around that transport keeps the status and `Retry-After` that
//! async-openai's error type drops.
//!
//! Every request passes through [`LlmClient::complete`], which masks every string in it
//! (task text, playbook commands, tool results, test output, the model's own earlier
//! turns) before it is sent: the model is a third party, and nothing can bypass this.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::{OPENAI_API_BASE, OpenAIConfig};
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
    CreateChatCompletionResponse, FinishReason,
};
use backon::ExponentialBuilder;
use secrecy::{ExposeSecret, SecretString};

use super::context_window::{ContextKnowledge, ContextLimits, Probe};
use super::overflow::Overflow;
use super::probe::{LastResponse, ResponseProbe};
use super::quirks::Quirks;
use super::{ImplementError, truncate_chars};
use crate::clients::retry::{AttemptError, retry_transient};
use crate::secrets::Masker;

/// First retry delay: most 5xx from a local model server are momentary (model loading).
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Longest delay between two attempts, so a few retries stay within minutes.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// An unreachable host should fail fast and be retried, not eat the whole LLM timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Server error bodies can be whole HTML pages; this keeps messages readable.
const MAX_ERROR_TEXT: usize = 500;

/// Where and how to reach the model.
#[derive(Clone)]
pub struct LlmSettings {
    /// Base URL including the API prefix, e.g. `http://127.0.0.1:8080/v1`; `None` means OpenAI.
    pub endpoint: Option<String>,
    /// The model name sent with every request.
    pub model: String,
    /// Bearer key; `None` sends an empty one, which local servers (Ollama, llama.cpp) accept.
    pub api_key: Option<SecretString>,
    /// Whole-request timeout for one attempt.
    pub timeout: Duration,
    /// Extra attempts after the first for transient failures.
    pub retry_count: u32,
    /// The model's context window (`llm.context_tokens`); `None`: asked from the server.
    pub context_tokens: Option<u32>,
    /// Sampling temperature sent with every request (`llm.temperature`).
    pub temperature: f32,
    /// Cap of completion tokens per request (`llm.max_tokens`); `None`:
    /// [`super::default_completion_cap`] of the window.
    pub max_tokens: Option<u32>,
}

impl std::fmt::Debug for LlmSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmSettings")
            .field("endpoint", &self.endpoint.as_deref().map(redact_endpoint))
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("timeout", &self.timeout)
            .field("retry_count", &self.retry_count)
            .field("context_tokens", &self.context_tokens)
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .finish()
    }
}

/// What the model answered, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatAnswer {
    pub content: String,
    /// From the server's `usage`; 0 when the server reports none.
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// The model the server says answered (falls back to the requested one).
    pub model: String,
    /// The answer stopped at the token limit (`finish_reason: length`), so it may be cut off.
    pub truncated: bool,
}

/// A configured chat client. Build it once and share it: it holds the connection pool and
/// what was learnt about the model (its window, the fields it refuses).
pub struct LlmClient {
    http: reqwest::Client,
    config: OpenAIConfig,
    /// The endpoint as shown in errors: no user info, no query.
    shown_endpoint: String,
    model: String,
    timeout: Duration,
    retry_count: u32,
    /// Applied to every request: its own API key, and the worker's secrets ([`LlmClient::masking`]).
    masker: Masker,
    /// The configured base URL, for the context window discovery; `None` is OpenAI's.
    base: Option<String>,
    /// Sent as a bearer token by the discovery too; never shown.
    api_key: Option<SecretString>,
    temperature: f32,
    max_tokens: Option<u32>,
    /// The window, discovered once and corrected by overflow answers, for every task.
    context: ContextKnowledge,
    /// Sampling fields the model refused, for every task.
    quirks: Quirks,
}

// By hand: the config holds the raw endpoint, which may carry user info or a token query.
impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("endpoint", &self.shown_endpoint)
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("retry_count", &self.retry_count)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    /// Validates the settings and builds the HTTP client.
    pub fn new(settings: &LlmSettings) -> Result<Self, ImplementError> {
        let base = settings.endpoint.as_deref().unwrap_or(OPENAI_API_BASE).trim_end_matches('/');
        let url = reqwest::Url::parse(base)
            .map_err(|_| ImplementError::Settings("the LLM endpoint is not a valid URL".into()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ImplementError::Settings(format!(
                "the LLM endpoint scheme must be http or https, not {}",
                url.scheme()
            )));
        }
        let key = settings.api_key.as_ref().map(|k| k.expose_secret()).unwrap_or("");
        // async-openai builds the Authorization header with `unwrap()`: a key with a
        // newline (a secret file without trimming) would panic inside it.
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ImplementError::Settings(
                "the LLM api key contains characters not allowed in an HTTP header".into(),
            ));
        }
        let http = crate::tls::http_client_builder()
            .timeout(settings.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(settings.timeout))
            .build()
            .map_err(|e| ImplementError::Settings(format!("cannot build the HTTP client: {e}")))?;
        // Set every field explicitly: the defaults read OPENAI_* variables from the
        // environment, which must not silently redirect or re-key the worker.
        let config =
            OpenAIConfig::default().with_api_base(base).with_api_key(key).with_org_id("").with_project_id("");
        Ok(LlmClient {
            http,
            config,
            shown_endpoint: redact_endpoint(base),
            model: settings.model.clone(),
            timeout: settings.timeout,
            retry_count: settings.retry_count,
            masker: Masker::new([settings.api_key.as_ref()]),
            base: settings.endpoint.as_ref().map(|_| base.to_string()),
            api_key: settings.api_key.clone(),
            temperature: settings.temperature,
            max_tokens: settings.max_tokens,
            context: ContextKnowledge::new(settings.context_tokens),
            quirks: Quirks::default(),
        })
    }

    /// Also masks `masker`'s secrets in every request.
    pub fn masking(mut self, masker: &Masker) -> Self {
        self.masker = self.masker.union(masker);
        self
    }

    /// `text` as this client would send it: callers that record what was sent (the
    /// transcript) mask with this, so the record and the request are the same text.
    pub fn mask(&self, text: &str) -> String {
        self.masker.mask(text)
    }

    /// The request with every string in it masked. Masking is idempotent, so text the
    /// caller masked already goes out unchanged.
    fn masked(
        &self,
        request: CreateChatCompletionRequest,
    ) -> Result<CreateChatCompletionRequest, ImplementError> {
        if self.masker.is_empty() {
            return Ok(request);
        }
        let unusable =
            |e: serde_json::Error| ImplementError::Settings(format!("cannot mask the chat request: {e}"));
        let mut value = serde_json::to_value(&request).map_err(unusable)?;
        self.masker.mask_json(&mut value);
        serde_json::from_value(value).map_err(unusable)
    }

    /// Sends one chat completion request, retrying transient failures.
    pub async fn chat(
        &self,
        messages: Vec<ChatCompletionRequestMessage>,
    ) -> Result<ChatAnswer, ImplementError> {
        let cap = self.completion_cap(self.context_limits().await.window);
        let mut args = CreateChatCompletionRequestArgs::default();
        args.model(self.model.clone()).messages(messages);
        // `max_tokens`: the spelling llama.cpp and Ollama read (see `quirks` for OpenAI's).
        #[allow(deprecated)]
        args.max_tokens(cap);
        let request = args
            .build()
            .map_err(|e| ImplementError::Settings(format!("cannot build the chat request: {e}")))?;
        let response = self.complete(request).await?;

        let usage = response.usage.unwrap_or_default();
        let model = if response.model.is_empty() { self.model.clone() } else { response.model };
        let choice = response
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| ImplementError::Answer("the answer has no choices".into()))?;
        let truncated = matches!(choice.finish_reason, Some(FinishReason::Length));
        let content = match (choice.message.content, choice.message.refusal) {
            (Some(content), _) if !content.trim().is_empty() => content,
            (_, Some(refusal)) => {
                return Err(ImplementError::Answer(format!(
                    "the model refused: {}",
                    truncate_chars(&refusal, MAX_ERROR_TEXT)
                )));
            }
            _ => return Err(ImplementError::Answer("the answer has no content".into())),
        };
        Ok(ChatAnswer {
            content,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            model,
            truncated,
        })
    }

    /// The model name sent with every request.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The window and estimate correction to fit the next request to; the first call
    /// asks the server (see [`super::context_window`]).
    pub async fn context_limits(&self) -> ContextLimits {
        let key = self.api_key.as_ref().map(|k| k.expose_secret()).unwrap_or("");
        let probe = Probe { http: &self.http, base: self.base.as_deref(), model: &self.model, api_key: key };
        self.context.limits(&probe).await
    }

    /// The sampling temperature sent with every request.
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// The most completion tokens a request in `window` asks for.
    pub fn completion_cap(&self, window: u32) -> u32 {
        self.max_tokens.unwrap_or_else(|| super::default_completion_cap(window))
    }

    /// Learns from an overflow answer to a request estimated at `estimated_prompt`
    /// tokens under `sent`, for every later request of this worker.
    pub(crate) fn learn_overflow(&self, estimated_prompt: u32, sent: ContextLimits, overflow: Overflow) {
        self.context.learn(estimated_prompt, sent, overflow);
    }

    /// Sends one prepared request (with the configured temperature unless it sets one),
    /// retrying transient failures: 5xx, timeouts and connection errors with backoff, 429
    /// after the server's `Retry-After` (capped). A 400 refusing a sampling field is
    /// answered by sending the request again without it (see [`super::quirks`]).
    pub(crate) async fn complete(
        &self,
        request: CreateChatCompletionRequest,
    ) -> Result<CreateChatCompletionResponse, ImplementError> {
        let mut request = self.masked(request)?;
        request.temperature = request.temperature.or(Some(self.temperature));
        loop {
            self.quirks.apply(&mut request);
            match self.send(&request).await {
                // Ends: each field is learned once.
                Err(ImplementError::Request { status: Some(400), message, .. })
                    if self.quirks.learn(&message) => {}
                other => return other,
            }
        }
    }

    async fn send(
        &self,
        request: &CreateChatCompletionRequest,
    ) -> Result<CreateChatCompletionResponse, ImplementError> {
        let (probe, seen) = ResponseProbe::new(self.http.clone());
        let client = Client::build(self.http.clone(), self.config.clone()).with_http_service(probe);

        let backoff = ExponentialBuilder::default()
            .with_min_delay(INITIAL_BACKOFF)
            .with_max_delay(MAX_BACKOFF)
            .with_max_times(self.retry_count as usize)
            .with_jitter();
        let attempt = || async {
            seen.clear();
            client.chat().create(request.clone()).await.map_err(|e| {
                let last = seen.take();
                AttemptError { error: self.classify(e, last), retry_after: last.and_then(|s| s.retry_after) }
            })
        };
        retry_transient(attempt, backoff, |error, delay| {
            let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(%error, retry_in_ms, "LLM request failed, retrying");
        })
        .await
    }

    /// Turns async-openai's error into ours, deciding here whether it is transient.
    fn classify(&self, error: OpenAIError, seen: Option<LastResponse>) -> ImplementError {
        let (status, transient, message) = match error {
            OpenAIError::Reqwest(e) => {
                let status = e.status().map(|s| s.as_u16());
                // Without a status the request never completed: connect, timeout, reset.
                let transient = !e.is_builder() && status.is_none_or(transient_status);
                (status, transient, self.describe_reqwest(e))
            }
            OpenAIError::ApiError(api) => {
                let status = api.status_code.as_u16();
                // OpenAI answers 429 for an exhausted quota too; waiting does not refill it.
                let quota = api.api_error.r#type.as_deref() == Some("insufficient_quota");
                (Some(status), transient_status(status) && !quota, api.api_error.to_string())
            }
            OpenAIError::JSONDeserialize(e, body) => match seen {
                // An error response whose body is not OpenAI's error JSON (a proxy page,
                // llama.cpp's numeric `code`): the status still tells what happened.
                Some(s) if !(200..300).contains(&s.status) => {
                    (Some(s.status), transient_status(s.status), format!("error body: {body}"))
                }
                _ => (seen.map(|s| s.status), false, format!("the answer is not a chat completion: {e}")),
            },
            other => (None, false, other.to_string()),
        };
        let message = truncate_chars(message.trim(), MAX_ERROR_TEXT);
        if let Some(overflow) = super::overflow::recognise(status, &message) {
            return ImplementError::ContextOverflow {
                endpoint: self.shown_endpoint.clone(),
                message,
                window: overflow.window,
                prompt_tokens: overflow.prompt_tokens,
            };
        }
        ImplementError::Request { endpoint: self.shown_endpoint.clone(), status, message, transient }
    }

    fn describe_reqwest(&self, error: reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("no answer within {:?}", self.timeout);
        }
        // reqwest's own text is generic ("error sending request"); the cause is in the chain.
        let error = error.without_url();
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// Statuses after which the same request may succeed later.
fn transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500..=599)
}

/// The endpoint without user info, query or fragment, for errors and Debug output.
fn redact_endpoint(endpoint: &str) -> String {
    match reqwest::Url::parse(endpoint) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "(invalid endpoint)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str, key: Option<&str>) -> LlmSettings {
        LlmSettings {
            endpoint: Some(endpoint.to_string()),
            model: "m".into(),
            api_key: key.map(|k| SecretString::from(k.to_string())),
            timeout: Duration::from_secs(5),
            retry_count: 0,
            context_tokens: None,
            temperature: 0.2,
            max_tokens: None,
        }
    }

    #[test]
    fn debug_hides_the_key_and_endpoint_credentials() {
        let s = settings("http://user:pw@127.0.0.1:9/v1?token=abc", Some("sk-very-secret"));
        let shown = format!("{s:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(!shown.contains("pw"), "{shown}");
        assert!(!shown.contains("abc"), "{shown}");
        assert!(shown.contains("http://127.0.0.1:9/v1"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        let client = format!("{:?}", LlmClient::new(&s).unwrap());
        assert!(!client.contains("sk-very-secret"), "{client}");
        assert!(!client.contains("pw"), "{client}");
    }

    #[test]
    fn a_key_with_a_newline_is_refused_without_showing_it() {
        let err = LlmClient::new(&settings("http://127.0.0.1:9/v1", Some("sk-abc\n"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "LLM settings are invalid: the LLM api key contains characters not allowed in an HTTP header"
        );
    }

    #[test]
    fn endpoint_must_be_http() {
        let err = LlmClient::new(&settings("ftp://127.0.0.1/v1", None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "LLM settings are invalid: the LLM endpoint scheme must be http or https, not ftp"
        );
    }

    #[test]
    fn transient_statuses() {
        for status in [408, 425, 429, 500, 502, 503, 599] {
            assert!(transient_status(status), "{status}");
        }
        for status in [400, 401, 403, 404, 409, 422] {
            assert!(!transient_status(status), "{status}");
        }
    }
}
