//! The runner's one LLM client, built on first use and shared by every task.
//!
//! Building a client sets up TLS (loading the system's root certificates), which costs
//! tens of milliseconds of CPU and a few megabytes: too much to repeat per task, and
//! too much to pay at start, where it would delay the worker's first consume and weigh
//! on an idle worker that may never get a task.

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

    /// The client, built on the first call (off the async threads: it is CPU work).
    pub async fn get(&self) -> Result<&LlmClient, ImplementError> {
        self.client
            .get_or_try_init(|| async {
                let (settings, masker) = (self.settings.clone(), self.masker.clone());
                tokio::task::spawn_blocking(move || LlmClient::new(&settings).map(|c| c.masking(&masker)))
                    .await
                    .map_err(|e| ImplementError::Settings(format!("building the LLM client failed: {e}")))?
            })
            .await
    }
}
