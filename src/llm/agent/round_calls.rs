//! Carrying out one turn's tool calls, and the finish rule.
//!
//! Calls run in order; after one fails (an error, or a failing test run) the rest of the
//! turn is not run but answered as dropped, because they were written before the model
//! saw the failure (an `edit_file` that missed, then `run_tests`, then `finish`). A
//! `finish` goes through the [`FinishGate`](super::evidence::FinishGate): refused with its
//! reason while the round has no change or its tests fail, with the engine running the
//! tests itself when the changes are untested.
//!
//! Native calls get native tool results; calls read from the answer's text get their
//! results in one user message, since the history holds them as text and a `tool`
//! message must answer a `tool_calls` entry.

use super::evidence::Verdict;
use super::round::Round;
use super::tools::ToolOutcome;
use super::transcript::{CallRecord, Speaker};
use super::turn;

/// The tools that only look: the same look again answers the same, so a model that
/// repeats one (seen: `list_dir .` four times) is told to act on the answer.
const LOOKING: [&str; 3] = ["list_dir", "read_file", "search_text"];
const REPEATED_LOOK: &str = "\n\nnote: this is the same call as just before, with the same answer. Act on it now: \
    read_file one of the files named above, or write_file / edit_file the change the task needs.";

impl Round<'_, '_> {
    /// Runs a turn's calls; returns the summary when a finish was accepted.
    pub(super) async fn run_calls(&mut self, calls: Vec<CallRecord>, native: bool) -> Option<String> {
        let mut changed = false;
        let mut finish = None;
        let mut failed: Option<String> = None;
        let mut text_results = Vec::new();
        for (index, call) in calls.iter().enumerate() {
            let mut outcome = match &failed {
                Some(earlier) => ToolOutcome::error(format!(
                    "not run: the {earlier} call before it in this turn failed; read that result and call again"
                )),
                None => {
                    self.session.budget.note_call(format!("{}({})", call.name, call.arguments.trim()));
                    let mut outcome = if call.name == "finish" {
                        self.finish_call(&call.arguments).await
                    } else {
                        self.tools.call(&call.name, &call.arguments).await
                    };
                    if LOOKING.contains(&call.name.as_str()) && self.session.budget.repeats() > 1 {
                        outcome.text.push_str(REPEATED_LOOK);
                    }
                    outcome
                }
            };
            outcome.text = self.client.mask(&outcome.text);
            changed |= outcome.changed.is_some();
            finish = finish.or(outcome.finish.clone());
            if failed.is_none() && (!outcome.ok || outcome.tests_passed == Some(false)) {
                failed = Some(call.name.clone());
            }
            self.observe(&outcome);
            self.record_tool(&call.name, &outcome);
            if native {
                self.messages.push(turn::tool_result(&call.id, outcome.text));
            } else {
                text_results.push(format!("[{}] {} result:\n{}", index + 1, call.name, outcome.text));
            }
        }
        if !native {
            self.messages.push(turn::user(text_results.join("\n\n")));
        }
        self.session.budget.note_progress(changed);
        finish
    }

    /// Tells the gate what an outcome showed.
    pub(super) fn observe(&mut self, outcome: &ToolOutcome) {
        if outcome.changed.is_some() {
            self.gate.note_change();
        }
        if let Some(passed) = outcome.tests_passed {
            self.gate.note_tests(passed);
        }
    }

    /// A `finish` call: its arguments checked, then judged on the evidence.
    async fn finish_call(&mut self, arguments: &str) -> ToolOutcome {
        let outcome = self.tools.call("finish", arguments).await;
        if outcome.finish.is_none() {
            return outcome; // malformed arguments, answered as such
        }
        match self.judge_finish().await {
            Ok(()) => outcome,
            Err(refusal) => ToolOutcome::error(refusal),
        }
    }

    /// Whether the round may end now; the refusal text (with the test output when the
    /// engine ran the tests) otherwise.
    pub(super) async fn judge_finish(&mut self) -> Result<(), String> {
        let tests_available = self.tools.tests.is_some();
        let mut ran = None;
        loop {
            match self.gate.judge(tests_available) {
                Verdict::Accept => return Ok(()),
                Verdict::Refuse(reason) => {
                    self.note(Speaker::Engine, &reason);
                    return Err(match ran {
                        Some(output) => format!("{reason}\n\n{output}"),
                        None => reason,
                    });
                }
                Verdict::RunTestsFirst => {
                    self.note(
                        Speaker::Engine,
                        "the changes are untested: running the tests before finishing",
                    );
                    let run = self.tools.run_tests().await;
                    self.gate.note_tests(run.tests_passed.unwrap_or(false));
                    let output = self.client.mask(&run.text);
                    self.note(Speaker::Engine, &format!("tests run by the engine on finish: {output}"));
                    ran = Some(output);
                }
            }
        }
    }
}
