//! Consuming until told to stop, surviving the broker going away, and stopping
//! gracefully.
//!
//! - Broker loss: when the consumer stream ends (connection lost, channel closed, or
//!   the broker cancelled the consumer because its queue was deleted), the loop
//!   re-declares the topology and consumes again, reconnecting first if the connection
//!   is down, with exponential backoff. Running tasks keep running; their acks on the
//!   old channel fail as stale and the broker redelivers those messages, which
//!   idempotent redelivery turns into a cheap finish.
//! - Idle timeout (`worker --idle-timeout`): with nothing running and nothing delivered
//!   for that long, the loop ends as if its work were done, so a Kubernetes Job whose
//!   task another pod took ends instead of holding its resources to its deadline.
//! - Shutdown: consumption stops at once (`basic.cancel`); running tasks get
//!   `shutdown_grace` to finish; then they are stopped (their process groups killed)
//!   and left unacked; lifecycle events still in the outbox get `shutdown_grace` to go
//!   out; the consumer channel is closed so the broker redelivers the unacked tasks.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Settlement, Worker, WorkerOptions, WorkerReport, settle};
use crate::amqp::{AmqpError, ExchangeTap, TaskConsumer};
use crate::events::EventType;
use std::sync::Arc;

/// The first wait before reconnecting; doubled each failed try up to
/// `reliability.reconnect_max_delay`.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(200);
/// How long stopped tasks get to return after their tokens fired. They drop their work
/// at once; this only bounds a task stuck somewhere that ignores cancellation.
const STOP_WAIT: Duration = Duration::from_secs(30);
/// How long each broker call of the stop (cancel, the stopping event, the channel close)
/// may take. A connection to a node that went away mid-run can leave a call unanswered
/// for good; the stop then goes on without it: the broker redelivers whatever is unacked
/// once the connection drops with the process.
const STOP_CALL_DEADLINE: Duration = Duration::from_secs(10);

/// What the loop consumes from: tasks, and control messages. Each part is re-established
/// on its own when it ends; both when the connection was lost.
#[derive(Default)]
struct Link {
    consumer: Option<TaskConsumer>,
    control: Option<ExchangeTap>,
    /// Consumers replaced while the connection stayed up: tasks may still settle on
    /// their channels, which are closed when the loop ends.
    retired: Vec<TaskConsumer>,
}

impl Link {
    fn complete(&self) -> bool {
        self.consumer.is_some() && self.control.is_some()
    }
}

impl Worker {
    /// Consumes until `shutdown` fires (or `stop_after` deliveries were handled), then
    /// drains the running tasks (see the module docs).
    pub async fn run(
        self: Arc<Self>,
        options: WorkerOptions,
        shutdown: CancellationToken,
    ) -> Result<WorkerReport, AmqpError> {
        let concurrency = options.concurrency.max(1);
        let mut link = Link::default();
        self.complete_link(&mut link, concurrency, &options.consumer_tag).await?;
        self.runner_event(EventType::RunnerStarted, serde_json::json!({ "concurrency": concurrency })).await;
        tracing::info!(queue = %self.names.work_queue, concurrency, "consuming");
        let readiness = crate::http::Readiness::process();
        readiness.set_ready();

        let mut running: JoinSet<Settlement> = JoinSet::new();
        let mut received = 0usize;
        let mut report = WorkerReport::default();
        // When the loop last had something to do: a delivery arrived or a task ended.
        let mut busy_at = tokio::time::Instant::now();
        let wants_more = |received: usize| options.stop_after.is_none_or(|limit| received < limit);
        loop {
            if !link.complete() {
                readiness.set_not_ready("not consuming: re-establishing the broker link");
                report.reconnects += 1;
                if !self.relink(&mut link, concurrency, &options.consumer_tag, &shutdown).await {
                    break;
                }
                crate::metrics::record_broker_reconnect();
                // Parked events go out now rather than at the drainer's next try.
                self.outbox.wake();
                readiness.set_ready();
            }
            let (Some(consumer), Some(control)) = (link.consumer.as_mut(), link.control.as_mut()) else {
                continue;
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = idle_expiry(options.idle_timeout, busy_at), if running.is_empty() => {
                    tracing::info!(received, "idle timeout: nothing delivered and nothing running; stopping");
                    break;
                }
                Some(joined) = running.join_next(), if !running.is_empty() => {
                    busy_at = tokio::time::Instant::now();
                    count(&mut report, joined);
                    if !wants_more(received) && running.is_empty() {
                        break;
                    }
                }
                command = control.next_message() => match command {
                    Some(body) => self.controls.apply(&body),
                    None => {
                        tracing::warn!("control channel lost; re-establishing");
                        link.control = None;
                    }
                },
                next = consumer.next(), if running.len() < usize::from(concurrency) && wants_more(received) => {
                    match next {
                        Some(Ok(delivery)) => {
                            received += 1;
                            busy_at = tokio::time::Instant::now();
                            let worker = self.clone();
                            let handle = self.controls.register();
                            running.spawn(async move { settle_counted(&worker, delivery, &handle).await });
                            if !wants_more(received) {
                                // `--once`: stop deliveries now, before this task's ack frees
                                // the prefetch window; a message prefetched and then returned
                                // on exit would count as a redelivery against its limit.
                                within_stop_deadline("cancelling the consumer", consumer.cancel()).await;
                            }
                        }
                        Some(Err(error)) => {
                            tracing::warn!(%error, "consumer failed; re-establishing");
                            link.retired.extend(link.consumer.take());
                        }
                        None => {
                            tracing::warn!("the broker cancelled the consumer; re-establishing");
                            link.retired.extend(link.consumer.take());
                        }
                    }
                }
            }
        }
        readiness.set_not_ready("not consuming: stopped");
        if let Some(consumer) = &link.consumer {
            // Stop deliveries at once; running tasks still settle on this channel.
            within_stop_deadline("cancelling the consumer", consumer.cancel()).await;
        }
        self.drain(&mut running, &mut report, shutdown.is_cancelled()).await;
        let stopping = self.runner_event(
            EventType::RunnerStopping,
            serde_json::json!({
                "acked": report.acked, "dead_lettered": report.dead_lettered, "retried": report.retried,
                "left_for_redelivery": report.unsettled,
            }),
        );
        within_stop_deadline("publishing RunnerStopping", stopping).await;
        // Events parked during an outage get the shutdown grace to go out; what cannot
        // is logged as lost (the outbox is memory only).
        self.outbox.flush(self.reliability.shutdown_grace).await;
        // Whatever is still unacked (stopped tasks) goes back to the queue now.
        for consumer in link.consumer.iter().chain(&link.retired) {
            within_stop_deadline("closing a consumer channel", consumer.close()).await;
        }
        Ok(report)
    }

    /// Declares the topology and starts whichever of the consumer and the control tap
    /// is missing.
    async fn complete_link(&self, link: &mut Link, concurrency: u16, tag: &str) -> Result<(), AmqpError> {
        self.session.declare(&self.names).await?;
        self.retry.declare(&self.session).await?;
        if link.consumer.is_none() {
            link.consumer = Some(self.session.consume(&self.names.work_queue, concurrency, tag).await?);
        }
        if link.control.is_none() {
            link.control = Some(self.session.tap(&self.names.control_exchange, "#").await?);
        }
        Ok(())
    }

    /// Re-establishes consumption, reconnecting when the connection is down (then both
    /// parts start over), with exponential backoff; false when shutdown fired meanwhile.
    async fn relink(
        &self,
        link: &mut Link,
        concurrency: u16,
        tag: &str,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut delay = FIRST_RECONNECT_DELAY;
        loop {
            if shutdown.is_cancelled() {
                return false;
            }
            if !self.session.is_connected() {
                // Everything on the old connection is gone, settled or not.
                *link = Link::default();
            }
            let attempt = async {
                if !self.session.is_connected() {
                    self.session.reconnect().await?;
                }
                self.complete_link(link, concurrency, tag).await
            };
            match attempt.await {
                Ok(()) => {
                    tracing::info!(queue = %self.names.work_queue, "consuming again");
                    return true;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "broker unavailable")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(self.reliability.reconnect_max_delay);
        }
    }

    /// Waits for the running tasks; on shutdown only for `shutdown_grace`, then stops
    /// the rest, which end unsettled.
    async fn drain(&self, running: &mut JoinSet<Settlement>, report: &mut WorkerReport, shutting_down: bool) {
        if running.is_empty() {
            return;
        }
        let grace = if shutting_down { self.reliability.shutdown_grace } else { Duration::MAX };
        tracing::info!(running = running.len(), grace_seconds = grace.as_secs(), "draining");
        let finished = tokio::time::timeout(grace, async {
            while let Some(joined) = running.join_next().await {
                count(report, joined);
            }
        })
        .await;
        if finished.is_ok() {
            return;
        }
        let stopped = self.controls.stop_all();
        tracing::warn!(stopped, "shutdown grace period over; stopping running tasks for redelivery");
        let _ = tokio::time::timeout(STOP_WAIT, async {
            while let Some(joined) = running.join_next().await {
                count(report, joined);
            }
        })
        .await;
        report.unsettled += running.len();
        running.abort_all();
    }
}

/// Fires `timeout` after `busy_at`; never when there is no idle timeout.
async fn idle_expiry(timeout: Option<Duration>, busy_at: tokio::time::Instant) {
    match timeout {
        Some(timeout) => tokio::time::sleep_until(busy_at + timeout).await,
        None => std::future::pending().await,
    }
}

/// Settles a delivery, keeping the in-flight gauge, the outcome counter, the queue wait
/// (publication to receipt) and the delivery's duration on this worker.
async fn settle_counted(
    worker: &Worker,
    delivery: crate::amqp::InboundDelivery,
    handle: &super::control::TaskHandle,
) -> Settlement {
    let received = std::time::Instant::now();
    if let Some(published_ms) = delivery.published_at_ms() {
        let now_ms = chrono::Utc::now().timestamp_millis();
        crate::metrics::record_queue_wait(now_ms.saturating_sub(published_ms) as f64 / 1000.0);
    }
    let _in_flight = crate::metrics::InFlight::start();
    let settlement = settle(worker, delivery, handle).await;
    let outcome = match settlement {
        Settlement::Acked => crate::metrics::TaskOutcome::Completed,
        Settlement::DeadLettered => crate::metrics::TaskOutcome::Failed,
        Settlement::Retried => crate::metrics::TaskOutcome::Retried,
        Settlement::Unsettled => crate::metrics::TaskOutcome::Unsettled,
    };
    crate::metrics::record_task_duration(outcome, received.elapsed().as_secs_f64());
    crate::metrics::record_task_outcome(outcome);
    settlement
}

fn count(report: &mut WorkerReport, joined: Result<Settlement, tokio::task::JoinError>) {
    match joined {
        Ok(Settlement::Acked) => report.acked += 1,
        Ok(Settlement::DeadLettered) => report.dead_lettered += 1,
        Ok(Settlement::Retried) => report.retried += 1,
        Ok(Settlement::Unsettled) => report.unsettled += 1,
        Err(error) => {
            // `settle` catches panics in the task itself; this is a panic in settling.
            // The delivery stays unacked until the channel closes, then is redelivered.
            tracing::error!(%error, "settling a delivery panicked");
            report.unsettled += 1;
        }
    }
}

/// Runs one broker call of the stop, giving up on it after [`STOP_CALL_DEADLINE`].
async fn within_stop_deadline<T>(what: &str, call: impl std::future::Future<Output = T>) {
    within(STOP_CALL_DEADLINE, what, call).await;
}

async fn within<T>(deadline: Duration, what: &str, call: impl std::future::Future<Output = T>) {
    if tokio::time::timeout(deadline, call).await.is_err() {
        tracing::warn!(
            call = what,
            deadline_ms = deadline.as_millis() as u64,
            "no answer from the broker in time; stopping without it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stop_call_that_never_answers_is_given_up_after_its_deadline() {
        let deadline = Duration::from_millis(50);
        let started = std::time::Instant::now();
        within(deadline, "a call to a node that went away", std::future::pending::<()>()).await;
        let waited = started.elapsed();
        assert!(waited >= deadline && waited < deadline * 20, "{waited:?}");
    }

    #[tokio::test]
    async fn a_stop_call_that_answers_is_not_waited_on_further() {
        let started = std::time::Instant::now();
        within(Duration::from_secs(30), "a quick call", tokio::time::sleep(Duration::from_millis(5))).await;
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
