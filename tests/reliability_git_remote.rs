//! The git remote unavailable for a while: the task is retried with a delay and then
//! completes. The remote is real git over smart HTTP (`git http-backend` behind a small
//! server of the test's own), which answers 503 until the test brings it back.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent_runner::amqp::RetryQueues;
use agent_runner::demo::sample;
use agent_runner::llm::scripted::Script;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::Harness;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// A smart-HTTP git server for the repositories under `root`, switchable off.
struct GitHttpServer {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl GitHttpServer {
    async fn start(root: PathBuf) -> GitHttpServer {
        let up = Arc::new(AtomicBool::new(false));
        let state = (root, up.clone());
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (root, up) = state.clone();
                async move {
                    if !up.load(Ordering::SeqCst) {
                        return (StatusCode::SERVICE_UNAVAILABLE, "remote down for maintenance")
                            .into_response();
                    }
                    http_backend(&root, &method, &uri, &headers, body).await
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        GitHttpServer { addr, up, _stop: stop }
    }

    fn url(&self, repository: &str) -> String {
        format!("http://{}/{repository}", self.addr)
    }
}

/// Runs `git http-backend` as a CGI program for one request.
async fn http_backend(root: &Path, method: &Method, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", method.as_str())
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", "agent-runner")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&body).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    // CGI output: headers, a blank line, the body.
    let split = output.stdout.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let split = split.or_else(|| output.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "bad CGI output").into_response();
    };
    let mut response = Response::new(axum::body::Body::from(output.stdout[end + gap..].to_vec()));
    for line in String::from_utf8_lossy(&output.stdout[..end]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(500);
            *response.status_mut() = StatusCode::from_u16(code).unwrap();
        } else if let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::try_from(name), axum::http::HeaderValue::try_from(value))
        {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

#[tokio::test]
async fn a_git_remote_down_for_a_while_is_retried_later_and_the_task_completes() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("retry-remote", Script::responder(move |_| answer.clone())).await;
    let status = std::process::Command::new("git")
        .args(["--git-dir", &harness.origin.display().to_string(), "config", "http.receivepack", "true"])
        .status()
        .unwrap();
    assert!(status.success());
    let server = GitHttpServer::start(harness.dir.path().to_path_buf()).await;
    let mut config = harness.config();
    config.reliability.retry_delays = vec![Duration::from_secs(1)];
    config.reliability.max_attempts = 3;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "task.#").await.unwrap();
    let task = sample::sample_task(&server.url("origin.git"), "g.1");
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;

    let (report, retrying) = tokio::join!(harness.run_worker(config.clone(), 1, 2), async {
        loop {
            let body = tap.next_body(Duration::from_secs(60)).await.expect("TaskRetrying in time");
            let event: Value = serde_json::from_slice(&body).unwrap();
            if event["type"] == "TaskRetrying" {
                server.up.store(true, Ordering::SeqCst); // the remote is back
                return event;
            }
        }
    });
    assert_eq!((report.acked, report.retried, report.dead_lettered), (1, 1, 0));
    assert_eq!(
        (&retrying["data"]["next_attempt"], &retrying["data"]["reason"]),
        (&json!(2), &json!("workspace_preparation"))
    );
    let (commit, message) =
        sample::branch_head(&harness.origin, "feature/task-greeter-g.1").unwrap().unwrap();
    assert!(message.starts_with("feat(task-g.1): Add the greet command"));
    assert_eq!(
        sample::file_at(&harness.origin, &commit, sample::GREET_PATH).unwrap().as_deref(),
        Some(sample::GREET_CONTENT)
    );
    // The model was asked once: the first attempt never got past the clone.
    assert_eq!(harness.llm.requests().len(), 1);

    let retry = RetryQueues {
        work_queue: harness.names.work_queue.clone(),
        delays: config.reliability.retry_delays.clone(),
    };
    retry.delete(&harness.session).await.unwrap();
    harness.cleanup().await;
}
