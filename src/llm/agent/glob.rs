//! Protected paths: glob patterns over workspace-relative, `/`-separated paths.
//!
//! `**` as a whole segment matches any number of segments (none included), `*` any run of
//! characters within a segment and `?` one character. Matching ignores ASCII case, because
//! on a case-insensitive filesystem `Tests/x` is the very file `tests/x`.

/// The default protected globs: where the common test frameworks keep their tests, so the
/// model cannot make a failing suite pass by weakening it.
pub const DEFAULT_PROTECTED_PATHS: &[&str] = &[
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

/// A checked set of globs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtectedPaths {
    patterns: Vec<String>,
}

impl ProtectedPaths {
    /// Checks every pattern; the error names the pattern and why it is unusable.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        for pattern in patterns {
            check_pattern(pattern).map_err(|reason| format!("pattern `{pattern}`: {reason}"))?;
        }
        Ok(ProtectedPaths { patterns: patterns.to_vec() })
    }

    /// The default set, [`DEFAULT_PROTECTED_PATHS`].
    pub fn defaults() -> Self {
        ProtectedPaths { patterns: DEFAULT_PROTECTED_PATHS.iter().map(|p| p.to_string()).collect() }
    }

    /// The patterns, as configured.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// The first pattern `path` matches, if any.
    pub fn matching(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.patterns.iter().map(String::as_str).find(|pattern| {
            let parts: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
            match_segments(&parts, &segments)
        })
    }
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

fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(seg, tail)| match_segment(first, seg) && match_segments(rest, tail)),
    }
}

fn match_segment(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let t: Vec<char> = text.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Classic wildcard matching with one backtrack point: linear for our short segments.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
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
    }
}
