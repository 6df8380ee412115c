//! The configuration a Kubernetes task pod runs with, and how it reaches the pod.
//!
//! The worker hands its own configuration file to each task pod (in the environment
//! variable [`CONFIG_ENV`], which `load` reads when no `--config` is given), so a pod
//! pushes, stores artifacts and calls the model exactly as the worker was told to. What
//! only the worker uses is taken out: the broker (its URL may carry a password, and a
//! pod never consumes), the execution mode (the pod runs its commands as local
//! processes), the `k8s_*` keys and the HTTP listener. Configuration the worker read
//! from its environment goes along as the same variables ([`env_forwarded_to_pods`]).

use std::path::Path;

use super::ConfigError;

/// The variable holding a configuration file's text (a task pod's configuration).
pub const CONFIG_ENV: &str = crate::kubernetes::CONFIG_ENV;

/// Keys of the worker's file a task pod does not get.
const WORKER_ONLY_KEYS: &[&str] =
    &["amqp", "execution_mode", "k8s_namespace", "k8s_image", "k8s_secrets", "http", "mirror"];

/// Keys the environment layer can set that a task pod sets for itself: its identity and
/// its paths.
const POD_OWN_KEYS: &[&str] = &["runner_id", "pool_dir", "playbooks_dir"];

/// Variables of the environment layer ([`super::env::VARIABLES`]) a task pod gets from
/// its worker, when set: all but those of worker-only keys (the broker, the mode, the
/// listener) and of the pod's own identity and paths.
pub fn env_forwarded_to_pods() -> impl Iterator<Item = &'static str> {
    super::env::VARIABLES.iter().filter_map(|(variable, key)| {
        let top = key.split('.').next().unwrap_or(key);
        let kept = !WORKER_ONLY_KEYS.contains(&top) && !POD_OWN_KEYS.contains(key);
        kept.then_some(*variable)
    })
}

/// `text` (the worker's file, already loaded once) without the worker-only keys.
pub fn for_pods(text: &str, path: &Path) -> Result<String, ConfigError> {
    let syntax = |e: serde_yaml::Error| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: e.location().map(|l| l.line()),
        column: e.location().map(|l| l.column()),
        message: e.to_string(),
    };
    let mut document: serde_yaml::Value = serde_yaml::from_str(text).map_err(syntax)?;
    if let serde_yaml::Value::Mapping(keys) = &mut document {
        for key in WORKER_ONLY_KEYS {
            keys.remove(*key);
        }
    }
    serde_yaml::to_string(&document).map_err(syntax)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pods_get_the_environments_configuration_but_the_workers_own_and_their_own() {
        let forwarded: Vec<&str> = env_forwarded_to_pods().collect();
        let expected = [
            "TASK_REGISTRY_URL",
            "REPO_POOL_URL",
            "ARTIFACT_STORE_URL",
            "RUNNER_LOG_LEVEL",
            "RUNNER_TIMEOUT",
            "RUNNER_STRUCTURED_LOGGING",
            "LLM_MODEL",
            "OPENAI_BASE_URL",
            "LLM_ENDPOINT",
            "LLM_TIMEOUT_SECONDS",
            "LLM_CONTEXT_TOKENS",
            "LLM_TEMPERATURE",
            "LLM_MAX_TOKENS",
        ];
        assert_eq!(forwarded, expected);
    }

    #[test]
    fn the_pods_get_the_file_without_the_broker_and_the_mode() {
        let text = "execution_mode: kubernetes\nk8s_image: i\namqp:\n  url: amqp://u:secret@h\n\
                    git:\n  allowed_remotes: [\"file://\"]\nllm:\n  model: m\n";
        let pods = for_pods(text, Path::new("c.yaml")).unwrap();
        assert!(
            !pods.contains("secret") && !pods.contains("kubernetes") && !pods.contains("k8s_image"),
            "{pods}"
        );
        assert!(pods.contains("allowed_remotes") && pods.contains("model: m"), "{pods}");
        let raw = super::super::file::parse(&pods, Path::new("pods")).unwrap();
        assert!(raw.amqp.is_none());
    }
}
