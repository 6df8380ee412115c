//! Masking of known secret values in text that leaves the worker: logs, artifacts,
//! events and dead-letter headers.
//!
//! Masking is the last line of defence, not the boundary: the token never reaches a
//! command's environment or a URL in the first place. But a test may print the remote
//! configuration, or a model may echo something it read, and the masker makes sure no
//! known value escapes verbatim or in its common encodings: URL-encoded, JSON-escaped,
//! each line of a multi-line value, and base64 (standard and URL-safe alphabets) at each
//! of the three byte offsets a value can sit at inside a longer encoded stream.
//!
//! Not covered: base64 wrapped across lines (`base64` wraps at 76 columns), hex, or any
//! transformation a hostile command chooses; the boundary is that commands never get
//! the secrets at all.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};

/// What a masked secret is replaced with.
pub const MASK: &str = "****";

/// Secrets shorter than this are not masked: masking a 2-character value would shred
/// ordinary text, and no real credential is that short.
const MIN_MASKABLE_LEN: usize = 6;

/// Replaces every known secret (and its URL-encoded and JSON-escaped forms) with [`MASK`].
/// Cheap to clone; shared by every component that writes outward.
#[derive(Clone, Default)]
pub struct Masker {
    needles: Arc<Vec<String>>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} patterns)", self.needles.len())
    }
}

impl Masker {
    /// Builds a masker for the given secrets; `None`s and short values are skipped.
    pub fn new<'a>(secrets: impl IntoIterator<Item = Option<&'a SecretString>>) -> Self {
        let mut needles = Vec::new();
        for secret in secrets.into_iter().flatten() {
            let raw = secret.expose_secret();
            if raw.len() < MIN_MASKABLE_LEN {
                continue;
            }
            needles.push(raw.to_string());
            needles.push(percent_encode(raw));
            if let Ok(json) = serde_json::to_string(raw) {
                needles.push(json.trim_matches('"').to_string());
            }
            // A multi-line secret (a key file) may surface one line at a time.
            needles.extend(raw.lines().filter(|l| l.len() >= MIN_MASKABLE_LEN).map(str::to_string));
            needles.extend(base64_forms(raw.as_bytes()).into_iter().filter(|n| n.len() >= MIN_MASKABLE_LEN));
        }
        // Longest first, so a value is masked whole before any of its parts.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Masker { needles: Arc::new(needles) }
    }

    /// A masker for the secrets of both.
    pub fn union(&self, other: &Masker) -> Masker {
        let mut needles: Vec<String> = self.needles.iter().chain(other.needles.iter()).cloned().collect();
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Masker { needles: Arc::new(needles) }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Returns `text` with every known secret replaced.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for needle in self.needles.iter() {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), MASK);
            }
        }
        out
    }
}

/// The base64 text that `secret` turns into inside any base64 stream: the stream is cut
/// into 3-byte groups, so the secret starts at offset 0, 1 or 2 of a group, and each
/// offset gives different characters. For each offset, only the characters that depend on
/// the secret's bits alone are kept (the first ones may mix in the preceding byte, the
/// last ones the following byte), in both the standard and the URL-safe alphabet.
fn base64_forms(secret: &[u8]) -> Vec<String> {
    let mut forms = Vec::new();
    for offset in 0..3usize {
        let mut shifted = vec![0u8; offset];
        shifted.extend_from_slice(secret);
        // Character i covers bits 6i..6i+6; keep those inside the secret's bits.
        let first = (8 * offset).div_ceil(6);
        let end = 8 * (offset + secret.len()) / 6;
        if end <= first {
            continue;
        }
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&shifted);
            if let Some(core) = encoded.get(first..end) {
                forms.push(core.to_string());
            }
        }
    }
    forms
}

fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
            for engine in [&base64::engine::general_purpose::STANDARD, &URL_SAFE_NO_PAD] {
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
}
