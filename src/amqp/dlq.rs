//! Working through a dead-letter queue message by message, for every `dlq` subcommand,
//! without changing the letters it leaves in place.
//!
//! RabbitMQ quorum queues count every return of an unacked message (`basic.reject` or
//! `basic.nack` with requeue, a closed channel) as a delivery: `x-delivery-count` grows
//! and the letter moves. So a pass never returns a letter it keeps. Each message is
//! fetched unacked (`basic.get`); one the caller keeps is republished to the tail of the
//! same queue, byte for byte with every property and header (less the broker's
//! `x-delivery-count`; the routing key, which a publish to the queue rewrites, is kept in
//! `x-original-routing-key`), under publisher confirms, and the original is acked only
//! after the confirm. A pass covers the messages the queue held when it opened, so after
//! it they sit in their old order (letters dead-lettered meanwhile may come before them).
//! A process dying between the confirm and the ack leaves an exact duplicate, with the
//! same id, never a loss; a failure before the confirm returns the original by closing
//! the channel (counted by the broker, as it must be).

use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::{FieldTable, ShortString};

use super::AmqpError;
use super::dead_letter::{BROKER_DELIVERY_COUNT, DeadLetter, header};
use super::publisher::Outgoing;
use super::session::AmqpSession;
use lapin::Channel;

/// Messages examined in one pass at most. Each is held in memory until the pass ends; a
/// dead-letter queue deeper than this is an incident to handle in slices (`--limit`).
pub const MAX_SCAN: u32 = 10_000;

/// A dead letter taken off the queue and held, unacked.
pub struct HeldLetter {
    pub letter: DeadLetter,
    delivery: lapin::message::Delivery,
}

impl HeldLetter {
    /// The message body exactly as stored (the `letter` copy is for display).
    pub fn body(&self) -> &[u8] {
        &self.delivery.data
    }
}

/// A pass over a dead-letter queue; see the module docs.
pub struct DlqCursor<'a> {
    session: &'a AmqpSession,
    channel: Channel,
    queue: String,
    remaining: u32,
}

impl<'a> DlqCursor<'a> {
    /// Opens a pass over the messages `queue` holds now (at most [`MAX_SCAN`]).
    pub async fn open(session: &'a AmqpSession, queue: &str) -> Result<DlqCursor<'a>, AmqpError> {
        let remaining = session.ready_count(queue).await?.min(MAX_SCAN);
        let channel = session.channel().await?;
        Ok(DlqCursor { session, channel, queue: queue.to_string(), remaining })
    }

    /// The next message, held; `None` when the pass has seen every message. Each one
    /// must then be kept ([`DlqCursor::keep`]) or removed ([`DlqCursor::remove`]).
    pub async fn next(&mut self) -> Result<Option<HeldLetter>, AmqpError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let got = self
            .channel
            .basic_get(ShortString::from(self.queue.as_str()), BasicGetOptions { no_ack: false })
            .await
            .map_err(AmqpError::protocol(format!("reading queue '{}'", self.queue)))?;
        let Some(message) = got else { return Ok(None) };
        let delivery = message.delivery;
        Ok(Some(HeldLetter { letter: DeadLetter::from_delivery(&delivery), delivery }))
    }

    /// Puts `held` back at the tail of the queue unchanged; see the module docs.
    pub async fn keep(&self, held: HeldLetter) -> Result<(), AmqpError> {
        let original = &held.delivery.properties;
        let mut headers = FieldTable::default();
        for (name, value) in original.headers().as_ref().map(FieldTable::inner).into_iter().flatten() {
            if name.as_str() != BROKER_DELIVERY_COUNT {
                headers.insert(name.clone(), value.clone());
            }
        }
        if !headers.contains_key(header::ORIGINAL_ROUTING_KEY) {
            let routing_key = lapin::types::LongString::from(held.letter.routing_key.as_bytes());
            headers.insert(
                header::ORIGINAL_ROUTING_KEY.into(),
                lapin::types::AMQPValue::LongString(routing_key),
            );
        }
        let properties = original.clone().with_headers(headers);
        let no_headers = super::HeaderMap::new();
        let copy = Outgoing {
            exchange: "",
            routing_key: &self.queue,
            body: &held.delivery.data,
            headers: &no_headers,
            mandatory: true,
        };
        self.session.publisher.publish_with_properties(&copy, properties).await?;
        self.remove(held).await
    }

    /// Removes `held` from the queue for good.
    pub async fn remove(&self, held: HeldLetter) -> Result<(), AmqpError> {
        held.delivery.ack(BasicAckOptions::default()).await.map_err(AmqpError::protocol("ack"))?;
        Ok(())
    }

    /// Ends the pass. Only a letter neither kept nor removed (a pass cut short by an
    /// error) goes back the broker's way, counted as a delivery.
    pub async fn release(self) {
        let close = self.channel.close(200, ShortString::from("dlq pass done"));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), close).await;
    }
}

/// Reads the first `limit` messages of `queue` without changing any: the whole queue
/// (up to [`MAX_SCAN`]) is passed over and every message kept, so order and delivery
/// counts stay as they were.
pub async fn browse_queue(
    session: &AmqpSession,
    queue: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, AmqpError> {
    let mut cursor = DlqCursor::open(session, queue).await?;
    let mut letters = Vec::new();
    let kept = async {
        while let Some(held) = cursor.next().await? {
            if letters.len() < limit {
                letters.push(held.letter.clone());
            }
            cursor.keep(held).await?;
        }
        Ok::<(), AmqpError>(())
    }
    .await;
    cursor.release().await;
    kept.map(|()| letters)
}
