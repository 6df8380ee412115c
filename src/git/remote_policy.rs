//! Which remotes a task may name (`git.allowed_remotes`) and which hosts may receive the
//! git token (`git.token_hosts`). Pure: no IO.
//!
//! The task message names its own remote, so the message cannot be what decides where
//! the worker fetches, pushes and sends its token: the operator's configuration does.
//!
//! The matching rule, for a prefix and a task's `repo_url`:
//! - both are parsed as URLs; a bare absolute path is read as `file://` + the path; any
//!   other address (relative path, scp-style `host:path`) is refused;
//! - a URL with userinfo, a query, a fragment, a backslash, whitespace or a control
//!   character, a `.` or `..` path segment (also percent-encoded), or a path the URL
//!   parser would rewrite is refused outright: what is matched is exactly what git uses;
//! - scheme and host compare case-insensitively (the parser lowercases them), ports
//!   exactly (a scheme's default port is the same as none);
//! - the path must equal the prefix's path or continue it at a `/` boundary, unless the
//!   prefix's path itself ends in `/`: `https://github.com/org` admits
//!   `https://github.com/org/repo.git` but not `https://github.com/org-evil/repo.git`;
//! - a prefix of only `scheme://` admits every URL of that scheme.

use reqwest::Url;

use super::error::redact_url;

/// The transports a remote may use: the ones this build of libgit2 speaks (no ssh) and
/// the worker can push over. `ftp` and the like are refused as prefixes too.
const REMOTE_SCHEMES: [&str; 4] = ["https", "http", "git", "file"];

/// A remote URL, taken apart the way the matching rule needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RemoteParts {
    /// Lowercase scheme.
    scheme: String,
    /// Lowercase host and explicit non-default port (`host:port`); empty for `file`.
    authority: String,
    /// The path, exactly as written (checked to be what the parser keeps).
    path: String,
}

impl RemoteParts {
    /// Parses `text` under the rules in the module doc.
    fn parse(text: &str) -> Result<RemoteParts, String> {
        let url_text = if text.starts_with('/') { format!("file://{text}") } else { text.to_string() };
        let Some(scheme_end) = url_text.find("://") else {
            return Err("is neither a URL (scheme://host/path) nor an absolute path".to_string());
        };
        if url_text.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\\' | '?' | '#')) {
            return Err("holds whitespace, a control character, a backslash, `?` or `#`".to_string());
        }
        let after_scheme = &url_text[scheme_end + 3..];
        let raw_path = after_scheme.find('/').map_or("", |slash| &after_scheme[slash..]);
        if raw_path.split('/').any(is_dot_segment) {
            return Err("has a `.` or `..` path segment".to_string());
        }
        let url = Url::parse(&url_text).map_err(|e| format!("is not a valid URL: {e}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("carries userinfo; credentials come from the worker's configuration".to_string());
        }
        let scheme = url.scheme().to_string();
        if !REMOTE_SCHEMES.contains(&scheme.as_str()) {
            return Err(format!("has scheme {scheme}: expected one of {}", REMOTE_SCHEMES.join(", ")));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if scheme == "file" && !host.is_empty() {
            return Err("is a file:// URL with a host; a local path has none".to_string());
        }
        if scheme != "file" && host.is_empty() {
            return Err("has no host".to_string());
        }
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        // `Url` already resolved dot segments and percent-encoded what it would; a path it
        // changed is one git may read differently from us.
        let path = if raw_path.is_empty() { "/" } else { raw_path };
        if url.path() != path {
            return Err("is not in canonical form (the URL parser rewrites its path)".to_string());
        }
        Ok(RemoteParts { scheme, authority, path: path.to_string() })
    }
}

/// `.` or `..`, also percent-encoded (`%2e`), which URL parsers resolve like the real ones.
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
    decoded == "." || decoded == ".."
}

/// One `git.allowed_remotes` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePrefix {
    scheme: String,
    /// `None`: the entry was only `scheme://`, every host (or local path) of that scheme.
    authority: Option<String>,
    path: String,
}

impl RemotePrefix {
    /// The default: every `https://` URL.
    pub fn any_https() -> RemotePrefix {
        RemotePrefix { scheme: "https".to_string(), authority: None, path: "/".to_string() }
    }

    /// A prefix admitting the local directory `dir` and everything under it.
    pub fn local_directory(dir: &std::path::Path) -> Result<RemotePrefix, String> {
        let text = dir.to_str().ok_or("is not valid UTF-8")?;
        let mut prefix = RemotePrefix::parse(&format!("file://{}", text.trim_end_matches('/')))?;
        prefix.path = format!("{}/", prefix.path.trim_end_matches('/'));
        Ok(prefix)
    }

    /// Parses a config entry: a URL prefix (`https://github.com/org/`, `file:///srv/git/`)
    /// or a bare `scheme://`.
    pub fn parse(text: &str) -> Result<RemotePrefix, String> {
        let text = text.trim();
        let shown = redact_url(text);
        if text.starts_with('/') {
            return Err(format!("`{shown}` is a path: write it as file://{shown}"));
        }
        if let Some(scheme) = text.strip_suffix("://").filter(|s| !s.contains(['/', ':'])) {
            let scheme = scheme.to_ascii_lowercase();
            if !REMOTE_SCHEMES.contains(&scheme.as_str()) {
                return Err(format!(
                    "`{shown}` has scheme {scheme}: expected one of {}",
                    REMOTE_SCHEMES.join(", ")
                ));
            }
            return Ok(RemotePrefix { scheme, authority: None, path: "/".to_string() });
        }
        let parts = RemoteParts::parse(text).map_err(|reason| format!("`{shown}` {reason}"))?;
        Ok(RemotePrefix { scheme: parts.scheme, authority: Some(parts.authority), path: parts.path })
    }

    fn admits(&self, remote: &RemoteParts) -> bool {
        if self.scheme != remote.scheme {
            return false;
        }
        if self.authority.as_ref().is_some_and(|authority| *authority != remote.authority) {
            return false;
        }
        if self.path.ends_with('/') {
            return remote.path.starts_with(&self.path);
        }
        remote.path == self.path
            || remote.path.strip_prefix(&self.path).is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Checks a task's `repo_url` (or a slot's origin) against `git.allowed_remotes`; the
/// reason, when refused, never quotes the URL (the caller names the field).
pub fn check_allowed_remote(allowed: &[RemotePrefix], repo_url: &str) -> Result<(), String> {
    let remote = RemoteParts::parse(repo_url)?;
    if allowed.iter().any(|prefix| prefix.admits(&remote)) {
        return Ok(());
    }
    Err("is not under any prefix in git.allowed_remotes".to_string())
}

/// One `git.token_hosts` entry: a host (and port) that may receive the git token, over
/// https, or over http when the entry says `http://` itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenHost {
    /// `https`, or `http` when the entry named it.
    scheme: String,
    /// Lowercase host and explicit non-default port.
    authority: String,
}

impl TokenHost {
    /// Parses `github.com`, `git.example.com:8443`, `https://github.com` or
    /// `http://127.0.0.1:8080`; a path, userinfo or another scheme is refused.
    pub fn parse(text: &str) -> Result<TokenHost, String> {
        let text = text.trim();
        let url_text = if text.contains("://") { text.to_string() } else { format!("https://{text}") };
        let shown = redact_url(&url_text);
        let url = Url::parse(&url_text).map_err(|e| format!("`{shown}` is not a host: {e}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(format!(
                "`{shown}` has scheme {}: the token goes over https, or http:// named explicitly",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("`{shown}` carries userinfo; a token host is a host and optional port"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{shown}` names a path: a token host is a host and optional port, e.g. github.com"
            ));
        }
        let Some(authority) = origin_authority(&url) else {
            return Err(format!("`{shown}` has no host"));
        };
        Ok(TokenHost { scheme: url.scheme().to_string(), authority })
    }

    /// Whether `url` (the one libgit2 authenticates for) is on this host, by this scheme.
    pub fn admits(&self, url: &str) -> bool {
        let Ok(url) = Url::parse(url) else { return false };
        url.scheme() == self.scheme && origin_authority(&url).as_deref() == Some(self.authority.as_str())
    }
}

/// Whether any of `hosts` may receive the token for `url`.
pub fn is_token_host(hosts: &[TokenHost], url: &str) -> bool {
    hosts.iter().any(|host| host.admits(url))
}

/// Lowercase `host[:port]`, the port only when it is not the scheme's default.
fn origin_authority(url: &Url) -> Option<String> {
    let host = url.host_str().filter(|h| !h.is_empty())?.to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

#[cfg(test)]
#[path = "remote_policy_tests.rs"]
mod tests;
