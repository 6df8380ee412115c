//! The seed's configuration files load unchanged (`config/seed/` holds them verbatim from
//! the seed's README), every key landing in the typed config; `config validate` checks a
//! file with file, line and key; the kubernetes mode loads but the worker refuses it.

mod common;

use std::path::{Path, PathBuf};

use common::binary::{agent_runner, stderr};
use std::time::Duration;

use agent_runner::config::{
    self, ArtifactStoreLocation, ConfigOverrides, DockerVolume, ExecutionMode, KubernetesConfig, LogLevel,
    RunnerConfig,
};

fn seed_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/seed").join(name)
}

fn load_seed(name: &str) -> RunnerConfig {
    config::load(Some(&seed_file(name)), &|_| None, &ConfigOverrides::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `yaml` loaded as a config file, and the error (as displayed, the path as `FILE`).
fn load_yaml(yaml: &str) -> Result<RunnerConfig, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    config::load(Some(&path), &|_| None, &ConfigOverrides::default())
        .map_err(|e| e.to_string().replace(&path.display().to_string(), "FILE"))
}

fn url(text: &str) -> Option<reqwest::Url> {
    Some(reqwest::Url::parse(text).unwrap())
}

#[test]
fn the_seed_config_yaml_loads_with_every_key_in_place() {
    let seed = load_seed("config.yaml");
    assert_eq!(seed.execution_mode, ExecutionMode::LocalProcess);
    assert_eq!(seed.default_timeout, Duration::from_secs(1800));
    assert_eq!(seed.logging.level, LogLevel::Info);
    assert_eq!(seed.services.task_registry_url, url("http://localhost:8001"));
    assert_eq!(seed.services.repo_pool_url, url("http://localhost:8002"));
    let store = ArtifactStoreLocation::Http(reqwest::Url::parse("http://localhost:8003").unwrap());
    assert_eq!(seed.services.artifact_store, store);
    assert_eq!((seed.llm.model.as_str(), seed.llm.timeout), ("gpt-4", Duration::from_secs(120)));
    assert_eq!((seed.retry.git, seed.retry.network, seed.retry.llm), (3, 3, 3));
    assert_eq!((seed.limits.max_memory_mb, seed.limits.max_cpu_percent), (Some(2048), Some(80)));
}

#[test]
fn the_seed_docker_config_loads_its_flat_image_and_volumes_read_only() {
    let seed = load_seed("config.docker.yaml");
    assert_eq!(seed.execution_mode, ExecutionMode::Docker);
    assert_eq!(seed.docker_image.as_deref(), Some("necrocode/agent-runner:latest"));
    let workspaces = DockerVolume {
        host: "/var/necrocode/workspaces".into(),
        container: "/workspaces".into(),
        read_only: true,
    };
    assert_eq!(seed.docker_volumes, vec![workspaces]);
    assert_eq!(seed.services.task_registry_url, url("http://task-registry:8001"));
}

#[test]
fn the_seed_kubernetes_config_loads_its_k8s_keys() {
    let seed = load_seed("config.k8s.yaml");
    assert_eq!(seed.execution_mode, ExecutionMode::Kubernetes);
    let expected = KubernetesConfig {
        namespace: Some("necrocode".into()),
        image: Some("necrocode/agent-runner:latest".into()),
        secrets: vec!["git-token".into(), "openai-api-key".into()],
        pod_config: seed.kubernetes.pod_config.clone(),
    };
    assert_eq!(seed.kubernetes, expected);
    // The pods get the file without the worker's own keys, the services kept.
    let pods = seed.kubernetes.pod_config.as_deref().unwrap_or_default();
    assert!(pods.contains("task-registry.necrocode.svc") && !pods.contains("k8s_image"), "{pods}");
    assert_eq!((seed.limits.max_memory_mb, seed.limits.max_cpu_percent), (Some(4096), Some(200)));
}

#[test]
fn kubernetes_names_are_checked_as_rfc_1123_names() {
    assert_eq!(
        load_yaml("k8s_namespace: Necro_Code\n").unwrap_err(),
        "invalid k8s_namespace from FILE: must be a Kubernetes name (1 to 63 lowercase letters, \
         digits and `-`), got `Necro_Code`"
    );
    assert_eq!(
        load_yaml("k8s_secrets: [git-token, tls.certs]\n").unwrap().kubernetes.secrets,
        ["git-token", "tls.certs"]
    );
}

#[test]
fn the_image_in_both_spellings_is_refused_naming_both_and_volumes_take_either_shape() {
    assert_eq!(
        load_yaml("docker_image: a:1\ndocker:\n  image: b:1\n").unwrap_err(),
        "invalid docker_image from FILE: docker_image and docker.image are the same setting: set one of them"
    );
    assert_eq!(load_yaml("docker_image: a:1\n").unwrap().docker_image.as_deref(), Some("a:1"));
    let list = load_yaml("docker:\n  volumes: [\"/srv/x:/x:rw\"]\n").unwrap().docker_volumes;
    assert_eq!(list, [DockerVolume { host: "/srv/x".into(), container: "/x".into(), read_only: false }]);
    let map = load_yaml("docker_volumes:\n  /srv/x: /x\n").unwrap().docker_volumes;
    assert_eq!(map, [DockerVolume { host: "/srv/x".into(), container: "/x".into(), read_only: true }]);
}

#[test]
fn config_validate_accepts_the_seed_files() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.yaml", "config.docker.yaml"] {
        let file = seed_file(name);
        let output = agent_runner(&["config", "validate", file.to_str().unwrap()], dir.path());
        assert_eq!(output.status.code(), Some(0), "{name}: {}", stderr(&output));
        assert_eq!(stderr(&output), "", "{name}");
    }
    let k8s = seed_file("config.k8s.yaml");
    let output = agent_runner(&["config", "validate", k8s.to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    let verdict = format!("{}: valid configuration (execution_mode kubernetes)\n", k8s.display());
    assert_eq!(String::from_utf8_lossy(&output.stdout), verdict);
}

#[test]
fn config_validate_names_file_line_and_key_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "log_level: INFO\nllm:\n  model: gpt-4\n  timeout_seconds: 0\n").unwrap();
    let output = agent_runner(&["config", "validate", "bad.yaml"], dir.path());
    assert_eq!(output.status.code(), Some(78));
    assert_eq!(
        stderr(&output),
        "bad.yaml:4: invalid llm.timeout_seconds from bad.yaml: must be between 1 and 604800, got 0\n"
    );
    std::fs::write(&file, "execution_mode: docker\ndocker_volumes:\n  /srv/../etc: /etc\n").unwrap();
    let output = agent_runner(&["config", "validate", "bad.yaml"], dir.path());
    assert_eq!(output.status.code(), Some(78));
    assert_eq!(
        stderr(&output),
        "bad.yaml:2: invalid docker_volumes from bad.yaml: host path /srv/../etc must be absolute, without `.` or `..`\n"
    );
    std::fs::write(&file, "amqp:\n  concurency: 2\n").unwrap();
    let output = agent_runner(&["config", "validate", "bad.yaml"], dir.path());
    assert_eq!(output.status.code(), Some(78));
    assert!(
        stderr(&output)
            .starts_with("bad.yaml:2: invalid config file bad.yaml: amqp: unknown field `concurency`")
    );
}

#[test]
fn a_kubernetes_worker_without_a_cluster_configuration_refuses_to_start_with_one_line_and_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let k8s = seed_file("config.k8s.yaml");
    // No kubeconfig (an empty home) and not in a pod: nothing to reach an API server with.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_agent-runner"))
        .args(["--config", k8s.to_str().unwrap(), "worker", "--once"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("AMQP_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.starts_with("error: execution_mode kubernetes: no Kubernetes API configuration"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
}
