//! Artifacts: what a task leaves behind (diff, execution log, test results, run
//! summary), and the store they go to.
//!
//! Artifacts are keyed by spec, task id and kind — never by time — so a retried or
//! redelivered task overwrites its own artifacts instead of piling up copies. The
//! embedded store is the filesystem ([`FileStore`], `file://` URIs); the NecroCode
//! Artifact Store and S3 backends plug in behind the same [`ArtifactStore`] trait.

mod file_store;

pub use file_store::FileStore;

use futures_util::future::BoxFuture;
use serde::Serialize;

/// The kinds of artifact a task produces. The wire names (`diff`, `log`, `test`) are the
/// Task Registry's artifact types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    Diff,
    Log,
    Test,
    Summary,
}

impl ArtifactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Diff => "diff",
            ArtifactKind::Log => "log",
            ArtifactKind::Test => "test",
            ArtifactKind::Summary => "summary",
        }
    }

    /// The file name the artifact is stored under.
    pub fn file_name(self) -> &'static str {
        match self {
            ArtifactKind::Diff => "diff.patch",
            ArtifactKind::Log => "execution.log",
            ArtifactKind::Test => "test-results.json",
            ArtifactKind::Summary => "summary.json",
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}

impl crate::error::Classify for ArtifactError {
    fn failure_kind(&self) -> crate::error::FailureKind {
        crate::error::FailureKind::ArtifactUpload
    }
    fn is_transient(&self) -> bool {
        // A full or briefly unavailable volume may recover; a bad URL will not.
        matches!(self, ArtifactError::Io { .. })
    }
}

/// Where artifacts are stored.
pub trait ArtifactStore: Send + Sync {
    /// Stores `content` under `key`, replacing what was there, and returns its URI.
    fn put<'a>(
        &'a self,
        key: &'a ArtifactKey,
        content: &'a [u8],
    ) -> BoxFuture<'a, Result<String, ArtifactError>>;

    /// What is stored under `key`, if anything. A redelivered task reads back what an
    /// earlier attempt stored (the test report); a store that cannot read back answers
    /// `None`, and the task regenerates what it can.
    fn get<'a>(&'a self, _key: &'a ArtifactKey) -> BoxFuture<'a, Result<Option<Vec<u8>>, ArtifactError>> {
        Box::pin(async { Ok(None) })
    }
}

/// Opens the store named by `url`. Only `file://` is embedded so far.
pub fn open_store(url: &str) -> Result<Box<dyn ArtifactStore>, ArtifactError> {
    match url.strip_prefix("file://") {
        Some(path) if path.starts_with('/') => Ok(Box::new(FileStore::new(path.into()))),
        Some(_) => Err(ArtifactError::UnsupportedUrl {
            url: url.to_string(),
            reason: "a file:// URL needs an absolute path".to_string(),
        }),
        None => Err(ArtifactError::UnsupportedUrl {
            url: url.to_string(),
            reason: "only file:// stores are built in".to_string(),
        }),
    }
}
