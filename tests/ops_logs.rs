//! The real `agent-runner worker` binary's JSON log lines: every line emitted while it
//! works on a task names the task, its spec, the runner and the attempt as top-level
//! fields, and no field holds Rust debug text.

mod common;

use agent_runner::amqp::{AmqpSession, TopologyNames};
use agent_runner::demo::sample;
use agent_runner::llm::scripted::{self, Script};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const RUNNER_ID: &str = "logs-runner-7";

fn binary(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent-runner"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("AMQP_URL")
        .env_remove("GIT_TOKEN")
        .env("OPENAI_API_KEY", "sk-test-logs")
        .output()
        .unwrap()
}

/// Text a field would hold if a value had been logged with `?`: an `Option`, a
/// `Result`, a struct or a quoted string inside another value.
fn looks_like_debug_text(text: &str) -> bool {
    ["Some(", "None", "Ok(", "Err(", " { ", "\\\""].iter().any(|shape| text.contains(shape))
}

#[tokio::test]
async fn every_line_inside_a_task_names_the_task_spec_runner_and_attempt_without_debug_text() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    sample::create_origin(&origin, "main", sample::SAMPLE_FILES).unwrap();
    let answer = sample::scripted_answer();
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let names = TopologyNames::isolated(&format!("test.logs.{suffix}"));
    let session = AmqpSession::connect(common::AMQP_URL, "ops-logs").await.unwrap();
    session.declare(&names).await.unwrap();
    let task_id = format!("logs-{suffix}");
    let task = sample::sample_task(&format!("file://{}", origin.display()), &task_id);
    let config = format!("{}{}", names.config_yaml(), common::local_remotes_yaml(dir.path()));
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    std::fs::write(dir.path().join("task.json"), serde_json::to_vec(&task).unwrap()).unwrap();

    let artifacts = format!("file://{}", dir.path().join("artifacts").display());
    let (dir_path, base_url) = (dir.path().to_path_buf(), llm.base_url());
    let (published, worker) = tokio::task::spawn_blocking(move || {
        let common_args = ["--config", "config.yaml", "--log-level", "debug", "--llm-endpoint", &base_url];
        let published = binary(&dir_path, &[&common_args[..], &["publish", "task.json"]].concat());
        let worker_args =
            ["--artifact-store-url", &artifacts, "--pool-dir", "slots", "--runner-id", RUNNER_ID];
        let worker = binary(&dir_path, &[&common_args[..], &worker_args[..], &["worker", "--once"]].concat());
        (published, worker)
    })
    .await
    .unwrap();
    session.delete(&names).await.unwrap();
    let stderr = String::from_utf8_lossy(&worker.stderr).into_owned();
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    assert!(worker.status.success(), "{stderr}");

    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    // Inside the task: from its first line to its last, whatever each line says.
    let names_task = |line: &Value| line["task_id"] == task_id.as_str();
    let first = lines.iter().position(names_task).expect("no line names the task");
    let last = lines.iter().rposition(names_task).unwrap();
    let inside = &lines[first..=last];
    for line in inside {
        assert_eq!(line["task_id"], task_id.as_str(), "{line}");
        assert_eq!(line["spec_name"], "greeter", "{line}");
        assert_eq!(line["runner_id"], RUNNER_ID, "{line}");
        assert_eq!(line["attempt"], 1, "{line}");
        assert!(line.get("spans").is_none(), "{line}");
    }
    let messages: Vec<&str> = inside.iter().filter_map(|l| l["message"].as_str()).collect();
    for expected in ["branch pushed", "playbook step finished", "task completed"] {
        assert!(messages.contains(&expected), "no '{expected}' inside the task: {messages:?}");
    }
    let completed = inside.iter().find(|l| l["message"] == "task completed").unwrap();
    assert_eq!(completed["branch"], format!("feature/task-greeter-{task_id}"), "{completed}");

    for line in &lines {
        for (field, value) in line.as_object().unwrap() {
            if let Value::String(text) = value {
                assert!(!looks_like_debug_text(text), "field {field} holds debug text: {line}");
            }
        }
    }
}
