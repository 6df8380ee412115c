//! The deployment files checked against each other, against Kubernetes' and KEDA's
//! schemas, and against the binary: each overlay renders with the real `kubectl
//! kustomize` and every object it renders matches its kind's schema; names referenced
//! (ConfigMap, Secret keys, scale targets, trigger authentication, selectors, probe ports)
//! are defined; container arguments parse with the real command line; the pods get what
//! the sandbox needs and nothing more; and the numbers that must agree do: task timeout <
//! consumer timeout < drain grace <= pod grace, the Job deadline above the longest task,
//! the broker's consumer_timeout equal to the worker's.

mod deploy_support;

use clap::Parser;
use deploy_support::{
    by_kind_and_name, deployed_config, example_secret, find, kubernetes_dir, pod_templates, read_documents,
    render, rendered_objects, root, secret_has, strings,
};
use serde_yaml::Value;

/// The image every pod runs: a pinned release, never `:latest`.
const IMAGE: &str = "ghcr.io/necrocode/agent-runner:0.1.0";
const NAMESPACE: &str = "necrocode";

#[test]
fn each_overlay_renders_namespaced_pinned_and_without_the_secret() {
    for overlay in deploy_support::OVERLAYS.into_iter().chain(["kubernetes-mode"]) {
        let docs = render(overlay);
        let names: Vec<String> =
            docs.iter().map(|d| d["metadata"]["name"].as_str().unwrap().to_string()).collect();
        for doc in &docs {
            let what = format!(
                "{overlay}: {} {}",
                doc["kind"].as_str().unwrap(),
                doc["metadata"]["name"].as_str().unwrap()
            );
            assert_eq!(doc["metadata"]["namespace"].as_str(), Some(NAMESPACE), "{what}");
            // `apply -k` must never overwrite the operator's real Secret with placeholders.
            assert_ne!(doc["kind"], "Secret", "{what}");
        }
        let objects = by_kind_and_name(docs);
        // The ConfigMap is generated: its name carries the content hash, and every pod
        // mounts it by that name, so a changed configuration rolls the pods.
        let config_map = find(&objects, "ConfigMap", "agent-runner-config");
        let generated = config_map["metadata"]["name"].as_str().unwrap();
        assert_ne!(generated, "agent-runner-config", "{overlay}: the ConfigMap is not generated");
        for (owner, template) in pod_templates(&objects) {
            for volume in template["spec"]["volumes"].as_sequence().unwrap() {
                if let Some(name) = volume["configMap"]["name"].as_str() {
                    assert!(
                        names.iter().any(|n| n == name),
                        "{overlay}: {owner} mounts ConfigMap {name}, not rendered"
                    );
                }
            }
            for container in template["spec"]["containers"].as_sequence().unwrap() {
                assert_eq!(container["image"].as_str(), Some(IMAGE), "{overlay}: {owner}");
            }
        }
    }
}

#[test]
fn rendered_manifests_match_the_kubernetes_and_keda_schemas() {
    let schemas = deploy_support::Schemas::load();
    let mut checked = 0;
    let mut docs: Vec<(String, Value)> = Vec::new();
    for overlay in deploy_support::OVERLAYS.into_iter().chain(["kubernetes-mode"]) {
        docs.extend(render(overlay).into_iter().map(|d| (overlay.to_string(), d)));
    }
    docs.push(("secret.example.yaml".into(), example_secret()));
    for doc in read_documents(&kubernetes_dir().join("rabbitmq/rabbitmq-consumer-timeout.yaml")) {
        // The Cluster Operator's RabbitmqCluster has no vendored schema; its one setting
        // is checked against the worker's below.
        if doc["kind"] != "RabbitmqCluster" {
            docs.push(("rabbitmq".into(), doc));
        }
    }
    for (source, doc) in &docs {
        let violations = schemas.violations(doc);
        assert!(
            violations.is_empty(),
            "{source}: {:?} {:?}:\n{}",
            doc["kind"],
            doc["metadata"]["name"],
            violations.join("\n")
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} objects checked");

    // The schemas are strict: a misspelled field or a wrong type is refused, so the
    // checks above can fail.
    let (_, deployment) = docs
        .iter()
        .find(|(_, d)| d["kind"] == "Deployment" && d["metadata"]["name"] == "agent-runner-worker")
        .unwrap();
    let mut misspelled = deployment.clone();
    misspelled["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] =
        Value::Bool(true);
    assert!(!schemas.violations(&misspelled).is_empty(), "a misspelled field passed the Deployment schema");
    let (_, scaled) = docs.iter().find(|(_, d)| d["kind"] == "ScaledObject").unwrap();
    let mut wrong = scaled.clone();
    wrong["spec"]["cooldownPeriod"] = Value::String("300".into());
    assert!(!schemas.violations(&wrong).is_empty(), "a string cooldownPeriod passed the ScaledObject schema");
    let mut unknown = scaled.clone();
    unknown["spec"]["cooldown"] = Value::Number(300.into());
    assert!(!schemas.violations(&unknown).is_empty(), "an unknown ScaledObject field passed");
}

#[test]
fn the_configmap_is_the_kubernetes_config_file_and_loads() {
    let objects = rendered_objects();
    let text = find(&objects, "ConfigMap", "agent-runner-config")["data"]["config.yaml"].as_str().unwrap();
    let file = std::fs::read_to_string(kubernetes_dir().join("common/config.yaml")).unwrap();
    assert_eq!(text, file, "the ConfigMap must be generated from deploy/kubernetes/common/config.yaml");
    // config/config.kubernetes.yaml, beside the other examples, is this file (a symlink:
    // kustomize loads only files under the kustomization's root).
    let example = root().join("config/config.kubernetes.yaml");
    assert_eq!(
        std::fs::canonicalize(&example).unwrap(),
        std::fs::canonicalize(kubernetes_dir().join("common/config.yaml")).unwrap()
    );
    let config = deployed_config(&objects);
    assert_eq!(config.http.listen, Some("0.0.0.0:9090".parse().unwrap()));
}

#[test]
fn references_between_manifests_resolve() {
    let objects = rendered_objects();
    for (owner, template) in pod_templates(&objects) {
        let pod_labels = &template["metadata"]["labels"];
        for volume in template["spec"]["volumes"].as_sequence().unwrap() {
            if let Some(name) = volume["secret"]["secretName"].as_str() {
                assert_eq!(name, "agent-runner-secrets", "{owner}");
                for item in volume["secret"]["items"].as_sequence().unwrap() {
                    secret_has(item["key"].as_str().unwrap());
                }
            }
        }
        for container in template["spec"]["containers"].as_sequence().unwrap() {
            for env in container["env"].as_sequence().unwrap() {
                let secret_ref = &env["valueFrom"]["secretKeyRef"];
                if secret_ref.is_mapping() {
                    assert_eq!(secret_ref["name"], "agent-runner-secrets", "{owner}");
                    secret_has(secret_ref["key"].as_str().unwrap());
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
        let service = find(&objects, "Service", "agent-runner-metrics");
        for (key, value) in service["spec"]["selector"].as_mapping().unwrap() {
            assert_eq!(&pod_labels[key], value, "{owner}: the metrics Service does not select it");
        }
    }

    let deployment = find(&objects, "Deployment", "agent-runner-worker");
    let scaled = find(&objects, "ScaledObject", "agent-runner-worker");
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], "agent-runner-worker");
    let pdb = find(&objects, "PodDisruptionBudget", "agent-runner-worker");
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"]);
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"],
        deployment["spec"]["template"]["metadata"]["labels"]
    );
    for scaler in [scaled, find(&objects, "ScaledJob", "agent-runner-task")] {
        for trigger in scaler["spec"]["triggers"].as_sequence().unwrap() {
            let auth = find(
                &objects,
                "TriggerAuthentication",
                trigger["authenticationRef"]["name"].as_str().unwrap(),
            );
            for target in auth["spec"]["secretTargetRef"].as_sequence().unwrap() {
                assert_eq!(target["name"], "agent-runner-secrets");
                secret_has(target["key"].as_str().unwrap());
            }
        }
    }
}

#[test]
fn keda_counts_running_tasks_through_the_management_api() {
    let objects = rendered_objects();
    let config = deployed_config(&objects);
    for scaler in [
        find(&objects, "ScaledObject", "agent-runner-worker"),
        find(&objects, "ScaledJob", "agent-runner-task"),
    ] {
        let name = scaler["metadata"]["name"].as_str().unwrap();
        let triggers = scaler["spec"]["triggers"].as_sequence().unwrap();
        assert_eq!(triggers.len(), 1, "{name}");
        let trigger = &triggers[0];
        assert_eq!(trigger["type"], "rabbitmq", "{name}");
        let metadata = &trigger["metadata"];
        // protocol: amqp counts ready messages only: a fleet scaled on it shrinks under
        // the tasks it is running. The management API's `messages` counts both.
        assert_eq!(metadata["protocol"], "http", "{name}");
        assert_eq!(metadata["mode"], "QueueLength", "{name}");
        assert_eq!(metadata["value"], "1", "{name}: one task per worker (amqp.concurrency: 1)");
        assert_eq!(metadata["queueName"].as_str(), Some(config.amqp.work_queue.as_str()), "{name}");
        // The host comes from the Secret, never from the manifest (it holds a password).
        assert!(metadata["host"].is_null(), "{name}: host in the manifest");
        let auth =
            find(&objects, "TriggerAuthentication", trigger["authenticationRef"]["name"].as_str().unwrap());
        let host_ref = auth["spec"]["secretTargetRef"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|t| t["parameter"] == "host")
            .expect("the TriggerAuthentication gives KEDA its host");
        let example =
            example_secret()["stringData"][host_ref["key"].as_str().unwrap()].as_str().unwrap().to_string();
        let url = reqwest::Url::parse(&example).unwrap();
        assert_eq!(url.scheme(), "http", "KEDA's host must be the management API: {}", url.scheme());
        assert_eq!(url.port(), Some(15672));
        assert_eq!(url.path(), "/%2f", "the vhost is the URL's path");
    }
    // Running tasks count, so the ScaledJob subtracts its running Jobs (default strategy);
    // `accurate` would assume the signal leaves them out and start a Job per running task.
    let job = find(&objects, "ScaledJob", "agent-runner-task");
    assert_eq!(job["spec"]["scalingStrategy"]["strategy"], "default");
}

#[test]
fn pods_get_what_the_sandbox_needs_and_nothing_more() {
    let objects = rendered_objects();
    let config = deployed_config(&objects);
    let sandboxed = config.execution_mode == agent_runner::config::ExecutionMode::Sandbox;
    for (owner, template) in pod_templates(&objects) {
        let spec = &template["spec"];
        let runs_tasks = owner != "agent-runner-mirror";
        assert_eq!(spec["automountServiceAccountToken"], Value::Bool(false), "{owner}");
        let pod = &spec["securityContext"];
        assert_eq!(pod["runAsNonRoot"], Value::Bool(true), "{owner}");
        assert_eq!(pod["runAsUser"].as_u64(), Some(10001), "{owner}");
        let seccomp = &pod["seccompProfile"];
        if runs_tasks && sandboxed {
            assert_eq!(seccomp["type"], "Localhost", "{owner}");
            assert_eq!(seccomp["localhostProfile"], "agent-runner-sandbox.json", "{owner}");
        } else {
            assert_eq!(seccomp["type"], "RuntimeDefault", "{owner}");
        }
        let mut writable: Vec<String> = Vec::new();
        for container in spec["containers"].as_sequence().unwrap() {
            let context = &container["securityContext"];
            assert_eq!(context["allowPrivilegeEscalation"], Value::Bool(false), "{owner}");
            assert_eq!(context["readOnlyRootFilesystem"], Value::Bool(true), "{owner}");
            assert_eq!(context["privileged"], Value::Bool(false), "{owner}");
            assert_eq!(strings(&context["capabilities"]["drop"]), ["ALL"], "{owner}");
            assert!(context["capabilities"]["add"].is_null(), "{owner}: adds capabilities");
            // An unmasked /proc is allowed only in the pod's own user namespace.
            if context["procMount"] == "Unmasked" {
                assert_eq!(
                    spec["hostUsers"],
                    Value::Bool(false),
                    "{owner}: procMount Unmasked needs hostUsers: false"
                );
                assert!(runs_tasks && sandboxed, "{owner}: unmasked /proc without a sandbox to need it");
            }
            for mount in container["volumeMounts"].as_sequence().unwrap() {
                if mount["readOnly"] != Value::Bool(true) {
                    writable.push(mount["mountPath"].as_str().unwrap().to_string());
                }
            }
        }
        // The root filesystem is read-only; the worker writes only its data and /tmp.
        let mut expected: Vec<String> =
            if runs_tasks { vec!["/var/lib/agent-runner".into(), "/tmp".into()] } else { vec![] };
        writable.sort();
        expected.sort();
        assert_eq!(writable, expected, "{owner}: writable mounts");
        for volume in spec["volumes"].as_sequence().unwrap() {
            assert!(volume["hostPath"].is_null(), "{owner}: a hostPath volume");
        }
    }
}

#[test]
fn container_arguments_are_flags_the_binary_has() {
    let objects = rendered_objects();
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
fn task_timeout_under_consumer_timeout_under_drain_grace_within_pod_grace() {
    let objects = rendered_objects();
    let config = deployed_config(&objects);
    let task = config.default_timeout.as_secs();
    let consumer = config.amqp.consumer_timeout.as_secs();
    let drain = config.reliability.shutdown_grace.as_secs();
    // The worker accepts any task timeout below the consumer timeout, so the drain must
    // outlast the longest such task, and the kubelet must not kill the pod before it ends.
    assert!(task < consumer, "default_timeout_seconds {task} >= amqp.consumer_timeout_seconds {consumer}");
    assert!(consumer < drain, "amqp.consumer_timeout_seconds {consumer} >= shutdown_grace_seconds {drain}");
    for (owner, template) in pod_templates(&objects) {
        if owner == "agent-runner-mirror" {
            continue;
        }
        let grace = template["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            drain <= grace,
            "{owner}: shutdown_grace_seconds {drain} > terminationGracePeriodSeconds {grace}"
        );
    }
    // A Job runs start-up, up to --idle-timeout waiting for its task, the longest task
    // and its wrap-up (the drain's allowance beyond the consumer timeout).
    let job = find(&objects, "ScaledJob", "agent-runner-task");
    let args = strings(&job["spec"]["jobTargetRef"]["template"]["spec"]["containers"][0]["args"]);
    let idle: u64 = args[args.iter().position(|a| a == "--idle-timeout").unwrap() + 1].parse().unwrap();
    let deadline = job["spec"]["jobTargetRef"]["activeDeadlineSeconds"].as_u64().unwrap();
    let needed = idle + drain;
    assert!(deadline > needed, "activeDeadlineSeconds {deadline} <= --idle-timeout {idle} + drain {drain}");

    // The broker's consumer_timeout (ms) is the config's, everywhere it is deployed.
    let setting = format!("consumer_timeout = {}", consumer * 1000);
    let rabbitmq = read_documents(&kubernetes_dir().join("rabbitmq/rabbitmq-consumer-timeout.yaml"));
    let mut files: Vec<String> = rabbitmq
        .iter()
        .map(|doc| match doc["kind"].as_str() {
            Some("ConfigMap") => doc["data"]["90-agent-runner.conf"].as_str().unwrap().to_string(),
            Some("RabbitmqCluster") => {
                doc["spec"]["rabbitmq"]["additionalConfig"].as_str().unwrap().to_string()
            }
            other => panic!("unexpected {other:?} in rabbitmq/"),
        })
        .collect();
    assert_eq!(files.len(), 2);
    files.push(std::fs::read_to_string(root().join("deploy/rabbitmq/rabbitmq.conf")).unwrap());
    for text in files {
        assert!(text.lines().any(|l| l.trim() == setting), "missing `{setting}` in {text}");
    }
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

#[test]
fn the_kubernetes_mode_overlay_grants_the_job_calls_and_its_task_jobs_match_the_schema() {
    let schemas = deploy_support::Schemas::load();
    // Namespaced, pinned and schema-valid like every overlay (the two tests above).
    let docs = render("kubernetes-mode");
    let objects = by_kind_and_name(docs);

    // Exactly the calls the mode makes (src/kubernetes/jobs.rs), in its own namespace.
    let role = find(&objects, "Role", "agent-runner-task-jobs");
    let granted = |resource: &str| -> Vec<String> {
        let rules = role["rules"].as_sequence().unwrap();
        let rule = rules.iter().find(|r| strings(&r["resources"]).contains(&resource.to_string()));
        rule.map(|r| strings(&r["verbs"])).unwrap_or_default()
    };
    assert_eq!(granted("jobs"), ["create", "get", "list", "watch", "delete"]);
    assert_eq!(granted("pods"), ["get", "list"]);
    assert_eq!(granted("pods/log"), ["get"]);
    let binding = find(&objects, "RoleBinding", "agent-runner-task-jobs");
    assert_eq!(binding["subjects"][0]["name"], "agent-runner-worker");
    let worker = find(&objects, "Deployment", "agent-runner-worker");
    let pod = &worker["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "agent-runner-worker");
    assert_eq!(pod["automountServiceAccountToken"], Value::Bool(true), "the worker needs its token here");
    assert!(pod["hostUsers"].is_null(), "no sandbox in the worker: no user namespace of its own");

    // The worker's configuration loads in the mode, and a task Job it would create is a
    // valid Kubernetes 1.32 Job that runs the pinned image.
    let config = deployed_config(&objects);
    assert_eq!(config.execution_mode, agent_runner::config::ExecutionMode::Kubernetes);
    assert_eq!(config.kubernetes.image.as_deref(), Some(IMAGE));
    let pods_config = config.kubernetes.pod_config.clone().unwrap();
    assert!(!pods_config.contains("amqp") && pods_config.contains("artifact-store"), "{pods_config}");
    let jobs = agent_runner::kubernetes::KubernetesJobs::from_config(&config);
    let message = r#"{"schema_version":1,"task_id":"t.1"}"#;
    let task = agent_runner::kubernetes::TaskJob {
        task_id: "t.1",
        spec_name: "spec",
        task_json: message,
        deadline: std::time::Duration::from_secs(2100),
        attempt: 1,
    };
    let job: Value = serde_yaml::to_value(jobs.template.job_for(task).unwrap()).unwrap();
    let violations = schemas.violations(&job);
    assert!(violations.is_empty(), "task Job:\n{}", violations.join("\n"));
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["image"].as_str(), Some(IMAGE));
    let mut misspelled = job.clone();
    misspelled["spec"]["backoffLimt"] = Value::Number(0.into());
    assert!(!schemas.violations(&misspelled).is_empty(), "a misspelled Job field passed the schema");
}
