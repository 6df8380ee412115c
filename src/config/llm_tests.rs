//! The model's context and sampling keys (`llm.context_tokens`, `llm.temperature`,
//! `llm.max_tokens`) through every layer, and the errors naming them.

use std::collections::HashMap;

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| map.get(name).cloned()
}

/// Loads `yaml` (if any) under `env`, the error shown with the file's path as `FILE`.
fn load_llm(yaml: Option<&str>, env: &[(&str, &str)]) -> Result<LlmConfig, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    if let Some(yaml) = yaml {
        std::fs::write(&path, yaml).unwrap();
    }
    let file = yaml.map(|_| path.as_path());
    load(file, &env_of(env), &ConfigOverrides::default())
        .map(|c| c.llm)
        .map_err(|e| e.to_string().replace(&path.display().to_string(), "FILE"))
}

#[test]
fn defaults_ask_the_server_for_the_window_and_sample_at_low_temperature() {
    let llm = load_llm(None, &[]).unwrap();
    assert_eq!((llm.context_tokens, llm.temperature, llm.max_tokens), (None, 0.2, None));
}

#[test]
fn the_file_sets_them_and_the_environment_wins() {
    let yaml = "llm:\n  context_tokens: 4096\n  temperature: 0.7\n  max_tokens: 512\n";
    let llm = load_llm(Some(yaml), &[]).unwrap();
    assert_eq!((llm.context_tokens, llm.temperature, llm.max_tokens), (Some(4096), 0.7, Some(512)));
    let env = [("LLM_CONTEXT_TOKENS", "8192"), ("LLM_TEMPERATURE", "0"), ("LLM_MAX_TOKENS", "1024")];
    let llm = load_llm(Some(yaml), &env).unwrap();
    assert_eq!((llm.context_tokens, llm.temperature, llm.max_tokens), (Some(8192), 0.0, Some(1024)));
}

#[test]
fn errors_name_the_field_and_the_source() {
    assert_eq!(
        load_llm(Some("llm:\n  context_tokens: 100\n"), &[]).unwrap_err(),
        "invalid llm.context_tokens from FILE: must be between 2048 and 16777216, got 100"
    );
    assert_eq!(
        load_llm(Some("llm:\n  temperature: 3.5\n"), &[]).unwrap_err(),
        "invalid llm.temperature from FILE: must be between 0 and 2, got 3.5"
    );
    assert_eq!(
        load_llm(None, &[("LLM_TEMPERATURE", "warm")]).unwrap_err(),
        "invalid llm.temperature from env LLM_TEMPERATURE: expected a number, got `warm`"
    );
    assert_eq!(
        load_llm(None, &[("LLM_MAX_TOKENS", "0")]).unwrap_err(),
        "invalid llm.max_tokens from env LLM_MAX_TOKENS: must be between 16 and 16777216, got 0"
    );
    assert_eq!(
        load_llm(Some("llm:\n  context_tokens: 4096\n  max_tokens: 4096\n"), &[]).unwrap_err(),
        "invalid llm.max_tokens from FILE: 4096 leaves no room for the conversation in \
         llm.context_tokens 4096: it must be below it"
    );
}
