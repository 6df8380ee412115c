//! A git server over smart HTTP for the tests: `git http-backend` behind a small axum
//! server of the test's own, which can be down (503) or stumble for a few requests, refuse every request with
//! `401 Basic`, or redirect every request to another server; it records the
//! `Authorization` header of every request it receives.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncWriteExt;

/// What the server does with a request while it is up.
#[derive(Clone)]
pub enum Behaviour {
    /// Serves the repositories under this directory.
    Serve(PathBuf),
    /// Answers `401` with `WWW-Authenticate: Basic`, whatever the request carries.
    RefuseWithBasicAuth,
    /// Answers `302` to the same path and query on this base URL (`http://host:port`).
    RedirectTo(String),
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    pub path_and_query: String,
    pub authorization: Option<String>,
}

/// A running server; stopped when dropped.
pub struct GitHttpServer {
    pub addr: SocketAddr,
    /// While false, every request gets `503`.
    pub up: Arc<AtomicBool>,
    /// This many next requests get `503` (while up), counting down: a remote that
    /// stumbles a few times and then serves.
    pub fail_next: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl GitHttpServer {
    /// A server with `behaviour`, up (`true`) or down from the start.
    pub async fn start(behaviour: Behaviour, up: bool) -> GitHttpServer {
        let up = Arc::new(AtomicBool::new(up));
        let fail_next = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = (behaviour, up.clone(), fail_next.clone(), seen.clone());
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (behaviour, up, fail_next, seen) = state.clone();
                async move {
                    let authorization =
                        headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
                    let path_and_query = uri.path_and_query().map_or_else(String::new, |p| p.to_string());
                    seen.lock()
                        .unwrap()
                        .push(SeenRequest { path_and_query: path_and_query.clone(), authorization });
                    let stumbles =
                        fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                    if !up.load(Ordering::SeqCst) || stumbles.is_ok() {
                        return (StatusCode::SERVICE_UNAVAILABLE, "remote down for maintenance")
                            .into_response();
                    }
                    match behaviour {
                        Behaviour::Serve(root) => http_backend(&root, &method, &uri, &headers, body).await,
                        Behaviour::RefuseWithBasicAuth => {
                            (StatusCode::UNAUTHORIZED, [("www-authenticate", "Basic realm=\"git\"")], "")
                                .into_response()
                        }
                        Behaviour::RedirectTo(base) => {
                            (StatusCode::FOUND, [("location", format!("{base}{path_and_query}"))], "")
                                .into_response()
                        }
                    }
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
        GitHttpServer { addr, up, fail_next, seen, _stop: stop }
    }

    /// `http://127.0.0.1:PORT`, the server's origin.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of `repository` on this server.
    pub fn url(&self, repository: &str) -> String {
        format!("{}/{repository}", self.origin())
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
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
