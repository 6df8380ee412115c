//! Masking of known secret values in text that leaves the worker: logs, artifacts,
//! events, dead-letter headers, every request to the model and the CLI's output.
//!
//! Masking is the last line of defence, not the boundary: the token never reaches a
//! command's environment or a URL in the first place. But a test may print the remote
//! configuration, or a model may echo something it read, and the masker makes sure no
//! known value escapes verbatim or in its common encodings ([`forms`]): URL-encoded,
//! JSON-escaped, each line of a multi-line value, hex in both cases, and base64 (standard
//! and URL-safe alphabets) at each of the three byte offsets a value can sit at inside a
//! longer encoded stream, also when wrapped across lines ([`wrapped`]).
//!
//! [`Masker::find`] reports where a secret occurs without returning it; the push guard
//! uses it on a commit's added lines, together with the credential shapes of [`shapes`].
//!
//! Not covered: any other transformation a hostile command chooses (compression,
//! encryption, reversing, hex with separators); the boundary is that commands never get
//! the secrets at all.

mod forms;
mod scan;
mod shapes;
mod wrapped;

pub use scan::{
    AddedFile, AllowPatterns, Finding, MAX_ALLOW_PATTERN_CHARS, MAX_SCANNED_BYTES, ScanError, SecretScan,
};
pub use shapes::mask_credential_shapes;

use std::ops::Range;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

/// What a masked secret is replaced with.
pub const MASK: &str = "****";

/// Secrets shorter than this are not masked: masking a 5-character value would shred
/// ordinary text, and no real credential is that short. The same floor applies to each
/// derived form (a line of a key file, a base64 core), so a secret's short fragments
/// are not masked on their own.
pub const MIN_MASKABLE_LEN: usize = 6;

/// Replaces every known secret, in each of its encoded forms, with [`MASK`].
/// Cheap to clone; shared by every component that writes outward.
#[derive(Clone, Default)]
pub struct Masker {
    needles: Arc<Needles>,
}

#[derive(Default)]
struct Needles {
    /// Every form, longest first so a value is masked whole before any of its parts.
    plain: Vec<String>,
    /// The alphabet-only forms, searched across line breaks.
    wrappable: Vec<String>,
}

impl Needles {
    fn from_parts(mut plain: Vec<String>, mut wrappable: Vec<String>) -> Self {
        for list in [&mut plain, &mut wrappable] {
            list.sort_by_key(|n| std::cmp::Reverse(n.len()));
            list.dedup();
        }
        Needles { plain, wrappable }
    }

    fn shortest_wrappable(&self) -> usize {
        self.wrappable.last().map_or(usize::MAX, String::len)
    }
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} patterns)", self.needles.plain.len())
    }
}

impl Masker {
    /// Builds a masker for the given secrets; `None`s and short values are skipped.
    pub fn new<'a>(secrets: impl IntoIterator<Item = Option<&'a SecretString>>) -> Self {
        let (mut plain, mut wrappable) = (Vec::new(), Vec::new());
        for secret in secrets.into_iter().flatten() {
            let raw = secret.expose_secret();
            if raw.len() < MIN_MASKABLE_LEN {
                continue;
            }
            let forms = forms::forms_of(raw, MIN_MASKABLE_LEN);
            plain.extend(forms.plain);
            wrappable.extend(forms.wrappable);
        }
        Masker { needles: Arc::new(Needles::from_parts(plain, wrappable)) }
    }

    /// A masker for the secrets of both.
    pub fn union(&self, other: &Masker) -> Masker {
        let (a, b) = (&self.needles, &other.needles);
        let plain = a.plain.iter().chain(&b.plain).cloned().collect();
        let wrappable = a.wrappable.iter().chain(&b.wrappable).cloned().collect();
        Masker { needles: Arc::new(Needles::from_parts(plain, wrappable)) }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.needles.plain.is_empty()
    }

    /// The byte spans of `text` holding a known secret in any form, sorted and merged.
    /// The spans say where, never what: callers report positions, not the secret.
    pub fn find(&self, text: &str) -> Vec<Range<usize>> {
        let needles = &self.needles;
        let mut spans: Vec<Range<usize>> = Vec::new();
        for needle in &needles.plain {
            spans.extend(text.match_indices(needle.as_str()).map(|(at, n)| at..at + n.len()));
        }
        spans.extend(wrapped::find_wrapped(text, &needles.wrappable, needles.shortest_wrappable()));
        merge(spans)
    }

    /// Whether `text` holds a known secret in any form.
    pub fn contains(&self, text: &str) -> bool {
        !self.find(text).is_empty()
    }

    /// Masks every string in `value`, keys included: a request's tool arguments are JSON
    /// inside a string, and any field may carry text from the task or the repository.
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) if self.contains(text) => *text = self.mask(text),
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| self.mask_json(item)),
            serde_json::Value::Object(fields) => {
                *fields = std::mem::take(fields)
                    .into_iter()
                    .map(|(key, mut item)| {
                        self.mask_json(&mut item);
                        (self.mask(&key), item)
                    })
                    .collect();
            }
            _ => {}
        }
    }

    /// Returns `text` with every known secret replaced. A span that crossed line breaks
    /// keeps its breaks after the mask, so line numbers stay true.
    pub fn mask(&self, text: &str) -> String {
        let spans = self.find(text);
        if spans.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut kept = 0;
        for span in spans {
            out.push_str(&text[kept..span.start]);
            out.push_str(MASK);
            let covered = &text[span.clone()];
            out.extend(covered.chars().filter(|c| *c == '\n'));
            kept = span.end;
        }
        out.push_str(&text[kept..]);
        out
    }
}

/// Sorts spans and merges the overlapping or touching ones.
fn merge(mut spans: Vec<Range<usize>>) -> Vec<Range<usize>> {
    spans.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    #[test]
    fn masks_raw_url_encoded_and_json_escaped_forms() {
        let token = secret("ghp_abc/def+g\"h");
        let masker = Masker::new([Some(&token), None]);
        assert_eq!(masker.mask("token=ghp_abc/def+g\"h end"), "token=**** end");
        assert_eq!(masker.mask("https://x:ghp_abc%2Fdef%2Bg%22h@host"), "https://x:****@host");
        assert_eq!(masker.mask(r#"{"t":"ghp_abc/def+g\"h"}"#), r#"{"t":"****"}"#);
    }

    #[test]
    fn masks_base64_at_every_offset_in_both_alphabets() {
        let raw = "ghp_Secret?>value~42";
        let masker = Masker::new([Some(&secret(raw))]);
        for prefix in ["", "a", "ab", "abc"] {
            let stream = format!("{prefix}{raw}trailing bytes");
            for engine in [&STANDARD, &URL_SAFE_NO_PAD] {
                let encoded = engine.encode(stream.as_bytes());
                let masked = masker.mask(&encoded);
                assert!(masked.contains(MASK), "{prefix:?}: {encoded} -> {masked}");
                // What is left cannot be decoded back to the secret.
                let left: String = masked.replace(MASK, "");
                assert!(left.len() < encoded.len() - 20, "{prefix:?}: {masked}");
            }
        }
        assert_eq!(masker.mask("unrelated text"), "unrelated text");
    }

    #[test]
    fn a_union_masks_the_secrets_of_both() {
        let (a, b) = (secret("first-secret"), secret("second-secret"));
        let both = Masker::new([Some(&a)]).union(&Masker::new([Some(&b)]));
        assert_eq!(both.mask("first-secret second-secret"), "**** ****");
    }

    #[test]
    fn short_values_are_left_alone_and_debug_shows_no_secret() {
        let short = secret("abc");
        let long = secret("supersecretvalue");
        let masker = Masker::new([Some(&short), Some(&long)]);
        assert_eq!(masker.mask("abc supersecretvalue"), "abc ****");
        assert!(format!("{masker:?}").starts_with("Masker("));
        assert!(!format!("{masker:?}").contains("supersecretvalue"));
    }

    #[test]
    fn masks_json_inside_json() {
        let masker = Masker::new([Some(&secret("ghp_q\"uote"))]);
        let inner = serde_json::json!({ "title": "ghp_q\"uote" }).to_string();
        let outer = serde_json::json!({ "body": inner }).to_string();
        assert_eq!(masker.mask(&outer), r#"{"body":"{\"title\":\"****\"}"}"#);
    }

    #[test]
    fn masks_hex_in_both_cases() {
        let masker = Masker::new([Some(&secret("ghp_HexMe"))]);
        let hex = hex::encode("ghp_HexMe");
        assert_eq!(masker.mask(&format!("a {hex} b")), "a **** b");
        assert_eq!(masker.mask(&format!("a {} b", hex.to_uppercase())), "a **** b");
    }

    /// `base64` wraps at 76 columns, `openssl base64` at 64, `xxd -p` at 60.
    fn wrap(text: &str, width: usize) -> String {
        let chars: Vec<char> = text.chars().collect();
        chars.chunks(width).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn masks_base64_and_hex_wrapped_at_every_width_and_offset() {
        let raw = "ghp_Secret?>value~42";
        let masker = Masker::new([Some(&secret(raw))]);
        for pad in 0..80 {
            let stream = format!("{}{raw}{}", "x".repeat(pad), "y".repeat(40));
            for (width, encoded) in
                [(76, STANDARD.encode(&stream)), (64, STANDARD.encode(&stream)), (60, hex::encode(&stream))]
            {
                let wrapped = wrap(&encoded, width);
                let masked = masker.mask(&wrapped);
                assert!(masked.contains(MASK), "pad {pad} width {width}");
                assert_eq!(masked.lines().count(), wrapped.lines().count(), "line breaks are kept");
                let joined: String = masked.lines().collect();
                assert!(!masker.contains(&joined), "pad {pad} width {width}: nothing left to find unwrapped");
            }
        }
    }

    #[test]
    fn mask_json_masks_nested_strings_and_keys() {
        let masker = Masker::new([Some(&secret("supersecretvalue"))]);
        let mut value = serde_json::json!({"a": ["x supersecretvalue"], "supersecretvalue": {"n": 1}});
        masker.mask_json(&mut value);
        assert_eq!(value, serde_json::json!({"a": ["x ****"], "****": {"n": 1}}));
    }

    #[test]
    fn find_reports_spans_and_never_the_secret() {
        let masker = Masker::new([Some(&secret("supersecretvalue"))]);
        let text = "one supersecretvalue two supersecretvalue";
        assert_eq!(masker.find(text), vec![4..20, 25..41]);
        assert!(masker.contains(text));
        assert!(!masker.contains("nothing here\nat all"));
    }
}
