//! Parsing and validating task message v1 (DESIGN.md §3).
//!
//! The body is read into a JSON value first and then checked field by field, so every
//! error names the field at fault (`title: expected a string, found 42`) rather than
//! quoting serde's position in the byte stream. Unknown fields are ignored for forward
//! compatibility.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{PlaybookRequest, PreallocatedSlot, SCHEMA_VERSION, Task};

/// Messages larger than this are refused before parsing: a task description is prose,
/// and a multi-megabyte body is either a mistake or an attempt to exhaust the worker.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Upper bound for `timeout_seconds`: a day. Longer tasks cannot fit any sane broker
/// consumer timeout and are almost certainly a unit mistake (milliseconds).
const MAX_TIMEOUT_SECONDS: u64 = 24 * 3600;

/// Why a message is not a valid task. Permanent: the same bytes will never parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("message is {size} bytes, above the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("message is not valid JSON: {0}")]
    NotJson(String),
    #[error("message is not a JSON object")]
    NotAnObject,
    #[error("{field}: required field is missing")]
    Missing { field: &'static str },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// More than one field is at fault; each problem in message-schema order.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<ValidationError>),
}

impl crate::error::Classify for ValidationError {
    fn failure_kind(&self) -> crate::error::FailureKind {
        crate::error::FailureKind::Validation
    }
    fn is_transient(&self) -> bool {
        false
    }
}

/// Parses and validates a task message body. Every field is checked, and every problem
/// is reported at once (`ValidationError::Several`), so a Dispatcher bug is fixed in one
/// round rather than one field per dead letter.
pub fn parse_task(body: &[u8]) -> Result<Task, ValidationError> {
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(ValidationError::TooLarge { size: body.len(), limit: MAX_MESSAGE_BYTES });
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| ValidationError::NotJson(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(ValidationError::NotAnObject);
    };
    let reader = Fields(&fields);
    let mut problems = Problems::default();

    let version = problems.check(reader.required_u64("schema_version").and_then(supported_version));
    let task_id = problems.check(reader.required_identifier("task_id"));
    let spec_name = problems.check(reader.required_identifier("spec_name"));
    let title = problems.check(reader.required_title());
    let description = problems.check(reader.required_text("description"));
    let acceptance_criteria = problems.check(reader.string_list("acceptance_criteria"));
    let dependencies = problems.check(reader.string_list("dependencies"));
    let required_skill = problems.check(reader.optional_identifier("required_skill"));
    let repo_url = problems.check(reader.optional_text("repo_url"));
    let base_branch = problems.check(reader.optional_branch("base_branch"));
    let requested_branch = problems.check(reader.optional_branch("branch_name"));
    let slot = problems.check(preallocated_slot(&reader));
    if let (Some(None), Some(None)) = (&repo_url, &slot) {
        problems.0.push(invalid("repo_url", "required unless slot_path is given".to_string()));
    }
    let named_playbook = problems.check(playbook_request(&reader));
    let playbook_path = problems.check(
        reader.optional_text("playbook_path").and_then(|path| path.as_deref().map(playbook_path).transpose()),
    );
    let playbook = match (named_playbook, playbook_path) {
        (Some(named), Some(path)) => problems.check(one_playbook(named, path)),
        _ => None,
    };
    let timeout_seconds = problems.check(reader.optional_u64("timeout_seconds").and_then(timeout_in_range));
    let metadata = problems.check(match fields.get("metadata") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(other) => Err(type_error("metadata", "an object", other)),
    });

    // Every field was read above; the task exists only when none of them failed.
    let task = (|| {
        version?;
        Some(Task {
            task_id: task_id?,
            spec_name: spec_name?,
            title: title?,
            description: description?,
            acceptance_criteria: acceptance_criteria?,
            dependencies: dependencies?,
            required_skill: required_skill?,
            repo_url: repo_url?,
            base_branch: base_branch?.unwrap_or_else(|| "main".to_string()),
            requested_branch: requested_branch?,
            slot: slot?,
            playbook: playbook?,
            timeout_seconds: timeout_seconds?,
            metadata: metadata?,
        })
    })();
    match task {
        Some(task) if problems.0.is_empty() => Ok(task),
        _ => Err(problems.into_error()),
    }
}

/// The problems found so far; each field's check adds at most one.
#[derive(Default)]
struct Problems(Vec<ValidationError>);

impl Problems {
    /// The value when the field is fine; otherwise `None`, keeping the problem.
    fn check<T>(&mut self, result: Result<T, ValidationError>) -> Option<T> {
        result.map_err(|problem| self.0.push(problem)).ok()
    }

    /// One problem as itself, several together.
    fn into_error(mut self) -> ValidationError {
        match self.0.len() {
            0 => invalid("message", "is not a valid task".to_string()),
            1 => self.0.remove(0),
            _ => ValidationError::Several(self.0),
        }
    }
}

fn supported_version(version: u64) -> Result<u64, ValidationError> {
    if version == SCHEMA_VERSION {
        return Ok(version);
    }
    Err(invalid(
        "schema_version",
        format!("unsupported version {version}, this worker reads version {SCHEMA_VERSION}"),
    ))
}

fn timeout_in_range(timeout: Option<u64>) -> Result<Option<u64>, ValidationError> {
    match timeout {
        Some(t) if !(1..=MAX_TIMEOUT_SECONDS).contains(&t) => {
            Err(invalid("timeout_seconds", format!("must be between 1 and {MAX_TIMEOUT_SECONDS}")))
        }
        _ => Ok(timeout),
    }
}

fn preallocated_slot(reader: &Fields<'_>) -> Result<Option<PreallocatedSlot>, ValidationError> {
    let slot_path = reader.optional_text("slot_path")?;
    let slot_id = reader.optional_text("slot_id")?;
    Ok(match slot_path {
        None => None,
        Some(path) => {
            let slot_path = PathBuf::from(&path);
            if !slot_path.is_absolute() {
                return Err(invalid("slot_path", "must be an absolute path".to_string()));
            }
            let slot_id = slot_id.unwrap_or_else(|| path.clone());
            Some(PreallocatedSlot { slot_id, slot_path })
        }
    })
}

fn playbook_request(reader: &Fields<'_>) -> Result<Option<PlaybookRequest>, ValidationError> {
    match reader.0.get("playbook") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) if !name.trim().is_empty() => {
            Ok(Some(PlaybookRequest::Named(name.trim().to_string())))
        }
        Some(Value::String(_)) => Err(invalid("playbook", "must not be empty".to_string())),
        Some(inline @ Value::Object(_)) => Ok(Some(PlaybookRequest::Inline(inline.clone()))),
        Some(other) => Err(type_error("playbook", "a name or an inline playbook object", other)),
    }
}

/// `playbook` and the seed's `playbook_path` are two spellings of one request: either may
/// be given, or both when they agree.
fn one_playbook(
    playbook: Option<PlaybookRequest>,
    path: Option<PlaybookRequest>,
) -> Result<Option<PlaybookRequest>, ValidationError> {
    match (playbook, path) {
        (Some(playbook), Some(path)) if playbook != path => Err(invalid(
            "playbook_path",
            "names a different playbook than playbook: give one of playbook and playbook_path".to_string(),
        )),
        (Some(request), _) | (None, Some(request)) => Ok(Some(request)),
        (None, None) => Ok(None),
    }
}

/// The seed's `playbook_path`: a `.yaml`/`.yml` path inside the repository, resolved as
/// such a path in `playbook` is (confined to the workspace when the playbook is loaded;
/// absolute paths and `..` are refused here already, since they can never be honoured).
fn playbook_path(path: &str) -> Result<PlaybookRequest, ValidationError> {
    let path = path.trim();
    if !(path.ends_with(".yaml") || path.ends_with(".yml")) {
        return Err(invalid("playbook_path", "must be a .yaml or .yml path in the repository".to_string()));
    }
    let relative_inside = std::path::Path::new(path)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
    if !relative_inside {
        return Err(invalid(
            "playbook_path",
            "must be a relative path inside the repository, without ..".to_string(),
        ));
    }
    Ok(PlaybookRequest::Named(path.to_string()))
}

fn invalid(field: &str, reason: String) -> ValidationError {
    ValidationError::Invalid { field: field.to_string(), reason }
}

fn type_error(field: &str, expected: &str, found: &Value) -> ValidationError {
    let found = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    invalid(field, format!("expected {expected}, found {found}"))
}

/// Field accessors that produce errors naming the field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn optional_text(&self, field: &'static str) -> Result<Option<String>, ValidationError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(invalid(field, "must not be empty".to_string()))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(type_error(field, "a string", other)),
        }
    }

    /// Branch names are refused, not repaired, when they try option injection or a ref
    /// path (see [`super::refname`]).
    fn optional_branch(&self, field: &'static str) -> Result<Option<String>, ValidationError> {
        let Some(name) = self.optional_text(field)? else { return Ok(None) };
        match super::refname::branch_name_problem(&name) {
            Some(problem) => Err(invalid(field, problem.to_string())),
            None => Ok(Some(name)),
        }
    }

    fn required_text(&self, field: &'static str) -> Result<String, ValidationError> {
        self.optional_text(field)?.ok_or(ValidationError::Missing { field })
    }

    /// Task ids, spec names and skills end up in branch names, routing keys and artifact
    /// keys, so they are held to a conservative character set.
    fn optional_identifier(&self, field: &'static str) -> Result<Option<String>, ValidationError> {
        let Some(text) = self.optional_text(field)? else { return Ok(None) };
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if text.len() > 128 || !text.chars().all(allowed) || text.starts_with(['.', '-']) {
            return Err(invalid(
                field,
                "must be 1-128 characters of letters, digits, '.', '-' or '_', not starting with '.' or '-'"
                    .to_string(),
            ));
        }
        Ok(Some(text))
    }

    fn required_identifier(&self, field: &'static str) -> Result<String, ValidationError> {
        self.optional_identifier(field)?.ok_or(ValidationError::Missing { field })
    }

    /// The title becomes a commit subject, so it must be one line.
    fn required_title(&self) -> Result<String, ValidationError> {
        let title = self.required_text("title")?;
        if title.contains(['\n', '\r']) {
            return Err(invalid("title", "must be a single line".to_string()));
        }
        Ok(title.trim().to_string())
    }

    fn optional_u64(&self, field: &'static str) -> Result<Option<u64>, ValidationError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid(field, format!("expected a non-negative integer, found {n}"))),
            Some(other) => Err(type_error(field, "an integer", other)),
        }
    }

    fn required_u64(&self, field: &'static str) -> Result<u64, ValidationError> {
        self.optional_u64(field)?.ok_or(ValidationError::Missing { field })
    }

    fn string_list(&self, field: &'static str) -> Result<Vec<String>, ValidationError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(type_error(&format!("{field}[{i}]"), "a string", other)),
                })
                .collect(),
            Some(other) => Err(type_error(field, "an array of strings", other)),
        }
    }
}

impl Task {
    /// The task as a schema-version-1 message, which [`parse_task`] reads back into the
    /// same task: what a Kubernetes task pod receives.
    pub fn to_message(&self) -> Value {
        let mut message = Map::new();
        message.insert("schema_version".into(), SCHEMA_VERSION.into());
        message.insert("task_id".into(), self.task_id.clone().into());
        message.insert("spec_name".into(), self.spec_name.clone().into());
        message.insert("title".into(), self.title.clone().into());
        message.insert("description".into(), self.description.clone().into());
        message.insert("acceptance_criteria".into(), self.acceptance_criteria.clone().into());
        message.insert("dependencies".into(), self.dependencies.clone().into());
        message.insert("base_branch".into(), self.base_branch.clone().into());
        let optional = [
            ("required_skill", self.required_skill.clone()),
            ("repo_url", self.repo_url.clone()),
            ("branch_name", self.requested_branch.clone()),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                message.insert(field.into(), value.into());
            }
        }
        if let Some(slot) = &self.slot {
            message.insert("slot_id".into(), slot.slot_id.clone().into());
            message.insert("slot_path".into(), slot.slot_path.to_string_lossy().into_owned().into());
        }
        match &self.playbook {
            Some(PlaybookRequest::Named(name)) => {
                message.insert("playbook".into(), name.clone().into());
            }
            Some(PlaybookRequest::Inline(inline)) => {
                message.insert("playbook".into(), inline.clone());
            }
            None => {}
        }
        if let Some(timeout) = self.timeout_seconds {
            message.insert("timeout_seconds".into(), timeout.into());
        }
        message.insert("metadata".into(), Value::Object(self.metadata.clone()));
        Value::Object(message)
    }
}
