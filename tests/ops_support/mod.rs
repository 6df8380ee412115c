//! Test support for the operations tests: a recording HTTP fake for the NecroCode
//! services (Task Registry, Repo Pool, Artifact Store), and a runner on embedded parts.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_runner::config::{self, ArtifactStoreLocation, ConfigOverrides, RunnerConfig};
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// One request the fake received, and the status it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The query string, if any (`uri=...`), as sent.
    pub query: Option<String>,
    /// The `Idempotency-Key` header, if any.
    pub key: Option<String>,
    /// JSON bodies as sent; multipart forms as an object of their fields (text).
    pub body: Value,
    pub status: u16,
}

/// What the fake answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply { status: 200, headers: vec![], body: body.to_string() }
    }
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: vec![], body: json!({ "error": "fake" }).to_string() }
    }
}

type Responder = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A recording HTTP server on a free port.
#[derive(Clone)]
pub struct FakeService {
    pub addr: SocketAddr,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    changed: Arc<Notify>,
}

impl FakeService {
    /// Starts a fake answering each request with `responder`.
    pub async fn start(responder: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> FakeService {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeService {
            addr: listener.local_addr().unwrap(),
            recorded: Arc::default(),
            changed: Arc::default(),
        };
        let responder: Responder = Arc::new(responder);
        let state = fake.clone();
        let app = axum::Router::new().fallback(move |request: Request| {
            let (state, responder) = (state.clone(), responder.clone());
            async move { state.answer(request, &responder).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    async fn answer(&self, request: Request, responder: &Responder) -> Response {
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().map(str::to_string);
        let key = header(request.headers(), "idempotency-key");
        let body = body_of(request).await;
        let mut recorded = Recorded { method, path, query, key, body, status: 0 };
        let reply = responder(&recorded);
        recorded.status = reply.status;
        self.recorded.lock().unwrap().push(recorded);
        self.changed.notify_waiters();
        let mut response = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
        for (name, value) in reply.headers {
            response = response.header(name, value);
        }
        response.header("content-type", "application/json").body(Body::from(reply.body)).unwrap()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    /// The requests the fake accepted (2xx).
    pub fn accepted(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| (200..300).contains(&r.status)).collect()
    }

    /// Waits until `done` holds for the recorded requests (bounded: 60 s).
    pub async fn wait_until(&self, done: impl Fn(&[Recorded]) -> bool) -> Vec<Recorded> {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                let requests = self.requests();
                if done(&requests) {
                    return requests;
                }
                changed.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait).await.expect("the fake saw the expected requests")
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn body_of(request: Request) -> Value {
    let multipart = header(request.headers(), "content-type").is_some_and(|t| t.starts_with("multipart/"));
    if multipart {
        let mut form = Multipart::from_request(request, &()).await.unwrap();
        let mut fields = serde_json::Map::new();
        while let Some(field) = form.next_field().await.unwrap() {
            let name = field.name().unwrap_or_default().to_string();
            fields.insert(name, Value::String(field.text().await.unwrap()));
        }
        return Value::Object(fields);
    }
    let bytes = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap();
    if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
}

/// A fake Repo Pool: allocations clone `origin` into a fresh directory under `slots`;
/// `on_allocate` runs as each allocation is answered.
pub async fn fake_repo_pool(
    origin: PathBuf,
    slots: PathBuf,
    on_allocate: impl Fn() + Send + Sync + 'static,
) -> FakeService {
    let next = Arc::new(Mutex::new(0u32));
    FakeService::start(move |request| {
        if request.path == "/slots/allocate" {
            let n = {
                let mut next = next.lock().unwrap();
                *next += 1;
                *next
            };
            let path = slots.join(format!("pool-slot-{n}"));
            let cloned = std::process::Command::new("git")
                .args(["clone", "-q"])
                .arg(&origin)
                .arg(&path)
                .status()
                .unwrap();
            assert!(cloned.success());
            on_allocate();
            return Reply::ok(json!({ "slot_id": format!("slot-{n}"), "slot_path": path }));
        }
        Reply::ok(json!({}))
    })
    .await
}

/// A runner configuration on embedded defaults inside `dir`, asking the model at `llm`.
pub fn runner_config(dir: &Path, llm: &str) -> RunnerConfig {
    let overrides = ConfigOverrides {
        llm_endpoint: Some(llm.to_string()),
        pool_dir: Some(dir.join("slots")),
        playbooks_dir: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks")),
        runner_id: Some("ops-runner".into()),
        ..ConfigOverrides::default()
    };
    let mut config = config::load(None, &|_| None, &overrides).unwrap();
    config.services.artifact_store = ArtifactStoreLocation::Filesystem(dir.join("artifacts"));
    // The origins the ops tests create live under `dir`.
    config.git.allowed_remotes.push(agent_runner::git::RemotePrefix::local_directory(dir).unwrap());
    config
}
