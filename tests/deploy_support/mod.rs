//! What `tests/deploy_manifests.rs` checks the manifests with: the overlays rendered by
//! the real `kubectl kustomize` (installed by `scripts/setup`), and the JSON Schemas
//! vendored under `tests/deploy_schemas/` (core Kubernetes from kubernetes-validate,
//! KEDA's custom resources written from its CRDs) compiled with the `jsonschema` crate.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use agent_runner::config::{self, ConfigOverrides, RunnerConfig};
use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value;

/// The overlays an operator applies with `kubectl apply -k`.
pub const OVERLAYS: [&str; 2] = ["worker", "job"];

/// The Kubernetes version the vendored core schemas describe.
const KUBERNETES_SCHEMAS: &str = "tests/deploy_schemas/kubernetes-v1.32.json";
const KEDA_SCHEMAS: &str = "tests/deploy_schemas/keda-v2.json";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

pub fn kubernetes_dir() -> PathBuf {
    root().join("deploy/kubernetes")
}

/// Every YAML document of one file.
pub fn read_documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", file.display())))
        .collect()
}

/// The objects `kubectl apply -k deploy/kubernetes/<overlay>` would send, as kustomize
/// renders them.
pub fn render(overlay: &str) -> Vec<Value> {
    let dir = kubernetes_dir().join(overlay);
    let output = Command::new("kubectl").arg("kustomize").arg(&dir).output().unwrap_or_else(|e| {
        panic!("kubectl is needed to render the manifests (scripts/setup installs it): {e}")
    });
    assert!(
        output.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|doc| Value::deserialize(doc).unwrap()).collect()
}

/// `docs` keyed by (kind, name); a later document of the same kind and name wins.
pub fn by_kind_and_name(docs: Vec<Value>) -> BTreeMap<(String, String), Value> {
    docs.into_iter()
        .map(|d| {
            (
                (
                    d["kind"].as_str().unwrap().to_string(),
                    d["metadata"]["name"].as_str().unwrap().to_string(),
                ),
                d,
            )
        })
        .collect()
}

/// Rendered objects by (kind, name), over every overlay (the shared ones render alike).
pub fn rendered_objects() -> BTreeMap<(String, String), Value> {
    by_kind_and_name(OVERLAYS.iter().flat_map(|overlay| render(overlay)).collect())
}

/// The one object of `kind` whose name is `name` or, for a generated object, starts with
/// `name-` (kustomize appends a hash of the content).
pub fn find<'a>(objects: &'a BTreeMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    let matches: Vec<&Value> = objects
        .iter()
        .filter(|((k, n), _)| {
            k == kind && (n == name || n.strip_prefix(name).is_some_and(|r| r.starts_with('-')))
        })
        .map(|(_, doc)| doc)
        .collect();
    assert_eq!(matches.len(), 1, "expected one {kind} named {name}(-hash), found {}", matches.len());
    matches[0]
}

/// Pod templates: (owner, template) for Deployments and ScaledJobs.
pub fn pod_templates(objects: &BTreeMap<(String, String), Value>) -> Vec<(String, Value)> {
    objects
        .iter()
        .filter_map(|((kind, name), doc)| match kind.as_str() {
            "Deployment" => Some((name.clone(), doc["spec"]["template"].clone())),
            "ScaledJob" => Some((name.clone(), doc["spec"]["jobTargetRef"]["template"].clone())),
            _ => None,
        })
        .collect()
}

pub fn strings(value: &Value) -> Vec<String> {
    value.as_sequence().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

/// The Secret an operator creates, from the example the manifests document.
pub fn example_secret() -> Value {
    read_documents(&kubernetes_dir().join("common/secret.example.yaml")).remove(0)
}

pub fn secret_has(key: &str) {
    assert!(example_secret()["stringData"][key].is_string(), "agent-runner-secrets has no key {key}");
}

/// The configuration the pods load: the rendered ConfigMap's file, through the real loader.
pub fn deployed_config(objects: &BTreeMap<(String, String), Value>) -> RunnerConfig {
    let text = find(objects, "ConfigMap", "agent-runner-config")["data"]["config.yaml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    config::load(Some(&path), &|_| None, &ConfigOverrides::default()).unwrap()
}

/// The vendored schemas, compiled once per kind they describe.
pub struct Schemas {
    validators: BTreeMap<String, jsonschema::Validator>,
}

impl Schemas {
    /// The Kubernetes and KEDA bundles merged into one document (KEDA's ScaledJob refers
    /// to Kubernetes' JobSpec), one validator per kind.
    pub fn load() -> Schemas {
        let read = |path: &str| -> Json {
            serde_json::from_str(&std::fs::read_to_string(root().join(path)).unwrap()).unwrap()
        };
        let mut kubernetes = read(KUBERNETES_SCHEMAS);
        let keda = read(KEDA_SCHEMAS);
        let mut kinds = kubernetes["kinds"].as_object().unwrap().clone();
        kinds.extend(keda["kinds"].as_object().unwrap().clone());
        let definitions = kubernetes["$defs"].as_object_mut().unwrap();
        definitions.extend(keda["$defs"].as_object().unwrap().clone());
        let definitions = Json::Object(definitions.clone());
        let validators = kinds
            .into_iter()
            .map(|(kind, definition)| {
                let schema = serde_json::json!({
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "$defs": definitions,
                    "$ref": format!("#/$defs/{}", definition.as_str().unwrap()),
                });
                let validator = jsonschema::validator_for(&schema)
                    .unwrap_or_else(|e| panic!("the {kind} schema does not compile: {e}"));
                (kind, validator)
            })
            .collect();
        Schemas { validators }
    }

    /// Every way `doc` breaks its kind's schema, as "path: message" lines; a kind with no
    /// vendored schema is itself an error, so no object goes unchecked.
    pub fn violations(&self, doc: &Value) -> Vec<String> {
        let kind = doc["kind"].as_str().unwrap_or("<no kind>");
        let Some(validator) = self.validators.get(kind) else {
            return vec![format!("no schema vendored for kind {kind}")];
        };
        let instance = serde_json::to_value(doc).unwrap();
        validator.iter_errors(&instance).map(|e| format!("{}: {e}", e.instance_path())).collect()
    }
}
