//! The real `agent-runner` binary, driven as an operator would: playbook validation,
//! a broker-less `run` (also with the seed's `playbook_path`), and publish →
//! `worker --once` → `dlq list` on a private topology.

mod common;

use std::process::Command;

use agent_runner::amqp::{AmqpSession, TopologyNames};
use agent_runner::demo::sample;
use agent_runner::llm::scripted::{self, Script};
use common::binary::agent_runner;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn playbook_validate_names_the_line_and_field_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "name: bad\nsteps:\n  - name: lint\n    command: make lint\n    condition: a & b\n",
    )
    .unwrap();
    let output = agent_runner(&["playbook", "validate", "bad.yaml"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr).trim(),
        "bad.yaml:5:18: steps[0].condition: unexpected token '&', expected '&&'"
    );

    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/rust.yaml");
    let output = agent_runner(&["playbook", "validate", shipped], dir.path());
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("valid playbook"));
}

#[test]
fn a_bad_config_file_is_refused_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.yaml"), "amqp:\n  concurency: 2\n").unwrap();
    let output = agent_runner(&["--config", "c.yaml", "dlq", "list"], dir.path());
    assert_eq!(output.status.code(), Some(78), "EX_CONFIG");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("c.yaml")
            && stderr.contains("unknown field `concurency`")
            && stderr.contains("line 2"),
        "{stderr}"
    );
}

#[tokio::test]
async fn run_takes_one_task_from_a_file_without_a_broker_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    sample::create_origin(&origin, "main", sample::SAMPLE_FILES).unwrap();
    let answer = sample::scripted_answer();
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();
    let task = sample::sample_task(&format!("file://{}", origin.display()), "5.1");
    std::fs::write(dir.path().join("task.json"), serde_json::to_vec(&task).unwrap()).unwrap();
    std::fs::write(dir.path().join("config.yaml"), common::local_remotes_yaml(dir.path())).unwrap();

    let base_url = llm.base_url();
    let dir_path = dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        let args = [
            "--config",
            "config.yaml",
            "--llm-endpoint",
            &base_url,
            "--text-logs",
            "run",
            "--task",
            "task.json",
        ];
        agent_runner(&args, &dir_path)
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["success"], true);
    assert_eq!(summary["branch"], "feature/task-greeter-5.1");
    let kinds: Vec<_> = summary["artifacts"].as_array().unwrap().iter().map(|a| a["type"].clone()).collect();
    assert_eq!(kinds, ["diff", "test", "log", "transcript", "summary"]);
    let (_, message) = sample::branch_head(&origin, "feature/task-greeter-5.1").unwrap().unwrap();
    assert!(message.starts_with("feat(task-5.1): Add the greet command"));
}

#[tokio::test]
async fn publish_worker_once_and_dlq_list_work_together() {
    let dir = tempfile::tempdir().unwrap();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let names = TopologyNames::isolated(&format!("test.cli.{suffix}"));
    let config = names.config_yaml();
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();
    std::fs::write(
        dir.path().join("bad-task.json"),
        br#"{"schema_version": 1, "task_id": "6.1", "spec_name": "cli", "repo_url": "file:///nowhere"}"#,
    )
    .unwrap();

    let dir_path = dir.path().to_path_buf();
    let outputs = tokio::task::spawn_blocking(move || {
        let refused = agent_runner(&["--config", "config.yaml", "publish", "bad-task.json"], &dir_path);
        let published = agent_runner(
            &["--config", "config.yaml", "publish", "--no-validate", "bad-task.json"],
            &dir_path,
        );
        let worker = agent_runner(&["--config", "config.yaml", "worker", "--once"], &dir_path);
        let listed = agent_runner(&["--config", "config.yaml", "dlq", "list", "--json"], &dir_path);
        (refused, published, worker, listed)
    })
    .await
    .unwrap();
    let (refused, published, worker, listed) = outputs;
    assert_eq!(refused.status.code(), Some(2), "a file that is not a valid task is a usage error");
    assert!(text(&refused.stderr).contains("title: required field is missing"));
    assert!(published.status.success(), "{}", text(&published.stderr));
    assert!(worker.status.success(), "{}", text(&worker.stderr));
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["task_id"], "6.1");
    assert_eq!(rows[0]["reason"], "validation");
    assert_eq!(rows[0]["failed_step"], "validate");
    assert_eq!(
        rows[0]["message"],
        "title: required field is missing; description: required field is missing"
    );

    let session = AmqpSession::connect(common::AMQP_URL, "cli-test-cleanup").await.unwrap();
    session.delete(&names).await.unwrap();
}

/// The long options a `--help` text lists.
fn options_in_help(args: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let output = agent_runner(args, dir.path());
    assert!(output.status.success(), "{args:?}: {}", text(&output.stderr));
    text(&output.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with("--"))
        .map(|word| word.trim_end_matches(',').to_string())
        .collect()
}

#[test]
fn each_subcommand_help_lists_only_the_options_that_apply_to_it() {
    let common = ["--config", "--amqp-url", "--log-level", "--text-logs"];
    let runner = ["--llm-endpoint", "--llm-model", "--pool-dir", "--execution-mode", "--timeout"];

    let dlq = options_in_help(&["dlq", "list", "--help"]);
    assert!(common.iter().all(|o| dlq.contains(&o.to_string())), "{dlq:?}");
    assert!(dlq.contains(&"--older-than".to_string()), "{dlq:?}");
    for foreign in runner.iter().chain(&["--http-addr"]) {
        assert!(!dlq.contains(&foreign.to_string()), "dlq list lists {foreign}: {dlq:?}");
    }

    let run = options_in_help(&["run", "--help"]);
    assert!(runner.iter().all(|o| run.contains(&o.to_string())), "{run:?}");
    assert!(!run.contains(&"--http-addr".to_string()), "{run:?}");
    let worker = options_in_help(&["worker", "--help"]);
    assert!(worker.contains(&"--http-addr".to_string()) && worker.contains(&"--llm-model".to_string()));
    let mirror = options_in_help(&["mirror", "--help"]);
    assert!(mirror.contains(&"--http-addr".to_string()) && !mirror.contains(&"--llm-model".to_string()));

    // An option given to a subcommand it does not apply to is a usage error (exit 2).
    let dir = tempfile::tempdir().unwrap();
    let refused = agent_runner(&["dlq", "list", "--llm-model", "m"], dir.path());
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
}

#[test]
fn version_names_the_git_revision_it_was_built_from() {
    let dir = tempfile::tempdir().unwrap();
    let output = agent_runner(&["--version"], dir.path());
    assert!(output.status.success());
    let version = text(&output.stdout);
    let expected = format!("agent-runner {} (revision ", env!("CARGO_PKG_VERSION"));
    assert!(version.starts_with(&expected), "{version}");
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    if head.status.success() {
        let head = text(&head.stdout);
        assert!(version.contains(&format!("revision {}", head.trim())), "{version} vs HEAD {head}");
    } else {
        println!("not a git checkout: the revision cannot be compared");
    }
}

#[tokio::test]
async fn run_honours_the_seeds_playbook_path_over_the_repositorys_own_playbook() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    let backend = (
        "playbooks/backend-task.yaml",
        "name: Backend Task Playbook\nsteps:\n  - name: backend unit tests\n    command: sh tests/test_greet.sh\n",
    );
    let files = [sample::SAMPLE_FILES, &[backend]].concat();
    sample::create_origin(&origin, "main", &files).unwrap();
    let answer = sample::scripted_answer();
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();
    let mut task = sample::sample_task(&format!("file://{}", origin.display()), "5.2");
    task["playbook_path"] = serde_json::json!("playbooks/backend-task.yaml");
    std::fs::write(dir.path().join("task.json"), serde_json::to_vec(&task).unwrap()).unwrap();
    std::fs::write(dir.path().join("config.yaml"), common::local_remotes_yaml(dir.path())).unwrap();

    let base_url = llm.base_url();
    let dir_path = dir.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        let args = ["--config", "config.yaml", "--llm-endpoint", &base_url, "run", "--task", "task.json"];
        agent_runner(&args, &dir_path)
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // Without playbook_path the repository's .necrocode/playbook.yaml would have run.
    assert_eq!(summary["playbook"], "playbooks/backend-task.yaml in the repository");
    let steps: Vec<_> =
        summary["test_result"]["steps"].as_array().unwrap().iter().map(|s| s["name"].clone()).collect();
    assert_eq!(steps, ["backend unit tests"]);
}
