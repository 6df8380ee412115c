//! S3-compatible object storage behind the [`ArtifactStore`] trait (AWS S3, MinIO, Ceph,
//! R2, ...), through Apache Arrow's `object_store` crate.
//!
//! `s3://bucket/prefix` names the bucket and key prefix; artifacts go to
//! `prefix/<spec>/<task_id>/<file>` and their URI is `s3://bucket/prefix/<spec>/<task_id>/<file>`.
//! Credentials, region and endpoint come from the standard AWS variables
//! ([`S3Settings::from_env`]), never from the config file.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpClient, HttpConnector};
use object_store::path::Path as ObjectPath;
use object_store::{ClientConfigKey, ClientOptions, ObjectStoreExt, PutPayload, RetryConfig};
use secrecy::{ExposeSecret, SecretString};

use super::{ArtifactError, ArtifactKey, ArtifactStore};

/// One upload is a few MB at most; a store that takes longer than this is failing.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A reachable endpoint accepts a connection well within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// object_store retries transient S3 errors itself; bounded so a dead store fails the
/// upload within the pipeline's wrap-up budget rather than hanging on.
const MAX_RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(45);

/// Where and as whom to reach the object store.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// Endpoint URL for S3-compatible stores (`AWS_ENDPOINT_URL`); unset: AWS.
    pub endpoint: Option<String>,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION`; `us-east-1` when unset.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<SecretString>,
    pub session_token: Option<SecretString>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// Reads `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_REGION` (or `AWS_DEFAULT_REGION`),
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (each secret also
    /// as `NAME_FILE`) through `env`.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ArtifactError> {
        let secret = |name: &str| {
            crate::config::read_secret(name, env).map_err(|e| ArtifactError::Config { reason: e.to_string() })
        };
        let first = |names: &[&str]| names.iter().find_map(|n| env(n).filter(|v| !v.trim().is_empty()));
        Ok(S3Settings {
            endpoint: first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
            region: first(&["AWS_REGION", "AWS_DEFAULT_REGION"]),
            access_key_id: first(&["AWS_ACCESS_KEY_ID"]),
            secret_access_key: secret("AWS_SECRET_ACCESS_KEY")?,
            session_token: secret("AWS_SESSION_TOKEN")?,
        })
    }
}

/// Stores artifacts in one bucket under one prefix.
#[derive(Debug, Clone)]
pub struct S3Store {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// Opens `url` (`s3://bucket[/prefix]`) with `settings`.
    pub fn open(url: &reqwest::Url, settings: &S3Settings) -> Result<Self, ArtifactError> {
        let unsupported =
            |reason: &str| ArtifactError::UnsupportedUrl { url: url.to_string(), reason: reason.to_string() };
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| unsupported("no bucket"))?;
        let prefix = url.path().trim_matches('/').to_string();
        let mut builder = AmazonS3Builder::new()
            .with_http_connector(SharedTlsConnector)
            .with_bucket_name(bucket)
            .with_region(settings.region.clone().unwrap_or_else(|| "us-east-1".to_string()))
            .with_client_options(
                ClientOptions::new().with_timeout(REQUEST_TIMEOUT).with_connect_timeout(CONNECT_TIMEOUT),
            )
            .with_retry(RetryConfig {
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
                ..Default::default()
            });
        if let Some(endpoint) = &settings.endpoint {
            // S3-compatible servers (MinIO, moto, Ceph) are usually addressed by path, and
            // often over plain HTTP inside a cluster.
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(id) = &settings.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose_secret());
        }
        if let Some(token) = &settings.session_token {
            builder = builder.with_token(token.expose_secret());
        }
        let store = builder.build().map_err(|e| ArtifactError::Config { reason: e.to_string() })?;
        Ok(S3Store { store: Arc::new(store), bucket: bucket.to_string(), prefix })
    }

    fn object_path(&self, key: &ArtifactKey) -> String {
        if self.prefix.is_empty() {
            key.relative_path()
        } else {
            format!("{}/{}", self.prefix, key.relative_path())
        }
    }

    /// The object path inside the bucket for one of our `s3://` URIs.
    fn path_of(&self, uri: &str) -> Result<ObjectPath, ArtifactError> {
        let own = format!("s3://{}/", self.bucket);
        let path = uri.strip_prefix(&own).ok_or_else(|| ArtifactError::UnsupportedUrl {
            url: uri.to_string(),
            reason: format!("not in this store's bucket ({own})"),
        })?;
        ObjectPath::parse(path)
            .map_err(|e| ArtifactError::UnsupportedUrl { url: uri.to_string(), reason: e.to_string() })
    }
}

#[async_trait::async_trait]
impl ArtifactStore for S3Store {
    async fn put(&self, key: &ArtifactKey, content: &[u8]) -> Result<String, ArtifactError> {
        let path = self.object_path(key);
        let location = ObjectPath::from(path.as_str());
        let payload = PutPayload::from(content.to_vec());
        // A PUT replaces the object: a retried task overwrites its own artifacts.
        self.store.put(&location, payload).await.map_err(|e| s3_error(&self.bucket, &path, e))?;
        Ok(format!("s3://{}/{path}", self.bucket))
    }

    async fn get(&self, uri: &str) -> Result<Vec<u8>, ArtifactError> {
        let location = self.path_of(uri)?;
        let fetched =
            self.store.get(&location).await.map_err(|e| s3_error(&self.bucket, location.as_ref(), e))?;
        let bytes = fetched.bytes().await.map_err(|e| s3_error(&self.bucket, location.as_ref(), e))?;
        Ok(bytes.to_vec())
    }
}

/// object_store's HTTP clients built on the process's shared TLS configuration
/// (`crate::tls`) instead of its own `ReqwestConnector`, which sets up TLS, and reads the
/// system roots, for every client it makes (the store's, and the credential providers').
///
/// It carries over the options [`S3Store::open`] and object_store's credential clients
/// set: whether plain http is allowed (the store's endpoint, the instance metadata
/// service), HTTP/1.1 only (object_store's default), and the timeouts. Others (proxy,
/// extra roots, invalid certificates, pool sizes) are not set by this store and not read.
#[derive(Debug)]
struct SharedTlsConnector;

impl HttpConnector for SharedTlsConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let value = |key: ClientConfigKey| options.get_config_value(&key);
        // The spellings object_store's own parser accepts as true.
        let flag = |key| {
            value(key)
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes" | "y"))
        };
        let duration = |key| value(key).and_then(|v| humantime::parse_duration(&v).ok());
        let mut builder = if flag(ClientConfigKey::Http1Only) {
            crate::tls::http1_client_builder()
        } else {
            crate::tls::http_client_builder()
        };
        if let Some(timeout) = duration(ClientConfigKey::Timeout) {
            builder = builder.timeout(timeout);
        }
        if let Some(timeout) = duration(ClientConfigKey::ConnectTimeout) {
            builder = builder.connect_timeout(timeout);
        }
        let client = builder
            .user_agent(concat!("agent-runner/", env!("CARGO_PKG_VERSION")))
            .https_only(!flag(ClientConfigKey::AllowHttp))
            .build()
            .map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
        Ok(HttpClient::new(client))
    }
}

fn s3_error(bucket: &str, path: &str, error: object_store::Error) -> ArtifactError {
    use object_store::Error as E;
    let transient = !matches!(
        error,
        E::NotFound { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::UnknownConfigurationKey { .. }
    );
    ArtifactError::ObjectStore {
        location: format!("s3://{bucket}/{path}"),
        reason: error.to_string(),
        transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connector reads back what object_store formats: durations in humantime's
    /// words (`1m`), flags as `true`/`false`.
    #[test]
    fn the_connector_reads_the_options_object_store_formats() {
        let options = ClientOptions::new().with_timeout(REQUEST_TIMEOUT).with_allow_http(true);
        let timeout = options.get_config_value(&ClientConfigKey::Timeout).unwrap();
        assert_eq!(humantime::parse_duration(&timeout).unwrap(), REQUEST_TIMEOUT);
        assert_eq!(options.get_config_value(&ClientConfigKey::AllowHttp).as_deref(), Some("true"));
        assert_eq!(options.get_config_value(&ClientConfigKey::Http1Only).as_deref(), Some("true"));
        SharedTlsConnector.connect(&options).unwrap();
    }
}
