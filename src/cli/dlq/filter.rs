//! Which dead letters a `dlq` command acts on, and how old each one is.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::amqp::{DeadLetter, header};

/// What `x-failure-kind` is shown as for a message the broker dead-lettered itself
/// (delivery limit, or our republish failed): it carries only `x-death`.
pub const BROKER_REASON: &str = "broker";

/// The filters every `dlq` subcommand takes; all given ones must match.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filters {
    /// Only the dead letter with this id (the ID column of `dlq list`).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Only this task.
    #[arg(long, value_name = "ID")]
    pub task_id: Option<String>,
    /// Only this spec.
    #[arg(long, value_name = "NAME")]
    pub spec: Option<String>,
    /// Only this failure kind (validation, timeout, push, cancelled, broker, ...).
    #[arg(long, value_name = "KIND")]
    pub reason: Option<String>,
    /// Only messages dead-lettered longer ago than this (30s, 15m, 2h, 1d).
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<Duration>,
    /// Act on at most this many matching messages.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

impl Filters {
    /// Whether `letter` matches, `now` being the time of the pass.
    pub fn matches(&self, letter: &DeadLetter, now: DateTime<Utc>) -> bool {
        let equal = |wanted: &Option<String>, actual: Option<String>| {
            wanted.as_ref().is_none_or(|w| actual.as_deref() == Some(w.as_str()))
        };
        equal(&self.id, Some(letter.id.clone()))
            && equal(&self.task_id, letter.header_text(header::TASK_ID))
            && equal(&self.spec, letter.header_text(header::SPEC))
            && equal(&self.reason, Some(reason(letter)))
            && self.older_than.is_none_or(|min| age(letter, now).is_some_and(|a| a > min))
    }
}

/// The failure kind, or [`BROKER_REASON`].
pub fn reason(letter: &DeadLetter) -> String {
    letter.header_text(header::KIND).unwrap_or_else(|| BROKER_REASON.to_string())
}

/// How long ago the worker dead-lettered it (`x-failed-at`); `None` when unknown.
pub fn age(letter: &DeadLetter, now: DateTime<Utc>) -> Option<Duration> {
    let failed_at = letter.header_text(header::FAILED_AT)?;
    let failed_at = DateTime::parse_from_rfc3339(&failed_at).ok()?.with_timezone(&Utc);
    (now - failed_at).to_std().ok()
}

/// `90s`, `15m`, `2h`, `1d`, `1h 30m` (humantime's units; a bare number is seconds).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: u64 = text.parse().map_err(|_| format!("'{text}' is too long"))?;
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("'{text}' is not an age like 30s, 15m, 2h or 1d: {e}"))
}

/// An age for a table: `42s`, `7m`, `3h`, `2d`, or `-` when unknown.
pub fn show_age(age: Option<Duration>) -> String {
    let Some(age) = age else { return "-".to_string() };
    let s = age.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::{HeaderMap, HeaderValue};

    fn letter(pairs: &[(&str, &str)]) -> DeadLetter {
        let headers: HeaderMap =
            pairs.iter().map(|(k, v)| (k.to_string(), HeaderValue::Text(v.to_string()))).collect();
        let id = crate::amqp::letter_id("task.backend", &headers, b"{}");
        DeadLetter { id, routing_key: "task.backend".into(), headers, body: "{}".into() }
    }

    #[test]
    fn filters_match_on_every_given_field_and_age() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T12:00:00Z").unwrap().with_timezone(&Utc);
        let old = letter(&[
            ("x-task-id", "1.1"),
            ("x-spec-name", "chat"),
            ("x-failure-kind", "timeout"),
            ("x-failed-at", "2026-01-01T10:00:00Z"),
        ]);
        let by_broker = letter(&[]);
        let f = |task: Option<&str>, reason: Option<&str>, older: Option<u64>| Filters {
            task_id: task.map(String::from),
            reason: reason.map(String::from),
            older_than: older.map(Duration::from_secs),
            ..Filters::default()
        };
        assert!(f(None, None, None).matches(&old, now));
        assert!(f(Some("1.1"), Some("timeout"), Some(3600)).matches(&old, now));
        assert!(!f(Some("1.2"), None, None).matches(&old, now));
        let by_id = |id: &str| Filters { id: Some(id.into()), ..Filters::default() };
        assert!(by_id(&old.id).matches(&old, now));
        assert!(!by_id(&old.id).matches(&by_broker, now));
        assert!(!f(None, None, Some(3 * 3600)).matches(&old, now));
        assert!(f(None, Some("broker"), None).matches(&by_broker, now));
        assert!(!f(None, None, Some(1)).matches(&by_broker, now), "unknown age never counts as old");
        assert_eq!(show_age(age(&old, now)), "2h");
    }

    #[test]
    fn ages_parse_with_units() {
        assert_eq!(parse_age("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_age("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_age("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_age("2w"), Ok(Duration::from_secs(14 * 86_400)));
        let error = parse_age("3x").unwrap_err();
        assert!(error.starts_with("'3x' is not an age like 30s, 15m, 2h or 1d: "), "{error}");
        assert!(parse_age("h").is_err() && parse_age("").is_err());
    }
}
