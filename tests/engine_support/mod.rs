//! The engine tests' shared rig: a git workspace with a wrong greet.sh and its protected
//! test, a client for the scripted server, one round run with the playbook's test step as
//! `run_tests`, and readers of the requests the server recorded.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use agent_runner::llm::scripted::ScriptedLlmHandle;
use agent_runner::llm::{
    AgentSession, EngineContext, EngineSettings, ImplementError, ImplementRequest, ImplementationResult,
    LlmClient, LlmSettings, PlaybookTests, RepoViewBudget, implement_round, repo_view,
};
use agent_runner::playbook::{PlaybookRun, StepExecution, parse_playbook};
use agent_runner::secrets::Masker;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const WRONG_GREET: &str = "#!/bin/sh\necho \"Hi $1\"\n";
pub const TEST_SCRIPT: &str = "#!/bin/sh\nout=$(sh ./greet.sh World)\n[ \"$out\" = \"Hello, World!\" ] || { echo \"expected 'Hello, World!', got '$out'\"; exit 1; }\necho ok\n";

/// A git repository with a wrong greet.sh and its test.
pub fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git2::Repository::init(dir.path()).unwrap();
    std::fs::write(dir.path().join("README.md"), "# greeter\n").unwrap();
    std::fs::write(dir.path().join("greet.sh"), WRONG_GREET).unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("tests/test_greet.sh"), TEST_SCRIPT).unwrap();
    dir
}

pub fn llm(server: &ScriptedLlmHandle, retry_count: u32) -> LlmClient {
    LlmClient::new(&LlmSettings {
        endpoint: Some(server.base_url()),
        model: "test-model".into(),
        api_key: None,
        timeout: Duration::from_secs(10),
        retry_count,
        context_tokens: None,
        temperature: agent_runner::llm::DEFAULT_TEMPERATURE,
        max_tokens: None,
    })
    .unwrap()
}

pub fn request(workspace: &Path) -> ImplementRequest {
    ImplementRequest {
        title: "Fix the greeting".into(),
        description: "greet.sh must print 'Hello, NAME!'.".into(),
        acceptance_criteria: vec!["tests/test_greet.sh passes".into()],
        dependencies: vec![],
        test_command_hint: Some("sh tests/test_greet.sh".into()),
        repo_view: repo_view(workspace, RepoViewBudget::default()).unwrap(),
        previous_failure: None,
    }
}

/// Runs one round with the playbook's test step available as `run_tests`.
pub async fn run_round(
    workspace: &Path,
    server: &ScriptedLlmHandle,
    engine: &EngineSettings,
    retry_count: u32,
) -> (Result<ImplementationResult, ImplementError>, AgentSession) {
    let client = llm(server, retry_count);
    run_round_with(workspace, &client, engine, &request(workspace), "sh tests/test_greet.sh").await
}

/// Runs one round of `request` with `test_command` as the playbook's one test step.
pub async fn run_round_with(
    workspace: &Path,
    client: &LlmClient,
    engine: &EngineSettings,
    request: &ImplementRequest,
    test_command: &str,
) -> (Result<ImplementationResult, ImplementError>, AgentSession) {
    let playbook = parse_playbook(
        &format!("name: checks\nsteps:\n  - name: unit tests\n    command: {test_command}\n"),
        "test",
    )
    .unwrap();
    let variables = Default::default();
    let cancel = CancellationToken::new();
    let execution = StepExecution::default();
    let run = PlaybookRun {
        workdir: workspace,
        variables: &variables,
        default_step_timeout: Duration::from_secs(30),
        output_cap_bytes: 64 * 1024,
        cancel: &cancel,
        execution: &execution,
    };
    let tests = PlaybookTests { playbook: &playbook, run };
    let masker = Masker::default();
    let ctx = EngineContext {
        settings: engine,
        max_file_bytes: agent_runner::workspace_files::DEFAULT_MAX_FILE_BYTES,
        tests: Some(&tests),
        masker: &masker,
    };
    let mut session = AgentSession::new(engine);
    let outcome = implement_round(request, workspace, client, &ctx, &mut session).await;
    (outcome, session)
}

/// The tool results a request carries after its last assistant message: `(call id, text)`.
pub fn tool_results(request: &Value) -> Vec<(String, String)> {
    let messages = request["messages"].as_array().unwrap();
    let last_assistant = messages.iter().rposition(|m| m["role"] == "assistant").unwrap();
    messages[last_assistant + 1..]
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (m["tool_call_id"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string())
        })
        .collect()
}

pub fn last_user_text(request: &Value) -> String {
    let messages = request["messages"].as_array().unwrap();
    messages.iter().rev().find(|m| m["role"] == "user").unwrap()["content"].as_str().unwrap().to_string()
}

pub const FIXED_GREET: &str = "echo \"Hello, ${1:-world}!\"\n";
