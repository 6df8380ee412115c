//! The model's context window end to end (issue 17): conversations fitted into a small
//! window, an overflow answer retried with a smaller request, the window discovered from
//! stand-in llama.cpp, Ollama and vLLM servers, and temperature and `max_tokens` on the
//! wire, all over real HTTP against real workspaces and the real playbook executor.

mod engine_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_runner::llm::scripted::{self, Script, ScriptedLlmHandle, Step};
use agent_runner::llm::{
    AgentSession, EngineSettings, ImplementError, ImplementRequest, ImplementationResult, LlmClient,
    LlmSettings, RepoViewBudget, repo_view,
};
use axum::Router;
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The task's title: every request must still hold it.
const TITLE: &str = "Fix the greeting";
/// What the failing test prints: the latest failure must still be in every request after it.
const FAILURE: &str = "expected 'Hello, World!', got 'Hi World'";

/// A repository with a wrong greet.sh, its test, and a large module the model reads.
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git2::Repository::init(dir.path()).unwrap();
    std::fs::write(dir.path().join("greet.sh"), "#!/bin/sh\necho \"Hi $1\"\n").unwrap();
    std::fs::write(
        dir.path().join("test.sh"),
        format!("out=$(sh ./greet.sh World)\n[ \"$out\" = \"Hello, World!\" ] || {{ echo \"{FAILURE}\"; exit 1; }}\n"),
    )
    .unwrap();
    let module: String =
        (0..400).map(|i| format!("def helper_{i}(value):\n    return value + {i}\n")).collect();
    std::fs::write(dir.path().join("big.py"), module).unwrap();
    dir
}

fn settings(server: &str, context_tokens: Option<u32>, max_tokens: Option<u32>) -> LlmSettings {
    LlmSettings {
        endpoint: Some(server.to_string()),
        model: "test-model".into(),
        api_key: None,
        timeout: Duration::from_secs(10),
        retry_count: 0,
        context_tokens,
        temperature: 0.2,
        max_tokens,
    }
}

/// One round with `sh test.sh` as the test step.
async fn run_round(
    ws: &std::path::Path,
    client: &LlmClient,
) -> (Result<ImplementationResult, ImplementError>, AgentSession) {
    let request = ImplementRequest {
        title: TITLE.into(),
        description: "greet.sh must print 'Hello, NAME!'.".into(),
        test_command_hint: Some("sh test.sh".into()),
        repo_view: repo_view(ws, RepoViewBudget { max_content_bytes: 0, ..RepoViewBudget::default() })
            .unwrap(),
        ..ImplementRequest::default()
    };
    engine_support::run_round_with(ws, client, &EngineSettings::default(), &request, "sh test.sh").await
}

/// The conservative size of a recorded request in tokens: every character of the messages
/// (text and tool-call arguments) and the tool definitions at 3 per token.
fn request_chars(request: &Value) -> usize {
    let text = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    let messages: usize = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let calls: usize = m["tool_calls"]
                .as_array()
                .map_or(0, |calls| calls.iter().map(|c| text(&c["function"]["arguments"])).sum());
            text(&m["content"]) + calls
        })
        .sum();
    messages + request["tools"].to_string().len()
}

fn all_text(request: &Value) -> String {
    request["messages"].to_string()
}

/// Reads of big.py, a failing test run, more reads, the fix, and finish.
fn long_conversation() -> Vec<Step> {
    let read = || Step::call("read_file", json!({"path": "big.py"}));
    let mut steps = vec![read(), read(), Step::call("run_tests", json!({}))];
    steps
        .extend((0..6).map(|i| Step::call("read_file", json!({"path": "big.py", "start_line": i * 50 + 1}))));
    steps.push(Step::call("write_file", json!({"path": "greet.sh", "content": "echo \"Hello, $1!\"\n"})));
    steps.push(Step::call("finish", json!({"summary": "fixed"})));
    steps
}

#[tokio::test]
async fn a_conversation_past_a_small_window_is_fitted_and_keeps_the_task_and_the_latest_failure() {
    let ws = workspace();
    let server = scripted::start(Script::steps(long_conversation())).await.unwrap();
    let client = LlmClient::new(&settings(&server.base_url(), Some(4096), None)).unwrap();
    let (outcome, session) = run_round(ws.path(), &client).await;
    assert_eq!(outcome.unwrap().files_changed, ["greet.sh"]);

    let requests = server.requests();
    assert_eq!(requests.len(), 11);
    for (i, request) in requests.iter().enumerate() {
        let max_tokens = request["max_tokens"].as_u64().unwrap() as usize;
        let tokens = request_chars(request).div_ceil(3);
        assert!(tokens + max_tokens <= 4096, "request {i}: {tokens} + {max_tokens} tokens");
        assert!(all_text(request).contains(TITLE), "request {i} lost the task");
        if i > 3 {
            assert!(all_text(request).contains(FAILURE), "request {i} lost the latest failure");
        }
    }
    let last = all_text(&requests[10]);
    assert!(last.contains("dropped to fit the context"), "{last}");
    // The transcript keeps what the tools answered in full.
    let transcript = session.transcript().to_json();
    assert!(transcript.contains("def helper_100"), "the transcript lost a read");
    // And it says which requests went out shortened, and how.
    assert!(transcript.contains("the request was shortened to fit the model's window: "), "{transcript}");
    assert!(transcript.contains("old tool results summarised"), "{transcript}");
}

/// A server that answers the n-th chat request with llama.cpp's overflow error and plays
/// `steps` otherwise.
async fn overflow_once_at(n: usize, steps: Vec<Step>) -> ScriptedLlmHandle {
    let overflow = json!({"error": {"code": 400, "type": "exceed_context_size_error",
        "message": "request (4146 tokens) exceeds the available context size (4096 tokens), try increasing it",
        "n_prompt_tokens": 4146, "n_ctx": 4096}});
    let mut script: Vec<Step> = steps;
    script.insert(n, Step::Status(400, overflow.to_string()));
    scripted::start(Script::steps(script)).await.unwrap()
}

#[tokio::test]
async fn an_overflow_answer_is_retried_with_a_smaller_request_and_the_task_succeeds() {
    let ws = workspace();
    // No window configured and none reported: 8192 is assumed until the server says 4096.
    let server = overflow_once_at(5, long_conversation()).await;
    let client = LlmClient::new(&settings(&server.base_url(), None, None)).unwrap();
    let (outcome, _) = run_round(ws.path(), &client).await;
    let result = outcome.unwrap();
    assert_eq!((result.files_changed.as_slice(), result.turns), (["greet.sh".to_string()].as_slice(), 11));

    let requests = server.requests();
    assert_eq!(requests.len(), 12);
    let (refused, retried) = (request_chars(&requests[5]), request_chars(&requests[6]));
    assert!(retried < refused, "the retry was not smaller: {retried} >= {refused} characters");
    for (i, request) in requests.iter().enumerate().skip(6) {
        let tokens = request_chars(request).div_ceil(3) + request["max_tokens"].as_u64().unwrap() as usize;
        assert!(tokens <= 4096, "request {i} does not fit the stated window: {tokens}");
    }
    assert!(all_text(&requests[6]).contains(TITLE) && all_text(&requests[6]).contains(FAILURE));
}

#[tokio::test]
async fn an_overflow_on_every_attempt_ends_the_round_with_the_overflow() {
    let ws = workspace();
    let overflow = json!({"error": {"message": "This model's maximum context length is 4096 tokens. However, \
        you requested 5000 tokens (4000 in the messages, 1000 in the completion).", "type": "invalid_request_error",
        "param": "messages", "code": "context_length_exceeded"}});
    let server =
        scripted::start(Script::steps(vec![Step::Status(400, overflow.to_string()); 4])).await.unwrap();
    let client = LlmClient::new(&settings(&server.base_url(), None, None)).unwrap();
    let (outcome, _) = run_round(ws.path(), &client).await;
    let error = outcome.unwrap_err();
    assert!(matches!(error, ImplementError::ContextOverflow { window: Some(4096), .. }), "{error:?}");
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn temperature_and_max_tokens_go_out_with_every_request() {
    let ws = workspace();
    let server = scripted::start(Script::steps([
        Step::call("write_file", json!({"path": "greet.sh", "content": "echo \"Hello, $1!\"\n"})),
        Step::call("finish", json!({"summary": "fixed"})),
    ]))
    .await
    .unwrap();
    let client = LlmClient::new(&settings(&server.base_url(), Some(16_384), Some(300))).unwrap();
    run_round(ws.path(), &client).await.0.unwrap();
    for request in server.requests() {
        assert_eq!((&request["temperature"], &request["max_tokens"]), (&json!(0.2), &json!(300)));
        assert!(request.get("max_completion_tokens").is_none(), "{request}");
    }
    // Unset, the cap is a quarter of the window.
    let server =
        scripted::start(Script::steps([Step::call("finish", json!({"summary": "x"}))])).await.unwrap();
    let client = LlmClient::new(&settings(&server.base_url(), Some(8192), None)).unwrap();
    let _ = run_round(ws.path(), &client).await;
    assert_eq!(server.requests()[0]["max_tokens"], json!(2048));
}

/// A stand-in model server answering the discovery requests with `routes`, counting them.
async fn stand_in(routes: Router<()>) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = routes.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { next.run(req).await }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (base, hits, task)
}

#[tokio::test]
async fn the_window_is_learned_from_llama_cpp_props_once_per_worker() {
    let props = json!({"default_generation_settings": {"n_ctx": 4096}, "total_slots": 1});
    let (base, hits, _server) =
        stand_in(Router::new().route("/props", get(move || async move { axum::Json(props) }))).await;
    let client = LlmClient::new(&settings(&base, None, None)).unwrap();
    assert_eq!(client.context_limits().await.window, 4096);
    let asked = hits.load(Ordering::SeqCst);
    assert_eq!(asked, 3, "props, api/show and models are asked once each");
    assert_eq!(client.context_limits().await.window, 4096);
    assert_eq!(hits.load(Ordering::SeqCst), asked, "the window is cached");
}

#[tokio::test]
async fn the_window_is_learned_from_ollama_show_and_from_the_models_list() {
    let seen_model = Arc::new(Mutex::new(Value::Null));
    let recorded = seen_model.clone();
    let show = post(move |axum::Json(body): axum::Json<Value>| {
        *recorded.lock().unwrap() = body;
        async {
            axum::Json(json!({"parameters": "num_ctx 6144", "model_info": {"llama.context_length": 131072}}))
        }
    });
    let (base, _, _server) = stand_in(Router::new().route("/api/show", show)).await;
    let client = LlmClient::new(&settings(&base, None, None)).unwrap();
    assert_eq!(client.context_limits().await.window, 6144);
    assert_eq!(*seen_model.lock().unwrap(), json!({"model": "test-model", "name": "test-model"}));

    let models = json!({"object": "list", "data": [{"id": "other", "max_model_len": 2048},
                                                    {"id": "test-model", "max_model_len": 32768}]});
    let (base, _, _server) =
        stand_in(Router::new().route("/v1/models", get(move || async move { axum::Json(models) }))).await;
    let client = LlmClient::new(&settings(&base, None, None)).unwrap();
    assert_eq!(client.context_limits().await.window, 32768);

    // A server that says nothing: the conservative default; a configured window wins over all.
    let (base, _, _server) = stand_in(Router::new()).await;
    assert_eq!(LlmClient::new(&settings(&base, None, None)).unwrap().context_limits().await.window, 8192);
    assert_eq!(
        LlmClient::new(&settings(&base, Some(3000), None)).unwrap().context_limits().await.window,
        3000
    );
}

#[tokio::test]
async fn a_model_refusing_max_tokens_and_temperature_gets_requests_without_them() {
    let ws = workspace();
    let refusal = |param: &str, message: &str| {
        let body = json!({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                    "code": "unsupported_parameter"}});
        Step::Status(400, body.to_string())
    };
    let server = scripted::start(Script::steps([
        refusal(
            "max_tokens",
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
        ),
        refusal(
            "temperature",
            "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is supported.",
        ),
        Step::call("write_file", json!({"path": "greet.sh", "content": "echo \"Hello, $1!\"\n"})),
        Step::call("finish", json!({"summary": "fixed"})),
    ]))
    .await
    .unwrap();
    let client = LlmClient::new(&settings(&server.base_url(), Some(16_384), Some(500))).unwrap();
    assert_eq!(run_round(ws.path(), &client).await.0.unwrap().turns, 2);
    let sent: Vec<(Value, Value, Value)> = server
        .requests()
        .iter()
        .map(|r| (r["max_tokens"].clone(), r["max_completion_tokens"].clone(), r["temperature"].clone()))
        .collect();
    assert_eq!(
        sent,
        [
            (json!(500), Value::Null, json!(0.2)),
            (Value::Null, json!(500), json!(0.2)),
            (Value::Null, json!(500), Value::Null),
            (Value::Null, json!(500), Value::Null),
        ]
    );
}
