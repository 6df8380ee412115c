//! YAML and inline-JSON parsing: whole values on success, exact messages on failure.

use std::collections::BTreeMap;

use agent_runner::error::{Classify, FailureKind};
use agent_runner::playbook::model::MAX_STEPS;
use agent_runner::playbook::parse::MAX_PLAYBOOK_BYTES;
use agent_runner::playbook::{
    Condition, Playbook, PlaybookError, PlaybookStep, parse_playbook, playbook_from_json,
};
use serde_json::json;

fn error_of(yaml: &str) -> String {
    parse_playbook(yaml, "playbooks/x.yaml").unwrap_err().to_string()
}

#[test]
fn the_seed_example_parses_with_defaults_filled_in() {
    let yaml = "\
name: Backend Task Playbook
steps:
  - name: Install dependencies
    command: npm install
    timeout_seconds: 300
    retry_count: 2

  - name: Run linter
    command: npm run lint
    condition: lint_enabled == true
    fail_fast: false

  - name: Run unit tests
    command: npm test
    timeout_seconds: 600
    fail_fast: true
    env:
      CI: 'true'
";
    let step = |name: &str, command: &str| PlaybookStep {
        name: name.into(),
        command: command.into(),
        timeout_seconds: None,
        retry_count: 0,
        condition: None,
        fail_fast: true,
        env: BTreeMap::new(),
        network: false,
        max_memory_mb: None,
        max_processes: None,
    };
    let expected = Playbook {
        name: "Backend Task Playbook".into(),
        steps: vec![
            PlaybookStep {
                timeout_seconds: Some(300),
                retry_count: 2,
                ..step("Install dependencies", "npm install")
            },
            PlaybookStep {
                condition: Some(Condition::parse("lint_enabled == true").unwrap()),
                fail_fast: false,
                ..step("Run linter", "npm run lint")
            },
            PlaybookStep {
                timeout_seconds: Some(600),
                env: BTreeMap::from([("CI".to_string(), "true".to_string())]),
                ..step("Run unit tests", "npm test")
            },
        ],
    };
    assert_eq!(parse_playbook(yaml, "seed.yaml").unwrap(), expected);
}

#[test]
fn unknown_keys_are_rejected_with_their_line() {
    let yaml = "name: x\nsteps:\n  - name: a\n    command: 'true'\n    retries: 1\n";
    assert_eq!(
        error_of(yaml),
        "playbooks/x.yaml:5:5: steps[0]: unknown field `retries`, expected one of `name`, `command`, \
         `timeout_seconds`, `retry_count`, `condition`, `fail_fast`, `env`, \
         `network`, `max_memory_mb`, `max_processes`"
    );
    assert_eq!(
        error_of("name: x\nstep: []\n"),
        "playbooks/x.yaml:2:1: unknown field `step`, expected `name` or `steps`"
    );
}

#[test]
fn missing_and_ill_typed_fields_name_line_and_field() {
    assert_eq!(
        error_of("name: x\nsteps:\n  - name: a\n"),
        "playbooks/x.yaml:3:5: steps[0]: missing field `command`"
    );
    assert_eq!(
        error_of("name: x\nsteps:\n  - name: a\n    command: 'true'\n    retry_count: many\n"),
        "playbooks/x.yaml:5:18: steps[0].retry_count: invalid type: string \"many\", expected u32"
    );
}

#[test]
fn semantic_errors_point_at_the_offending_field() {
    assert_eq!(
        error_of("name: x\nsteps: []\n"),
        "playbooks/x.yaml:2:8: steps: a playbook needs at least one step"
    );
    assert_eq!(
        error_of("name: x\nsteps:\n  - name: a\n    command: 'true'\n  - name: a\n    command: 'false'\n"),
        "playbooks/x.yaml:5:11: steps[1].name: duplicate step name 'a'"
    );
    assert_eq!(
        error_of("name: x\nsteps:\n  - {name: a, command: '  '}\n"),
        "playbooks/x.yaml:3:24: steps[0].command: must not be empty"
    );
    assert_eq!(
        error_of("name: x\nsteps:\n  - name: a\n    command: 'true'\n    timeout_seconds: 0\n"),
        "playbooks/x.yaml:5:22: steps[0].timeout_seconds: must be between 1 and 21600 seconds, got 0"
    );
    assert_eq!(
        error_of("name: x\nsteps:\n  - name: a\n    command: 'true'\n    retry_count: 11\n"),
        "playbooks/x.yaml:5:18: steps[0].retry_count: must be at most 10, got 11"
    );
    assert_eq!(
        error_of("name: x\nsteps:\n  - name: a\n    command: 'true'\n    env:\n      'BAD NAME': '1'\n"),
        "playbooks/x.yaml:6:19: steps[0].env.BAD NAME: variable names must match [A-Za-z_][A-Za-z0-9_]*"
    );
    assert_eq!(error_of("name: ''\nsteps: []\n"), "playbooks/x.yaml:1:7: name: must not be empty");
}

#[test]
fn condition_errors_point_at_the_token_inside_the_value() {
    let steps = "name: x\nsteps:\n  - name: a\n    command: 'true'\n  - name: b\n    command: 'true'\n";
    assert_eq!(
        error_of(&format!("{steps}    condition: lint_enabled & x\n")),
        "playbooks/x.yaml:7:29: steps[1].condition: unexpected token '&', expected '&&'"
    );
    // Quoted: the column still lands on the '&'.
    assert_eq!(
        error_of(&format!("{steps}    condition: \"lint_enabled & x\"\n")),
        "playbooks/x.yaml:7:30: steps[1].condition: unexpected token '&', expected '&&'"
    );
    // A block scalar cannot be mapped character by character: the value's start is reported.
    assert_eq!(
        error_of(&format!("{steps}    condition: >\n      a &\n")),
        "playbooks/x.yaml:7:16: steps[1].condition: unexpected token '&', expected '&&'"
    );
}

#[test]
fn limits_are_enforced() {
    let big = format!("name: x\n# {}\nsteps: []\n", "p".repeat(MAX_PLAYBOOK_BYTES));
    assert_eq!(
        error_of(&big),
        format!("playbooks/x.yaml: {} bytes exceed the playbook limit of 262144 bytes", big.len())
    );
    let mut many = String::from("name: x\nsteps:\n");
    for i in 0..=MAX_STEPS {
        many.push_str(&format!("  - {{name: s{i}, command: 'true'}}\n"));
    }
    assert_eq!(error_of(&many), "playbooks/x.yaml:3:3: steps: 101 steps exceed the limit of 100");
}

#[test]
fn yaml_syntax_errors_keep_the_parsers_position() {
    let err = parse_playbook("name: x\nsteps:\n  - name: [a\n", "p.yaml").unwrap_err();
    let PlaybookError::Invalid(invalid) = &err else { panic!("{err:?}") };
    assert_eq!(invalid.origin, "p.yaml");
    assert!(invalid.position.is_some(), "{err}");
    assert!(err.to_string().starts_with("p.yaml:"), "{err}");
}

#[test]
fn an_inline_json_playbook_validates_the_same_way_without_lines() {
    let value = json!({
        "name": "inline",
        "steps": [{"name": "t", "command": "make test", "condition": "task.required_skill == 'backend'"}]
    });
    let playbook = playbook_from_json(&value, "inline").unwrap();
    let yaml = "name: inline\nsteps:\n  - name: t\n    command: make test\n    condition: task.required_skill == 'backend'\n";
    assert_eq!(playbook, parse_playbook(yaml, "same.yaml").unwrap());

    let bad_condition = json!({"name": "i", "steps": [{"name": "a", "command": "true", "condition": "a &"}]});
    assert_eq!(
        playbook_from_json(&bad_condition, "inline").unwrap_err().to_string(),
        "inline: steps[0].condition: unexpected token '&', expected '&&'"
    );
    let unknown = json!({"name": "i", "steps": [{"name": "a", "command": "true", "shell": "bash"}]});
    assert_eq!(
        playbook_from_json(&unknown, "inline").unwrap_err().to_string(),
        "inline: steps[0]: unknown field `shell`, expected one of `name`, `command`, `timeout_seconds`, \
         `retry_count`, `condition`, `fail_fast`, `env`, \
         `network`, `max_memory_mb`, `max_processes`"
    );
    assert_eq!(
        playbook_from_json(&json!("make test"), "inline").unwrap_err().to_string(),
        "inline: invalid type: string \"make test\", expected a playbook mapping with `name` and `steps`"
    );
}

#[test]
fn a_bad_playbook_is_a_permanent_validation_failure() {
    let err = parse_playbook("name: x\nsteps: []\n", "p.yaml").unwrap_err();
    assert_eq!(err.failure_kind(), FailureKind::Validation);
    assert!(!err.is_transient());
    let failure = err.to_failure("test");
    assert_eq!(failure.message, "p.yaml:2:8: steps: a playbook needs at least one step");
}

#[test]
fn a_step_that_is_not_a_mapping_says_what_is_expected() {
    assert_eq!(
        error_of("name: x\nsteps:\n  - make test\n"),
        "playbooks/x.yaml:3:5: steps[0]: invalid type: string \"make test\", expected a step mapping \
         with at least `name` and `command`"
    );
}
