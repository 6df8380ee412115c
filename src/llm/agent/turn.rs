//! One model turn on the wire: the request with the tool definitions, and the answer
//! reduced to its text, its tool calls and its usage.

use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage, ChatCompletionRequestToolMessage,
    ChatCompletionRequestUserMessage, ChatCompletionToolChoiceOption, ChatCompletionTools,
    CreateChatCompletionRequestArgs, FinishReason, FunctionCall, ToolChoiceOptions,
};

use super::transcript::CallRecord;
use crate::llm::{ImplementError, LlmClient};

/// Characters per token when the server reports no usage: the usual rule of thumb for
/// English and code, so budgets stay enforced against servers that omit `usage`.
const CHARS_PER_TOKEN: usize = 4;

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

/// Sends the conversation and reads the answer.
pub async fn ask(
    client: &LlmClient,
    messages: &[ChatCompletionRequestMessage],
    offer: Offer,
) -> Result<Turn, ImplementError> {
    let mut args = CreateChatCompletionRequestArgs::default();
    args.model(client.model()).messages(messages.to_vec());
    match offer {
        Offer::Tools(tools) => {
            args.tools(tools);
        }
        Offer::ToolsDisabled(tools) => {
            args.tools(tools).tool_choice(ChatCompletionToolChoiceOption::Mode(ToolChoiceOptions::None));
        }
        Offer::Nothing => {}
    }
    let request =
        args.build().map_err(|e| ImplementError::Settings(format!("cannot build the chat request: {e}")))?;
    let response = client.complete(request).await?;
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
        prompt_tokens = estimate(serde_json::to_string(messages).map_or(0, |s| s.len()));
        let written: usize = content.len() + calls.iter().map(|c| c.arguments.len()).sum::<usize>();
        completion_tokens = estimate(written);
    }
    Ok(Turn {
        content,
        calls,
        prompt_tokens,
        completion_tokens,
        model,
        truncated: matches!(choice.finish_reason, Some(FinishReason::Length)),
    })
}

fn estimate(chars: usize) -> u32 {
    u32::try_from(chars.div_ceil(CHARS_PER_TOKEN)).unwrap_or(u32::MAX)
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
