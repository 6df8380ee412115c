//! Protected paths: glob patterns over workspace-relative, `/`-separated paths.
//!
//! `**` as a whole segment matches any number of segments (none included), `*` any run of
//! characters within a segment and `?` one character (plus `globset`'s `[…]` classes and
//! `{a,b}` alternatives). Matching ignores case, because on a case-insensitive filesystem
//! `Tests/x` is the very file `tests/x`.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// The default protected globs: where the common test frameworks keep their tests, so the
/// model cannot make a failing suite pass by weakening it, and the repository's own
/// playbook directory, which says what the test step runs (a real model in the
/// evaluation rewrote `.necrocode/playbook.yaml` in place of the code).
pub const DEFAULT_PROTECTED_PATHS: &[&str] = &[
    ".necrocode/**",
    "tests/**",
    "test/**",
    "spec/**",
    "**/__tests__/**",
    "**/*_test.*",
    "**/test_*.*",
    "**/*.test.*",
    "**/*.spec.*",
];

/// Longest pattern accepted: patterns come from configuration and are matched per write.
pub const MAX_PATTERN_CHARS: usize = 256;

/// A checked set of globs, compiled once (`globset`, ripgrep's matcher).
#[derive(Debug, Clone, Default)]
pub struct ProtectedPaths {
    patterns: Vec<String>,
    compiled: GlobSet,
}

impl PartialEq for ProtectedPaths {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for ProtectedPaths {}

impl ProtectedPaths {
    /// Checks and compiles every pattern; the error names the pattern and why it is
    /// unusable.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let mut set = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = check_pattern(pattern)
                .and_then(|()| compile(pattern))
                .map_err(|reason| format!("pattern `{pattern}`: {reason}"))?;
            set.add(glob);
        }
        let compiled = set.build().map_err(|e| format!("protected paths: {e}"))?;
        Ok(ProtectedPaths { patterns: patterns.to_vec(), compiled })
    }

    /// The default set, [`DEFAULT_PROTECTED_PATHS`].
    pub fn defaults() -> Self {
        let patterns: Vec<String> = DEFAULT_PROTECTED_PATHS.iter().map(|p| p.to_string()).collect();
        // The defaults are literals checked by the tests below; an empty set is the only
        // thing a failure here could fall back to, and it would protect nothing.
        Self::new(&patterns).unwrap_or_default()
    }

    /// The patterns, as configured.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The first pattern `path` matches, if any. Empty segments (`a//b`, a leading `/`)
    /// are ignored, as the workspace resolves them.
    pub fn matching(&self, path: &str) -> Option<&str> {
        let normalised: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let first = self.compiled.matches(normalised.join("/")).into_iter().min()?;
        self.patterns.get(first).map(String::as_str)
    }
}

/// `*` and `?` stay within a segment, `**` spans segments, and case is ignored.
fn compile(pattern: &str) -> Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .case_insensitive(true)
        .build()
        .map_err(|e| e.kind().to_string())
}

/// A pattern is relative and `..`-free: it describes paths inside the workspace.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.trim().is_empty() {
        return Err("empty".to_string());
    }
    if pattern.chars().count() > MAX_PATTERN_CHARS {
        return Err(format!("longer than {MAX_PATTERN_CHARS} characters"));
    }
    if pattern.starts_with('/') || pattern.contains('\\') {
        return Err("must be relative, with / separators".to_string());
    }
    if pattern.split('/').any(|s| s == "..") {
        return Err("must not contain ..".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_patterns_cover_the_common_test_locations() {
        let protected = ProtectedPaths::defaults();
        for path in [
            "tests/test_greet.sh",
            "tests/deep/a.rs",
            "Tests/x.py",
            "test/a.c",
            "spec/models/user_spec.rb",
            "src/__tests__/a.js",
            "pkg/handler_test.go",
            "test_app.py",
            "src/lib/test_util.py",
            "web/app.test.ts",
            "web/app.spec.js",
            ".necrocode/playbook.yaml",
        ] {
            assert!(protected.matching(path).is_some(), "{path}");
        }
        for path in ["src/main.rs", "greet.sh", "testing/x.rs", "src/contest.py", "latest/a.txt"] {
            assert_eq!(protected.matching(path), None, "{path}");
        }
        assert_eq!(protected.matching("tests/a.sh"), Some("tests/**"));
    }

    #[test]
    fn wildcards_and_double_stars() {
        let protected = ProtectedPaths::new(&["docs/*.md".into(), "a/**/z?.txt".into()]).unwrap();
        assert!(protected.matching("docs/readme.md").is_some());
        assert!(protected.matching("docs/sub/readme.md").is_none());
        assert!(protected.matching("a/z1.txt").is_some());
        assert!(protected.matching("a/b/c/z2.txt").is_some());
        assert!(protected.matching("a/b/z12.txt").is_none());
    }

    #[test]
    fn unusable_patterns_are_named() {
        assert_eq!(
            ProtectedPaths::new(&["/etc/**".into()]).unwrap_err(),
            "pattern `/etc/**`: must be relative, with / separators"
        );
        assert_eq!(ProtectedPaths::new(&["../x".into()]).unwrap_err(), "pattern `../x`: must not contain ..");
        assert_eq!(ProtectedPaths::new(&[" ".into()]).unwrap_err(), "pattern ` `: empty");
        assert!(ProtectedPaths::new(&["src/[a".into()]).unwrap_err().starts_with("pattern `src/[a`: "));
    }
}
