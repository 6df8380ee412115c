//! Artifacts: what a task leaves behind (diff, execution log, test results, run
//! summary, the implementation engine's transcript), and the store they go to.
//!
//! Artifacts are keyed by spec, task id and kind — never by time — so a retried or
//! redelivered task overwrites its own artifacts instead of piling up copies. The
//! embedded store is the filesystem ([`FileStore`], `file://` URIs); the NecroCode
//! Artifact Store ([`HttpStore`], `http(s)://`) and S3-compatible storage ([`S3Store`],
//! `s3://`) sit behind the same [`ArtifactStore`] trait, chosen by the URL's scheme
//! ([`open_location`]).

mod file_store;
mod http_store;
mod s3_store;

pub use file_store::FileStore;
pub use http_store::HttpStore;
pub use s3_store::{S3Settings, S3Store};

use serde::{Deserialize, Serialize};

/// The kinds of artifact a task produces. The wire names (`diff`, `log`, `test`) are the
/// Task Registry's artifact types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    Diff,
    Log,
    Test,
    Summary,
    /// The implementation engine's conversation (masked), as JSON.
    Transcript,
}

impl ArtifactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Diff => "diff",
            ArtifactKind::Log => "log",
            ArtifactKind::Test => "test",
            ArtifactKind::Summary => "summary",
            ArtifactKind::Transcript => "transcript",
        }
    }

    /// The file name the artifact is stored under.
    pub fn file_name(self) -> &'static str {
        match self {
            ArtifactKind::Diff => "diff.patch",
            ArtifactKind::Log => "execution.log",
            ArtifactKind::Test => "test-results.json",
            ArtifactKind::Summary => "summary.json",
            ArtifactKind::Transcript => "transcript.json",
        }
    }
}

/// Identifies one artifact of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactKey {
    pub spec_name: String,
    pub task_id: String,
    pub kind: ArtifactKind,
}

impl ArtifactKey {
    /// The store-relative path: `<spec>/<task_id>/<file>`. Both ids were validated to a
    /// safe character set, so this cannot escape the store root.
    pub fn relative_path(&self) -> String {
        format!("{}/{}/{}", self.spec_name, self.task_id, self.kind.file_name())
    }
}

/// A stored artifact, as listed in the run summary and the `ArtifactUploaded` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredArtifact {
    #[serde(rename = "type")]
    pub kind: ArtifactKind,
    pub uri: String,
    pub size_bytes: u64,
}

/// Why an artifact could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact store URL {url} is not supported: {reason}")]
    UnsupportedUrl { url: String, reason: String },
    #[error("could not write {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Remote(#[from] crate::clients::ClientError),
    #[error("object store {location}: {reason}")]
    ObjectStore { location: String, reason: String, transient: bool },
    #[error("artifact store settings: {reason}")]
    Config { reason: String },
    #[error("this artifact store cannot read artifacts back")]
    ReadUnsupported,
}

impl crate::error::Classify for ArtifactError {
    fn failure_kind(&self) -> crate::error::FailureKind {
        crate::error::FailureKind::ArtifactUpload
    }
    fn is_transient(&self) -> bool {
        // A full or briefly unavailable volume or service may recover; a bad URL will not.
        match self {
            ArtifactError::Io { .. } => true,
            ArtifactError::Remote(error) => error.is_transient(),
            ArtifactError::ObjectStore { transient, .. } => *transient,
            ArtifactError::UnsupportedUrl { .. }
            | ArtifactError::Config { .. }
            | ArtifactError::ReadUnsupported => false,
        }
    }
}

/// Where artifacts are stored. A trait object (`Arc<dyn ArtifactStore>`, chosen by the
/// URL's scheme at start-up), so its `async fn`s are boxed by `async_trait`.
#[async_trait::async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Stores `content` under `key`, replacing what was there, and returns its URI.
    async fn put(&self, key: &ArtifactKey, content: &[u8]) -> Result<String, ArtifactError>;

    /// What is stored under `key`, if anything. A redelivered task reads back what an
    /// earlier attempt stored (the test report); a store that cannot look up by key
    /// answers `None`, and the task regenerates what it can.
    async fn find(&self, _key: &ArtifactKey) -> Result<Option<Vec<u8>>, ArtifactError> {
        Ok(None)
    }

    /// Reads back the artifact `put` stored at `uri` (operators, tests, and redelivered
    /// tasks checking what is already there).
    async fn get(&self, _uri: &str) -> Result<Vec<u8>, ArtifactError> {
        Err(ArtifactError::ReadUnsupported)
    }
}

/// What opening a non-file store needs besides its URL.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// Timeouts and retries for the Artifact Store REST API.
    pub http: crate::clients::ClientSettings,
    /// Credentials and endpoint for `s3://` stores.
    pub s3: S3Settings,
}

impl StoreOptions {
    /// Options for `location`: the AWS variables are read through `env` only for an
    /// `s3://` store, so a stray `AWS_*_FILE` cannot break a file or HTTP store.
    pub fn for_location(
        location: &crate::config::ArtifactStoreLocation,
        http: crate::clients::ClientSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ArtifactError> {
        let s3 = match location {
            crate::config::ArtifactStoreLocation::S3(_) => S3Settings::from_env(env)?,
            _ => S3Settings::default(),
        };
        Ok(StoreOptions { http, s3 })
    }
}

/// Opens the store a configured location names: `file://` → [`FileStore`],
/// `http(s)://` → [`HttpStore`], `s3://` → [`S3Store`].
pub fn open_location(
    location: &crate::config::ArtifactStoreLocation,
    options: &StoreOptions,
) -> Result<std::sync::Arc<dyn ArtifactStore>, ArtifactError> {
    use crate::config::ArtifactStoreLocation as L;
    Ok(match location {
        L::Filesystem(root) => {
            std::sync::Arc::new(FileStore::new(std::path::absolute(root).unwrap_or_else(|_| root.clone())))
        }
        L::Http(url) => std::sync::Arc::new(HttpStore::new(url.clone(), options.http)?),
        L::S3(url) => std::sync::Arc::new(S3Store::open(url, &options.s3)?),
    })
}

/// Opens the store named by `url` (any scheme [`open_location`] knows), with default
/// timeouts and S3 settings from the process environment.
pub fn open_store(url: &str) -> Result<std::sync::Arc<dyn ArtifactStore>, ArtifactError> {
    let location = crate::config::ArtifactStoreLocation::parse(url)
        .map_err(|reason| ArtifactError::UnsupportedUrl { url: url.to_string(), reason })?;
    let options = StoreOptions::for_location(&location, Default::default(), &crate::config::process_env)?;
    open_location(&location, &options)
}
