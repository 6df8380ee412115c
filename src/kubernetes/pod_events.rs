//! Lifecycle events from inside a task pod: the pod writes each as one line of its log,
//! and the worker, following that log, publishes them on the events exchange as if it
//! had run the steps itself. The pod needs no broker credentials for it.
//!
//! The pod runs with the delivery's attempt, so its events carry the ids the worker's own
//! would (ids are deterministic: `crate::events`), and a relayed event that arrives twice
//! (a redelivered task reading the log again) is deduplicated downstream. `TaskStarted`
//! and the terminal events are the worker's own: it publishes them from what it saw and
//! checked, so the pod's are not relayed.

use futures_util::future::BoxFuture;

use crate::events::{Event, EventError, EventSink, EventType};

/// What starts an event line in a pod's log.
pub const EVENT_LINE_PREFIX: &str = "agent-runner-event ";

/// Writes each event as a line on standard output (`run --event-lines`).
#[derive(Debug, Default, Clone, Copy)]
pub struct EventLines;

impl EventSink for EventLines {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), EventError>> {
        Box::pin(async move {
            let json = serde_json::to_string(event)
                .map_err(|e| EventError { event_type: event.event_type.name(), reason: e.to_string() })?;
            println!("{EVENT_LINE_PREFIX}{json}");
            Ok(())
        })
    }
}

/// The event a pod's log line carries, when it is one the worker relays.
pub fn relayed_event(line: &str) -> Option<Event> {
    let event: Event = serde_json::from_str(line.strip_prefix(EVENT_LINE_PREFIX)?).ok()?;
    let worker_own = matches!(
        event.event_type,
        EventType::TaskStarted
            | EventType::TaskCompleted
            | EventType::TaskFailed
            | EventType::TaskCancelled
            | EventType::TaskDeadLettered
            | EventType::TaskRetrying
            | EventType::RunnerStarted
            | EventType::RunnerStopping
    );
    (!worker_own).then_some(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventSubject;

    fn line(event_type: EventType) -> String {
        let subject = EventSubject {
            task_id: Some("t".into()),
            spec_name: Some("s".into()),
            runner_id: "pod".into(),
            attempt: 2,
        };
        let event = subject.event(event_type, "test", serde_json::json!({ "step": "test" }));
        format!("{EVENT_LINE_PREFIX}{}", serde_json::to_string(&event).unwrap())
    }

    #[test]
    fn step_events_are_relayed_with_their_ids_and_the_workers_own_are_not() {
        let relayed = relayed_event(&line(EventType::StepStarted)).unwrap();
        assert_eq!((relayed.event_type, relayed.attempt), (EventType::StepStarted, 2));
        assert_eq!(relayed.event_id.len(), 32);
        assert!(relayed_event(&line(EventType::TaskStarted)).is_none());
        assert!(relayed_event(&line(EventType::TaskFailed)).is_none());
        assert!(relayed_event("{\"level\":\"INFO\"}").is_none());
        assert!(relayed_event("agent-runner-event {not json").is_none());
    }
}
