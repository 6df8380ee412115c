//! The worker's metrics in the Prometheus text format, served on `/metrics` (see `http`).
//!
//! A small hand-rolled registry rather than a metrics crate: the set of metrics is
//! fixed and known at compile time ([`FAMILIES`]), every label value comes from a closed
//! set (step names, outcomes, failure kinds — never a task id), and the text format is a
//! few lines to write (`render`). Each family declares its closed label sets, and every
//! combination of them is listed from the first scrape, at zero: an idle worker shows
//! `agent_runner_tasks_in_flight 0`, and a rate over a series that never moved is 0, not
//! absent. The standard `process_*` series are read at scrape time (`process`).
//!
//! Recording goes to one process-wide registry ([`global`]): a worker process is one
//! worker, and the recording points (the pipeline's step timer, the delivery loop's
//! settle points, the REST clients' retry loops) would otherwise need a handle threaded
//! through code that has no other reason to know about metrics.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

/// What kind of series a family holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricKind {
    Counter,
    Gauge,
    /// With its bucket upper bounds in the family's unit (seconds, bytes), ascending
    /// (`+Inf` is implied).
    Histogram(&'static [f64]),
}

/// One metric family: its name, help text, kind, label names and, per label, the closed
/// set of values it takes (every combination is listed at zero until recorded).
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub labels: &'static [&'static str],
    /// One closed value set per entry of `labels`, in the same order.
    pub label_values: &'static [&'static [&'static str]],
}

/// Step-duration buckets in seconds: steps run from milliseconds (slot, commit) to tens
/// of minutes (a slow test suite); the task timeout defaults to 30 minutes.
const STEP_BUCKETS: &[f64] =
    &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// Whole-task buckets in seconds: a task is at least a clone, a model call and a test run
/// (seconds), and at most the broker's consumer timeout (two hours in the deployment).
const TASK_BUCKETS: &[f64] =
    &[1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0];

/// Queue-wait buckets in seconds: sub-second while workers keep up, minutes to hours when
/// the fleet is scaled in or a retry delay (up to the longest `retry_delays`) is included.
const QUEUE_WAIT_BUCKETS: &[f64] =
    &[0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0];

/// Task CPU-time buckets in seconds: from a lint that takes a few milliseconds of CPU to
/// test suites busy on every core for the whole task timeout.
const TASK_CPU_BUCKETS: &[f64] = &[0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0];

/// Task peak-memory buckets in bytes, 16 MiB to 16 GiB by doubling: a shell step to a
/// large build (`max_memory_mb` caps it per command).
const TASK_MEMORY_BUCKETS: &[f64] = &[
    16_777_216.0,
    33_554_432.0,
    67_108_864.0,
    134_217_728.0,
    268_435_456.0,
    536_870_912.0,
    1_073_741_824.0,
    2_147_483_648.0,
    4_294_967_296.0,
    8_589_934_592.0,
    17_179_869_184.0,
];

/// The execution modes that run commands (`Isolation::mode_name`, and `kubernetes`: a
/// task pod's commands, as the pod measured them).
pub(crate) const EXECUTION_MODES: &[&str] = &["local-process", "sandbox", "docker", "kubernetes"];

/// How a task delivery was settled (`TaskOutcome`'s labels).
const TASK_OUTCOMES: &[&str] = &["completed", "failed", "retried", "unsettled"];
/// The timed steps; any other name is recorded as `other` (see `record_step`).
pub(crate) const STEPS: &[&str] =
    &["slot", "workspace", "implement", "test", "commit", "push", "upload", "other"];
/// `ok`: the step did its work and it held; `failed`: it ran to its end and found the work
/// wanting (tests that failed); `error`: the step itself could not complete.
const STEP_RESULTS: &[&str] = &["ok", "failed", "error"];
/// The services whose calls are retried (`clients::Service::name`).
const RETRY_OPERATIONS: &[&str] = &["task_registry", "repo_pool", "artifact_store"];
/// `FailureKind` wire names, then the mirror's own dead-letter reasons.
const DEAD_LETTER_KINDS: &[&str] = &[
    "validation",
    "workspace_preparation",
    "implementation",
    "test_execution",
    "push",
    "artifact_upload",
    "timeout",
    "budget_exhausted",
    "cancelled",
    "crashed",
    "secret_detected",
    "infrastructure",
    "malformed_event",
    "registry_refused",
];
const MIRROR_OUTCOMES: &[&str] = &["applied", "duplicate", "skipped", "dead_lettered"];

/// Tasks settled, by outcome.
pub const TASKS: Family = Family {
    name: "agent_runner_tasks_total",
    help: "Task deliveries settled, by outcome: completed (acked), failed (dead-lettered), retried (parked in a retry queue), unsettled (left for redelivery)",
    kind: MetricKind::Counter,
    labels: &["outcome"],
    label_values: &[TASK_OUTCOMES],
};
/// Tasks running now.
pub const IN_FLIGHT: Family = Family {
    name: "agent_runner_tasks_in_flight",
    help: "Tasks being run by this process now",
    kind: MetricKind::Gauge,
    labels: &[],
    label_values: &[],
};
/// Step durations.
pub const STEP_DURATION: Family = Family {
    name: "agent_runner_step_duration_seconds",
    help: "Duration of pipeline steps, by step and result (ok; failed: the tests ran and failed; error: the step could not complete)",
    kind: MetricKind::Histogram(STEP_BUCKETS),
    labels: &["step", "result"],
    label_values: &[STEPS, STEP_RESULTS],
};
/// End-to-end duration of a delivery on this worker.
pub const TASK_DURATION: Family = Family {
    name: "agent_runner_task_duration_seconds",
    help: "Duration of a task delivery on this worker, from receipt to settlement (validation, every step, upload, ack or dead letter), by outcome",
    kind: MetricKind::Histogram(TASK_BUCKETS),
    labels: &["outcome"],
    label_values: &[TASK_OUTCOMES],
};
/// Time in the queue before a worker took the message.
pub const QUEUE_WAIT: Family = Family {
    name: "agent_runner_queue_wait_seconds",
    help: "Time from a task message's publication (timestamp_in_ms header, else the AMQP timestamp property) to its receipt by this worker; messages with neither are not observed",
    kind: MetricKind::Histogram(QUEUE_WAIT_BUCKETS),
    labels: &[],
    label_values: &[],
};
/// CPU time of each task's own commands.
pub const TASK_CPU: Family = Family {
    name: "agent_runner_task_cpu_seconds",
    help: "CPU time (user plus system) of a task run's own commands (its playbook steps, also through the engine's run_tests tool), per run that ran a command, by execution mode",
    kind: MetricKind::Histogram(TASK_CPU_BUCKETS),
    labels: &["mode"],
    label_values: &[EXECUTION_MODES],
};
/// Peak memory of each task's largest command.
pub const TASK_MEMORY: Family = Family {
    name: "agent_runner_task_peak_memory_bytes",
    help: "Peak memory of a task run's largest command (its processes' resident memory together, sampled; a container's peak memory in docker mode), per run that ran a command, by execution mode",
    kind: MetricKind::Histogram(TASK_MEMORY_BUCKETS),
    labels: &["mode"],
    label_values: &[EXECUTION_MODES],
};
/// Retries of outside calls.
pub const RETRIES: Family = Family {
    name: "agent_runner_retries_total",
    help: "Retried calls to outside services, by operation",
    kind: MetricKind::Counter,
    labels: &["operation"],
    label_values: &[RETRY_OPERATIONS],
};
/// Dead letters by failure kind.
pub const DEAD_LETTERS: Family = Family {
    name: "agent_runner_dead_letters_total",
    help: "Messages dead-lettered, by failure kind",
    kind: MetricKind::Counter,
    labels: &["kind"],
    label_values: &[DEAD_LETTER_KINDS],
};
/// LLM tokens.
pub const LLM_TOKENS: Family = Family {
    name: "agent_runner_llm_tokens_total",
    help: "LLM tokens used, by direction (prompt, completion)",
    kind: MetricKind::Counter,
    labels: &["direction"],
    label_values: &[&["prompt", "completion"]],
};
/// LLM cost.
pub const LLM_COST: Family = Family {
    name: "agent_runner_llm_cost_usd_total",
    help: "LLM cost in US dollars, as reported by the implementation engine",
    kind: MetricKind::Counter,
    labels: &[],
    label_values: &[],
};
/// Broker reconnects.
pub const BROKER_RECONNECTS: Family = Family {
    name: "agent_runner_broker_reconnects_total",
    help: "Connections to the broker re-established after a loss",
    kind: MetricKind::Counter,
    labels: &[],
    label_values: &[],
};
/// Mirror events by outcome.
pub const MIRROR_EVENTS: Family = Family {
    name: "agent_runner_mirror_events_total",
    help: "Events handled by the registry mirror, by outcome (applied, duplicate, skipped, dead_lettered)",
    kind: MetricKind::Counter,
    labels: &["outcome"],
    label_values: &[MIRROR_OUTCOMES],
};
/// Mirror lag.
pub const MIRROR_LAG: Family = Family {
    name: "agent_runner_mirror_lag_seconds",
    help: "Age of the last event the mirror applied to the Task Registry, when it was applied",
    kind: MetricKind::Gauge,
    labels: &[],
    label_values: &[],
};
/// Which build this process runs: always 1, the information is in the labels.
pub const BUILD_INFO: Family = Family {
    name: "agent_runner_build_info",
    help: "The build this process runs (always 1): package version, git revision, target triple",
    kind: MetricKind::Gauge,
    labels: &["version", "revision", "target"],
    label_values: &[&[BUILD_VERSION], &[BUILD_REVISION], &[BUILD_TARGET]],
};

/// Events waiting in the worker's outbox.
pub const EVENT_OUTBOX_DEPTH: Family = Family {
    name: "agent_runner_event_outbox_depth",
    help: "Lifecycle events parked in the outbox, waiting for the broker to take them",
    kind: MetricKind::Gauge,
    labels: &[],
    label_values: &[],
};
/// Events the outbox dropped.
pub const EVENT_OUTBOX_DROPPED: Family = Family {
    name: "agent_runner_event_outbox_dropped_total",
    help: "Lifecycle events dropped because the outbox was full",
    kind: MetricKind::Counter,
    labels: &[],
    label_values: &[],
};

/// Full walks of a task workspace by the worker itself (not by the task's commands).
pub const WORKTREE_SCANS: Family = Family {
    name: "agent_runner_worktree_scans_total",
    help: "Walks of a whole task workspace made by the worker (cleaning, status, chown), for its own cost per task",
    kind: MetricKind::Counter,
    labels: &[],
    label_values: &[],
};

/// The package version (`Cargo.toml`).
pub const BUILD_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision the binary was built from (`build.rs`: short hash, `-dirty` when the
/// tree had uncommitted changes, `unknown` outside a checkout).
pub const BUILD_REVISION: &str = env!("AGENT_RUNNER_REVISION");
/// The target triple the binary was built for.
pub const BUILD_TARGET: &str = env!("AGENT_RUNNER_TARGET");

/// Every family, in the order `/metrics` lists them.
pub const FAMILIES: &[&Family] = &[
    &TASKS,
    &IN_FLIGHT,
    &STEP_DURATION,
    &TASK_DURATION,
    &QUEUE_WAIT,
    &TASK_CPU,
    &TASK_MEMORY,
    &RETRIES,
    &DEAD_LETTERS,
    &LLM_TOKENS,
    &LLM_COST,
    &BROKER_RECONNECTS,
    &MIRROR_EVENTS,
    &MIRROR_LAG,
    &EVENT_OUTBOX_DEPTH,
    &EVENT_OUTBOX_DROPPED,
    &WORKTREE_SCANS,
    &BUILD_INFO,
];

#[derive(Debug, Clone)]
struct Histogram {
    /// The family's bucket upper bounds.
    bounds: &'static [f64],
    /// Cumulative counts per bucket of `bounds`.
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    fn empty(bounds: &'static [f64]) -> Self {
        Histogram { bounds, buckets: vec![0; bounds.len()], count: 0, sum: 0.0 }
    }
}

type SeriesKey = (&'static str, Vec<String>);

/// A registry of series, every family's closed label combinations present at zero from
/// the start. Use [`global`] in the program; tests may make their own.
#[derive(Debug)]
pub struct Metrics {
    values: Mutex<BTreeMap<SeriesKey, f64>>,
    histograms: Mutex<BTreeMap<SeriesKey, Histogram>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut values = BTreeMap::new();
        let mut histograms = BTreeMap::new();
        for family in FAMILIES {
            for labels in label_combinations(family) {
                let key = (family.name, labels);
                match family.kind {
                    MetricKind::Counter | MetricKind::Gauge => {
                        values.insert(key, 0.0);
                    }
                    MetricKind::Histogram(bounds) => {
                        histograms.insert(key, Histogram::empty(bounds));
                    }
                }
            }
        }
        Metrics { values: Mutex::new(values), histograms: Mutex::new(histograms) }
    }
}

/// Every combination of `family`'s closed label sets (one empty combination when it has
/// no labels).
fn label_combinations(family: &Family) -> Vec<Vec<String>> {
    family.label_values.iter().fold(vec![Vec::new()], |combinations, values| {
        combinations
            .iter()
            .flat_map(|prefix| {
                values.iter().map(move |value| {
                    let mut combination = prefix.clone();
                    combination.push((*value).to_string());
                    combination
                })
            })
            .collect()
    })
}

/// The process-wide registry `/metrics` serves.
pub fn global() -> &'static Metrics {
    static GLOBAL: OnceLock<Metrics> = OnceLock::new();
    GLOBAL.get_or_init(|| {
        let metrics = Metrics::default();
        metrics.set(&BUILD_INFO, &[BUILD_VERSION, BUILD_REVISION, BUILD_TARGET], 1.0);
        metrics
    })
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

    /// Records one observation in a histogram family (anything else is ignored).
    pub fn observe(&self, family: &Family, labels: &[&str], value: f64) {
        let MetricKind::Histogram(bounds) = family.kind else { return };
        let Ok(mut histograms) = self.histograms.lock() else { return };
        let histogram = histograms.entry(key(family, labels)).or_insert_with(|| Histogram::empty(bounds));
        for (count, bound) in histogram.buckets.iter_mut().zip(histogram.bounds) {
            if value <= *bound {
                *count += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += value;
    }
}

mod process;
mod record;
mod render;

pub use record::{
    InFlight, StepResult, TaskOutcome, record_broker_reconnect, record_dead_letter,
    record_event_outbox_dropped, record_llm_cost, record_llm_usage, record_mirror_event, record_queue_wait,
    record_retry, record_step, record_task_duration, record_task_outcome, record_task_usage,
    record_worktree_scan, set_event_outbox_depth, set_mirror_lag,
};
