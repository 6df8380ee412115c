//! A plain view of AMQP headers, so the rest of the worker never touches lapin types.

use std::collections::BTreeMap;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// A header value as the worker reads and writes them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum HeaderValue {
    Text(String),
    Int(i64),
    Bool(bool),
    /// Anything else (tables, arrays such as `x-death`), rendered as text for display.
    Other(String),
}

impl HeaderValue {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            HeaderValue::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            HeaderValue::Int(i) => Some(*i),
            HeaderValue::Text(s) => s.parse().ok(),
            _ => None,
        }
    }
}

/// Message headers by name.
pub type HeaderMap = BTreeMap<String, HeaderValue>;

pub(crate) fn to_field_table(headers: &HeaderMap) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        let value = match value {
            HeaderValue::Text(s) | HeaderValue::Other(s) => {
                AMQPValue::LongString(LongString::from(s.as_str()))
            }
            HeaderValue::Int(i) => AMQPValue::LongLongInt(*i),
            HeaderValue::Bool(b) => AMQPValue::Boolean(*b),
        };
        table.insert(ShortString::from(name.as_str()), value);
    }
    table
}

pub(crate) fn from_field_table(table: Option<&FieldTable>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in table.map(FieldTable::inner).into_iter().flatten() {
        headers.insert(name.as_str().to_string(), from_amqp_value(value));
    }
    headers
}

fn from_amqp_value(value: &AMQPValue) -> HeaderValue {
    match value {
        AMQPValue::LongString(s) => HeaderValue::Text(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => HeaderValue::Text(s.as_str().to_string()),
        AMQPValue::Boolean(b) => HeaderValue::Bool(*b),
        AMQPValue::ShortShortInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongLongInt(i) => HeaderValue::Int(*i),
        other => HeaderValue::Other(format!("{other:?}")),
    }
}
