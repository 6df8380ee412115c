//! The benchmark harness: the worker's own overhead, its CPU per task, throughput,
//! dead-letter rate, cold start, memory and slot reuse, each beside the floor it should be
//! judged against, measured in the same run on this machine against the real local
//! RabbitMQ.
//!
//! Run with `scripts/bench` (or `cargo bench --bench worker`); it prints a table and
//! writes `BENCHMARKS.md` and `benches/throughput.svg`. `BENCH_QUICK=1` runs a small
//! smoke version of every scenario (figures not meaningful).

mod contenders;
mod cost;
mod cost_report;
mod dead_letters;
mod fixtures;
mod measure;
mod report;
mod spawned;
mod stats;

use std::path::PathBuf;

use report::Figures;

/// Sample sizes, from the issues: at least 100 tasks for overhead, 200 for throughput,
/// 10,000 invalid messages, about 30 tasks per cost figure.
struct Sizes {
    overhead_tasks: usize,
    cost_tasks: usize,
    throughput_tasks: usize,
    invalid_messages: usize,
    cold_starts: usize,
    load_tasks: usize,
    slot_rounds: usize,
}

const FULL: Sizes = Sizes {
    overhead_tasks: 100,
    cost_tasks: 30,
    throughput_tasks: 200,
    invalid_messages: 10_000,
    cold_starts: 5,
    load_tasks: 100,
    slot_rounds: 10,
};
const QUICK: Sizes = Sizes {
    overhead_tasks: 5,
    cost_tasks: 3,
    throughput_tasks: 10,
    invalid_messages: 100,
    cold_starts: 2,
    load_tasks: 5,
    slot_rounds: 2,
};

/// Concurrency levels for the throughput curve.
const CONCURRENCY: [u16; 4] = [1, 2, 4, 8];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let sizes = if quick { QUICK } else { FULL };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let binary = root.join("target/release/agent-runner");
    anyhow::ensure!(binary.exists(), "build the binary first: cargo build --release (scripts/bench does)");
    let mut bench = fixtures::Bench::new().await?;
    eprintln!("bench: generated a {}-file repository", fixtures::REPO_FILES);
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        return focus(&mut bench, &only, &sizes, &binary).await;
    }

    eprintln!("bench: per-task overhead over {} tasks", sizes.overhead_tasks);
    let overhead = measure::overhead(&bench, sizes.overhead_tasks).await?;
    let cost = cost::measure(&mut bench, &binary, sizes.cost_tasks).await?;

    let throughput = measure::throughput_curve(&mut bench, &CONCURRENCY, sizes.throughput_tasks).await?;
    eprintln!("bench: dead-lettering {} invalid messages", sizes.invalid_messages);
    let dead_letters = dead_letters::measure(&bench, sizes.invalid_messages).await?;
    bench.reset_origin("process")?;
    eprintln!("bench: cold start and memory of the release binary");
    let process = measure::process(&bench, &binary, sizes.cold_starts, sizes.load_tasks).await?;
    bench.reset_origin("slots")?;
    eprintln!("bench: warm slot against fresh clone");
    // git2 blocks: keep it off the runtime's worker threads.
    let (warm, fresh) = tokio::task::block_in_place(|| measure::slots(&bench, sizes.slot_rounds))?;

    let figures = Figures {
        quick,
        overhead,
        cost,
        throughput,
        dead_letters,
        process,
        warm_slot: warm,
        fresh_clone: fresh,
        sizes: format!(
            "{} overhead tasks, {} tasks per cost figure, {} tasks per concurrency level, {} invalid messages per dead-letter round, {} cold starts, {} slot rounds",
            sizes.overhead_tasks,
            sizes.cost_tasks,
            sizes.throughput_tasks,
            sizes.invalid_messages,
            sizes.cold_starts,
            sizes.slot_rounds
        ),
    };
    println!("{}", figures.table());
    if !quick {
        std::fs::write(root.join("BENCHMARKS.md"), figures.markdown())?;
        std::fs::write(root.join("benches/throughput.svg"), figures.svg())?;
        eprintln!("bench: wrote BENCHMARKS.md and benches/throughput.svg");
    }
    Ok(())
}

/// `BENCH_ONLY=throughput|dlq|overhead|process|cost`: one scenario at full size (or quick
/// with `BENCH_QUICK=1`), its lines of the table printed and nothing written; for working
/// on one figure. `cost` also runs the process scenario, whose cold start and memory its
/// targets compare with the record.
async fn focus(
    bench: &mut fixtures::Bench,
    only: &str,
    sizes: &Sizes,
    binary: &std::path::Path,
) -> anyhow::Result<()> {
    let mut out = String::new();
    match only {
        "throughput" => {
            let curve = measure::throughput_curve(bench, &CONCURRENCY, sizes.throughput_tasks).await?;
            report::write_throughput(&mut out, &curve);
        }
        "dlq" => {
            let figures = dead_letters::measure(bench, sizes.invalid_messages).await?;
            report::write_dead_letters(&mut out, &figures);
        }
        "overhead" => {
            report::write_overhead(&mut out, &measure::overhead(bench, sizes.overhead_tasks).await?)
        }
        "process" => {
            let figures = measure::process(bench, binary, sizes.cold_starts, sizes.load_tasks).await?;
            report::write_process(&mut out, &figures);
        }
        "cost" => {
            let cost = cost::measure(bench, binary, sizes.cost_tasks).await?;
            bench.reset_origin("process")?;
            let process = measure::process(bench, binary, sizes.cold_starts, sizes.load_tasks).await?;
            cost_report::write_cost(&mut out, &cost);
            report::write_process(&mut out, &process);
            report::write_targets(&mut out, &cost_report::targets(&cost, &process));
        }
        other => anyhow::bail!("BENCH_ONLY={other}: expected throughput, dlq, overhead, process or cost"),
    }
    print!("{out}");
    Ok(())
}
