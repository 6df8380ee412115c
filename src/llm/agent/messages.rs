//! Chat messages as text: what a message says, how many characters it puts into the
//! prompt, and the same message with other text, whatever content shape it has.

use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestAssistantMessageContent, ChatCompletionRequestMessage as Message,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessageContent,
    ChatCompletionRequestUserMessageContent, ChatCompletionRequestUserMessageContentPart,
};

use super::turn;

/// The call ids an answer holds.
pub fn call_ids(answer: &ChatCompletionRequestAssistantMessage) -> Vec<String> {
    let calls = answer.tool_calls.as_deref().unwrap_or(&[]);
    calls
        .iter()
        .map(|c| match c {
            ChatCompletionMessageToolCalls::Function(f) => f.id.clone(),
            ChatCompletionMessageToolCalls::Custom(c) => c.id.clone(),
        })
        .collect()
}

/// Characters a message puts into the prompt: its text and its tool calls.
pub fn chars(message: &Message) -> usize {
    let calls = match message {
        Message::Assistant(a) => a
            .tool_calls
            .iter()
            .flatten()
            .map(|c| match c {
                ChatCompletionMessageToolCalls::Function(f) => {
                    f.id.len() + f.function.name.len() + f.function.arguments.chars().count()
                }
                ChatCompletionMessageToolCalls::Custom(c) => {
                    c.custom_tool.name.len() + c.custom_tool.input.len()
                }
            })
            .sum(),
        _ => 0,
    };
    text(message).chars().count() + calls
}

/// The text of a message, its parts joined.
pub fn text(message: &Message) -> String {
    match message {
        Message::System(m) => match &m.content {
            ChatCompletionRequestSystemMessageContent::Text(t) => t.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        },
        Message::User(m) => match &m.content {
            ChatCompletionRequestUserMessageContent::Text(t) => t.clone(),
            ChatCompletionRequestUserMessageContent::Array(parts) => parts
                .iter()
                .map(|p| match p {
                    ChatCompletionRequestUserMessageContentPart::Text(t) => t.text.clone(),
                    other => serde_json::to_string(other).unwrap_or_default(),
                })
                .collect::<Vec<_>>()
                .join("\n"),
        },
        Message::Assistant(m) => m.content.as_ref().map(content_text).unwrap_or_default(),
        Message::Tool(m) => match &m.content {
            ChatCompletionRequestToolMessageContent::Text(t) => t.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        },
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

pub fn content_text(content: &ChatCompletionRequestAssistantMessageContent) -> String {
    match content {
        ChatCompletionRequestAssistantMessageContent::Text(t) => t.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

/// `message` with its text replaced (tool results keep their call id).
pub fn with_text(message: &Message, text: String) -> Message {
    match message {
        Message::Tool(tool) => turn::tool_result(&tool.tool_call_id, text),
        Message::Assistant(answer) => Message::Assistant(ChatCompletionRequestAssistantMessage {
            content: Some(text.into()),
            ..answer.clone()
        }),
        Message::System(_) => turn::system(text),
        _ => turn::user(text),
    }
}
