//! `agent-runner mirror`: lifecycle events from the events exchange into the Task
//! Registry (DESIGN.md §4).
//!
//! One event at a time, in queue order (a task's `Running` must not overtake its `Done`):
//! parse, plan the registry calls ([`plan`]), make each call until the registry accepts
//! it, then ack. While the registry is unreachable or answers 5xx/429 the mirror keeps
//! retrying the same call with capped backoff and acks nothing, so an outage delays the
//! registry but loses nothing. An event that can never apply (malformed, or refused with
//! a 4xx) goes to the mirror's own dead-letter queue with the reason.
//!
//! Idempotence by event id: the mirror remembers the ids it applied ([`SeenEvents`]) and
//! acks a redelivered one without calling the registry again; each call also carries an
//! `Idempotency-Key` (`<event_id>:<call>`) so a registry can deduplicate what a restarted
//! mirror sends again, and a 409 Conflict counts as already recorded.

mod plan;
mod seen;

pub use plan::{MirroredEvent, Plan, PoisonEvent, RegistryCall, parse, plan};
pub use seen::SeenEvents;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::amqp::{AmqpError, AmqpSession, DeadLetterReason, InboundDelivery, MirrorTopology};
use crate::clients::{ClientError, TaskRegistryClient};
use crate::error::Classify;
use crate::http::Readiness;

/// How the mirror runs.
#[derive(Debug, Clone)]
pub struct MirrorSettings {
    /// Names this mirror in its connection, consumer tag and dead-letter headers.
    pub runner_id: String,
    /// Unacked events held; they are still applied one at a time, in order.
    pub prefetch: u16,
    /// First wait after a failed registry call; doubles up to `retry_max_delay`.
    pub retry_initial_delay: Duration,
    pub retry_max_delay: Duration,
    /// Applied event ids remembered for deduplication.
    pub remembered_events: usize,
}

impl Default for MirrorSettings {
    /// Prefetch 32 (pipelines the broker round trip; order is kept), waits from 1 s up
    /// to 30 s while the registry is down (a registry back up is noticed within 30 s),
    /// 100 000 ids remembered (a few MB; hours of events of a large fleet).
    fn default() -> Self {
        MirrorSettings {
            runner_id: "mirror".to_string(),
            prefetch: 32,
            retry_initial_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(30),
            remembered_events: 100_000,
        }
    }
}

/// What the mirror did, for the caller (tests, the exit log line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorReport {
    pub applied: usize,
    pub duplicates: usize,
    pub skipped: usize,
    pub dead_lettered: usize,
}

/// Why the mirror stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Broker(#[from] AmqpError),
    #[error("the broker cancelled the mirror's consumer on queue '{queue}'")]
    ConsumerCancelled { queue: String },
}

/// How one delivery ended.
enum Handled {
    Applied,
    Duplicate,
    Skipped,
    DeadLettered,
    /// Shutdown came while the registry was down: left unacked for redelivery.
    Interrupted,
}

/// The mirror: a broker session, its topology and a registry client.
pub struct Mirror {
    pub session: AmqpSession,
    pub topology: MirrorTopology,
    pub registry: TaskRegistryClient,
    pub settings: MirrorSettings,
    pub readiness: Readiness,
}

impl Mirror {
    /// Consumes until `shutdown` fires, or until `stop_after` events were handled.
    pub async fn run(
        &self,
        shutdown: CancellationToken,
        stop_after: Option<usize>,
    ) -> Result<MirrorReport, MirrorError> {
        self.session.declare_mirror(&self.topology).await?;
        let queue = &self.topology.queue;
        let mut consumer =
            self.session.consume(queue, self.settings.prefetch.max(1), &self.settings.runner_id).await?;
        self.readiness.set_ready();
        tracing::info!(queue = %queue, "mirroring events into the Task Registry");
        let mut seen = SeenEvents::new(self.settings.remembered_events);
        let mut report = MirrorReport::default();
        let mut handled = 0usize;
        let outcome = loop {
            if stop_after.is_some_and(|limit| handled >= limit) {
                break Ok(report);
            }
            let next = tokio::select! {
                () = shutdown.cancelled() => break Ok(report),
                next = consumer.next() => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => break Err(MirrorError::Broker(error)),
                None => break Err(MirrorError::ConsumerCancelled { queue: queue.clone() }),
            };
            match self.handle(&delivery, &mut seen, &shutdown).await? {
                Handled::Applied => report.applied += 1,
                Handled::Duplicate => report.duplicates += 1,
                Handled::Skipped => report.skipped += 1,
                Handled::DeadLettered => report.dead_lettered += 1,
                Handled::Interrupted => break Ok(report),
            }
            handled += 1;
        };
        self.readiness.set_not_ready(match &outcome {
            Ok(_) => "stopped",
            Err(_) => "broker connection lost",
        });
        outcome
    }

    async fn handle(
        &self,
        delivery: &InboundDelivery,
        seen: &mut SeenEvents,
        shutdown: &CancellationToken,
    ) -> Result<Handled, MirrorError> {
        let event = match parse(delivery.body()) {
            Ok(event) => event,
            Err(poison) => {
                return self.dead_letter(delivery, None, &poison.to_string(), "malformed_event").await;
            }
        };
        if seen.contains(&event.event_id) {
            delivery.ack().await?;
            crate::metrics::record_mirror_event("duplicate");
            return Ok(Handled::Duplicate);
        }
        let plan = match plan(&event) {
            Ok(Some(plan)) => plan,
            Ok(None) => {
                delivery.ack().await?;
                crate::metrics::record_mirror_event("skipped");
                return Ok(Handled::Skipped);
            }
            Err(poison) => {
                return self
                    .dead_letter(delivery, Some(&event), &poison.to_string(), "malformed_event")
                    .await;
            }
        };
        for call in &plan.calls {
            match self.apply(&plan.task_id, &event.event_id, call, shutdown).await {
                Applied::Yes => {}
                Applied::Interrupted => return Ok(Handled::Interrupted),
                Applied::Refused(error) => {
                    let reason = format!("the Task Registry refused it: {error}");
                    return self.dead_letter(delivery, Some(&event), &reason, "registry_refused").await;
                }
            }
        }
        delivery.ack().await?;
        seen.insert(&event.event_id);
        crate::metrics::record_mirror_event("applied");
        if let Ok(at) = chrono::DateTime::parse_from_rfc3339(&event.occurred_at) {
            let lag = chrono::Utc::now().signed_duration_since(at);
            crate::metrics::set_mirror_lag(lag.num_milliseconds() as f64 / 1000.0);
        }
        Ok(Handled::Applied)
    }
}

/// How one registry call ended.
enum Applied {
    Yes,
    Interrupted,
    Refused(ClientError),
}

impl RegistryCall {
    /// Makes this call of the event `event_id` once, keyed `<event_id>:<call>` so the
    /// registry can deduplicate a repeated one (a redelivered event, a retried call).
    pub async fn send(
        &self,
        registry: &TaskRegistryClient,
        task_id: &str,
        event_id: &str,
    ) -> Result<(), ClientError> {
        let key = format!("{event_id}:{}", self.name());
        match self {
            RegistryCall::Status(update) => registry.update_status(task_id, update, &key).await,
            RegistryCall::Event(record) => registry.add_event(task_id, record, &key).await,
            RegistryCall::Artifact(record) => registry.add_artifact(task_id, record, &key).await,
        }
    }
}

impl Mirror {
    /// Makes one call until the registry accepts it, refuses it for good, or shutdown.
    async fn apply(
        &self,
        task_id: &str,
        event_id: &str,
        call: &RegistryCall,
        shutdown: &CancellationToken,
    ) -> Applied {
        let mut delay = self.settings.retry_initial_delay;
        loop {
            let error = match call.send(&self.registry, task_id, event_id).await {
                Ok(()) => return Applied::Yes,
                // The registry already has it (it deduplicated on the idempotency key).
                Err(error) if error.status() == Some(409) => return Applied::Yes,
                Err(error) if !error.is_transient() => return Applied::Refused(error),
                Err(error) => error,
            };
            tracing::warn!(%error, task_id, event_id, delay_ms = delay.as_millis() as u64, "Task Registry unavailable; will retry");
            tokio::select! {
                () = shutdown.cancelled() => return Applied::Interrupted,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(self.settings.retry_max_delay);
        }
    }

    async fn dead_letter(
        &self,
        delivery: &InboundDelivery,
        event: Option<&MirroredEvent>,
        reason: &str,
        kind: &'static str,
    ) -> Result<Handled, MirrorError> {
        tracing::warn!(reason, kind, "event cannot be applied; dead-lettering it");
        let attempts = delivery.headers().get("x-delivery-count").and_then(|v| v.as_int()).unwrap_or(0);
        let reason = DeadLetterReason {
            kind: kind.to_string(),
            step: "mirror".to_string(),
            message: reason.to_string(),
            transient: false,
            attempts: u32::try_from(attempts).unwrap_or(0).saturating_add(1),
            runner_id: self.settings.runner_id.clone(),
            task_id: event.and_then(|e| e.task_id.clone()),
            spec_name: event.and_then(|e| e.spec_name.clone()),
        };
        delivery.dead_letter(&self.session.publisher, &self.topology.dead_letter_exchange, &reason).await?;
        crate::metrics::record_mirror_event("dead_lettered");
        crate::metrics::record_dead_letter(kind);
        Ok(Handled::DeadLettered)
    }
}
