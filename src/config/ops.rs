//! The operations sections of the configuration: `http:` (health and metrics
//! endpoints) and `mirror:` (the Task Registry mirror), their raw file shapes, defaults
//! and checks. Kept apart from the worker's own sections so they can evolve alone.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::layer::Layered;
use super::values as v;
use super::{ConfigError, ConfigSource};

/// The HTTP surface: `/livez`, `/readyz`, `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpConfig {
    /// Address to serve on (`0.0.0.0:9090` in a pod); `None` serves nothing, which is
    /// right for `run`, the demo and tests.
    pub listen: Option<SocketAddr>,
}

/// The registry mirror's topology and pacing (`agent-runner mirror`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    /// The quorum queue bound to the events exchange.
    pub queue: String,
    /// Routing keys binding it to the events exchange.
    pub binding_keys: Vec<String>,
    /// Where events that can never apply go, with the reason.
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    /// Unacked events held (they are applied one at a time, in order).
    pub prefetch: u16,
    /// Longest wait between attempts while the Task Registry is down.
    pub retry_max_delay: Duration,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            queue: "task-registry.mirror".to_string(),
            binding_keys: vec!["task.#".to_string()],
            dead_letter_exchange: "task-registry.mirror.dlx".to_string(),
            dead_letter_queue: "task-registry.mirror.dlq".to_string(),
            prefetch: 32,
            retry_max_delay: Duration::from_secs(30),
        }
    }
}

/// `http:` in the file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// `host:port` to serve `/livez`, `/readyz` and `/metrics` on.
    pub listen: Option<String>,
}

/// `mirror:` in the file.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMirror {
    /// The mirror's queue on the events exchange.
    pub queue: Option<String>,
    /// Routing keys binding it to the events exchange.
    pub binding_keys: Option<Vec<String>>,
    /// Exchange for events that cannot be applied.
    pub dead_letter_exchange: Option<String>,
    /// Queue collecting them.
    pub dead_letter_queue: Option<String>,
    /// Unacked events held.
    pub prefetch: Option<u64>,
    /// Longest wait in seconds between attempts while the registry is down.
    pub retry_max_delay_seconds: Option<u64>,
}

/// A `host:port` socket address (an IP, not a name: it is bound, not resolved).
pub(crate) fn listen_address(text: &str) -> Result<Option<SocketAddr>, String> {
    text.trim()
        .parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| format!("expected an IP address and port such as 0.0.0.0:9090, got `{text}`"))
}

/// Lays the file's `http:` and `mirror:` over `l`.
pub(crate) fn apply_file(
    http: Option<RawHttp>,
    mirror: Option<RawMirror>,
    src: &ConfigSource,
    l: &mut Layered,
) -> Result<(), ConfigError> {
    let http = http.unwrap_or_default();
    l.set(src, "http.listen", http.listen, |s| listen_address(&s), |c| &mut c.http.listen)?;
    let m = mirror.unwrap_or_default();
    l.set(src, "mirror.queue", m.queue, |s| v::amqp_name(&s), |c| &mut c.mirror.queue)?;
    l.set(src, "mirror.binding_keys", m.binding_keys, v::binding_keys, |c| &mut c.mirror.binding_keys)?;
    l.set(
        src,
        "mirror.dead_letter_exchange",
        m.dead_letter_exchange,
        |s| v::amqp_name(&s),
        |c| &mut c.mirror.dead_letter_exchange,
    )?;
    l.set(
        src,
        "mirror.dead_letter_queue",
        m.dead_letter_queue,
        |s| v::amqp_name(&s),
        |c| &mut c.mirror.dead_letter_queue,
    )?;
    l.set(
        src,
        "mirror.prefetch",
        m.prefetch,
        |n| v::in_range(n, 1, u64::from(u16::MAX)),
        |c| &mut c.mirror.prefetch,
    )?;
    l.set(src, "mirror.retry_max_delay_seconds", m.retry_max_delay_seconds, v::seconds, |c| {
        &mut c.mirror.retry_max_delay
    })
}

/// `RUNNER_HTTP_LISTEN` (environment) → `http.listen`.
pub(crate) fn apply_env(env: &dyn Fn(&str) -> Option<String>, l: &mut Layered) -> Result<(), ConfigError> {
    let value = env("RUNNER_HTTP_LISTEN").filter(|s| !s.trim().is_empty());
    let origin = ConfigSource::Env("RUNNER_HTTP_LISTEN".to_string());
    l.set(&origin, "http.listen", value, |s| listen_address(&s), |c| &mut c.http.listen)
}

/// `--http-addr` (flag) → `http.listen`.
pub(crate) fn apply_flag(value: Option<String>, l: &mut Layered) -> Result<(), ConfigError> {
    l.set(
        &ConfigSource::Flag("--http-addr"),
        "http.listen",
        value,
        |s| listen_address(&s),
        |c| &mut c.http.listen,
    )
}
