//! Dead-lettering with reasons, and what a dead letter is when read back (its stable id).
//!
//! A plain `basic.reject` dead-letters a message with only RabbitMQ's `x-death` header;
//! operators need to know *why*. So the worker republishes the original body and
//! headers to the dead-letter exchange with reason headers added, waits for the
//! broker's confirm, and only then acks the original. If that publish fails, it falls
//! back to `basic.reject` so the broker dead-letters the message itself (at-least-once
//! on the work queue): either way the message is never lost.

use super::headers::{HeaderMap, HeaderValue, from_field_table};
use super::publisher::Outgoing;
use super::session::InboundDelivery;
use super::{AmqpError, ConfirmedPublisher};

/// Header names carrying the reason. Stable: `dlq list` and replay tooling read them.
pub mod header {
    pub const KIND: &str = "x-failure-kind";
    pub const STEP: &str = "x-failed-step";
    pub const MESSAGE: &str = "x-failure-message";
    pub const TRANSIENT: &str = "x-failure-transient";
    pub const ATTEMPTS: &str = "x-attempts";
    pub const RUNNER: &str = "x-runner-id";
    pub const TASK_ID: &str = "x-task-id";
    pub const SPEC: &str = "x-spec-name";
    pub const FAILED_AT: &str = "x-failed-at";
    /// The attempt a delivery is (1 for the first run); set on retry copies.
    pub const ATTEMPT: &str = "x-attempt";
    /// The Dispatcher's routing key, kept when a retry travels by queue name.
    pub const ORIGINAL_ROUTING_KEY: &str = "x-original-routing-key";
    /// Why the previous attempt failed (on retry copies).
    pub const LAST_KIND: &str = "x-last-failure-kind";
    pub const LAST_STEP: &str = "x-last-failed-step";
    /// Set by `dlq replay`: when, and how many times this message was replayed.
    pub const REPLAYED_AT: &str = "x-replayed-at";
    pub const REPLAY_COUNT: &str = "x-replay-count";
    /// When the message was last published, in milliseconds since the epoch: set by every
    /// publish of ours (the AMQP `timestamp` property has whole seconds only). The name is
    /// the one RabbitMQ's message-timestamp plugin uses, so a broker stamping it agrees.
    pub const PUBLISHED_AT_MS: &str = "timestamp_in_ms";
}

/// Why a message is being dead-lettered; becomes the `x-failure-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterReason {
    pub kind: String,
    pub step: String,
    /// Already masked of secrets.
    pub message: String,
    pub transient: bool,
    pub attempts: u32,
    pub runner_id: String,
    pub task_id: Option<String>,
    pub spec_name: Option<String>,
}

/// Headers longer than this are cut: a reason is for humans, and test output belongs in
/// the artifacts, not in a header the broker keeps in memory.
const MAX_REASON_BYTES: usize = 2048;

impl DeadLetterReason {
    fn apply_to(&self, headers: &mut HeaderMap) {
        let text = |s: &str| HeaderValue::Text(s.to_string());
        headers.insert(header::KIND.into(), text(&self.kind));
        headers.insert(header::STEP.into(), text(&self.step));
        headers.insert(header::MESSAGE.into(), text(truncate(&self.message, MAX_REASON_BYTES)));
        headers.insert(header::TRANSIENT.into(), HeaderValue::Bool(self.transient));
        headers.insert(header::ATTEMPTS.into(), HeaderValue::Int(i64::from(self.attempts)));
        headers.insert(header::RUNNER.into(), text(&self.runner_id));
        headers.insert(header::FAILED_AT.into(), text(&chrono::Utc::now().to_rfc3339()));
        if let Some(task_id) = &self.task_id {
            headers.insert(header::TASK_ID.into(), text(task_id));
        }
        if let Some(spec) = &self.spec_name {
            headers.insert(header::SPEC.into(), text(spec));
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// How the message reached the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterPath {
    /// Republished with reason headers, original acked.
    WithReason,
    /// Our publish failed; the broker dead-lettered it on reject (reason in logs only).
    BrokerReject,
}

impl InboundDelivery {
    /// Moves this delivery to the dead-letter exchange with `reason`; see the module docs.
    pub async fn dead_letter(
        &self,
        publisher: &ConfirmedPublisher,
        dead_letter_exchange: &str,
        reason: &DeadLetterReason,
    ) -> Result<DeadLetterPath, AmqpError> {
        let mut headers = super::retry::without_broker_headers(self.headers());
        reason.apply_to(&mut headers);
        let routing_key = self.original_routing_key();
        let published = publisher
            .publish(Outgoing {
                exchange: dead_letter_exchange,
                routing_key: &routing_key,
                body: self.body(),
                headers: &headers,
                mandatory: true,
            })
            .await;
        match published {
            Ok(()) => {
                self.ack().await?;
                Ok(DeadLetterPath::WithReason)
            }
            Err(error) => {
                tracing::warn!(%error, "dead-letter publish failed; rejecting for broker dead-lettering");
                self.reject_to_dead_letter().await?;
                Ok(DeadLetterPath::BrokerReject)
            }
        }
    }
}

/// A message read from a dead-letter queue.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetter {
    /// Stable across browses and unique to the content: see [`letter_id`]. Every `dlq`
    /// subcommand accepts it, so a letter without a task id can still be addressed.
    pub id: String,
    /// The routing key it was first published with (`x-original-routing-key` once a
    /// browse has put it back in the queue, which rewrites the delivery's own key).
    pub routing_key: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl DeadLetter {
    /// The letter a delivery from a dead-letter queue carries.
    pub(crate) fn from_delivery(delivery: &lapin::message::Delivery) -> DeadLetter {
        let mut headers = from_field_table(delivery.properties.headers().as_ref());
        // Counted by the broker per delivery, not part of what the letter says.
        headers.remove(BROKER_DELIVERY_COUNT);
        let routing_key = headers
            .get(header::ORIGINAL_ROUTING_KEY)
            .and_then(HeaderValue::as_text)
            .map_or_else(|| delivery.routing_key.as_str().to_string(), str::to_string);
        DeadLetter {
            id: letter_id(&routing_key, &headers, &delivery.data),
            routing_key,
            headers,
            body: String::from_utf8_lossy(&delivery.data).into_owned(),
        }
    }

    /// A reason header as text, if present.
    pub fn header_text(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| match v {
            HeaderValue::Text(s) | HeaderValue::Other(s) => s.clone(),
            HeaderValue::Int(i) => i.to_string(),
            HeaderValue::Bool(b) => b.to_string(),
        })
    }
}

/// The header a quorum queue adds to each delivery: how often it was returned.
pub(crate) const BROKER_DELIVERY_COUNT: &str = "x-delivery-count";

/// Hex digits of the SHA-256 kept in a dead letter's id: 64 bits, so two different
/// letters in one queue (at most [`super::MAX_SCAN`] per pass) never share one in
/// practice, and short enough to type.
const LETTER_ID_HEX_DIGITS: usize = 16;

/// A dead letter's id: a hash of its routing key, headers and body. It leaves out what
/// a browse changes (the broker's delivery count, and `x-original-routing-key`, which
/// only takes over the routing key's role), so the same letter keeps its id; two
/// letters for one task differ in `x-failed-at` at least. An exact duplicate (a
/// republish the process did not live to confirm) shares the id of its original.
pub fn letter_id(routing_key: &str, headers: &HeaderMap, body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(routing_key.as_bytes());
    hasher.update([0]);
    for (name, value) in headers {
        if name == header::ORIGINAL_ROUTING_KEY || name == BROKER_DELIVERY_COUNT {
            continue;
        }
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(serde_json::to_string(value).unwrap_or_default().as_bytes());
        hasher.update([0]);
    }
    hasher.update(body);
    let mut id = hex::encode(hasher.finalize());
    id.truncate(LETTER_ID_HEX_DIGITS);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, HeaderValue)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn a_letter_keeps_its_id_when_a_browse_counts_it_and_moves_its_routing_key_to_a_header() {
        let text = |s: &str| HeaderValue::Text(s.into());
        let stored =
            headers(&[(header::TASK_ID, text("t.1")), (header::FAILED_AT, text("2026-01-01T00:00:00Z"))]);
        let mut put_back = stored.clone();
        put_back.insert(header::ORIGINAL_ROUTING_KEY.into(), text("task.backend"));
        put_back.insert(BROKER_DELIVERY_COUNT.into(), HeaderValue::Int(3));
        let id = letter_id("task.backend", &stored, b"{}");
        assert_eq!(id.len(), LETTER_ID_HEX_DIGITS);
        assert_eq!(letter_id("task.backend", &put_back, b"{}"), id);

        let mut later = stored.clone();
        later.insert(header::FAILED_AT.into(), text("2026-01-01T00:00:01Z"));
        assert_ne!(letter_id("task.backend", &later, b"{}"), id, "another dead-lettering");
        assert_ne!(letter_id("task.other", &stored, b"{}"), id);
        assert_ne!(letter_id("task.backend", &stored, b"{ }"), id);
    }
}
