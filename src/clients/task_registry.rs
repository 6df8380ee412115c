//! The Task Registry: task status, event records and artifact records.

use reqwest::{Method, Url};
use serde::Serialize;

use super::{ClientError, ClientSettings, RestClient, Service};

/// Header carrying a key the registry can deduplicate on: the mirror sends the event id
/// (plus the call), so a call repeated after a mirror restart is recognisably the same.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// `PUT /tasks/{task_id}/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusUpdate {
    /// `in_progress`, `done` or `failed`.
    pub status: String,
    pub metadata: serde_json::Value,
    /// Epoch seconds.
    pub updated_at: i64,
}

/// `POST /tasks/{task_id}/events`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    /// `TaskStarted`, `StepCompleted`, `TaskFailed`, ...
    pub event_type: String,
    pub data: serde_json::Value,
    /// Epoch seconds.
    pub timestamp: i64,
    /// Additions to the original contract: the deterministic event id and RFC 3339 time.
    pub event_id: String,
    pub occurred_at: String,
}

/// `POST /tasks/{task_id}/artifacts`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArtifactRecord {
    /// `diff`, `log`, `test` or `summary`.
    #[serde(rename = "type")]
    pub kind: String,
    pub uri: String,
    pub size_bytes: u64,
    pub metadata: serde_json::Value,
    /// Epoch seconds.
    pub created_at: i64,
}

/// A Task Registry client.
#[derive(Debug, Clone)]
pub struct TaskRegistryClient {
    rest: RestClient,
}

impl TaskRegistryClient {
    pub fn new(base: Url, settings: ClientSettings) -> Result<Self, ClientError> {
        Ok(TaskRegistryClient { rest: RestClient::new(Service::TaskRegistry, base, settings)? })
    }

    /// Sets the task's status.
    pub async fn update_status(
        &self,
        task_id: &str,
        update: &StatusUpdate,
        key: &str,
    ) -> Result<(), ClientError> {
        self.write(Method::PUT, &["tasks", task_id, "status"], update, key).await
    }

    /// Records an event on the task.
    pub async fn add_event(&self, task_id: &str, event: &EventRecord, key: &str) -> Result<(), ClientError> {
        self.write(Method::POST, &["tasks", task_id, "events"], event, key).await
    }

    /// Records an artifact of the task.
    pub async fn add_artifact(
        &self,
        task_id: &str,
        record: &ArtifactRecord,
        key: &str,
    ) -> Result<(), ClientError> {
        self.write(Method::POST, &["tasks", task_id, "artifacts"], record, key).await
    }

    /// `GET /tasks/{task_id}`: the registry's record of the task, as it keeps it (the
    /// contract fixes no shape beyond a JSON object).
    pub async fn task(
        &self,
        task_id: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ClientError> {
        let url = self.rest.url(&["tasks", task_id]);
        let body = self.rest.send(Method::GET, url.clone(), |r| r).await?;
        self.rest.decode(&format!("GET {}", url.path()), &body)
    }

    /// `GET /health`: whether the registry answers 2xx.
    pub async fn health(&self) -> Result<(), ClientError> {
        self.rest.send(Method::GET, self.rest.url(&["health"]), |r| r).await.map(drop)
    }

    async fn write(
        &self,
        method: Method,
        path: &[&str],
        body: &impl Serialize,
        key: &str,
    ) -> Result<(), ClientError> {
        let url = self.rest.url(path);
        self.rest.send(method, url, |r| r.header(IDEMPOTENCY_KEY_HEADER, key).json(body)).await.map(drop)
    }
}
