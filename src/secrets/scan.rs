//! The push guard's scan: a commit's added lines searched for the known secrets (every
//! form the [`Masker`] knows, wrapped base64 included) and for well-known credential
//! shapes, minus what the operator's allow-patterns (`git.secret_scan_allow`) let through.
//!
//! Findings name the file and line and what was found, never the text itself.

use regex::Regex;

use super::{Masker, shapes};
use crate::error::{Classify, FailureKind};

/// Bytes of added lines scanned per push at most. A model writes at most a few hundred
/// KiB per task (each write is capped at 1 MiB); a commit past this is refused rather
/// than pushed unscanned.
pub const MAX_SCANNED_BYTES: usize = 16 * 1024 * 1024;
/// Longest allow-pattern accepted: patterns come from configuration and run per finding.
pub const MAX_ALLOW_PATTERN_CHARS: usize = 512;
/// Findings listed in the error; the rest are counted.
const MAX_LISTED_FINDINGS: usize = 10;

/// One file's added lines: `(line number in the new file, text)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddedFile {
    pub path: String,
    pub lines: Vec<(u32, String)>,
}

/// A secret found on an added line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub path: String,
    pub line: u32,
    /// What was found (`a known secret`, `a GitHub token`, ...), never the text.
    pub what: &'static str,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.what)
    }
}

/// Why the guard refused a push.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("the commit adds {} secret(s), push refused: {}", .0.len(), list(.0))]
    Detected(Vec<Finding>),
    #[error(
        "the commit adds more than the {MAX_SCANNED_BYTES} bytes of lines the secret scan covers; push refused"
    )]
    TooLarge,
}

fn list(findings: &[Finding]) -> String {
    let mut shown: Vec<String> = findings.iter().take(MAX_LISTED_FINDINGS).map(ToString::to_string).collect();
    if findings.len() > MAX_LISTED_FINDINGS {
        shown.push(format!("and {} more", findings.len() - MAX_LISTED_FINDINGS));
    }
    shown.join("; ")
}

impl Classify for ScanError {
    fn failure_kind(&self) -> FailureKind {
        match self {
            ScanError::Detected(_) => FailureKind::SecretDetected,
            ScanError::TooLarge => FailureKind::Push,
        }
    }
    /// The same commit would be refused again.
    fn is_transient(&self) -> bool {
        false
    }
}

/// Allow-patterns for known false positives, matched against the offending line's text
/// or against `path:line`.
#[derive(Debug, Clone, Default)]
pub struct AllowPatterns(Vec<Regex>);

impl AllowPatterns {
    /// Compiles the patterns; the error names the one that failed.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut compiled = Vec::with_capacity(patterns.len());
        for pattern in patterns {
            if pattern.chars().count() > MAX_ALLOW_PATTERN_CHARS {
                return Err(format!("a pattern is longer than {MAX_ALLOW_PATTERN_CHARS} characters"));
            }
            compiled.push(Regex::new(pattern).map_err(|e| format!("`{pattern}` is not a valid regex: {e}"))?);
        }
        Ok(AllowPatterns(compiled))
    }

    /// The patterns as configured.
    pub fn patterns(&self) -> Vec<&str> {
        self.0.iter().map(Regex::as_str).collect()
    }

    fn allows(&self, path: &str, line: u32, text: &str) -> bool {
        let located = format!("{path}:{line}");
        self.0.iter().any(|regex| regex.is_match(text) || regex.is_match(&located))
    }
}

impl PartialEq for AllowPatterns {
    fn eq(&self, other: &Self) -> bool {
        self.patterns() == other.patterns()
    }
}

/// The scan: the known secrets and the allow-patterns.
#[derive(Debug, Clone)]
pub struct SecretScan {
    masker: Masker,
    allow: AllowPatterns,
}

impl SecretScan {
    pub fn new(masker: Masker, allow: AllowPatterns) -> Self {
        SecretScan { masker, allow }
    }

    /// Every finding in `files`, at most one per line; an empty list lets the push go.
    pub fn scan(&self, files: &[AddedFile]) -> Vec<Finding> {
        let mut findings = Vec::new();
        for file in files {
            let mut flagged: Vec<(u32, &'static str)> = Vec::new();
            for (number, text) in &file.lines {
                if let Some((what, _)) = shapes::find_shape(text) {
                    flagged.push((*number, what));
                }
            }
            // Joined, so a secret wrapped over several added lines is found too; a span
            // is reported at the line it starts on.
            let (joined, starts) = join_lines(&file.lines);
            for span in self.masker.find(&joined) {
                let index = starts.partition_point(|&start| start <= span.start).saturating_sub(1);
                flagged.push((file.lines[index].0, "a known secret"));
            }
            flagged.sort_by_key(|(line, what)| (*line, *what != "a known secret"));
            flagged.dedup_by_key(|(line, _)| *line);
            for (line, what) in flagged {
                let text = file.lines.iter().find(|(n, _)| *n == line).map_or("", |(_, t)| t.as_str());
                if !self.allow.allows(&file.path, line, text) {
                    findings.push(Finding { path: file.path.clone(), line, what });
                }
            }
        }
        findings
    }
}

/// The lines joined by `\n`, and the byte offset each starts at.
fn join_lines(lines: &[(u32, String)]) -> (String, Vec<usize>) {
    let mut joined = String::new();
    let mut starts = Vec::with_capacity(lines.len());
    for (_, text) in lines {
        starts.push(joined.len());
        joined.push_str(text);
        joined.push('\n');
    }
    (joined, starts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn file(path: &str, lines: &[&str]) -> AddedFile {
        let lines = lines.iter().enumerate().map(|(i, l)| (i as u32 + 1, l.to_string())).collect();
        AddedFile { path: path.into(), lines }
    }

    fn scan_with(allow: &[&str]) -> SecretScan {
        let token = SecretString::from("tok-Known-Value-42".to_string());
        let allow = AllowPatterns::new(&allow.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        SecretScan::new(Masker::new([Some(&token)]), allow)
    }

    #[test]
    fn known_secrets_in_any_form_and_credential_shapes_are_found_by_line() {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode("xx tok-Known-Value-42 yy");
        let (head, tail) = encoded.split_at(10);
        let files = [
            file("a.txt", &["fine", "let t = \"tok-Known-Value-42\";"]),
            file("b.txt", &["746f6b2d4b6e6f776e2d56616c75652d3432", head, tail]),
            file("c.txt", &["ok", "ok", &format!("ghp_{}", "a".repeat(36))]),
        ];
        let found: Vec<String> = scan_with(&[]).scan(&files).iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "a.txt:2: a known secret",
                "b.txt:1: a known secret",
                "b.txt:2: a known secret",
                "c.txt:3: a GitHub token"
            ]
        );
        let error = ScanError::Detected(scan_with(&[]).scan(&files[..1]));
        assert_eq!(error.to_string(), "the commit adds 1 secret(s), push refused: a.txt:2: a known secret");
        assert!(!error.to_string().contains("Known"));
        assert_eq!(error.failure_kind().as_str(), "secret_detected");
    }

    #[test]
    fn an_allow_pattern_matches_the_line_or_its_location() {
        let files =
            [file("fixtures/fake.txt", &[&format!("ghp_{}", "0".repeat(36)), "AKIAIOSFODNN7EXAMPLE"])];
        assert_eq!(scan_with(&[]).scan(&files).len(), 2);
        assert_eq!(scan_with(&["EXAMPLE$"]).scan(&files).len(), 1);
        assert!(scan_with(&["EXAMPLE$", r"^fixtures/fake\.txt:1$"]).scan(&files).is_empty());
        assert!(AllowPatterns::new(&["(".to_string()]).unwrap_err().contains("not a valid regex"));
    }
}
