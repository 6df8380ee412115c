//! The worker's handle on its running tasks: cancelling one by task id (an operator's
//! control message) or all of them (the end of the shutdown grace period).
//!
//! Control messages arrive on the control exchange (`necrocode.control`), which every
//! worker listens to through a private queue, so a cancel reaches the task wherever it
//! runs. A worker also remembers the last cancelled ids for a while: a task cancelled
//! while still waiting in the queue is dead-lettered as `cancelled` when it arrives.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::pipeline::{StopCause, StopReason};

/// Cancelled task ids remembered for tasks not yet delivered. Ids are short; a thousand
/// covers any burst an operator sends, and the oldest are forgotten first.
const REMEMBERED_CANCELS: usize = 1024;

/// A control message, as published on the control exchange (routing key `cancel`):
/// `{"action": "cancel", "task_id": "1.1"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct ControlMessage {
    pub action: ControlAction,
    pub task_id: String,
}

/// What a control message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlAction {
    Cancel,
}

/// One delivery's stop switch, registered for as long as it runs.
pub struct TaskHandle {
    pub token: CancellationToken,
    pub cause: StopCause,
    id: u64,
    controls: TaskControls,
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.controls.inner.lock() {
            inner.running.remove(&self.id);
        }
    }
}

impl TaskHandle {
    /// Names the task this delivery runs, once its message parsed. Returns false when
    /// that task was cancelled before it arrived.
    pub fn identify(&self, task_id: &str) -> bool {
        let Ok(mut inner) = self.controls.inner.lock() else { return true };
        if inner.cancelled.iter().any(|id| id == task_id) {
            return false;
        }
        if let Some(running) = inner.running.get_mut(&self.id) {
            running.task_id = Some(task_id.to_string());
        }
        true
    }
}

struct Running {
    task_id: Option<String>,
    token: CancellationToken,
    cause: StopCause,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    running: HashMap<u64, Running>,
    cancelled: VecDeque<String>,
}

/// The registry of running deliveries; clones share it.
#[derive(Clone, Default)]
pub struct TaskControls {
    inner: Arc<Mutex<Inner>>,
}

impl TaskControls {
    /// Registers a delivery about to run.
    pub fn register(&self) -> TaskHandle {
        let (token, cause) = (CancellationToken::new(), StopCause::default());
        let mut id = 0;
        if let Ok(mut inner) = self.inner.lock() {
            inner.next_id += 1;
            id = inner.next_id;
            let running = Running { task_id: None, token: token.clone(), cause: cause.clone() };
            inner.running.insert(id, running);
        }
        TaskHandle { token, cause, id, controls: self.clone() }
    }

    /// Cancels `task_id` wherever it runs here, and remembers it for a later delivery.
    /// Returns how many running deliveries were cancelled.
    pub fn cancel(&self, task_id: &str) -> usize {
        let Ok(mut inner) = self.inner.lock() else { return 0 };
        if !inner.cancelled.iter().any(|id| id == task_id) {
            if inner.cancelled.len() == REMEMBERED_CANCELS {
                inner.cancelled.pop_front();
            }
            inner.cancelled.push_back(task_id.to_string());
        }
        let matching = inner.running.values().filter(|r| r.task_id.as_deref() == Some(task_id));
        let mut count = 0;
        for running in matching {
            running.cause.set(StopReason::Cancelled);
            running.token.cancel();
            count += 1;
        }
        count
    }

    /// Stops every running delivery for shutdown: they end without settling.
    pub fn stop_all(&self) -> usize {
        let Ok(inner) = self.inner.lock() else { return 0 };
        for running in inner.running.values() {
            running.cause.set(StopReason::Shutdown);
            running.token.cancel();
        }
        inner.running.len()
    }

    /// Handles one control message body; malformed ones are logged and ignored.
    pub fn apply(&self, body: &[u8]) {
        match serde_json::from_slice::<ControlMessage>(body) {
            Ok(ControlMessage { action: ControlAction::Cancel, task_id }) => {
                let stopped = self.cancel(&task_id);
                tracing::info!(task_id, running_here = stopped, "cancel requested");
            }
            Err(error) => tracing::warn!(%error, "ignoring a malformed control message"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_reaches_the_running_task_and_a_later_delivery() {
        let controls = TaskControls::default();
        let running = controls.register();
        let other = controls.register();
        assert!(running.identify("1.1"));
        assert!(other.identify("2.2"));
        controls.apply(br#"{"action":"cancel","task_id":"1.1"}"#);
        assert!(running.token.is_cancelled());
        assert_eq!(running.cause.reason(), StopReason::Cancelled);
        assert!(!other.token.is_cancelled());
        let later = controls.register();
        assert!(!later.identify("1.1"), "a task cancelled before it arrived is refused");

        controls.apply(b"not json");
        assert_eq!(controls.stop_all(), 3);
        assert_eq!(other.cause.reason(), StopReason::Shutdown);
        drop((running, other, later));
        assert_eq!(controls.stop_all(), 0);
    }
}
