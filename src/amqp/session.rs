//! A connection to the broker with the channels the worker needs: one to consume and
//! settle on (with prefetch), and two in confirm mode to publish on: one for messages
//! (dead letters, retries, tasks) and one for lifecycle events.
//!
//! Events have a channel of their own because a channel is one process on the broker
//! that handles its publishes in order: on a shared one, every dead letter would wait
//! behind the events published before it, and a slow event route (a backed-up mirror
//! queue) would slow dead-lettering with it.
//!
//! The connection can be replaced ([`AmqpSession::reconnect`]) after the broker went
//! away: the publish channels are swapped under every clone of the publishers, so the
//! event sink and the dead-letter path follow without being rebuilt. The events channel
//! is also reopened on its own when the broker closes just that channel.

use std::sync::{Arc, RwLock};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};

use super::headers::{HeaderMap, from_field_table};
use super::publisher::ConnectionSlot;
use super::{AmqpError, ConfirmedPublisher, TopologyNames, declare_topology, redact_amqp_url};

/// An open connection with its publish channels.
pub struct AmqpSession {
    /// Kept to reconnect; holds the password, so the session has no `Debug`.
    nodes: BrokerNodes,
    name: String,
    connection: ConnectionSlot,
    /// Dead letters, retries, and tasks (`publish`, the tests, the benchmark).
    pub publisher: ConfirmedPublisher,
    /// Lifecycle events only; reopens its channel if the broker closes it (the event
    /// outbox drains through it).
    pub events_publisher: ConfirmedPublisher,
}

/// The largest AMQP frame the worker asks for, unless the URL sets `frame_max` itself.
/// lapin keeps a send and a receive buffer of 32 frames each, filled with zeros up front:
/// at RabbitMQ's default of 128 KiB that is 8 MiB resident in a process that otherwise
/// idles at about 12. Task messages and events are a few KiB; a larger body simply
/// travels in several frames.
const DEFAULT_FRAME_MAX: u32 = 16 * 1024;

/// `url` with `frame_max` set to [`DEFAULT_FRAME_MAX`] when it does not choose one. A URL
/// that does not parse is left alone for lapin to refuse with its own error.
fn with_default_frame_max(url: &str) -> String {
    match url.parse::<lapin::uri::AMQPUri>() {
        Ok(uri) if uri.query.frame_max.is_none() && !url.contains('#') => {
            let separator = if url.contains('?') { '&' } else { '?' };
            format!("{url}{separator}frame_max={DEFAULT_FRAME_MAX}")
        }
        _ => url.to_string(),
    }
}

/// The broker's nodes (`amqp.url` may list several, comma-separated: the nodes of a
/// cluster), tried in turn from the one that answered last, so a worker whose node went
/// away reconnects to a live one.
struct BrokerNodes {
    urls: Vec<String>,
    current: std::sync::atomic::AtomicUsize,
}

impl BrokerNodes {
    fn new(list: &str) -> Self {
        let mut urls: Vec<String> =
            list.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_string).collect();
        if urls.is_empty() {
            // lapin refuses it with its own error, as it would a single bad URL.
            urls.push(list.to_string());
        }
        BrokerNodes { urls, current: std::sync::atomic::AtomicUsize::new(0) }
    }

    async fn open(&self, name: &str) -> Result<Connection, AmqpError> {
        use std::sync::atomic::Ordering;
        let start = self.current.load(Ordering::Relaxed);
        let mut tried = 0;
        loop {
            let index = (start + tried) % self.urls.len();
            match open_connection(&self.urls[index], name).await {
                Ok(connection) => {
                    if index != start {
                        tracing::info!(node = %redact_amqp_url(&self.urls[index]), "connected to another broker node");
                    }
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(connection);
                }
                // Every node refused: the last one's error stands for them.
                Err(error) if tried + 1 >= self.urls.len() => return Err(error),
                Err(_) => tried += 1,
            }
        }
    }
}

async fn open_connection(url: &str, name: &str) -> Result<Connection, AmqpError> {
    let properties =
        ConnectionProperties::default().with_connection_name(lapin::types::LongString::from(name));
    Connection::connect(&with_default_frame_max(url), properties)
        .await
        .map_err(|source| AmqpError::Connect { url: redact_amqp_url(url), source })
}

impl AmqpSession {
    /// Connects and opens the publish channels. `name` shows in the management UI (and is
    /// how `rabbitmqctl close_connection` finds this connection).
    /// `url` may list a cluster's nodes, comma-separated ([`BrokerNodes`]).
    pub async fn connect(url: &str, name: &str) -> Result<Self, AmqpError> {
        let nodes = BrokerNodes::new(url);
        let connection = nodes.open(name).await?;
        let publisher = ConfirmedPublisher::open(&connection).await?;
        let events_channel = ConfirmedPublisher::open(&connection).await?;
        let connection: ConnectionSlot = Arc::new(RwLock::new(Arc::new(connection)));
        let events_publisher = events_channel.reopening_on(connection.clone());
        Ok(AmqpSession { nodes, name: name.to_string(), connection, publisher, events_publisher })
    }

    /// Opens a new connection and publish channels in place of the current ones (which
    /// are closed if they still can be). Deliveries received on the old connection can
    /// no longer be settled: the broker has requeued them.
    pub async fn reconnect(&self) -> Result<(), AmqpError> {
        let connection = self.nodes.open(&self.name).await?;
        let publisher = ConfirmedPublisher::open(&connection).await?;
        self.publisher.replace_with(publisher);
        self.events_publisher.replace_with(ConfirmedPublisher::open(&connection).await?);
        let old = match self.connection.write() {
            Ok(mut slot) => std::mem::replace(&mut *slot, Arc::new(connection)),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), Arc::new(connection)),
        };
        if old.status().connected() {
            let _ = old.close(200, ShortString::from("replaced")).await;
        }
        Ok(())
    }

    fn current(&self) -> Arc<Connection> {
        match self.connection.read() {
            Ok(connection) => connection.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether the connection is up (false after the broker closed it or the socket died).
    pub fn is_connected(&self) -> bool {
        self.current().status().connected()
    }

    /// Closes the connection; the broker requeues every delivery still unacked on it.
    pub async fn close(&self) {
        let connection = self.current();
        if connection.status().connected() {
            let _ = connection.close(200, ShortString::from("worker stopped")).await;
        }
    }

    /// Opens a plain channel (for declarations and browsing).
    pub async fn channel(&self) -> Result<Channel, AmqpError> {
        self.current().create_channel().await.map_err(AmqpError::protocol("opening a channel"))
    }

    /// Declares the topology on a fresh channel.
    pub async fn declare(&self, names: &TopologyNames) -> Result<(), AmqpError> {
        let channel = self.channel().await?;
        declare_topology(&channel, names).await?;
        let _ = channel.close(200, ShortString::from("declared")).await;
        Ok(())
    }

    /// Publishes a task body to the task exchange as a Dispatcher does: mandatory and
    /// confirmed, so it is either queued or an error.
    pub async fn publish_task(
        &self,
        names: &TopologyNames,
        routing_key: &str,
        body: &[u8],
    ) -> Result<(), AmqpError> {
        let headers = super::HeaderMap::new();
        let task = super::Outgoing {
            exchange: &names.task_exchange,
            routing_key,
            body,
            headers: &headers,
            mandatory: true,
        };
        self.publisher.publish(task).await
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
        Ok(TaskConsumer { consumer, channel, tag: tag.to_string() })
    }
}

/// A stream of deliveries from the work queue.
pub struct TaskConsumer {
    consumer: Consumer,
    /// Kept so the channel lives as long as the consumer; deliveries settle on it.
    channel: Channel,
    tag: String,
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

    /// Closes the consumer's channel: every delivery still unacked on it goes back to the
    /// queue at once (the end of a shutdown that stopped running tasks).
    pub async fn close(&self) {
        let _ = self.channel.close(200, ShortString::from("worker stopping")).await;
    }

    /// Stops the broker sending more deliveries (`basic.cancel`). Deliveries already
    /// received stay valid: running tasks still settle on this channel.
    pub async fn cancel(&self) -> Result<(), AmqpError> {
        self.channel
            .basic_cancel(ShortString::from(self.tag.as_str()), BasicCancelOptions::default())
            .await
            .map_err(AmqpError::protocol("cancelling the consumer"))
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

    /// When the message was published, in milliseconds since the epoch: the
    /// `timestamp_in_ms` header, else the AMQP `timestamp` property (whole seconds, as a
    /// Dispatcher of another client library may set it); `None` when it carries neither.
    pub fn published_at_ms(&self) -> Option<i64> {
        let header = self.headers().get(super::header::PUBLISHED_AT_MS).and_then(|v| v.as_int());
        let property = || {
            let seconds = (*self.delivery.properties.timestamp())?;
            i64::try_from(seconds).ok()?.checked_mul(1000)
        };
        header.or_else(property)
    }

    /// Acknowledges: the broker forgets the message.
    pub async fn ack(&self) -> Result<(), AmqpError> {
        let acked =
            self.delivery.ack(BasicAckOptions::default()).await.map_err(AmqpError::protocol("ack"))?;
        stale_if_not("ack", acked)
    }

    /// Returns the message to the queue for immediate redelivery (`basic.nack`, requeue):
    /// the fallback when a delayed retry could not be scheduled.
    pub async fn requeue(&self) -> Result<(), AmqpError> {
        let options = BasicNackOptions { requeue: true, ..Default::default() };
        let nacked = self.delivery.nack(options).await.map_err(AmqpError::protocol("nack"))?;
        stale_if_not("nack", nacked)
    }

    /// Rejects without requeue: the broker dead-letters the message itself (with `x-death`
    /// but without our reason headers). The fallback when our own dead-letter publish fails.
    pub async fn reject_to_dead_letter(&self) -> Result<(), AmqpError> {
        let rejected = self
            .delivery
            .reject(BasicRejectOptions { requeue: false })
            .await
            .map_err(AmqpError::protocol("reject"))?;
        stale_if_not("reject", rejected)
    }
}

/// lapin answers `false` when the delivery's channel is gone (a reconnect happened while
/// the task ran): the broker has already requeued the message, nothing was settled.
fn stale_if_not(operation: &str, settled: bool) -> Result<(), AmqpError> {
    if settled { Ok(()) } else { Err(AmqpError::StaleDelivery { operation: operation.to_string() }) }
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
    /// The next message body; `None` once the tap's channel or connection is gone.
    pub async fn next_message(&mut self) -> Option<Vec<u8>> {
        match self.consumer.next().await {
            Some(Ok(delivery)) => Some(delivery.data),
            _ => None,
        }
    }

    /// The next message body, waiting at most `timeout`.
    pub async fn next_body(&mut self, timeout: std::time::Duration) -> Option<Vec<u8>> {
        match tokio::time::timeout(timeout, self.consumer.next()).await {
            Ok(Some(Ok(delivery))) => Some(delivery.data),
            _ => None,
        }
    }
}

impl AmqpSession {
    /// Deletes one queue (tests: the broker then cancels its consumers).
    pub async fn delete_queue(&self, queue: &str) -> Result<(), AmqpError> {
        use lapin::options::QueueDeleteOptions;
        let channel = self.channel().await?;
        channel
            .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
            .await
            .map_err(AmqpError::protocol(format!("deleting queue '{queue}'")))?;
        let _ = channel.close(200, ShortString::from("deleted")).await;
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_max_is_added_unless_the_url_chooses_one() {
        let plain = "amqp://guest:guest@127.0.0.1:5672/%2f";
        assert_eq!(with_default_frame_max(plain), format!("{plain}?frame_max=16384"));
        let with_query = "amqp://127.0.0.1:5672/%2f?heartbeat=10";
        assert_eq!(with_default_frame_max(with_query), format!("{with_query}&frame_max=16384"));
        let chosen = "amqp://127.0.0.1:5672/%2f?frame_max=131072";
        assert_eq!(with_default_frame_max(chosen), chosen);
        for url in [plain, with_query, chosen] {
            let parsed: lapin::uri::AMQPUri = with_default_frame_max(url).parse().unwrap();
            assert!(parsed.query.frame_max.is_some());
        }
        assert_eq!(with_default_frame_max("not a url"), "not a url");
    }
}
