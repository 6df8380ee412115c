//! Well-known credential shapes: tokens that are secrets whoever issued them, found by
//! their documented prefixes and lengths rather than by knowing the value.
//!
//! Used by the push guard on a commit's added lines, and to mask the diff artifact, so a
//! model that writes a credential it found (or invented) never publishes it.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

/// What each shape is called in a finding, and its pattern. Lengths follow the issuers'
/// documented formats, with some slack where they have changed over time.
const SHAPES: &[(&str, &str)] = &[
    ("a GitHub token", r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    ("a GitHub fine-grained token", r"\bgithub_pat_[A-Za-z0-9_]{22,255}\b"),
    ("a GitLab token", r"\bglpat-[A-Za-z0-9_\-]{20,}"),
    ("an OpenAI key", r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{20,}"),
    ("an AWS access key id", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    ("a Slack token", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),
    ("a private key", r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----"),
];

/// The patterns, compiled once; they are constants, so none can fail (a unit test says so).
static COMPILED: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    SHAPES.iter().filter_map(|(name, pattern)| Regex::new(pattern).ok().map(|regex| (*name, regex))).collect()
});

/// The first credential shape in `line`: its name and byte span.
pub(super) fn find_shape(line: &str) -> Option<(&'static str, Range<usize>)> {
    COMPILED.iter().find_map(|(name, regex)| regex.find(line).map(|m| (*name, m.range())))
}

/// `text` with every credential shape replaced by [`super::MASK`].
pub fn mask_credential_shapes(text: &str) -> String {
    let mut out = text.to_string();
    for (_, regex) in COMPILED.iter() {
        if regex.is_match(&out) {
            out = regex.replace_all(&out, super::MASK).into_owned();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(COMPILED.len(), SHAPES.len());
    }

    #[test]
    fn each_shape_is_recognised_and_ordinary_text_is_not() {
        let samples = [
            format!("token = ghp_{}", "a1B2".repeat(9)),
            format!("gho_{}", "Z".repeat(36)),
            format!("github_pat_{}", "x_1".repeat(20)),
            "glpat-abcdefghij0123456789".to_string(),
            format!("OPENAI_API_KEY=sk-proj-{}", "q".repeat(40)),
            "aws_access_key_id = AKIAIOSFODNN7EXAMPLE".to_string(),
            "xoxb-1234567890-abcdefghij".to_string(),
            "-----BEGIN OPENSSH PRIVATE KEY-----".to_string(),
            "-----BEGIN PRIVATE KEY-----".to_string(),
        ];
        for sample in &samples {
            assert!(find_shape(sample).is_some(), "{sample}");
            assert!(mask_credential_shapes(sample).contains("****"), "{sample}");
        }
        for ordinary in ["ghp_short", "task-key-12", "AKIA lower", "-----BEGIN PUBLIC KEY-----", "sk-1"] {
            assert_eq!(find_shape(ordinary), None, "{ordinary}");
        }
    }
}
