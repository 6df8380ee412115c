//! Sampling fields a model refuses, learned from its answers and left out from then on.
//!
//! Every request carries `temperature` and `max_tokens` (llama.cpp and Ollama read only
//! that spelling). OpenAI's reasoning models refuse both with a 400: `max_tokens` must be
//! `max_completion_tokens` there, and `temperature` may only be the default. Such an answer
//! is not the task's failure: the request is adapted and sent again at once, and the
//! client remembers it for the worker's later requests.

use std::sync::atomic::{AtomicBool, Ordering};

use async_openai::types::chat::CreateChatCompletionRequest;

/// What this worker's model turned out to refuse.
#[derive(Debug, Default)]
pub(crate) struct Quirks {
    /// Send the completion cap as `max_completion_tokens`.
    completion_field: AtomicBool,
    /// Send no `temperature`.
    no_temperature: AtomicBool,
}

impl Quirks {
    /// `request` as this model accepts it.
    pub fn apply(&self, request: &mut CreateChatCompletionRequest) {
        if self.completion_field.load(Ordering::Relaxed) {
            #[allow(deprecated)]
            let cap = request.max_tokens.take();
            request.max_completion_tokens = request.max_completion_tokens.or(cap);
        }
        if self.no_temperature.load(Ordering::Relaxed) {
            request.temperature = None;
        }
    }

    /// Learns from a 400 answer's `message`; true when it named a field not yet adapted,
    /// so the request is worth sending again.
    pub fn learn(&self, message: &str) -> bool {
        let lower = message.to_ascii_lowercase();
        let refused = |field: &str| {
            lower.contains(&format!("'{field}'"))
                && ["unsupported", "not supported", "does not support"].iter().any(|p| lower.contains(p))
        };
        let mut learned = false;
        if refused("max_tokens") && !self.completion_field.swap(true, Ordering::Relaxed) {
            tracing::info!("the model refuses max_tokens; sending max_completion_tokens from now on");
            learned = true;
        }
        if refused("temperature") && !self.no_temperature.swap(true, Ordering::Relaxed) {
            tracing::info!("the model refuses a temperature; sending none from now on");
            learned = true;
        }
        learned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_reasoning_model_refusals_are_learned_once() {
        let quirks = Quirks::default();
        assert!(!quirks.learn("the request exceeds the available context size"));
        assert!(quirks.learn(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
        ));
        assert!(!quirks.learn("Unsupported parameter: 'max_tokens' is not supported with this model."));
        assert!(quirks.learn(
            "Unsupported value: 'temperature' does not support 0.2 with this model. Only the default (1) value is supported."
        ));
        #[allow(deprecated)]
        let mut request = CreateChatCompletionRequest {
            max_tokens: Some(512),
            temperature: Some(0.2),
            ..Default::default()
        };
        quirks.apply(&mut request);
        #[allow(deprecated)]
        let fields = (request.max_tokens, request.max_completion_tokens, request.temperature);
        assert_eq!(fields, (None, Some(512), None));
    }
}
