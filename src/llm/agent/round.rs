//! One round of the agent loop: ask, act on the answer, repeat until the model finishes
//! (on evidence: [`super::evidence`]) or a budget trips. Tool calls are carried out in
//! [`super::round_calls`].

use std::path::Path;
use std::time::Duration;

use async_openai::types::chat::ChatCompletionRequestMessage;

use super::budget::BudgetTrip;
use super::evidence::FinishGate;
use super::fallback::{Action, parse_actions};
use super::nudge::{code_nudge, fenced_code, plain_nudge};
use super::prompt::{ExampleFile, agent_prompt, example_file, task_text, task_words, wrap_up_message};
use super::text_calls::{self, TextCalls};
use super::tools::{ToolBox, ToolOutcome, definitions};
use super::transcript::{Entry, Speaker};
use super::turn::{self, Offer, Turn};
use super::workspace::{Workspace, WriteError};
use super::{AgentSession, EngineContext, EngineMode};
use crate::llm::{
    ImplementError, ImplementRequest, ImplementationResult, LlmClient, apply_changes, parse_code_changes,
};

/// The temperature of the request after an answer that repeated the one before (the same
/// call, the same text, or nothing again), when the configured one is lower: a small
/// model near greedy sampling, shown its own answer and the same reply, gives the same
/// answer again, and the stall detector then ends the task on a loop a little more
/// randomness breaks. The next answer that changes a file brings the configured one back.
const LOOP_BREAKING_TEMPERATURE: f32 = 0.7;
/// Longest wait for the wrap-up answer: it is a courtesy, and a budget has already tripped.
const WRAP_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// What goes back into the history for an answer with neither text nor calls: servers
/// refuse an assistant message with neither (llama.cpp: "Assistant message must contain
/// either 'content' or 'tool_calls'").
pub(super) const EMPTY_ANSWER: &str = "(empty answer)";

/// Runs a round; returns its statistics whatever the outcome.
pub async fn run(
    req: &ImplementRequest,
    workspace: &Path,
    llm: &LlmClient,
    ctx: &EngineContext<'_>,
    session: &mut AgentSession,
) -> (ImplementationResult, Result<(), ImplementError>) {
    let mut result =
        ImplementationResult { llm_model: llm.model().to_string(), rounds: 1, ..Default::default() };
    let ws = match Workspace::new(workspace, ctx.settings.protected.clone(), ctx.max_file_bytes) {
        Ok(ws) => ws,
        Err(e) => return (result, Err(e)),
    };
    let example = example_file(req, &ctx.settings.protected);
    let tools =
        ToolBox { workspace: ws, example_path: example.path.clone(), tests: ctx.tests, masker: ctx.masker };
    let task_words = task_words(&task_text(req));
    let mut round = Round {
        client: llm,
        tools,
        ctx,
        session,
        messages: Vec::new(),
        result: &mut result,
        gate: FinishGate::default(),
        example,
        task_words,
        answered_look: None,
    };
    let outcome = round.run(req).await.map(|summary| round.result.explanation = summary);
    (result, outcome)
}

pub(super) struct Round<'a, 'c> {
    pub(super) client: &'a LlmClient,
    pub(super) tools: ToolBox<'a>,
    pub(super) ctx: &'a EngineContext<'c>,
    pub(super) session: &'a mut AgentSession,
    pub(super) messages: Vec<ChatCompletionRequestMessage>,
    pub(super) result: &'a mut ImplementationResult,
    /// What the round has shown, for judging a finish.
    pub(super) gate: FinishGate,
    /// A real file of the repository, for the examples the model is shown.
    pub(super) example: ExampleFile,
    /// The task's words, for picking the line of a file an example edits.
    pub(super) task_words: Vec<String>,
    /// The last call run, when it was a look that got an answer (its signature).
    pub(super) answered_look: Option<String>,
}

impl Round<'_, '_> {
    /// The loop; returns the model's summary.
    async fn run(&mut self, req: &ImplementRequest) -> Result<String, ImplementError> {
        let settings = self.ctx.settings;
        let prompt = agent_prompt(req, settings.mode, &settings.protected, settings.limits.max_turns);
        let system = self.client.mask(&prompt.system);
        self.note(Speaker::System, &system);
        self.messages.push(turn::system(system));
        self.tell(prompt.user);
        loop {
            if let Some(trip) = self.session.budget.check() {
                return Err(self.wrap_up(trip).await);
            }
            let remaining = self.session.budget.wall_remaining();
            let temperature = self.loop_breaking_temperature();
            let asked = turn::ask(self.client, &self.messages, self.offer(), temperature);
            let Ok(answer) = tokio::time::timeout(remaining, asked).await else {
                continue; // the wall-time budget trips at the top of the loop
            };
            let answer = answer?;
            self.account(&answer);
            if answer.fit.shrank() {
                let note =
                    format!("the request was shortened to fit the model's window: {}", answer.fit.describe());
                self.note(Speaker::Engine, &note);
            }
            let done = match settings.mode {
                EngineMode::Tools => self.on_tool_answer(answer).await?,
                EngineMode::EditBlocks => self.on_block_answer(answer).await?,
            };
            if let Some(summary) = done {
                return Ok(summary);
            }
        }
    }

    /// [`LOOP_BREAKING_TEMPERATURE`] while the last answer repeated the one before.
    fn loop_breaking_temperature(&mut self) -> Option<f32> {
        let configured = self.client.temperature();
        if self.session.budget.repeats() < 2 || configured >= LOOP_BREAKING_TEMPERATURE {
            return None;
        }
        let note = format!(
            "the last answer repeated the one before: asking at temperature {LOOP_BREAKING_TEMPERATURE} \
             instead of {configured}"
        );
        self.note(Speaker::Engine, &note);
        Some(LOOP_BREAKING_TEMPERATURE)
    }

    fn offer(&self) -> Offer {
        match self.ctx.settings.mode {
            EngineMode::Tools => Offer::Tools(definitions(self.tools.tests.is_some())),
            EngineMode::EditBlocks => Offer::Nothing,
        }
    }

    /// Adds an answer's usage to the round and the task budget, and records it.
    fn account(&mut self, answer: &Turn) {
        let prices = &self.ctx.settings.prices;
        let price = prices.get(self.client.model()).or_else(|| prices.get(&answer.model));
        let cost = price.map(|p| p.cost(answer.prompt_tokens, answer.completion_tokens));
        self.session.budget.add_turn(answer.prompt_tokens, answer.completion_tokens, cost);
        let r = &mut *self.result;
        r.llm_model = answer.model.clone();
        r.prompt_tokens = r.prompt_tokens.saturating_add(answer.prompt_tokens);
        r.completion_tokens = r.completion_tokens.saturating_add(answer.completion_tokens);
        r.tokens_used = r.prompt_tokens.saturating_add(r.completion_tokens);
        r.turns += 1;
        if let Some(cost) = cost {
            r.estimated_cost_usd = Some(r.estimated_cost_usd.unwrap_or(0.0) + cost);
        }
        // The answer goes back in the next request and into the transcript as the client
        // sends it; the tools act on the answer as it came.
        let mut sent = answer.clone();
        sent.content = self.client.mask(&sent.content);
        if sent.content.trim().is_empty() && sent.calls.is_empty() {
            sent.content = EMPTY_ANSWER.to_string();
        }
        for call in &mut sent.calls {
            call.arguments = self.client.mask(&call.arguments);
        }
        let entry = Entry {
            round: self.session.rounds,
            turn: self.session.budget.turns,
            speaker: Speaker::Assistant,
            text: sent.content.clone(),
            tool_calls: sent.calls.clone(),
            tool: None,
            ok: None,
            tokens: Some(answer.prompt_tokens.saturating_add(answer.completion_tokens)),
        };
        self.session.transcript.push(entry);
        self.messages.push(turn::assistant(&sent));
    }

    async fn on_tool_answer(&mut self, answer: Turn) -> Result<Option<String>, ImplementError> {
        if !answer.calls.is_empty() {
            return Ok(self.run_calls(answer.calls, true).await);
        }
        let parsed = text_calls::parse(&answer.content, &self.offered_names());
        if answer.truncated && !matches!(parsed, TextCalls::Calls(..)) {
            self.note_answer(&answer);
            self.tell(super::nudge::cut_off_nudge(answer.max_tokens));
            self.session.budget.note_progress(false);
            return Ok(None);
        }
        match parsed {
            TextCalls::Calls(format, calls) => {
                let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
                let note =
                    format!("tool calls read from the answer ({}): {}", format.as_str(), names.join(", "));
                self.note(Speaker::Engine, &note);
                Ok(self.run_calls(calls, false).await)
            }
            TextCalls::Malformed(reason) => {
                self.note_answer(&answer);
                let example = self.example.change_call();
                self.tell(format!("error: {reason}. Nothing was run; write the call again, e.g.\n<tool_call>\n{example}\n</tool_call>"));
                self.session.budget.note_progress(false);
                Ok(None)
            }
            TextCalls::None => self.on_plain_answer(answer).await,
        }
    }

    /// Counts an answer that ran nothing toward the repeated-call stall: the same text
    /// again is a loop like the same call again.
    fn note_answer(&mut self, answer: &Turn) {
        self.session.budget.note_call(format!("answer({})", answer.content.trim()));
    }

    /// The tools offered this round, by name.
    fn offered_names(&self) -> Vec<&'static str> {
        let with_tests = self.tools.tests.is_some();
        super::TOOL_NAMES.iter().copied().filter(|name| with_tests || *name != "run_tests").collect()
    }

    /// An answer without tool calls: the single-shot JSON, a closing summary, or a nudge
    /// that spells out the call to make. The same text again counts toward the stall
    /// detector like a repeated call.
    async fn on_plain_answer(&mut self, answer: Turn) -> Result<Option<String>, ImplementError> {
        if answer.content.contains("\"code_changes\"") {
            return self.apply_single_shot(&answer);
        }
        self.note_answer(&answer);
        let ws = &self.tools.workspace;
        let nudge = if answer.content.trim().is_empty() {
            format!("Your answer was empty. {}", plain_nudge(&self.example.change_call()))
        } else if let Some(code) = fenced_code(&answer.content, &|path| ws.exists(path)) {
            code_nudge(&code)
        } else if !self.result.files_changed.is_empty() {
            match self.judge_finish().await {
                Ok(()) => return Ok(Some(answer.content)),
                Err(refusal) => refusal,
            }
        } else {
            plain_nudge(&self.example.change_call())
        };
        self.tell(nudge);
        self.session.budget.note_progress(false);
        Ok(None)
    }

    /// The original format, applied all-or-nothing as before; protected paths refuse the
    /// whole answer and the model is told, like a refused tool call.
    fn apply_single_shot(&mut self, answer: &Turn) -> Result<Option<String>, ImplementError> {
        let changes = parse_code_changes(&answer.content).map_err(|e| match e {
            ImplementError::Answer(reason) if answer.truncated => {
                ImplementError::Answer(format!("{reason} (the answer was cut off at the token limit)"))
            }
            other => other,
        })?;
        let refused: Vec<WriteError> = changes
            .code_changes
            .iter()
            .filter_map(|c| self.tools.workspace.check_protected(&c.file_path).err())
            .collect();
        if !refused.is_empty() {
            for error in &refused {
                if let WriteError::Protected(r) = error {
                    self.refuse(r.path.clone(), r.pattern.clone());
                }
            }
            let reasons: Vec<String> = refused.iter().map(ToString::to_string).collect();
            self.tell(format!("Nothing was applied: {}", reasons.join("; ")));
            self.session.budget.note_progress(false);
            return Ok(None);
        }
        let files = apply_changes(self.tools.workspace.root(), &changes)?;
        self.note(Speaker::Engine, &format!("applied the single-shot answer: {files:?}"));
        self.add_changed(files);
        Ok(Some(changes.explanation))
    }

    async fn on_block_answer(&mut self, answer: Turn) -> Result<Option<String>, ImplementError> {
        if answer.content.contains("\"code_changes\"") {
            return self.apply_single_shot(&answer);
        }
        let actions = match parse_actions(&answer.content) {
            Ok(actions) => actions,
            Err(reason) => {
                self.note_answer(&answer);
                self.tell(format!("error: {reason}. Nothing was applied; send the blocks again."));
                self.session.budget.note_progress(false);
                return Ok(None);
            }
        };
        if actions.is_empty() {
            // A summary: the end of the round, if the evidence allows.
            self.note_answer(&answer);
            match self.judge_finish().await {
                Ok(()) => return Ok(Some(answer.content)),
                Err(refusal) => {
                    self.tell(refusal);
                    self.session.budget.note_progress(false);
                    return Ok(None);
                }
            }
        }
        let mut changed = false;
        let mut feedback = Vec::new();
        for (index, action) in actions.iter().enumerate() {
            self.session.budget.note_call(format!("{action:?}"));
            let (name, mut outcome) = self.perform(action).await;
            outcome.text = self.client.mask(&outcome.text);
            changed |= outcome.changed.is_some();
            self.observe(&outcome);
            self.record_tool(name, &outcome);
            feedback.push(format!("[{}] {}", index + 1, outcome.text));
        }
        self.session.budget.note_progress(changed);
        self.messages.push(turn::user(feedback.join("\n\n")));
        Ok(None)
    }

    /// Carries out one edit-block action through the tools.
    async fn perform(&self, action: &Action) -> (&'static str, ToolOutcome) {
        let ws = &self.tools.workspace;
        let mask = |mut o: ToolOutcome| {
            o.text = self.ctx.masker.mask(&o.text);
            o
        };
        match action {
            Action::Edit { path, search, .. } if search.is_empty() && ws.exists(path) => (
                "write_file",
                ToolOutcome::from_write(
                    Err(WriteError::Other(format!("{path} exists; use a SEARCH part with its current text"))),
                    path.clone(),
                ),
            ),
            Action::Edit { path, search, replace } if search.is_empty() => {
                let (p, r) = (path.clone(), replace.clone());
                let written = ws.off_thread(move |ws| ws.write_file(&p, &r), write_failed).await;
                ("write_file", ToolOutcome::from_write(written, ws.shown(path)))
            }
            Action::Edit { path, search, replace } => {
                let (p, s, r) = (path.clone(), search.clone(), replace.clone());
                let edited = ws.off_thread(move |ws| ws.edit_file(&p, &s, &r, false), write_failed).await;
                ("edit_file", ToolOutcome::from_write(edited, ws.shown(path)))
            }
            Action::Delete { path } => {
                let p = path.clone();
                let deleted = ws.off_thread(move |ws| ws.delete_file(&p), write_failed).await;
                ("delete_file", ToolOutcome::from_write(deleted, ws.shown(path)))
            }
            Action::Read { path } => {
                let p = path.clone();
                let text = ws.off_thread(move |ws| ws.read_file(&p, None, None), Err).await;
                ("read_file", mask(ToolOutcome::from_read(text)))
            }
            Action::RunTests => ("run_tests", mask(self.tools.run_tests().await)),
        }
    }

    /// Counts a tool call and records its result, its change and any refusal.
    pub(super) fn record_tool(&mut self, name: &str, outcome: &ToolOutcome) {
        let counted = if super::TOOL_NAMES.contains(&name) { name } else { "unknown" };
        *self.result.tool_calls.entry(counted.to_string()).or_default() += 1;
        if let Some(path) = &outcome.changed {
            self.add_changed(vec![path.clone()]);
        }
        if let Some(refusal) = &outcome.refusal {
            self.refuse(refusal.path.clone(), refusal.pattern.clone());
        }
        let entry = Entry {
            round: self.session.rounds,
            turn: self.session.budget.turns,
            speaker: Speaker::Tool,
            text: outcome.text.clone(),
            tool_calls: Vec::new(),
            tool: Some(name.to_string()),
            ok: Some(outcome.ok),
            tokens: None,
        };
        self.session.transcript.push(entry);
    }

    fn add_changed(&mut self, files: Vec<String>) {
        for file in files {
            if !self.result.files_changed.contains(&file) {
                self.result.files_changed.push(file);
            }
        }
    }

    fn refuse(&mut self, path: String, pattern: String) {
        let text = format!("{path} (protected by `{pattern}`)");
        self.note(Speaker::Engine, &format!("refused a write to {text}"));
        tracing::warn!(path = %path, pattern = %pattern, "write to a protected path refused");
        self.result.refusals.push(text);
    }

    /// A user message, recorded as it is sent.
    pub(super) fn tell(&mut self, text: String) {
        let text = self.client.mask(&text);
        self.note(Speaker::User, &text);
        self.messages.push(turn::user(text));
    }

    pub(super) fn note(&mut self, speaker: Speaker, text: &str) {
        let (round, turn) = (self.session.rounds, self.session.budget.turns);
        self.session.transcript.say(round, turn, speaker, text);
    }

    /// The wrap-up turn after a trip: the model may only summarise.
    async fn wrap_up(&mut self, trip: BudgetTrip) -> ImplementError {
        self.note(Speaker::Engine, &format!("budget exhausted: {trip}"));
        tracing::warn!(%trip, "implementation budget exhausted");
        self.tell(wrap_up_message(&trip.to_string()));
        let offer = match self.ctx.settings.mode {
            EngineMode::Tools => Offer::ToolsDisabled(definitions(self.tools.tests.is_some())),
            EngineMode::EditBlocks => Offer::Nothing,
        };
        match tokio::time::timeout(WRAP_UP_TIMEOUT, turn::ask(self.client, &self.messages, offer, None)).await
        {
            Ok(Ok(answer)) => {
                self.account(&answer);
                self.result.explanation = answer.content;
            }
            Ok(Err(e)) => self.note(Speaker::Engine, &format!("the wrap-up turn failed: {e}")),
            Err(_) => self.note(Speaker::Engine, "the wrap-up turn got no answer in time"),
        }
        ImplementError::BudgetExhausted { limit: trip.limit, detail: trip.detail }
    }
}

/// A write whose blocking call panicked, in words for the model.
fn write_failed(reason: String) -> super::workspace::WriteResult {
    Err(WriteError::Other(reason))
}
