//! LLM integration: how the runner talks to a model. Any OpenAI-compatible endpoint
//! (OpenAI, vLLM, Ollama, llama.cpp) is configured by base URL, model, key and timeout —
//! the seed's `LLMConfig` — and the engine works in a tool loop: the model reads and
//! writes files and runs the tests through function calls until it calls `finish`.
//!
//! ```sh
//! cargo run --example llm_integration [DIR]
//! LLM_ENDPOINT=http://127.0.0.1:11434/v1 LLM_MODEL=qwen2.5-coder cargo run --example llm_integration
//! OPENAI_API_KEY=sk-... LLM_MODEL=gpt-4o cargo run --example llm_integration
//! ```
//!
//! With no model configured, a scripted stand-in plays a tool-calling conversation:
//! write `greet.sh`, run the tests, finish. The run prints what the model did and cost,
//! and the transcript (the whole conversation, masked) is stored as an artifact.

mod support;

use std::sync::Arc;

use agent_runner::artifacts::ArtifactKind;
use agent_runner::config::{self, ConfigOverrides};
use agent_runner::demo::sample;
use agent_runner::events::MemorySink;
use agent_runner::llm::EngineMode;
use agent_runner::llm::scripted::{Script, Step};
use agent_runner::pipeline::Runner;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = support::workdir()?;
    let repo_url = support::sample_origin(&dir.path, &[])?;
    let task = support::sample_task(&repo_url, json!({}))?;

    // The model settings: `llm:` in the file, LLM_* and OPENAI_* in the environment; the
    // key is read apart from the configuration (OPENAI_API_KEY or OPENAI_API_KEY_FILE).
    let mut config = config::load(None, &config::process_env, &ConfigOverrides::default())?;
    config.llm.timeout = std::time::Duration::from_secs(120);
    config.engine.mode = EngineMode::Tools;
    let conversation = Script::steps([
        Step::call("write_file", json!({"path": sample::GREET_PATH, "content": sample::GREET_CONTENT})),
        Step::call("run_tests", json!({})),
        Step::call("finish", json!({"summary": "Added greet.sh; the tests pass."})),
    ]);
    let (secrets, _model) = support::runner_parts(&mut config, &dir.path, conversation).await?;
    println!(
        "endpoint: {}",
        config.llm.endpoint.as_ref().map_or("https://api.openai.com/v1", |u| u.as_str())
    );

    let runner = Runner::from_config(&config, secrets, Arc::new(MemorySink::default()))?;
    let result = runner.run(&task, 1, &CancellationToken::new()).await;
    if let Some(done) = &result.impl_result {
        println!("model {} in {} turns, {} tool calls:", done.llm_model, done.turns, done.tool_calls.len());
        for (tool, count) in &done.tool_calls {
            println!("  {tool} x{count}");
        }
        println!("tokens: {} prompt + {} completion", done.prompt_tokens, done.completion_tokens);
        println!("files changed: {}", done.files_changed.join(", "));
        println!("explanation: {}", done.explanation);
    }
    for artifact in result.artifacts.iter().filter(|a| a.kind == ArtifactKind::Transcript) {
        println!("transcript: {}", artifact.uri);
    }
    support::outcome(&result)
}
