//! Masking of known secret values in text that leaves the worker: logs, artifacts,
//! events and dead-letter headers.
//!
//! Masking is the last line of defence, not the boundary: the token never reaches a
//! command's environment or a URL in the first place. But a test may print the remote
//! configuration, or a model may echo something it read, and the masker makes sure no
//! known value escapes verbatim or in its common encodings.

use std::sync::Arc;

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
        }
        // Longest first, so a value is masked whole before any of its parts.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        needles.dedup();
        Masker { needles: Arc::new(needles) }
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
    fn short_values_are_left_alone_and_debug_shows_no_secret() {
        let short = secret("abc");
        let long = secret("supersecretvalue");
        let masker = Masker::new([Some(&short), Some(&long)]);
        assert_eq!(masker.mask("abc supersecretvalue"), "abc ****");
        assert_eq!(format!("{masker:?}"), "Masker(1 patterns)");
    }
}
