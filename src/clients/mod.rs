//! REST clients for the NecroCode services the runner talks to (DESIGN.md §5; the
//! contract is written down in `docs/api/`): the Task Registry (status, events, artifact
//! records; a task's record), the Repo Pool Manager (slots and their state) and the
//! Artifact Store (uploads, downloads, metadata); each answers `/health`. `startup`
//! checks the configured ones when a worker starts.
//!
//! All three share one transport ([`RestClient`]): a reqwest client with connect and
//! request timeouts, retries with exponential backoff for transient failures (connection
//! errors, timeouts, 408/425/429/5xx), `Retry-After` honoured on 429 and 503, and errors
//! that name the service, the call and the cause. Which failures are transient is
//! decided once, on [`ClientError`], and feeds both the retry loop here and the
//! pipeline's dead-letter decision (`Classify`).

mod artifact_store;
mod error;
mod repo_pool;
mod rest;
pub(crate) mod retry;
mod startup;
mod task_registry;

pub use artifact_store::ArtifactStoreClient;
pub use error::{ClientError, Service};
pub use repo_pool::{PooledSlot, RepoPoolClient, SlotAllocation, SlotState};
pub use rest::{ClientSettings, RestClient};
pub use startup::{STARTUP_HEALTH_TIMEOUT, check_services_at_startup};
pub use task_registry::{ArtifactRecord, EventRecord, StatusUpdate, TaskRegistryClient};

/// Seconds since the Unix epoch: the original clients' timestamp format.
pub(crate) fn epoch_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}
