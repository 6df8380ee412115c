//! Declaring the topology of DESIGN.md §2, idempotently, at start.
//!
//! Declarations with the same arguments are no-ops on the broker, so every worker
//! declares everything it relies on; a mismatch (a queue declared elsewhere with other
//! arguments) fails loudly with the broker's PRECONDITION_FAILED rather than running
//! against a queue that would lose dead letters.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::AmqpError;

/// The names of everything the worker declares; all configurable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyNames {
    /// Topic exchange the Dispatcher publishes tasks to (`task.<skill>`).
    pub task_exchange: String,
    /// The quorum work queue this worker consumes.
    pub work_queue: String,
    /// Routing keys binding the work queue to the task exchange.
    pub binding_keys: Vec<String>,
    /// Exchange that receives tasks that did not complete.
    pub dead_letter_exchange: String,
    /// Quorum queue bound to the dead-letter exchange; operators inspect and replay it.
    pub dead_letter_queue: String,
    /// Topic exchange for lifecycle events.
    pub events_exchange: String,
    /// Exchange for operator commands (cancellation).
    pub control_exchange: String,
    /// Deliveries after which the broker dead-letters a message on its own: the safety
    /// net for a message that crashes the worker every time it is processed.
    pub delivery_limit: u32,
}

/// Declares exchanges, queues and bindings. Safe to call from every worker, every start.
pub async fn declare_topology(channel: &Channel, names: &TopologyNames) -> Result<(), AmqpError> {
    for (exchange, kind) in [
        (&names.task_exchange, ExchangeKind::Topic),
        (&names.dead_letter_exchange, ExchangeKind::Topic),
        (&names.events_exchange, ExchangeKind::Topic),
        (&names.control_exchange, ExchangeKind::Topic),
    ] {
        channel
            .exchange_declare(
                ShortString::from(exchange.as_str()),
                kind,
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(AmqpError::protocol(format!("declaring exchange '{exchange}'")))?;
    }

    let mut work_arguments = quorum_arguments();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    work_arguments.insert("x-dead-letter-exchange".into(), text(&names.dead_letter_exchange));
    // Without at-least-once, a message can vanish between the work queue and the DLQ if
    // the DLQ's leader is unavailable at that moment; at-least-once requires reject-publish.
    work_arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    work_arguments.insert("x-overflow".into(), text("reject-publish"));
    work_arguments.insert("x-delivery-limit".into(), AMQPValue::LongInt(names.delivery_limit as i32));
    declare_queue(channel, &names.work_queue, work_arguments).await?;
    for key in &names.binding_keys {
        bind(channel, &names.work_queue, &names.task_exchange, key).await?;
    }

    declare_queue(channel, &names.dead_letter_queue, quorum_arguments()).await?;
    bind(channel, &names.dead_letter_queue, &names.dead_letter_exchange, "#").await?;
    Ok(())
}

pub(super) fn quorum_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    arguments
}

pub(super) async fn declare_queue(
    channel: &Channel,
    queue: &str,
    arguments: FieldTable,
) -> Result<(), AmqpError> {
    channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions { durable: true, ..Default::default() },
            arguments,
        )
        .await
        .map_err(AmqpError::protocol(format!("declaring queue '{queue}'")))?;
    Ok(())
}

pub(super) async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), AmqpError> {
    channel
        .queue_bind(
            ShortString::from(queue),
            ShortString::from(exchange),
            ShortString::from(key),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::protocol(format!("binding queue '{queue}' to '{exchange}' with '{key}'")))
}

impl From<&crate::config::AmqpConfig> for TopologyNames {
    fn from(config: &crate::config::AmqpConfig) -> Self {
        TopologyNames {
            task_exchange: config.task_exchange.clone(),
            work_queue: config.work_queue.clone(),
            binding_keys: config.binding_keys.clone(),
            dead_letter_exchange: config.dead_letter_exchange.clone(),
            dead_letter_queue: config.dead_letter_queue.clone(),
            events_exchange: config.events_exchange.clone(),
            control_exchange: config.control_exchange.clone(),
            delivery_limit: config.delivery_limit,
        }
    }
}

/// Deletes everything [`declare_topology`] declares, and the default retry queues. For the demo and tests, which use
/// names of their own; never called on a production topology.
pub async fn delete_topology(channel: &Channel, names: &TopologyNames) -> Result<(), AmqpError> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    // Private topologies run with the default retry delays; a test with other delays
    // deletes its own (`RetryQueues::delete`). Deleting a queue that is absent is a no-op.
    let retry = super::RetryQueues {
        work_queue: names.work_queue.clone(),
        delays: crate::config::ReliabilityConfig::default().retry_delays,
    };
    let retry_queues: Vec<String> = retry.delays.iter().map(|d| retry.queue_for(*d)).collect();
    for queue in [&names.work_queue, &names.dead_letter_queue].into_iter().chain(&retry_queues) {
        channel
            .queue_delete(ShortString::from(queue.as_str()), QueueDeleteOptions::default())
            .await
            .map_err(AmqpError::protocol(format!("deleting queue '{queue}'")))?;
    }
    for exchange in
        [&names.task_exchange, &names.dead_letter_exchange, &names.events_exchange, &names.control_exchange]
    {
        channel
            .exchange_delete(ShortString::from(exchange.as_str()), ExchangeDeleteOptions::default())
            .await
            .map_err(AmqpError::protocol(format!("deleting exchange '{exchange}'")))?;
    }
    Ok(())
}

impl TopologyNames {
    /// The `amqp:` section of a config file naming these queues and exchanges, for a
    /// worker process started on a private topology (tests, the benchmark). The section
    /// is last, so a caller may append more `  key: value` lines to it.
    pub fn config_yaml(&self) -> String {
        format!(
            "amqp:\n  task_exchange: {}\n  work_queue: {}\n  dead_letter_exchange: {}\n  dead_letter_queue: {}\n  \
             events_exchange: {}\n  control_exchange: {}\n",
            self.task_exchange,
            self.work_queue,
            self.dead_letter_exchange,
            self.dead_letter_queue,
            self.events_exchange,
            self.control_exchange
        )
    }

    /// A private topology whose every name carries `prefix`, for the demo and tests.
    pub fn isolated(prefix: &str) -> Self {
        TopologyNames {
            task_exchange: format!("{prefix}.tasks.x"),
            work_queue: format!("{prefix}.tasks"),
            binding_keys: vec!["task.#".to_string()],
            dead_letter_exchange: format!("{prefix}.dlx"),
            dead_letter_queue: format!("{prefix}.dlq"),
            events_exchange: format!("{prefix}.events"),
            control_exchange: format!("{prefix}.control"),
            delivery_limit: 5,
        }
    }
}
