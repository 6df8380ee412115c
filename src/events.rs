//! Lifecycle events (DESIGN.md §4): what they look like, how their ids are derived, and
//! the sink they go to.
//!
//! Event ids are deterministic (a hash of task, attempt, type and discriminator), never
//! random or time-based, so a redelivered task that emits the same event again produces
//! the same id and the registry mirror can deduplicate. `TaskCompleted` leaves the
//! attempt out: a task completes once, and an attempt that only finishes what an earlier
//! one pushed (idempotent redelivery) must announce the same completion, not a second.

mod outbox;
#[cfg(test)]
mod outbox_tests;

pub use outbox::{EventOutbox, MAX_PARKED_BYTES, MAX_PARKED_EVENTS, OutboxBound, ParkedEvents};

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The kinds of lifecycle event this worker emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    TaskStarted,
    StepStarted,
    StepCompleted,
    ArtifactUploaded,
    TaskCompleted,
    TaskFailed,
    TaskRetrying,
    TaskDeadLettered,
    TaskCancelled,
    /// A warning: a playbook command crossed a resource limit and was killed.
    ResourceLimitReached,
    RunnerStarted,
    RunnerStopping,
}

impl EventType {
    /// The event's name as it appears in the `type` field.
    pub fn name(self) -> &'static str {
        match self {
            EventType::TaskStarted => "TaskStarted",
            EventType::StepStarted => "StepStarted",
            EventType::StepCompleted => "StepCompleted",
            EventType::ArtifactUploaded => "ArtifactUploaded",
            EventType::TaskCompleted => "TaskCompleted",
            EventType::TaskFailed => "TaskFailed",
            EventType::TaskRetrying => "TaskRetrying",
            EventType::TaskDeadLettered => "TaskDeadLettered",
            EventType::TaskCancelled => "TaskCancelled",
            EventType::ResourceLimitReached => "ResourceLimitReached",
            EventType::RunnerStarted => "RunnerStarted",
            EventType::RunnerStopping => "RunnerStopping",
        }
    }

    /// Whether the Task Registry's status of the task follows from this event (the
    /// mirror's mapping): the events the outbox keeps longest when it must drop some.
    pub fn changes_task_status(self) -> bool {
        matches!(
            self,
            EventType::TaskStarted
                | EventType::TaskCompleted
                | EventType::TaskFailed
                | EventType::TaskCancelled
                | EventType::TaskDeadLettered
        )
    }

    /// The routing key on the events exchange: `task.<snake_name>` or `runner.<snake_name>`.
    pub fn routing_key(self) -> String {
        let name = self.name();
        let (prefix, rest) = match name.strip_prefix("Runner") {
            Some(rest) => ("runner", rest),
            None => ("task", name.strip_prefix("Task").unwrap_or(name)),
        };
        let mut snake = String::new();
        for (i, c) in rest.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        }
        format!("{prefix}.{snake}")
    }
}

/// One lifecycle event, as published (JSON) on the events exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Deterministic for (task, attempt, type, discriminator); see the module docs.
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    pub task_id: Option<String>,
    pub spec_name: Option<String>,
    pub runner_id: String,
    pub attempt: u32,
    /// RFC 3339.
    pub occurred_at: String,
    pub data: serde_json::Value,
}

/// Who the event is about: a task attempt, or the runner itself.
#[derive(Debug, Clone)]
pub struct EventSubject {
    pub task_id: Option<String>,
    pub spec_name: Option<String>,
    pub runner_id: String,
    pub attempt: u32,
}

impl EventSubject {
    /// Builds an event. `discriminator` separates events of one type within an attempt
    /// (the step name for `StepStarted`, the artifact type for `ArtifactUploaded`).
    pub fn event(&self, event_type: EventType, discriminator: &str, data: serde_json::Value) -> Event {
        let mut hasher = Sha256::new();
        let attempt = if event_type == EventType::TaskCompleted { 0 } else { self.attempt };
        for part in [
            self.spec_name.as_deref().unwrap_or(""),
            self.task_id.as_deref().unwrap_or(&self.runner_id),
            &attempt.to_string(),
            event_type.name(),
            discriminator,
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        Event {
            event_id: hex::encode(&hasher.finalize()[..16]),
            event_type,
            task_id: self.task_id.clone(),
            spec_name: self.spec_name.clone(),
            runner_id: self.runner_id.clone(),
            attempt: self.attempt,
            occurred_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            data,
        }
    }
}

/// Why an event could not be published.
#[derive(Debug, thiserror::Error)]
#[error("event {event_type} could not be published: {reason}")]
pub struct EventError {
    pub event_type: &'static str,
    pub reason: String,
}

/// Where events go. The broker-backed sink lives in `amqp`; [`MemorySink`] serves the
/// broker-less `run` command and tests.
pub trait EventSink: Send + Sync {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), EventError>>;
}

/// Publishes `event`, logging instead of failing when it cannot: the work and its
/// artifacts matter more than one event. Behind the worker's [`EventOutbox`] a failed
/// publish is parked and retried instead of returned; other sinks may still fail here.
pub async fn publish_best_effort(sink: &dyn EventSink, event: &Event) {
    if let Err(error) = sink.publish(event).await {
        tracing::warn!(%error, "lifecycle event not published");
    }
}

/// Keeps events in memory, in order.
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    events: Arc<Mutex<Vec<Event>>>,
}

impl MemorySink {
    /// The events published so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl EventSink for MemorySink {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), EventError>> {
        Box::pin(async move {
            if let Ok(mut events) = self.events.lock() {
                events.push(event.clone());
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(attempt: u32) -> EventSubject {
        EventSubject {
            task_id: Some("1.1".into()),
            spec_name: Some("chat".into()),
            runner_id: "r1".into(),
            attempt,
        }
    }

    #[test]
    fn ids_are_stable_per_attempt_and_distinct_otherwise() {
        let a = subject(1).event(EventType::StepStarted, "workspace", serde_json::json!({}));
        let b = subject(1).event(EventType::StepStarted, "workspace", serde_json::json!({"x": 1}));
        let c = subject(1).event(EventType::StepStarted, "implement", serde_json::json!({}));
        let d = subject(2).event(EventType::StepStarted, "workspace", serde_json::json!({}));
        assert_eq!(a.event_id, b.event_id);
        assert_ne!(a.event_id, c.event_id);
        assert_ne!(a.event_id, d.event_id);
        assert_eq!(a.event_id.len(), 32);
        let done = |attempt| subject(attempt).event(EventType::TaskCompleted, "", serde_json::json!({}));
        assert_eq!(done(1).event_id, done(3).event_id, "a task completes once, whatever the attempt");
    }

    #[test]
    fn routing_keys_follow_the_design() {
        assert_eq!(EventType::TaskStarted.routing_key(), "task.started");
        assert_eq!(EventType::TaskDeadLettered.routing_key(), "task.dead_lettered");
        assert_eq!(EventType::StepCompleted.routing_key(), "task.step_completed");
        assert_eq!(EventType::ArtifactUploaded.routing_key(), "task.artifact_uploaded");
        assert_eq!(EventType::RunnerStopping.routing_key(), "runner.stopping");
    }
}
