//! The task message naming where the worker goes: a remote that should not get the token,
//! a remote the operator never allowed, a redirect away from a token host, a checkout on
//! the host named as a slot, a local path. Real git over smart HTTP (`common::git_http`),
//! real bare repositories, the real worker on the real broker; each test is named for the
//! attack it tries.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use agent_runner::config::RunnerConfig;
use agent_runner::demo::sample;
use agent_runner::events::MemorySink;
use agent_runner::git::{RemotePrefix, TokenHost};
use agent_runner::llm::scripted::Script;
use agent_runner::pipeline::{RunResult, Runner, RunnerSecrets};
use agent_runner::task::parse_task;
use base64::Engine;
use common::Harness;
use common::git_http::{Behaviour, GitHttpServer};
use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "ghp_remotes_test_token_4711";

fn secrets_with_token() -> RunnerSecrets {
    RunnerSecrets { git_token: Some(SecretString::from(TOKEN.to_string())), llm_api_key: None }
}

/// The `Authorization` value a client sends with the token.
fn basic_with_token() -> String {
    let pair = format!("{}:{TOKEN}", agent_runner::git::DEFAULT_TOKEN_USERNAME);
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

fn prefix(text: &str) -> RemotePrefix {
    RemotePrefix::parse(text).unwrap()
}

fn token_hosts(entries: &[&str]) -> Vec<TokenHost> {
    entries.iter().map(|e| TokenHost::parse(e).unwrap()).collect()
}

/// Runs `message` through the pipeline (no broker) of a runner holding the token.
async fn run_with_token(config: &RunnerConfig, message: &serde_json::Value) -> RunResult {
    let runner = Runner::from_config(config, secrets_with_token(), Arc::new(MemorySink::default())).unwrap();
    let task = parse_task(&serde_json::to_vec(message).unwrap()).unwrap();
    runner.run(&task, 1, &CancellationToken::new()).await
}

#[tokio::test]
async fn a_task_naming_a_plain_http_remote_that_asks_for_credentials_never_receives_the_token() {
    let harness = Harness::new("remotes-http", Script::replies(["unused"])).await;
    let server = GitHttpServer::start(Behaviour::RefuseWithBasicAuth, true).await;
    let mut config = harness.config();
    // Allowed as a remote, but the token belongs to github.com only.
    config.git.allowed_remotes.push(prefix(&format!("{}/", server.origin())));
    config.git.token_hosts = token_hosts(&["github.com"]);

    let result = run_with_token(&config, &sample::sample_task(&server.url("org/repo.git"), "t.1")).await;

    let failure = result.error.expect("the clone fails: the server wants credentials");
    assert_eq!((failure.kind.as_str(), failure.step.as_str()), ("workspace_preparation", "slot"));
    assert!(!failure.message.contains(TOKEN));
    let seen = server.seen();
    assert!(!seen.is_empty(), "the server was asked");
    assert!(seen.iter().all(|r| r.authorization.is_none()), "credentials were sent: {seen:?}");
    harness.cleanup().await;
}

#[tokio::test]
async fn a_task_naming_a_remote_outside_allowed_remotes_is_dead_lettered_before_any_request() {
    let harness = Harness::new("remotes-refused", Script::replies(["unused"])).await;
    let server = GitHttpServer::start(Behaviour::RefuseWithBasicAuth, true).await;
    let mut config = harness.config();
    // Even a token host is not a remote a task may name unless it is allowed.
    config.git.token_hosts = token_hosts(&[&server.origin()]);
    let url = server.url("org/repo.git");
    harness.publish("task.backend", &serde_json::to_vec(&sample::sample_task(&url, "t.2")).unwrap()).await;

    let report = harness.run_worker_with(config, secrets_with_token(), 1, 1).await;

    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    assert_eq!(
        harness.only_dead_letter().await,
        (
            "validation".to_string(),
            "validate".to_string(),
            format!("repo_url: {url} is not under any prefix in git.allowed_remotes")
        )
    );
    assert_eq!(server.seen(), [], "a request reached the server");
    assert!(harness.llm.requests().is_empty());
    harness.cleanup().await;
}

#[tokio::test]
async fn a_token_host_named_over_http_explicitly_receives_the_token_once() {
    let harness = Harness::new("remotes-http-host", Script::replies(["unused"])).await;
    let server = GitHttpServer::start(Behaviour::RefuseWithBasicAuth, true).await;
    let mut config = harness.config();
    config.git.allowed_remotes.push(prefix(&format!("{}/", server.origin())));
    config.git.token_hosts = token_hosts(&[&server.origin()]);

    let result = run_with_token(&config, &sample::sample_task(&server.url("org/repo.git"), "t.3")).await;

    assert!(result.error.is_some_and(|f| !f.message.contains(TOKEN)));
    let authorizations: Vec<String> = server.seen().into_iter().filter_map(|r| r.authorization).collect();
    assert_eq!(authorizations, [basic_with_token()], "the gate works both ways: the token went, once");
    harness.cleanup().await;
}

#[tokio::test]
async fn a_redirect_from_a_token_host_to_another_port_never_carries_the_token() {
    let harness = Harness::new("remotes-redirect", Script::replies(["unused"])).await;
    let elsewhere = GitHttpServer::start(Behaviour::RefuseWithBasicAuth, true).await;
    let token_host = GitHttpServer::start(Behaviour::RedirectTo(elsewhere.origin()), true).await;
    let mut config = harness.config();
    config.git.allowed_remotes.push(prefix(&format!("{}/", token_host.origin())));
    config.git.token_hosts = token_hosts(&[&token_host.origin()]);

    let result = run_with_token(&config, &sample::sample_task(&token_host.url("org/repo.git"), "t.4")).await;

    assert!(result.error.is_some_and(|f| !f.message.contains(TOKEN)));
    assert!(!token_host.seen().is_empty());
    let followed = elsewhere.seen();
    assert!(!followed.is_empty(), "libgit2 followed the redirect");
    assert!(
        followed.iter().all(|r| r.authorization.is_none()),
        "the token followed the redirect: {followed:?}"
    );
    assert!(token_host.seen().iter().all(|r| r.authorization.is_none()));
    harness.cleanup().await;
}

/// Every file under `root` (`.git` included) with its bytes, and every symlink's target.
fn tree_snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
            if kind.is_dir() {
                files.insert(format!("{name}/"), Vec::new());
                pending.push(path);
            } else if kind.is_symlink() {
                files.insert(name, std::fs::read_link(&path).unwrap().display().to_string().into_bytes());
            } else {
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[tokio::test]
async fn a_task_naming_a_checkout_on_the_host_as_its_slot_is_dead_lettered_and_the_checkout_is_untouched() {
    let harness = Harness::new("remotes-slot", Script::replies(["unused"])).await;
    // Someone's checkout of another project, mid-work, outside the slot pool.
    let victim = harness.dir.path().join("home/dev/project");
    let other_origin = harness.dir.path().join("other-origin.git");
    sample::create_origin(&other_origin, "main", sample::SAMPLE_FILES).unwrap();
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git").args(args).current_dir(&victim).status().unwrap();
        assert!(status.success(), "git {args:?}");
    };
    std::fs::create_dir_all(&victim).unwrap();
    git(&["clone", "-q", &other_origin.display().to_string(), "."]);
    std::fs::write(victim.join(".gitignore"), "target/\n").unwrap();
    std::fs::write(victim.join(sample::GREET_PATH), "#!/bin/sh\necho work in progress\n").unwrap();
    git(&["add", ".gitignore"]);
    std::fs::write(victim.join("NOTES.md"), "untracked notes\n").unwrap();
    std::fs::create_dir_all(victim.join("target/debug")).unwrap();
    std::fs::write(victim.join("target/debug/app"), "build output").unwrap();
    let before = tree_snapshot(&victim);

    let mut task = sample::sample_task(&harness.repo_url(), "t.5");
    task["slot_id"] = json!("victim");
    task["slot_path"] = json!(victim.display().to_string());
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
    let report = harness.run_worker(harness.config(), 1, 1).await;

    assert_eq!((report.acked, report.dead_lettered), (0, 1));
    let (kind, step, message) = harness.only_dead_letter().await;
    assert_eq!(
        (kind.as_str(), step.as_str(), message),
        (
            "validation",
            "validate",
            format!("slot_path: {} is not under any directory in pool.slot_roots", victim.display())
        )
    );
    // HEAD, the origin URL (in .git/config), the index, the working tree: byte for byte.
    assert_eq!(tree_snapshot(&victim), before);
    assert!(harness.llm.requests().is_empty());
    harness.cleanup().await;
}

#[tokio::test]
async fn a_slot_whose_origin_was_rewritten_to_a_foreign_host_is_refused_before_fetching() {
    let harness = Harness::new("remotes-slot-origin", Script::replies(["unused"])).await;
    let server = GitHttpServer::start(Behaviour::RefuseWithBasicAuth, true).await;
    // A slot of the worker's own pool, whose origin an earlier task's commands rewrote.
    let mut config = harness.config();
    config.git.token_hosts = token_hosts(&[&server.origin()]);
    let slot = config.pool_dir.join("planted");
    std::fs::create_dir_all(&slot).unwrap();
    let origin = harness.origin.display().to_string();
    for args in
        [&["clone", "-q", origin.as_str(), "."][..], &["remote", "set-url", "origin", &server.url("x.git")]]
    {
        let status = std::process::Command::new("git").args(args).current_dir(&slot).status().unwrap();
        assert!(status.success(), "git {args:?}");
    }
    let mut message = sample::sample_task("unused", "t.9");
    message.as_object_mut().unwrap().remove("repo_url");
    message["slot_path"] = json!(slot.display().to_string());

    let result = run_with_token(&config, &message).await;

    let failure = result.error.expect("refused");
    assert_eq!(
        (failure.kind.as_str(), failure.message),
        (
            "validation",
            format!(
                "slot_path: its origin {} is not under any prefix in git.allowed_remotes",
                server.url("x.git")
            )
        )
    );
    assert_eq!(server.seen(), []);
    harness.cleanup().await;
}

#[tokio::test]
async fn a_local_path_as_repo_url_is_refused_unless_a_file_prefix_covers_it() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("remotes-local", Script::responder(move |_| answer.clone())).await;
    let path = harness.origin.display().to_string();
    for (id, prefixes) in
        [("t.6", vec![RemotePrefix::any_https()]), ("t.7", harness.config().git.allowed_remotes)]
    {
        let mut config = harness.config();
        config.git.allowed_remotes = prefixes;
        harness.publish("task.backend", &serde_json::to_vec(&sample::sample_task(&path, id)).unwrap()).await;
        let report = harness.run_worker(config, 1, 1).await;
        let expected = if id == "t.6" { (0, 1) } else { (1, 0) };
        assert_eq!((report.acked, report.dead_lettered), expected, "{id}");
    }

    let (_, _, message) = harness.only_dead_letter().await;
    assert_eq!(message, format!("repo_url: {path} is not under any prefix in git.allowed_remotes"));
    assert!(sample::branch_head(&harness.origin, "feature/task-greeter-t.6").unwrap().is_none());
    let (_, subject) = sample::branch_head(&harness.origin, "feature/task-greeter-t.7").unwrap().unwrap();
    assert!(subject.starts_with("feat(task-t.7)"), "{subject}");
    harness.cleanup().await;
}

#[tokio::test]
async fn a_worker_given_a_token_and_no_token_host_refuses_to_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let names = agent_runner::amqp::TopologyNames::isolated("test.remotes.never-declared");
    std::fs::write(dir.path().join("config.yaml"), names.config_yaml()).unwrap();
    let task = sample::sample_task("https://github.com/org/repo.git", "t.8");
    std::fs::write(dir.path().join("task.json"), serde_json::to_vec(&task).unwrap()).unwrap();
    let binary = env!("CARGO_BIN_EXE_agent-runner");
    for subcommand in [&["worker", "--once"][..], &["run", "--task", "task.json"][..]] {
        let output = std::process::Command::new(binary)
            .args(["--config", "config.yaml"])
            .args(subcommand)
            .current_dir(dir.path())
            .env("GIT_TOKEN", TOKEN)
            .env_remove("OPENAI_API_KEY")
            .env_remove("AMQP_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{subcommand:?} started");
        assert_eq!(
            stderr.trim_end().lines().collect::<Vec<_>>(),
            ["error: invalid git.token_hosts from built-in defaults: a git token is set (GIT_TOKEN) but no \
              host may receive it: list its hosts, e.g. [github.com]"],
            "{subcommand:?}"
        );
        assert!(!stderr.contains(TOKEN));
    }
}
