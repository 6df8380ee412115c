//! The git module's error enum, its classification, and the redaction helpers that keep
//! credentials out of every message.
//!
//! libgit2 messages are copied into [`GitDetail`] (already redacted) instead of being kept
//! as a `#[source]`: a logger walking the source chain must not be able to print a raw
//! libgit2 message that might quote a URL with userinfo.

use std::path::PathBuf;

use crate::error::{Classify, FailureKind};

/// A libgit2 failure, reduced to what classification needs plus a redacted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitDetail {
    pub code: git2::ErrorCode,
    pub class: git2::ErrorClass,
    /// libgit2's message with any URL userinfo stripped.
    pub message: String,
}

impl From<git2::Error> for GitDetail {
    fn from(error: git2::Error) -> Self {
        GitDetail { code: error.code(), class: error.class(), message: redact_text(error.message()) }
    }
}

impl std::fmt::Display for GitDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl GitDetail {
    /// True when the failure comes from the network or the remote being unavailable, so a
    /// later attempt may succeed. Authentication and certificate failures, and HTTP 4xx
    /// answers other than 408/429, are permanent: retrying would fail the same way.
    pub fn is_transient(&self) -> bool {
        use git2::{ErrorClass, ErrorCode};
        if matches!(self.code, ErrorCode::Auth | ErrorCode::Certificate) {
            return false;
        }
        if let Some(status) = http_status(&self.message) {
            return status >= 500 || status == 408 || status == 429;
        }
        matches!(self.code, ErrorCode::Eof | ErrorCode::Timeout)
            || matches!(self.class, ErrorClass::Net | ErrorClass::Http | ErrorClass::Ssl | ErrorClass::Ssh)
    }
}

/// Extracts the status from libgit2's "unexpected http status code: NNN" message.
fn http_status(message: &str) -> Option<u16> {
    const MARKER: &str = "status code: ";
    let start = message.find(MARKER)? + MARKER.len();
    let digits: String = message[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Everything that can go wrong in slots, workspaces, commits and pushes. URLs in these
/// variants are always passed through [`redact_url`] first.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("remote URL {url} embeds a password; pass the token through GitCredentials instead")]
    CredentialsInUrl { url: String },
    #[error("cannot prepare workspace slot at {path}: {source}")]
    SlotIo { path: PathBuf, source: std::io::Error },
    #[error("all {max} workspace slots for {url} are busy")]
    SlotsBusy { url: String, max: usize },
    #[error("cannot clone {url} into {path}: {detail}")]
    Clone { url: String, path: PathBuf, detail: GitDetail },
    #[error("cannot open repository at {path}: {detail}")]
    Open { path: PathBuf, detail: GitDetail },
    #[error("cannot fetch from {url}: {detail}")]
    Fetch { url: String, detail: GitDetail },
    #[error("base branch {branch} does not exist on remote {url}")]
    MissingBaseBranch { branch: String, url: String },
    #[error("cannot check out {what}: {detail}")]
    Checkout { what: String, detail: GitDetail },
    #[error("cannot remove untracked path {path}: {source}")]
    Clean { path: PathBuf, source: std::io::Error },
    #[error("invalid branch name {raw:?}: {reason}")]
    InvalidBranchName { raw: String, reason: &'static str },
    #[error("cannot create branch {branch}: {detail}")]
    Branch { branch: String, detail: GitDetail },
    #[error("cannot commit in {path}: {detail}")]
    Commit { path: PathBuf, detail: GitDetail },
    #[error("cannot diff against base commit {base}: {detail}")]
    Diff { base: String, detail: GitDetail },
    #[error("cannot push branch {branch} to {url}: {detail}")]
    Push { branch: String, url: String, detail: GitDetail },
    #[error("remote {url} rejected branch {branch}: {reason}")]
    PushRejected { branch: String, url: String, reason: String },
    #[error("cannot read branch {branch} from remote {url}: {detail}")]
    RemoteQuery { branch: String, url: String, detail: GitDetail },
    #[error("cannot reset the git configuration of {path}: {detail}")]
    Harden { path: PathBuf, detail: GitDetail },
    /// The task added or grew files past `limits.max_file_bytes`; nothing was committed.
    #[error(
        "refusing to commit files over the {max}-byte limit (limits.max_file_bytes) that the task \
         added or grew: {files}"
    )]
    FileTooLarge { files: String, max: u64 },
}

impl GitError {
    /// A clone, fetch, push or remote query that the remote or the network failed for a
    /// reason a moment may fix: worth retrying in place (`git_retry_count`). Not a
    /// rejected push, an authentication failure or a busy slot pool.
    pub fn is_remote_transient(&self) -> bool {
        match self {
            GitError::Clone { detail, .. }
            | GitError::Fetch { detail, .. }
            | GitError::Push { detail, .. }
            | GitError::RemoteQuery { detail, .. } => detail.is_transient(),
            _ => false,
        }
    }
}

impl Classify for GitError {
    fn failure_kind(&self) -> FailureKind {
        match self {
            GitError::Commit { .. }
            | GitError::Diff { .. }
            | GitError::Push { .. }
            | GitError::PushRejected { .. }
            | GitError::RemoteQuery { .. }
            | GitError::Harden { .. } => FailureKind::Push,
            // The task's own output, not the remote's doing: the implementation failed.
            GitError::FileTooLarge { .. } => FailureKind::Implementation,
            _ => FailureKind::WorkspacePreparation,
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            // Another worker holds every slot; one will be free again soon.
            GitError::SlotsBusy { .. } => true,
            GitError::Clone { detail, .. }
            | GitError::Fetch { detail, .. }
            | GitError::Push { detail, .. }
            | GitError::RemoteQuery { detail, .. } => detail.is_transient(),
            _ => false,
        }
    }
}

/// Strips the userinfo (`user:password@`) from a `scheme://` URL so it can be logged.
/// Paths and scp-style `user@host:path` addresses carry no password and are returned as is.
pub fn redact_url(url: &str) -> String {
    redact_text(url)
}

/// Strips userinfo from every `scheme://` URL found in free text (libgit2 messages quote
/// URLs).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let authority_start = pos + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_len = after.find(|c: char| c == '/' || c.is_whitespace() || "'\"<>".contains(c));
        let authority = &after[..authority_len.unwrap_or(after.len())];
        let skip = authority.rfind('@').map_or(0, |at| at + 1);
        rest = &after[skip..];
    }
    out.push_str(rest);
    out
}

/// True when a `scheme://` URL carries a password in its userinfo.
pub(crate) fn url_has_password(url: &str) -> bool {
    url_authority(url).and_then(|auth| auth.rfind('@').map(|at| auth[..at].contains(':'))).unwrap_or(false)
}

/// The authority part (`userinfo@host:port`) of a `scheme://` URL.
pub(crate) fn url_authority(url: &str) -> Option<&str> {
    let after = &url[url.find("://")? + 3..];
    Some(&after[..after.find('/').unwrap_or(after.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_strips_userinfo_only() {
        assert_eq!(
            redact_url("https://x-access-token:ghp_SECRET@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(redact_url("https://user@host:8443/o/r"), "https://host:8443/o/r");
        assert_eq!(redact_url("https://github.com/o/r.git"), "https://github.com/o/r.git");
        assert_eq!(redact_url("/srv/git/r.git"), "/srv/git/r.git");
        assert_eq!(redact_url("file:///srv/git/r.git"), "file:///srv/git/r.git");
        assert_eq!(redact_url("git@github.com:o/r.git"), "git@github.com:o/r.git");
    }

    #[test]
    fn redact_text_handles_several_urls_and_passwords_with_at_signs() {
        let text = "failed 'https://a:p@ss@h1/x' then http://b:q@h2";
        assert_eq!(redact_text(text), "failed 'https://h1/x' then http://h2");
    }

    #[test]
    fn detects_passwords_in_urls() {
        assert!(url_has_password("https://u:tok@h/r"));
        assert!(!url_has_password("https://u@h/r"));
        assert!(!url_has_password("https://h/r"));
        assert!(!url_has_password("/local/path"));
    }

    #[test]
    fn classifies_network_auth_and_http_status() {
        use git2::{ErrorClass, ErrorCode};
        let detail = |code, class, msg: &str| GitDetail { code, class, message: msg.to_string() };
        assert!(detail(ErrorCode::GenericError, ErrorClass::Net, "failed to connect").is_transient());
        assert!(detail(ErrorCode::Eof, ErrorClass::None, "early EOF").is_transient());
        assert!(!detail(ErrorCode::Auth, ErrorClass::Net, "auth").is_transient());
        assert!(
            !detail(ErrorCode::GenericError, ErrorClass::Http, "unexpected http status code: 403")
                .is_transient()
        );
        assert!(
            detail(ErrorCode::GenericError, ErrorClass::Http, "unexpected http status code: 503")
                .is_transient()
        );
        assert!(!detail(ErrorCode::NotFound, ErrorClass::Reference, "no ref").is_transient());
    }

    #[test]
    fn slot_busy_is_transient_and_rejection_is_permanent_push() {
        let busy = GitError::SlotsBusy { url: "u".into(), max: 2 };
        assert!(busy.is_transient());
        assert_eq!(busy.failure_kind(), FailureKind::WorkspacePreparation);
        let rejected =
            GitError::PushRejected { branch: "b".into(), url: "u".into(), reason: "non-fast-forward".into() };
        assert!(!rejected.is_transient());
        assert_eq!(rejected.failure_kind(), FailureKind::Push);
        let too_large = GitError::FileTooLarge { files: "big.txt (9 bytes)".into(), max: 4 };
        assert!(!too_large.is_transient());
        assert_eq!(too_large.failure_kind(), FailureKind::Implementation);
    }
}
