//! The Job a task runs in, as data: its name, and the manifest the worker creates.
//!
//! Pure: no API calls. The name is derived from the task id alone, so a redelivered task
//! (its worker killed, a reconnect) finds the Job the first delivery created instead of
//! starting a second one. The pod carries the pod security of the deploy manifests
//! (non-root 10001, no privilege escalation, every capability dropped, read-only root
//! with `emptyDir`s for `/tmp` and the data directory, no service-account token) and runs
//! `agent-runner run` on the task, which it receives in its environment, writing its
//! outcome where the kubelet reads the termination message.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use sha2::{Digest, Sha256};

/// The variable the task message reaches the pod in (`agent-runner run` reads it).
pub const TASK_ENV: &str = "AGENT_RUNNER_TASK";
/// The variable holding the delivery attempt the pod runs as (its events' ids use it).
pub const ATTEMPT_ENV: &str = "AGENT_RUNNER_ATTEMPT";
/// The variable the worker's configuration file reaches the pod in (`config::load`
/// reads it when no `--config` is given).
pub const CONFIG_ENV: &str = "AGENT_RUNNER_CONFIG_YAML";
/// The variable naming the directory the task's Secrets are mounted in
/// (`config::read_secret` looks there for a secret the environment does not set).
pub const SECRETS_DIR_ENV: &str = "AGENT_RUNNER_SECRETS_DIR";
/// Where every Secret of `k8s_secrets` is projected, one file per key.
pub const SECRETS_MOUNT: &str = "/var/run/secrets/agent-runner";
/// The pod's data directory (slots, a `file://` artifact store): an `emptyDir`.
pub const DATA_DIR: &str = "/var/lib/agent-runner";
/// Where the pod writes its outcome; the kubelet turns it into the container's
/// termination message (at most 4096 bytes).
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// The annotation holding the whole task id (the name holds a shortened form).
pub const TASK_ID_ANNOTATION: &str = "agent-runner.necrocode.io/task-id";
/// The label every task Job and its pods carry, for operators' selectors.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The uid and gid of the image's user (the deploy manifests run the worker as it too).
const POD_UID: i64 = 10001;
/// How the pod runs the playbook's commands: the pod is the isolation boundary.
const POD_EXECUTION_MODE: &str = "local-process";
/// How long a finished Job stays for a redelivered task to find it (its outcome is read
/// from it) before Kubernetes removes it; the worker deletes it once it settled.
const FINISHED_JOB_TTL_SECONDS: i32 = 3600;
/// Characters of the task id kept readable in the name; a hash keeps names unique.
const NAME_SLUG_CHARS: usize = 40;

/// The name of the Job that runs `task_id`: `ar-<readable part>-<hash>`, a DNS label of at
/// most 54 characters (a pod name adds six), the same for every delivery of the task.
pub fn job_name(task_id: &str) -> String {
    let mut slug = String::with_capacity(NAME_SLUG_CHARS);
    for c in task_id.chars().map(|c| c.to_ascii_lowercase()) {
        if slug.len() == NAME_SLUG_CHARS {
            break;
        }
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c != '-' || !(slug.is_empty() || slug.ends_with('-')) {
            slug.push(c);
        }
    }
    let slug = slug.trim_end_matches('-');
    let hash = hex::encode(Sha256::digest(task_id.as_bytes()));
    match slug.is_empty() {
        true => format!("ar-{}", &hash[..10]),
        false => format!("ar-{slug}-{}", &hash[..10]),
    }
}

/// What every task Job of this worker has in common (from `k8s_*`, `limits` and the
/// worker's own configuration).
#[derive(Debug, Clone)]
pub struct JobTemplate {
    pub image: String,
    /// Secrets projected into [`SECRETS_MOUNT`].
    pub secrets: Vec<String>,
    /// Memory request and limit, MiB (`max_memory_mb`).
    pub memory_mb: Option<u64>,
    /// CPU request and limit, percent of a core (`max_cpu_percent`).
    pub cpu_percent: Option<u32>,
    /// The worker's configuration file, without what only the worker uses.
    pub config_yaml: Option<String>,
    /// Configuration the worker took from its environment, passed on as set.
    pub forwarded_env: Vec<(String, String)>,
}

/// One task's part of its Job.
#[derive(Debug, Clone, Copy)]
pub struct TaskJob<'a> {
    pub task_id: &'a str,
    pub spec_name: &'a str,
    /// The task message as the worker received it.
    pub task_json: &'a str,
    /// `activeDeadlineSeconds`: Kubernetes stops the pod past it.
    pub deadline: Duration,
    /// The delivery attempt that created the Job.
    pub attempt: u32,
}

impl JobTemplate {
    /// The Job manifest for `task`.
    pub fn job_for(&self, task: TaskJob<'_>) -> Result<Job, serde_json::Error> {
        let name = job_name(task.task_id);
        let mut env = vec![
            serde_json::json!({ "name": TASK_ENV, "value": task.task_json }),
            serde_json::json!({ "name": ATTEMPT_ENV, "value": task.attempt.to_string() }),
            serde_json::json!({ "name": "RUNNER_EXECUTION_MODE", "value": POD_EXECUTION_MODE }),
            serde_json::json!({ "name": "RUNNER_ID", "value": name }),
            serde_json::json!({ "name": "AGENT_RUNNER_HOME", "value": DATA_DIR }),
        ];
        if let Some(config) = &self.config_yaml {
            env.push(serde_json::json!({ "name": CONFIG_ENV, "value": config }));
        }
        let mut mounts = vec![
            serde_json::json!({ "name": "tmp", "mountPath": "/tmp" }),
            serde_json::json!({ "name": "data", "mountPath": DATA_DIR }),
        ];
        let mut volumes = vec![
            serde_json::json!({ "name": "tmp", "emptyDir": {} }),
            serde_json::json!({ "name": "data", "emptyDir": {} }),
        ];
        if !self.secrets.is_empty() {
            env.push(serde_json::json!({ "name": SECRETS_DIR_ENV, "value": SECRETS_MOUNT }));
            mounts
                .push(serde_json::json!({ "name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": true }));
            let sources: Vec<_> =
                self.secrets.iter().map(|s| serde_json::json!({ "secret": { "name": s } })).collect();
            volumes.push(serde_json::json!({
                "name": "secrets",
                "projected": { "sources": sources, "defaultMode": 0o400 },
            }));
        }
        for (variable, value) in &self.forwarded_env {
            env.push(serde_json::json!({ "name": variable, "value": value }));
        }
        let labels = serde_json::json!({
            "app.kubernetes.io/name": "agent-runner",
            COMPONENT_LABEL: "task",
        });
        let manifest = serde_json::json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": { TASK_ID_ANNOTATION: task.task_id, "agent-runner.necrocode.io/spec-name": task.spec_name },
            },
            "spec": {
                // Retries are the worker's (delayed, counted, dead-lettered); a pod that
                // failed is read, not restarted behind the worker's back.
                "backoffLimit": 0,
                "activeDeadlineSeconds": task.deadline.as_secs().max(1),
                "ttlSecondsAfterFinished": FINISHED_JOB_TTL_SECONDS,
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": false,
                        "enableServiceLinks": false,
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": POD_UID,
                            "runAsGroup": POD_UID,
                            "fsGroup": POD_UID,
                            "seccompProfile": { "type": "RuntimeDefault" },
                        },
                        "containers": [{
                            "name": "task",
                            "image": self.image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["agent-runner"],
                            "args": ["run", "--outcome-file", TERMINATION_LOG, "--event-lines"],
                            "env": env,
                            "resources": self.resources(),
                            "terminationMessagePath": TERMINATION_LOG,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "capabilities": { "drop": ["ALL"] },
                            },
                            "volumeMounts": mounts,
                        }],
                        "volumes": volumes,
                    },
                },
            },
        });
        serde_json::from_value(manifest)
    }

    /// Requests equal to limits: the pod gets what the task may use and no more, and the
    /// scheduler places it where that much is free.
    fn resources(&self) -> serde_json::Value {
        let mut amounts = serde_json::Map::new();
        if let Some(mb) = self.memory_mb {
            amounts.insert("memory".into(), format!("{mb}Mi").into());
        }
        if let Some(percent) = self.cpu_percent {
            amounts.insert("cpu".into(), format!("{}m", u64::from(percent) * 10).into());
        }
        serde_json::json!({ "requests": amounts, "limits": amounts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> JobTemplate {
        JobTemplate {
            image: "necrocode/agent-runner:1".into(),
            secrets: vec!["git-token".into(), "openai-api-key".into()],
            memory_mb: Some(4096),
            cpu_percent: Some(200),
            config_yaml: Some("llm:\n  model: m\n".into()),
            forwarded_env: vec![("LLM_MODEL".into(), "m".into())],
        }
    }

    #[test]
    fn names_are_dns_labels_stable_per_task_and_distinct_across_tasks() {
        let name = job_name("Task 42/Ünïcode__x");
        assert_eq!(name, job_name("Task 42/Ünïcode__x"));
        assert!(name.starts_with("ar-task-42-n-code-x-"), "{name}");
        assert_ne!(job_name("a.b"), job_name("a-b"), "the hash tells apart what the slug folds");
        let long = job_name(&"x".repeat(300));
        assert!(long.len() <= 54, "{long}");
        let odd = job_name("---");
        assert!(odd.starts_with("ar-") && odd.len() == 13, "{odd}");
        for name in [name, long, odd] {
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            assert!(!name.ends_with('-'));
        }
    }

    #[test]
    fn the_job_runs_the_task_in_a_locked_down_pod_with_its_secrets_as_files() {
        let task = TaskJob {
            task_id: "t-1",
            spec_name: "spec",
            task_json: r#"{"task_id":"t-1"}"#,
            deadline: Duration::from_secs(1900),
            attempt: 2,
        };
        let job = template().job_for(task).unwrap();
        let value = serde_json::to_value(&job).unwrap();
        let spec = &value["spec"];
        assert_eq!(spec["backoffLimit"], 0);
        assert_eq!(spec["activeDeadlineSeconds"], 1900);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], false);
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let container = &pod["containers"][0];
        assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(container["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(container["resources"]["limits"]["memory"], "4096Mi");
        assert_eq!(container["resources"]["limits"]["cpu"], "2000m");
        assert_eq!(container["resources"]["requests"], container["resources"]["limits"]);
        let env: Vec<(String, String)> = container["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().into(), e["value"].as_str().unwrap().into()))
            .collect();
        let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get(TASK_ENV), Some(r#"{"task_id":"t-1"}"#));
        assert_eq!(get(ATTEMPT_ENV), Some("2"));
        assert_eq!(get("RUNNER_EXECUTION_MODE"), Some("local-process"));
        assert_eq!(get(SECRETS_DIR_ENV), Some(SECRETS_MOUNT));
        assert_eq!(get("LLM_MODEL"), Some("m"));
        let sources = &pod["volumes"][2]["projected"]["sources"];
        assert_eq!(sources[1]["secret"]["name"], "openai-api-key");
        assert_eq!(value["metadata"]["annotations"][TASK_ID_ANNOTATION], "t-1");
    }
}
