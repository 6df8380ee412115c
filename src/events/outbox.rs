//! The event outbox: lifecycle events that could not be published (broker away, events
//! channel closed, confirm nacked) wait here, in memory and in order, and a drainer
//! publishes them with their original event ids once the link is back, so the mirror
//! deduplicates and the Task Registry converges on what happened.
//!
//! Ordering: while anything is parked, newer events queue behind it instead of going
//! straight out, and the drainer removes an event only after its confirm, so one task's
//! events reach the exchange in the order they happened. (Events of different tasks
//! racing into an empty outbox are ordered as the broker confirms them, as before.)
//!
//! The outbox is bounded ([`MAX_PARKED_EVENTS`], [`MAX_PARKED_BYTES`]); past the bound
//! the oldest event that does not change a task's status goes first (see
//! [`ParkedEvents::park`]). It lives in memory only: a worker killed with events parked
//! loses them; a worker stopped gracefully tries to drain within its shutdown grace and
//! logs what it could not publish.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use super::{Event, EventError, EventSink};

/// At most this many parked events. A task emits about twenty events; 10 000 is hundreds
/// of tasks' worth, far more than a worker finishes during an outage it rides out (its
/// acks fail while the broker is away too), while keeping the worst case to tens of MiB.
pub const MAX_PARKED_EVENTS: usize = 10_000;
/// At most this many bytes of parked events (their JSON). Events are a few KiB at most,
/// but a failure message can be long: this bounds memory whatever the events carry.
pub const MAX_PARKED_BYTES: usize = 16 * 1024 * 1024;
/// The drainer's first wait after a failed publish, doubled up to [`MAX_DRAIN_DELAY`].
/// A reconnect wakes it at once ([`EventOutbox::wake`]); the delay only paces retries
/// against a link that is still down.
const FIRST_DRAIN_DELAY: Duration = Duration::from_millis(200);
/// The longest wait between the drainer's tries: the outbox drains at most this long
/// after the link is back even if no reconnect is signalled (an events channel that
/// recovered on its own).
const MAX_DRAIN_DELAY: Duration = Duration::from_secs(5);

/// At most this many task ids named in the log line of what a shutdown lost: enough to
/// look a few up, without a line of ten thousand ids.
const LOST_TASKS_LOGGED: usize = 20;

/// How much the outbox may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxBound {
    pub events: usize,
    pub bytes: usize,
}

impl Default for OutboxBound {
    fn default() -> Self {
        OutboxBound { events: MAX_PARKED_EVENTS, bytes: MAX_PARKED_BYTES }
    }
}

/// The bounded, ordered queue of parked events and its drop policy. No IO.
#[derive(Debug)]
pub struct ParkedEvents {
    queue: VecDeque<(Event, usize)>,
    bytes: usize,
    bound: OutboxBound,
}

impl ParkedEvents {
    pub fn new(bound: OutboxBound) -> Self {
        ParkedEvents { queue: VecDeque::new(), bytes: 0, bound }
    }

    /// Parks `event` (of `size` bytes) at the back, and returns what had to be dropped to
    /// stay within the bound. Progress events (steps, artifacts, warnings, runner events)
    /// go first, oldest first: the registry's status comes from `TaskStarted` and the
    /// terminal events, and `TaskCompleted` repeats the artifact URIs. When only status
    /// events are left, the newest is refused: its task finished while the broker was
    /// away, so its ack failed too and the redelivery announces its end again.
    pub fn park(&mut self, event: Event, size: usize) -> Vec<Event> {
        let mut dropped = Vec::new();
        let over = |queue_len: usize, bytes: usize, bound: OutboxBound| {
            queue_len + 1 > bound.events || bytes + size > bound.bytes
        };
        while over(self.queue.len(), self.bytes, self.bound) {
            match self.queue.iter().position(|(parked, _)| !parked.event_type.changes_task_status()) {
                Some(oldest_progress) => {
                    if let Some((parked, parked_size)) = self.queue.remove(oldest_progress) {
                        self.bytes -= parked_size;
                        dropped.push(parked);
                    }
                }
                None => break,
            }
        }
        if over(self.queue.len(), self.bytes, self.bound) {
            // Only status events are left and there is still no room (or the event alone
            // is larger than the bound).
            dropped.push(event);
        } else {
            self.bytes += size;
            self.queue.push_back((event, size));
        }
        dropped
    }

    /// The oldest parked event: the next to publish.
    pub fn front(&self) -> Option<&Event> {
        self.queue.front().map(|(event, _)| event)
    }

    /// Removes the front event once it was published, if it is still `event_id` (it may
    /// have been dropped while its publish was in flight).
    pub fn published(&mut self, event_id: &str) {
        if self.front().is_some_and(|front| front.event_id == event_id)
            && let Some((_, size)) = self.queue.pop_front()
        {
            self.bytes -= size;
        }
    }

    /// Empties the outbox, returning what it held (shutdown: what is lost).
    pub fn take_all(&mut self) -> Vec<Event> {
        self.bytes = 0;
        self.queue.drain(..).map(|(event, _)| event).collect()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes held (the parked events' JSON).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

struct Shared {
    /// Where events go when the link is up (the AMQP sink).
    inner: Arc<dyn EventSink>,
    state: Mutex<State>,
    /// Wakes the drainer early: the link was re-established.
    wake: Notify,
    /// Fired when the drainer emptied the outbox.
    drained: Notify,
}

struct State {
    parked: ParkedEvents,
    /// Whether a drainer task is running (at most one, so events leave in order).
    draining: bool,
}

/// An [`EventSink`] that parks what `inner` cannot publish and drains it in order.
/// Clones share one outbox.
#[derive(Clone)]
pub struct EventOutbox {
    shared: Arc<Shared>,
}

impl EventOutbox {
    pub fn new(inner: Arc<dyn EventSink>, bound: OutboxBound) -> Self {
        let state = State { parked: ParkedEvents::new(bound), draining: false };
        EventOutbox {
            shared: Arc::new(Shared {
                inner,
                state: Mutex::new(state),
                wake: Notify::new(),
                drained: Notify::new(),
            }),
        }
    }

    /// Events waiting to be published.
    pub fn depth(&self) -> usize {
        self.shared.lock().parked.len()
    }

    /// Tells the drainer to try now (the delivery loop calls this after a reconnect).
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// Waits up to `within` for the outbox to drain; then logs and forgets what is still
    /// parked. Returns how many events were lost.
    pub async fn flush(&self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let drained = self.shared.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.depth() == 0 {
                return 0;
            }
            self.wake();
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                break;
            }
        }
        let lost = self.shared.lock().parked.take_all();
        crate::metrics::set_event_outbox_depth(0);
        if !lost.is_empty() {
            let mut outcomes_lost: Vec<&str> = lost
                .iter()
                .filter(|e| e.event_type.changes_task_status())
                .filter_map(|e| e.task_id.as_deref())
                .collect();
            outcomes_lost.sort_unstable();
            outcomes_lost.dedup();
            let tasks_with_status_lost = outcomes_lost.len();
            outcomes_lost.truncate(LOST_TASKS_LOGGED);
            tracing::error!(
                lost = lost.len(),
                tasks_with_status_lost,
                some_of_those_tasks = %outcomes_lost.join(","),
                "stopping with lifecycle events still in the outbox; they are lost"
            );
        }
        lost.len()
    }

    /// Parks `event` at the back; `failure` is why it could not be published, `None`
    /// when it only queues behind events already parked.
    fn park(&self, event: &Event, failure: Option<&EventError>) {
        let size = serde_json::to_vec(event).map(|body| body.len()).unwrap_or(0);
        let mut state = self.shared.lock();
        let state_was_empty = state.parked.is_empty();
        let dropped = state.parked.park(event.clone(), size);
        let depth = state.parked.len();
        let start_drainer = !state.draining;
        state.draining = true;
        drop(state);
        crate::metrics::set_event_outbox_depth(depth);
        if state_was_empty {
            tracing::warn!(
                error = failure.map(tracing::field::display),
                event_id = %event.event_id,
                "lifecycle events parked in the outbox until the broker takes them"
            );
        } else {
            tracing::debug!(event_id = %event.event_id, depth, "lifecycle event parked behind earlier ones");
        }
        for lost in &dropped {
            crate::metrics::record_event_outbox_dropped();
            tracing::warn!(
                event_type = lost.event_type.name(),
                event_id = %lost.event_id,
                task_id = lost.task_id.as_deref(),
                depth,
                "event outbox full; lifecycle event dropped"
            );
        }
        if start_drainer {
            tokio::spawn(drain(self.shared.clone()));
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock still guards a consistent state: every update under it is one
        // push, pop or flag write, which a panic cannot leave half done.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Publishes the parked events front to back until none is left.
async fn drain(shared: Arc<Shared>) {
    let mut delay = FIRST_DRAIN_DELAY;
    let mut published = 0usize;
    loop {
        let head = {
            let mut state = shared.lock();
            match state.parked.front() {
                Some(event) => event.clone(),
                None => {
                    state.draining = false;
                    break;
                }
            }
        };
        match shared.inner.publish(&head).await {
            Ok(()) => {
                let depth = {
                    let mut state = shared.lock();
                    state.parked.published(&head.event_id);
                    state.parked.len()
                };
                crate::metrics::set_event_outbox_depth(depth);
                published += 1;
                delay = FIRST_DRAIN_DELAY;
            }
            Err(error) => {
                tracing::debug!(%error, retry_in_ms = delay.as_millis() as u64, "event outbox still cannot publish");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shared.wake.notified() => {}
                }
                delay = (delay * 2).min(MAX_DRAIN_DELAY);
            }
        }
    }
    tracing::info!(published, "event outbox drained");
    shared.drained.notify_waiters();
}

impl EventSink for EventOutbox {
    /// Publishes through `inner`, or parks: always behind events already parked, and
    /// whenever `inner` fails. Parking is success for the caller: the event will go out.
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, Result<(), EventError>> {
        Box::pin(async move {
            let behind_parked = !self.shared.lock().parked.is_empty();
            if behind_parked {
                self.park(event, None);
            } else if let Err(error) = self.shared.inner.publish(event).await {
                self.park(event, Some(&error));
            }
            Ok(())
        })
    }
}
