//! The playbook model: what the YAML (or an inline JSON object) says, and the checks that
//! turn the raw, deserialised form into a [`Playbook`] ready to run.
//!
//! Two stages, as with the configuration: `RawPlaybook` only deserialises (unknown keys
//! rejected), then [`validate`] checks limits and meaning and reports the first problem
//! with the field path at fault, which the parser turns into a line and column.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::condition::Condition;

/// Most steps a playbook may have; more is a generated or mistaken file, not a test plan.
pub const MAX_STEPS: usize = 100;
/// Longest playbook or step name; names appear in logs, events and summaries.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest step command; stays well below Linux's 128 KiB limit for one `sh -c` argument.
pub const MAX_COMMAND_BYTES: usize = 32 * 1024;
/// Longest step timeout (6 hours); anything longer cannot fit in a task's deadline anyway.
pub const MAX_STEP_TIMEOUT_SECONDS: u64 = 6 * 60 * 60;
/// Most retries per step; retries exist for flaky networks, not to brute-force a test.
pub const MAX_RETRY_COUNT: u32 = 10;
/// Most processes a step may ask for; a step can only lower the configured limit, and
/// this keeps a typo from reading as "unlimited".
pub const MAX_STEP_PROCESSES: u32 = 100_000;

/// A named, ordered list of steps that checks a task's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Playbook {
    pub name: String,
    pub steps: Vec<PlaybookStep>,
}

/// One shell command of a playbook and the rules for running it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlaybookStep {
    /// Unique within the playbook; names the step in reports.
    pub name: String,
    /// Shell text run with `sh -c` in the workspace.
    pub command: String,
    /// Per-step limit; `None` uses the runner's default step timeout.
    pub timeout_seconds: Option<u64>,
    /// Extra attempts after a failure or timeout (0 = run once).
    pub retry_count: u32,
    /// When present and false, the step is skipped.
    pub condition: Option<Condition>,
    /// When true (the default), a failure stops the playbook; otherwise later steps still
    /// run, but the playbook still fails.
    pub fail_fast: bool,
    /// Variables added to the step's scrubbed environment.
    pub env: BTreeMap<String, String>,
    /// Whether the step may use the network in `sandbox` and `docker` modes (default: no).
    pub network: bool,
    /// Lowers the configured memory limit for this step (MiB); it can never raise it.
    pub max_memory_mb: Option<u64>,
    /// Lowers the configured process limit for this step; it can never raise it.
    pub max_processes: Option<u32>,
}

/// The playbook as deserialised, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a playbook mapping with `name` and `steps`")]
pub(crate) struct RawPlaybook {
    name: String,
    steps: Vec<RawStep>,
}

/// One step as deserialised, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a step mapping with at least `name` and `command`")]
struct RawStep {
    name: String,
    command: String,
    #[serde(default)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    retry_count: u32,
    #[serde(default)]
    condition: Option<String>,
    #[serde(default = "fail_fast_default")]
    fail_fast: bool,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    network: bool,
    #[serde(default)]
    max_memory_mb: Option<u64>,
    #[serde(default)]
    max_processes: Option<u32>,
}

fn fail_fast_default() -> bool {
    true
}

/// One segment of a field path such as `steps[1].condition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathSegment {
    Key(String),
    Index(usize),
}

/// The first problem found, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub path: Vec<PathSegment>,
    pub message: String,
    /// For condition errors: the point inside the field's value that is at fault.
    pub inside_value: Option<InsideValue>,
}

/// A 0-based character offset inside a scalar value, with the value to find it in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InsideValue {
    pub value: String,
    pub offset: usize,
}

/// Renders a path the way users write it: `steps[1].env.FOO`.
pub(crate) fn render_path(path: &[PathSegment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            PathSegment::Key(key) if out.is_empty() => out.push_str(key),
            PathSegment::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            PathSegment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn key(k: &str) -> PathSegment {
    PathSegment::Key(k.to_string())
}

fn step_field(index: usize, field: &str) -> Vec<PathSegment> {
    vec![key("steps"), PathSegment::Index(index), key(field)]
}

fn violation(path: Vec<PathSegment>, message: impl Into<String>) -> Violation {
    Violation { path, message: message.into(), inside_value: None }
}

/// Checks a raw playbook and builds the validated one.
pub(crate) fn validate(raw: RawPlaybook) -> Result<Playbook, Violation> {
    check_name(&raw.name).map_err(|m| violation(vec![key("name")], m))?;
    if raw.steps.is_empty() {
        return Err(violation(vec![key("steps")], "a playbook needs at least one step"));
    }
    if raw.steps.len() > MAX_STEPS {
        let message = format!("{} steps exceed the limit of {MAX_STEPS}", raw.steps.len());
        return Err(violation(vec![key("steps")], message));
    }
    let mut seen = BTreeSet::new();
    let mut steps = Vec::with_capacity(raw.steps.len());
    for (index, step) in raw.steps.into_iter().enumerate() {
        if !seen.insert(step.name.clone()) {
            let message = format!("duplicate step name '{}'", step.name);
            return Err(violation(step_field(index, "name"), message));
        }
        steps.push(validate_step(index, step)?);
    }
    Ok(Playbook { name: raw.name, steps })
}

fn validate_step(index: usize, raw: RawStep) -> Result<PlaybookStep, Violation> {
    check_name(&raw.name).map_err(|m| violation(step_field(index, "name"), m))?;
    check_command(&raw.command).map_err(|m| violation(step_field(index, "command"), m))?;
    if let Some(t) = raw.timeout_seconds
        && !(1..=MAX_STEP_TIMEOUT_SECONDS).contains(&t)
    {
        let message = format!("must be between 1 and {MAX_STEP_TIMEOUT_SECONDS} seconds, got {t}");
        return Err(violation(step_field(index, "timeout_seconds"), message));
    }
    if raw.retry_count > MAX_RETRY_COUNT {
        let message = format!("must be at most {MAX_RETRY_COUNT}, got {}", raw.retry_count);
        return Err(violation(step_field(index, "retry_count"), message));
    }
    check_step_limits(index, &raw)?;
    let condition = match &raw.condition {
        None => None,
        Some(text) => Some(Condition::parse(text).map_err(|e| Violation {
            path: step_field(index, "condition"),
            message: e.message,
            inside_value: Some(InsideValue { value: text.clone(), offset: e.column - 1 }),
        })?),
    };
    for (name, value) in &raw.env {
        let mut path = step_field(index, "env");
        path.push(key(name));
        check_env(name, value).map_err(|m| violation(path, m))?;
    }
    Ok(PlaybookStep {
        name: raw.name,
        command: raw.command,
        timeout_seconds: raw.timeout_seconds,
        retry_count: raw.retry_count,
        condition,
        fail_fast: raw.fail_fast,
        env: raw.env,
        network: raw.network,
        max_memory_mb: raw.max_memory_mb,
        max_processes: raw.max_processes,
    })
}

/// A step may lower the configured limits; zero would be a typo, not a limit.
fn check_step_limits(index: usize, raw: &RawStep) -> Result<(), Violation> {
    if raw.max_memory_mb == Some(0) {
        return Err(violation(step_field(index, "max_memory_mb"), "must be at least 1"));
    }
    if let Some(n) = raw.max_processes
        && !(1..=MAX_STEP_PROCESSES).contains(&n)
    {
        let message = format!("must be between 1 and {MAX_STEP_PROCESSES}, got {n}");
        return Err(violation(step_field(index, "max_processes"), message));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty".to_string());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("longer than {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".to_string());
    }
    Ok(())
}

fn check_command(command: &str) -> Result<(), String> {
    if command.trim().is_empty() {
        return Err("must not be empty".to_string());
    }
    if command.len() > MAX_COMMAND_BYTES {
        return Err(format!("longer than {MAX_COMMAND_BYTES} bytes"));
    }
    if command.contains('\0') {
        return Err("must not contain a NUL character".to_string());
    }
    Ok(())
}

fn check_env(name: &str, value: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid_name = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err("variable names must match [A-Za-z_][A-Za-z0-9_]*".to_string());
    }
    if value.contains('\0') {
        return Err("must not contain a NUL character".to_string());
    }
    Ok(())
}
