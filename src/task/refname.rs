//! Branch names in task messages: refused, not repaired, when they try something.
//!
//! `branch_name` and `base_branch` reach git (refspecs, ref paths) and, for whoever runs
//! real git later, command lines. A name that looks like an option (`--upload-pack=...`),
//! climbs out of `refs/heads/` (`../`, `refs/...`), or breaks git's ref-name rules is not a
//! typo to fix quietly: it is dead-lettered with the reason. Pure: no IO.

/// Longest branch name accepted, in bytes; matches the workspace's own limit for names it
/// derives (each ref is a file, and hosts refuse very long refs).
pub const MAX_BRANCH_NAME_BYTES: usize = 200;

/// Characters git forbids anywhere in a ref name (besides control characters and space).
const FORBIDDEN_CHARS: &str = "~^:?*[\\";

/// Why `name` cannot be a branch name, or `None` when it can.
pub fn branch_name_problem(name: &str) -> Option<&'static str> {
    if name.len() > MAX_BRANCH_NAME_BYTES {
        return Some("longer than 200 bytes");
    }
    if name.starts_with('-') {
        return Some("must not start with '-' (it would read as a command-line option)");
    }
    if name.starts_with("refs/") || name == "HEAD" || name == "@" {
        return Some("must be a plain branch name, not a ref path or HEAD");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace() || FORBIDDEN_CHARS.contains(c)) {
        return Some("must not contain whitespace, control characters or any of ~^:?*[\\");
    }
    if name.contains("..") || name.contains("@{") || name.contains("//") {
        return Some("must not contain '..', '@{' or '//'");
    }
    if name.starts_with('/') || name.ends_with('/') || name.ends_with('.') {
        return Some("must not start or end with '/' or end with '.'");
    }
    if name.split('/').any(|part| part.starts_with('.') || part.ends_with(".lock")) {
        return Some("no path component may start with '.' or end with '.lock'");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_refused_and_ordinary_ones_accepted() {
        for hostile in [
            "--upload-pack=touch /tmp/pwned",
            "-b",
            "refs/heads/../../config",
            "feature/../../../etc",
            "refs/remotes/origin/main",
            "HEAD",
            "a b",
            "x\ny",
            "v@{1}",
            "a//b",
            "feature/.hidden",
            "x.lock",
            "trailing/",
            "colon:name",
            &"a".repeat(201),
        ] {
            assert!(branch_name_problem(hostile).is_some(), "{hostile:?} accepted");
        }
        for fine in ["main", "feature/task-login-42", "release/1.2", "feature/tâche-é", "a.b_c-d"] {
            assert_eq!(branch_name_problem(fine), None, "{fine:?}");
        }
    }
}
