//! Kubernetes runner: every task in a Kubernetes Job of its own — the seed's
//! `KubernetesRunner` with `k8s_namespace`, `k8s_image`, `k8s_secrets`. The runner creates
//! the Job, follows its pod, and counts the task done only once the pushed commit and the
//! artifacts are where the pod says.
//!
//! ```sh
//! KUBECONFIG=~/.kube/config K8S_NAMESPACE=necrocode \
//!     EXAMPLE_K8S_IMAGE=ghcr.io/necrocode/agent-runner:0.1.0 \
//!     cargo run --example kubernetes_runner [DIR]
//! ```
//!
//! The cluster is the one the usual client configuration names (`KUBECONFIG`,
//! `~/.kube/config`, or the pod's own service account); with none, it says so and stops
//! (exit 0). The pods must reach the model, the remote and the artifact store this
//! example configures (here: under DIR, so a cluster on this machine).

mod support;

use std::sync::Arc;

use agent_runner::config::{self, ConfigOverrides};
use agent_runner::events::MemorySink;
use agent_runner::pipeline::{PreflightError, Runner, check_execution_mode};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = support::workdir()?;
    let namespace = std::env::var("K8S_NAMESPACE").unwrap_or_else(|_| "necrocode".into());
    let image =
        std::env::var("EXAMPLE_K8S_IMAGE").unwrap_or_else(|_| "ghcr.io/necrocode/agent-runner:0.1.0".into());
    let repo_url = support::sample_origin(&dir.path, &[])?;

    // The model (configured, or the stand-in) first: the task pods get its address in
    // the configuration file below, which the runner hands to every pod it starts.
    let mut local = config::load(None, &config::process_env, &ConfigOverrides::default())?;
    let (secrets, _model) = support::runner_parts(&mut local, &dir.path, support::sample_answer()).await?;
    let endpoint = local.llm.endpoint.as_ref().map_or_else(String::new, |url| format!("  endpoint: {url}\n"));
    let file = dir.path.join("config.k8s.yaml");
    let yaml = format!(
        "execution_mode: kubernetes\nk8s_namespace: {namespace}\nk8s_image: {image}\nk8s_secrets: []\n\
         max_memory_mb: 1024\nmax_cpu_percent: 100\nartifact_store_url: file://{}\nllm:\n{endpoint}\
         git:\n  allowed_remotes: [\"https://\", \"file://{}/\"]\n",
        dir.path.join("artifacts").display(),
        dir.path.display(),
    );
    std::fs::write(&file, yaml)?;
    let config = config::load(Some(&file), &config::process_env, &ConfigOverrides::default())?;

    // What a worker checks before it takes tasks: the API answers and shows its Jobs.
    match check_execution_mode(&config).await {
        Err(PreflightError::KubernetesConfig(why)) => {
            println!("skipped: no Kubernetes cluster configured ({why})");
            return Ok(());
        }
        checked => checked?,
    }
    println!("tasks run as Jobs of {image} in namespace {namespace}");

    let task = support::sample_task(&repo_url, serde_json::json!({}))?;
    let runner = Runner::from_config(&config, secrets, Arc::new(MemorySink::default()))?;
    let result = runner.run(&task, 1, &CancellationToken::new()).await;
    println!(
        "branch {} commit {}",
        result.branch.as_deref().unwrap_or("-"),
        result.commit.as_deref().unwrap_or("-")
    );
    for artifact in &result.artifacts {
        println!("  artifact {}: {}", artifact.kind.as_str(), artifact.uri);
    }
    support::outcome(&result)
}
