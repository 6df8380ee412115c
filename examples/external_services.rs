//! External services: the runner with the NecroCode services over their REST APIs — a
//! slot from the Repo Pool Manager, artifacts to the Artifact Store, status, events and
//! artifact records in the Task Registry.
//!
//! ```sh
//! TASK_REGISTRY_URL=http://localhost:8001 REPO_POOL_URL=http://localhost:8002 \
//! ARTIFACT_STORE_URL=http://localhost:8003 cargo run --example external_services [DIR]
//! ```
//!
//! The URLs come from the environment (or a config file), as for the worker. A worker
//! publishes its events to the broker and `agent-runner mirror` writes them into the
//! registry; without a broker, this example writes each event itself through the same
//! mapping (`mirror::plan`). The tests run it against HTTP stand-ins of the three.

mod support;

use std::sync::Arc;

use agent_runner::clients::{ClientSettings, TaskRegistryClient};
use agent_runner::config::{self, ConfigOverrides};
use agent_runner::events::{Event, EventError, EventSink};
use agent_runner::mirror;
use agent_runner::pipeline::Runner;
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = config::load(None, &config::process_env, &ConfigOverrides::default())?;
    let (Some(registry_url), Some(_pool)) =
        (config.services.task_registry_url.clone(), config.services.repo_pool_url.clone())
    else {
        anyhow::bail!("set TASK_REGISTRY_URL, REPO_POOL_URL and ARTIFACT_STORE_URL to the services");
    };
    println!("artifact store: {}", config.services.artifact_store);
    // The health of each configured service, as a worker checks it at start-up.
    for warning in agent_runner::clients::check_services_at_startup(&config).await {
        println!("warning: {warning}");
    }

    let dir = support::workdir()?;
    let repo_url = support::sample_origin(&dir.path, &[])?;
    let task = support::sample_task(&repo_url, serde_json::json!({}))?;
    let (secrets, _model) = support::runner_parts(&mut config, &dir.path, support::sample_answer()).await?;

    let registry = RegistrySink(TaskRegistryClient::new(registry_url, ClientSettings::default())?);
    let runner = Runner::from_config(&config, secrets, Arc::new(registry))?;
    let result = runner.run(&task, 1, &CancellationToken::new()).await;
    println!("slot from the Repo Pool: {}", result.slot_id.as_deref().unwrap_or("none"));
    for artifact in &result.artifacts {
        println!("uploaded {}: {}", artifact.kind.as_str(), artifact.uri);
    }
    support::outcome(&result)
}

/// Writes each lifecycle event into the Task Registry, as the mirror would.
struct RegistrySink(TaskRegistryClient);

impl EventSink for RegistrySink {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), EventError>> {
        Box::pin(async move {
            let failed = |reason: String| EventError { event_type: event.event_type.name(), reason };
            let body = serde_json::to_vec(event).map_err(|e| failed(e.to_string()))?;
            let mirrored = mirror::parse(&body).map_err(|e| failed(e.to_string()))?;
            let Some(plan) = mirror::plan(&mirrored).map_err(|e| failed(e.to_string()))? else {
                return Ok(());
            };
            for call in &plan.calls {
                call.send(&self.0, &plan.task_id, &event.event_id)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
            }
            Ok(())
        })
    }
}
