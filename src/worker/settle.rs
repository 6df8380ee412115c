//! One delivery from bytes to settlement: validate, run, then ack or dead-letter.

use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::amqp::{DeadLetterPath, DeadLetterReason, InboundDelivery};
use crate::error::{Classify, TaskFailure};
use crate::events::{EventSubject, EventType};
use crate::task::parse_task;

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    Acked,
    DeadLettered,
    /// Neither acked nor dead-lettered (broker trouble): the broker redelivers it.
    Unsettled,
}

/// Runs one delivery and settles it. The only function that decides ack vs dead-letter.
pub async fn settle(worker: &Worker, delivery: InboundDelivery, cancel: &CancellationToken) -> Settlement {
    // Quorum queues count redeliveries in `x-delivery-count`; the first delivery has none.
    let attempt = delivery
        .headers()
        .get("x-delivery-count")
        .and_then(|v| v.as_int())
        .map_or(1, |count| u32::try_from(count).unwrap_or(u32::MAX).saturating_add(1));
    let subject = |task_id: Option<String>, spec_name: Option<String>| EventSubject {
        task_id,
        spec_name,
        runner_id: worker.runner.settings.runner_id.clone(),
        attempt,
    };

    let task = match parse_task(delivery.body()) {
        Ok(task) => task,
        Err(invalid) => {
            let (task_id, spec_name) = loose_identity(delivery.body());
            tracing::warn!(error = %invalid, task_id = task_id.as_deref(), "invalid task message");
            let failure = invalid.to_failure("validate");
            let subject = subject(task_id, spec_name);
            let data = serde_json::json!({
                "error_kind": failure.kind, "failed_step": failure.step, "message": failure.message,
                "transient": false,
            });
            publish(worker, &subject, EventType::TaskFailed, data).await;
            return dead_letter(worker, &delivery, &subject, &failure).await;
        }
    };

    let result = worker.runner.run(&task, attempt, cancel).await;
    let subject = subject(Some(task.task_id.clone()), Some(task.spec_name.clone()));
    match &result.error {
        None => match delivery.ack().await {
            Ok(()) => {
                tracing::info!(task_id = %task.task_id, branch = ?result.branch, "task completed");
                Settlement::Acked
            }
            Err(error) => {
                tracing::error!(%error, task_id = %task.task_id, "ack failed; the broker will redeliver");
                Settlement::Unsettled
            }
        },
        Some(failure) => {
            tracing::warn!(task_id = %task.task_id, %failure, "task failed");
            dead_letter(worker, &delivery, &subject, failure).await
        }
    }
}

async fn dead_letter(
    worker: &Worker,
    delivery: &InboundDelivery,
    subject: &EventSubject,
    failure: &TaskFailure,
) -> Settlement {
    let masker = &worker.runner.services.masker;
    let reason = DeadLetterReason {
        kind: failure.kind.as_str().to_string(),
        step: failure.step.clone(),
        message: masker.mask(&failure.message),
        transient: failure.transient,
        attempts: subject.attempt,
        runner_id: subject.runner_id.clone(),
        task_id: subject.task_id.clone(),
        spec_name: subject.spec_name.clone(),
    };
    match delivery.dead_letter(&worker.session.publisher, &worker.names.dead_letter_exchange, &reason).await {
        Ok(path) => {
            crate::metrics::record_dead_letter(failure.kind.as_str());
            let data = serde_json::json!({
                "reason": reason.kind, "failed_step": reason.step, "with_reason_headers": path == DeadLetterPath::WithReason,
                "queue": worker.names.dead_letter_queue,
            });
            publish(worker, subject, EventType::TaskDeadLettered, data).await;
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
    if let Err(error) = worker.events.publish(&event).await {
        tracing::warn!(%error, "lifecycle event not published");
    }
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
