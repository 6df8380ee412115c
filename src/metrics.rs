//! Process metrics in the Prometheus text format, served on `/metrics` (see `http`).
//!
//! A small hand-rolled registry rather than a metrics crate: the set of metrics is
//! fixed and known at compile time ([`FAMILIES`]), every label value comes from a closed
//! set (step names, outcomes, failure kinds — never a task id), and the text format is a
//! few lines to write. That keeps one dependency and its build time out, and makes the
//! bounded-labels rule something the types enforce: callers pass enums or `&'static str`.
//!
//! Recording goes to one process-wide registry ([`global`]): a worker process is one
//! worker, and the recording points (the pipeline's step timer, the delivery loop's
//! settle points, the REST clients' retry loops) would otherwise need a handle threaded
//! through code that has no other reason to know about metrics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// What kind of series a family holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: its name, help text, kind and label names.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub labels: &'static [&'static str],
}

/// Step-duration buckets in seconds: steps run from milliseconds (slot, commit) to tens
/// of minutes (a slow test suite); the task timeout defaults to 30 minutes.
const STEP_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// Tasks settled, by outcome (`completed`, `failed`, `unsettled`).
pub const TASKS: Family = Family {
    name: "agent_runner_tasks_total",
    help: "Task deliveries settled, by outcome: completed (acked), failed (dead-lettered), unsettled (left for redelivery)",
    kind: MetricKind::Counter,
    labels: &["outcome"],
};
/// Tasks running now.
pub const IN_FLIGHT: Family = Family {
    name: "agent_runner_tasks_in_flight",
    help: "Tasks being run by this process now",
    kind: MetricKind::Gauge,
    labels: &[],
};
/// Step durations.
pub const STEP_DURATION: Family = Family {
    name: "agent_runner_step_duration_seconds",
    help: "Duration of pipeline steps, by step and result (ok, error)",
    kind: MetricKind::Histogram,
    labels: &["step", "result"],
};
/// Retries of outside calls.
pub const RETRIES: Family = Family {
    name: "agent_runner_retries_total",
    help: "Retried calls to outside services and retried tasks, by operation",
    kind: MetricKind::Counter,
    labels: &["operation"],
};
/// Dead letters by failure kind.
pub const DEAD_LETTERS: Family = Family {
    name: "agent_runner_dead_letters_total",
    help: "Messages dead-lettered, by failure kind",
    kind: MetricKind::Counter,
    labels: &["kind"],
};
/// LLM tokens.
pub const LLM_TOKENS: Family = Family {
    name: "agent_runner_llm_tokens_total",
    help: "LLM tokens used, by direction (prompt, completion)",
    kind: MetricKind::Counter,
    labels: &["direction"],
};
/// LLM cost.
pub const LLM_COST: Family = Family {
    name: "agent_runner_llm_cost_usd_total",
    help: "LLM cost in US dollars, as reported by the implementation engine",
    kind: MetricKind::Counter,
    labels: &[],
};
/// Broker reconnects.
pub const BROKER_RECONNECTS: Family = Family {
    name: "agent_runner_broker_reconnects_total",
    help: "Connections to the broker re-established after a loss",
    kind: MetricKind::Counter,
    labels: &[],
};
/// Mirror events by outcome.
pub const MIRROR_EVENTS: Family = Family {
    name: "agent_runner_mirror_events_total",
    help: "Events handled by the registry mirror, by outcome (applied, duplicate, dead_lettered)",
    kind: MetricKind::Counter,
    labels: &["outcome"],
};
/// Mirror lag.
pub const MIRROR_LAG: Family = Family {
    name: "agent_runner_mirror_lag_seconds",
    help: "Age of the last event the mirror applied to the Task Registry, when it was applied",
    kind: MetricKind::Gauge,
    labels: &[],
};
/// Events waiting in the worker's outbox.
pub const EVENT_OUTBOX_DEPTH: Family = Family {
    name: "agent_runner_event_outbox_depth",
    help: "Lifecycle events parked in the outbox, waiting for the broker to take them",
    kind: MetricKind::Gauge,
    labels: &[],
};
/// Events the outbox dropped.
pub const EVENT_OUTBOX_DROPPED: Family = Family {
    name: "agent_runner_event_outbox_dropped_total",
    help: "Lifecycle events dropped because the outbox was full",
    kind: MetricKind::Counter,
    labels: &[],
};

/// Every family, in the order `/metrics` lists them.
pub const FAMILIES: &[&Family] = &[
    &TASKS,
    &IN_FLIGHT,
    &STEP_DURATION,
    &RETRIES,
    &DEAD_LETTERS,
    &LLM_TOKENS,
    &LLM_COST,
    &BROKER_RECONNECTS,
    &MIRROR_EVENTS,
    &MIRROR_LAG,
    &EVENT_OUTBOX_DEPTH,
    &EVENT_OUTBOX_DROPPED,
];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Cumulative counts per bucket of [`STEP_BUCKETS`].
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

type SeriesKey = (&'static str, Vec<String>);

/// A registry of series. Use [`global`] in the program; tests may make their own.
#[derive(Debug, Default)]
pub struct Metrics {
    values: Mutex<BTreeMap<SeriesKey, f64>>,
    histograms: Mutex<BTreeMap<SeriesKey, Histogram>>,
}

/// The process-wide registry `/metrics` serves.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(Metrics::default)
}

fn key(family: &Family, labels: &[&str]) -> SeriesKey {
    debug_assert_eq!(family.labels.len(), labels.len(), "label count of {}", family.name);
    (family.name, labels.iter().map(|l| l.to_string()).collect())
}

impl Metrics {
    /// Adds `by` to a counter or gauge.
    pub fn add(&self, family: &Family, labels: &[&str], by: f64) {
        if let Ok(mut values) = self.values.lock() {
            *values.entry(key(family, labels)).or_insert(0.0) += by;
        }
    }

    /// Sets a gauge.
    pub fn set(&self, family: &Family, labels: &[&str], value: f64) {
        if let Ok(mut values) = self.values.lock() {
            values.insert(key(family, labels), value);
        }
    }

    /// The current value of a counter or gauge series (0 when never touched).
    pub fn value(&self, family: &Family, labels: &[&str]) -> f64 {
        self.values.lock().ok().and_then(|v| v.get(&key(family, labels)).copied()).unwrap_or(0.0)
    }

    /// Records one observation in a histogram.
    pub fn observe(&self, family: &Family, labels: &[&str], value: f64) {
        let Ok(mut histograms) = self.histograms.lock() else { return };
        let histogram = histograms
            .entry(key(family, labels))
            .or_insert_with(|| Histogram { buckets: vec![0; STEP_BUCKETS.len()], ..Histogram::default() });
        for (count, bound) in histogram.buckets.iter_mut().zip(STEP_BUCKETS) {
            if value <= *bound {
                *count += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += value;
    }

    /// The registry in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let values = self.values.lock().map(|v| v.clone()).unwrap_or_default();
        let histograms = self.histograms.lock().map(|h| h.clone()).unwrap_or_default();
        let mut out = String::new();
        for family in FAMILIES {
            let kind = match family.kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
                MetricKind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} {kind}", family.name);
            for ((name, labels), value) in values.iter().filter(|((n, _), _)| *n == family.name) {
                let _ = writeln!(out, "{name}{} {}", label_text(family.labels, labels, None), number(*value));
            }
            for ((name, labels), h) in histograms.iter().filter(|((n, _), _)| *n == family.name) {
                for (bound, count) in STEP_BUCKETS.iter().zip(&h.buckets) {
                    let le = number(*bound);
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {count}",
                        label_text(family.labels, labels, Some(&le))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {}",
                    label_text(family.labels, labels, Some("+Inf")),
                    h.count
                );
                let _ =
                    writeln!(out, "{name}_sum{} {}", label_text(family.labels, labels, None), number(h.sum));
                let _ = writeln!(out, "{name}_count{} {}", label_text(family.labels, labels, None), h.count);
            }
        }
        out
    }
}

fn label_text(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut pairs: Vec<String> =
        names.iter().zip(values).map(|(name, value)| format!("{name}=\"{}\"", escape(value))).collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() { String::new() } else { format!("{{{}}}", pairs.join(",")) }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { value.to_string() }
}

mod record;

pub use record::{
    InFlight, TaskOutcome, record_broker_reconnect, record_dead_letter, record_event_outbox_dropped,
    record_llm_cost, record_llm_usage, record_mirror_event, record_retry, record_step, record_task_outcome,
    set_event_outbox_depth, set_mirror_lag,
};
