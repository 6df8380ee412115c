//! Keeping every request inside the model's context window.
//!
//! The round keeps the whole conversation; before each request [`fit`] makes the copy that
//! is sent. Its size is estimated (characters / [`CHARS_PER_TOKEN`], times the correction
//! overflow answers taught, plus a few tokens per message for the chat template) and a
//! completion budget is reserved. Every tool result is first cut to a share of the window
//! (test output keeps its tail, where the verdict is; anything else its head). When the
//! estimate is still over, in this order:
//!
//! 1. old tool results become one line ("[read_file src/x.py: 120 lines, dropped to fit the
//!    context]"), and the long arguments and texts of old answers likewise;
//! 2. a user message repeated later (a nudge) goes, with the answer that drew it;
//! 3. the oldest whole exchanges (an answer, its tool results, the feedback after it) go,
//!    and the task message says so;
//! 4. the repository section of the task message is cut.
//!
//! Kept always: system messages, the first user message (the task), the latest exchange and
//! the latest failing test output. Pairing stays valid (a tool message follows the answer
//! holding its call id, or it is not sent), and no answer goes out with neither text nor
//! tool calls. See `ARCHITECTURE.md` for why the transcript keeps the full text.

use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestMessage as Message,
};
use serde_json::Value;

use super::messages::{call_ids, chars, content_text, text, with_text};
use super::turn;
use crate::llm::ContextLimits;

/// Characters per token of the estimate: code and JSON tokenise denser than English (about
/// 3 to 3.5 per token with the usual tokenizers), so 3 errs on the safe side.
pub const CHARS_PER_TOKEN: f64 = 3.0;
/// Tokens the chat template adds per message (role markers, separators).
const MESSAGE_OVERHEAD_TOKENS: u32 = 6;
/// Share of the window one tool result may take.
const TOOL_RESULT_SHARE: f64 = 0.2;
/// Texts shorter than this are never summarised: the summary would not be shorter.
const SUMMARY_MIN_CHARS: usize = 200;
/// Fewest completion tokens a request asks for, even when the prompt could not be fitted.
const MIN_COMPLETION_TOKENS: u32 = 64;
/// What the tools answer for a test run that failed (`tools::run_tests`, edit-block feedback).
const FAILED_TESTS_MARK: &str = "tests FAILED";

/// What [`fit`] did to the conversation, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FitReport {
    pub cut: usize,
    pub summarised: usize,
    pub collapsed: usize,
    pub dropped_exchanges: usize,
    pub repository_cut: bool,
}

impl FitReport {
    /// Whether anything beyond the per-result cut happened.
    pub fn shrank(&self) -> bool {
        self.summarised + self.collapsed + self.dropped_exchanges > 0 || self.repository_cut
    }

    /// What was left out of the request, for the transcript: "3 old tool results
    /// summarised, 2 repeated nudges collapsed, 1 old exchange dropped".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let counted = [
            (self.summarised, "old tool result summarised", "old tool results summarised"),
            (self.collapsed, "repeated nudge collapsed", "repeated nudges collapsed"),
            (self.dropped_exchanges, "old exchange dropped", "old exchanges dropped"),
        ];
        for (n, one, many) in counted {
            match n {
                0 => {}
                1 => parts.push(format!("1 {one}")),
                n => parts.push(format!("{n} {many}")),
            }
        }
        if self.repository_cut {
            parts.push("the repository view cut".to_string());
        }
        parts.join(", ")
    }
}

/// The request to send.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub messages: Vec<Message>,
    /// Estimated prompt tokens, tool definitions included.
    pub prompt_tokens: u32,
    /// The completion budget to ask for: the cap, or what is left of the window.
    pub max_tokens: u32,
    pub report: FitReport,
}

/// Estimated tokens of `chars` characters under `limits`.
pub fn estimate_tokens(chars: usize, limits: ContextLimits) -> u32 {
    let tokens = (chars as f64 * limits.scale / CHARS_PER_TOKEN).ceil();
    if tokens >= f64::from(u32::MAX) { u32::MAX } else { tokens as u32 }
}

/// Characters that fit in `tokens` under `limits`.
pub fn chars_for(tokens: u32, limits: ContextLimits) -> usize {
    (f64::from(tokens) * CHARS_PER_TOKEN / limits.scale) as usize
}

/// Tokens kept free for the chat template's own framing and the estimate's error.
fn margin(window: u32) -> u32 {
    window / 50 + 32
}

/// Fits `messages` (plus `fixed_chars` of tool definitions) into `limits.window`,
/// reserving up to `completion_cap` tokens for the answer.
pub fn fit(messages: &[Message], fixed_chars: usize, limits: ContextLimits, completion_cap: u32) -> Fitted {
    let window = limits.window;
    let reserve = completion_cap.min(window / 2);
    let budget = window.saturating_sub(reserve).saturating_sub(margin(window));
    let mut plan = Plan::new(messages, estimate_tokens(fixed_chars, limits), limits);
    let result_chars = chars_for((f64::from(window) * TOOL_RESULT_SHARE) as u32, limits);
    plan.cut_results(result_chars);
    if plan.total() > budget {
        plan.summarise_old(budget);
    }
    if plan.total() > budget {
        plan.collapse_repeats(budget);
    }
    if plan.total() > budget {
        plan.drop_exchanges(budget);
    }
    if plan.total() > budget {
        plan.cut_repository(budget);
    }
    let prompt_tokens = plan.total();
    let left = window.saturating_sub(prompt_tokens).saturating_sub(margin(window));
    let max_tokens = completion_cap.min(left).max(MIN_COMPLETION_TOKENS.min(completion_cap));
    Fitted { messages: plan.finish(), prompt_tokens, max_tokens, report: plan.report }
}

/// The conversation being fitted: the messages (`None` once dropped) and their estimates.
struct Plan {
    /// The conversation as given: summaries describe these, not the cut texts.
    originals: Vec<Message>,
    messages: Vec<Option<Message>>,
    tokens: Vec<u32>,
    fixed: u32,
    limits: ContextLimits,
    /// The first user message: the task.
    task: Option<usize>,
    /// Where the latest exchange starts (the last answer).
    latest: usize,
    /// The latest failing test output.
    failure: Option<usize>,
    report: FitReport,
}

impl Plan {
    fn new(messages: &[Message], fixed: u32, limits: ContextLimits) -> Self {
        let task = messages.iter().position(|m| matches!(m, Message::User(_)));
        let latest =
            messages.iter().rposition(|m| matches!(m, Message::Assistant(_))).unwrap_or(messages.len());
        let failure = messages.iter().rposition(|m| {
            matches!(m, Message::Tool(_) | Message::User(_)) && text(m).contains(FAILED_TESTS_MARK)
        });
        let mut plan = Plan {
            originals: messages.to_vec(),
            messages: messages.iter().cloned().map(Some).collect(),
            tokens: Vec::new(),
            fixed,
            limits,
            task,
            latest,
            failure: failure.filter(|f| Some(*f) != task),
            report: FitReport::default(),
        };
        plan.tokens = plan.messages.iter().map(|m| m.as_ref().map_or(0, |m| plan.cost(m))).collect();
        plan
    }

    fn cost(&self, message: &Message) -> u32 {
        estimate_tokens(chars(message), self.limits).saturating_add(MESSAGE_OVERHEAD_TOKENS)
    }

    fn total(&self) -> u32 {
        self.tokens.iter().fold(self.fixed, |sum, t| sum.saturating_add(*t))
    }

    fn replace(&mut self, index: usize, message: Message) {
        self.tokens[index] = self.cost(&message);
        self.messages[index] = Some(message);
    }

    fn remove(&mut self, index: usize) {
        self.messages[index] = None;
        self.tokens[index] = 0;
    }

    /// Whether `index` may be summarised or dropped.
    fn movable(&self, index: usize) -> bool {
        Some(index) != self.task && Some(index) != self.failure && index < self.latest
    }

    /// Cuts every tool result (and feedback message) to `max` characters.
    fn cut_results(&mut self, max: usize) {
        for index in 0..self.messages.len() {
            let Some(message) = &self.messages[index] else { continue };
            let is_result = matches!(message, Message::Tool(_))
                || (matches!(message, Message::User(_)) && Some(index) != self.task);
            let body = text(message);
            if !is_result || body.chars().count() <= max {
                continue;
            }
            let cut = if body.contains(FAILED_TESTS_MARK) || body.starts_with("tests ") {
                let kept = super::tail_chars(&body, max);
                format!("[the start of this output was cut to fit the context window]\n{kept}")
            } else {
                let kept = crate::llm::truncate_chars(&body, max);
                format!(
                    "{kept}\n[cut to {max} of {} characters to fit the context window; ask for less, e.g. \
                     read_file with start_line and end_line]",
                    body.chars().count()
                )
            };
            let replaced = with_text(message, cut);
            self.replace(index, replaced);
            self.report.cut += 1;
        }
    }

    /// Step 1: old tool results, arguments and answers become one-line summaries, oldest first.
    fn summarise_old(&mut self, budget: u32) {
        for index in 0..self.messages.len() {
            if self.total() <= budget {
                return;
            }
            if !self.movable(index) || self.messages[index].is_none() {
                continue;
            }
            let message = &self.originals[index];
            let summary = match message {
                Message::Tool(tool) => {
                    let body = text(message);
                    (body.chars().count() >= SUMMARY_MIN_CHARS).then(|| {
                        let call = self.call_named(index, &tool.tool_call_id);
                        with_text(message, result_summary(call.as_ref(), &body))
                    })
                }
                Message::User(_) => {
                    let body = text(message);
                    (body.chars().count() >= SUMMARY_MIN_CHARS).then(|| {
                        turn::user(format!("[{} lines of results, dropped to fit the context]", lines(&body)))
                    })
                }
                Message::Assistant(answer) => summarised_answer(answer).map(Message::Assistant),
                _ => None,
            };
            if let Some(summary) = summary {
                self.replace(index, summary);
                self.report.summarised += 1;
            }
        }
    }

    /// The name and arguments of call `id`, from the answer before `index`.
    fn call_named(&self, index: usize, id: &str) -> Option<(String, String)> {
        let answer =
            self.messages[..index].iter().rev().flatten().find(|m| matches!(m, Message::Assistant(_)))?;
        let Message::Assistant(answer) = answer else { return None };
        answer.tool_calls.as_ref()?.iter().find_map(|call| match call {
            ChatCompletionMessageToolCalls::Function(f) if f.id == id => {
                Some((f.function.name.clone(), f.function.arguments.clone()))
            }
            _ => None,
        })
    }

    /// Step 2: a user message said again later goes, with the plain answer that drew it.
    fn collapse_repeats(&mut self, budget: u32) {
        for index in 0..self.messages.len() {
            if self.total() <= budget {
                return;
            }
            let Some(message @ Message::User(_)) = &self.messages[index] else { continue };
            if !self.movable(index) {
                continue;
            }
            let body = text(message);
            let repeated = self.messages[index + 1..]
                .iter()
                .flatten()
                .any(|later| matches!(later, Message::User(_)) && text(later) == body);
            if !repeated {
                continue;
            }
            let before = (0..index).rev().find(|i| self.messages[*i].is_some());
            if let Some(before) = before
                && self.movable(before)
                && matches!(&self.messages[before], Some(Message::Assistant(a)) if a.tool_calls.is_none())
            {
                self.remove(before);
            }
            self.remove(index);
            self.report.collapsed += 1;
        }
    }

    /// Step 3: the oldest exchanges go whole, never the latest or the latest failure's.
    fn drop_exchanges(&mut self, budget: u32) {
        let starts: Vec<usize> = (self.task.map_or(0, |t| t + 1)..self.latest)
            .filter(|i| matches!(self.messages[*i], Some(Message::Assistant(_))))
            .collect();
        let mut dropped = 0;
        for (k, start) in starts.iter().enumerate() {
            if self.total() <= budget {
                break;
            }
            let end = starts.get(k + 1).copied().unwrap_or(self.latest);
            if self.failure.is_some_and(|f| (*start..end).contains(&f)) {
                continue;
            }
            for index in *start..end {
                self.remove(index);
            }
            dropped += 1;
        }
        if dropped == 0 {
            return;
        }
        self.report.dropped_exchanges = dropped;
        if let Some(task) = self.task
            && let Some(message) = &self.messages[task]
        {
            let note = format!(
                "{}\n\n[{dropped} earlier turns were left out to fit the model's context window; their \
                 changes are in the workspace]",
                text(message)
            );
            let noted = with_text(message, note);
            self.replace(task, noted);
        }
    }

    /// Step 4: the repository section of the task message, cut to what fits.
    fn cut_repository(&mut self, budget: u32) {
        let Some(task) = self.task else { return };
        let Some(message) = &self.messages[task] else { return };
        let body = text(message);
        let Some((start, end)) = repository_section(&body) else { return };
        let over = self.total().saturating_sub(budget);
        let section = &body[start..end];
        let drop_chars = chars_for(over, self.limits) + 200;
        let keep = section.chars().count().saturating_sub(drop_chars);
        let kept = crate::llm::truncate_chars(section, keep);
        let cut = format!(
            "{}{kept}\n[the rest of the repository view was cut to fit the context window; use the tools to look]\n{}",
            &body[..start],
            &body[end..]
        );
        let replaced = with_text(message, cut);
        self.replace(task, replaced);
        self.report.repository_cut = true;
    }

    /// The messages left, with orphaned tool results dropped and empty answers filled.
    fn finish(&mut self) -> Vec<Message> {
        let mut out: Vec<Message> = Vec::new();
        let mut open_calls: Vec<String> = Vec::new();
        for message in self.messages.iter().flatten() {
            match message {
                Message::Assistant(answer) => {
                    open_calls = call_ids(answer);
                    let mut answer = answer.clone();
                    let empty_text = answer.content.as_ref().is_none_or(|c| content_text(c).is_empty());
                    if empty_text && answer.tool_calls.as_ref().is_none_or(Vec::is_empty) {
                        answer.content = Some(super::round::EMPTY_ANSWER.to_string().into());
                        answer.tool_calls = None;
                    }
                    out.push(Message::Assistant(answer));
                }
                Message::Tool(tool) if !open_calls.contains(&tool.tool_call_id) => {}
                Message::Tool(_) => out.push(message.clone()),
                other => {
                    open_calls.clear();
                    out.push(other.clone());
                }
            }
        }
        out
    }
}

/// The byte range inside the task message's repository fence, if it has one.
fn repository_section(body: &str) -> Option<(usize, usize)> {
    let open = body.find("<<<REPOSITORY ")?;
    let start = open + body[open..].find('\n')? + 1;
    let end = start + body[start..].find("<<<END REPOSITORY ")?;
    Some((start, end))
}

fn result_summary(call: Option<&(String, String)>, body: &str) -> String {
    let Some((name, arguments)) = call else {
        return format!("[a tool result of {} lines, dropped to fit the context]", lines(body));
    };
    if name == "run_tests" {
        let verdict = if body.contains(FAILED_TESTS_MARK) { "FAILED" } else { "PASSED" };
        return format!("[run_tests: {verdict}, {} lines, dropped to fit the context]", lines(body));
    }
    let args: Value = serde_json::from_str(arguments).unwrap_or(Value::Null);
    let target = ["path", "pattern"].iter().find_map(|k| args[*k].as_str()).unwrap_or("");
    let target = if target.is_empty() {
        String::new()
    } else {
        format!(" {}", crate::llm::truncate_chars(target, 120))
    };
    format!("[{name}{target}: {} lines, dropped to fit the context]", lines(body))
}

/// An old answer with its long texts replaced by summaries; `None` when nothing is long.
fn summarised_answer(
    answer: &ChatCompletionRequestAssistantMessage,
) -> Option<ChatCompletionRequestAssistantMessage> {
    let mut changed = false;
    let mut answer = answer.clone();
    if let Some(content) = &answer.content {
        let body = content_text(content);
        if body.chars().count() >= SUMMARY_MIN_CHARS {
            answer.content =
                Some(format!("[an answer of {} lines, dropped to fit the context]", lines(&body)).into());
            changed = true;
        }
    }
    for call in answer.tool_calls.iter_mut().flatten() {
        let ChatCompletionMessageToolCalls::Function(f) = call else { continue };
        // Servers parse earlier arguments as JSON to render them: a summary stays valid JSON.
        let Ok(Value::Object(mut args)) = serde_json::from_str::<Value>(&f.function.arguments) else {
            continue;
        };
        let mut shortened = false;
        for value in args.values_mut() {
            if let Value::String(s) = value
                && s.chars().count() >= SUMMARY_MIN_CHARS
            {
                *s = format!("[{} lines, dropped to fit the context]", lines(s));
                shortened = true;
            }
        }
        if shortened {
            f.function.arguments = Value::Object(args).to_string();
            changed = true;
        }
    }
    changed.then_some(answer)
}

fn lines(text: &str) -> usize {
    text.lines().count()
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;
