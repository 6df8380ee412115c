//! Why a call to a NecroCode service failed, and whether trying again could help.

use crate::error::{Classify, FailureKind};

/// The service a client talks to; names it in errors and picks the failure kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    TaskRegistry,
    RepoPool,
    ArtifactStore,
}

impl Service {
    /// Every service, for the closed label set of the retry metric.
    pub const ALL: [Service; 3] = [Service::TaskRegistry, Service::RepoPool, Service::ArtifactStore];

    /// The name used in errors, logs and the `operation` label of the retry metric.
    pub fn name(self) -> &'static str {
        match self {
            Service::TaskRegistry => "task_registry",
            Service::RepoPool => "repo_pool",
            Service::ArtifactStore => "artifact_store",
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Service::TaskRegistry => "Task Registry",
            Service::RepoPool => "Repo Pool",
            Service::ArtifactStore => "Artifact Store",
        })
    }
}

/// A failed call. Every variant names the service and the call (`PUT /tasks/1.1/status`).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{service} {call}: cannot reach {base_url}: {reason}")]
    Unreachable { service: Service, call: String, base_url: String, reason: String },
    #[error("{service} {call}: no answer within {seconds} s")]
    TimedOut { service: Service, call: String, seconds: u64 },
    #[error("{service} {call}: answered HTTP {status}: {body}")]
    Status { service: Service, call: String, status: u16, body: String },
    #[error("{service} {call}: unexpected answer: {reason}")]
    BadAnswer { service: Service, call: String, reason: String },
    #[error("{service}: cannot build the client: {reason}")]
    Setup { service: Service, reason: String },
}

/// HTTP statuses worth retrying: the request may succeed later unchanged.
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500..=599)
}

impl ClientError {
    /// The service the failed call went to.
    pub fn service(&self) -> Service {
        match self {
            ClientError::Unreachable { service, .. }
            | ClientError::TimedOut { service, .. }
            | ClientError::Status { service, .. }
            | ClientError::BadAnswer { service, .. }
            | ClientError::Setup { service, .. } => *service,
        }
    }

    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl Classify for ClientError {
    fn failure_kind(&self) -> FailureKind {
        match self.service() {
            Service::RepoPool => FailureKind::WorkspacePreparation,
            // Registry records are part of reporting a task's results, like its artifacts.
            Service::ArtifactStore | Service::TaskRegistry => FailureKind::ArtifactUpload,
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } | ClientError::TimedOut { .. } => true,
            ClientError::Status { status, .. } => is_transient_status(*status),
            ClientError::BadAnswer { .. } | ClientError::Setup { .. } => false,
        }
    }
}
