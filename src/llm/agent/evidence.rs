//! Finish only on evidence: what the round has done decides whether `finish` ends it.
//!
//! Small models call `finish` after no edit at all, or right after a failing test run.
//! The gate refuses such a finish with its reason (the model reads it as the tool
//! result) and has the engine run the tests itself when the model changed files but did
//! not test them since. A model that insists — a second finish in a row with nothing
//! changed in between — ends the round anyway: the pipeline's own test step then judges
//! it, and a repair round starts from a fresh conversation with the failure, which serves
//! a small context window better than arguing on.

/// Refused finishes in a row, without a change in between, after which the round ends.
const MAX_REFUSALS_IN_A_ROW: u32 = 2;

/// What the round has shown so far.
#[derive(Debug, Default)]
pub struct FinishGate {
    changed_in_round: bool,
    /// The last test run's verdict, `None` when the files changed since (or no run yet).
    tests_since_change: Option<bool>,
    refusals_in_a_row: u32,
}

/// What to do with a `finish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// End the round.
    Accept,
    /// Run the tests, then ask again with their verdict ([`FinishGate::note_tests`]).
    RunTestsFirst,
    /// Refuse, with the reason for the model.
    Refuse(String),
}

impl FinishGate {
    /// The workspace changed.
    pub fn note_change(&mut self) {
        self.changed_in_round = true;
        self.tests_since_change = None;
        self.refusals_in_a_row = 0;
    }

    /// A test run finished with this verdict.
    pub fn note_tests(&mut self, passed: bool) {
        self.tests_since_change = Some(passed);
    }

    /// Judges a finish; `tests_available` is whether the engine can run the tests.
    pub fn judge(&mut self, tests_available: bool) -> Verdict {
        if !self.changed_in_round {
            return self.refuse(
                "finish refused: nothing has changed in this round. The task is done only when the files \
                 are changed: make the change first (edit_file or write_file with tools, an edit block \
                 otherwise).",
            );
        }
        match (tests_available, self.tests_since_change) {
            (false, _) | (true, Some(true)) => Verdict::Accept,
            (true, None) => Verdict::RunTestsFirst,
            (true, Some(false)) => self.refuse(
                "finish refused: the last test run failed. Fix the code so the tests pass, run_tests, then \
                 finish.",
            ),
        }
    }

    fn refuse(&mut self, reason: &str) -> Verdict {
        self.refusals_in_a_row += 1;
        if self.refusals_in_a_row >= MAX_REFUSALS_IN_A_ROW {
            return Verdict::Accept;
        }
        Verdict::Refuse(reason.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finish_without_a_change_is_refused_once_then_ends_the_round() {
        let mut gate = FinishGate::default();
        assert!(matches!(gate.judge(true), Verdict::Refuse(r) if r.contains("nothing has changed")));
        assert_eq!(gate.judge(true), Verdict::Accept);
    }

    #[test]
    fn untested_changes_are_tested_and_a_failure_refuses() {
        let mut gate = FinishGate::default();
        gate.note_change();
        assert_eq!(gate.judge(true), Verdict::RunTestsFirst);
        gate.note_tests(false);
        assert!(matches!(gate.judge(true), Verdict::Refuse(r) if r.contains("the last test run failed")));
        // A change in between starts the count again.
        gate.note_change();
        gate.note_tests(false);
        assert!(matches!(gate.judge(true), Verdict::Refuse(_)));
        gate.note_change();
        gate.note_tests(true);
        assert_eq!(gate.judge(true), Verdict::Accept);
    }

    #[test]
    fn without_tests_a_change_is_enough() {
        let mut gate = FinishGate::default();
        gate.note_change();
        assert_eq!(gate.judge(false), Verdict::Accept);
    }
}
