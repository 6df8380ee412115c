//! The AMQP adapter: the only module that speaks to RabbitMQ (lapin).
//!
//! It declares the topology, publishes with confirms, consumes, and offers the
//! mechanics of settling a delivery (ack, dead-letter). It never decides *whether* to
//! ack: that is the worker's delivery loop, the one place that maps an outcome to a
//! settlement.

mod dead_letter;
mod dlq;
mod headers;
mod mirror_topology;
mod publisher;
mod retry;
mod session;
mod topology;

pub use dead_letter::{DeadLetter, DeadLetterPath, DeadLetterReason, header, letter_id};
pub use dlq::{DlqCursor, HeldLetter, MAX_SCAN, browse_queue};
pub use headers::{HeaderMap, HeaderValue};
pub use mirror_topology::MirrorTopology;
pub use publisher::{AmqpEventSink, ConfirmedPublisher, Outgoing};
pub use retry::RetryQueues;
pub use session::{AmqpSession, ExchangeTap, InboundDelivery, TaskConsumer};
pub use topology::{TopologyNames, declare_topology};

/// A failure talking to the broker. Broker trouble is transient by nature: the message
/// stays unacked (or unpublished) and a reconnect or redelivery completes the work.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("cannot connect to the broker at {url}: {source}")]
    Connect { url: String, source: lapin::Error },
    #[error("{operation} failed: {source}")]
    Protocol { operation: String, source: lapin::Error },
    #[error("the broker refused the message published to exchange '{exchange}' with key '{routing_key}'")]
    Nacked { exchange: String, routing_key: String },
    #[error("no queue is bound to exchange '{exchange}' for key '{routing_key}': the message was returned")]
    Unroutable { exchange: String, routing_key: String },
    #[error("{operation} came too late: the delivery's channel is gone and the broker has requeued it")]
    StaleDelivery { operation: String },
}

impl AmqpError {
    /// True when the broker refused who we are: bad credentials (`ACCESS_REFUSED` at
    /// login or on a resource) or a virtual host the user may not open (`NOT_ALLOWED`).
    /// Retrying does not help; an operator must fix the credentials or permissions.
    pub fn is_authentication(&self) -> bool {
        use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
        let source = match self {
            AmqpError::Connect { source, .. } | AmqpError::Protocol { source, .. } => source,
            _ => return false,
        };
        match source.kind() {
            lapin::ErrorKind::ProtocolError(error) => matches!(
                error.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
                    | AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
            ),
            lapin::ErrorKind::AuthProviderError(_) => true,
            _ => false,
        }
    }

    pub(crate) fn protocol(operation: impl Into<String>) -> impl FnOnce(lapin::Error) -> AmqpError {
        let operation = operation.into();
        move |source| AmqpError::Protocol { operation, source }
    }
}

/// Strips the password from an AMQP URL for error messages and logs.
pub fn redact_amqp_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:****{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            super::redact_amqp_url("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:****@127.0.0.1:5672/%2f"
        );
        assert_eq!(super::redact_amqp_url("amqp://localhost"), "amqp://localhost");
    }
}
