//! The registry mirror's own topology: a quorum queue bound to the events exchange, and
//! a dead-letter exchange and queue for events that can never be applied.
//!
//! Separate from the worker's topology on purpose: the mirror is its own deployment, and
//! its poison events are not tasks — mixing them into the task DLQ would let an operator
//! replay an event as if it were a task.

use lapin::types::{AMQPValue, LongString, ShortString};

use super::AmqpError;
use super::session::AmqpSession;
use super::topology::{bind, declare_queue, quorum_arguments};

/// Names of everything the mirror declares; all configurable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorTopology {
    /// The topic exchange workers publish lifecycle events to.
    pub events_exchange: String,
    /// The mirror's quorum queue (`task-registry.mirror`).
    pub queue: String,
    /// Routing keys binding the queue to the events exchange (`task.#`: runner events
    /// have no task to record them on).
    pub binding_keys: Vec<String>,
    /// Where poison events go, with their reason headers.
    pub dead_letter_exchange: String,
    /// The mirror's dead-letter queue, bound to `dead_letter_exchange` with `#`.
    pub dead_letter_queue: String,
}

impl MirrorTopology {
    /// A private topology whose every name carries `prefix`, for tests; the events
    /// exchange is the given one (usually a test's isolated worker topology's).
    pub fn isolated(prefix: &str, events_exchange: &str) -> Self {
        MirrorTopology {
            events_exchange: events_exchange.to_string(),
            queue: format!("{prefix}.mirror"),
            binding_keys: vec!["task.#".to_string()],
            dead_letter_exchange: format!("{prefix}.mirror.dlx"),
            dead_letter_queue: format!("{prefix}.mirror.dlq"),
        }
    }
}

impl AmqpSession {
    /// Declares the mirror topology idempotently (the events exchange included, so the
    /// mirror can start before any worker).
    pub async fn declare_mirror(&self, names: &MirrorTopology) -> Result<(), AmqpError> {
        use lapin::ExchangeKind;
        use lapin::options::ExchangeDeclareOptions;
        let channel = self.channel().await?;
        for exchange in [&names.events_exchange, &names.dead_letter_exchange] {
            channel
                .exchange_declare(
                    ShortString::from(exchange.as_str()),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions { durable: true, ..Default::default() },
                    lapin::types::FieldTable::default(),
                )
                .await
                .map_err(AmqpError::protocol(format!("declaring exchange '{exchange}'")))?;
        }
        let mut arguments = quorum_arguments();
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        // A delivery the mirror cannot even settle (it crashes on it) ends up here too.
        arguments.insert("x-dead-letter-exchange".into(), text(&names.dead_letter_exchange));
        arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        arguments.insert("x-overflow".into(), text("reject-publish"));
        declare_queue(&channel, &names.queue, arguments).await?;
        for key in &names.binding_keys {
            bind(&channel, &names.queue, &names.events_exchange, key).await?;
        }
        declare_queue(&channel, &names.dead_letter_queue, quorum_arguments()).await?;
        bind(&channel, &names.dead_letter_queue, &names.dead_letter_exchange, "#").await?;
        let _ = channel.close(200, ShortString::from("declared")).await;
        Ok(())
    }

    /// Deletes the mirror's queues and dead-letter exchange (tests); the events
    /// exchange belongs to the workers' topology and is left alone.
    pub async fn delete_mirror(&self, names: &MirrorTopology) -> Result<(), AmqpError> {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        let channel = self.channel().await?;
        for queue in [&names.queue, &names.dead_letter_queue] {
            channel
                .queue_delete(ShortString::from(queue.as_str()), QueueDeleteOptions::default())
                .await
                .map_err(AmqpError::protocol(format!("deleting queue '{queue}'")))?;
        }
        channel
            .exchange_delete(
                ShortString::from(names.dead_letter_exchange.as_str()),
                ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(AmqpError::protocol(format!("deleting exchange '{}'", names.dead_letter_exchange)))?;
        let _ = channel.close(200, ShortString::from("deleted")).await;
        Ok(())
    }
}
