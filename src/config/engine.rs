//! The `engine:` section laid over the defaults: mode, budgets, stall detection,
//! protected paths and the price table, each checked with the key named.

use super::file::RawEngine;
use super::layer::Layered;
use super::values as v;
use super::{ConfigError, ConfigSource};
use crate::llm::EngineMode;
use crate::llm::agent::{ModelPrice, PriceTable, ProtectedPaths};

/// Most turns per task: each is a model call; past this a task is not converging.
const MAX_TURNS: u64 = 1000;
/// Most tokens per task: a billion tokens is thousands of dollars on any hosted model.
const MAX_TOTAL_TOKENS: u64 = 1_000_000_000;
/// Highest per-task cost budget in dollars: beyond it a typo (cents for dollars) is likelier.
const MAX_COST_USD: f64 = 10_000.0;
/// A repetition limit of 1 would trip on every call.
const MIN_REPEATED_CALLS: u64 = 2;
/// Upper bound of both stall limits: past it they would never trip within `MAX_TURNS`.
const MAX_STALL: u64 = MAX_TURNS;
/// Protected globs at most: each write is matched against all of them.
const MAX_PROTECTED_PATHS: usize = 200;

/// Lays `engine:` over `l`.
pub(crate) fn apply(raw: RawEngine, src: &ConfigSource, l: &mut Layered) -> Result<(), ConfigError> {
    l.set(src, "engine.mode", raw.mode, |s| EngineMode::parse(&s), |c| &mut c.engine.mode)?;
    l.set(
        src,
        "engine.max_turns",
        raw.max_turns,
        |n| v::in_range(n, 1, MAX_TURNS),
        |c| &mut c.engine.limits.max_turns,
    )?;
    l.set(
        src,
        "engine.max_total_tokens",
        raw.max_total_tokens,
        |n| v::in_range(n, 1, MAX_TOTAL_TOKENS),
        |c| &mut c.engine.limits.max_total_tokens,
    )?;
    l.set(src, "engine.max_cost_usd", raw.max_cost_usd, dollars, |c| &mut c.engine.limits.max_cost_usd)?;
    l.set(src, "engine.max_wall_seconds", raw.max_wall_seconds, v::seconds, |c| {
        &mut c.engine.limits.max_wall
    })?;
    l.set(
        src,
        "engine.stall_repeated_calls",
        raw.stall_repeated_calls,
        |n| v::in_range(n, MIN_REPEATED_CALLS, MAX_STALL),
        |c| &mut c.engine.limits.stall_repeated_calls,
    )?;
    l.set(
        src,
        "engine.stall_turns_without_change",
        raw.stall_turns_without_change,
        |n| v::in_range(n, 1, MAX_STALL),
        |c| &mut c.engine.limits.stall_turns_without_change,
    )?;
    l.set(src, "engine.protected_paths", raw.protected_paths, protected, |c| &mut c.engine.protected)?;
    l.set(src, "engine.prices", raw.prices, prices, |c| &mut c.engine.prices)
}

fn dollars(value: f64) -> Result<f64, String> {
    if value.is_finite() && value > 0.0 && value <= MAX_COST_USD {
        Ok(value)
    } else {
        Err(format!("must be above 0 and at most {MAX_COST_USD}, got {value}"))
    }
}

fn protected(patterns: Vec<String>) -> Result<ProtectedPaths, String> {
    if patterns.len() > MAX_PROTECTED_PATHS {
        return Err(format!("at most {MAX_PROTECTED_PATHS} patterns, got {}", patterns.len()));
    }
    ProtectedPaths::new(&patterns)
}

fn prices(raw: std::collections::BTreeMap<String, super::file::RawPrice>) -> Result<PriceTable, String> {
    let mut table = PriceTable::new();
    for (model, price) in raw {
        for (field, value) in
            [("prompt_per_1k", price.prompt_per_1k), ("completion_per_1k", price.completion_per_1k)]
        {
            if !value.is_finite() || value < 0.0 {
                return Err(format!("{model}.{field} must be a price of 0 or more, got {value}"));
            }
        }
        let price =
            ModelPrice { prompt_per_1k: price.prompt_per_1k, completion_per_1k: price.completion_per_1k };
        table.insert(model, price);
    }
    Ok(table)
}
