//! Custom playbook: the steps that check a task's work, in YAML, chosen by the task's
//! `playbook_path` — the seed's `playbooks/backend-task.yaml` with its timeouts,
//! retries, a condition and `fail_fast`, written for the sample shell project.
//!
//! ```sh
//! cargo run --example custom_playbook [DIR]
//! ```
//!
//! The playbook is checked first (what `agent-runner playbook validate` does), then
//! committed to the sample repository and named by the task. Conditions read the
//! configuration's `playbook.variables`; here `lint_enabled` is false, so the linter is
//! skipped (set it to "true" and it runs).

mod support;

use std::sync::Arc;

use agent_runner::config::{self, ConfigOverrides};
use agent_runner::events::MemorySink;
use agent_runner::pipeline::Runner;
use agent_runner::playbook::parse_playbook;
use tokio_util::sync::CancellationToken;

const PLAYBOOK_PATH: &str = "playbooks/backend-task.yaml";
const PLAYBOOK: &str = r#"name: Backend Task Playbook
steps:
  - name: Install dependencies
    command: echo "nothing to install for a shell project"
    timeout_seconds: 300
    retry_count: 2

  - name: Run linter
    command: sh -n greet.sh
    condition: lint_enabled == true
    fail_fast: false

  - name: Run unit tests
    command: sh tests/test_greet.sh
    timeout_seconds: 600
    fail_fast: true
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The playbook, checked: errors name the line and the field.
    let playbook = parse_playbook(PLAYBOOK, PLAYBOOK_PATH)?;
    println!("playbook {:?}: {} steps", playbook.name, playbook.steps.len());

    let dir = support::workdir()?;
    let repo_url = support::sample_origin(&dir.path, &[(PLAYBOOK_PATH, PLAYBOOK)])?;
    let task = support::sample_task(&repo_url, serde_json::json!({ "playbook_path": PLAYBOOK_PATH }))?;

    let mut config = config::load(None, &config::process_env, &ConfigOverrides::default())?;
    config.playbook.variables.insert("lint_enabled".into(), "false".into());
    let (secrets, _model) = support::runner_parts(&mut config, &dir.path, support::sample_answer()).await?;

    let runner = Runner::from_config(&config, secrets, Arc::new(MemorySink::default()))?;
    let result = runner.run(&task, 1, &CancellationToken::new()).await;
    println!("ran playbook: {}", result.playbook.as_deref().unwrap_or("none"));
    for step in result.test_result.iter().flat_map(|report| &report.steps) {
        println!("  {}: {} (attempts: {})", step.name, step.status.as_str(), step.attempts);
    }
    support::outcome(&result)
}
