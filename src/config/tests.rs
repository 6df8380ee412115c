//! Tests of the whole loading chain: defaults, file, environment and flags through
//! [`load`], with real files in a temporary directory and an injected environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use super::*;

/// An environment lookup over fixed pairs.
fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

/// The base environment of most tests: a fixed host name and data directory.
const BASE_ENV: &[(&str, &str)] = &[("HOSTNAME", "worker-7"), ("AGENT_RUNNER_HOME", "/var/lib/ar")];

/// A config file in its own temporary directory (kept alive by the returned guard).
fn config_file(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    (dir, path)
}

fn load_with(
    yaml: Option<&str>,
    env: &[(&str, &str)],
    flags: &ConfigOverrides,
) -> Result<RunnerConfig, ConfigError> {
    let file = yaml.map(config_file);
    load(file.as_ref().map(|(_, p)| p.as_path()), &env_of(env), flags)
}

/// The error `yaml` produces, as displayed, with the temporary path replaced by `FILE`.
fn file_error(yaml: &str) -> String {
    let (_dir, path) = config_file(yaml);
    let err = load(Some(&path), &env_of(BASE_ENV), &ConfigOverrides::default()).unwrap_err();
    err.to_string().replace(&path.display().to_string(), "FILE")
}

fn url(text: &str) -> reqwest::Url {
    reqwest::Url::parse(text).unwrap()
}

#[test]
fn defaults_are_the_documented_ones() {
    let config = load_with(None, BASE_ENV, &ConfigOverrides::default()).unwrap();
    let expected = RunnerConfig {
        runner_id: "worker-7".into(),
        execution_mode: ExecutionMode::LocalProcess,
        docker_image: None,
        docker_volumes: Vec::new(),
        kubernetes: KubernetesConfig::default(),
        default_timeout: Duration::from_secs(1800),
        pool_dir: PathBuf::from("/var/lib/ar/slots"),
        playbooks_dir: PathBuf::from("playbooks"),
        pool: PoolConfig { slot_roots: None },
        services: ServicesConfig {
            task_registry_url: None,
            repo_pool_url: None,
            artifact_store: ArtifactStoreLocation::Filesystem(PathBuf::from("/var/lib/ar/artifacts")),
        },
        amqp: AmqpConfig {
            url: AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap(),
            task_exchange: "necrocode.tasks".into(),
            work_queue: "agent-runner.tasks".into(),
            binding_keys: vec!["task.#".into()],
            dead_letter_exchange: "necrocode.dlx".into(),
            dead_letter_queue: "agent-runner.dlq".into(),
            events_exchange: "necrocode.events".into(),
            control_exchange: "necrocode.control".into(),
            delivery_limit: 5,
            concurrency: 1,
            prefetch: 1,
            consumer_timeout: Duration::from_secs(7200),
            idle_timeout: None,
        },
        llm: LlmConfig {
            model: "gpt-4o-mini".into(),
            endpoint: None,
            timeout: Duration::from_secs(120),
            api_key_env_var: "OPENAI_API_KEY".into(),
            context_tokens: None,
            temperature: 0.2,
            max_tokens: None,
        },
        git: GitConfig {
            author_name: "agent-runner".into(),
            author_email: "agent-runner@necrocode.local".into(),
            remote_name: "origin".into(),
            token_env_var: "GIT_TOKEN".into(),
            allowed_remotes: vec![crate::git::RemotePrefix::any_https()],
            token_hosts: Vec::new(),
            secret_scan_allow: crate::secrets::AllowPatterns::default(),
        },
        playbook: PlaybookConfig {
            default_step_timeout: Duration::from_secs(600),
            output_cap_bytes: 65536,
            allow_inline: true,
            repair_rounds: 2,
            variables: BTreeMap::new(),
        },
        retry: RetryConfig { git: 3, network: 3, llm: 3 },
        reliability: ReliabilityConfig::default(),
        limits: ResourceLimits {
            max_memory_mb: None,
            max_cpu_percent: None,
            max_processes: Some(super::DEFAULT_MAX_PROCESSES),
            max_file_bytes: 5 * 1024 * 1024,
        },
        sandbox: crate::process::SandboxPolicy { uid: 65534, gid: 65534, read_only_paths: Vec::new() },
        logging: LoggingConfig { level: LogLevel::Info, structured: true, mask_secrets: true },
        http: HttpConfig { listen: None },
        mirror: MirrorConfig {
            queue: "task-registry.mirror".into(),
            binding_keys: vec!["task.#".into()],
            dead_letter_exchange: "task-registry.mirror.dlx".into(),
            dead_letter_queue: "task-registry.mirror.dlq".into(),
            prefetch: 32,
            retry_max_delay: Duration::from_secs(30),
        },
        engine: crate::llm::EngineSettings::default(),
    };
    assert_eq!(config, expected);
}

#[test]
fn defaults_without_host_name_or_home() {
    let config = load_with(None, &[], &ConfigOverrides::default()).unwrap();
    let suffix = config.runner_id.strip_prefix("runner-").unwrap();
    assert_eq!(suffix.len(), 8, "{}", config.runner_id);
    assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{}", config.runner_id);
    assert_eq!(config.pool_dir, Path::new(".agent-runner/slots"));
    let store = ArtifactStoreLocation::Filesystem(PathBuf::from(".agent-runner/artifacts"));
    assert_eq!(config.services.artifact_store, store);
}

#[test]
fn file_overrides_defaults_and_leaves_the_rest() {
    let yaml = "
execution_mode: sandbox
log_level: DEBUG
task_registry_url: http://registry:8001
artifact_store_url: s3://artifacts/runs
llm: { model: llama3, endpoint: 'http://ollama:11434/v1' }
amqp:
  concurrency: 4
  binding_keys: [task.backend]
git: { remote_name: upstream }
playbook: { output_cap_bytes: 1024 }
max_memory_mb: 2048
";
    let config = load_with(Some(yaml), BASE_ENV, &ConfigOverrides::default()).unwrap();
    let mut expected = RunnerConfig::defaults_from(&env_of(BASE_ENV));
    expected.execution_mode = ExecutionMode::Sandbox;
    expected.logging.level = LogLevel::Debug;
    expected.services.task_registry_url = Some(url("http://registry:8001"));
    expected.services.artifact_store = ArtifactStoreLocation::S3(url("s3://artifacts/runs"));
    expected.llm.model = "llama3".into();
    expected.llm.endpoint = Some(url("http://ollama:11434/v1"));
    expected.amqp.concurrency = 4;
    expected.amqp.prefetch = 4;
    expected.amqp.binding_keys = vec!["task.backend".into()];
    expected.git.remote_name = "upstream".into();
    expected.playbook.output_cap_bytes = 1024;
    expected.limits.max_memory_mb = Some(2048);
    assert_eq!(config, expected);
}

#[test]
fn one_key_through_the_whole_chain() {
    let yaml = Some("log_level: debug\n");
    let flags = ConfigOverrides { log_level: Some("ERROR".into()), ..Default::default() };
    let env = [BASE_ENV, &[("RUNNER_LOG_LEVEL", "warn")]].concat();
    fn level(yaml: Option<&str>, env: &[(&str, &str)], flags: &ConfigOverrides) -> LogLevel {
        load_with(yaml, env, flags).unwrap().logging.level
    }
    assert_eq!(level(None, BASE_ENV, &ConfigOverrides::default()), LogLevel::Info);
    assert_eq!(level(yaml, BASE_ENV, &ConfigOverrides::default()), LogLevel::Debug);
    assert_eq!(level(yaml, &env, &ConfigOverrides::default()), LogLevel::Warn);
    assert_eq!(level(yaml, &env, &flags), LogLevel::Error);
}

#[test]
fn each_layer_sets_its_own_keys() {
    let yaml = "amqp: { concurrency: 2, work_queue: from-file }\nllm: { model: file-model }\n";
    let env = [BASE_ENV, &[("RUNNER_CONCURRENCY", "3"), ("LLM_MODEL", "env-model"), ("RUNNER_ID", "env-id")]]
        .concat();
    let flags =
        ConfigOverrides { concurrency: Some(6), runner_id: Some("flag-id".into()), ..Default::default() };
    let config = load_with(Some(yaml), &env, &flags).unwrap();
    assert_eq!(config.amqp.work_queue, "from-file");
    assert_eq!(config.llm.model, "env-model");
    assert_eq!((config.amqp.concurrency, config.amqp.prefetch), (6, 6));
    assert_eq!(config.runner_id, "flag-id");
}

#[test]
fn env_overrides_file_and_empty_env_changes_nothing() {
    let yaml = Some("amqp: { concurrency: 2 }\ntask_registry_url: http://registry:8001\n");
    let env = [BASE_ENV, &[("RUNNER_CONCURRENCY", "3"), ("TASK_REGISTRY_URL", "")]].concat();
    let config = load_with(yaml, &env, &ConfigOverrides::default()).unwrap();
    assert_eq!(config.amqp.concurrency, 3);
    assert_eq!(config.services.task_registry_url, Some(url("http://registry:8001")));
}

#[test]
fn llm_endpoint_beats_openai_base_url() {
    let both =
        [BASE_ENV, &[("OPENAI_BASE_URL", "http://a:1/v1"), ("LLM_ENDPOINT", "http://b:2/v1")]].concat();
    let config = load_with(None, &both, &ConfigOverrides::default()).unwrap();
    assert_eq!(config.llm.endpoint, Some(url("http://b:2/v1")));
    let one = [BASE_ENV, &[("OPENAI_BASE_URL", "http://a:1/v1")]].concat();
    let config = load_with(None, &one, &ConfigOverrides::default()).unwrap();
    assert_eq!(config.llm.endpoint, Some(url("http://a:1/v1")));
}

#[test]
fn unknown_key_names_file_line_key_and_expected_keys() {
    assert_eq!(
        file_error("log_level: info\nllm:\n  model: x\n  temprature: 0.2\n"),
        "invalid config file FILE: llm: unknown field `temprature`, expected one of `model`, \
         `endpoint`, `timeout_seconds`, `context_tokens`, `temperature`, `max_tokens`, `api_key` at \
         line 4 column 3"
    );
}

#[test]
fn yaml_syntax_error_names_line_and_column() {
    let (_dir, path) = config_file("log_level: info\nllm:\n  model: \"x\n");
    let err = load(Some(&path), &env_of(BASE_ENV), &ConfigOverrides::default()).unwrap_err();
    let ConfigError::Syntax { line, column, .. } = &err else { panic!("{err}") };
    assert_eq!((*line, *column), (Some(4), Some(1)), "{err}");
    let shown = err.to_string().replace(&path.display().to_string(), "FILE");
    assert_eq!(
        shown,
        "invalid config file FILE: found unexpected end of stream at line 4 column 1, \
         while scanning a quoted scalar at line 3 column 10"
    );
}

#[test]
fn bad_file_values_name_the_key_and_reason() {
    assert_eq!(
        file_error("amqp:\n  concurrency: 0\n"),
        "invalid amqp.concurrency from FILE: must be between 1 and 64, got 0"
    );
    assert_eq!(
        file_error("log_level: loud\n"),
        "invalid log_level from FILE: expected one of trace, debug, info, warn, error, got `loud`"
    );
    assert_eq!(
        file_error("amqp:\n  url: http://x\n"),
        "invalid amqp.url from FILE: scheme must be amqp or amqps, got `http`"
    );
    assert_eq!(
        file_error("artifact_store_url: ftp://x/y\n"),
        "invalid artifact_store_url from FILE: scheme must be file, http, https or s3, got `ftp`"
    );
    assert_eq!(
        file_error("repo_pool_url: http://user:pw@pool:8002\n"),
        "invalid repo_pool_url from FILE: the URL carries a password, which would reach logs and events"
    );
}

#[test]
fn api_key_in_file_is_refused_without_echoing_it() {
    let message = file_error("llm:\n  model: gpt-4\n  api_key: sk-live-123456\n");
    let expected = format!("invalid config file FILE: llm.api_key: {} at line 3 column 12", reject::API_KEY);
    assert_eq!(message, expected);
    assert!(!message.contains("sk-live"));
}

#[test]
fn bad_env_value_names_the_variable() {
    let env = [BASE_ENV, &[("RUNNER_CONCURRENCY", "many")]].concat();
    let err = load_with(None, &env, &ConfigOverrides::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid amqp.concurrency from env RUNNER_CONCURRENCY: expected a whole number, got `many`"
    );
    let env = [BASE_ENV, &[("RUNNER_CONCURRENCY", "65")]].concat();
    let err = load_with(None, &env, &ConfigOverrides::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid amqp.concurrency from env RUNNER_CONCURRENCY: must be between 1 and 64, got 65"
    );
}

#[test]
fn bad_flag_value_names_the_flag() {
    let flags = ConfigOverrides { concurrency: Some(0), ..Default::default() };
    let err = load_with(None, BASE_ENV, &flags).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid amqp.concurrency from --concurrency: must be between 1 and 64, got 0"
    );
}

#[test]
fn cross_field_checks_blame_the_right_layer() {
    let flags = ConfigOverrides { prefetch: Some(2), ..Default::default() };
    let env = [BASE_ENV, &[("RUNNER_CONCURRENCY", "4")]].concat();
    assert_eq!(
        load_with(None, &env, &flags).unwrap_err().to_string(),
        "invalid amqp.prefetch from --prefetch: 2 is below amqp.concurrency 4, which would leave \
         task slots idle"
    );
    assert_eq!(
        file_error("execution_mode: docker\n"),
        "invalid docker.image from FILE: required when execution_mode is docker"
    );
    let env = [BASE_ENV, &[("RUNNER_TIMEOUT", "7200")]].concat();
    assert_eq!(
        load_with(None, &env, &ConfigOverrides::default()).unwrap_err().to_string(),
        "invalid default_timeout_seconds from env RUNNER_TIMEOUT: 7200s does not fit under \
         amqp.consumer_timeout_seconds 7200s: the broker would take the task back while it \
         runs; raise RabbitMQ's consumer_timeout and amqp.consumer_timeout_seconds together"
    );
}

#[test]
fn amqp_url_may_list_a_clusters_nodes_each_checked_and_redacted() {
    let yaml = Some("amqp:\n  url: amqp://w:p4ss-1@n1:5672/%2f, amqp://w:p4ss-1@n2:5673/%2f\n");
    let config = load_with(yaml, BASE_ENV, &ConfigOverrides::default()).unwrap();
    assert_eq!(config.amqp.url.expose(), "amqp://w:p4ss-1@n1:5672/%2f,amqp://w:p4ss-1@n2:5673/%2f");
    assert_eq!(config.amqp.url.redacted(), "amqp://w:***@n1:5672/%2f,amqp://w:***@n2:5673/%2f");
    let bad = Some("amqp:\n  url: amqp://n1/%2f,http://n2/\n");
    let error = load_with(bad, BASE_ENV, &ConfigOverrides::default()).unwrap_err().to_string();
    assert!(error.contains("node 2: scheme must be amqp or amqps"), "{error}");
}

#[test]
fn amqp_password_never_shows_in_debug() {
    let yaml = Some("amqp:\n  url: amqp://worker:file-pass-42@broker:5672/%2f\n");
    let config = load_with(yaml, BASE_ENV, &ConfigOverrides::default()).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("file-pass-42"), "{debug}");
    assert!(debug.contains("amqp://worker:***@broker:5672/%2f"), "{debug}");
    assert_eq!(config.amqp.url.expose(), "amqp://worker:file-pass-42@broker:5672/%2f");

    let flags =
        ConfigOverrides { amqp_url: Some("amqps://u:flag-pass-7@b/%2f".into()), ..Default::default() };
    assert!(!format!("{flags:?}").contains("flag-pass-7"));
    let config = load_with(None, BASE_ENV, &flags).unwrap();
    assert!(!format!("{config:?}").contains("flag-pass-7"));

    let defaults = format!("{:?}", RunnerConfig::defaults_from(&env_of(BASE_ENV)));
    assert!(defaults.contains("amqp://guest:***@127.0.0.1:5672/%2f"), "{defaults}");
    assert!(!defaults.contains("guest:guest"), "{defaults}");
}

#[test]
fn comment_only_file_changes_nothing() {
    let config = load_with(Some("# nothing yet\n\n"), BASE_ENV, &ConfigOverrides::default()).unwrap();
    assert_eq!(config, RunnerConfig::defaults_from(&env_of(BASE_ENV)));
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.yaml");
    let err = load(Some(&path), &env_of(BASE_ENV), &ConfigOverrides::default()).unwrap_err();
    let prefix = format!("cannot read config file {}: ", path.display());
    assert!(err.to_string().starts_with(&prefix), "{err}");
}

#[test]
fn shipped_examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let load_example = |name: &str| {
        let path = dir.join(name);
        load(Some(&path), &env_of(&[]), &ConfigOverrides::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let local = load_example("config.local.yaml");
    assert_eq!((local.execution_mode, local.logging.structured), (ExecutionMode::LocalProcess, false));
    assert_eq!(local.engine.protected, crate::llm::agent::ProtectedPaths::defaults());
    assert_eq!(local.engine.prices.len(), 1);
    let docker = load_example("config.docker.yaml");
    assert_eq!(docker.docker_image.as_deref(), Some("rust:1-bookworm"));
    // The Kubernetes configuration lives with the manifests: kustomize generates the
    // ConfigMap from it and loads files only under the kustomization's root.
    let kubernetes = load_example("../deploy/kubernetes/common/config.yaml");
    assert_eq!(kubernetes.execution_mode, ExecutionMode::Sandbox);
    assert_eq!(kubernetes.limits.max_cpu_percent, Some(200));
    assert!(kubernetes.amqp.consumer_timeout < kubernetes.reliability.shutdown_grace);
    // The image runs with a GIT_TOKEN secret: without a token host it would not start.
    let github = vec![crate::git::TokenHost::parse("github.com").unwrap()];
    assert_eq!((&kubernetes.git.token_hosts, &docker.git.token_hosts), (&github, &github));
    assert_eq!(local.git.allowed_remotes, vec![crate::git::RemotePrefix::any_https()]);
    // compose cannot unmask /proc for the sandbox: local processes, stand-ins in the volume.
    let compose = load_example("config.compose.yaml");
    assert_eq!(compose.execution_mode, ExecutionMode::LocalProcess);
    assert_eq!(compose.http.listen, Some("0.0.0.0:9090".parse().unwrap()));
    assert_eq!(compose.pool_dir, Path::new("/var/lib/agent-runner/slots"));
    assert_eq!(
        compose.services.artifact_store,
        crate::config::ArtifactStoreLocation::Filesystem("/var/lib/agent-runner/artifacts".into())
    );
    assert_eq!(compose.git.token_hosts, github);
}

#[test]
fn playbook_variables_and_repair_rounds_come_from_the_file() {
    let config = load_with(
        Some("playbook:\n  repair_rounds: 0\n  variables:\n    lint_enabled: true\n    level: 3\n    name: x\n"),
        BASE_ENV,
        &ConfigOverrides::default(),
    )
    .unwrap();
    assert_eq!(config.playbook.repair_rounds, 0);
    let expected: BTreeMap<String, String> =
        [("level", "3"), ("lint_enabled", "true"), ("name", "x")].map(|(k, v)| (k.into(), v.into())).into();
    assert_eq!(config.playbook.variables, expected);
    assert_eq!(
        file_error("playbook:\n  variables:\n    lint: [1]\n"),
        "invalid playbook.variables from FILE: variable 'lint' must be a string, number or boolean"
    );
    assert_eq!(
        file_error("playbook:\n  repair_rounds: 11\n"),
        "invalid playbook.repair_rounds from FILE: must be between 0 and 10, got 11"
    );
}

#[test]
fn http_and_mirror_sections_layer_and_are_checked() {
    let yaml = "
http: { listen: '0.0.0.0:9090' }
mirror: { queue: registry.mirror, prefetch: 8, retry_max_delay_seconds: 5 }
";
    let env = [BASE_ENV, &[("RUNNER_HTTP_LISTEN", "127.0.0.1:9191")]].concat();
    let config = load_with(Some(yaml), &env, &ConfigOverrides::default()).unwrap();
    assert_eq!(config.http.listen, Some("127.0.0.1:9191".parse().unwrap()));
    let mut mirror = MirrorConfig { queue: "registry.mirror".into(), prefetch: 8, ..MirrorConfig::default() };
    mirror.retry_max_delay = Duration::from_secs(5);
    assert_eq!(config.mirror, mirror);
    let flags = ConfigOverrides { http_listen: Some("[::1]:80".into()), ..ConfigOverrides::default() };
    let config = load_with(Some(yaml), &env, &flags).unwrap();
    assert_eq!(config.http.listen, Some("[::1]:80".parse().unwrap()));

    assert_eq!(
        file_error("http: { listen: 'metrics:9090' }\n"),
        "invalid http.listen from FILE: expected an IP address and port such as 0.0.0.0:9090, got `metrics:9090`"
    );
    assert_eq!(
        file_error("mirror: { prefetch: 0 }\n"),
        "invalid mirror.prefetch from FILE: must be between 1 and 65535, got 0"
    );
    assert!(file_error("mirror: { queues: x }\n").contains("unknown field `queues`"));
}

#[test]
fn process_limit_is_set_from_the_limits_section_and_checked() {
    let config = load_with(Some("limits: { max_processes: 64 }\n"), BASE_ENV, &ConfigOverrides::default());
    assert_eq!(config.unwrap().limits.max_processes, Some(64));
    assert_eq!(
        file_error("limits: { max_processes: 0 }\n"),
        "invalid limits.max_processes from FILE: must be between 1 and 4194304, got 0"
    );
}

#[test]
fn file_size_cap_is_set_from_the_limits_section_and_checked() {
    let config =
        load_with(Some("limits: { max_file_bytes: 65536 }\n"), BASE_ENV, &ConfigOverrides::default());
    assert_eq!(config.unwrap().limits.max_file_bytes, 65536);
    assert_eq!(
        file_error("limits: { max_file_bytes: 100 }\n"),
        "invalid limits.max_file_bytes from FILE: must be between 4096 and 268435456, got 100"
    );
}

#[test]
fn the_sandbox_section_sets_uid_gid_and_read_only_paths_and_refuses_root_and_relative_paths() {
    let yaml = "sandbox: { uid: 1500, gid: 1600, read_only_paths: [/opt/toolchain, /root/.cargo] }\n";
    let config = load_with(Some(yaml), BASE_ENV, &ConfigOverrides::default()).unwrap();
    let paths = vec![PathBuf::from("/opt/toolchain"), PathBuf::from("/root/.cargo")];
    assert_eq!(
        config.sandbox,
        crate::process::SandboxPolicy { uid: 1500, gid: 1600, read_only_paths: paths }
    );
    for (yaml, key) in [
        ("sandbox: { uid: 0 }", "sandbox.uid"),
        ("sandbox: { gid: 4294967295 }", "sandbox.gid"),
        ("sandbox: { read_only_paths: [opt/tools] }", "sandbox.read_only_paths"),
        ("sandbox: { read_only_paths: [/opt/../root] }", "sandbox.read_only_paths"),
        ("sandbox: { read_only_paths: [/] }", "sandbox.read_only_paths"),
    ] {
        let error = file_error(yaml);
        assert!(error.contains(key), "{yaml}: {error}");
    }
}

#[test]
fn the_engine_section_sets_mode_budgets_protection_and_prices() {
    let yaml = "
engine:
  mode: edit_blocks
  max_turns: 30
  max_total_tokens: 200000
  max_cost_usd: 0.75
  max_wall_seconds: 600
  stall_repeated_calls: 3
  stall_turns_without_change: 8
  protected_paths: ['tests/**', 'src/**/fixtures/*']
  prices:
    gpt-4o-mini: { prompt_per_1k: 0.00015, completion_per_1k: 0.0006 }
";
    let config = load_with(Some(yaml), BASE_ENV, &ConfigOverrides::default()).unwrap();
    let patterns = vec!["tests/**".to_string(), "src/**/fixtures/*".to_string()];
    let mut prices = crate::llm::agent::PriceTable::new();
    let price = crate::llm::agent::ModelPrice { prompt_per_1k: 0.00015, completion_per_1k: 0.0006 };
    prices.insert("gpt-4o-mini".into(), price);
    let expected = crate::llm::EngineSettings {
        mode: crate::llm::EngineMode::EditBlocks,
        limits: crate::llm::agent::BudgetLimits {
            max_turns: 30,
            max_total_tokens: 200_000,
            max_cost_usd: 0.75,
            max_wall: Duration::from_secs(600),
            stall_repeated_calls: 3,
            stall_turns_without_change: 8,
        },
        protected: crate::llm::agent::ProtectedPaths::new(&patterns).unwrap(),
        prices,
    };
    assert_eq!(config.engine, expected);
}

#[test]
fn bad_engine_values_name_the_key_and_reason() {
    assert_eq!(
        file_error("engine: { mode: magic }\n"),
        "invalid engine.mode from FILE: expected tools or edit_blocks, got `magic`"
    );
    assert_eq!(
        file_error("engine: { max_turns: 0 }\n"),
        "invalid engine.max_turns from FILE: must be between 1 and 1000, got 0"
    );
    assert_eq!(
        file_error("engine: { max_cost_usd: -1 }\n"),
        "invalid engine.max_cost_usd from FILE: must be above 0 and at most 10000, got -1"
    );
    assert_eq!(
        file_error("engine: { stall_repeated_calls: 1 }\n"),
        "invalid engine.stall_repeated_calls from FILE: must be between 2 and 1000, got 1"
    );
    assert_eq!(
        file_error("engine: { protected_paths: ['../outside/**'] }\n"),
        "invalid engine.protected_paths from FILE: pattern `../outside/**`: must not contain .."
    );
    assert_eq!(
        file_error("engine: { prices: { m: { prompt_per_1k: -0.5, completion_per_1k: 1 } } }\n"),
        "invalid engine.prices from FILE: m.prompt_per_1k must be a price of 0 or more, got -0.5"
    );
}

#[test]
fn reliability_comes_from_the_file_and_bad_delays_are_named() {
    let yaml = "reliability:\n  max_attempts: 3\n  retry_delays_seconds: [1, 5]\n  shutdown_grace_seconds: 0\n  \
                reconnect_max_delay_seconds: 4\n";
    let config = load_with(Some(yaml), BASE_ENV, &ConfigOverrides::default()).unwrap();
    let expected = ReliabilityConfig {
        max_attempts: 3,
        retry_delays: vec![Duration::from_secs(1), Duration::from_secs(5)],
        shutdown_grace: Duration::ZERO,
        reconnect_max_delay: Duration::from_secs(4),
    };
    assert_eq!(config.reliability, expected);
    assert_eq!(
        file_error("reliability:\n  retry_delays_seconds: [5, 5]\n"),
        "invalid reliability.retry_delays_seconds from FILE: 5 does not grow from the delay before it"
    );
    assert_eq!(
        file_error("reliability:\n  retry_delays_seconds: []\n"),
        "invalid reliability.retry_delays_seconds from FILE: must list 1 to 10 delays, not 0"
    );
    assert_eq!(
        file_error("reliability:\n  max_attempts: 0\n"),
        "invalid reliability.max_attempts from FILE: must be between 1 and 20, got 0"
    );
}

#[test]
fn the_idle_timeout_comes_from_the_file_or_the_worker_flag() {
    let env = BASE_ENV;
    let yaml = "amqp: { idle_timeout_seconds: 30 }\n";
    let config = load_with(Some(yaml), env, &ConfigOverrides::default()).unwrap();
    assert_eq!(config.amqp.idle_timeout, Some(Duration::from_secs(30)));
    let flags = ConfigOverrides { idle_timeout_seconds: Some(5), ..ConfigOverrides::default() };
    let config = load_with(Some(yaml), env, &flags).unwrap();
    assert_eq!(config.amqp.idle_timeout, Some(Duration::from_secs(5)));
    assert_eq!(load_with(None, env, &ConfigOverrides::default()).unwrap().amqp.idle_timeout, None);
    assert!(
        file_error("amqp: { idle_timeout_seconds: 0 }\n")
            .starts_with("invalid amqp.idle_timeout_seconds from FILE: must be between 1 and"),
        "{}",
        file_error("amqp: { idle_timeout_seconds: 0 }\n")
    );
}

#[test]
fn secret_scan_allow_patterns_come_from_the_file_and_a_bad_one_is_named() {
    let yaml = "git:\n  secret_scan_allow: ['EXAMPLE$', '^fixtures/.*:\\d+$']\n";
    let config = load_with(Some(yaml), BASE_ENV, &ConfigOverrides::default()).unwrap();
    assert_eq!(config.git.secret_scan_allow.patterns(), ["EXAMPLE$", r"^fixtures/.*:\d+$"]);
    let error = file_error("git: { secret_scan_allow: ['(unclosed'] }\n");
    assert!(
        error.starts_with("invalid git.secret_scan_allow from FILE: `(unclosed` is not a valid regex"),
        "{error}"
    );
}
