//! The broker closes the events channel but not the connection (here: the worker's user
//! loses write permission, so a publish is refused with 403 `ACCESS_REFUSED`, which
//! closes the channel). The delivery loop has nothing to reconnect, so the events
//! publisher reopens its channel on the live connection, and the outbox drains through
//! it. (A binary of its own: the outbox gauge is process-wide.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use agent_runner::amqp::{AmqpEventSink, AmqpSession};
use agent_runner::events::{EventOutbox, EventSink, EventSubject, EventType, OutboxBound};
use agent_runner::llm::scripted::Script;
use agent_runner::secrets::Masker;
use common::broker::BrokerUser;
use common::{Harness, drain_events};

#[tokio::test]
async fn events_refused_on_a_closed_channel_are_published_once_writes_are_allowed_again() {
    let harness = Harness::new("events-channel", Script::replies(["unused"])).await;
    let mut tap = harness.session.tap(&harness.names.events_exchange, "#").await.unwrap();
    let user = BrokerUser::create("evchan");
    let session = AmqpSession::connect(&user.url(), "events-channel-test").await.unwrap();
    let sink: Arc<dyn EventSink> = Arc::new(AmqpEventSink::new(
        session.events_publisher.clone(),
        harness.names.events_exchange.clone(),
        Masker::default(),
    ));
    let outbox = EventOutbox::new(sink, OutboxBound::default());
    let subject = EventSubject {
        task_id: Some("4.1".into()),
        spec_name: Some("greeter".into()),
        runner_id: "events-channel-test".into(),
        attempt: 1,
    };
    let events: Vec<_> = ["slot", "workspace", "implement"]
        .iter()
        .map(|step| subject.event(EventType::StepStarted, step, serde_json::json!({ "step": step })))
        .collect();

    user.permit_writes(false);
    outbox.publish(&events[0]).await.unwrap();
    outbox.publish(&events[1]).await.unwrap();
    assert_eq!(outbox.depth(), 2, "both parked: the first refused, the second behind it");
    assert!(session.is_connected(), "the broker closed the channel only");

    user.permit_writes(true);
    outbox.publish(&events[2]).await.unwrap();
    assert_eq!(outbox.flush(Duration::from_secs(60)).await, 0, "the outbox drained");
    assert!(session.is_connected());

    let received = drain_events(&mut tap).await;
    let ids: Vec<&str> = received.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    let expected: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, expected, "in order, once each, with their ids");

    session.close().await;
    harness.cleanup().await;
}
