//! The NecroCode Artifact Store behind the [`ArtifactStore`] trait: each artifact is a
//! multipart upload whose metadata carries the task key, answered with its URI.

use super::{ArtifactError, ArtifactKey, ArtifactStore};
use crate::clients::{ArtifactStoreClient, ClientSettings};

/// Stores artifacts in the Artifact Store at a base URL.
#[derive(Debug, Clone)]
pub struct HttpStore {
    client: ArtifactStoreClient,
}

impl HttpStore {
    pub fn new(base: reqwest::Url, settings: ClientSettings) -> Result<Self, ArtifactError> {
        Ok(HttpStore { client: ArtifactStoreClient::new(base, settings)? })
    }
}

#[async_trait::async_trait]
impl ArtifactStore for HttpStore {
    async fn put(&self, key: &ArtifactKey, content: &[u8]) -> Result<String, ArtifactError> {
        // The key travels as metadata: the store decides its URI scheme, and a store that
        // keys by (spec, task, path) overwrites on a retried task like ours do.
        let metadata = serde_json::json!({
            "spec_name": key.spec_name,
            "task_id": key.task_id,
            "path": key.relative_path(),
        });
        let uri = self.client.upload(key.kind.as_str(), key.kind.file_name(), content, &metadata).await?;
        Ok(uri)
    }

    async fn get(&self, uri: &str) -> Result<Vec<u8>, ArtifactError> {
        Ok(self.client.download(uri).await?)
    }
}
