//! The NecroCode Artifact Store: multipart uploads answered with a URI.

use reqwest::multipart::{Form, Part};
use reqwest::{Method, Url};
use serde::Deserialize;

use super::{ClientError, ClientSettings, RestClient, Service};

#[derive(Deserialize)]
struct Uploaded {
    uri: String,
}

/// An Artifact Store client.
#[derive(Debug, Clone)]
pub struct ArtifactStoreClient {
    rest: RestClient,
}

impl ArtifactStoreClient {
    pub fn new(base: Url, settings: ClientSettings) -> Result<Self, ClientError> {
        Ok(ArtifactStoreClient { rest: RestClient::new(Service::ArtifactStore, base, settings)? })
    }

    /// `POST /artifacts` (multipart `file`, `type`, `metadata`): stores `content` and
    /// returns its URI. `metadata` carries the key (spec, task id, file name) so the store
    /// can address it by task rather than by upload time.
    pub async fn upload(
        &self,
        kind: &str,
        file_name: &str,
        content: &[u8],
        metadata: &serde_json::Value,
    ) -> Result<String, ClientError> {
        let url = self.rest.url(&["artifacts"]);
        let metadata = metadata.to_string();
        let form = || {
            let file = Part::bytes(content.to_vec()).file_name(file_name.to_string());
            Form::new().part("file", file).text("type", kind.to_string()).text("metadata", metadata.clone())
        };
        let body = self.rest.send(Method::POST, url.clone(), |r| r.multipart(form())).await?;
        let uploaded: Uploaded = self.rest.decode(&format!("POST {}", url.path()), &body)?;
        Ok(uploaded.uri)
    }

    /// `GET <uri>`: an artifact's content. Relative URIs resolve against the base URL.
    pub async fn download(&self, uri: &str) -> Result<Vec<u8>, ClientError> {
        let url = self.rest.base().join(uri).map_err(|e| ClientError::BadAnswer {
            service: Service::ArtifactStore,
            call: format!("GET {uri}"),
            reason: format!("not a URL: {e}"),
        })?;
        self.rest.send(Method::GET, url, |r| r).await
    }
}
