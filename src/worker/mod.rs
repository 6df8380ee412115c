//! The delivery loop: consume from the work queue, run each task, settle each delivery.
//!
//! This is the one place that acks, dead-letters or leaves a delivery unsettled.
//! Prefetch equals the concurrency, and the loop never holds more deliveries than it has
//! task slots, so a slow task never starves another worker of messages.

mod settle;

pub use settle::{Settlement, settle};

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::amqp::{AmqpError, AmqpSession, InboundDelivery, TopologyNames};
use crate::events::{EventSink, EventSubject, EventType};
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
}

/// What the loop did, for the caller (tests, the demo, the exit log line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub acked: usize,
    pub dead_lettered: usize,
    pub unsettled: usize,
}

/// Everything a delivery needs, shared by the tasks the loop spawns.
pub struct Worker {
    pub session: AmqpSession,
    pub names: TopologyNames,
    pub runner: Arc<Runner>,
    pub events: Arc<dyn EventSink>,
}

impl Worker {
    /// Consumes until `shutdown` fires (or `stop_after` deliveries were handled), then
    /// waits for the running tasks to settle.
    pub async fn run(
        self: Arc<Self>,
        options: WorkerOptions,
        shutdown: CancellationToken,
    ) -> Result<WorkerReport, AmqpError> {
        let concurrency = options.concurrency.max(1);
        let mut consumer =
            self.session.consume(&self.names.work_queue, concurrency, &options.consumer_tag).await?;
        self.runner_event(EventType::RunnerStarted, serde_json::json!({ "concurrency": concurrency })).await;
        tracing::info!(queue = %self.names.work_queue, concurrency, "consuming");
        let readiness = crate::http::Readiness::process();
        readiness.set_ready();

        let mut running: JoinSet<Settlement> = JoinSet::new();
        let mut received = 0usize;
        let mut report = WorkerReport::default();
        let wants_more = |received: usize| options.stop_after.is_none_or(|limit| received < limit);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(joined) = running.join_next(), if !running.is_empty() => {
                    count(&mut report, joined);
                    if !wants_more(received) && running.is_empty() {
                        break;
                    }
                }
                next = consumer.next(), if running.len() < usize::from(concurrency) && wants_more(received) => {
                    match next {
                        Some(Ok(delivery)) => {
                            received += 1;
                            let worker = self.clone();
                            let cancel = shutdown.child_token();
                            running.spawn(async move { worker.handle(delivery, cancel).await });
                        }
                        Some(Err(error)) => {
                            tracing::error!(%error, "consumer failed");
                            break;
                        }
                        None => {
                            tracing::warn!("the broker cancelled the consumer");
                            break;
                        }
                    }
                }
            }
        }
        readiness.set_not_ready("not consuming: stopped or lost the broker connection");
        // Let running tasks finish; draining with a deadline comes with graceful shutdown.
        while let Some(joined) = running.join_next().await {
            count(&mut report, joined);
        }
        self.runner_event(
            EventType::RunnerStopping,
            serde_json::json!({
                "acked": report.acked, "dead_lettered": report.dead_lettered
            }),
        )
        .await;
        Ok(report)
    }

    async fn handle(&self, delivery: InboundDelivery, cancel: CancellationToken) -> Settlement {
        let _in_flight = crate::metrics::InFlight::start();
        let settlement = settle(self, delivery, &cancel).await;
        crate::metrics::record_task_outcome(match settlement {
            Settlement::Acked => crate::metrics::TaskOutcome::Completed,
            Settlement::DeadLettered => crate::metrics::TaskOutcome::Failed,
            Settlement::Unsettled => crate::metrics::TaskOutcome::Unsettled,
        });
        settlement
    }

    async fn runner_event(&self, event_type: EventType, data: serde_json::Value) {
        let subject = EventSubject {
            task_id: None,
            spec_name: None,
            runner_id: self.runner.settings.runner_id.clone(),
            attempt: 0,
        };
        // Runner events are keyed by runner and a start nonce: one per process lifetime.
        let event = subject.event(event_type, &std::process::id().to_string(), data);
        if let Err(error) = self.events.publish(&event).await {
            tracing::warn!(%error, "runner event not published");
        }
    }
}

fn count(report: &mut WorkerReport, joined: Result<Settlement, tokio::task::JoinError>) {
    match joined {
        Ok(Settlement::Acked) => report.acked += 1,
        Ok(Settlement::DeadLettered) => report.dead_lettered += 1,
        Ok(Settlement::Unsettled) => report.unsettled += 1,
        Err(error) => {
            // A panicking task leaves its delivery unacked; the broker redelivers it, and
            // the delivery limit dead-letters it if it panics every time.
            tracing::error!(%error, "task panicked");
            report.unsettled += 1;
        }
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
    /// Connects, declares the topology and assembles the runner, from configuration.
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
        let masker = crate::secrets::Masker::new([secrets.git_token.as_ref(), secrets.llm_api_key.as_ref()]);
        let events: Arc<dyn EventSink> = Arc::new(crate::amqp::AmqpEventSink::new(
            session.publisher.clone(),
            topology.events_exchange.clone(),
            masker,
        ));
        let runner = Runner::from_config(config, secrets, events.clone())?;
        Ok(Worker { session, names: topology, runner: Arc::new(runner), events })
    }
}
