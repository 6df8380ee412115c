//! Delayed retries: one quorum queue per delay, nobody consuming them. A message waits
//! there for the queue's `x-message-ttl`, then the broker dead-letters it through the
//! default exchange straight back to the work queue (`x-dead-letter-routing-key`), so
//! a retry reaches only this pool's queue and never fans out again on the task exchange.
//!
//! The attempt number travels in the `x-attempt` header: the retry copy is a new
//! message, so the quorum queue's own `x-delivery-count` starts over with it.

use std::time::Duration;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use super::dead_letter::{DeadLetterReason, header};
use super::headers::{HeaderMap, HeaderValue};
use super::publisher::Outgoing;
use super::session::{AmqpSession, InboundDelivery};
use super::{AmqpError, ConfirmedPublisher};

/// Headers the broker sets on a delivery; a republished copy must not carry them, or
/// the copy would look redelivered (`x-delivery-count`) or dead-lettered (`x-death`).
const BROKER_HEADERS: &[&str] = &[
    "x-delivery-count",
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
];

/// The retry queues of one work queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryQueues {
    pub work_queue: String,
    /// The wait before attempt 2, 3, ...; the last one repeats.
    pub delays: Vec<Duration>,
}

impl RetryQueues {
    /// The queue holding messages for `delay`: `<work_queue>.retry.<seconds>s`.
    pub fn queue_for(&self, delay: Duration) -> String {
        format!("{}.retry.{}s", self.work_queue, delay.as_secs())
    }

    /// The wait before `next_attempt` (2 is the first retry).
    pub fn delay_before(&self, next_attempt: u32) -> Duration {
        let index = usize::try_from(next_attempt.saturating_sub(2)).unwrap_or(usize::MAX);
        let last = self.delays.last().copied().unwrap_or(Duration::from_secs(1));
        self.delays.get(index).copied().unwrap_or(last)
    }

    /// Declares every retry queue. Idempotent, like the rest of the topology.
    pub async fn declare(&self, session: &AmqpSession) -> Result<(), AmqpError> {
        let channel = session.channel().await?;
        let text = |s: &str| AMQPValue::LongString(LongString::from(s));
        for delay in &self.delays {
            let queue = self.queue_for(*delay);
            let mut arguments = FieldTable::default();
            arguments.insert("x-queue-type".into(), text("quorum"));
            let ttl_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
            // The default exchange ("") routes by queue name: straight to the work queue.
            arguments.insert("x-dead-letter-exchange".into(), text(""));
            arguments.insert("x-dead-letter-routing-key".into(), text(&self.work_queue));
            arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
            arguments.insert("x-overflow".into(), text("reject-publish"));
            channel
                .queue_declare(
                    ShortString::from(queue.as_str()),
                    QueueDeclareOptions { durable: true, ..Default::default() },
                    arguments,
                )
                .await
                .map_err(AmqpError::protocol(format!("declaring retry queue '{queue}'")))?;
        }
        let _ = channel.close(200, ShortString::from("declared")).await;
        Ok(())
    }

    /// Deletes the retry queues (tests and the demo; never a production topology).
    pub async fn delete(&self, session: &AmqpSession) -> Result<(), AmqpError> {
        let channel = session.channel().await?;
        for delay in &self.delays {
            let queue = self.queue_for(*delay);
            channel
                .queue_delete(ShortString::from(queue.as_str()), QueueDeleteOptions::default())
                .await
                .map_err(AmqpError::protocol(format!("deleting retry queue '{queue}'")))?;
        }
        let _ = channel.close(200, ShortString::from("deleted")).await;
        Ok(())
    }
}

/// `headers` without what the broker added, for a republished copy.
pub(crate) fn without_broker_headers(mut headers: HeaderMap) -> HeaderMap {
    headers.retain(|name, _| !BROKER_HEADERS.contains(&name.as_str()));
    headers
}

impl InboundDelivery {
    /// The routing key the Dispatcher used. A retried message comes back through the
    /// default exchange keyed by queue name, so the first key is kept in a header.
    pub fn original_routing_key(&self) -> String {
        self.headers()
            .get(header::ORIGINAL_ROUTING_KEY)
            .and_then(|v| v.as_text().map(str::to_string))
            .unwrap_or_else(|| self.routing_key().to_string())
    }

    /// Parks a copy in the retry queue for the delay before `next_attempt`, waits for the
    /// broker's confirm, then acks this delivery. If the publish fails nothing is acked
    /// and the error is returned: the caller decides what to do with the delivery.
    pub async fn retry_later(
        &self,
        publisher: &ConfirmedPublisher,
        queues: &RetryQueues,
        next_attempt: u32,
        reason: &DeadLetterReason,
    ) -> Result<Duration, AmqpError> {
        let delay = queues.delay_before(next_attempt);
        let queue = queues.queue_for(delay);
        let mut headers = without_broker_headers(self.headers());
        headers.insert(header::ORIGINAL_ROUTING_KEY.into(), HeaderValue::Text(self.original_routing_key()));
        headers.insert(header::ATTEMPT.into(), HeaderValue::Int(i64::from(next_attempt)));
        headers.insert(header::LAST_KIND.into(), HeaderValue::Text(reason.kind.clone()));
        headers.insert(header::LAST_STEP.into(), HeaderValue::Text(reason.step.clone()));
        publisher
            .publish(Outgoing {
                exchange: "",
                routing_key: &queue,
                body: self.body(),
                headers: &headers,
                mandatory: true,
            })
            .await?;
        self.ack().await?;
        Ok(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_repeat_the_last_one() {
        let queues = RetryQueues {
            work_queue: "w".into(),
            delays: vec![Duration::from_secs(10), Duration::from_secs(60)],
        };
        let waits: Vec<u64> = (2..=5).map(|attempt| queues.delay_before(attempt).as_secs()).collect();
        assert_eq!(waits, [10, 60, 60, 60]);
        assert_eq!(queues.queue_for(Duration::from_secs(60)), "w.retry.60s");
    }
}
