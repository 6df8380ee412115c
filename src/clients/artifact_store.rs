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

    /// `GET /artifacts/metadata?uri=`: what the store keeps about an artifact (type, size,
    /// the metadata sent with the upload), as a JSON object.
    pub async fn metadata(
        &self,
        uri: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ClientError> {
        let mut url = self.rest.url(&["artifacts", "metadata"]);
        url.query_pairs_mut().append_pair("uri", uri);
        let body = self.rest.send(Method::GET, url.clone(), |r| r).await?;
        self.rest.decode(&format!("GET {}", url.path()), &body)
    }

    /// `GET /health`: whether the store answers 2xx.
    pub async fn health(&self) -> Result<(), ClientError> {
        self.rest.send(Method::GET, self.rest.url(&["health"]), |r| r).await.map(drop)
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
