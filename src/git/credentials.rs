//! How the worker authenticates to the git host: an HTTPS token handed to libgit2 only
//! through the credentials callback.
//!
//! The token never goes into a URL, a git config or a message. The callback releases it
//! only when the URL libgit2 authenticates for is on a configured token host
//! (`git.token_hosts`, https unless an entry names `http://`) and is the host of the
//! task's own remote: the task message names that remote, and the agent works inside the
//! checkout and could rewrite `.git/config` (origin URL, `pushurl`, `insteadOf`); a
//! redirect makes libgit2 ask for the redirect target, which fails both checks when it
//! is another host.

use std::cell::Cell;

use git2::{Cred, CredentialType, ErrorClass, ErrorCode, RemoteCallbacks};
use secrecy::{ExposeSecret, SecretString};

use std::sync::Arc;

use super::error::{GitError, redact_url, url_authority, url_has_password};
use super::remote_policy::{TokenHost, is_token_host};

/// The username GitHub (and most hosts) accept alongside an access token.
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";

/// How many times one operation may hand out the token. libgit2 calls the credentials
/// callback again every time the server refuses them; a refused token will not start
/// working on the next try, so after this many the callback fails with an auth error
/// instead of looping.
const MAX_CREDENTIAL_ATTEMPTS: u32 = 1;

/// Username and optional token for HTTPS remotes, and the hosts the token may go to.
/// `Debug` never shows the token.
#[derive(Clone)]
pub struct GitCredentials {
    /// Sent as the HTTP basic-auth user; defaults to [`DEFAULT_TOKEN_USERNAME`].
    pub username: String,
    token: Option<SecretString>,
    /// `git.token_hosts`: the only hosts the token is ever handed to.
    token_hosts: Arc<[TokenHost]>,
}

impl GitCredentials {
    /// Credentials with an explicit username, for `token_hosts` only.
    pub fn new(
        username: impl Into<String>,
        token: Option<SecretString>,
        token_hosts: Vec<TokenHost>,
    ) -> Self {
        GitCredentials { username: username.into(), token, token_hosts: token_hosts.into() }
    }

    /// Token credentials with the default username, for `token_hosts` only.
    pub fn with_token(token: SecretString, token_hosts: Vec<TokenHost>) -> Self {
        Self::new(DEFAULT_TOKEN_USERNAME, Some(token), token_hosts)
    }

    /// No credentials: public remotes and local paths.
    pub fn anonymous() -> Self {
        Self::new(DEFAULT_TOKEN_USERNAME, None, Vec::new())
    }

    /// Whether a token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// What a task with remote `url` gets: these credentials when `url` is on a token
    /// host, anonymous ones otherwise (an allowed remote that is not a token host is
    /// reached without the token).
    pub fn for_remote(&self, url: &str) -> GitCredentials {
        if self.token.is_some() && is_token_host(&self.token_hosts, url) {
            self.clone()
        } else {
            GitCredentials { username: self.username.clone(), ..GitCredentials::anonymous() }
        }
    }

    /// Callbacks for one libgit2 network operation against `allowed_url`: the token is
    /// handed out at most [`MAX_CREDENTIAL_ATTEMPTS`] times, and only to that URL's host.
    pub(crate) fn remote_callbacks(&self, allowed_url: &str) -> RemoteCallbacks<'_> {
        let gate =
            CredentialGate { creds: self, allowed_origin: url_origin(allowed_url), attempts: Cell::new(0) };
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |url, _username_from_url, allowed| gate.provide(url, allowed));
        callbacks
    }
}

impl Default for GitCredentials {
    fn default() -> Self {
        Self::anonymous()
    }
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.token.is_some() { "<redacted>" } else { "None" };
        f.debug_struct("GitCredentials")
            .field("username", &self.username)
            .field("token", &format_args!("{token}"))
            .finish()
    }
}

/// The state behind one operation's credentials callback.
struct CredentialGate<'a> {
    creds: &'a GitCredentials,
    /// `scheme://host:port` of the task's remote; `None` for local paths, which never ask.
    allowed_origin: Option<String>,
    attempts: Cell<u32>,
}

impl CredentialGate<'_> {
    fn provide(&self, url: &str, allowed: CredentialType) -> Result<Cred, git2::Error> {
        let auth_error = |message: String| git2::Error::new(ErrorCode::Auth, ErrorClass::Callback, message);
        let Some(token) = &self.creds.token else {
            return Err(auth_error(format!(
                "remote {} requires credentials and no token is configured",
                redact_url(url)
            )));
        };
        if url_origin(url).is_none() || url_origin(url) != self.allowed_origin {
            return Err(auth_error(format!(
                "refusing to send the token to {}: not the task's remote host",
                redact_url(url)
            )));
        }
        if !is_token_host(&self.creds.token_hosts, url) {
            return Err(auth_error(format!(
                "refusing to send the token to {}: not in git.token_hosts (or not over https)",
                redact_url(url)
            )));
        }
        if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            return Err(auth_error(format!(
                "remote {} does not accept HTTPS token credentials",
                redact_url(url)
            )));
        }
        let attempts = self.attempts.get();
        if attempts >= MAX_CREDENTIAL_ATTEMPTS {
            return Err(auth_error(format!("remote {} rejected the configured token", redact_url(url))));
        }
        self.attempts.set(attempts + 1);
        Cred::userpass_plaintext(&self.creds.username, token.expose_secret())
    }
}

/// The task's remote: its URL and the credentials to reach it.
#[derive(Clone)]
pub struct GitRemote {
    url: String,
    /// Credentials handed to the host of `url` only.
    pub credentials: GitCredentials,
}

impl GitRemote {
    /// Rejects a URL with a password in it: the token belongs in `credentials`, where it
    /// cannot end up in `.git/config` or a log line.
    pub fn new(url: impl Into<String>, credentials: GitCredentials) -> Result<Self, GitError> {
        let url = url.into();
        if url_has_password(&url) {
            return Err(GitError::CredentialsInUrl { url: redact_url(&url) });
        }
        Ok(GitRemote { url, credentials })
    }

    /// The URL as configured (it holds no password, see [`GitRemote::new`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL for messages and logs.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    pub(crate) fn callbacks(&self) -> RemoteCallbacks<'_> {
        self.credentials.remote_callbacks(&self.url)
    }
}

impl std::fmt::Debug for GitRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRemote")
            .field("url", &self.redacted_url())
            .field("credentials", &self.credentials)
            .finish()
    }
}

/// `scheme://host:port` of a URL, lowercased and without userinfo or path; `None` when
/// the address has no scheme (a local path or scp-style address).
fn url_origin(url: &str) -> Option<String> {
    let scheme = &url[..url.find("://")?];
    let authority = url_authority(url)?;
    let host = &authority[authority.rfind('@').map_or(0, |at| at + 1)..];
    Some(format!("{scheme}://{host}").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ghp_verysecret123";

    fn token_creds() -> GitCredentials {
        let hosts = vec![TokenHost::parse("github.com").unwrap()];
        GitCredentials::with_token(SecretString::from(TOKEN.to_string()), hosts)
    }

    #[test]
    fn debug_never_prints_the_token() {
        let shown = format!("{:?}", token_creds());
        assert_eq!(shown, r#"GitCredentials { username: "x-access-token", token: <redacted> }"#);
        assert_eq!(
            format!("{:?}", GitCredentials::anonymous()),
            r#"GitCredentials { username: "x-access-token", token: None }"#
        );
        let remote = GitRemote::new("https://github.com/o/r.git", token_creds()).unwrap();
        assert!(!format!("{remote:?}").contains(TOKEN));
    }

    #[test]
    fn remote_url_with_password_is_refused_without_echoing_it() {
        let err =
            GitRemote::new(format!("https://x:{TOKEN}@github.com/o/r.git"), GitCredentials::anonymous())
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "remote URL https://github.com/o/r.git embeds a password; pass the token through GitCredentials instead"
        );
    }

    /// The refusal's error; panics if the gate handed out credentials.
    fn refusal(result: Result<Cred, git2::Error>) -> git2::Error {
        match result {
            Ok(_) => panic!("credentials were handed out"),
            Err(e) => e,
        }
    }

    fn gate(creds: &GitCredentials) -> CredentialGate<'_> {
        CredentialGate {
            creds,
            allowed_origin: url_origin("https://GitHub.com/o/r.git"),
            attempts: Cell::new(0),
        }
    }

    #[test]
    fn token_is_given_once_then_auth_error() {
        let creds = token_creds();
        let gate = gate(&creds);
        let url = "https://github.com/o/r.git/info/refs";
        assert!(gate.provide(url, CredentialType::USER_PASS_PLAINTEXT).is_ok());
        let err = refusal(gate.provide(url, CredentialType::USER_PASS_PLAINTEXT));
        assert_eq!(err.code(), ErrorCode::Auth);
        assert!(!err.message().contains(TOKEN));
    }

    #[test]
    fn token_is_not_sent_to_another_host_or_scheme() {
        let creds = token_creds();
        let gate = gate(&creds);
        for url in ["https://evil.example/o/r.git", "http://github.com/o/r.git", "/tmp/local"] {
            let err = refusal(gate.provide(url, CredentialType::USER_PASS_PLAINTEXT));
            assert_eq!(err.code(), ErrorCode::Auth, "{url}");
        }
    }

    #[test]
    fn the_task_remote_is_not_enough_without_a_token_host() {
        let creds = GitCredentials::with_token(SecretString::from(TOKEN.to_string()), Vec::new());
        let gate = gate(&creds);
        let err = refusal(gate.provide("https://github.com/o/r.git", CredentialType::USER_PASS_PLAINTEXT));
        assert!(err.message().contains("git.token_hosts"), "{}", err.message());
        assert!(!creds.for_remote("https://github.com/o/r.git").has_token());
        assert!(token_creds().for_remote("https://github.com/o/r.git").has_token());
        assert!(!token_creds().for_remote("http://github.com/o/r.git").has_token());
    }

    #[test]
    fn missing_token_and_ssh_requests_fail_with_auth_error() {
        let anonymous = GitCredentials::anonymous();
        let err =
            refusal(gate(&anonymous).provide("https://github.com/o/r", CredentialType::USER_PASS_PLAINTEXT));
        assert_eq!(err.code(), ErrorCode::Auth);
        let creds = token_creds();
        let err = refusal(gate(&creds).provide("https://github.com/o/r", CredentialType::SSH_KEY));
        assert_eq!(err.code(), ErrorCode::Auth);
    }
}
