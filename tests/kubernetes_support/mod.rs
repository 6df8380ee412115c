//! A Kubernetes API stand-in at the HTTP level, for the kubernetes execution mode's tests:
//! the Job calls the worker makes (create, get, list, watch, delete; list pods, pod log)
//! served by axum, so kube's real client talks to it through a kubeconfig.
//!
//! It "runs" each Job as the kubelet would run its pod, but locally: the container's
//! command with the real `agent-runner` binary, only the container's environment, each
//! `emptyDir` and projected Secret as a directory of its own (mount paths in the
//! environment and arguments point there), the termination message read back from the
//! file the pod wrote, `activeDeadlineSeconds` enforced, and deletion killing the
//! process. Every request is recorded for the tests' assertions.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A request's query parameters, decoded.
struct Params(BTreeMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let url = reqwest::Url::parse(&format!("http://stand-in{}", parts.uri)).ok();
        Ok(Params(url.map(|u| u.query_pairs().into_owned().collect()).unwrap_or_default()))
    }
}

/// One Job and its single pod.
struct JobRecord {
    job: Value,
    pod: Value,
    log: Arc<Mutex<Vec<u8>>>,
    started: bool,
    stop: CancellationToken,
}

#[derive(Default)]
struct Cluster {
    jobs: BTreeMap<String, JobRecord>,
    version: u64,
    requests: Vec<String>,
    /// Secret name → key → value.
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// How many pods were started (processes run).
    pods_started: usize,
    /// Every Job created, as the worker sent it.
    created: Vec<Value>,
}

#[derive(Clone)]
struct StandIn {
    cluster: Arc<Mutex<Cluster>>,
    changed: tokio::sync::watch::Sender<u64>,
    binary: PathBuf,
    root: PathBuf,
    /// How long a pod takes before its process starts (scheduling, image pull).
    start_delay: Duration,
}

/// The running stand-in.
pub struct KubeApi {
    state: StandIn,
    pub url: String,
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code.as_u16() });
    (code, Json(body)).into_response()
}

impl KubeApi {
    /// Serves on a free port; pods run `binary` with their directories under `root`.
    pub async fn start(binary: &Path, root: &Path, start_delay: Duration) -> KubeApi {
        let (changed, _) = tokio::sync::watch::channel(0);
        let state = StandIn {
            cluster: Arc::default(),
            changed,
            binary: binary.to_path_buf(),
            root: root.to_path_buf(),
            start_delay,
        };
        let app = Router::new()
            .route("/apis/batch/v1/namespaces/{ns}/jobs", get(list_or_watch_jobs).post(create_job))
            .route("/apis/batch/v1/namespaces/{ns}/jobs/{name}", get(get_job).delete(delete_job))
            .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
            .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        KubeApi { state, url }
    }

    /// A kubeconfig pointing at the stand-in, namespace `namespace`.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: stand-in\n  cluster:\n    server: {}\n\
             users:\n- name: worker\n  user: {{}}\ncontexts:\n- name: stand-in\n  context:\n    cluster: stand-in\n    \
             user: worker\n    namespace: {namespace}\ncurrent-context: stand-in\n",
            self.url
        );
        std::fs::write(path, text).unwrap();
    }

    pub fn add_secret(&self, name: &str, data: &[(&str, &str)]) {
        let data = data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state.cluster.lock().unwrap().secrets.insert(name.to_string(), data);
    }

    /// `METHOD path` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.cluster.lock().unwrap().requests.clone()
    }

    pub fn created(&self) -> Vec<Value> {
        self.state.cluster.lock().unwrap().created.clone()
    }

    pub fn pods_started(&self) -> usize {
        self.state.cluster.lock().unwrap().pods_started
    }

    /// The Job named `name` as stored (the manifest the worker sent, with its status).
    pub fn job(&self, name: &str) -> Option<Value> {
        self.state.cluster.lock().unwrap().jobs.get(name).map(|r| r.job.clone())
    }

    pub fn job_names(&self) -> Vec<String> {
        self.state.cluster.lock().unwrap().jobs.keys().cloned().collect()
    }
}

impl StandIn {
    fn record(&self, request: String) {
        self.cluster.lock().unwrap().requests.push(request);
    }

    /// Bumps the resource version, stamps it on `name`'s objects, wakes the watchers.
    fn touch(&self, cluster: &mut Cluster, name: &str) {
        cluster.version += 1;
        let version = cluster.version.to_string();
        if let Some(record) = cluster.jobs.get_mut(name) {
            record.job["metadata"]["resourceVersion"] = json!(version);
            record.pod["metadata"]["resourceVersion"] = json!(version);
        }
        let _ = self.changed.send(cluster.version);
    }
}

async fn create_job(
    State(s): State<StandIn>,
    UrlPath(ns): UrlPath<String>,
    Json(mut job): Json<Value>,
) -> Response {
    s.record(format!("POST jobs/{}", job["metadata"]["name"].as_str().unwrap_or("")));
    let Some(name) = job["metadata"]["name"].as_str().map(str::to_string) else {
        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "metadata.name: Required value".into());
    };
    let mut cluster = s.cluster.lock().unwrap();
    if cluster.jobs.contains_key(&name) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("jobs.batch \"{name}\" already exists"),
        );
    }
    cluster.created.push(job.clone());
    job["metadata"]["namespace"] = json!(ns);
    job["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    job["metadata"]["creationTimestamp"] = json!(now());
    job["status"] = json!({ "startTime": now(), "active": 1 });
    let suffix: String =
        uuid::Uuid::new_v4().simple().to_string().chars().filter(char::is_ascii_lowercase).take(5).collect();
    let mut labels = job["spec"]["template"]["metadata"]["labels"].clone();
    labels["job-name"] = json!(name);
    labels["batch.kubernetes.io/job-name"] = json!(name);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": format!("{name}-{suffix}"), "namespace": ns, "labels": labels, "creationTimestamp": now() },
        "spec": job["spec"]["template"]["spec"].clone(),
        "status": { "phase": "Pending" },
    });
    let stop = CancellationToken::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let record = JobRecord { job: job.clone(), pod, log: log.clone(), started: false, stop: stop.clone() };
    cluster.jobs.insert(name.clone(), record);
    s.touch(&mut cluster, &name);
    let created = cluster.jobs[&name].job.clone();
    drop(cluster);
    tokio::spawn(run_pod(s.clone(), name, job, log, stop));
    (StatusCode::CREATED, Json(created)).into_response()
}

async fn get_job(State(s): State<StandIn>, UrlPath((_, name)): UrlPath<(String, String)>) -> Response {
    s.record(format!("GET jobs/{name}"));
    match s.cluster.lock().unwrap().jobs.get(&name) {
        Some(record) => Json(record.job.clone()).into_response(),
        None => status(StatusCode::NOT_FOUND, "NotFound", format!("jobs.batch \"{name}\" not found")),
    }
}

async fn delete_job(State(s): State<StandIn>, UrlPath((_, name)): UrlPath<(String, String)>) -> Response {
    s.record(format!("DELETE jobs/{name}"));
    let mut cluster = s.cluster.lock().unwrap();
    let Some(record) = cluster.jobs.remove(&name) else {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("jobs.batch \"{name}\" not found"));
    };
    record.stop.cancel();
    s.touch(&mut cluster, &name);
    Json(json!({ "kind": "Status", "apiVersion": "v1", "status": "Success", "details": { "name": name } }))
        .into_response()
}

/// The name a `metadata.name=` field selector asks for.
fn selected_name(params: &BTreeMap<String, String>) -> Option<String> {
    params.get("fieldSelector")?.strip_prefix("metadata.name=").map(str::to_string)
}

async fn list_or_watch_jobs(State(s): State<StandIn>, Params(params): Params) -> Response {
    if params.get("watch").is_some_and(|w| w == "true" || w == "1") {
        let Some(name) = selected_name(&params) else {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the stand-in watches one job by name".into(),
            );
        };
        s.record(format!("WATCH jobs/{name}"));
        let since: u64 = params.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
        let seconds: u64 = params.get("timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(60);
        return watch_job(s, name, since, Duration::from_secs(seconds));
    }
    s.record("LIST jobs".to_string());
    let cluster = s.cluster.lock().unwrap();
    let items: Vec<Value> = cluster.jobs.values().map(|r| r.job.clone()).collect();
    Json(json!({ "kind": "JobList", "apiVersion": "batch/v1",
                 "metadata": { "resourceVersion": cluster.version.to_string() }, "items": items }))
    .into_response()
}

/// Streams a watch event whenever the job's resource version moves past `since`, and one
/// `DELETED` when it goes, until `limit`.
fn watch_job(s: StandIn, name: String, since: u64, limit: Duration) -> Response {
    let changes = s.changed.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    let stream = futures_util::stream::unfold((changes, since, false), move |(mut changes, seen, done)| {
        let (s, name) = (s.clone(), name.clone());
        async move {
            if done {
                return None;
            }
            loop {
                let current = {
                    let cluster = s.cluster.lock().unwrap();
                    cluster.jobs.get(&name).map(|r| r.job.clone())
                };
                let event = match current {
                    None => Some((
                        json!({ "type": "DELETED", "object": { "metadata": { "name": name } } }),
                        seen,
                        true,
                    )),
                    Some(job) => {
                        let version: u64 = job["metadata"]["resourceVersion"]
                            .as_str()
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        (version > seen)
                            .then(|| (json!({ "type": "MODIFIED", "object": job }), version, false))
                    }
                };
                if let Some((event, seen, done)) = event {
                    let line = Bytes::from(format!("{event}\n"));
                    return Some((Ok::<_, std::io::Error>(line), (changes, seen, done)));
                }
                match tokio::time::timeout_at(deadline, changes.changed()).await {
                    Ok(Ok(())) => continue,
                    _ => return None,
                }
            }
        }
    });
    Response::new(Body::from_stream(stream))
}

async fn list_pods(State(s): State<StandIn>, Params(params): Params) -> Response {
    s.record("LIST pods".to_string());
    let wanted = params.get("labelSelector").and_then(|l| l.strip_prefix("job-name=")).map(str::to_string);
    let cluster = s.cluster.lock().unwrap();
    let items: Vec<Value> = cluster
        .jobs
        .iter()
        .filter(|(name, _)| wanted.as_ref().is_none_or(|w| w == *name))
        .map(|(_, r)| r.pod.clone())
        .collect();
    Json(json!({ "kind": "PodList", "apiVersion": "v1",
                 "metadata": { "resourceVersion": cluster.version.to_string() }, "items": items }))
    .into_response()
}

async fn pod_log(
    State(s): State<StandIn>,
    UrlPath((_, pod)): UrlPath<(String, String)>,
    Params(params): Params,
) -> Response {
    s.record(format!("LOG pods/{pod}"));
    let found = {
        let cluster = s.cluster.lock().unwrap();
        cluster
            .jobs
            .iter()
            .find(|(_, r)| r.pod["metadata"]["name"] == json!(pod))
            .map(|(name, r)| (name.clone(), r.log.clone(), r.started))
    };
    let Some((job, log, started)) = found else {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("pods \"{pod}\" not found"));
    };
    if !started {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("container \"task\" in pod \"{pod}\" is waiting to start"),
        );
    }
    let follow = params.get("follow").is_some_and(|f| f == "true");
    let stream = futures_util::stream::unfold(0usize, move |sent| {
        let (s, job, log) = (s.clone(), job.clone(), log.clone());
        async move {
            loop {
                let (chunk, finished) = {
                    let cluster = s.cluster.lock().unwrap();
                    let ended =
                        cluster.jobs.get(&job).is_none_or(|r| r.pod["status"]["phase"] != json!("Running"));
                    (log.lock().unwrap()[sent..].to_vec(), ended)
                };
                if !chunk.is_empty() {
                    return Some((Ok::<_, std::io::Error>(Bytes::from(chunk.clone())), sent + chunk.len()));
                }
                if finished || !follow {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    Response::new(Body::from_stream(stream))
}

/// The kubelet's part: prepares the pod's volumes, runs its container locally, records
/// how it ended in the pod's and the Job's status.
async fn run_pod(s: StandIn, name: String, job: Value, log: Arc<Mutex<Vec<u8>>>, stop: CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(s.start_delay) => {}
        () = stop.cancelled() => return,
    }
    let pod_dir = s.root.join(&name).join(uuid::Uuid::new_v4().simple().to_string());
    let spec = &job["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for mount in container["volumeMounts"].as_array().into_iter().flatten() {
        let volume_name = mount["name"].as_str().unwrap_or_default();
        let local = pod_dir.join("volumes").join(volume_name);
        std::fs::create_dir_all(&local).unwrap();
        let volume =
            spec["volumes"].as_array().into_iter().flatten().find(|v| v["name"] == json!(volume_name));
        for source in volume.and_then(|v| v["projected"]["sources"].as_array()).into_iter().flatten() {
            let secret = source["secret"]["name"].as_str().unwrap_or_default();
            let data = s.cluster.lock().unwrap().secrets.get(secret).cloned().unwrap_or_default();
            for (key, value) in data {
                std::fs::write(local.join(key), value).unwrap();
            }
        }
        mounts.push((mount["mountPath"].as_str().unwrap_or_default().to_string(), local));
    }
    let termination = pod_dir.join("termination-log");
    let termination_path =
        container["terminationMessagePath"].as_str().unwrap_or("/dev/termination-log").to_string();
    mounts.push((termination_path, termination.clone()));
    let local = |value: &str| -> String {
        for (path, dir) in &mounts {
            if value == path {
                return dir.display().to_string();
            }
            if let Some(rest) = value.strip_prefix(&format!("{path}/")) {
                return dir.join(rest).display().to_string();
            }
        }
        value.to_string()
    };
    let tmp =
        mounts.iter().find(|(p, _)| p == "/tmp").map(|(_, d)| d.clone()).unwrap_or_else(|| pod_dir.clone());
    let mut command = tokio::process::Command::new(&s.binary);
    let args: Vec<String> =
        container["args"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).map(local).collect();
    command.args(&args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.env("HOME", &tmp).env("TMPDIR", &tmp).current_dir(&tmp);
    for variable in container["env"].as_array().into_iter().flatten() {
        let value = variable["value"].as_str().unwrap_or_default();
        command.env(variable["name"].as_str().unwrap_or_default(), local(value));
    }
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    {
        let mut cluster = s.cluster.lock().unwrap();
        cluster.pods_started += 1;
        let Some(record) = cluster.jobs.get_mut(&name) else { return };
        record.started = true;
        record.pod["status"] = json!({ "phase": "Running", "startTime": now(), "containerStatuses": [
            { "name": "task", "image": container["image"], "imageID": "", "ready": true, "restartCount": 0,
              "state": { "running": { "startedAt": now() } } }] });
        s.touch(&mut cluster, &name);
    }
    for pipe in [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let log = log.clone();
        tokio::spawn(async move {
            let mut pipe = pipe;
            let mut buffer = [0u8; 8192];
            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut pipe, &mut buffer).await {
                if n == 0 {
                    break;
                }
                log.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
    }
    let deadline = Duration::from_secs(job["spec"]["activeDeadlineSeconds"].as_u64().unwrap_or(3600));
    let (exit_code, condition) = tokio::select! {
        exited = child.wait() => {
            let code = exited.ok().and_then(|s| s.code()).unwrap_or(137);
            (code, if code == 0 { ("Complete", "") } else { ("Failed", "BackoffLimitExceeded") })
        }
        () = tokio::time::sleep(deadline) => {
            let _ = child.kill().await;
            (137, ("Failed", "DeadlineExceeded"))
        }
        () = stop.cancelled() => {
            let _ = child.kill().await;
            return;
        }
    };
    // The pipes drain a moment after the exit.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut message = std::fs::read_to_string(&termination).unwrap_or_default();
    if message.is_empty() && exit_code != 0 {
        let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
        message =
            text.lines().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    }
    message.truncate(4096);
    let mut cluster = s.cluster.lock().unwrap();
    let Some(record) = cluster.jobs.get_mut(&name) else { return };
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    record.pod["status"] = json!({ "phase": if exit_code == 0 { "Succeeded" } else { "Failed" }, "containerStatuses": [
        { "name": "task", "image": container["image"], "imageID": "", "ready": false, "restartCount": 0,
          "state": { "terminated": { "exitCode": exit_code, "reason": reason, "message": message,
                                     "startedAt": now(), "finishedAt": now() } } }] });
    let (kind, why) = condition;
    let mut job_condition = json!({ "type": kind, "status": "True", "lastTransitionTime": now() });
    if !why.is_empty() {
        job_condition["reason"] = json!(why);
    }
    let count = if kind == "Complete" { "succeeded" } else { "failed" };
    record.job["status"] =
        json!({ "startTime": now(), "completionTime": now(), count: 1, "conditions": [job_condition] });
    s.touch(&mut cluster, &name);
}
