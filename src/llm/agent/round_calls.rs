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
//! message must answer a `tool_calls` entry. (Restating them as `<tool_call>` blocks
//! with `<tool_response>` results, the Qwen template's own form, was tried against
//! Qwen2.5-Coder-1.5B: after a few failed calls in that form it answered nothing at all.)
//!
//! A look made again right after the same one is not run again (its answer is above);
//! the reply shows the edit to make instead ([`super::nudge::repeated_look`]).

use super::evidence::Verdict;
use super::nudge;
use super::prompt::relevant_line;
use super::round::Round;
use super::tools::ToolOutcome;
use super::transcript::{CallRecord, Speaker};
use super::turn;

/// The tools that only look: the same look again answers the same, so a model that
/// repeats one (seen: `list_dir .` four times) is told to act on the answer.
const LOOKING: [&str; 3] = ["list_dir", "read_file", "search_text"];

impl Round<'_, '_> {
    /// Runs a turn's calls; returns the summary when a finish was accepted.
    pub(super) async fn run_calls(&mut self, calls: Vec<CallRecord>, native: bool) -> Option<String> {
        let mut changed = false;
        let mut finish = None;
        let mut failed: Option<String> = None;
        let mut text_results = Vec::new();
        let signature_of = |call: &CallRecord| format!("{}({})", call.name, call.arguments.trim());
        // A turn of several calls counts as one for the repetition detector: the same
        // four calls again and again (read, search, write, run_tests) never repeat one
        // call twice in a row, yet the turn is a loop all the same.
        let whole_turn = calls.len() > 1;
        if whole_turn {
            let signatures: Vec<String> = calls.iter().map(signature_of).collect();
            self.session.budget.note_call(format!("turn[{}]", signatures.join(", ")));
        }
        for (index, call) in calls.iter().enumerate() {
            let mut outcome = match &failed {
                Some(earlier) => ToolOutcome::error(format!(
                    "not run: the {earlier} call before it in this turn failed; read that result and call again"
                )),
                None => {
                    let signature = signature_of(call);
                    if !whole_turn {
                        self.session.budget.note_call(signature.clone());
                    }
                    let looking = LOOKING.contains(&call.name.as_str());
                    let answered_just_before = self.answered_look.as_ref() == Some(&signature);
                    let outcome = if call.name == "finish" {
                        self.finish_call(&call.arguments).await
                    } else if looking && answered_just_before && self.session.budget.repeats() > 1 {
                        self.repeated_look(call).await
                    } else {
                        self.tools.call(&call.name, &call.arguments).await
                    };
                    // Only a look that was answered is "above": one refused for its
                    // arguments, run again, is run.
                    self.answered_look = (looking && outcome.ok).then_some(signature);
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

    /// The reply to a look repeated right after itself; see [`nudge::repeated_look`].
    async fn repeated_look(&mut self, call: &CallRecord) -> ToolOutcome {
        let path = serde_json::from_str::<serde_json::Value>(&call.arguments)
            .ok()
            .and_then(|v| v.get("path").and_then(|p| p.as_str()).map(str::to_string));
        let ws = &self.tools.workspace;
        let own_file =
            path.filter(|p| call.name == "read_file" && ws.check_protected(p).is_ok() && ws.exists(p));
        let line = match &own_file {
            Some(p) => {
                let p = p.clone();
                let text = ws.off_thread(move |ws| ws.text_of(&p), Err).await;
                text.ok().and_then(|text| relevant_line(&text, &self.task_words))
            }
            None => None,
        };
        let edit = match (&own_file, line) {
            (Some(path), Some(line)) => nudge::edit_example(path, &line),
            _ => self.example.change_call(),
        };
        let text = nudge::repeated_look(&call.name, &edit, own_file.as_deref());
        ToolOutcome { text, ok: true, ..ToolOutcome::default() }
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
