//! The NecroCode Artifact Store behind the [`ArtifactStore`] trait: each artifact is a
//! multipart upload whose metadata carries the task key, answered with its URI.

use futures_util::future::BoxFuture;

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

impl ArtifactStore for HttpStore {
    fn put<'a>(
        &'a self,
        key: &'a ArtifactKey,
        content: &'a [u8],
    ) -> BoxFuture<'a, Result<String, ArtifactError>> {
        Box::pin(async move {
            // The key travels as metadata: the store decides its URI scheme, and a store
            // that keys by (spec, task, path) overwrites on a retried task like ours do.
            let metadata = serde_json::json!({
                "spec_name": key.spec_name,
                "task_id": key.task_id,
                "path": key.relative_path(),
            });
            let uri = self.client.upload(key.kind.as_str(), key.kind.file_name(), content, &metadata).await?;
            Ok(uri)
        })
    }

    fn get<'a>(&'a self, uri: &'a str) -> BoxFuture<'a, Result<Vec<u8>, ArtifactError>> {
        Box::pin(async move { Ok(self.client.download(uri).await?) })
    }
}
