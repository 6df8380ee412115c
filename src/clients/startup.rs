//! The start-up check of the configured NecroCode services: each one's `GET /health`,
//! once, with a short timeout and no retries, reported as one warning per service that
//! does not answer.
//!
//! A warning, not a refusal. The worker's events go through the broker, never straight to
//! the Task Registry (the mirror forwards them), so a registry that is down costs it
//! nothing. A Repo Pool or Artifact Store that is down makes tasks fail transiently, and
//! the delayed retries ride that out; refusing to start instead would turn a rolling
//! deploy of one service into a crash loop of every worker. The warning tells the operator
//! at start-up what the first task would otherwise find out.

use std::time::Duration;

use super::{ArtifactStoreClient, ClientError, ClientSettings, RepoPoolClient, TaskRegistryClient};
use crate::config::{ArtifactStoreLocation, RunnerConfig};

/// How long one health check may take: a service slower than this to say it is up is
/// worth a warning, and the worker's start must not wait on it.
pub const STARTUP_HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks every configured service's `/health`; returns one line per service that did
/// not answer 2xx (also logged as a warning), empty when all did or none is configured.
pub async fn check_services_at_startup(config: &RunnerConfig) -> Vec<String> {
    let settings = ClientSettings {
        timeout: STARTUP_HEALTH_TIMEOUT,
        connect_timeout: STARTUP_HEALTH_TIMEOUT,
        retries: 0,
        ..ClientSettings::default()
    };
    let mut problems = Vec::new();
    if let Some(url) = &config.services.task_registry_url {
        let checked = async { TaskRegistryClient::new(url.clone(), settings)?.health().await };
        report(&mut problems, "the Task Registry", "events still go through the broker", checked.await);
    }
    if let Some(url) = &config.services.repo_pool_url {
        let checked = async { RepoPoolClient::new(url.clone(), settings)?.health().await };
        report(&mut problems, "the Repo Pool", "tasks will be retried until it answers", checked.await);
    }
    if let ArtifactStoreLocation::Http(url) = &config.services.artifact_store {
        let checked = async { ArtifactStoreClient::new(url.clone(), settings)?.health().await };
        report(&mut problems, "the Artifact Store", "tasks will be retried until it answers", checked.await);
    }
    problems
}

fn report(problems: &mut Vec<String>, service: &str, consequence: &str, checked: Result<(), ClientError>) {
    if let Err(error) = checked {
        let line =
            format!("{service} does not answer its health check ({error}); starting anyway: {consequence}");
        tracing::warn!("{line}");
        problems.push(line);
    }
}
