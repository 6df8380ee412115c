//! Turning figures into the printed table, BENCHMARKS.md and the throughput plot.

use std::fmt::Write;

use crate::cost::Cost;
use crate::cost_report;
use crate::dead_letters::{DeadLetterFigures, PREFETCH};
use crate::fixtures::CpuClock;
use crate::measure::{Overhead, Process, ThroughputLevel};
use crate::stats::Summary;

/// A target's line: what it asks, the figure, and whether the figure meets it.
pub type Target = (String, String, bool);

/// Every figure of one run.
pub struct Figures {
    pub quick: bool,
    pub overhead: Overhead,
    pub cost: Cost,
    pub throughput: Vec<ThroughputLevel>,
    pub dead_letters: DeadLetterFigures,
    pub process: Process,
    pub warm_slot: Summary,
    pub fresh_clone: Summary,
    pub sizes: String,
}

/// The steps that do the git work of the git CLI sequence.
const GIT_STEPS: [&str; 3] = ["workspace", "commit", "push"];

impl Figures {
    fn rate_at(&self, concurrency: u16) -> f64 {
        self.throughput.iter().find(|l| l.concurrency == concurrency).map_or(0.0, |l| l.rate)
    }

    fn git_steps_median(&self) -> f64 {
        GIT_STEPS.iter().filter_map(|s| self.overhead.steps.get(*s)).map(|s| s.median).sum()
    }

    fn targets(&self) -> Vec<Target> {
        let overhead = self.overhead.total.median;
        let speedup = self.rate_at(2) / self.rate_at(1).max(f64::MIN_POSITIVE);
        let d = &self.dead_letters;
        let raw = d.raw.median().max(f64::MIN_POSITIVE);
        let (dlq_ratio, floor_ratio) = (d.worker.median() / raw, d.floor.median() / raw);
        let cold = self.process.cold_start_ms.median;
        let sequence = self.cost.sequence.wall.median;
        let mut targets = vec![
            (
                "overhead median ≤ the git CLI sequence's wall time".into(),
                format!("{overhead:.1} ms vs {sequence:.1} ms"),
                overhead <= sequence,
            ),
            ("throughput at 2 ≥ 1.7 × at 1".into(), format!("{speedup:.2} ×"), speedup >= 1.7),
            (
                "dead-letter rate ≥ 0.5 × raw consume-and-ack".into(),
                format!("{dlq_ratio:.2} × (republish floor {floor_ratio:.2} ×)"),
                dlq_ratio >= 0.5,
            ),
            ("cold start < 100 ms".into(), format!("{cold:.1} ms (median)"), cold < 100.0),
            (
                "idle resident memory < 20 MB".into(),
                format!("{:.1} MiB", self.process.idle_rss_mib),
                self.process.idle_rss_mib * 1.048_576 < 20.0,
            ),
        ];
        targets.extend(cost_report::targets(&self.cost, &self.process));
        targets
    }

    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<46} {:>12} {:>12}", "figure", "median", "p95");
        write_overhead(&mut out, &self.overhead);
        let _ =
            writeln!(out, "{:<46} {:>9.1} ms", "  steps workspace + commit + push", self.git_steps_median());
        cost_report::write_cost(&mut out, &self.cost);
        write_throughput(&mut out, &self.throughput);
        write_dead_letters(&mut out, &self.dead_letters);
        write_process(&mut out, &self.process);
        let _ = writeln!(
            out,
            "{:<46} {:>9.1} ms {:>9.1} ms",
            "warm slot (fetch+reset+clean+branch)", self.warm_slot.median, self.warm_slot.p95
        );
        let _ = writeln!(
            out,
            "{:<46} {:>9.1} ms {:>9.1} ms",
            "fresh clone (+ branch)", self.fresh_clone.median, self.fresh_clone.p95
        );
        write_targets(&mut out, &self.targets());
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("# Benchmarks\n\n");
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let _ = writeln!(
            out,
            "Measured on {} with {cores} cores, {}, by `scripts/bench` (`cargo bench --bench worker`), \
             against the local RabbitMQ, a scripted OpenAI-compatible endpoint that answers at once with a \
             one-file edit, a generated repository of 1,000 files, and the playbook `true`. Sizes: {}.\n",
            chrono::Utc::now().format("%Y-%m-%d"),
            if self.quick { "QUICK mode (not meaningful)" } else { "full sizes" },
            self.sizes
        );
        out.push_str("```text\n");
        out.push_str(&self.table());
        out.push_str("```\n\n![throughput against concurrency](benches/throughput.svg)\n\n");
        let _ = writeln!(
            out,
            "Overhead is measured from the publish to the `TaskCompleted` event, which the worker publishes \
             (with a broker confirm) immediately before it acks. Every origin is served by `git daemon` (git://) on a local port, a process of \
             its own as a remote is in production: over `file://`, libgit2 would run the server's side of \
             each fetch and push inside the worker (for a push, reading the object of every branch on the \
             remote) and count a git server's work as the worker's. In the throughput and dead-letter \
             scenarios, CPU per task (per message) is CPU time divided by tasks: the harness process (the worker, the scripted model and the harness itself), \
             the git daemon's finished children, and RabbitMQ's Erlang VM; on 2 cores, their sum bounds \
             the throughput. The dead-letter scenario runs three alternating rounds of each side, \
             all at prefetch {PREFETCH} (the worker at concurrency {PREFETCH}); rates are medians, and each \
             round's ratio is listed. The republish floor is the harness dead-lettering each message with \
             the worker's own primitive and nothing else: publish the message with its reason headers \
             under a confirm, then ack it. Dead-lettering with a reason cannot do less (`basic.reject` \
             cannot add headers, and acking before the confirm could lose the message), and on quorum \
             queues that is two commits in sequence (the copy's enqueue, then the ack's settlement) \
             where a raw ack needs one, with the prefetch window held across both. Cold start is the \
             release binary's spawn until the broker shows its consumer. \
             Each scenario (and each concurrency level) starts on a new origin holding only `main`, with \
             its slots warmed first: every task pushes a branch, and a remote with hundreds of them makes \
             every fetch slower, which would otherwise bias the later scenarios.",
        );
        out.push('\n');
        out.push_str(&cost_report::notes());
        out
    }

    /// A small SVG line chart of tasks per second against concurrency.
    pub fn svg(&self) -> String {
        let (width, height, margin) = (480.0, 320.0, 50.0);
        let max_rate = self.throughput.iter().map(|l| l.rate).fold(0.0_f64, f64::max).max(1e-9) * 1.1;
        let max_c = f64::from(self.throughput.iter().map(|l| l.concurrency).max().unwrap_or(1));
        let x = |c: f64| margin + (c - 1.0) / (max_c - 1.0).max(1.0) * (width - 2.0 * margin);
        let y = |r: f64| height - margin - r / max_rate * (height - 2.0 * margin);
        let points: Vec<String> = self
            .throughput
            .iter()
            .map(|l| format!("{:.1},{:.1}", x(f64::from(l.concurrency)), y(l.rate)))
            .collect();
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{mid}\" y=\"20\" text-anchor=\"middle\">agent-runner throughput (tasks/s) against concurrency</text>\n\
             <line x1=\"{margin}\" y1=\"{axis_y}\" x2=\"{axis_x}\" y2=\"{axis_y}\" stroke=\"black\"/>\n\
             <line x1=\"{margin}\" y1=\"{margin}\" x2=\"{margin}\" y2=\"{axis_y}\" stroke=\"black\"/>\n\
             <polyline fill=\"none\" stroke=\"steelblue\" stroke-width=\"2\" points=\"{points}\"/>\n",
            mid = width / 2.0,
            axis_y = height - margin,
            axis_x = width - margin,
            points = points.join(" ")
        );
        for ThroughputLevel { concurrency: c, rate: r, .. } in &self.throughput {
            let (px, py) = (x(f64::from(*c)), y(*r));
            let _ = writeln!(svg, "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"steelblue\"/>");
            let _ = writeln!(
                svg,
                "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{r:.2}</text>",
                py - 8.0
            );
            let _ = writeln!(
                svg,
                "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{c}</text>",
                height - margin + 16.0
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">concurrency</text>",
            width / 2.0,
            height - 10.0
        );
        svg.push_str("</svg>\n");
        svg
    }
}

/// The targets block: each target marked met or not, with its figure.
pub fn write_targets(out: &mut String, targets: &[Target]) {
    let _ = writeln!(out, "\ntargets:");
    for (target, figure, met) in targets {
        let _ = writeln!(out, "  [{}] {target}: {figure}", if *met { "met" } else { "NOT met" });
    }
}

/// The overhead line and its steps.
pub fn write_overhead(out: &mut String, overhead: &Overhead) {
    let o = &overhead.total;
    let _ = writeln!(out, "{:<46} {:>9.1} ms {:>9.1} ms", "overhead, published → completed", o.median, o.p95);
    for (step, s) in &overhead.steps {
        let _ = writeln!(out, "{:<46} {:>9.1} ms {:>9.1} ms", format!("  step {step}"), s.median, s.p95);
    }
}

/// Each level's rate and its CPU per task.
pub fn write_throughput(out: &mut String, curve: &[ThroughputLevel]) {
    for ThroughputLevel { concurrency, rate, cpu } in curve {
        let _ = writeln!(out, "{:<46} {:>9.2} /s", format!("throughput, concurrency {concurrency}"), rate);
        let _ = writeln!(
            out,
            "{:<46} {:>9.1} ms   (worker {:.1}, git server {:.1}, broker {:.1}; machine {:.1}, {:.2} cores busy)",
            "  CPU per task",
            cpu.total_ms(),
            cpu.worker_ms,
            cpu.git_server_ms,
            cpu.broker_ms,
            cpu.machine_ms,
            cpu.cores_busy(*rate)
        );
    }
}

/// The worker's, the republish floor's and the raw rate, their CPU per message, and the
/// ratios of each round to the raw rate.
pub fn write_dead_letters(out: &mut String, d: &DeadLetterFigures) {
    for (label, party, side) in [
        ("dead-letter rate (invalid messages)", "worker", &d.worker),
        ("republish floor (harness, same prefetch)", "harness", &d.floor),
        ("raw consume-and-ack rate", "harness", &d.raw),
    ] {
        let _ = writeln!(out, "{label:<46} {:>9.0} /s", side.median());
        message_cpu_line(out, party, &side.cpu, side.median());
    }
    for (label, side) in [("  worker / raw, per round", &d.worker), ("  floor / raw, per round", &d.floor)] {
        let ratios: Vec<String> = side.ratios_to(&d.raw).iter().map(|r| format!("{r:.2}")).collect();
        let _ = writeln!(out, "{label:<46} {:>12}", ratios.join(" "));
    }
}

/// Cold start and resident memory.
pub fn write_process(out: &mut String, process: &Process) {
    let c = &process.cold_start_ms;
    let _ = writeln!(out, "{:<46} {:>9.1} ms {:>9.1} ms", "cold start (spawn → consuming)", c.median, c.p95);
    let _ = writeln!(out, "{:<46} {:>8.1} MiB", "resident memory, idle", process.idle_rss_mib);
    let _ =
        writeln!(out, "{:<46} {:>8.1} MiB", "resident memory, peak under load (c=4)", process.loaded_rss_mib);
}

/// The `  CPU per message` line of a message rate: this process (`first_party`: the
/// worker, or the harness's own consumer), the broker, and the machine.
fn message_cpu_line(out: &mut String, first_party: &str, cpu: &CpuClock, rate: f64) {
    let _ = writeln!(
        out,
        "{:<46} {:>9.3} ms   ({first_party} {:.3}, broker {:.3}; machine {:.3}, {:.2} cores busy)",
        "  CPU per message",
        cpu.total_ms(),
        cpu.worker_ms,
        cpu.broker_ms,
        cpu.machine_ms,
        cpu.cores_busy(rate)
    );
}
