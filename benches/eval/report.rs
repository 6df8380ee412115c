//! The report: one line per task on the terminal, and `EVALUATION.md` with a table per
//! engine mode, the pass rate of each, and everything needed to reproduce the figures.

use std::fmt::Write;

use crate::outcome::{TaskOutcome, clip};

/// What the figures were measured with.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub model: String,
    pub model_sha256: String,
    pub endpoint: String,
    pub server_flags: String,
    /// Temperature, max_tokens and context as sent or as left to the server.
    pub sampling: String,
    pub budgets: String,
    pub machine: String,
    pub date: String,
    pub engine_commit: String,
}

/// One terminal line for `outcome`.
pub fn line(outcome: &TaskOutcome) -> String {
    let verdict = if outcome.passed { "PASS" } else { "FAIL" };
    let mut text = format!(
        "{verdict} {:<11} {:<30} turns {:>2}  tokens {:>6}  {:>6.1}s  files [{}]",
        outcome.mode,
        outcome.task,
        outcome.turns,
        outcome.tokens,
        outcome.wall_seconds,
        outcome.files.join(", ")
    );
    if !outcome.reason.is_empty() {
        let _ = write!(text, "\n     {}", outcome.reason);
    }
    text
}

/// Pass count and total of the outcomes in `mode`.
pub fn pass_rate(outcomes: &[TaskOutcome], mode: &str) -> (usize, usize) {
    let of_mode: Vec<_> = outcomes.iter().filter(|o| o.mode == mode).collect();
    (of_mode.iter().filter(|o| o.passed).count(), of_mode.len())
}

/// `EVALUATION.md`.
pub fn markdown(info: &RunInfo, modes: &[&str], outcomes: &[TaskOutcome]) -> String {
    let mut out = String::from("# Evaluation against a real model\n\n");
    out.push_str(
        "Written by `scripts/eval` (the harness is `benches/eval/`, the tasks `benches/eval/tasks/`). \
         Each task runs through the release binary (`agent-runner run`) against a bare `file://` \
         origin; a task passes only when the harness's own check passes on a fresh clone of the \
         pushed branch: no file under the protected test paths differs from the base, and the \
         task's tests pass when the harness runs them itself.\n\n",
    );
    out.push_str("## Totals\n\n| mode | passed | pass rate |\n|---|---|---|\n");
    for mode in modes {
        let (passed, total) = pass_rate(outcomes, mode);
        let rate = if total == 0 { 0.0 } else { 100.0 * passed as f64 / total as f64 };
        let _ = writeln!(out, "| `{mode}` | {passed} / {total} | {rate:.0} % |");
    }
    out.push_str("\n## Setup\n\n");
    let _ = writeln!(out, "- model: `{}`, sha256 `{}`", info.model, info.model_sha256);
    let _ = writeln!(out, "- endpoint: `{}`", info.endpoint);
    let _ = writeln!(out, "- server: `{}`", info.server_flags);
    let _ = writeln!(out, "- sampling: {}", info.sampling);
    let _ = writeln!(out, "- budgets per task: {}", info.budgets);
    let _ = writeln!(out, "- engine: commit `{}`", info.engine_commit);
    let _ = writeln!(out, "- machine: {}", info.machine);
    let _ = writeln!(out, "- date: {}", info.date);
    for mode in modes {
        let _ = writeln!(out, "\n## Mode `{mode}`\n");
        out.push_str(
            "| task | stack | result | turns | tokens | wall (s) | files touched | failure reason |\n",
        );
        out.push_str("|---|---|---|---|---|---|---|---|\n");
        for o in outcomes.iter().filter(|o| o.mode == *mode) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {:.1} | {} | {} |",
                o.task,
                o.stack,
                if o.passed { "pass" } else { "**fail**" },
                o.turns,
                o.tokens,
                o.wall_seconds,
                cell(&o.files.join(", ")),
                cell(&clip(&o.reason, 400)),
            );
        }
    }
    out
}

/// Text safe inside a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
