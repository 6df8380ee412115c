//! Turning a task-derived string into a valid, harmless git branch name.
//!
//! Branch names come from task messages (`feature/task-{spec_name}-{task_id}` or an
//! explicit name), so they are untrusted: they must not look like an option
//! (`--upload-pack=...`), climb out of `refs/heads/` (`../`), or be refused by git later.

use git2::Reference;

use super::error::GitError;

/// Longest branch name produced, in bytes. Each ref is a file under `.git/refs` (plus a
/// `.lock` sibling while written), and hosts refuse very long refs; 200 leaves room below
/// the usual 255-byte file-name limit.
const MAX_BRANCH_NAME_BYTES: usize = 200;

/// Characters git forbids anywhere in a ref name (besides control characters and spaces).
const FORBIDDEN_CHARS: &str = "~^:?*[\\";

/// Rewrites `raw` into a valid branch name: forbidden characters, whitespace and control
/// characters become `-`, `..` collapses to `.`, `@{` is broken up, components lose leading
/// dots and trailing `.lock`/`.`, the name loses leading `-`/`/` and trailing `/`/`.`.
/// Non-ASCII letters are kept (git allows them). Errors when nothing valid is left.
pub fn sanitize_branch_name(raw: &str) -> Result<String, GitError> {
    let invalid = |reason| GitError::InvalidBranchName { raw: raw.to_string(), reason };
    let mapped: String = raw
        .chars()
        .map(|c| if c.is_control() || c.is_whitespace() || FORBIDDEN_CHARS.contains(c) { '-' } else { c })
        .collect();
    let mut name = clean(&mapped.replace("@{", "-{"));
    if name.len() > MAX_BRANCH_NAME_BYTES {
        let mut cut = MAX_BRANCH_NAME_BYTES;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name = clean(&name[..cut]);
    }
    if name.is_empty() {
        return Err(invalid("nothing valid is left after sanitizing"));
    }
    if name == "@" || name == "HEAD" {
        return Err(invalid("reserved name"));
    }
    if !Reference::is_valid_name(&format!("refs/heads/{name}")) {
        return Err(invalid("not a valid git reference name"));
    }
    Ok(name)
}

/// Cleans until nothing changes: trimming one end can expose another bad suffix
/// (`x.lock-` → `x.lock` → `x`).
fn clean(name: &str) -> String {
    let mut current = name.to_string();
    loop {
        let next = clean_once(&current);
        if next == current {
            return next;
        }
        current = next;
    }
}

fn clean_once(name: &str) -> String {
    let components: Vec<String> = name.split('/').map(clean_component).filter(|c| !c.is_empty()).collect();
    let joined = collapse_runs(&components.join("/"), '-');
    joined.trim_start_matches(['-', '/']).trim_end_matches(['/', '.', '-']).to_string()
}

fn clean_component(component: &str) -> String {
    let mut c = collapse_runs(component, '.');
    loop {
        let before = c.len();
        c = c.trim_start_matches('.').to_string();
        if let Some(stripped) = c.strip_suffix(".lock") {
            c = stripped.to_string();
        }
        c = c.trim_end_matches('.').to_string();
        if c.len() == before {
            return c;
        }
    }
}

/// Replaces every run of `ch` with a single `ch`.
fn collapse_runs(s: &str, ch: char) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if !(c == ch && out.ends_with(ch)) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> String {
        sanitize_branch_name(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"))
    }

    #[test]
    fn sanitizes_hostile_and_sloppy_names() {
        assert_eq!(ok("feature/task-login-42"), "feature/task-login-42");
        assert_eq!(ok("--upload-pack=x"), "upload-pack=x");
        assert_eq!(ok("../../etc"), "etc");
        assert_eq!(ok("a..b"), "a.b");
        assert_eq!(ok("x.lock"), "x");
        assert_eq!(ok(".hidden.lock"), "hidden");
        assert_eq!(ok("a/b.lock/c"), "a/b/c");
        assert_eq!(ok("refs/heads/../x"), "refs/heads/x");
        assert_eq!(ok("feature/task fix  login bug-7"), "feature/task-fix-login-bug-7");
        assert_eq!(ok("a~b^c:d?e*f[g\\h"), "a-b-c-d-e-f-g-h");
        assert_eq!(ok("x\u{7f}y\nz\t"), "x-y-z");
        assert_eq!(ok("x.lock-"), "x");
        assert_eq!(ok("v@{1}"), "v-{1}");
        assert_eq!(ok("/lead/trail/."), "lead/trail");
        assert_eq!(ok("feature//double"), "feature/double");
        assert_eq!(ok("feature/tâche-é"), "feature/tâche-é");
    }

    #[test]
    fn rejects_names_with_nothing_left() {
        for raw in ["", "   ", "---", "..", "/", ".", "@", "HEAD", "~^:"] {
            let err = sanitize_branch_name(raw).unwrap_err();
            assert!(matches!(err, GitError::InvalidBranchName { .. }), "{raw:?}: {err}");
        }
    }

    #[test]
    fn long_names_are_truncated_to_a_valid_name() {
        let name = ok(&format!("feature/{}é.", "a".repeat(300)));
        assert!(name.len() <= MAX_BRANCH_NAME_BYTES);
        assert!(name.starts_with("feature/aaa"));
        assert!(Reference::is_valid_name(&format!("refs/heads/{name}")));
    }
}
