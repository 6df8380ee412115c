//! What one lifecycle event becomes in the Task Registry: a pure mapping from the event
//! to the registry calls that record it (DESIGN.md §4), checked before anything is sent.

use serde::Deserialize;

use crate::clients::{ArtifactRecord, EventRecord, StatusUpdate};

/// A lifecycle event as the mirror reads it off the queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MirroredEvent {
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub task_id: Option<String>,
    pub spec_name: Option<String>,
    pub runner_id: String,
    pub attempt: u32,
    /// RFC 3339.
    pub occurred_at: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

/// One registry call.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryCall {
    Status(StatusUpdate),
    Event(EventRecord),
    Artifact(ArtifactRecord),
}

impl RegistryCall {
    /// Distinguishes the calls of one event in its idempotency key.
    pub fn name(&self) -> &'static str {
        match self {
            RegistryCall::Status(_) => "status",
            RegistryCall::Event(_) => "event",
            RegistryCall::Artifact(_) => "artifact",
        }
    }
}

/// An event, checked, with the calls that record it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub task_id: String,
    pub calls: Vec<RegistryCall>,
}

/// Why an event can never be applied: it goes to the mirror's dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoisonEvent {
    #[error("not a lifecycle event: {0}")]
    Malformed(String),
    #[error("ArtifactUploaded event {event_id}: data.{field} is missing or not a {expected}")]
    BadArtifact { event_id: String, field: &'static str, expected: &'static str },
}

/// Reads an event body.
pub fn parse(body: &[u8]) -> Result<MirroredEvent, PoisonEvent> {
    let event: MirroredEvent =
        serde_json::from_slice(body).map_err(|e| PoisonEvent::Malformed(e.to_string()))?;
    if event.event_id.trim().is_empty() || event.event_type.trim().is_empty() {
        return Err(PoisonEvent::Malformed("event_id and type must be non-empty".to_string()));
    }
    Ok(event)
}

/// The registry status an event moves its task to, if any. `Running`, `Done` and
/// `Failed` in the registry's words (`in_progress`, `done`, `failed` on the wire).
fn status_for(event_type: &str) -> Option<&'static str> {
    match event_type {
        "TaskStarted" => Some("in_progress"),
        "TaskCompleted" => Some("done"),
        // A dead letter is the end of a task too, and for a message refused before it
        // ran (invalid, crash-looping) the only event there is.
        "TaskFailed" | "TaskCancelled" | "TaskDeadLettered" => Some("failed"),
        _ => None,
    }
}

/// The calls recording `event`: always an event record; a status update for task
/// starts and ends; an artifact record for `ArtifactUploaded`. `None` for an event with
/// no task (runner events, a message too broken to name its task): nothing to record.
pub fn plan(event: &MirroredEvent) -> Result<Option<Plan>, PoisonEvent> {
    let Some(task_id) = event.task_id.clone().filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let timestamp = chrono::DateTime::parse_from_rfc3339(&event.occurred_at)
        .map(|t| t.timestamp())
        .unwrap_or_else(|_| crate::clients::epoch_seconds());
    let metadata = serde_json::json!({
        "spec_name": event.spec_name,
        "runner_id": event.runner_id,
        "attempt": event.attempt,
        "event_id": event.event_id,
    });
    let mut calls = vec![RegistryCall::Event(EventRecord {
        event_type: event.event_type.clone(),
        data: event.data.clone(),
        timestamp,
        event_id: event.event_id.clone(),
        occurred_at: event.occurred_at.clone(),
    })];
    if event.event_type == "ArtifactUploaded" {
        calls.push(RegistryCall::Artifact(artifact_record(event, metadata.clone(), timestamp)?));
    }
    if let Some(status) = status_for(&event.event_type) {
        let mut metadata = metadata;
        if let Some(reason) = event.data.get("error_kind") {
            metadata["error_kind"] = reason.clone();
        }
        calls.push(RegistryCall::Status(StatusUpdate {
            status: status.to_string(),
            metadata,
            updated_at: timestamp,
        }));
    }
    Ok(Some(Plan { task_id, calls }))
}

fn artifact_record(
    event: &MirroredEvent,
    metadata: serde_json::Value,
    created_at: i64,
) -> Result<ArtifactRecord, PoisonEvent> {
    let bad =
        |field, expected| PoisonEvent::BadArtifact { event_id: event.event_id.clone(), field, expected };
    let text = |field| event.data.get(field).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
    Ok(ArtifactRecord {
        kind: text("type").ok_or_else(|| bad("type", "string"))?.to_string(),
        uri: text("uri").ok_or_else(|| bad("uri", "string"))?.to_string(),
        size_bytes: event
            .data
            .get("size_bytes")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| bad("size_bytes", "number"))?,
        metadata,
        created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, data: serde_json::Value) -> MirroredEvent {
        MirroredEvent {
            event_id: "e1".into(),
            event_type: event_type.into(),
            task_id: Some("1.1".into()),
            spec_name: Some("chat".into()),
            runner_id: "r1".into(),
            attempt: 1,
            occurred_at: "2026-01-02T03:04:05Z".into(),
            data,
        }
    }

    fn plan(event: &MirroredEvent) -> Result<Option<Plan>, PoisonEvent> {
        super::plan(event)
    }

    fn names(plan: &Option<Plan>) -> Vec<&'static str> {
        plan.as_ref().unwrap().calls.iter().map(RegistryCall::name).collect()
    }

    #[test]
    fn each_event_type_maps_to_its_calls() {
        let started = plan(&event("TaskStarted", serde_json::json!({}))).unwrap();
        assert_eq!(names(&started), ["event", "status"]);
        let RegistryCall::Status(status) = &started.as_ref().unwrap().calls[1] else { panic!() };
        assert_eq!((status.status.as_str(), status.updated_at), ("in_progress", 1_767_323_045));
        let step = plan(&event("StepCompleted", serde_json::json!({"step": "test"}))).unwrap();
        assert_eq!(names(&step), ["event"]);
        let data = serde_json::json!({"type": "diff", "uri": "s3://b/x", "size_bytes": 12});
        let artifact = plan(&event("ArtifactUploaded", data)).unwrap();
        assert_eq!(names(&artifact), ["event", "artifact"]);
        let failed = plan(&event("TaskFailed", serde_json::json!({"error_kind": "push"}))).unwrap();
        let RegistryCall::Status(status) = &failed.unwrap().calls[1] else { panic!() };
        assert_eq!(
            (status.status.as_str(), &status.metadata["error_kind"]),
            ("failed", &serde_json::json!("push"))
        );
        assert_eq!(
            names(&plan(&event("TaskCompleted", serde_json::json!({}))).unwrap()),
            ["event", "status"]
        );
        let refused = serde_json::json!({"error_kind": "validation", "failed_step": "validate"});
        let dead_lettered = plan(&event("TaskDeadLettered", refused)).unwrap();
        let RegistryCall::Status(status) = &dead_lettered.unwrap().calls[1] else { panic!() };
        assert_eq!(
            (status.status.as_str(), &status.metadata["error_kind"]),
            ("failed", &serde_json::json!("validation"))
        );
    }

    #[test]
    fn events_that_cannot_apply_say_why_and_taskless_ones_are_skipped() {
        assert!(matches!(parse(b"{not json"), Err(PoisonEvent::Malformed(_))));
        let mut runner = event("RunnerStarted", serde_json::json!({}));
        runner.task_id = None;
        assert_eq!(plan(&runner), Ok(None));
        let broken = event("ArtifactUploaded", serde_json::json!({"type": "diff", "size_bytes": 1}));
        assert_eq!(
            plan(&broken).unwrap_err().to_string(),
            "ArtifactUploaded event e1: data.uri is missing or not a string"
        );
    }
}
