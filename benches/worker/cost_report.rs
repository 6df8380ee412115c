//! The cost scenarios' lines of the table and their targets.

use std::fmt::Write;

use crate::cost::{Cost, LARGE_REPO_FILES, REMOTE_BRANCHES, WallCpu, WorkerCost};
use crate::fixtures::REPO_FILES;
use crate::measure::Process;
use crate::report::Target;

/// The floor's name wherever it is shown.
pub const SEQUENCE: &str = "git CLI sequence (stands in for the original)";

/// The record to keep: BENCHMARKS.md of 2026-11-26, the last full run before the cost
/// scenarios, as the release binary's median cold start and idle resident memory.
const RECORD_COLD_START_MS: f64 = 66.6;
const RECORD_IDLE_RSS_MIB: f64 = 12.1;

/// The cost scenarios' lines.
pub fn write_cost(out: &mut String, cost: &Cost) {
    write_wall_cpu(out, SEQUENCE, "  CPU (the shell and every git child)", &cost.sequence);
    write_wall_cpu(
        out,
        "run --task, one process per task",
        "  CPU (the process and its children)",
        &cost.run_task,
    );
    let variants = [
        (format!("worker process, {REPO_FILES} files, no other branch"), &cost.base),
        (format!("worker process, {LARGE_REPO_FILES} files"), &cost.large_repo),
        (format!("worker process, {REMOTE_BRANCHES} remote branches"), &cost.many_branches),
    ];
    for (label, variant) in variants {
        write_worker(out, &label, variant);
    }
    let _ = writeln!(
        out,
        "{:<46} {:>9.2} ×",
        format!("  own CPU, {LARGE_REPO_FILES} / {REPO_FILES} files"),
        large_repo_ratio(cost)
    );
    let (push, cpu) = branches_ratios(cost);
    let _ = writeln!(
        out,
        "{:<46} {:>9.2} ×   (own CPU {cpu:.2} ×)",
        format!("  push step, {REMOTE_BRANCHES} branches / none"),
        push
    );
}

fn write_wall_cpu(out: &mut String, label: &str, cpu_label: &str, figures: &WallCpu) {
    let (wall, cpu) = (&figures.wall, &figures.cpu);
    let _ = writeln!(out, "{:<46} {:>9.1} ms {:>9.1} ms", format!("{label}, wall"), wall.median, wall.p95);
    let _ = writeln!(out, "{cpu_label:<46} {:>9.1} ms {:>9.1} ms", cpu.median, cpu.p95);
}

fn write_worker(out: &mut String, label: &str, worker: &WorkerCost) {
    let _ = writeln!(out, "{label}");
    let _ = writeln!(out, "{:<46} {:>9.1} ms", "  own CPU per task", worker.per_task.own_ms);
    let _ = writeln!(
        out,
        "{:<46} {:>9.1} ms   (the test command and any git)",
        "  children's CPU per task", worker.per_task.children_ms
    );
    let _ = writeln!(out, "{:<46} {:>9.1} ms {:>9.1} ms", "  step push", worker.push.median, worker.push.p95);
    let _ = writeln!(out, "{:<46} {:>12}", "  working-tree scans per task", scans(worker));
}

fn scans(worker: &WorkerCost) -> String {
    worker.scans_per_task.map_or_else(|| "not counted".to_string(), |s| format!("{s:.2}"))
}

/// `value` at the record's precision: a figure printed as equal to the record is no worse.
fn tenths(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn ratio(a: f64, b: f64) -> f64 {
    a / b.max(f64::MIN_POSITIVE)
}

/// Own CPU per task on the large repository over that on the usual one.
fn large_repo_ratio(cost: &Cost) -> f64 {
    ratio(cost.large_repo.per_task.own_ms, cost.base.per_task.own_ms)
}

/// `(push step median, own CPU per task)`, crowded remote over a remote of `main` alone.
fn branches_ratios(cost: &Cost) -> (f64, f64) {
    let (crowded, base) = (&cost.many_branches, &cost.base);
    (ratio(crowded.push.median, base.push.median), ratio(crowded.per_task.own_ms, base.per_task.own_ms))
}

/// The targets of the cost scenarios, with the cold start and idle memory of `process`
/// (measured in the same run) against the record.
pub fn targets(cost: &Cost, process: &Process) -> Vec<Target> {
    let own = cost.base.per_task.own_ms;
    let sequence = cost.sequence.cpu.median;
    let run_task = cost.run_task.cpu.median;
    let large = large_repo_ratio(cost);
    let (push, push_cpu) = branches_ratios(cost);
    let cold = process.cold_start_ms.median;
    let idle = process.idle_rss_mib;
    vec![
        (
            "worker CPU per trivial task ≤ 0.4 × the git CLI sequence's and ≤ 20 ms".into(),
            format!("{own:.1} ms vs {sequence:.1} ms ({:.2} ×)", ratio(own, sequence)),
            own <= 0.4 * sequence && own <= 20.0,
        ),
        (
            "run --task, one process, ≤ 50 ms CPU".into(),
            format!("{run_task:.1} ms (median)"),
            run_task <= 50.0,
        ),
        (
            "one working-tree scan per task".into(),
            scans(&cost.base),
            cost.base.scans_per_task.is_some_and(|s| s <= 1.0),
        ),
        (
            format!("{LARGE_REPO_FILES}-file task ≤ 2 × the {REPO_FILES}-file one (worker CPU)"),
            format!(
                "{large:.2} × ({:.1} ms vs {:.1} ms)",
                cost.large_repo.per_task.own_ms, cost.base.per_task.own_ms
            ),
            large <= 2.0,
        ),
        (
            format!("push with {REMOTE_BRANCHES} remote branches ≤ 1.2 × with none"),
            format!(
                "{push:.2} × ({:.1} ms vs {:.1} ms; worker CPU {push_cpu:.2} ×)",
                cost.many_branches.push.median, cost.base.push.median
            ),
            push <= 1.2,
        ),
        (
            format!("cold start no worse than the record ({RECORD_COLD_START_MS} ms)"),
            format!("{cold:.1} ms (median)"),
            tenths(cold) <= RECORD_COLD_START_MS,
        ),
        (
            format!("idle resident memory no worse than the record ({RECORD_IDLE_RSS_MIB} MiB)"),
            format!("{idle:.1} MiB"),
            tenths(idle) <= RECORD_IDLE_RSS_MIB,
        ),
    ]
}

/// How the cost scenarios measure, for BENCHMARKS.md.
pub fn notes() -> String {
    format!(
        "The {SEQUENCE} is the git command-line sequence the original Python component runs per task \
         (checkout `main`, fetch, rebase, checkout -b, write the file, diff, add, commit, rev-parse, push, \
         then the test command `true` through `sh -c`, as the worker runs it), one shell per iteration on \
         a warm clone of the same origin; its CPU is that of the shell and every child it waited for, \
         from `wait4`. The original itself cannot be fetched here, so this sequence stands in for it; \
         the shell costs less than the Python process around the same commands would, so it is a floor \
         for the original rather than its figure. The worker process lines are the release binary run as \
         a process of its own (`worker --concurrency 1`), one task at a time after an unmeasured one that \
         clones its slot: its own CPU is utime + stime from `/proc/<pid>/stat`, its children's (the test \
         command, any git) cutime + cstime, read before and after the tasks and divided by their number, \
         so the harness and the scripted model are not in them. `run --task` is one process per task, \
         all sharing one data directory so that each finds the slot the one before it left (the first, \
         which clones, is not measured); its CPU is the process's and its children's, from `wait4`. \
         The {LARGE_REPO_FILES}-file repository and the remote holding {REMOTE_BRANCHES} more branches \
         (each one commit on `main`, as earlier tasks' branches are, their refs packed) each get an \
         origin and a worker of their own. Working-tree scans are the worker's \
         `{SCANS}` on its /metrics, read before and after the tasks; \"not counted\" when the build \
         has no such counter. The cold-start and idle-memory records are the previous full run's \
         ({RECORD_COLD_START_MS} ms, {RECORD_IDLE_RSS_MIB} MiB), against the process scenario of the \
         same run.\n",
        SCANS = crate::cost::SCANS_SAMPLE,
    )
}
