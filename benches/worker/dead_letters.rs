//! The dead-letter scenario: invalid messages through the worker, beside two rounds the
//! harness runs itself on the same broker at the same prefetch — the raw consume-and-ack,
//! and the republish floor: what dead-lettering a message with its reason costs at the
//! least, with nothing of the worker around it.
//!
//! Why the floor: a reason travels only on a copy (`basic.reject` cannot add headers),
//! and the original may be acked only once the broker confirmed the copy, or a crash in
//! between would lose the message. On quorum queues that is two commits one after the
//! other (the copy's enqueue in the dead-letter queue, then the ack's settlement in the
//! work queue) where a raw ack needs one, with the prefetch window held across both.

use std::time::Instant;

use agent_runner::amqp::{DeadLetterReason, TopologyNames};
use tokio::task::JoinSet;

use crate::fixtures::{Bench, CpuClock};
use crate::measure::start_worker;
use crate::stats::Summary;

/// Rounds of each side. The rates swing by ±10 % from one run to the next on a shared
/// 2-core machine; alternating the sides, round by round, keeps a drift of the machine
/// from landing on one side only, and medians are what is compared.
const ROUNDS: usize = 3;

/// The worker's concurrency in this scenario, and so its prefetch; the harness's sides
/// consume at the same prefetch.
pub const PREFETCH: u16 = 8;

/// The `i`th message every side consumes: a task message that names its task but lacks
/// the rest, as a Dispatcher bug would send it. The worker still tells which task it was,
/// in the dead letter's headers and in the task's event.
fn invalid_message(i: usize) -> Vec<u8> {
    format!("{{\"schema_version\": 1, \"task_id\": \"invalid-{i}\", \"spec_name\": \"bench\"}}").into_bytes()
}

/// One side of the comparison: its rate in each round, and its CPU per message over all
/// rounds.
#[derive(Default)]
pub struct Side {
    pub rates: Vec<f64>,
    pub cpu: CpuClock,
}

impl Side {
    pub fn median(&self) -> f64 {
        Summary::of(&self.rates).median
    }

    /// This side's rate over `other`'s, round by round.
    pub fn ratios_to(&self, other: &Side) -> Vec<f64> {
        self.rates.iter().zip(&other.rates).map(|(a, b)| a / b.max(f64::MIN_POSITIVE)).collect()
    }

    fn record(&mut self, (rate, cpu): (f64, CpuClock)) {
        self.rates.push(rate);
        self.cpu = self.cpu.plus(&cpu);
    }
}

/// The scenario's figures: the worker, the republish floor and the raw consume-and-ack.
pub struct DeadLetterFigures {
    pub worker: Side,
    pub floor: Side,
    pub raw: Side,
}

/// Runs `ROUNDS` alternating rounds of `messages` each, every side at [`PREFETCH`].
pub async fn measure(bench: &Bench, messages: usize) -> anyhow::Result<DeadLetterFigures> {
    let (mut worker, mut floor, mut raw) = (Side::default(), Side::default(), Side::default());
    for _ in 0..ROUNDS {
        worker.record(worker_round(bench, messages).await?);
        floor.record(republish_round(bench, messages).await?);
        raw.record(raw_round(bench, messages).await?);
    }
    for side in [&mut worker, &mut floor, &mut raw] {
        side.cpu = side.cpu.per(messages * ROUNDS);
    }
    Ok(DeadLetterFigures { worker, floor, raw })
}

/// A fresh topology whose work queue holds `messages` invalid messages.
async fn filled_queue(bench: &Bench, name: &str, messages: usize) -> anyhow::Result<TopologyNames> {
    let names = bench.topology(name).await?;
    for i in 0..messages {
        bench.publish(&names, &invalid_message(i)).await?;
    }
    Ok(names)
}

/// Rate and CPU of `consuming` the `messages` of `names`, whose topology is deleted after.
async fn timed(
    bench: &Bench,
    names: &TopologyNames,
    messages: usize,
    consuming: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<(f64, CpuClock)> {
    let cpu_before = bench.cpu_clock();
    let started = Instant::now();
    let consumed = consuming.await;
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    let cpu = bench.cpu_clock().since(&cpu_before);
    bench.session.delete(names).await?;
    consumed.map(|()| (rate, cpu))
}

/// The worker, at concurrency [`PREFETCH`], dead-letters every message.
async fn worker_round(bench: &Bench, messages: usize) -> anyhow::Result<(f64, CpuClock)> {
    let names = filled_queue(bench, "dlq", messages).await?;
    let consuming = async { start_worker(bench, "dlq", &names, PREFETCH, messages).await?.await? };
    timed(bench, &names, messages, consuming).await
}

/// The harness dead-letters every message with the worker's own primitive
/// (`InboundDelivery::dead_letter`: republish with reason headers under a confirm, then
/// ack), up to [`PREFETCH`] at a time, and does nothing else.
async fn republish_round(bench: &Bench, messages: usize) -> anyhow::Result<(f64, CpuClock)> {
    let names = filled_queue(bench, "floor", messages).await?;
    let reason = DeadLetterReason {
        kind: "validation".into(),
        step: "validate".into(),
        message: "missing field `task_id`".into(),
        transient: false,
        attempts: 1,
        runner_id: "bench".into(),
        task_id: None,
        spec_name: None,
    };
    let consuming = async {
        let mut consumer = bench.session.consume(&names.work_queue, PREFETCH, "bench-floor").await?;
        let mut settling = JoinSet::new();
        let mut received = 0;
        while received < messages || !settling.is_empty() {
            tokio::select! {
                Some(settled) = settling.join_next(), if !settling.is_empty() => settled??,
                next = consumer.next(), if received < messages => {
                    let delivery = next.ok_or_else(|| anyhow::anyhow!("floor consumer ended"))??;
                    received += 1;
                    let publisher = bench.session.publisher.clone();
                    let (exchange, reason) = (names.dead_letter_exchange.clone(), reason.clone());
                    settling.spawn(async move { delivery.dead_letter(&publisher, &exchange, &reason).await.map(drop) });
                }
            }
        }
        Ok(())
    };
    timed(bench, &names, messages, consuming).await
}

/// The broker's raw consume-and-ack: each message acked as it arrives.
async fn raw_round(bench: &Bench, messages: usize) -> anyhow::Result<(f64, CpuClock)> {
    let names = filled_queue(bench, "raw", messages).await?;
    let consuming = async {
        let mut consumer = bench.session.consume(&names.work_queue, PREFETCH, "bench-raw").await?;
        for _ in 0..messages {
            let delivery = consumer.next().await.ok_or_else(|| anyhow::anyhow!("raw consumer ended"))??;
            delivery.ack().await?;
        }
        Ok(())
    };
    timed(bench, &names, messages, consuming).await
}
