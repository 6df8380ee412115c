//! The real `agent-runner` binary against hostile tasks: the token planted in a task and
//! echoed by its tests in every encoding, and test commands hunting for secrets in the
//! environment and in `/proc`. Every outward path of the run is scanned.

mod common;
mod secret_forms;

use agent_runner::amqp::{AmqpSession, TopologyNames, browse_queue};
use agent_runner::demo::sample;
use agent_runner::llm::scripted::{self, Script};
use secret_forms::{binary, echoed_forms, files_under, planted_token, scan};
use serde_json::json;
use std::path::Path;

/// The worker holds a token here, so it needs a token host to start; the task's local
/// origin under `dir` is not one and is reached without the token.
fn topology_yaml(names: &TopologyNames, dir: &Path) -> String {
    format!(
        "{}playbook:\n  repair_rounds: 0\n{}  token_hosts: [github.com]\n",
        names.config_yaml(),
        common::local_remotes_yaml(dir)
    )
}

#[tokio::test]
async fn the_token_planted_in_the_task_and_echoed_in_every_encoding_is_masked_everywhere() {
    let token = planted_token("PLANT");
    let llm_key = format!("sk-test-{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    sample::create_origin(&origin, "main", sample::SAMPLE_FILES).unwrap();
    // The model "read" the token in the task and writes it, in every encoding, into a file
    // the tests print; its explanation quotes it too.
    let answer = json!({
        "code_changes": [{ "file_path": "leak.txt", "operation": "create", "content": echoed_forms(&token).join("\n") }],
        "explanation": format!("I used the deploy token {token} as asked")
    })
    .to_string();
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let names = TopologyNames::isolated(&format!("test.secmask.{suffix}"));
    let session = AmqpSession::connect(common::AMQP_URL, "security-mask").await.unwrap();
    session.declare(&names).await.unwrap();
    let mut tap = session.tap(&names.events_exchange, "#").await.unwrap();

    let mut task = sample::sample_task(&format!("file://{}", origin.display()), "9.1");
    task["title"] = json!(format!("Deploy with {token}"));
    task["description"] = json!(format!("Use the deploy token {token} (base64 too) in the tests."));
    task["metadata"] = json!({ "token": token });
    task["playbook"] = json!({ "name": "leak", "steps": [
        { "name": "echo-token", "command": "cat leak.txt; echo; echo \"$(cat leak.txt)\" >&2; exit 1" }
    ]});
    std::fs::write(dir.path().join("config.yaml"), topology_yaml(&names, dir.path())).unwrap();
    std::fs::write(dir.path().join("task.json"), serde_json::to_vec(&task).unwrap()).unwrap();

    let artifacts = format!("file://{}", dir.path().join("artifacts").display());
    let (dir_path, base_url) = (dir.path().to_path_buf(), llm.base_url());
    let (token_env, key_env) = (token.clone(), llm_key.clone());
    let (published, worker) = tokio::task::spawn_blocking(move || {
        let secrets = [("GIT_TOKEN", token_env.as_str()), ("OPENAI_API_KEY", key_env.as_str())];
        let common_args = ["--config", "config.yaml", "--log-level", "debug", "--llm-endpoint", &base_url];
        let published = binary(&dir_path, &[&common_args[..], &["publish", "task.json"]].concat(), &secrets);
        let global =
            [&common_args[..], &["--artifact-store-url", &artifacts, "--pool-dir", "slots"]].concat();
        let worker = binary(&dir_path, &[&global[..], &["worker", "--once"]].concat(), &secrets);
        (published, worker)
    })
    .await
    .unwrap();
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    assert!(worker.status.success(), "{}", String::from_utf8_lossy(&worker.stderr));

    let mut sources: Vec<(String, String)> = Vec::new();
    for (n, line) in String::from_utf8_lossy(&worker.stderr).lines().enumerate() {
        sources.push((format!("log line {n}"), line.to_string()));
    }
    sources.push(("worker stdout".into(), String::from_utf8_lossy(&worker.stdout).into()));
    files_under(&dir.path().join("artifacts"), &mut sources);
    let events = common::drain_events(&mut tap).await;
    for event in &events {
        sources.push((format!("event {}", event["type"]), event.to_string()));
    }
    let letters = browse_queue(&session, &names.dead_letter_queue, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    for (name, value) in letters[0].headers.iter() {
        sources.push((format!("DLQ header {name}"), format!("{value:?}")));
    }

    // The content did flow out (masked), so zero hits is not zero coverage.
    let tests = sources.iter().find(|(n, _)| n.ends_with("test-results.json")).unwrap();
    assert!(tests.1.matches("****").count() >= 9, "{}", tests.1);
    assert!(sources.iter().any(|(n, t)| n.starts_with("log line") && t.contains("****")));
    assert!(events.iter().any(|e| e["type"] == "TaskStarted" && e["data"]["title"] == "Deploy with ****"));
    assert_eq!(letters[0].header_text("x-failure-kind").as_deref(), Some("test_execution"));
    assert!(letters[0].header_text("x-failure-message").unwrap().contains("****"));
    assert_eq!(scan(&sources, &[&token, &llm_key]), Vec::<(String, String)>::new());
    // Log lines, four artifacts, the task's events, the reason headers.
    assert!(sources.len() > 30, "only {} sources scanned", sources.len());

    session.delete(&names).await.unwrap();
}

/// The probe a hostile test runs: count the marker in its own environment and in every
/// readable `/proc/*/environ`, and say whether its parent's environ is readable.
const ENV_PROBE: &str = "env_hits=$(env | grep -c SECRETMARK); \
    proc_hits=$(for f in /proc/[0-9]*/environ; do { tr '\\0' '\\n' < \"$f\"; } 2>/dev/null; done | grep -c SECRETMARK); \
    parent=$(cat /proc/$PPID/environ > /dev/null 2>&1 && echo readable || echo denied); \
    echo \"env=$env_hits proc=$proc_hits parent=$parent\"";

async fn probe_environment(mode: &str) -> String {
    let token = planted_token("SECRETMARK");
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    sample::create_origin(&origin, "main", sample::SAMPLE_FILES).unwrap();
    let answer = sample::scripted_answer();
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();
    let mut task = sample::sample_task(&format!("file://{}", origin.display()), "9.2");
    task["playbook"] = json!({ "name": "probe", "steps": [{ "name": "probe", "command": ENV_PROBE }] });
    std::fs::write(dir.path().join("task.json"), serde_json::to_vec(&task).unwrap()).unwrap();
    let config = format!("{}  token_hosts: [github.com]\n", common::local_remotes_yaml(dir.path()));
    std::fs::write(dir.path().join("config.yaml"), config).unwrap();

    let (dir_path, base_url, mode) = (dir.path().to_path_buf(), llm.base_url(), mode.to_string());
    let output = tokio::task::spawn_blocking(move || {
        let args = [
            "--config",
            "config.yaml",
            "--llm-endpoint",
            &base_url,
            "--execution-mode",
            &mode,
            "run",
            "--task",
            "task.json",
        ];
        binary(&dir_path, &args, &[("GIT_TOKEN", &token), ("OPENAI_API_KEY", "sk-SECRETMARK-llm-key")])
    })
    .await
    .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("no summary: {}", String::from_utf8_lossy(&output.stderr)));
    summary["test_result"]["steps"][0]["output_tail"].as_str().unwrap().trim().to_string()
}

#[tokio::test]
async fn a_test_command_dumping_env_and_proc_environ_finds_no_secret_in_local_mode() {
    // The worker is non-dumpable and the child holds no capabilities, so even as root it
    // cannot read its parent's environ.
    assert_eq!(probe_environment("local-process").await, "env=0 proc=0 parent=denied");
}

#[tokio::test]
async fn a_test_command_dumping_env_and_proc_environ_finds_no_secret_in_the_sandbox() {
    // In the sandbox's PID namespace the worker does not even exist.
    let seen = probe_environment("sandbox").await;
    assert!(seen.starts_with("env=0 proc=0 "), "{seen}");
}
