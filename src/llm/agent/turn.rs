//! One model turn on the wire: the request (the conversation fitted into the context
//! window by [`context`], the tool definitions, temperature and `max_tokens`), the retry
//! after an overflow answer, and the answer reduced to its text, its tool calls and its usage.

use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage, ChatCompletionRequestToolMessage,
    ChatCompletionRequestUserMessage, ChatCompletionToolChoiceOption, ChatCompletionTools,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs, CreateChatCompletionResponse, FinishReason,
    FunctionCall, ToolChoiceOptions,
};

use super::context::{self, Fitted};
use super::transcript::CallRecord;
use crate::llm::overflow::Overflow;
use crate::llm::{ImplementError, LlmClient};

/// What the model answered in one turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Text of the answer; empty when it only called tools.
    pub content: String,
    pub calls: Vec<CallRecord>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// The model the server says answered.
    pub model: String,
    /// Stopped at the token limit, so text or arguments may be cut off.
    pub truncated: bool,
    /// The completion limit the request asked for (`max_tokens`).
    pub max_tokens: u32,
    /// How the conversation was shortened to fit the window for this request.
    pub fit: context::FitReport,
}

/// How the tools are offered in a request.
pub enum Offer {
    /// The tools, the model may call any of them.
    Tools(Vec<ChatCompletionTools>),
    /// The tools are listed (the history mentions them) but the model may not call any:
    /// the wrap-up turn.
    ToolsDisabled(Vec<ChatCompletionTools>),
    /// No tools: edit-block mode.
    Nothing,
}

/// Overflow answers retried with a smaller request before the round fails: each one
/// corrects the window or the estimate, so a second overflow is already rare.
const MAX_OVERFLOW_RETRIES: u32 = 3;

/// Sends the conversation, fitted into the model's context window, and reads the answer.
/// An answer saying the request did not fit teaches the client the real sizes and the
/// request is fitted again and resent, up to [`MAX_OVERFLOW_RETRIES`] times.
/// `temperature` replaces the configured one for this request only.
pub async fn ask(
    client: &LlmClient,
    messages: &[ChatCompletionRequestMessage],
    offer: Offer,
    temperature: Option<f32>,
) -> Result<Turn, ImplementError> {
    let offered_chars = match &offer {
        Offer::Tools(tools) | Offer::ToolsDisabled(tools) => {
            serde_json::to_string(tools).map_or(0, |s| s.len())
        }
        Offer::Nothing => 0,
    };
    let mut overflows = 0;
    loop {
        let limits = client.context_limits().await;
        let fitted = context::fit(messages, offered_chars, limits, client.completion_cap(limits.window));
        if fitted.report.shrank() {
            tracing::debug!(
                window = limits.window,
                estimated_prompt_tokens = fitted.prompt_tokens,
                report = ?fitted.report,
                "the conversation was shortened to fit the model's context window"
            );
        }
        let request = build_request(client, &fitted, &offer, temperature)?;
        match client.complete(request).await {
            Err(ImplementError::ContextOverflow { window, prompt_tokens, .. })
                if overflows < MAX_OVERFLOW_RETRIES =>
            {
                overflows += 1;
                client.learn_overflow(fitted.prompt_tokens, limits, Overflow { window, prompt_tokens });
            }
            Err(other) => return Err(other),
            Ok(response) => {
                let mut turn = read_answer(client, response, &fitted, limits)?;
                turn.fit = fitted.report;
                return Ok(turn);
            }
        }
    }
}

/// The chat request: the fitted messages, the offer, the sampling settings.
fn build_request(
    client: &LlmClient,
    fitted: &Fitted,
    offer: &Offer,
    temperature: Option<f32>,
) -> Result<CreateChatCompletionRequest, ImplementError> {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model(client.model())
        .messages(fitted.messages.clone())
        .temperature(temperature.unwrap_or_else(|| client.temperature()));
    // `max_tokens`, not `max_completion_tokens`: llama.cpp and Ollama read only this one.
    #[allow(deprecated)]
    args.max_tokens(fitted.max_tokens);
    match offer {
        Offer::Tools(tools) => {
            args.tools(tools.clone());
        }
        Offer::ToolsDisabled(tools) => {
            args.tools(tools.clone())
                .tool_choice(ChatCompletionToolChoiceOption::Mode(ToolChoiceOptions::None));
        }
        Offer::Nothing => {}
    }
    args.build().map_err(|e| ImplementError::Settings(format!("cannot build the chat request: {e}")))
}

/// The answer reduced to a [`Turn`]. When the server reports no usage, the request's
/// size is the fitting's own estimate and the answer's is made the same way (one
/// estimate, erring high, so the budgets still hold against such servers).
fn read_answer(
    client: &LlmClient,
    response: CreateChatCompletionResponse,
    sent: &Fitted,
    limits: crate::llm::ContextLimits,
) -> Result<Turn, ImplementError> {
    let max_tokens = sent.max_tokens;
    let usage = response.usage.unwrap_or_default();
    let model = if response.model.is_empty() { client.model().to_string() } else { response.model };
    let choice = response
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ImplementError::Answer("the answer has no choices".into()))?;
    let message = choice.message;
    let calls: Vec<CallRecord> =
        message.tool_calls.unwrap_or_default().into_iter().map(call_record).collect();
    let content = message.content.or(message.refusal).unwrap_or_default();
    let (mut prompt_tokens, mut completion_tokens) = (usage.prompt_tokens, usage.completion_tokens);
    if prompt_tokens == 0 && completion_tokens == 0 {
        prompt_tokens = sent.prompt_tokens;
        let written: usize = content.len() + calls.iter().map(|c| c.arguments.len()).sum::<usize>();
        completion_tokens = context::estimate_tokens(written, limits);
    }
    Ok(Turn {
        content,
        calls,
        prompt_tokens,
        completion_tokens,
        model,
        truncated: matches!(choice.finish_reason, Some(FinishReason::Length)),
        max_tokens,
        fit: context::FitReport::default(),
    })
}

fn call_record(call: ChatCompletionMessageToolCalls) -> CallRecord {
    match call {
        ChatCompletionMessageToolCalls::Function(f) => {
            CallRecord { id: f.id, name: f.function.name, arguments: f.function.arguments }
        }
        // We offer no custom tools; the name is answered as unknown.
        ChatCompletionMessageToolCalls::Custom(c) => {
            CallRecord { id: c.id, name: c.custom_tool.name, arguments: c.custom_tool.input }
        }
    }
}

/// The system message.
pub fn system(text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestSystemMessage::from(text).into()
}

/// A user message.
pub fn user(text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestUserMessage::from(text).into()
}

/// The model's answer, as it goes back into the history.
pub fn assistant(turn: &Turn) -> ChatCompletionRequestMessage {
    let tool_calls: Vec<ChatCompletionMessageToolCalls> = turn
        .calls
        .iter()
        .map(|c| {
            ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                id: c.id.clone(),
                function: FunctionCall { name: c.name.clone(), arguments: c.arguments.clone() },
            })
        })
        .collect();
    ChatCompletionRequestAssistantMessage {
        content: (!turn.content.is_empty()).then(|| turn.content.clone().into()),
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        ..Default::default()
    }
    .into()
}

/// A tool result.
pub fn tool_result(call_id: &str, text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestToolMessage { content: text.into(), tool_call_id: call_id.to_string() }.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_answer_without_usage_is_counted_with_the_fitting_estimate() {
        let settings = crate::llm::LlmSettings {
            endpoint: Some("http://127.0.0.1:9/v1".into()),
            model: "m".into(),
            api_key: None,
            timeout: Duration::from_secs(5),
            retry_count: 0,
            context_tokens: Some(4096),
            temperature: 0.2,
            max_tokens: None,
        };
        let client = LlmClient::new(&settings).unwrap();
        let content = "x".repeat(300);
        let response: CreateChatCompletionResponse = serde_json::from_value(serde_json::json!({
            "id": "1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}]
        }))
        .unwrap();
        let sent =
            Fitted { messages: Vec::new(), prompt_tokens: 1234, max_tokens: 512, report: Default::default() };
        let limits = crate::llm::ContextLimits { window: 4096, scale: 1.5 };
        let turn = read_answer(&client, response, &sent, limits).unwrap();
        assert_eq!(turn.prompt_tokens, 1234, "the request's size is the fitting's estimate");
        assert_eq!(turn.completion_tokens, context::estimate_tokens(300, limits));
        assert_eq!(turn.completion_tokens, 150, "300 characters at 3 per token, times the learned 1.5");
    }
}
