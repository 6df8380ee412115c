//! Working through a dead-letter queue message by message, for `dlq replay` and
//! `dlq purge`: each message is fetched unacked (`basic.get`) and held; the caller acks
//! the ones it is done with (replayed under confirms, or purged), and releasing the
//! cursor returns every other one to the queue untouched (closing the channel requeues
//! what is unacked). A crash mid-way loses nothing: unacked messages go back too.

use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::ShortString;

use super::AmqpError;
use super::dead_letter::DeadLetter;
use super::headers::from_field_table;
use super::session::AmqpSession;

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
pub struct DlqCursor {
    channel: Channel,
    queue: String,
    remaining: u32,
}

impl DlqCursor {
    /// Opens a pass over the messages `queue` holds now (at most [`MAX_SCAN`]).
    pub async fn open(session: &AmqpSession, queue: &str) -> Result<DlqCursor, AmqpError> {
        let remaining = session.ready_count(queue).await?.min(MAX_SCAN);
        let channel = session.channel().await?;
        Ok(DlqCursor { channel, queue: queue.to_string(), remaining })
    }

    /// The next message, held; `None` when the pass has seen every message.
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
        let letter = DeadLetter {
            routing_key: delivery.routing_key.as_str().to_string(),
            headers: from_field_table(delivery.properties.headers().as_ref()),
            body: String::from_utf8_lossy(&delivery.data).into_owned(),
        };
        Ok(Some(HeldLetter { letter, delivery }))
    }

    /// Removes `held` from the queue for good.
    pub async fn remove(&self, held: HeldLetter) -> Result<(), AmqpError> {
        held.delivery.ack(BasicAckOptions::default()).await.map_err(AmqpError::protocol("ack"))?;
        Ok(())
    }

    /// Ends the pass: every message not removed goes back to the queue.
    pub async fn release(self) {
        let close = self.channel.close(200, ShortString::from("dlq pass done"));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), close).await;
    }
}
