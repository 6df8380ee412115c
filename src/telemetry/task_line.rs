//! The JSON line format: one flat object per event, with the fields of every span in
//! scope lifted to the top level next to the event's own.
//!
//! Inside a task that puts `task_id`, `spec_name`, `runner_id` and `attempt` on every
//! line (from [`task_span`]), so a log search for one task needs no knowledge of span
//! nesting. The stock formatter nests span fields under `span` and `spans[]` instead.
//! When an event and a span carry the same field, the event's value wins (it is the
//! more specific); the inner span wins over the outer one.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The span every line emitted while working on one task sits in. A field that is not
/// known (a message that is not a task) is left off the line rather than shown as a
/// placeholder.
pub fn task_span(
    task_id: Option<&str>,
    spec_name: Option<&str>,
    runner_id: &str,
    attempt: u32,
) -> tracing::Span {
    tracing::info_span!("task", task_id, spec_name, runner_id, attempt)
}

/// Formats each event as one flat JSON object; see the module docs. Used with
/// [`JsonFields`] as the field formatter, which stores each span's fields as a JSON
/// object.
pub struct FlatJsonLines;

impl<S, N> FormatEvent<S, N> for FlatJsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;

        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(timestamp));
        line.insert("level".into(), Value::String(metadata.level().to_string()));
        line.insert("target".into(), Value::String(metadata.target().to_string()));
        let mut innermost = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(fields)
                {
                    line.extend(span_fields);
                }
                innermost = Some(span.name());
            }
        }
        if let Some(name) = innermost {
            line.insert("span".into(), Value::String(name.to_string()));
        }
        let mut own = EventFields(Map::new());
        event.record(&mut own);
        line.extend(own.0);
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// An event's fields as typed JSON values: numbers and booleans stay numbers and
/// booleans.
struct EventFields(Map<String, Value>);

impl EventFields {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_string(), value);
    }
}

impl Visit for EventFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
    /// Reached by `message` (format arguments, whose `Debug` is the text itself) and by
    /// `%value` fields; the call sites keep `?value` (Rust debug text) out of events.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// Ensures the field formatter matches what [`FlatJsonLines`] parses.
pub fn span_fields() -> JsonFields {
    JsonFields::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(emit: impl FnOnce()) -> Vec<Value> {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .fmt_fields(span_fields())
            .event_format(FlatJsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn span_fields_sit_on_the_line_and_the_event_wins_a_clash() {
        let lines = lines_of(|| {
            let _task = task_span(Some("t-1"), Some("s.1"), "runner-a", 2).entered();
            let _step = tracing::info_span!("step", step = "push").entered();
            tracing::info!(step = "commit", count = 3_u64, ok = true, "branch pushed");
        });
        let line = &lines[0];
        assert_eq!(line["task_id"], "t-1");
        assert_eq!(line["spec_name"], "s.1");
        assert_eq!(line["runner_id"], "runner-a");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["step"], "commit");
        assert_eq!(line["count"], 3);
        assert_eq!(line["ok"], true);
        assert_eq!(line["message"], "branch pushed");
        assert_eq!(line["span"], "step");
        assert!(line.get("spans").is_none(), "{line}");
    }

    #[test]
    fn an_unknown_task_id_is_left_off_the_line() {
        let lines = lines_of(|| {
            let _task = task_span(None, None, "runner-a", 1).entered();
            tracing::warn!("invalid task message");
        });
        assert!(lines[0].get("task_id").is_none(), "{}", lines[0]);
        assert_eq!(lines[0]["runner_id"], "runner-a");
    }
}
