//! The real `agent-runner` binary against a secret's ways out that are not logs: the
//! requests sent to the model, `run`'s stdout, and the push. The model is the scripted
//! server (faked at the HTTP level), which records every request body it received.

mod common;
mod secret_forms;

use std::path::{Path, PathBuf};
use std::process::Output;

use agent_runner::amqp::{AmqpSession, TopologyNames, browse_queue};
use agent_runner::demo::sample::{self, GREET_CONTENT, GREET_PATH, SAMPLE_FILES};
use agent_runner::llm::scripted::{self, Script, ScriptedCall, ScriptedLlmHandle, Step};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secret_forms::{binary, echoed_forms, files_under, planted_token, scan, wrap};
use serde_json::{Value, json};

/// One task run through `agent-runner run --task`: its directory, origin, output and model.
struct TaskRun {
    dir: tempfile::TempDir,
    output: Output,
    llm: ScriptedLlmHandle,
}

impl TaskRun {
    fn origin(&self) -> PathBuf {
        self.dir.path().join("origin.git")
    }

    fn summary(&self) -> Value {
        serde_json::from_slice(&self.output.stdout)
            .unwrap_or_else(|_| panic!("no summary: {}", String::from_utf8_lossy(&self.output.stderr)))
    }

    fn artifact(&self, task_id: &str, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("artifacts/greeter").join(task_id).join(name)).unwrap()
    }
}

/// Runs `task` (its `repo_url` is filled in) against an origin holding the sample files
/// and `extra_files`, with the git token set to `token` and `config` as the config file.
async fn run_task(
    mut task: Value,
    extra_files: &[(&str, String)],
    script: Script,
    config: &str,
    token: &str,
) -> TaskRun {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    let mut files: Vec<(&str, &str)> = SAMPLE_FILES.to_vec();
    files.extend(extra_files.iter().map(|(path, content)| (*path, content.as_str())));
    sample::create_origin(&origin, "main", &files).unwrap();
    task["repo_url"] = json!(format!("file://{}", origin.display()));
    std::fs::write(dir.path().join("task.json"), serde_json::to_vec(&task).unwrap()).unwrap();
    std::fs::write(dir.path().join("config.yaml"), with_local_git(config, dir.path())).unwrap();
    let llm = scripted::start(script).await.unwrap();
    let (dir_path, base_url, token) = (dir.path().to_path_buf(), llm.base_url(), token.to_string());
    let output = tokio::task::spawn_blocking(move || {
        let artifacts = format!("file://{}", dir_path.join("artifacts").display());
        let args =
            ["--config", "config.yaml", "--llm-endpoint", &base_url, "--artifact-store-url", &artifacts];
        let args = [&args[..], &["--pool-dir", "slots", "run", "--task", "task.json"]].concat();
        binary(&dir_path, &args, &[("GIT_TOKEN", &token)])
    })
    .await
    .unwrap();
    TaskRun { dir, output, llm }
}

/// `config` with the git section these runs need: the worker holds a token, so it needs
/// a token host to start, and the local origins under `dir` must be allowed remotes
/// (they are not token hosts: the token never goes to them).
fn with_local_git(config: &str, dir: &Path) -> String {
    let lines = format!(
        "  allowed_remotes: [\"https://\", \"file://{}/\"]\n  token_hosts: [github.com]\n",
        dir.display()
    );
    match config.trim() {
        "{}" | "" => format!("git:\n{lines}"),
        _ if config.contains("git:\n") => config.replacen("git:\n", &format!("git:\n{lines}"), 1),
        _ => format!("{config}git:\n{lines}"),
    }
}

fn write(path: &str, content: &str) -> ScriptedCall {
    ScriptedCall::new("write_file", json!({ "path": path, "content": content }))
}

fn finish(summary: &str) -> Step {
    Step::call("finish", json!({ "summary": summary }))
}

/// A conversation message reduced to what both sides record: role, text, tool calls.
type Message = (String, String, Vec<(String, String)>);

fn sent_messages(request: &Value) -> Vec<Message> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let calls = m["tool_calls"].as_array().into_iter().flatten();
            let calls = calls.map(|c| (text(&c["function"]["name"]), text(&c["function"]["arguments"])));
            (text(&m["role"]), text(&m["content"]), calls.collect())
        })
        .collect()
}

fn transcript_messages(transcript: &Value) -> Vec<Message> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let entries = transcript["entries"].as_array().unwrap().iter().filter(|e| e["speaker"] != "engine");
    entries
        .map(|e| {
            let calls = e["tool_calls"].as_array().into_iter().flatten();
            let calls = calls.map(|c| (text(&c["name"]), text(&c["arguments"])));
            (text(&e["speaker"]), text(&e["text"]), calls.collect())
        })
        .collect()
}

#[tokio::test]
async fn canaries_in_the_task_the_playbook_and_a_read_file_never_reach_the_model_and_the_transcript_is_what_was_sent()
 {
    let token = planted_token("CANARY");
    let mut task = sample::sample_task("", "12.1");
    task["title"] = json!(format!("Add greet.sh using {token}"));
    task["description"] = json!(format!("The deploy token is {token}; hex {}", hex::encode(&token)));
    task["acceptance_criteria"] = json!([format!("greets; token {}", STANDARD.encode(&token))]);
    task["playbook"] = json!({ "name": "canary", "steps": [
        { "name": "unit tests", "command": format!("sh tests/test_greet.sh # {token}") }
    ]});
    // A repository file holding the token wrapped, as `base64` and `openssl base64` print it.
    let notes = format!(
        "{}\n{}\n",
        wrap(&STANDARD.encode(format!("key: {token}")), 76),
        wrap(&hex::encode(&token), 60)
    );
    let script = Script::steps([
        Step::ToolCalls(vec![ScriptedCall::new("read_file", json!({ "path": "notes.txt" }))]),
        Step::ToolCalls(vec![write(GREET_PATH, GREET_CONTENT)]),
        finish("greet.sh added"),
    ]);
    let run = run_task(task, &[("notes.txt", notes)], script, "{}\n", &token).await;
    assert_eq!(run.summary()["success"], true, "{}", run.summary());

    let requests = run.llm.requests();
    assert_eq!(requests.len(), 3);
    let bodies: Vec<(String, String)> =
        requests.iter().enumerate().map(|(n, r)| (format!("request {n}"), r.to_string())).collect();
    assert_eq!(scan(&bodies, &[&token]), Vec::<(String, String)>::new());
    // The canaries were there, masked: zero hits is not zero coverage.
    let first = sent_messages(&requests[0]);
    assert!(first[1].1.contains("Add greet.sh using ****"), "{}", first[1].1);
    assert!(first[1].1.contains("sh tests/test_greet.sh # ****"), "{}", first[1].1);
    assert!(sent_messages(&requests[1]).last().unwrap().1.contains("****"));

    let transcript: Value = serde_json::from_str(&run.artifact("12.1", "transcript.json")).unwrap();
    let recorded = transcript_messages(&transcript);
    for (n, request) in requests.iter().enumerate() {
        let sent = sent_messages(request);
        assert_eq!(recorded[..sent.len()], sent[..], "request {n} differs from the transcript");
    }
}

#[tokio::test]
async fn run_stdout_shows_the_token_in_no_encoding() {
    let token = planted_token("STDOUT");
    let mut task = sample::sample_task("", "12.2");
    task["description"] = json!(format!("Use {token}"));
    task["metadata"] = json!({ "token": token });
    task["playbook"] = json!({ "name": "echo", "steps": [
        { "name": "unit tests", "command": "sh tests/test_greet.sh && cat leak.txt" }
    ]});
    let script = Script::steps([
        Step::ToolCalls(vec![write(GREET_PATH, GREET_CONTENT)]),
        finish(&format!("used the token {token} as asked")),
    ]);
    let leak = echoed_forms(&token).join("\n");
    let run = run_task(task, &[("leak.txt", leak)], script, "{}\n", &token).await;
    let stdout = String::from_utf8_lossy(&run.output.stdout).to_string();
    assert_eq!(run.summary()["success"], true, "{stdout}");
    assert!(stdout.matches("****").count() >= 9, "{stdout}");
    assert_eq!(scan(&[("stdout".into(), stdout)], &[&token]), Vec::<(String, String)>::new());
}

/// The remote's task branch, if it exists.
fn pushed_branch(origin: &Path, task_id: &str) -> Option<(String, String)> {
    sample::branch_head(origin, &format!("feature/task-greeter-{task_id}")).unwrap()
}

#[tokio::test]
async fn a_model_writing_a_github_shaped_token_gets_its_push_refused_and_the_diff_masked() {
    let token = planted_token("SHAPE");
    let shaped = format!("ghp_{}", "Xy7".repeat(12));
    let script = Script::steps([
        Step::ToolCalls(vec![
            write(GREET_PATH, GREET_CONTENT),
            write("deploy.cfg", &format!("user=ci\ntoken={shaped}\n")),
        ]),
        finish("added"),
    ]);
    let run = run_task(sample::sample_task("", "12.3"), &[], script, "{}\n", &token).await;
    let summary = run.summary();
    assert_eq!(summary["success"], false);
    assert_eq!(summary["error"]["kind"], "secret_detected", "{summary}");
    assert_eq!(
        summary["error"]["message"],
        "the commit adds 1 secret(s), push refused: deploy.cfg:2: a GitHub token"
    );
    assert_eq!(summary["branch"], "feature/task-greeter-12.3");
    assert_eq!(pushed_branch(&run.origin(), "12.3"), None);
    let diff = run.artifact("12.3", "diff.patch");
    assert!(diff.contains("+token=****"), "{diff}");
    assert!(!diff.contains(&shaped));
}

#[tokio::test]
async fn an_allow_pattern_lets_a_known_fake_key_through_the_push_guard() {
    let token = planted_token("ALLOW");
    let fake = "AKIAIOSFODNN7EXAMPLE"; // AWS's documented example key id
    let script = Script::steps([
        Step::ToolCalls(vec![
            write(GREET_PATH, GREET_CONTENT),
            write("docs/aws.md", &format!("e.g. {fake}\n")),
        ]),
        finish("added"),
    ]);
    let config = "git:\n  secret_scan_allow: ['AKIAIOSFODNN7EXAMPLE', '^docs/other\\.md:\\d+$']\n";
    let run = run_task(sample::sample_task("", "12.4"), &[], script, config, &token).await;
    assert_eq!(run.summary()["success"], true, "{}", run.summary());
    let (commit, _) = pushed_branch(&run.origin(), "12.4").expect("the branch was pushed");
    assert_eq!(
        sample::file_at(&run.origin(), &commit, "docs/aws.md").unwrap().as_deref(),
        Some("e.g. AKIAIOSFODNN7EXAMPLE\n")
    );
}

#[tokio::test]
async fn write_file_dot_env_is_refused_with_a_clear_tool_result_and_never_pushed() {
    let token = planted_token("DOTENV");
    let script = Script::steps([
        // Turns of their own: a refused call drops the rest of its turn.
        Step::ToolCalls(vec![write(".env", "GIT_TOKEN=copied\n")]),
        Step::ToolCalls(vec![write(GREET_PATH, GREET_CONTENT)]),
        finish("added"),
    ]);
    let run = run_task(sample::sample_task("", "12.5"), &[], script, "{}\n", &token).await;
    assert_eq!(run.summary()["success"], true, "{}", run.summary());
    let results = sent_messages(&run.llm.requests()[1]);
    let refused = results.iter().find(|(role, ..)| role == "tool").unwrap();
    assert!(
        refused.1.starts_with("error: ") && refused.1.contains("a .env file holds credentials"),
        "{}",
        refused.1
    );
    let (commit, _) = pushed_branch(&run.origin(), "12.5").unwrap();
    assert_eq!(sample::file_at(&run.origin(), &commit, ".env").unwrap(), None);
}

#[tokio::test]
async fn an_edit_block_creating_dot_env_is_refused_and_never_pushed() {
    let token = planted_token("BLOCKENV");
    let blocks = format!(
        ".env.local\n<<<<<<< SEARCH\n=======\nGIT_TOKEN=copied\n>>>>>>> REPLACE\n\n\
         {GREET_PATH}\n<<<<<<< SEARCH\n=======\n{GREET_CONTENT}>>>>>>> REPLACE\n"
    );
    let script = Script::replies([blocks, "Added greet.sh.".to_string()]);
    let run =
        run_task(sample::sample_task("", "12.6"), &[], script, "engine:\n  mode: edit_blocks\n", &token)
            .await;
    assert_eq!(run.summary()["success"], true, "{}", run.summary());
    let feedback = sent_messages(&run.llm.requests()[1]).last().unwrap().1.clone();
    assert!(
        feedback.starts_with("[1] error: ") && feedback.contains("a .env file holds credentials"),
        "{feedback}"
    );
    let (commit, _) = pushed_branch(&run.origin(), "12.6").unwrap();
    assert_eq!(sample::file_at(&run.origin(), &commit, ".env.local").unwrap(), None);
}

#[tokio::test]
async fn a_model_writing_the_configured_token_is_dead_lettered_as_secret_detected_and_nothing_is_pushed() {
    let token = planted_token("PUSHED");
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    sample::create_origin(&origin, "main", SAMPLE_FILES).unwrap();
    let leak = format!("# settings\nhost = example.org\napi = {token}\n");
    let script = Script::steps([
        Step::ToolCalls(vec![write(GREET_PATH, GREET_CONTENT), write("config/settings.ini", &leak)]),
        finish("added"),
    ]);
    let llm = scripted::start(script).await.unwrap();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let names = TopologyNames::isolated(&format!("test.secpush.{suffix}"));
    let session = AmqpSession::connect(common::AMQP_URL, "security-push").await.unwrap();
    session.declare(&names).await.unwrap();
    let task = sample::sample_task(&format!("file://{}", origin.display()), "12.7");
    std::fs::write(dir.path().join("config.yaml"), with_local_git(&names.config_yaml(), dir.path())).unwrap();
    std::fs::write(dir.path().join("task.json"), serde_json::to_vec(&task).unwrap()).unwrap();

    let worker = publish_and_work(dir.path(), &llm.base_url(), &token).await;
    assert!(worker.status.success(), "{}", String::from_utf8_lossy(&worker.stderr));

    let letters = browse_queue(&session, &names.dead_letter_queue, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].header_text("x-failure-kind").as_deref(), Some("secret_detected"));
    assert_eq!(
        letters[0].header_text("x-failure-message").as_deref(),
        Some("the commit adds 1 secret(s), push refused: config/settings.ini:3: a known secret")
    );
    assert_eq!(sample::branch_head(&origin, "feature/task-greeter-12.7").unwrap(), None);
    let diff = std::fs::read_to_string(dir.path().join("artifacts/greeter/12.7/diff.patch")).unwrap();
    assert!(diff.contains("+api = ****"), "{diff}");
    let mut outputs =
        vec![("worker stderr".to_string(), String::from_utf8_lossy(&worker.stderr).to_string())];
    files_under(&dir.path().join("artifacts"), &mut outputs);
    assert_eq!(scan(&outputs, &[&token]), Vec::<(String, String)>::new());
    session.delete(&names).await.unwrap();
}

/// `agent-runner publish task.json` then `worker --once` in `dir` (which holds both files),
/// with the git token set; returns the worker's output.
async fn publish_and_work(dir: &Path, base_url: &str, token: &str) -> Output {
    let (dir_path, base_url, token) = (dir.to_path_buf(), base_url.to_string(), token.to_string());
    tokio::task::spawn_blocking(move || {
        let artifacts = format!("file://{}", dir_path.join("artifacts").display());
        let common_args = ["--config", "config.yaml", "--llm-endpoint", &base_url];
        let secrets = [("GIT_TOKEN", token.as_str())];
        let published = binary(&dir_path, &[&common_args[..], &["publish", "task.json"]].concat(), &secrets);
        assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
        let global =
            [&common_args[..], &["--artifact-store-url", &artifacts, "--pool-dir", "slots"]].concat();
        binary(&dir_path, &[&global[..], &["worker", "--once"]].concat(), &secrets)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn dlq_show_prints_a_dead_letter_carrying_the_token_masked_and_keeps_the_body_for_replay() {
    let token = planted_token("DLQSHOW");
    let harness = common::Harness::new("secdlq", Script::steps([])).await;
    // No repository: refused before anything runs and dead-lettered with its body intact.
    let mut task = sample::sample_task("", "12.8");
    task["title"] = json!(format!("Deploy with {token}"));
    task.as_object_mut().unwrap().remove("repo_url");
    harness.publish("task.greeter", &serde_json::to_vec(&task).unwrap()).await;
    let dir = harness.dir.path().to_path_buf();
    std::fs::write(dir.join("config.yaml"), with_local_git(&harness.names.config_yaml(), &dir)).unwrap();
    let (base_url, token_env) = (harness.llm.base_url(), token.clone());
    let outputs = tokio::task::spawn_blocking(move || {
        let secrets = [("GIT_TOKEN", token_env.as_str())];
        let global = ["--config", "config.yaml", "--llm-endpoint", &base_url, "--pool-dir", "slots"];
        let worker = binary(&dir, &[&global[..], &["worker", "--once"]].concat(), &secrets);
        assert!(worker.status.success(), "{}", String::from_utf8_lossy(&worker.stderr));
        let plain = binary(&dir, &["--config", "config.yaml", "dlq", "show", "12.8"], &secrets);
        let json = binary(&dir, &["--config", "config.yaml", "dlq", "show", "12.8", "--json"], &secrets);
        [plain, json]
    })
    .await
    .unwrap();
    let letters = browse_queue(&harness.session, &harness.names.dead_letter_queue, 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].header_text("x-failure-kind").as_deref(), Some("validation"));
    let escaped = serde_json::to_string(&token).unwrap();
    assert!(letters[0].body.contains(escaped.trim_matches('"')), "the stored body stays replayable");
    for output in &outputs {
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(output.status.success() && stdout.contains("Deploy with ****"), "{stdout}");
        assert_eq!(scan(&[("dlq show".into(), stdout)], &[&token]), Vec::<(String, String)>::new());
    }
    harness.cleanup().await;
}
