//! The implementation step end to end: our async-openai client against the scripted
//! OpenAI-compatible server over real HTTP, editing a temporary workspace.

use std::path::Path;
use std::time::Duration;

use agent_runner::error::{Classify, FailureKind};
use agent_runner::llm::scripted::{self, Script, Step};
use agent_runner::llm::{
    ImplementError, ImplementRequest, ImplementationResult, LlmSettings, RepoViewBudget, implement, repo_view,
};
use secrecy::SecretString;
use serde_json::{Value, json};

const KEY: &str = "sk-test-key-123";

fn settings(endpoint: String, retry_count: u32) -> LlmSettings {
    LlmSettings {
        endpoint: Some(endpoint),
        model: "test-model".into(),
        api_key: Some(SecretString::from(KEY.to_string())),
        timeout: Duration::from_secs(10),
        retry_count,
        context_tokens: None,
        temperature: agent_runner::llm::DEFAULT_TEMPERATURE,
        max_tokens: None,
    }
}

fn request(workspace: &Path) -> ImplementRequest {
    ImplementRequest {
        title: "Add a greeting file".into(),
        description: "Create hello.txt with a greeting.".into(),
        acceptance_criteria: vec!["hello.txt exists".into(), "it says hello".into()],
        dependencies: vec!["task-0: scaffold".into()],
        test_command_hint: Some("sh test.sh".into()),
        repo_view: repo_view(workspace, RepoViewBudget::default()).unwrap(),
        previous_failure: None,
    }
}

fn answer(path: &str, content: &str) -> String {
    json!({
        "code_changes": [{"file_path": path, "operation": "create", "content": content}],
        "explanation": "adds the greeting",
    })
    .to_string()
}

fn user_message(body: &Value) -> &str {
    body["messages"][1]["content"].as_str().unwrap()
}

/// Token estimate the scripted server uses: 4 characters per token, rounded up.
fn tokens(chars: usize) -> u32 {
    chars.div_ceil(4) as u32
}

#[tokio::test]
async fn implement_creates_the_file_and_records_usage() {
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("README.md"), "# demo\n").unwrap();
    let content = answer("docs/hello.txt", "hello\n");
    let server = scripted::start(Script::replies([content.clone()])).await.unwrap();

    let req = request(workspace.path());
    let result = implement(&req, workspace.path(), &settings(server.base_url(), 0)).await.unwrap();

    let sent = server.requests();
    assert_eq!(sent.len(), 1);
    let prompt_chars: usize = sent[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().chars().count())
        .sum();
    let (prompt_tokens, completion_tokens) = (tokens(prompt_chars), tokens(content.chars().count()));
    assert_eq!(
        result,
        ImplementationResult {
            llm_model: "test-model".into(),
            prompt_tokens,
            completion_tokens,
            tokens_used: prompt_tokens + completion_tokens,
            files_changed: vec!["docs/hello.txt".into()],
            explanation: "adds the greeting".into(),
            rounds: 1,
            turns: 1,
            ..ImplementationResult::default()
        }
    );
    assert_eq!(std::fs::read_to_string(workspace.path().join("docs/hello.txt")).unwrap(), "hello\n");
    assert_eq!(sent[0]["model"], "test-model");
    assert_eq!(sent[0]["messages"][0]["role"], "system");
    let user = user_message(&sent[0]);
    for expected in [
        "Title: Add a greeting file",
        "- hello.txt exists",
        "- it says hello",
        "README.md (7 bytes)",
        "# demo",
    ] {
        assert!(user.contains(expected), "{expected:?} missing from {user}");
    }
    assert_eq!(server.bearer_present(), [true]);
}

#[tokio::test]
async fn fenced_answer_modifies_an_existing_file() {
    let workspace = tempfile::tempdir().unwrap();
    std::fs::write(workspace.path().join("app.py"), "print('old')\n").unwrap();
    let body = json!({"code_changes": [{"file_path": "app.py", "operation": "modify", "content": "print('new')\n"}],
                      "explanation": "updates the print"});
    let reply = format!("Here is the change:\n```json\n{body:#}\n```\nLet me know.");
    let server = scripted::start(Script::replies([reply])).await.unwrap();
    let result = implement(&request(workspace.path()), workspace.path(), &settings(server.base_url(), 0))
        .await
        .unwrap();
    assert_eq!(result.files_changed, ["app.py"]);
    assert_eq!(result.explanation, "updates the print");
    assert_eq!(std::fs::read_to_string(workspace.path().join("app.py")).unwrap(), "print('new')\n");
}

#[tokio::test]
async fn a_server_error_is_retried_and_then_succeeds() {
    let workspace = tempfile::tempdir().unwrap();
    let script =
        Script::steps([Step::Status(500, "model is loading".into()), Step::Reply(answer("a.txt", "a"))]);
    let server = scripted::start(script).await.unwrap();
    let result = implement(&request(workspace.path()), workspace.path(), &settings(server.base_url(), 2))
        .await
        .unwrap();
    assert_eq!(result.files_changed, ["a.txt"]);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_rate_limit_with_a_plain_text_body_is_retried() {
    let workspace = tempfile::tempdir().unwrap();
    let script = Script::steps([Step::Status(429, "slow down".into()), Step::Reply(answer("a.txt", "a"))]);
    let server = scripted::start(script).await.unwrap();
    let result = implement(&request(workspace.path()), workspace.path(), &settings(server.base_url(), 1))
        .await
        .unwrap();
    assert_eq!(result.files_changed, ["a.txt"]);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn unauthorized_fails_at_once_without_showing_the_key() {
    let workspace = tempfile::tempdir().unwrap();
    let body = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                "param": null, "code": "invalid_api_key"}});
    let server = scripted::start(Script::steps([Step::Status(401, body.to_string())])).await.unwrap();
    let endpoint = server.base_url();
    let err = implement(&request(workspace.path()), workspace.path(), &settings(endpoint.clone(), 3))
        .await
        .unwrap_err();
    assert_eq!(server.requests().len(), 1);
    assert!(!err.is_transient());
    assert_eq!(err.failure_kind(), FailureKind::Implementation);
    assert_eq!(
        err.to_string(),
        format!(
            "LLM request to {endpoint} failed with HTTP 401: invalid_request_error: Incorrect API key provided \
             (code: invalid_api_key)"
        )
    );
    assert!(!format!("{err:?}").contains(KEY));
}

#[tokio::test]
async fn an_exhausted_quota_is_not_retried() {
    let workspace = tempfile::tempdir().unwrap();
    let body = json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota",
                                "param": null, "code": "insufficient_quota"}});
    let server = scripted::start(Script::steps([Step::Status(429, body.to_string())])).await.unwrap();
    let err = implement(&request(workspace.path()), workspace.path(), &settings(server.base_url(), 3))
        .await
        .unwrap_err();
    assert!(matches!(err, ImplementError::Request { status: Some(429), transient: false, .. }), "{err:?}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let workspace = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}/v1");
    let err =
        implement(&request(workspace.path()), workspace.path(), &settings(endpoint, 0)).await.unwrap_err();
    assert!(matches!(err, ImplementError::Request { status: None, transient: true, .. }), "{err:?}");
    assert!(err.to_failure("implement").transient);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_as_transient() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1", listener.local_addr().unwrap());
    // Accepts and holds connections without ever answering.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let workspace = tempfile::tempdir().unwrap();
    let mut config = settings(endpoint.clone(), 0);
    config.timeout = Duration::from_millis(300);
    let err = implement(&request(workspace.path()), workspace.path(), &config).await.unwrap_err();
    assert_eq!(err.to_string(), format!("LLM request to {endpoint} failed: no answer within 300ms"));
    assert!(err.is_transient());
    silent.abort();
}

#[tokio::test]
async fn an_answer_without_changes_is_a_permanent_failure() {
    let workspace = tempfile::tempdir().unwrap();
    let reply = json!({"code_changes": [], "explanation": "nothing to do"}).to_string();
    let server = scripted::start(Script::replies([reply])).await.unwrap();
    let err = implement(&request(workspace.path()), workspace.path(), &settings(server.base_url(), 2))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "the model proposed no changes");
    assert!(!err.is_transient());
    assert_eq!(server.requests().len(), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn an_escaping_answer_writes_nothing() {
    let outside = tempfile::tempdir().unwrap();
    let workspace = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), workspace.path().join("out")).unwrap();
    let reply = json!({"code_changes": [
        {"file_path": "fine.txt", "operation": "create", "content": "ok"},
        {"file_path": "out/evil.txt", "operation": "create", "content": "escaped"},
    ]})
    .to_string();
    let server = scripted::start(Script::replies([reply])).await.unwrap();
    let err = implement(&request(workspace.path()), workspace.path(), &settings(server.base_url(), 0))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "change 1 (out/evil.txt) rejected: out resolves outside the workspace through a symlink"
    );
    assert!(!workspace.path().join("fine.txt").exists());
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn the_scripted_server_answers_by_request_and_lists_models() {
    let server = scripted::start(Script::responder(|req| {
        format!("you asked with {} messages", req["messages"].as_array().map_or(0, Vec::len))
    }))
    .await
    .unwrap();
    let http = agent_runner::tls::http_client_builder().build().unwrap();
    let models: Value =
        http.get(format!("{}/models", server.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "scripted");
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let reply: Value = http
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "you asked with 1 messages");
    assert_eq!(reply["usage"], json!({"prompt_tokens": 1, "completion_tokens": 7, "total_tokens": 8}));
    assert_eq!(reply["model"], "m");
    assert_eq!(server.requests(), [body]);
    assert_eq!(server.bearer_present(), [false]);
    server.shutdown().await;
}

#[tokio::test]
async fn an_exhausted_script_answers_500() {
    let server = scripted::start(Script::steps([])).await.unwrap();
    let response = agent_runner::tls::http_client_builder()
        .build()
        .unwrap()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&json!({"model": "m", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "scripted LLM: the script is exhausted (request 1)");
}
