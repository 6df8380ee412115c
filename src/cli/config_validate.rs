//! `agent-runner config validate FILE`: checks a config file the way the worker would load
//! it, without starting anything. Errors name the file, the line and the dotted key; the
//! exit code is 0 for a valid file and 78 (invalid configuration) otherwise, so a deploy
//! pipeline can gate on it. Settings that load but cannot run here (the kubernetes mode)
//! are warnings: the file is valid, this build is what lacks the mode.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{self, ConfigError, ConfigOverrides, ExecutionMode, RunnerConfig};

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check a config file; prints warnings for settings this build cannot run.
    Validate {
        /// The configuration (YAML).
        file: PathBuf,
    },
}

pub fn run(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Validate { file } => validate(&file),
    }
}

fn validate(file: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| super::exit::UsageError(format!("cannot read {}: {e}", file.display())))?;
    // The file alone is checked: the environment and flags of the shell running the check
    // are not the deployment's, and would make the verdict depend on who ran it.
    match config::load(Some(file), &|_| None, &ConfigOverrides::default()) {
        Ok(loaded) => {
            for warning in warnings(&loaded) {
                eprintln!("warning: {}: {warning}", file.display());
            }
            println!("{}: valid configuration (execution_mode {})", file.display(), loaded.execution_mode);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            let line = crate::telemetry::mask_output(&located(&error, &text, file));
            eprintln!("{line}");
            Ok(super::exit::Exit::Configuration.into())
        }
    }
}

/// Settings that load but do nothing, or cannot run in this build.
fn warnings(config: &RunnerConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    if config.execution_mode != ExecutionMode::Docker && !config.docker_volumes.is_empty() {
        warnings.push("docker_volumes has no effect unless execution_mode is docker".to_string());
    }
    let kubernetes_keys_set = config.kubernetes != config::KubernetesConfig::default();
    if config.execution_mode != ExecutionMode::Kubernetes && kubernetes_keys_set {
        warnings.push("k8s_* keys have no effect unless execution_mode is kubernetes".to_string());
    }
    warnings
}

/// `FILE:LINE: message`: the parser knows the line of a syntax error; a value error names
/// its dotted key, whose line is looked up in the text.
fn located(error: &ConfigError, text: &str, file: &Path) -> String {
    let line = match error {
        ConfigError::Syntax { line, .. } => *line,
        ConfigError::Invalid { key, .. } => key_line(text, key),
        _ => None,
    };
    match line {
        Some(line) => format!("{}:{line}: {error}", file.display()),
        None => format!("{}: {error}", file.display()),
    }
}

/// The 1-based line where the dotted `key` (`llm.timeout_seconds`) is set in a block-style
/// YAML text: each segment is the first `segment:` below its parent, indented deeper (a top-level
/// key at column 1).
fn key_line(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut parent_indent: Option<usize> = None;
    for segment in key.split('.') {
        let (at, indent) = lines.iter().enumerate().skip(from).find_map(|(index, line)| {
            let content = line.trim_start();
            let indent = line.len() - content.len();
            let deeper = parent_indent.map_or(indent == 0, |parent| indent > parent);
            let named = content.strip_prefix(segment).is_some_and(|rest| rest.trim_start().starts_with(':'));
            (deeper && named && !content.starts_with('#')).then_some((index, indent))
        })?;
        from = at + 1;
        parent_indent = Some(indent);
    }
    Some(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dotted_key_is_found_under_its_parent() {
        let text = "# timeout_seconds: 1\ntimeout_seconds: 2\nllm:\n  model: m\n  timeout_seconds: 0\n";
        assert_eq!(key_line(text, "llm.timeout_seconds"), Some(5));
        assert_eq!(key_line(text, "timeout_seconds"), Some(2));
        assert_eq!(key_line(text, "amqp.url"), None);
    }
}
