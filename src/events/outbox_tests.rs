//! The outbox's bound, drop policy and ordering, against a sink that can be switched
//! off the way a broker goes away (its publishes fail until it is switched back on).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::{
    Event, EventError, EventOutbox, EventSink, EventSubject, EventType, MemorySink, OutboxBound, ParkedEvents,
};

fn event(task: &str, event_type: EventType, discriminator: &str) -> Event {
    let subject = EventSubject {
        task_id: Some(task.into()),
        spec_name: Some("spec".into()),
        runner_id: "r1".into(),
        attempt: 1,
    };
    subject.event(event_type, discriminator, serde_json::json!({}))
}

fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.event_id.clone()).collect()
}

#[test]
fn past_the_count_bound_the_oldest_progress_event_is_dropped_first() {
    let mut parked = ParkedEvents::new(OutboxBound { events: 3, bytes: usize::MAX });
    let started = event("1", EventType::TaskStarted, "");
    let step = event("1", EventType::StepStarted, "test");
    let artifact = event("1", EventType::ArtifactUploaded, "diff");
    let completed = event("1", EventType::TaskCompleted, "");
    for e in [&started, &step, &artifact] {
        assert!(parked.park(e.clone(), 10).is_empty());
    }
    assert_eq!(parked.park(completed.clone(), 10), vec![step]);
    assert_eq!(parked.len(), 3);
    assert_eq!(parked.bytes(), 30);
    assert_eq!(ids(&parked.take_all()), ids(&[started, artifact, completed]), "order kept");
}

#[test]
fn with_only_status_events_left_the_newest_is_refused() {
    let mut parked = ParkedEvents::new(OutboxBound { events: 2, bytes: usize::MAX });
    let one = event("1", EventType::TaskCompleted, "");
    let two = event("2", EventType::TaskFailed, "");
    let three = event("3", EventType::TaskCompleted, "");
    parked.park(one.clone(), 1);
    parked.park(two.clone(), 1);
    assert_eq!(parked.park(three.clone(), 1), vec![three]);
    assert_eq!(ids(&parked.take_all()), ids(&[one, two]));
}

#[test]
fn the_byte_bound_drops_progress_events_until_the_new_one_fits() {
    let mut parked = ParkedEvents::new(OutboxBound { events: usize::MAX, bytes: 100 });
    let steps: Vec<Event> =
        ["slot", "workspace", "implement"].iter().map(|s| event("1", EventType::StepStarted, s)).collect();
    for step in &steps {
        parked.park(step.clone(), 40);
    }
    assert_eq!(parked.len(), 2, "the third did not fit: the first made room");
    let failed = event("1", EventType::TaskFailed, "");
    assert_eq!(ids(&parked.park(failed.clone(), 70)), ids(&steps[1..]));
    assert_eq!(parked.bytes(), 70);
    // An event larger than the whole bound is refused, and nothing else goes for it.
    let huge = event("2", EventType::StepStarted, "test");
    assert_eq!(ids(&parked.park(huge.clone(), 101)), ids(&[huge]));
    assert_eq!(ids(&parked.take_all()), ids(&[failed]));
}

#[test]
fn a_published_front_is_removed_only_if_it_is_still_the_front() {
    let mut parked = ParkedEvents::new(OutboxBound::default());
    let a = event("1", EventType::StepStarted, "a");
    let b = event("1", EventType::StepStarted, "b");
    parked.park(a.clone(), 5);
    parked.park(b.clone(), 5);
    parked.published(&b.event_id);
    assert_eq!(parked.len(), 2);
    parked.published(&a.event_id);
    assert_eq!(parked.front().map(|e| e.event_id.clone()), Some(b.event_id));
    assert_eq!(parked.bytes(), 5);
}

/// A sink whose publishes fail while `down` is set.
struct SwitchableSink {
    down: AtomicBool,
    taken: MemorySink,
}

impl EventSink for SwitchableSink {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), EventError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(EventError { event_type: event.event_type.name(), reason: "link down".into() });
            }
            self.taken.publish(event).await
        })
    }
}

#[tokio::test]
async fn events_parked_while_the_sink_is_down_go_out_in_order_once_it_is_back() {
    let sink = Arc::new(SwitchableSink { down: AtomicBool::new(false), taken: MemorySink::default() });
    let outbox = EventOutbox::new(sink.clone(), OutboxBound::default());
    let sequence: Vec<Event> = ["slot", "workspace", "implement", "test"]
        .iter()
        .map(|step| event("1", EventType::StepStarted, step))
        .collect();
    outbox.publish(&sequence[0]).await.unwrap();
    sink.down.store(true, Ordering::SeqCst);
    outbox.publish(&sequence[1]).await.unwrap();
    outbox.publish(&sequence[2]).await.unwrap();
    assert_eq!(outbox.depth(), 2);
    sink.down.store(false, Ordering::SeqCst);
    // Behind the parked ones, though the sink would take it directly now.
    outbox.publish(&sequence[3]).await.unwrap();
    outbox.wake();
    assert_eq!(outbox.flush(Duration::from_secs(30)).await, 0, "nothing lost");
    assert_eq!(ids(&sink.taken.events()), ids(&sequence));
    assert_eq!(outbox.depth(), 0);
}

#[tokio::test]
async fn a_flush_that_cannot_drain_forgets_and_counts_what_it_loses() {
    let sink = Arc::new(SwitchableSink { down: AtomicBool::new(true), taken: MemorySink::default() });
    let outbox = EventOutbox::new(sink.clone(), OutboxBound::default());
    outbox.publish(&event("1", EventType::TaskStarted, "")).await.unwrap();
    outbox.publish(&event("1", EventType::TaskCompleted, "")).await.unwrap();
    assert_eq!(outbox.flush(Duration::ZERO).await, 2);
    assert_eq!(outbox.depth(), 0);
    sink.down.store(false, Ordering::SeqCst);
    outbox.wake();
    outbox.publish(&event("2", EventType::TaskStarted, "")).await.unwrap();
    assert_eq!(sink.taken.events().len(), 1, "only the event published after the flush went out");
}
