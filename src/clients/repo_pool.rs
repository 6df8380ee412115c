//! The Repo Pool Manager: workspace slots allocated and released over REST.

use std::path::PathBuf;

use reqwest::{Method, Url};
use serde::{Deserialize, Serialize};

use super::{ClientError, ClientSettings, RestClient, Service};

/// A slot the Repo Pool handed out: `{slot_id, slot_path}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SlotAllocation {
    pub slot_id: String,
    /// A clone of the repository, on a filesystem this worker shares with the pool.
    pub slot_path: PathBuf,
}

/// `GET /slots/{slot_id}`: what the pool says about one slot. Only the id is required;
/// the pool's other fields are kept as they came.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SlotState {
    pub slot_id: String,
    /// `allocated`, `available`, ... as the pool names its states (`status` accepted too).
    #[serde(default, alias = "status")]
    pub state: Option<String>,
    #[serde(default)]
    pub slot_path: Option<PathBuf>,
    /// Everything else the pool said (holder, timestamps).
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct AllocateRequest<'a> {
    repo_url: &'a str,
    /// Who holds the slot: `<runner_id>/<spec>/<task_id>`, for the pool's bookkeeping.
    required_by: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_seconds: Option<u64>,
}

/// A Repo Pool client.
#[derive(Debug, Clone)]
pub struct RepoPoolClient {
    rest: RestClient,
}

impl RepoPoolClient {
    pub fn new(base: Url, settings: ClientSettings) -> Result<Self, ClientError> {
        Ok(RepoPoolClient { rest: RestClient::new(Service::RepoPool, base, settings)? })
    }

    /// `POST /slots/allocate`. `timeout_seconds` is how long the pool may hold the slot
    /// for us before reclaiming it (the task's deadline), so a crashed worker's slot
    /// does not stay taken forever.
    pub async fn allocate(
        &self,
        repo_url: &str,
        required_by: &str,
        timeout_seconds: Option<u64>,
    ) -> Result<SlotAllocation, ClientError> {
        let url = self.rest.url(&["slots", "allocate"]);
        let request = AllocateRequest { repo_url, required_by, timeout_seconds };
        let body = self.rest.send(Method::POST, url.clone(), |r| r.json(&request)).await?;
        let slot: SlotAllocation = self.rest.decode(&format!("POST {}", url.path()), &body)?;
        if slot.slot_id.is_empty() || !slot.slot_path.is_absolute() {
            return Err(ClientError::BadAnswer {
                service: Service::RepoPool,
                call: format!("POST {}", url.path()),
                reason: format!("slot_id must be non-empty and slot_path absolute, got {slot:?}"),
            });
        }
        Ok(slot)
    }

    /// `GET /slots/{slot_id}`: the slot as the pool sees it.
    pub async fn slot(&self, slot_id: &str) -> Result<SlotState, ClientError> {
        let url = self.rest.url(&["slots", slot_id]);
        let body = self.rest.send(Method::GET, url.clone(), |r| r).await?;
        self.rest.decode(&format!("GET {}", url.path()), &body)
    }

    /// `GET /health`: whether the pool answers 2xx.
    pub async fn health(&self) -> Result<(), ClientError> {
        self.rest.send(Method::GET, self.rest.url(&["health"]), |r| r).await.map(drop)
    }

    /// `POST /slots/{slot_id}/release`. Releasing twice is harmless for the pool.
    pub async fn release(&self, slot_id: &str) -> Result<(), ClientError> {
        let url = self.rest.url(&["slots", slot_id, "release"]);
        self.rest.send(Method::POST, url, |r| r).await.map(drop)
    }
}

/// A slot held from the Repo Pool for one task. [`PooledSlot::release`] gives it back;
/// if the holder is dropped without that (the task's future was aborted, a panic), the
/// release is sent from a spawned task instead, so no outcome leaves a slot taken.
#[derive(Debug)]
pub struct PooledSlot {
    client: RepoPoolClient,
    /// The pool's id for the slot.
    pub slot_id: String,
    released: bool,
}

impl PooledSlot {
    pub fn new(client: RepoPoolClient, slot_id: String) -> Self {
        PooledSlot { client, slot_id, released: false }
    }

    /// The pool client this slot came from (to ask about the slot after a failed release).
    pub fn client(&self) -> &RepoPoolClient {
        &self.client
    }

    /// Releases the slot, waiting for the pool's answer.
    pub async fn release(mut self) -> Result<(), ClientError> {
        self.released = true;
        self.client.release(&self.slot_id).await
    }
}

impl Drop for PooledSlot {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (client, slot_id) = (self.client.clone(), self.slot_id.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = client.release(&slot_id).await {
                        tracing::warn!(%error, slot_id, "slot release after an interrupted task failed");
                    }
                });
            }
            Err(_) => tracing::warn!(slot_id, "slot not released: no runtime to send the release from"),
        }
    }
}
