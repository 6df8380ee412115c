//! Recognising a server's "the request does not fit the context window" answer, and the
//! sizes it states.
//!
//! Every server words it differently and none uses a distinct status: llama.cpp answers
//! 400 `exceed_context_size_error` ("request (4146 tokens) exceeds the available context
//! size (4096 tokens)", with `n_prompt_tokens` and `n_ctx` in the body), OpenAI 400
//! `context_length_exceeded` ("This model's maximum context length is 8192 tokens. However,
//! your messages resulted in 9000 tokens"), vLLM 400 "This model's maximum context length
//! is 4096 tokens. However, you requested 4200 tokens (3200 in the messages, 1000 in the
//! completion)", Ollama "input length exceeds the context length". The engine shrinks the
//! request and asks again instead of failing the task (see `agent::turn`).

use std::sync::LazyLock;

use regex::Regex;

/// Phrases (lower case) that only an overflow answer contains.
const OVERFLOW_PHRASES: &[&str] = &[
    "exceeds the available context size",
    "exceed_context_size_error",
    "context_length_exceeded",
    "maximum context length",
    "context length exceeded",
    "exceeds the context length",
    "exceeds maximum context length",
    "input length exceeds",
    "prompt is too long",
    "reduce the length of the messages",
];

/// What an overflow answer says about the sizes, when it says anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Overflow {
    /// The context window the server has.
    pub window: Option<u32>,
    /// The prompt's size in the server's own tokens.
    pub prompt_tokens: Option<u32>,
}

static WINDOW: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    compile(&[
        r#""n_ctx"\s*:\s*(\d+)"#,
        r"context size \((\d+) tokens\)",
        r"maximum context length is (\d+)",
        r"context length is only (\d+)",
        r"context length of (\d+)",
    ])
});

static PROMPT: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    compile(&[
        r#""n_prompt_tokens"\s*:\s*(\d+)"#,
        r"request \((\d+) tokens\)",
        r"\((\d+) in the messages",
        r"messages resulted in (\d+) tokens",
    ])
});

fn compile(patterns: &[&str]) -> Vec<Regex> {
    // The patterns are literals above; one that does not compile is skipped (and caught
    // by the unit tests), never a panic in the worker.
    patterns.iter().filter_map(|p| Regex::new(p).ok()).collect()
}

/// The overflow `text` (an error body or message) describes, if it is one. Only client
/// errors count: a 5xx mentioning the context is the server's own trouble.
pub fn recognise(status: Option<u16>, text: &str) -> Option<Overflow> {
    if !matches!(status, Some(400 | 413 | 422)) {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    if !OVERFLOW_PHRASES.iter().any(|phrase| lower.contains(phrase)) {
        return None;
    }
    Some(Overflow { window: first_number(&WINDOW, &lower), prompt_tokens: first_number(&PROMPT, &lower) })
}

fn first_number(patterns: &[Regex], text: &str) -> Option<u32> {
    patterns.iter().find_map(|re| re.captures(text)?.get(1)?.as_str().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        assert_eq!((WINDOW.len(), PROMPT.len()), (5, 4));
    }

    #[test]
    fn llama_cpp_openai_vllm_and_ollama_answers_are_recognised_with_their_sizes() {
        let llama = r#"error body: {"error":{"code":400,"message":"request (4146 tokens) exceeds the available context size (4096 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":4146,"n_ctx":4096}}"#;
        assert_eq!(
            recognise(Some(400), llama),
            Some(Overflow { window: Some(4096), prompt_tokens: Some(4146) })
        );
        let llama_old = "the request exceeds the available context size, try increasing it";
        assert_eq!(recognise(Some(400), llama_old), Some(Overflow::default()));
        let openai = "This model's maximum context length is 8192 tokens. However, your messages resulted in \
                      9000 tokens. Please reduce the length of the messages.";
        assert_eq!(
            recognise(Some(400), openai),
            Some(Overflow { window: Some(8192), prompt_tokens: Some(9000) })
        );
        let vllm = "This model's maximum context length is 4096 tokens. However, you requested 4200 tokens \
                    (3200 in the messages, 1000 in the completion).";
        assert_eq!(
            recognise(Some(400), vllm),
            Some(Overflow { window: Some(4096), prompt_tokens: Some(3200) })
        );
        assert!(recognise(Some(400), "input length exceeds the context length").is_some());
    }

    #[test]
    fn other_errors_are_not_overflows() {
        assert_eq!(recognise(Some(400), "invalid tool_call_id"), None);
        assert_eq!(recognise(Some(503), "request exceeds the available context size"), None);
        assert_eq!(recognise(None, "maximum context length is 10"), None);
    }
}
