//! A connection to the broker with the channels the worker needs: one to consume and
//! settle on (with prefetch), one in confirm mode to publish on.

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};

use super::headers::{HeaderMap, from_field_table};
use super::{AmqpError, ConfirmedPublisher, TopologyNames, declare_topology, redact_amqp_url};

/// An open connection with its publish channel.
pub struct AmqpSession {
    pub connection: Connection,
    pub publisher: ConfirmedPublisher,
}

impl AmqpSession {
    /// Connects and opens the publish channel. `name` shows in the management UI.
    pub async fn connect(url: &str, name: &str) -> Result<Self, AmqpError> {
        let properties =
            ConnectionProperties::default().with_connection_name(lapin::types::LongString::from(name));
        let connection = Connection::connect(url, properties)
            .await
            .map_err(|source| AmqpError::Connect { url: redact_amqp_url(url), source })?;
        let publisher = ConfirmedPublisher::open(&connection).await?;
        Ok(AmqpSession { connection, publisher })
    }

    /// Opens a plain channel (for declarations and browsing).
    pub async fn channel(&self) -> Result<Channel, AmqpError> {
        self.connection.create_channel().await.map_err(AmqpError::protocol("opening a channel"))
    }

    /// Declares the topology on a fresh channel.
    pub async fn declare(&self, names: &TopologyNames) -> Result<(), AmqpError> {
        let channel = self.channel().await?;
        declare_topology(&channel, names).await?;
        let _ = channel.close(200, ShortString::from("declared")).await;
        Ok(())
    }

    /// Starts consuming `queue` with manual acks and `prefetch` unacked deliveries at most.
    pub async fn consume(&self, queue: &str, prefetch: u16, tag: &str) -> Result<TaskConsumer, AmqpError> {
        let channel = self.channel().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(AmqpError::protocol("setting prefetch"))?;
        let consumer = channel
            .basic_consume(
                ShortString::from(queue),
                ShortString::from(tag),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(AmqpError::protocol(format!("consuming from queue '{queue}'")))?;
        Ok(TaskConsumer { consumer, _channel: channel })
    }
}

/// A stream of deliveries from the work queue.
pub struct TaskConsumer {
    consumer: Consumer,
    /// Kept so the channel lives as long as the consumer.
    _channel: Channel,
}

impl TaskConsumer {
    /// The next delivery, or `None` when the consumer was cancelled or the channel closed.
    pub async fn next(&mut self) -> Option<Result<InboundDelivery, AmqpError>> {
        let next = self.consumer.next().await?;
        Some(
            next.map(|delivery| InboundDelivery { delivery })
                .map_err(AmqpError::protocol("receiving a delivery")),
        )
    }
}

/// One delivery, with the settle operations the delivery loop uses. Nothing else in the
/// worker receives this type, which is how "only the delivery loop settles" holds.
pub struct InboundDelivery {
    delivery: lapin::message::Delivery,
}

impl InboundDelivery {
    pub fn body(&self) -> &[u8] {
        &self.delivery.data
    }

    pub fn routing_key(&self) -> &str {
        self.delivery.routing_key.as_str()
    }

    pub fn redelivered(&self) -> bool {
        self.delivery.redelivered
    }

    pub fn headers(&self) -> HeaderMap {
        from_field_table(self.delivery.properties.headers().as_ref())
    }

    /// Acknowledges: the broker forgets the message.
    pub async fn ack(&self) -> Result<(), AmqpError> {
        self.delivery.ack(BasicAckOptions::default()).await.map(drop).map_err(AmqpError::protocol("ack"))
    }

    /// Rejects without requeue: the broker dead-letters the message itself (with `x-death`
    /// but without our reason headers). The fallback when our own dead-letter publish fails.
    pub async fn reject_to_dead_letter(&self) -> Result<(), AmqpError> {
        self.delivery
            .reject(BasicRejectOptions { requeue: false })
            .await
            .map(drop)
            .map_err(AmqpError::protocol("reject"))
    }
}

impl AmqpSession {
    /// Deletes a private topology (demo, tests); see [`super::topology::delete_topology`].
    pub async fn delete(&self, names: &TopologyNames) -> Result<(), AmqpError> {
        let channel = self.channel().await?;
        super::topology::delete_topology(&channel, names).await?;
        let _ = channel.close(200, ShortString::from("deleted")).await;
        Ok(())
    }

    /// Listens to `exchange` through a private, exclusive, auto-deleted queue bound with
    /// `binding`: how the demo and tests watch the events a worker publishes.
    pub async fn tap(&self, exchange: &str, binding: &str) -> Result<ExchangeTap, AmqpError> {
        use lapin::options::{QueueBindOptions, QueueDeclareOptions};
        let channel = self.channel().await?;
        let queue = channel
            .queue_declare(
                ShortString::from(""),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(AmqpError::protocol("declaring a tap queue"))?;
        channel
            .queue_bind(
                queue.name().clone(),
                ShortString::from(exchange),
                ShortString::from(binding),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(AmqpError::protocol(format!("binding a tap to '{exchange}'")))?;
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                ShortString::from(""),
                BasicConsumeOptions { no_ack: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(AmqpError::protocol("consuming a tap queue"))?;
        Ok(ExchangeTap { consumer, _channel: channel })
    }
}

/// Messages seen on an exchange, in the order the broker routed them.
pub struct ExchangeTap {
    consumer: Consumer,
    _channel: Channel,
}

impl ExchangeTap {
    /// The next message body, waiting at most `timeout`.
    pub async fn next_body(&mut self, timeout: std::time::Duration) -> Option<Vec<u8>> {
        match tokio::time::timeout(timeout, self.consumer.next()).await {
            Ok(Some(Ok(delivery))) => Some(delivery.data),
            _ => None,
        }
    }
}

impl AmqpSession {
    /// Messages ready in `queue` (not counting unacked ones).
    pub async fn ready_count(&self, queue: &str) -> Result<u32, AmqpError> {
        Ok(self.inspect(queue).await?.message_count())
    }

    /// Consumers attached to `queue`.
    pub async fn consumer_count(&self, queue: &str) -> Result<u32, AmqpError> {
        Ok(self.inspect(queue).await?.consumer_count())
    }

    /// A passive declare: the queue's counters, without creating or changing it.
    async fn inspect(&self, queue: &str) -> Result<lapin::Queue, AmqpError> {
        use lapin::options::QueueDeclareOptions;
        let channel = self.channel().await?;
        let declared = channel
            .queue_declare(
                ShortString::from(queue),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(AmqpError::protocol(format!("inspecting queue '{queue}'")))?;
        let _ = channel.close(200, ShortString::from("inspected")).await;
        Ok(declared)
    }
}
