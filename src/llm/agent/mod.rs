//! The implementation engine: a bounded, tool-using agent loop over chat completions.
//!
//! Each round opens a conversation (task, repository map, test command, rules, and in a
//! repair round the failing output), then lets the model work through tools confined to
//! the workspace ([`tools`]) until it calls `finish`, which ends the round only on
//! evidence ([`evidence`]). Calls come natively or written in the answer's text
//! ([`text_calls`]); an answer that does neither gets the exact call to make
//! ([`nudge`]). Endpoints without function calling use edit blocks instead
//! ([`fallback`]), carried out by the same tools. A plain answer holding the original
//! single-shot `{"code_changes": [...]}` JSON is applied as before, so models that
//! ignore tools still work.
//!
//! Budgets ([`budget`]) hold for the whole task across rounds; when one trips the model
//! gets one wrap-up turn and the round ends with [`ImplementError::BudgetExhausted`]. The
//! [`AgentSession`] keeps the transcript and the running totals whatever the outcome, so
//! the caller can upload them with the partial diff.

mod budget;
mod context;
mod evidence;
mod fallback;
mod glob;
mod messages;
mod nudge;
mod prompt;
mod round;
mod round_calls;
mod search;
mod text_calls;
mod tools;
mod transcript;
mod turn;
mod workspace;

pub use budget::{
    BudgetLimits, BudgetTrip, DEFAULT_MAX_COST_USD, DEFAULT_MAX_TOTAL_TOKENS, DEFAULT_MAX_TURNS,
    DEFAULT_MAX_WALL, DEFAULT_STALL_REPEATED_CALLS, DEFAULT_STALL_TURNS_WITHOUT_CHANGE, ModelPrice,
    PriceTable,
};
pub use fallback::{Action, parse_actions};
pub use glob::{DEFAULT_PROTECTED_PATHS, ProtectedPaths, check_pattern};
pub use prompt::{AgentPrompt, agent_prompt};
pub use tools::TOOL_NAMES;
pub use transcript::{CallRecord, Entry, Speaker, Transcript};

use std::path::Path;

use futures_util::future::BoxFuture;
use serde::Serialize;

use super::{ImplementError, ImplementRequest, ImplementationResult, LlmClient, RepoViewBudget};
use crate::playbook::{Playbook, PlaybookRun, StepStatus, run_playbook};
use crate::secrets::Masker;

/// How the model is asked to change files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineMode {
    /// Function calling (`tools` in the request).
    #[default]
    Tools,
    /// Plain-text edit blocks, for endpoints without function calling.
    EditBlocks,
}

impl EngineMode {
    /// The config spelling: `tools` or `edit_blocks`.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineMode::Tools => "tools",
            EngineMode::EditBlocks => "edit_blocks",
        }
    }

    /// Parses the config spelling.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "tools" => Ok(EngineMode::Tools),
            "edit_blocks" => Ok(EngineMode::EditBlocks),
            other => Err(format!("expected tools or edit_blocks, got `{other}`")),
        }
    }
}

/// The engine's configuration (`engine:` in the config file).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    pub mode: EngineMode,
    pub limits: BudgetLimits,
    /// Readable, not writable by the model.
    pub protected: ProtectedPaths,
    pub prices: PriceTable,
}

impl Default for EngineSettings {
    /// Tool mode, the default budgets and protected paths, no prices.
    fn default() -> Self {
        EngineSettings {
            mode: EngineMode::Tools,
            limits: BudgetLimits::default(),
            protected: ProtectedPaths::defaults(),
            prices: PriceTable::new(),
        }
    }
}

/// The result of one test run, as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    pub passed: bool,
    /// What failed and the failing steps' output (the caller masks and trims nothing:
    /// the tool keeps the tail and masks it).
    pub output: String,
}

/// Runs the task's test steps for the `run_tests` tool.
pub trait TestRunner: Send + Sync {
    fn run_tests(&self) -> BoxFuture<'_, TestRun>;
}

/// A [`TestRunner`] over a playbook, through the same executor the test step uses.
pub struct PlaybookTests<'a> {
    pub playbook: &'a Playbook,
    pub run: PlaybookRun<'a>,
}

impl TestRunner for PlaybookTests<'_> {
    fn run_tests(&self) -> BoxFuture<'_, TestRun> {
        Box::pin(async move {
            let report = run_playbook(self.playbook, &self.run).await;
            let mut output = report.failure_summary().unwrap_or_else(|| "all steps passed".to_string());
            for step in &report.steps {
                if matches!(step.status, StepStatus::Failed | StepStatus::TimedOut) {
                    output.push_str(&format!("\n\n$ {}\n{}", step.command, step.output_tail));
                }
            }
            TestRun { passed: report.success, output }
        })
    }
}

/// What a round may use besides the request: settings, tests, the secret masker.
pub struct EngineContext<'a> {
    pub settings: &'a EngineSettings,
    /// Largest workspace file the tools read (`limits.max_file_bytes`).
    pub max_file_bytes: u64,
    pub tests: Option<&'a dyn TestRunner>,
    pub masker: &'a Masker,
}

/// One task's engine state across its rounds: budget, transcript, totals.
#[derive(Debug)]
pub struct AgentSession {
    budget: budget::Budget,
    transcript: Transcript,
    totals: Option<ImplementationResult>,
    rounds: u32,
}

impl AgentSession {
    /// Starts a task's budget clock.
    pub fn new(settings: &EngineSettings) -> Self {
        AgentSession {
            budget: budget::Budget::new(settings.limits.clone()),
            transcript: Transcript::default(),
            totals: None,
            rounds: 0,
        }
    }

    /// Everything said so far, in all rounds.
    pub fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    /// The rounds' results added up (tokens, cost, turns, tool calls; files are the
    /// union); `None` before the first round.
    pub fn totals(&self) -> Option<&ImplementationResult> {
        self.totals.as_ref()
    }

    fn absorb(&mut self, round: &ImplementationResult) {
        let Some(total) = &mut self.totals else {
            self.totals = Some(round.clone());
            return;
        };
        total.prompt_tokens += round.prompt_tokens;
        total.completion_tokens += round.completion_tokens;
        total.tokens_used += round.tokens_used;
        total.rounds += round.rounds;
        total.turns += round.turns;
        for (name, count) in &round.tool_calls {
            *total.tool_calls.entry(name.clone()).or_default() += count;
        }
        total.estimated_cost_usd = match (total.estimated_cost_usd, round.estimated_cost_usd) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        };
        for file in &round.files_changed {
            if !total.files_changed.contains(file) {
                total.files_changed.push(file.clone());
            }
        }
        total.refusals.extend(round.refusals.iter().cloned());
        total.explanation = round.explanation.clone();
        total.llm_model = round.llm_model.clone();
    }
}

/// Runs one implementation round in `workspace`; the session keeps the transcript and
/// totals whether it succeeds or not.
pub async fn implement_round(
    req: &ImplementRequest,
    workspace: &Path,
    llm: &LlmClient,
    ctx: &EngineContext<'_>,
    session: &mut AgentSession,
) -> Result<ImplementationResult, ImplementError> {
    session.rounds += 1;
    let (result, outcome) = round::run(req, workspace, llm, ctx, session).await;
    session.absorb(&result);
    outcome.map(|()| result)
}

/// File text shown up front in tool mode: the model reads more on demand, and the
/// opening message is resent every turn.
const TOOLS_MAX_CONTENT_BYTES: usize = 12 * 1024;
/// Largest single file shown up front in tool mode.
const TOOLS_MAX_FILE_BYTES: usize = 4 * 1024;
/// Share of the window the opening repository view may take in tool mode: the tool
/// definitions, the system message and the turns to come need the rest.
const TOOLS_VIEW_SHARE: f64 = 0.12;
/// The same in edit-block mode, where reading a file costs a turn.
const EDIT_BLOCKS_VIEW_SHARE: f64 = 0.3;
/// Share of the view's characters spent on the file tree; the rest shows file text.
const TREE_SHARE: f64 = 0.4;
/// Characters of one tree line, on average (`path (N bytes)`).
const TREE_LINE_CHARS: usize = 40;
/// Share of the window a repair round's failing test output may take.
const FAILURE_SHARE: f64 = 0.15;

/// How much of the repository the opening message shows: the full default view for edit
/// blocks (reading costs a turn there), a smaller one for tools, and both only what their
/// share of the context window holds.
pub fn repo_view_budget(mode: EngineMode, limits: crate::llm::ContextLimits) -> RepoViewBudget {
    let (full, share) = match mode {
        EngineMode::EditBlocks => (RepoViewBudget::default(), EDIT_BLOCKS_VIEW_SHARE),
        EngineMode::Tools => (
            RepoViewBudget {
                max_content_bytes: TOOLS_MAX_CONTENT_BYTES,
                max_file_bytes: TOOLS_MAX_FILE_BYTES,
                ..RepoViewBudget::default()
            },
            TOOLS_VIEW_SHARE,
        ),
    };
    let view_chars = context::chars_for((f64::from(limits.window) * share) as u32, limits);
    let tree_chars = (view_chars as f64 * TREE_SHARE) as usize;
    let content = view_chars - tree_chars;
    RepoViewBudget {
        max_tree_entries: (tree_chars / TREE_LINE_CHARS).clamp(20, full.max_tree_entries),
        max_content_bytes: content.clamp(1024, full.max_content_bytes),
        max_file_bytes: (content / 2).clamp(512, full.max_file_bytes),
    }
}

/// Characters of failing test output a repair round's opening message carries in
/// `limits.window` (its tail: where runners put the verdict).
pub fn failure_chars(limits: crate::llm::ContextLimits) -> usize {
    context::chars_for((f64::from(limits.window) * FAILURE_SHARE) as u32, limits)
}

/// The last `max` characters of `text`, with `…` in front when cut.
pub(crate) fn tail_chars(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_string();
    }
    let start = text.char_indices().nth(count - max).map_or(0, |(i, _)| i);
    format!("…{}", &text[start..])
}
