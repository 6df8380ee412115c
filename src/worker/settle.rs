//! One delivery from bytes to settlement: validate, run, then ack, retry later,
//! dead-letter, or leave it to the broker.

use futures_util::FutureExt;
use tracing::Instrument;

use super::Worker;
use super::control::TaskHandle;
use crate::amqp::{DeadLetterPath, DeadLetterReason, HeaderMap, InboundDelivery, header};
use crate::error::{Classify, FailureKind, TaskFailure};
use crate::events::{EventSubject, EventType};
use crate::pipeline::{RunResult, StopReason};
use crate::task::{Task, parse_task};

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    Acked,
    DeadLettered,
    /// Parked in a retry queue (transient failure), original acked.
    Retried,
    /// Neither acked nor dead-lettered (broker trouble, or stopped by shutdown): the
    /// broker redelivers it.
    Unsettled,
}

/// The attempt a delivery is: the `x-attempt` our retries carry (1 when absent) plus
/// the quorum queue's `x-delivery-count`, which counts redeliveries after a crash.
pub fn attempt_of(headers: &HeaderMap) -> u32 {
    let count = |name| headers.get(name).and_then(|v| v.as_int()).and_then(|n| u32::try_from(n).ok());
    count(header::ATTEMPT).unwrap_or(1).max(1).saturating_add(count("x-delivery-count").unwrap_or(0))
}

/// Runs one delivery and settles it. The only function that decides what becomes of a
/// delivery.
///
/// Everything it logs sits in the task's span ([`crate::telemetry::task_span`]), so
/// every line names the task, its spec, this runner and the attempt.
pub async fn settle(worker: &Worker, delivery: InboundDelivery, handle: &TaskHandle) -> Settlement {
    let attempt = attempt_of(&delivery.headers());
    let parsed = parse_task(delivery.body());
    let (task_id, spec_name) = match &parsed {
        Ok(task) => (Some(task.task_id.clone()), Some(task.spec_name.clone())),
        Err(_) => loose_identity(delivery.body()),
    };
    let runner_id = &worker.runner.settings.runner_id;
    let span = crate::telemetry::task_span(task_id.as_deref(), spec_name.as_deref(), runner_id, attempt);
    settle_parsed(worker, delivery, handle, parsed, attempt).instrument(span).await
}

/// [`settle`], inside the task's span.
async fn settle_parsed(
    worker: &Worker,
    delivery: InboundDelivery,
    handle: &TaskHandle,
    parsed: Result<Task, crate::task::ValidationError>,
    attempt: u32,
) -> Settlement {
    let subject = |task_id: Option<String>, spec_name: Option<String>| EventSubject {
        task_id,
        spec_name,
        runner_id: worker.runner.settings.runner_id.clone(),
        attempt,
    };

    let task = match parsed {
        Ok(task) => task,
        Err(invalid) => {
            let (task_id, spec_name) = loose_identity(delivery.body());
            tracing::warn!(error = %invalid, task_id = task_id.as_deref(), "invalid task message");
            let failure = invalid.to_failure("validate");
            return refuse(worker, &delivery, &subject(task_id, spec_name), None, &failure).await;
        }
    };
    let subject = subject(Some(task.task_id.clone()), Some(task.spec_name.clone()));
    if let Some((acknowledgement, failure)) = refusal(worker, &task, handle, attempt) {
        return refuse(worker, &delivery, &subject, acknowledgement, &failure).await;
    }

    let result = run_guarded(worker, &task, &subject, handle).await;
    match &result.error {
        None => match delivery.ack().await {
            Ok(()) => {
                tracing::info!(task_id = %task.task_id, branch = result.branch.as_deref(), resumed = result.resumed, "task completed");
                Settlement::Acked
            }
            Err(error) => {
                tracing::error!(%error, task_id = %task.task_id, "ack failed; the broker will redeliver");
                Settlement::Unsettled
            }
        },
        Some(failure)
            if failure.kind == FailureKind::Cancelled && handle.cause.reason() == StopReason::Shutdown =>
        {
            tracing::info!(task_id = %task.task_id, "stopped by shutdown; left unacked for redelivery");
            Settlement::Unsettled
        }
        Some(failure) if failure.transient && attempt < worker.reliability.max_attempts => {
            tracing::warn!(task_id = %task.task_id, %failure, attempt, "task failed; retrying later");
            retry(worker, &delivery, &subject, failure).await
        }
        Some(failure) => {
            tracing::warn!(task_id = %task.task_id, %failure, attempt, "task failed");
            dead_letter(worker, &delivery, &subject, failure).await
        }
    }
}

/// Why a parsed task must not run at all: delivered too often (the worker died every
/// time), cancelled before it arrived, or naming a remote or slot the configuration
/// does not allow; with the event that answers an operator's
/// cancel, if that is why.
fn refusal(
    worker: &Worker,
    task: &Task,
    handle: &TaskHandle,
    attempt: u32,
) -> Option<(Option<EventType>, TaskFailure)> {
    let max_attempts = worker.reliability.max_attempts;
    if attempt > max_attempts {
        let message = format!(
            "delivered {attempt} times, over reliability.max_attempts {max_attempts}, without ever settling: \
             the worker stopped or crashed while running it each time"
        );
        return Some((None, TaskFailure::new(FailureKind::Crashed, "validate", message)));
    }
    if !handle.identify(&task.task_id) {
        let failure =
            TaskFailure::new(FailureKind::Cancelled, "validate", "cancelled by an operator before it ran");
        return Some((Some(EventType::TaskCancelled), failure));
    }
    // A remote or slot outside the configuration: refused before any git operation.
    worker.runner.admit(task).err().map(|failure| (None, failure))
}

/// Runs the task; a panic becomes a `crashed` failure instead of leaving the delivery
/// unacked on a live channel forever. A panic is a bug that would recur, so it is
/// permanent.
async fn run_guarded(worker: &Worker, task: &Task, subject: &EventSubject, handle: &TaskHandle) -> RunResult {
    let attempt = subject.attempt;
    let run = worker.runner.run_with(task, attempt, &handle.token, &handle.cause);
    match std::panic::AssertUnwindSafe(run).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            let message = format!("the worker panicked while running this task: {what}");
            tracing::error!(task_id = %task.task_id, message, "task panicked");
            let failure = TaskFailure::new(FailureKind::Crashed, "run", message);
            publish(worker, subject, EventType::TaskFailed, failure.event_fields().into()).await;
            let mut result = worker.runner.refused(task, attempt);
            result.error = Some(failure);
            result
        }
    }
}

/// Dead-letters a delivery that is not run. Such a message never started, so its one
/// event is the `TaskDeadLettered` that carries the failure (a `TaskFailed` before it
/// would tell nothing more, and a flood of invalid messages would cost the broker, the
/// mirror and the registry twice). Only an operator's cancel is answered first, with
/// `TaskCancelled`, published beside the dead letter (and so ahead of its
/// `TaskDeadLettered`, which waits for the dead letter's confirm).
async fn refuse(
    worker: &Worker,
    delivery: &InboundDelivery,
    subject: &EventSubject,
    acknowledgement: Option<EventType>,
    failure: &TaskFailure,
) -> Settlement {
    let Some(event) = acknowledgement else {
        return dead_letter(worker, delivery, subject, failure).await;
    };
    let data = failure.event_fields().into();
    let (_, settlement) =
        tokio::join!(publish(worker, subject, event, data), dead_letter(worker, delivery, subject, failure));
    settlement
}

fn reason_for(worker: &Worker, subject: &EventSubject, failure: &TaskFailure) -> DeadLetterReason {
    DeadLetterReason {
        kind: failure.kind.as_str().to_string(),
        step: failure.step.clone(),
        message: worker.runner.services.masker.mask(&failure.message),
        transient: failure.transient,
        attempts: subject.attempt,
        runner_id: subject.runner_id.clone(),
        task_id: subject.task_id.clone(),
        spec_name: subject.spec_name.clone(),
    }
}

async fn retry(
    worker: &Worker,
    delivery: &InboundDelivery,
    subject: &EventSubject,
    failure: &TaskFailure,
) -> Settlement {
    let reason = reason_for(worker, subject, failure);
    let next_attempt = subject.attempt + 1;
    match delivery.retry_later(&worker.session.publisher, &worker.retry, next_attempt, &reason).await {
        Ok(delay) => {
            let data = serde_json::json!({
                "next_attempt": next_attempt, "delay_seconds": delay.as_secs(),
                "reason": reason.kind, "failed_step": reason.step, "message": reason.message,
            });
            publish(worker, subject, EventType::TaskRetrying, data).await;
            Settlement::Retried
        }
        Err(error) => {
            // Without a retry queue, requeue: the redelivery counts as an attempt, so
            // max_attempts still bounds the loop.
            tracing::error!(%error, "could not schedule the retry; requeueing");
            if let Err(error) = delivery.requeue().await {
                tracing::error!(%error, "requeue failed; the broker will redeliver");
            }
            Settlement::Unsettled
        }
    }
}

async fn dead_letter(
    worker: &Worker,
    delivery: &InboundDelivery,
    subject: &EventSubject,
    failure: &TaskFailure,
) -> Settlement {
    let reason = reason_for(worker, subject, failure);
    match delivery.dead_letter(&worker.session.publisher, &worker.names.dead_letter_exchange, &reason).await {
        Ok(path) => {
            crate::metrics::record_dead_letter(failure.kind.as_str());
            // The failure's own fields, as `TaskFailed` has them: for a refused message
            // this is the only event.
            let mut data = failure.event_fields();
            data.insert("attempts".into(), reason.attempts.into());
            data.insert("queue".into(), worker.names.dead_letter_queue.clone().into());
            data.insert("with_reason_headers".into(), (path == DeadLetterPath::WithReason).into());
            // Announced after the settlement, without holding the task slot for the
            // confirm: the message is already safe in the DLQ.
            let event = subject.event(EventType::TaskDeadLettered, "", data.into());
            let events = worker.events.clone();
            let announce = async move { crate::events::publish_best_effort(events.as_ref(), &event).await };
            tokio::spawn(tracing::Instrument::in_current_span(announce));
            Settlement::DeadLettered
        }
        Err(error) => {
            tracing::error!(%error, "dead-lettering failed; the broker will redeliver");
            Settlement::Unsettled
        }
    }
}

async fn publish(worker: &Worker, subject: &EventSubject, event_type: EventType, data: serde_json::Value) {
    let event = subject.event(event_type, "", data);
    crate::events::publish_best_effort(worker.events.as_ref(), &event).await;
}

/// Best-effort task id and spec from a message that failed validation, so the DLQ entry
/// and the `TaskFailed` event can still say which task it was. Only safe-looking
/// identifiers are taken.
fn loose_identity(body: &[u8]) -> (Option<String>, Option<String>) {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let safe = |field: &str| {
        value
            .get(field)
            .and_then(|v| v.as_str())
            .filter(|s| {
                !s.is_empty()
                    && s.len() <= 128
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            })
            .map(str::to_string)
    };
    (safe("task_id"), safe("spec_name"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::HeaderValue;

    #[test]
    fn attempts_add_our_retries_and_the_brokers_redeliveries() {
        let headers = |pairs: &[(&str, i64)]| -> HeaderMap {
            pairs.iter().map(|(k, v)| (k.to_string(), HeaderValue::Int(*v))).collect()
        };
        assert_eq!(attempt_of(&headers(&[])), 1);
        assert_eq!(attempt_of(&headers(&[("x-delivery-count", 2)])), 3);
        assert_eq!(attempt_of(&headers(&[("x-attempt", 3)])), 3);
        assert_eq!(attempt_of(&headers(&[("x-attempt", 3), ("x-delivery-count", 1)])), 4);
        assert_eq!(attempt_of(&headers(&[("x-attempt", -4)])), 1);
    }
}
