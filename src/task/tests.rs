//! Unit tests for task message v1 validation.

use serde_json::json;

use super::*;

fn valid() -> serde_json::Value {
    json!({
        "schema_version": 1,
        "task_id": "1.1",
        "spec_name": "chat-app",
        "title": "Add the user model",
        "description": "Create User with email and name",
        "acceptance_criteria": ["User has email", "User has name"],
        "dependencies": ["1.0"],
        "required_skill": "backend",
        "repo_url": "https://git.example/chat.git",
        "metadata": {"priority": 2},
        "some_future_field": true
    })
}

fn parse(value: serde_json::Value) -> Result<Task, ValidationError> {
    parse_task(&serde_json::to_vec(&value).unwrap())
}

fn error_of(mut value: serde_json::Value, field: &str, replacement: serde_json::Value) -> String {
    if replacement.is_null() {
        value.as_object_mut().unwrap().remove(field);
    } else {
        value[field] = replacement;
    }
    parse(value).unwrap_err().to_string()
}

#[test]
fn a_full_message_parses_with_defaults_applied() {
    let task = parse(valid()).unwrap();
    assert_eq!(
        task,
        Task {
            task_id: "1.1".into(),
            spec_name: "chat-app".into(),
            title: "Add the user model".into(),
            description: "Create User with email and name".into(),
            acceptance_criteria: vec!["User has email".into(), "User has name".into()],
            dependencies: vec!["1.0".into()],
            required_skill: Some("backend".into()),
            repo_url: Some("https://git.example/chat.git".into()),
            base_branch: "main".into(),
            requested_branch: None,
            slot: None,
            playbook: None,
            timeout_seconds: None,
            metadata: json!({"priority": 2}).as_object().unwrap().clone(),
        }
    );
    assert_eq!(task.branch_name(), "feature/task-chat-app-1.1");
    assert_eq!(task.commit_subject(), "feat(task-1.1): Add the user model");
    assert_eq!(task.routing_key(), "task.backend");
}

#[test]
fn missing_required_fields_are_named() {
    for field in ["schema_version", "task_id", "spec_name", "title", "description"] {
        assert_eq!(
            error_of(valid(), field, serde_json::Value::Null),
            format!("{field}: required field is missing")
        );
    }
}

#[test]
fn ill_typed_fields_are_named_with_what_was_found() {
    assert_eq!(error_of(valid(), "title", json!(42)), "title: expected a string, found a number");
    assert_eq!(
        error_of(valid(), "acceptance_criteria", json!(["ok", 3])),
        "acceptance_criteria[1]: expected a string, found a number"
    );
    assert_eq!(
        error_of(valid(), "dependencies", json!("1.0")),
        "dependencies: expected an array of strings, found a string"
    );
    assert_eq!(
        error_of(valid(), "timeout_seconds", json!(-5)),
        "timeout_seconds: expected a non-negative integer, found -5"
    );
    assert_eq!(error_of(valid(), "metadata", json!([1])), "metadata: expected an object, found an array");
    assert_eq!(
        error_of(valid(), "playbook", json!(7)),
        "playbook: expected a name or an inline playbook object, found a number"
    );
}

#[test]
fn values_that_would_break_refs_or_commits_are_refused() {
    assert!(error_of(valid(), "task_id", json!("--upload-pack=evil")).starts_with("task_id: must be"));
    assert!(error_of(valid(), "spec_name", json!("a/../b")).starts_with("spec_name: must be"));
    assert_eq!(error_of(valid(), "title", json!("two\nlines")), "title: must be a single line");
    assert_eq!(error_of(valid(), "title", json!("   ")), "title: must not be empty");
    assert_eq!(
        error_of(valid(), "schema_version", json!(2)),
        "schema_version: unsupported version 2, this worker reads version 1"
    );
    assert_eq!(
        error_of(valid(), "timeout_seconds", json!(0)),
        "timeout_seconds: must be between 1 and 86400"
    );
}

#[test]
fn repo_url_may_be_omitted_only_with_a_preallocated_slot() {
    assert_eq!(
        error_of(valid(), "repo_url", serde_json::Value::Null),
        "repo_url: required unless slot_path is given"
    );
    let mut message = valid();
    message.as_object_mut().unwrap().remove("repo_url");
    message["slot_path"] = json!("/slots/s1");
    message["slot_id"] = json!("s1");
    let task = parse(message.clone()).unwrap();
    assert_eq!(task.slot, Some(PreallocatedSlot { slot_id: "s1".into(), slot_path: "/slots/s1".into() }));
    message["slot_path"] = json!("relative/s1");
    assert_eq!(parse(message).unwrap_err().to_string(), "slot_path: must be an absolute path");
}

#[test]
fn playbooks_may_be_named_or_inline() {
    let mut message = valid();
    message["playbook"] = json!("rust");
    assert_eq!(parse(message.clone()).unwrap().playbook, Some(PlaybookRequest::Named("rust".into())));
    let inline = json!({"name": "x", "steps": [{"name": "t", "command": "true"}]});
    message["playbook"] = inline.clone();
    assert_eq!(parse(message).unwrap().playbook, Some(PlaybookRequest::Inline(inline)));
}

#[test]
fn bodies_that_are_not_task_objects_are_refused() {
    assert!(matches!(parse_task(b"{not json"), Err(ValidationError::NotJson(_))));
    assert_eq!(parse_task(b"[1,2]"), Err(ValidationError::NotAnObject));
    let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        parse_task(&big),
        Err(ValidationError::TooLarge { size: MAX_MESSAGE_BYTES + 1, limit: MAX_MESSAGE_BYTES })
    );
}

#[test]
fn an_explicit_branch_name_wins() {
    let mut message = valid();
    message["branch_name"] = json!("feature/custom");
    message["base_branch"] = json!("develop");
    let task = parse(message).unwrap();
    assert_eq!(task.branch_name(), "feature/custom");
    assert_eq!(task.base_branch, "develop");
}

#[test]
fn branch_names_that_try_option_injection_or_ref_paths_are_refused() {
    assert_eq!(
        error_of(valid(), "branch_name", json!("--upload-pack=touch /tmp/x")),
        "branch_name: must not start with '-' (it would read as a command-line option)"
    );
    assert_eq!(
        error_of(valid(), "base_branch", json!("refs/heads/../../config")),
        "base_branch: must be a plain branch name, not a ref path or HEAD"
    );
    assert_eq!(
        error_of(valid(), "branch_name", json!("a/../b")),
        "branch_name: must not contain '..', '@{' or '//'"
    );
}

#[test]
fn every_problem_of_a_message_is_reported_at_once_with_its_field() {
    let error = parse_task(br#"{"schema_version":1,"task_id":"x"}"#).unwrap_err();
    assert_eq!(
        error.to_string(),
        "spec_name: required field is missing; title: required field is missing; \
         description: required field is missing; repo_url: required unless slot_path is given"
    );
    let mut message = valid();
    message["title"] = json!(42);
    message["branch_name"] = json!("--upload-pack=evil");
    message["timeout_seconds"] = json!(0);
    message["metadata"] = json!([1]);
    let problems = match parse(message).unwrap_err() {
        ValidationError::Several(problems) => problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        other => panic!("expected several problems, got {other}"),
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.split(':').next().unwrap()).collect();
    assert_eq!(fields, ["title", "branch_name", "timeout_seconds", "metadata"], "{problems:?}");
}

#[test]
fn the_seeds_playbook_path_is_a_repository_path_like_one_in_playbook() {
    let mut message = valid();
    message["playbook_path"] = json!("playbooks/backend-task.yaml");
    let expected = Some(PlaybookRequest::Named("playbooks/backend-task.yaml".into()));
    assert_eq!(parse(message.clone()).unwrap().playbook, expected);
    // Both given and the same: one request.
    message["playbook"] = json!("playbooks/backend-task.yaml");
    assert_eq!(parse(message.clone()).unwrap().playbook, expected);
    assert_eq!(
        error_of(message.clone(), "playbook", json!("rust")),
        "playbook_path: names a different playbook than playbook: give one of playbook and playbook_path"
    );
    assert_eq!(
        error_of(valid(), "playbook_path", json!("backend")),
        "playbook_path: must be a .yaml or .yml path in the repository"
    );
}

#[test]
fn a_playbook_path_escaping_the_repository_is_refused() {
    for escape in ["../other/ci.yaml", "ok/../../ci.yaml", "/etc/ci.yaml"] {
        assert_eq!(
            error_of(valid(), "playbook_path", json!(escape)),
            "playbook_path: must be a relative path inside the repository, without ..",
            "{escape}"
        );
    }
}

#[test]
fn a_bad_playbook_path_is_reported_with_the_other_fields_problems() {
    let mut message = valid();
    message["playbook_path"] = json!("/etc/ci.yaml");
    message["timeout_seconds"] = json!(0);
    assert_eq!(
        parse(message).unwrap_err().to_string(),
        "playbook_path: must be a relative path inside the repository, without ..; \
         timeout_seconds: must be between 1 and 86400"
    );
}

#[test]
fn a_task_written_back_as_a_message_reads_as_the_same_task() {
    let mut full = valid();
    let fields = full.as_object_mut().unwrap();
    fields.insert("branch_name".into(), json!("feature/own"));
    fields.insert("slot_path".into(), json!("/srv/slots/7"));
    fields.insert("slot_id".into(), json!("slot-7"));
    fields.insert("timeout_seconds".into(), json!(600));
    fields.insert("playbook".into(), json!({"name": "inline", "steps": []}));
    for message in [valid(), full] {
        let task = parse(message).unwrap();
        assert_eq!(parse(task.to_message()).unwrap(), task);
    }
}
