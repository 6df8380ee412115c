//! The condition language: evaluation, precedence and parse errors with columns.

use std::collections::BTreeMap;

use agent_runner::playbook::condition::{MAX_CONDITION_CHARS, MAX_CONDITION_DEPTH};
use agent_runner::playbook::{Condition, ConditionError};

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn eval(text: &str, pairs: &[(&str, &str)]) -> bool {
    Condition::parse(text).unwrap().evaluate(&vars(pairs))
}

fn parse_error(text: &str) -> (usize, String) {
    let ConditionError { column, message } = Condition::parse(text).unwrap_err();
    (column, message)
}

#[test]
fn the_seed_condition_compares_with_the_string_true() {
    assert!(eval("lint_enabled == true", &[("lint_enabled", "true")]));
    assert!(!eval("lint_enabled == true", &[("lint_enabled", "false")]));
    assert!(!eval("lint_enabled == true", &[("lint_enabled", "yes")]));
    assert!(!eval("lint_enabled == true", &[]));
}

#[test]
fn a_bare_value_is_true_unless_empty_false_or_zero() {
    for (value, expected) in [
        ("true", true),
        ("yes", true),
        ("1", true),
        ("False", true),
        ("", false),
        ("false", false),
        ("0", false),
    ] {
        assert_eq!(eval("flag", &[("flag", value)]), expected, "flag={value:?}");
    }
    assert!(!eval("unset_variable", &[]));
    assert!(eval("true", &[]));
    assert!(!eval("false", &[]));
    assert!(!eval("0", &[]));
    assert!(eval("'x'", &[]));
    assert!(!eval("''", &[]));
}

#[test]
fn unknown_variables_are_empty_strings() {
    assert!(eval("missing == ''", &[]));
    assert!(eval("!missing", &[]));
    assert!(eval("missing != \"x\"", &[]));
}

#[test]
fn dotted_identifiers_strings_and_numbers_compare_as_text() {
    let v = [("task.required_skill", "backend"), ("count", "3")];
    assert!(eval("task.required_skill == 'backend'", &v));
    assert!(eval("task.required_skill == \"backend\"", &v));
    assert!(!eval("task.required_skill == 'Backend'", &v));
    assert!(eval("count == 3", &v));
    assert!(!eval("count == 3.0", &v));
    assert!(eval("-1.5 == '-1.5'", &[]));
    assert!(eval("'a b' != 'a  b'", &[]));
}

#[test]
fn and_binds_tighter_than_or() {
    let v = [("a", "true"), ("b", "false"), ("c", "false")];
    assert!(eval("a || b && c", &v));
    assert!(!eval("(a || b) && c", &v));
    assert!(eval("c && b || a", &v));
    assert!(!eval("c && (b || a)", &v));
}

#[test]
fn not_binds_tighter_than_comparison() {
    // (!a) == b: !"" is "true", which is not "false".
    assert!(!eval("!a == b", &[("a", ""), ("b", "false")]));
    assert!(eval("!(a == b)", &[("a", ""), ("b", "false")]));
    assert!(eval("!!x", &[("x", "on")]));
    assert!(!eval("!x && y", &[("x", "on"), ("y", "on")]));
}

#[test]
fn comparison_and_boolean_results_are_the_strings_true_and_false() {
    assert!(eval("(a == 'x') == true", &[("a", "x")]));
    assert!(eval("(a || b) == false", &[]));
    assert!(eval("(a && b) != 'true'", &[("a", "1")]));
}

#[test]
fn the_source_text_is_kept() {
    let c = Condition::parse("  a ==  b ").unwrap();
    assert_eq!(c.as_str(), "  a ==  b ");
    assert_eq!(c.to_string(), "  a ==  b ");
}

#[test]
fn parse_errors_carry_the_column_of_the_offending_token() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "empty condition"),
        ("   ", 1, "empty condition"),
        ("a & b", 3, "unexpected token '&', expected '&&'"),
        ("a | b", 3, "unexpected token '|', expected '||'"),
        ("a = b", 3, "unexpected token '=', expected '=='"),
        ("a ==", 5, "expected a value, found the end of the condition"),
        ("== a", 1, "unexpected token '==', expected a value"),
        ("a && || b", 6, "unexpected token '||', expected a value"),
        ("a == b == c", 8, "unexpected token '==', expected '&&', '||' or the end of the condition"),
        ("a b", 3, "unexpected token 'b', expected '&&', '||' or the end of the condition"),
        ("(a || b", 8, "expected ')' to close the '(' at column 1"),
        ("(a b)", 4, "expected ')' to close the '(' at column 1"),
        ("a)", 2, "unexpected ')' without a matching '('"),
        ("()", 2, "unexpected token ')', expected a value"),
        ("a == 'open", 6, "unterminated string literal"),
        ("task.", 6, "expected a name after '.' in an identifier"),
        ("task.1x", 6, "expected a name after '.' in an identifier"),
        ("1.", 3, "expected digits after '.' in a number"),
        ("12ab", 3, "unexpected character 'a' in a number"),
        ("a $ b", 3, "unexpected character '$'"),
        ("é == a", 1, "unexpected character 'é'"),
    ];
    for (text, column, message) in cases {
        assert_eq!(parse_error(text), (*column, message.to_string()), "condition {text:?}");
    }
}

#[test]
fn nesting_and_length_are_limited() {
    let deep_ok = format!("{}a{}", "(".repeat(MAX_CONDITION_DEPTH), ")".repeat(MAX_CONDITION_DEPTH));
    assert!(eval(&deep_ok, &[("a", "x")]));
    let too_deep = format!("{}a{}", "(".repeat(MAX_CONDITION_DEPTH + 1), ")".repeat(MAX_CONDITION_DEPTH + 1));
    assert_eq!(
        parse_error(&too_deep),
        (MAX_CONDITION_DEPTH + 1, "nesting deeper than 32 levels".to_string())
    );
    let too_many_nots = format!("{}a", "!".repeat(MAX_CONDITION_DEPTH + 1));
    assert_eq!(
        parse_error(&too_many_nots),
        (MAX_CONDITION_DEPTH + 1, "nesting deeper than 32 levels".to_string())
    );
    let too_long = "a".repeat(MAX_CONDITION_CHARS + 1);
    assert_eq!(parse_error(&too_long), (1025, "condition is longer than 1024 characters".to_string()));
}
