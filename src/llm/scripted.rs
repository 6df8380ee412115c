//! A scripted OpenAI-compatible server: plays back canned chat answers over real HTTP.
//!
//! The `demo` command runs the whole pipeline against it (no real model needed), and the
//! tests use it to prove the client interoperates with a server speaking the wire format.
//! It serves `POST /v1/chat/completions` and `GET /v1/models` on 127.0.0.1, records every
//! request body, when it arrived and whether a bearer token came with it (never the token
//! itself), and stops when its handle is dropped.
//!
//! A script can play a multi-turn, tool-using conversation: [`Step::ToolCalls`] answers
//! with `tool_calls` and `finish_reason: "tool_calls"` (arguments are raw text, so a test
//! can send malformed JSON), and [`Step::RateLimited`] answers 429 with `Retry-After`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Builds the answer content from the request body (e.g. keyed on the task title).
pub type Responder = Arc<dyn Fn(&Value) -> String + Send + Sync>;

/// Builds the whole next step from the request body.
pub type StepResponder = Arc<dyn Fn(&Value) -> Step + Send + Sync>;

/// One function call in a scripted tool-calling answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedCall {
    pub name: String,
    /// Sent verbatim as the `arguments` string; need not be valid JSON.
    pub arguments: String,
}

impl ScriptedCall {
    /// A call whose arguments are `arguments` serialised as JSON.
    pub fn new(name: &str, arguments: Value) -> Self {
        ScriptedCall { name: name.to_string(), arguments: arguments.to_string() }
    }

    /// A call with raw argument text, e.g. malformed JSON.
    pub fn raw(name: &str, arguments: &str) -> Self {
        ScriptedCall { name: name.to_string(), arguments: arguments.to_string() }
    }
}

/// One canned answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// HTTP 200 with a chat completion whose message content is this text.
    Reply(String),
    /// A reply stopped at the completion limit (`finish_reason: "length"`).
    CutOff(String),
    /// This HTTP status with this body (sent as JSON when it parses as JSON).
    Status(u16, String),
    /// HTTP 200 whose message calls these tools (`finish_reason: "tool_calls"`).
    ToolCalls(Vec<ScriptedCall>),
    /// HTTP 429 with `Retry-After: <seconds>` and OpenAI's rate-limit error body.
    RateLimited { retry_after_seconds: u64 },
}

impl Step {
    /// A tool-calling answer with one call.
    pub fn call(name: &str, arguments: Value) -> Self {
        Step::ToolCalls(vec![ScriptedCall::new(name, arguments)])
    }
}

/// What the server answers, in order.
#[derive(Clone)]
pub enum Script {
    /// Consumed one per chat request. Once exhausted every request gets HTTP 500: an
    /// unexpected extra call must show up as a failure, not as a silent repeat.
    Steps(Vec<Step>),
    /// Computes every answer from the request.
    Responder(Responder),
    /// Computes every step (tool calls, errors) from the request.
    StepResponder(StepResponder),
}

impl Script {
    /// A script of canned steps.
    pub fn steps(steps: impl IntoIterator<Item = Step>) -> Self {
        Script::Steps(steps.into_iter().collect())
    }

    /// A script of successful replies.
    pub fn replies(contents: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Script::Steps(contents.into_iter().map(|c| Step::Reply(c.into())).collect())
    }

    /// A script answering every request through `responder`.
    pub fn responder(responder: impl Fn(&Value) -> String + Send + Sync + 'static) -> Self {
        Script::Responder(Arc::new(responder))
    }

    /// A script computing every step through `responder`.
    pub fn step_responder(responder: impl Fn(&Value) -> Step + Send + Sync + 'static) -> Self {
        Script::StepResponder(Arc::new(responder))
    }
}

/// The server's shared state: the remaining script and what was received.
pub struct ScriptedLlm {
    steps: Mutex<VecDeque<Step>>,
    responder: Option<StepResponder>,
    requests: Mutex<Vec<Value>>,
    arrivals: Mutex<Vec<std::time::Instant>>,
    bearer_present: Mutex<Vec<bool>>,
}

/// A running scripted server; dropping it stops the server.
pub struct ScriptedLlmHandle {
    addr: SocketAddr,
    state: Arc<ScriptedLlm>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts a scripted server on an ephemeral port of 127.0.0.1.
pub async fn start(script: Script) -> std::io::Result<ScriptedLlmHandle> {
    let (steps, responder) = match script {
        Script::Steps(steps) => (steps.into(), None),
        Script::Responder(responder) => {
            let steps: StepResponder = Arc::new(move |request| Step::Reply(responder(request)));
            (VecDeque::new(), Some(steps))
        }
        Script::StepResponder(responder) => (VecDeque::new(), Some(responder)),
    };
    let state = Arc::new(ScriptedLlm {
        steps: Mutex::new(steps),
        responder,
        requests: Mutex::new(Vec::new()),
        arrivals: Mutex::new(Vec::new()),
        bearer_present: Mutex::new(Vec::new()),
    });
    let router = Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let shutdown = stop.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
            tracing::warn!(error = %e, "scripted LLM server stopped with an error");
        }
    });
    Ok(ScriptedLlmHandle { addr, state, stop, task: Some(task) })
}

impl ScriptedLlmHandle {
    /// The base URL to configure as the LLM endpoint: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every chat request body received, in order (invalid JSON is recorded as a string).
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.state.requests).clone()
    }

    /// When each chat request arrived, in order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        lock(&self.state.arrivals).clone()
    }

    /// For each chat request, whether it carried a non-empty bearer token.
    pub fn bearer_present(&self) -> Vec<bool> {
        lock(&self.state.bearer_present).clone()
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ScriptedLlmHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking responder must not take the recordings down with it.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn chat_completions(
    State(state): State<Arc<ScriptedLlm>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| !token.trim().is_empty());
    lock(&state.arrivals).push(std::time::Instant::now());
    lock(&state.bearer_present).push(bearer);
    let request = serde_json::from_slice::<Value>(&body);
    let recorded = match &request {
        Ok(value) => value.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    let count = {
        let mut requests = lock(&state.requests);
        requests.push(recorded);
        requests.len()
    };
    let Ok(request) = request else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "the request body is not JSON",
            "invalid_request_error",
        );
    };
    let step = match &state.responder {
        Some(responder) => Some(responder(&request)),
        None => lock(&state.steps).pop_front(),
    };
    match step {
        Some(Step::Reply(content)) => completion(&request, Answer::Content(content), count).into_response(),
        Some(Step::CutOff(content)) => completion(&request, Answer::CutOff(content), count).into_response(),
        Some(Step::ToolCalls(calls)) => completion(&request, Answer::Calls(calls), count).into_response(),
        Some(Step::Status(status, body)) => status_response(status, body),
        Some(Step::RateLimited { retry_after_seconds }) => rate_limited(retry_after_seconds),
        None => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("scripted LLM: the script is exhausted (request {count})"),
            "server_error",
        ),
    }
}

async fn models() -> Response {
    let body = json!({
        "object": "list",
        "data": [{"id": "scripted", "object": "model", "created": 0, "owned_by": "agent-runner"}],
    });
    axum::Json(body).into_response()
}

/// What the assistant message carries.
enum Answer {
    Content(String),
    CutOff(String),
    Calls(Vec<ScriptedCall>),
}

/// A standard `chat.completion` object, with token counts estimated at 4 characters each.
fn completion(request: &Value, answer: Answer, count: usize) -> axum::Json<Value> {
    let prompt_tokens = estimate_tokens(prompt_chars(request));
    let (message, finish_reason, chars) = match answer {
        Answer::Content(content) => {
            let chars = content.chars().count();
            (json!({"role": "assistant", "content": content}), "stop", chars)
        }
        Answer::CutOff(content) => {
            let chars = content.chars().count();
            (json!({"role": "assistant", "content": content}), "length", chars)
        }
        Answer::Calls(calls) => {
            let chars = calls.iter().map(|c| c.name.len() + c.arguments.chars().count()).sum();
            let calls: Vec<Value> = calls
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({"id": format!("call_{count}_{i}"), "type": "function",
                           "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect();
            (json!({"role": "assistant", "content": null, "tool_calls": calls}), "tool_calls", chars)
        }
    };
    let completion_tokens = estimate_tokens(chars);
    let model = request.get("model").and_then(Value::as_str).unwrap_or("scripted");
    axum::Json(json!({
        "id": format!("chatcmpl-scripted-{count}"),
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }))
}

/// Characters of all message text, whether content is a string or a list of parts, plus
/// the arguments of earlier tool calls.
fn prompt_chars(request: &Value) -> usize {
    let messages = request.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let text_len = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    let content = |m: &Value| match m.get("content") {
        Some(Value::Array(parts)) => parts.iter().map(|p| p.get("text").map_or(0, text_len)).sum(),
        Some(other) => text_len(other),
        None => 0,
    };
    let calls = |m: &Value| {
        let calls = m.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        calls.iter().map(|c| c.pointer("/function/arguments").map_or(0, text_len)).sum::<usize>()
    };
    messages.iter().map(|m| content(m) + calls(m)).sum()
}

fn estimate_tokens(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

fn status_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type =
        if serde_json::from_str::<Value>(&body).is_ok() { "application/json" } else { "text/plain" };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn rate_limited(retry_after_seconds: u64) -> Response {
    let body = json!({"error": {"message": "Rate limit reached, retry later", "type": "requests",
                                "param": null, "code": "rate_limit_exceeded"}});
    let headers = [(header::RETRY_AFTER, retry_after_seconds.to_string())];
    (StatusCode::TOO_MANY_REQUESTS, headers, axum::Json(body)).into_response()
}

fn error_response(status: StatusCode, message: &str, kind: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_characters_count_string_and_part_contents() {
        let request = json!({"messages": [
            {"role": "system", "content": "abcd"},
            {"role": "user", "content": [{"type": "text", "text": "efghij"}]},
        ]});
        assert_eq!(prompt_chars(&request), 10);
        assert_eq!(estimate_tokens(10), 3);
    }
}
