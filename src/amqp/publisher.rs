//! Publishing with publisher confirms: a publish returns only once the broker has taken
//! responsibility for the message (and, when `mandatory`, routed it somewhere).

use std::sync::{Arc, RwLock};

use futures_util::future::BoxFuture;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation, Connection};

use super::AmqpError;
use super::headers::{HeaderMap, to_field_table};
use crate::events::{Event, EventError, EventSink};

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// A channel in confirm mode. Clones share the channel; lapin tracks each publish's
/// confirm separately, so concurrent tasks can publish through one publisher. After a
/// reconnect the session swaps a fresh channel in, and every clone (the event sink's
/// included) publishes on it from then on.
#[derive(Clone)]
pub struct ConfirmedPublisher {
    channel: Arc<RwLock<Channel>>,
    /// The session's connection, for a publisher that reopens its channel when the
    /// broker closed the channel but not the connection (a refused or failed publish
    /// closes the channel; nothing else would ever open a new one). `None`: the channel
    /// is replaced only by a reconnect.
    reopen_on: Option<ConnectionSlot>,
    /// One reopen at a time, so concurrent publishes share the fresh channel.
    reopening: Arc<tokio::sync::Mutex<()>>,
}

/// The session's current connection, swapped by a reconnect.
pub(crate) type ConnectionSlot = Arc<RwLock<Arc<Connection>>>;

/// One message to publish.
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub headers: &'a HeaderMap,
    /// Fail (rather than silently drop) when no queue is bound for the routing key.
    pub mandatory: bool,
}

impl ConfirmedPublisher {
    /// Opens a channel on `connection` and puts it in confirm mode.
    pub async fn open(connection: &Connection) -> Result<Self, AmqpError> {
        let channel = connection.create_channel().await.map_err(AmqpError::protocol("opening a channel"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(AmqpError::protocol("enabling publisher confirms"))?;
        Ok(ConfirmedPublisher {
            channel: Arc::new(RwLock::new(channel)),
            reopen_on: None,
            reopening: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// This publisher, reopening its channel on `connection` when the broker closed it.
    pub(crate) fn reopening_on(mut self, connection: ConnectionSlot) -> Self {
        self.reopen_on = Some(connection);
        self
    }

    /// The channel to publish on: the current one, or a fresh one when the broker closed
    /// it while the connection stayed up. With the connection down the closed channel is
    /// returned as it is: the publish fails, and reconnecting is the delivery loop's job.
    async fn usable_channel(&self) -> Channel {
        let channel = self.current();
        let Some(slot) = &self.reopen_on else { return channel };
        if channel.status().connected() {
            return channel;
        }
        let _one_at_a_time = self.reopening.lock().await;
        let channel = self.current();
        if channel.status().connected() {
            return channel;
        }
        let connection = match slot.read() {
            Ok(connection) => connection.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if !connection.status().connected() {
            return channel;
        }
        match ConfirmedPublisher::open(&connection).await {
            Ok(fresh) => {
                self.replace_with(fresh);
                tracing::info!("publish channel reopened after the broker closed it");
                self.current()
            }
            Err(error) => {
                tracing::debug!(%error, "publish channel could not be reopened");
                channel
            }
        }
    }

    /// Puts `fresh`'s channel in place of this one's, for every clone.
    pub(crate) fn replace_with(&self, fresh: ConfirmedPublisher) {
        let channel = fresh.current();
        if let Ok(mut slot) = self.channel.write() {
            *slot = channel;
        }
    }

    fn current(&self) -> Channel {
        // A poisoned lock still holds a valid channel: a panic cannot half-write a clone.
        match self.channel.read() {
            Ok(channel) => channel.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Publishes a persistent JSON message and waits for the broker's confirm. Every
    /// message is stamped with the time of this publish (the AMQP `timestamp` property and
    /// the `timestamp_in_ms` header, replacing a copied one): a worker measures queue wait
    /// from it, and a republished copy (retry, dead letter, replay) waits from its own
    /// publication.
    pub async fn publish(&self, message: Outgoing<'_>) -> Result<(), AmqpError> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let mut headers = message.headers.clone();
        let millis = i64::try_from(now.as_millis()).unwrap_or(i64::MAX);
        headers.insert(super::header::PUBLISHED_AT_MS.into(), super::HeaderValue::Int(millis));
        let properties = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(PERSISTENT)
            .with_timestamp(now.as_secs())
            .with_headers(to_field_table(&headers));
        self.publish_with_properties(&message, properties).await
    }

    /// Publishes `message`'s body with `properties` as given (its `headers` field unused),
    /// mandatory as `message` says, and waits for the confirm: for a copy that must keep
    /// every property of the original, such as a dead letter put back after browsing.
    pub(crate) async fn publish_with_properties(
        &self,
        message: &Outgoing<'_>,
        properties: BasicProperties,
    ) -> Result<(), AmqpError> {
        let operation = format!("publishing to exchange '{}'", message.exchange);
        let confirm = self
            .usable_channel()
            .await
            .basic_publish(
                ShortString::from(message.exchange),
                ShortString::from(message.routing_key),
                BasicPublishOptions { mandatory: message.mandatory, ..Default::default() },
                message.body,
                properties,
            )
            .await
            .map_err(AmqpError::protocol(operation.clone()))?
            .await
            .map_err(AmqpError::protocol(operation))?;
        let place = || (message.exchange.to_string(), message.routing_key.to_string());
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) => {
                let (exchange, routing_key) = place();
                Err(AmqpError::Unroutable { exchange, routing_key })
            }
            Confirmation::Nack(_) => {
                let (exchange, routing_key) = place();
                Err(AmqpError::Nacked { exchange, routing_key })
            }
        }
    }
}

/// Publishes lifecycle events to the events exchange. Not `mandatory`: an events
/// exchange with no mirror bound yet is a valid deployment, not an error.
#[derive(Clone)]
pub struct AmqpEventSink {
    publisher: ConfirmedPublisher,
    exchange: String,
    masker: crate::secrets::Masker,
}

impl AmqpEventSink {
    pub fn new(publisher: ConfirmedPublisher, exchange: String, masker: crate::secrets::Masker) -> Self {
        AmqpEventSink { publisher, exchange, masker }
    }
}

impl EventSink for AmqpEventSink {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), EventError>> {
        Box::pin(async move {
            let error = |reason: String| EventError { event_type: event.event_type.name(), reason };
            let body = serde_json::to_string(event).map_err(|e| error(e.to_string()))?;
            let body = self.masker.mask(&body);
            let mut headers = HeaderMap::new();
            headers.insert("event_id".into(), super::HeaderValue::Text(event.event_id.clone()));
            self.publisher
                .publish(Outgoing {
                    exchange: &self.exchange,
                    routing_key: &event.event_type.routing_key(),
                    body: body.as_bytes(),
                    headers: &headers,
                    mandatory: false,
                })
                .await
                .map_err(|e| error(e.to_string()))
        })
    }
}
