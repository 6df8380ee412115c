//! The embedded artifact store: files under a root directory, addressed by `file://` URIs.

use std::path::{Path, PathBuf};

use super::{ArtifactError, ArtifactKey, ArtifactStore};

/// Stores artifacts as files under `root`.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    pub fn new(root: PathBuf) -> Self {
        FileStore { root }
    }

    /// The directory artifacts are written under.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[async_trait::async_trait]
impl ArtifactStore for FileStore {
    async fn put(&self, key: &ArtifactKey, content: &[u8]) -> Result<String, ArtifactError> {
        let path = self.root.join(key.relative_path());
        let io_error = |source| ArtifactError::Io { path: path.display().to_string(), source };
        let parent = path.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(parent).await.map_err(io_error)?;
        // Write then rename, so a reader (or a crash) never sees half an artifact.
        let temporary = path.with_extension("partial");
        tokio::fs::write(&temporary, content).await.map_err(io_error)?;
        tokio::fs::rename(&temporary, &path).await.map_err(io_error)?;
        Ok(format!("file://{}", path.display()))
    }

    async fn find(&self, key: &ArtifactKey) -> Result<Option<Vec<u8>>, ArtifactError> {
        let path = self.root.join(key.relative_path());
        match tokio::fs::read(&path).await {
            Ok(content) => Ok(Some(content)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ArtifactError::Io { path: path.display().to_string(), source }),
        }
    }

    async fn get(&self, uri: &str) -> Result<Vec<u8>, ArtifactError> {
        let path = uri.strip_prefix("file://").map(Path::new).filter(|p| {
            p.starts_with(&self.root) && !p.components().any(|c| c == std::path::Component::ParentDir)
        });
        let Some(path) = path else {
            return Err(ArtifactError::UnsupportedUrl {
                url: uri.to_string(),
                reason: format!("not under this store's root {}", self.root.display()),
            });
        };
        tokio::fs::read(path)
            .await
            .map_err(|source| ArtifactError::Io { path: path.display().to_string(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::{ArtifactKind, open_store};

    #[tokio::test]
    async fn stores_under_the_task_key_and_overwrites_on_retry() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store = open_store(&url).unwrap();
        let key = ArtifactKey { spec_name: "chat".into(), task_id: "1.1".into(), kind: ArtifactKind::Diff };
        let first = store.put(&key, b"one").await.unwrap();
        let second = store.put(&key, b"two").await.unwrap();
        assert_eq!(first, second);
        assert_eq!(first, format!("file://{}/chat/1.1/diff.patch", dir.path().display()));
        assert_eq!(std::fs::read(dir.path().join("chat/1.1/diff.patch")).unwrap(), b"two");
        assert_eq!(store.get(&first).await.unwrap(), b"two");
        assert!(store.get("file:///etc/passwd").await.is_err());
        assert!(open_store("ftp://host/artifacts").is_err());
        assert_eq!(store.find(&key).await.unwrap().as_deref(), Some(&b"two"[..]));
        let absent = ArtifactKey { kind: ArtifactKind::Log, ..key };
        assert_eq!(store.find(&absent).await.unwrap(), None);
        assert!(open_store("file://relative").is_err());
    }
}
