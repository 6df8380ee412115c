//! The deployment files checked against each other and against the binary: every
//! Kubernetes manifest parses; kustomizations list files that exist; names referenced
//! (ConfigMap, Secret keys, scale targets, trigger authentication, selectors, probe
//! ports) are defined; container arguments parse with the real command line; and the
//! numbers that must agree (queue name, consumer timeout, grace period vs task timeout,
//! metrics port) do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agent_runner::config::{self, ConfigOverrides, RunnerConfig};
use clap::Parser;
use serde::Deserialize;
use serde_yaml::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Every YAML document under `deploy/kubernetes`, with the file it came from.
fn documents() -> Vec<(PathBuf, Value)> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut dirs = vec![root().join("deploy/kubernetes")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            docs.push((file.clone(), value));
        }
    }
    docs
}

/// The named objects, by (kind, name).
fn objects() -> BTreeMap<(String, String), Value> {
    documents()
        .into_iter()
        .filter(|(_, doc)| doc["kind"] != "Kustomization")
        .map(|(file, doc)| {
            let kind =
                doc["kind"].as_str().unwrap_or_else(|| panic!("{}: no kind", file.display())).to_string();
            let name =
                doc["metadata"]["name"].as_str().unwrap_or_else(|| panic!("{}: no name", file.display()));
            assert!(doc["apiVersion"].is_string(), "{}: no apiVersion", file.display());
            ((kind, name.to_string()), doc)
        })
        .collect()
}

fn get<'a>(objects: &'a BTreeMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    objects.get(&(kind.to_string(), name.to_string())).unwrap_or_else(|| panic!("no {kind} named {name}"))
}

/// Pod templates: (owner, template) for Deployments and ScaledJobs.
fn pod_templates(objects: &BTreeMap<(String, String), Value>) -> Vec<(String, Value)> {
    objects
        .iter()
        .filter_map(|((kind, name), doc)| match kind.as_str() {
            "Deployment" => Some((name.clone(), doc["spec"]["template"].clone())),
            "ScaledJob" => Some((name.clone(), doc["spec"]["jobTargetRef"]["template"].clone())),
            _ => None,
        })
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value.as_sequence().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// The configuration the pods load: the ConfigMap's file, through the real loader.
fn deployed_config(objects: &BTreeMap<(String, String), Value>) -> RunnerConfig {
    let text =
        get(objects, "ConfigMap", "agent-runner-config")["data"]["config.yaml"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, &text).unwrap();
    config::load(Some(&path), &|_| None, &ConfigOverrides::default()).unwrap()
}

#[test]
fn kustomizations_list_files_that_exist() {
    let kustomizations: Vec<(PathBuf, Value)> =
        documents().into_iter().filter(|(_, doc)| doc["kind"] == "Kustomization").collect();
    assert_eq!(kustomizations.len(), 3);
    for (file, doc) in kustomizations {
        for resource in strings(&doc["resources"]) {
            let path = file.parent().unwrap().join(&resource);
            assert!(
                path.is_file() || path.join("kustomization.yaml").is_file(),
                "{}: {resource}",
                file.display()
            );
        }
    }
}

#[test]
fn the_configmap_is_the_kubernetes_example_config_and_loads() {
    let objects = objects();
    let text = get(&objects, "ConfigMap", "agent-runner-config")["data"]["config.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let example = std::fs::read_to_string(root().join("config/config.kubernetes.yaml")).unwrap();
    assert_eq!(
        text, example,
        "deploy/kubernetes/common/configmap.yaml must embed config/config.kubernetes.yaml"
    );
    let config = deployed_config(&objects);
    assert_eq!(config.http.listen, Some("0.0.0.0:9090".parse().unwrap()));
}

#[test]
fn references_between_manifests_resolve() {
    let objects = objects();
    let secret = get(&objects, "Secret", "agent-runner-secrets");
    let secret_has = |name: &str, key: &str| {
        let secret = get(&objects, "Secret", name);
        assert!(secret["stringData"][key].is_string(), "Secret {name} has no key {key}");
    };
    for (owner, template) in pod_templates(&objects) {
        let pod_labels = &template["metadata"]["labels"];
        for volume in template["spec"]["volumes"].as_sequence().unwrap() {
            if let Some(map) = volume["configMap"]["name"].as_str() {
                assert!(get(&objects, "ConfigMap", map)["data"]["config.yaml"].is_string());
            }
            if let Some(name) = volume["secret"]["secretName"].as_str() {
                for item in volume["secret"]["items"].as_sequence().unwrap() {
                    secret_has(name, item["key"].as_str().unwrap());
                }
            }
        }
        for container in template["spec"]["containers"].as_sequence().unwrap() {
            for env in container["env"].as_sequence().unwrap() {
                let secret_ref = &env["valueFrom"]["secretKeyRef"];
                if secret_ref.is_mapping() {
                    secret_has(secret_ref["name"].as_str().unwrap(), secret_ref["key"].as_str().unwrap());
                }
            }
            let ports: Vec<&str> = container["ports"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for probe in ["livenessProbe", "readinessProbe"] {
                if container[probe].is_mapping() {
                    let port = container[probe]["httpGet"]["port"].as_str().unwrap();
                    assert!(ports.contains(&port), "{owner}: {probe} port {port}");
                }
            }
        }
        let service = get(&objects, "Service", "agent-runner-metrics");
        for (key, value) in service["spec"]["selector"].as_mapping().unwrap() {
            assert_eq!(&pod_labels[key], value, "{owner}: the metrics Service does not select it");
        }
    }
    assert!(secret["stringData"].is_mapping());

    let deployment = get(&objects, "Deployment", "agent-runner-worker");
    let scaled = get(&objects, "ScaledObject", "agent-runner-worker");
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], "agent-runner-worker");
    let pdb = get(&objects, "PodDisruptionBudget", "agent-runner-worker");
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"]);
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        deployment["spec"]["template"]["metadata"]["labels"]
    );
    for scaler in [scaled, get(&objects, "ScaledJob", "agent-runner-task")] {
        for trigger in scaler["spec"]["triggers"].as_sequence().unwrap() {
            let auth = get(
                &objects,
                "TriggerAuthentication",
                trigger["authenticationRef"]["name"].as_str().unwrap(),
            );
            for target in auth["spec"]["secretTargetRef"].as_sequence().unwrap() {
                secret_has(target["name"].as_str().unwrap(), target["key"].as_str().unwrap());
            }
        }
    }
}

#[test]
fn container_arguments_are_flags_the_binary_has() {
    let objects = objects();
    let mut checked = Vec::new();
    for (owner, template) in pod_templates(&objects) {
        for container in template["spec"]["containers"].as_sequence().unwrap() {
            let args = strings(&container["args"]);
            let argv = std::iter::once("agent-runner".to_string()).chain(args.iter().cloned());
            if let Err(error) = agent_runner::cli::Cli::try_parse_from(argv) {
                panic!("{owner}: {args:?} is refused by the binary: {error}");
            }
            let http_addr =
                args.iter().position(|a| a == "--http-addr").map(|i| args[i + 1].clone()).unwrap();
            let port = container["ports"][0]["containerPort"].as_u64().unwrap();
            assert_eq!(http_addr, format!("0.0.0.0:{port}"), "{owner}");
            checked.push((owner.clone(), args[0].clone(), args.contains(&"--once".to_string())));
        }
    }
    checked.sort();
    let expected = [
        ("agent-runner-mirror", "mirror", false),
        ("agent-runner-task", "worker", true),
        ("agent-runner-worker", "worker", false),
    ]
    .map(|(o, c, once)| (o.to_string(), c.to_string(), once));
    assert_eq!(checked, expected);

    let compose: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root().join("docker-compose.yml")).unwrap()).unwrap();
    for service in ["worker", "mirror"] {
        let argv = std::iter::once("agent-runner".to_string())
            .chain(strings(&compose["services"][service]["command"]));
        agent_runner::cli::Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("compose {service}: {e}"));
    }
}

#[test]
fn timeouts_queue_and_grace_periods_agree_with_the_configuration() {
    let objects = objects();
    let config = deployed_config(&objects);
    // The broker's consumer_timeout (ms) is the config's, everywhere it is set.
    let broker_ms = config.amqp.consumer_timeout.as_millis() as u64;
    let setting = format!("consumer_timeout = {broker_ms}");
    let rabbitmq_files = [
        get(&objects, "ConfigMap", "rabbitmq-agent-runner")["data"]["90-agent-runner.conf"]
            .as_str()
            .unwrap()
            .to_string(),
        get(&objects, "RabbitmqCluster", "rabbitmq")["spec"]["rabbitmq"]["additionalConfig"]
            .as_str()
            .unwrap()
            .to_string(),
        std::fs::read_to_string(root().join("deploy/rabbitmq/rabbitmq.conf")).unwrap(),
    ];
    for text in rabbitmq_files {
        assert!(text.lines().any(|l| l.trim() == setting), "missing `{setting}` in {text}");
    }
    // KEDA watches the queue the workers consume.
    for scaler in [
        get(&objects, "ScaledObject", "agent-runner-worker"),
        get(&objects, "ScaledJob", "agent-runner-task"),
    ] {
        assert_eq!(
            scaler["spec"]["triggers"][0]["metadata"]["queueName"].as_str(),
            Some(config.amqp.work_queue.as_str())
        );
    }
    // A draining worker gets its task's whole timeout plus the wrap-up minute.
    let needed = config.default_timeout.as_secs() + 60;
    for (owner, template) in pod_templates(&objects) {
        if owner == "agent-runner-mirror" {
            continue;
        }
        let grace = template["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(grace >= needed, "{owner}: grace {grace}s < task timeout + wrap-up {needed}s");
    }
    let job = get(&objects, "ScaledJob", "agent-runner-task");
    assert!(job["spec"]["jobTargetRef"]["activeDeadlineSeconds"].as_u64().unwrap() >= needed);
    assert!(config.default_timeout < config.amqp.consumer_timeout);
}

#[test]
fn the_api_contracts_parse_and_hold_every_call_the_clients_make() {
    let calls = [
        (
            "task-registry.yaml",
            vec![
                ("/tasks/{task_id}/status", "put"),
                ("/tasks/{task_id}/events", "post"),
                ("/tasks/{task_id}/artifacts", "post"),
                ("/health", "get"),
            ],
        ),
        ("repo-pool.yaml", vec![("/slots/allocate", "post"), ("/slots/{slot_id}/release", "post")]),
        ("artifact-store.yaml", vec![("/artifacts", "post")]),
    ];
    for (file, operations) in calls {
        let text = std::fs::read_to_string(root().join("docs/api").join(file)).unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(doc["openapi"], "3.0.3", "{file}");
        for (path, method) in operations {
            assert!(doc["paths"][path][method].is_mapping(), "{file}: no {method} {path}");
        }
    }
}
