//! Per-task budgets: turns, tokens, cost, wall time, and the stall detector.
//!
//! One [`Budget`] lives for the whole task, across repair rounds, so a task cannot buy
//! itself a fresh allowance by failing its tests. It is checked before every model turn;
//! the first limit reached is reported as a [`BudgetTrip`] naming its configuration key.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Turns per task: enough for explore → edit → test → fix cycles on a scoped task;
/// runs needing more are usually looping.
pub const DEFAULT_MAX_TURNS: u32 = 50;
/// Tokens per task (prompt + completion over all turns): every turn resends the
/// conversation, so 50 turns of ~20k tokens.
pub const DEFAULT_MAX_TOTAL_TOKENS: u64 = 1_000_000;
/// Dollars per task, enforced when the model has a price in `engine.prices`.
pub const DEFAULT_MAX_COST_USD: f64 = 2.0;
/// Wall time of the implement phase: well under the default 30-minute task timeout, so
/// the budget (with its partial diff and transcript) trips before the task deadline.
pub const DEFAULT_MAX_WALL: Duration = Duration::from_secs(20 * 60);
/// The same tool call this many times in a row is a loop, not progress.
pub const DEFAULT_STALL_REPEATED_CALLS: u32 = 4;
/// Turns in a row without a workspace change: exploring a large repository takes a
/// dozen reads; far more without an edit is a model that is stuck.
pub const DEFAULT_STALL_TURNS_WITHOUT_CHANGE: u32 = 15;

/// The configured limits.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetLimits {
    pub max_turns: u32,
    pub max_total_tokens: u64,
    pub max_cost_usd: f64,
    pub max_wall: Duration,
    pub stall_repeated_calls: u32,
    pub stall_turns_without_change: u32,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        BudgetLimits {
            max_turns: DEFAULT_MAX_TURNS,
            max_total_tokens: DEFAULT_MAX_TOTAL_TOKENS,
            max_cost_usd: DEFAULT_MAX_COST_USD,
            max_wall: DEFAULT_MAX_WALL,
            stall_repeated_calls: DEFAULT_STALL_REPEATED_CALLS,
            stall_turns_without_change: DEFAULT_STALL_TURNS_WITHOUT_CHANGE,
        }
    }
}

/// Dollars per 1000 tokens of one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ModelPrice {
    /// Dollars per 1000 prompt tokens.
    pub prompt_per_1k: f64,
    /// Dollars per 1000 completion tokens.
    pub completion_per_1k: f64,
}

impl ModelPrice {
    /// The cost of one answer.
    pub fn cost(&self, prompt_tokens: u32, completion_tokens: u32) -> f64 {
        f64::from(prompt_tokens) / 1000.0 * self.prompt_per_1k
            + f64::from(completion_tokens) / 1000.0 * self.completion_per_1k
    }
}

/// The price table, by model name as configured or as the server reports it.
pub type PriceTable = BTreeMap<String, ModelPrice>;

/// Which limit was reached, and by how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetTrip {
    /// The configuration key of the limit, e.g. `engine.max_turns`.
    pub limit: &'static str,
    /// What was used, in words.
    pub detail: String,
}

impl std::fmt::Display for BudgetTrip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.limit)
    }
}

/// What a task has used so far.
#[derive(Debug)]
pub struct Budget {
    limits: BudgetLimits,
    started: Instant,
    pub(crate) turns: u32,
    pub(crate) tokens: u64,
    /// `None` while no answer had a price.
    pub(crate) cost_usd: Option<f64>,
    last_call: Option<String>,
    repeats: u32,
    turns_without_change: u32,
    /// A stall seen while handling the last answer; reported at the next check.
    stalled: Option<BudgetTrip>,
}

impl Budget {
    /// Starts the clock.
    pub fn new(limits: BudgetLimits) -> Self {
        Budget {
            limits,
            started: Instant::now(),
            turns: 0,
            tokens: 0,
            cost_usd: None,
            last_call: None,
            repeats: 0,
            turns_without_change: 0,
            stalled: None,
        }
    }

    /// Wall time left before `max_wall_seconds` trips.
    pub fn wall_remaining(&self) -> Duration {
        self.limits.max_wall.saturating_sub(self.started.elapsed())
    }

    /// Records one model answer.
    pub fn add_turn(&mut self, prompt_tokens: u32, completion_tokens: u32, cost: Option<f64>) {
        self.turns += 1;
        self.tokens += u64::from(prompt_tokens) + u64::from(completion_tokens);
        if let Some(cost) = cost {
            self.cost_usd = Some(self.cost_usd.unwrap_or(0.0) + cost);
        }
    }

    /// Records one tool call (name and arguments as sent), for the repetition detector.
    pub fn note_call(&mut self, signature: String) {
        if self.last_call.as_ref() == Some(&signature) {
            self.repeats += 1;
        } else {
            self.last_call = Some(signature);
            self.repeats = 1;
        }
        let limit = self.limits.stall_repeated_calls;
        if self.repeats >= limit && self.stalled.is_none() {
            let last = self.last_call.as_deref().unwrap_or("");
            let detail = if last.starts_with("turn[") {
                format!("the same turn of several calls was made {limit} times in a row")
            } else if last.starts_with("answer(") {
                format!("the same answer was given {limit} times in a row")
            } else {
                let name = last.split('(').next().unwrap_or("");
                format!("the same {name} call was made {limit} times in a row")
            };
            self.stalled = Some(BudgetTrip { limit: "engine.stall_repeated_calls", detail });
        }
    }

    /// How many times in a row the last call was made (1: not a repeat).
    pub fn repeats(&self) -> u32 {
        self.repeats
    }

    /// Records whether the last turn changed the workspace.
    pub fn note_progress(&mut self, changed: bool) {
        if changed {
            self.turns_without_change = 0;
            self.last_call = None;
            self.repeats = 0;
            return;
        }
        self.turns_without_change += 1;
        let limit = self.limits.stall_turns_without_change;
        if self.turns_without_change >= limit && self.stalled.is_none() {
            self.stalled = Some(BudgetTrip {
                limit: "engine.stall_turns_without_change",
                detail: format!("{limit} turns in a row without a workspace change"),
            });
        }
    }

    /// The first limit reached, if any; checked before each turn.
    pub fn check(&self) -> Option<BudgetTrip> {
        let l = &self.limits;
        if self.turns >= l.max_turns {
            let detail = format!("{} turns used of {}", self.turns, l.max_turns);
            return Some(BudgetTrip { limit: "engine.max_turns", detail });
        }
        if self.tokens >= l.max_total_tokens {
            let detail = format!("{} tokens used of {}", self.tokens, l.max_total_tokens);
            return Some(BudgetTrip { limit: "engine.max_total_tokens", detail });
        }
        if let Some(cost) = self.cost_usd
            && cost >= l.max_cost_usd
        {
            let detail = format!("${cost:.4} spent of ${:.4}", l.max_cost_usd);
            return Some(BudgetTrip { limit: "engine.max_cost_usd", detail });
        }
        if self.wall_remaining().is_zero() {
            let detail = format!(
                "{}s of wall time used of {}s",
                self.started.elapsed().as_secs(),
                l.max_wall.as_secs()
            );
            return Some(BudgetTrip { limit: "engine.max_wall_seconds", detail });
        }
        self.stalled.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> BudgetLimits {
        BudgetLimits {
            max_turns: 10,
            max_total_tokens: 1000,
            max_cost_usd: 0.5,
            max_wall: Duration::from_secs(3600),
            stall_repeated_calls: 3,
            stall_turns_without_change: 4,
        }
    }

    #[test]
    fn each_limit_trips_with_its_key() {
        let mut budget = Budget::new(limits());
        assert_eq!(budget.check(), None);
        budget.add_turn(600, 500, None);
        assert_eq!(budget.check().unwrap().limit, "engine.max_total_tokens");
        assert_eq!(budget.check().unwrap().to_string(), "1100 tokens used of 1000 (engine.max_total_tokens)");

        let mut budget = Budget::new(limits());
        let price = ModelPrice { prompt_per_1k: 1.0, completion_per_1k: 2.0 };
        budget.add_turn(100, 200, Some(price.cost(100, 200)));
        assert_eq!(budget.check().unwrap().detail, "$0.5000 spent of $0.5000");

        let mut budget = Budget::new(BudgetLimits { max_turns: 2, ..limits() });
        budget.add_turn(1, 1, None);
        budget.add_turn(1, 1, None);
        assert_eq!(budget.check().unwrap().detail, "2 turns used of 2");

        let budget = Budget::new(BudgetLimits { max_wall: Duration::ZERO, ..limits() });
        assert_eq!(budget.check().unwrap().limit, "engine.max_wall_seconds");
    }

    #[test]
    fn stalls_are_repeated_calls_or_turns_without_change() {
        let mut budget = Budget::new(limits());
        for _ in 0..2 {
            budget.note_call("read_file({\"path\":\"a\"})".into());
        }
        budget.note_call("list_dir({})".into());
        budget.note_call("read_file({\"path\":\"a\"})".into());
        assert_eq!(budget.check(), None);
        for _ in 0..2 {
            budget.note_call("read_file({\"path\":\"a\"})".into());
        }
        assert_eq!(budget.check().unwrap().detail, "the same read_file call was made 3 times in a row");

        let mut budget = Budget::new(limits());
        for changed in [false, false, false, true, false, false, false] {
            budget.note_progress(changed);
        }
        assert_eq!(budget.check(), None);
        budget.note_progress(false);
        assert_eq!(budget.check().unwrap().limit, "engine.stall_turns_without_change");
    }
}
