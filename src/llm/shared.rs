//! The runner's one LLM client, built on first use and shared by every task.
//!
//! One client per worker, not per task: it holds the connection pool and what was learnt
//! about the model (its context window, the sampling fields it refused). Building one is
//! cheap since TLS is shared and reads its roots on the first https call (`crate::tls`);
//! it is still left to the first task, so a worker that never gets one never asks the
//! server anything.

use tokio::sync::OnceCell;

use super::{ImplementError, LlmClient, LlmSettings};
use crate::secrets::Masker;

/// An [`LlmClient`] created lazily from its settings.
pub struct SharedLlmClient {
    settings: LlmSettings,
    /// The worker's secrets, masked in every request the client sends.
    masker: Masker,
    client: OnceCell<LlmClient>,
}

impl SharedLlmClient {
    pub fn new(settings: LlmSettings, masker: Masker) -> Self {
        SharedLlmClient { settings, masker, client: OnceCell::new() }
    }

    /// The client, built on the first call.
    pub async fn get(&self) -> Result<&LlmClient, ImplementError> {
        self.client
            .get_or_try_init(|| async { LlmClient::new(&self.settings).map(|c| c.masking(&self.masker)) })
            .await
    }
}
