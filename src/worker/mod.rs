//! The delivery loop: consume from the work queue, run each task, settle each delivery.
//!
//! This is the one place that acks, retries, dead-letters or leaves a delivery
//! unsettled. Prefetch equals the concurrency, and the loop never holds more deliveries
//! than it has task slots, so a slow task never starves another worker of messages.
//!
//! - `settle`: one delivery's fate (ack, delayed retry, dead letter, left for redelivery);
//! - `control`: cancelling running tasks (operator control messages, shutdown);
//! - `run_loop`: consuming, reconnecting after broker loss, and graceful shutdown.

mod control;
mod run_loop;
mod settle;

pub use control::{ControlAction, ControlMessage, TaskControls, TaskHandle};
pub use settle::{Settlement, attempt_of, settle};

use std::sync::Arc;

use crate::amqp::{AmqpError, AmqpSession, RetryQueues, TopologyNames};
use crate::config::ReliabilityConfig;
use crate::events::{EventOutbox, EventSink, EventSubject, EventType, OutboxBound};
use crate::pipeline::Runner;

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Tasks run at once; also the prefetch count.
    pub concurrency: u16,
    /// Stop taking deliveries after this many (`worker --once` is 1); `None` runs until shutdown.
    pub stop_after: Option<usize>,
    /// Consumer tag, visible in the management UI.
    pub consumer_tag: String,
    /// End the loop after this long with nothing running and nothing delivered.
    pub idle_timeout: Option<std::time::Duration>,
}

/// What the loop did, for the caller (tests, the demo, the exit log line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub acked: usize,
    pub dead_lettered: usize,
    /// Parked in a retry queue after a transient failure.
    pub retried: usize,
    /// Left for the broker to redeliver (stopped by shutdown, or a stale delivery).
    pub unsettled: usize,
    /// Times the connection or the consumer had to be re-established.
    pub reconnects: usize,
}

/// Everything a delivery needs, shared by the tasks the loop spawns.
pub struct Worker {
    pub session: AmqpSession,
    pub names: TopologyNames,
    pub runner: Arc<Runner>,
    /// The sink the runner and the settle path publish to: `outbox` as a trait object.
    pub events: Arc<dyn EventSink>,
    /// Parks the events the broker cannot take and publishes them once it can.
    pub outbox: EventOutbox,
    pub reliability: ReliabilityConfig,
    pub retry: RetryQueues,
    pub controls: TaskControls,
}

impl Worker {
    async fn runner_event(&self, event_type: EventType, data: serde_json::Value) {
        let subject = EventSubject {
            task_id: None,
            spec_name: None,
            runner_id: self.runner.settings.runner_id.clone(),
            attempt: 0,
        };
        // Runner events are keyed by runner and a start nonce: one per process lifetime.
        let event = subject.event(event_type, &std::process::id().to_string(), data);
        crate::events::publish_best_effort(self.events.as_ref(), &event).await;
    }
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Broker(#[from] AmqpError),
    #[error(transparent)]
    Assemble(#[from] crate::pipeline::AssembleError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(
        "the task timeout ({task_seconds} s) does not fit under the broker's consumer timeout \
         ({broker_seconds} s): the broker would close the channel mid-task; raise consumer_timeout \
         or lower default_timeout_seconds"
    )]
    TimeoutTooLong { task_seconds: u64, broker_seconds: u64 },
}

impl Worker {
    /// Connects, declares the topology (retry queues included) and assembles the
    /// runner, from configuration.
    pub async fn connect(
        config: &crate::config::RunnerConfig,
        secrets: crate::pipeline::RunnerSecrets,
        topology: TopologyNames,
    ) -> Result<Worker, StartError> {
        let (task_seconds, broker_seconds) =
            (config.default_timeout.as_secs(), config.amqp.consumer_timeout.as_secs());
        if task_seconds >= broker_seconds {
            return Err(StartError::TimeoutTooLong { task_seconds, broker_seconds });
        }
        let session = AmqpSession::connect(config.amqp.url.expose(), &config.runner_id).await?;
        session.declare(&topology).await?;
        let retry = RetryQueues {
            work_queue: topology.work_queue.clone(),
            delays: config.reliability.retry_delays.clone(),
        };
        retry.declare(&session).await?;
        let masker = secrets.masker(config);
        let broker_sink: Arc<dyn EventSink> = Arc::new(crate::amqp::AmqpEventSink::new(
            session.events_publisher.clone(),
            topology.events_exchange.clone(),
            masker,
        ));
        let outbox = EventOutbox::new(broker_sink, OutboxBound::default());
        let events: Arc<dyn EventSink> = Arc::new(outbox.clone());
        let runner = Runner::from_config(config, secrets, events.clone())?;
        Ok(Worker {
            session,
            names: topology,
            runner: Arc::new(runner),
            events,
            outbox,
            reliability: config.reliability.clone(),
            retry,
            controls: TaskControls::default(),
        })
    }
}
