//! The condition language of a playbook step's `condition:` field.
//!
//! Conditions decide whether a step runs, from variables the worker supplies (for example
//! `lint_enabled`, `task.required_skill`). The language is deliberately tiny and never
//! touches a shell: it compares strings and combines truth values.
//!
//! Grammar (lowest precedence first; `!` binds tightest, as in C and GitHub Actions):
//!
//! ```text
//! condition := or
//! or        := and ( "||" and )*
//! and       := cmp ( "&&" cmp )*
//! cmp       := unary ( ( "==" | "!=" ) unary )?      -- comparisons do not chain
//! unary     := "!" unary | primary
//! primary   := "(" or ")" | IDENT | STRING | NUMBER | "true" | "false"
//! IDENT     := [A-Za-z_][A-Za-z0-9_]* ( "." [A-Za-z_][A-Za-z0-9_]* )*
//! STRING    := '\'' [^']* '\'' | '"' [^"]* '"'       -- no escapes
//! NUMBER    := "-"? [0-9]+ ( "." [0-9]+ )?
//! ```
//!
//! Semantics:
//! - Every value is a string. An identifier's value is the variable's value; an unknown
//!   variable is the empty string (so `!lint_enabled` holds when nobody set it).
//!   `true`/`false` are the strings "true"/"false"; a number is its literal text
//!   (`1.0 == 1` is false).
//! - `==`/`!=` compare strings exactly (case-sensitive). A comparison, `!`, `&&` and `||`
//!   produce "true" or "false", so `(a || b) == false` works.
//! - Where a truth value is needed (operands of `!`, `&&`, `||`, and the whole condition),
//!   a string is true unless it is empty, "false" or "0".
//! - `&&` and `||` short-circuit; evaluation has no side effects, so this only saves work.
//!
//! Parse errors carry the 1-based character column of the offending token.

use std::collections::BTreeMap;

mod parser;

use parser::Parser;

/// Longest condition accepted; a condition is a one-liner, not a program.
pub const MAX_CONDITION_CHARS: usize = 1024;

/// Deepest nesting of `(` and `!` accepted; keeps the recursive parser's stack small.
pub const MAX_CONDITION_DEPTH: usize = 32;

/// A parsed condition, kept with its source text for reports and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    source: String,
    expr: Expr,
}

/// Why a condition did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ConditionError {
    /// 1-based character column in the condition text.
    pub column: usize,
    pub message: String,
}

/// The parsed form; see the grammar in the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Variable(String),
    Literal(String),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Equal(Box<Expr>, Box<Expr>),
    NotEqual(Box<Expr>, Box<Expr>),
}

impl Condition {
    /// Parses `text` according to the module grammar.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let chars = text.chars().count();
        if chars > MAX_CONDITION_CHARS {
            return Err(ConditionError {
                column: MAX_CONDITION_CHARS + 1,
                message: format!("condition is longer than {MAX_CONDITION_CHARS} characters"),
            });
        }
        let expr = Parser::new(text)?.parse_condition()?;
        Ok(Condition { source: text.to_string(), expr })
    }

    /// The condition as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Evaluates against `variables`; unknown variables are empty strings.
    pub fn evaluate(&self, variables: &BTreeMap<String, String>) -> bool {
        truthy(&eval(&self.expr, variables))
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

impl serde::Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

fn truthy(value: &str) -> bool {
    !(value.is_empty() || value == "false" || value == "0")
}

fn boolean(value: bool) -> String {
    if value { "true" } else { "false" }.to_string()
}

fn eval(expr: &Expr, vars: &BTreeMap<String, String>) -> String {
    match expr {
        Expr::Variable(name) => vars.get(name).cloned().unwrap_or_default(),
        Expr::Literal(text) => text.clone(),
        Expr::Not(inner) => boolean(!truthy(&eval(inner, vars))),
        Expr::And(l, r) => boolean(truthy(&eval(l, vars)) && truthy(&eval(r, vars))),
        Expr::Or(l, r) => boolean(truthy(&eval(l, vars)) || truthy(&eval(r, vars))),
        Expr::Equal(l, r) => boolean(eval(l, vars) == eval(r, vars)),
        Expr::NotEqual(l, r) => boolean(eval(l, vars) != eval(r, vars)),
    }
}
