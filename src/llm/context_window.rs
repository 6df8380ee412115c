//! The model's context window: configured (`llm.context_tokens`), or asked from the server
//! once per worker, and corrected by what overflow answers teach.
//!
//! The servers say it in their own places: llama.cpp `GET <root>/props`
//! (`default_generation_settings.n_ctx`, the per-slot window it really allocates), Ollama
//! `POST <root>/api/show` (`num_ctx` in `parameters`, else the model's trained
//! `<arch>.context_length` capped at Ollama's own default allocation), vLLM and other
//! OpenAI-like servers `GET <base>/models` (`max_model_len`, `context_length`, ...). `<root>`
//! is the endpoint without its `/v1`. The three are asked at once with a short timeout and
//! the key as a bearer token (the same host gets it with every chat request anyway); no
//! answer names a window → [`DEFAULT_CONTEXT_TOKENS`], and the overflow path shrinks from there.
//! OpenAI's own API (no endpoint configured) reports no windows: its published ones are
//! looked up by model family instead.
//!
//! The answer is cached in the client for the worker's life. When no probe reached the
//! server at all (it is down at the first task) nothing is cached and the next task asks again.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::overflow::Overflow;

/// Smallest `llm.context_tokens`: below it the system prompt and the tool definitions
/// alone fill the window.
pub const MIN_CONTEXT_TOKENS: u32 = 2048;
/// Largest `llm.context_tokens` (and `llm.max_tokens`): 16M tokens, past the largest
/// windows models have.
pub const MAX_CONTEXT_TOKENS: u32 = 16 * 1024 * 1024;
/// Smallest `llm.max_tokens`: a tool call needs a few dozen tokens.
pub const MIN_MAX_TOKENS: u32 = 16;
/// The window assumed when neither the config nor the server says: small enough for the
/// local models it is usually a sign of, and the overflow path corrects a smaller one.
pub const DEFAULT_CONTEXT_TOKENS: u32 = 8192;
/// `llm.temperature` unless set: low, for code that should be the likeliest answer, not a
/// creative one; 0 makes some small models loop on the same call.
pub const DEFAULT_TEMPERATURE: f32 = 0.2;
/// Ollama allocates this window unless the model's parameters (or the server's
/// `OLLAMA_CONTEXT_LENGTH`, which it does not report) say otherwise, and truncates longer
/// prompts silently, so a larger trained length must not be believed.
const OLLAMA_DEFAULT_NUM_CTX: u32 = 4096;
/// One discovery request: the server is local or the probe is pointless.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How far one overflow answer may grow the estimate's correction: a server claiming far
/// more tokens than characters is wrong, not informative.
const MAX_SCALE: f64 = 4.0;
/// Headroom over the server's own count after an overflow, for the turns still to come.
const SCALE_HEADROOM: f64 = 1.05;
/// The shrink when an overflow answer states no sizes: a quarter less.
const BLIND_SHRINK: f64 = 0.75;

/// The completion cap when `llm.max_tokens` is unset: a quarter of the window, which leaves
/// three quarters for the conversation resent every turn, at least 256 tokens (a tool call
/// with a short edit) and at most 4096 (a whole source file; small models that write more
/// are usually repeating themselves).
pub fn default_completion_cap(window: u32) -> u32 {
    (window / 4).clamp(256, 4096)
}

/// Where a window came from, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSource {
    /// OpenAI's own API, whose windows are published per model.
    KnownModel,
    LlamaCppProps,
    OllamaShow,
    ModelsList,
    /// Nothing said: [`DEFAULT_CONTEXT_TOKENS`].
    Assumed,
}

/// What one worker knows about its model's window.
pub(crate) struct ContextKnowledge {
    configured: Option<u32>,
    /// The discovery's answer, once a probe reached the server.
    discovered: OnceCell<(u32, WindowSource)>,
    learned: Mutex<Learned>,
}

/// What overflow answers taught.
#[derive(Debug, Clone, Copy)]
struct Learned {
    /// A window an answer stated, smaller than the one believed.
    window: Option<u32>,
    /// How many server tokens one estimated token turned out to be (at least 1).
    scale: f64,
}

/// The numbers a request is fitted to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContextLimits {
    pub window: u32,
    /// Correction of the character estimate (1 until an overflow taught otherwise).
    pub scale: f64,
}

impl ContextKnowledge {
    pub fn new(configured: Option<u32>) -> Self {
        ContextKnowledge {
            configured,
            discovered: OnceCell::new(),
            learned: Mutex::new(Learned { window: None, scale: 1.0 }),
        }
    }

    /// The window and correction to fit the next request to; discovers the window on the
    /// first call.
    pub async fn limits(&self, probe: &Probe<'_>) -> ContextLimits {
        let believed = match self.configured {
            Some(tokens) => tokens,
            None => self.discovered(probe).await,
        };
        let learned = *self.learned.lock().unwrap_or_else(|p| p.into_inner());
        let window = learned.window.map_or(believed, |w| w.min(believed));
        ContextLimits { window, scale: learned.scale }
    }

    async fn discovered(&self, probe: &Probe<'_>) -> u32 {
        let found = self.discovered.get_or_try_init(|| discover(probe)).await;
        found.map_or(DEFAULT_CONTEXT_TOKENS, |&(tokens, _source)| tokens)
    }

    /// Learns from an overflow answer to a request estimated at `estimated_prompt` tokens.
    pub fn learn(&self, estimated_prompt: u32, sent: ContextLimits, overflow: Overflow) {
        let mut learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        // Tasks running at once may learn at once: keep the tightest of what they learned.
        if let Some(window) = overflow.window.filter(|w| *w > 0 && *w < sent.window) {
            learned.window = Some(learned.window.map_or(window, |w| w.min(window)));
        }
        let stated_more = overflow.prompt_tokens.filter(|p| *p > estimated_prompt && estimated_prompt > 0);
        let smaller_window = overflow.window.is_some_and(|w| w < sent.window);
        let scale = match stated_more {
            Some(prompt) => sent.scale * f64::from(prompt) / f64::from(estimated_prompt) * SCALE_HEADROOM,
            None if smaller_window => sent.scale,
            None => sent.scale / BLIND_SHRINK,
        };
        learned.scale = scale.max(learned.scale).clamp(1.0, MAX_SCALE);
        tracing::info!(
            window = learned.window.unwrap_or(sent.window),
            scale = learned.scale,
            "the model's context window was exceeded; later requests are fitted tighter"
        );
    }
}

/// How to reach the server for the discovery.
pub(crate) struct Probe<'a> {
    pub http: &'a reqwest::Client,
    /// The configured base URL (with `/v1`); `None` is OpenAI's, whose model list names
    /// no windows, so nothing is asked.
    pub base: Option<&'a str>,
    pub model: &'a str,
    /// Sent as a bearer token when not empty.
    pub api_key: &'a str,
}

/// Asks the three places at once; `Err` when none of them answered at all.
async fn discover(probe: &Probe<'_>) -> Result<(u32, WindowSource), ()> {
    let Some(base) = probe.base.map(|b| b.trim_end_matches('/')) else {
        if let Some(tokens) = openai_window(probe.model) {
            tracing::info!(tokens, "the context window of OpenAI's {}", probe.model);
            return Ok((tokens, WindowSource::KnownModel));
        }
        tracing::warn!(
            "the context window of {} is not reported by the server; assuming {DEFAULT_CONTEXT_TOKENS} tokens \
             (set llm.context_tokens)",
            probe.model
        );
        return Ok((DEFAULT_CONTEXT_TOKENS, WindowSource::Assumed));
    };
    let root = base.strip_suffix("/v1").unwrap_or(base);
    let (props, show, models) = tokio::join!(
        fetch(probe, probe.http.get(format!("{root}/props"))),
        // `name` for Ollama releases before `model` replaced it.
        fetch(
            probe,
            probe
                .http
                .post(format!("{root}/api/show"))
                .json(&json!({"model": probe.model, "name": probe.model}))
        ),
        fetch(probe, probe.http.get(format!("{base}/models"))),
    );
    if [&props, &show, &models].iter().all(|answer| answer.is_err()) {
        tracing::warn!("the LLM server could not be asked for its context window; asking again next task");
        return Err(());
    }
    let found = [
        (props.ok().flatten().as_ref().and_then(llama_cpp_window), WindowSource::LlamaCppProps),
        (show.ok().flatten().as_ref().and_then(ollama_window), WindowSource::OllamaShow),
        (
            models.ok().flatten().as_ref().and_then(|m| models_window(m, probe.model)),
            WindowSource::ModelsList,
        ),
    ]
    .into_iter()
    .find_map(|(tokens, source)| tokens.map(|t| (t.clamp(MIN_CONTEXT_TOKENS, MAX_CONTEXT_TOKENS), source)));
    match found {
        Some((tokens, source)) => {
            tracing::info!(tokens, source = ?source, "the model's context window");
            Ok((tokens, source))
        }
        None => {
            tracing::warn!(
                "the LLM server reports no context window for {}; assuming {DEFAULT_CONTEXT_TOKENS} tokens \
                 (set llm.context_tokens)",
                probe.model
            );
            Ok((DEFAULT_CONTEXT_TOKENS, WindowSource::Assumed))
        }
    }
}

/// OpenAI's published windows by model family (its model list names none), longest
/// prefix first; a model not listed gets the conservative default, and an overflow
/// answer (which states the window) corrects a stale entry.
const OPENAI_WINDOWS: &[(&str, u32)] = &[
    ("gpt-4.1", 1_047_576),
    ("gpt-4o", 128_000),
    ("gpt-4-turbo", 128_000),
    ("gpt-3.5-turbo", 16_385),
    ("gpt-5", 400_000),
    ("o1", 200_000),
    ("o3", 200_000),
    ("o4", 200_000),
];

fn openai_window(model: &str) -> Option<u32> {
    OPENAI_WINDOWS.iter().find(|(prefix, _)| model.starts_with(prefix)).map(|(_, tokens)| *tokens)
}

/// The JSON body of a 2xx answer (`Ok(None)` for any other answer), `Err` when the server
/// did not answer. Errors are not logged: they may carry the URL, and a 404 is expected
/// from two of the three.
async fn fetch(probe: &Probe<'_>, request: reqwest::RequestBuilder) -> Result<Option<Value>, ()> {
    let request = request.timeout(PROBE_TIMEOUT);
    let request = if probe.api_key.is_empty() { request } else { request.bearer_auth(probe.api_key) };
    let response = request.send().await.map_err(|_| ())?;
    if !response.status().is_success() {
        return Ok(None);
    }
    Ok(response.json::<Value>().await.ok())
}

fn tokens(value: &Value) -> Option<u32> {
    value.as_u64().and_then(|n| u32::try_from(n).ok()).filter(|n| *n > 0)
}

/// llama.cpp's `/props`.
fn llama_cpp_window(props: &Value) -> Option<u32> {
    tokens(&props["default_generation_settings"]["n_ctx"]).or_else(|| tokens(&props["n_ctx"]))
}

/// Ollama's `/api/show`: `num_ctx` when the model sets one, else the trained length capped
/// at what Ollama allocates by default.
fn ollama_window(show: &Value) -> Option<u32> {
    let parameters = show["parameters"].as_str().unwrap_or("");
    let num_ctx = parameters.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("num_ctx")).then(|| words.next()?.parse::<u32>().ok()).flatten()
    });
    if num_ctx.is_some() {
        return num_ctx;
    }
    let info = show["model_info"].as_object()?;
    let trained =
        info.iter().find(|(key, _)| key.ends_with(".context_length")).and_then(|(_, v)| tokens(v))?;
    Some(trained.min(OLLAMA_DEFAULT_NUM_CTX))
}

/// An OpenAI-like `/models` list: the entry named `model`, or the only entry (llama.cpp
/// and single-model servers list their file name, not the name asked for).
fn models_window(list: &Value, model: &str) -> Option<u32> {
    let entries = list["data"].as_array()?;
    let entry = entries.iter().find(|e| e["id"].as_str() == Some(model)).or(match entries.as_slice() {
        [only] => Some(only),
        _ => None,
    })?;
    ["max_model_len", "context_length", "context_window", "max_context_length"]
        .iter()
        .find_map(|key| tokens(&entry[*key]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_shape_gives_its_window() {
        assert_eq!(llama_cpp_window(&json!({"default_generation_settings": {"n_ctx": 4096}})), Some(4096));
        assert_eq!(llama_cpp_window(&json!({"n_ctx": 2048})), Some(2048));
        let show = json!({"parameters": "stop \"<|im_end|>\"\nnum_ctx 16384", "model_info": {"qwen2.context_length": 32768}});
        assert_eq!(ollama_window(&show), Some(16384));
        let show = json!({"model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768}});
        assert_eq!(ollama_window(&show), Some(OLLAMA_DEFAULT_NUM_CTX));
        let list =
            json!({"data": [{"id": "a", "max_model_len": 32768}, {"id": "b", "context_length": 8000}]});
        assert_eq!(models_window(&list, "b"), Some(8000));
        assert_eq!(models_window(&list, "c"), None);
        assert_eq!(
            models_window(&json!({"data": [{"id": "x.gguf", "context_window": 6000}]}), "q"),
            Some(6000)
        );
        assert_eq!(models_window(&json!({"data": [{"id": "m"}]}), "m"), None);
        assert_eq!(openai_window("gpt-4o-mini"), Some(128_000));
        assert_eq!(openai_window("gpt-4.1-nano"), Some(1_047_576));
        assert_eq!(openai_window("my-finetune"), None);
    }

    #[test]
    fn the_completion_cap_follows_the_window_within_bounds() {
        assert_eq!(default_completion_cap(2048), 512);
        assert_eq!(default_completion_cap(4096), 1024);
        assert_eq!(default_completion_cap(128_000), 4096);
    }

    #[test]
    fn an_overflow_shrinks_the_window_or_grows_the_correction() {
        let knowledge = ContextKnowledge::new(Some(8192));
        let sent = ContextLimits { window: 8192, scale: 1.0 };
        knowledge.learn(3000, sent, Overflow { window: Some(4096), prompt_tokens: Some(4146) });
        let learned = *knowledge.learned.lock().unwrap();
        assert_eq!(learned.window, Some(4096));
        assert!((learned.scale - 4146.0 / 3000.0 * SCALE_HEADROOM).abs() < 1e-9, "{learned:?}");
        let knowledge = ContextKnowledge::new(Some(8192));
        knowledge.learn(3000, sent, Overflow::default());
        assert!((knowledge.learned.lock().unwrap().scale - 1.0 / BLIND_SHRINK).abs() < 1e-9);
    }
}
