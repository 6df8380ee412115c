//! The scrubbed environment every child process starts from.
//!
//! Steps run code the LLM just wrote, so they must not see the worker's credentials
//! (`GIT_TOKEN`, `OPENAI_API_KEY`, `AMQP_URL`, ...). Rather than deny-listing secrets — which
//! misses the next one somebody adds — the child gets an allowlist of parent variables that
//! toolchains need, plus whatever the caller sets explicitly.

use std::collections::BTreeMap;
use std::ffi::OsString;

/// Parent variables a child inherits. Everything else in the worker's environment is dropped.
///
/// Why each group is here:
/// - `PATH`, `HOME`, `USER`, `LOGNAME`, `SHELL`: tools locate binaries and per-user config/caches.
/// - `LANG`, `LC_ALL`, `LC_CTYPE`, `TZ`: stable text encoding and dates in tool output.
/// - `TERM`: some tools refuse to start or misrender without it.
/// - `TMPDIR`: tests create scratch files; keep them where the operator put the temp space.
/// - `CARGO_HOME`, `RUSTUP_HOME`, `RUSTUP_TOOLCHAIN`: find the Rust toolchain and its registry cache.
/// - `GOPATH`, `GOROOT`, `GOCACHE`, `GOMODCACHE`: find the Go toolchain and its caches.
/// - `JAVA_HOME`: JVM builds locate the JDK.
/// - `NPM_CONFIG_CACHE`, `PIP_CACHE_DIR`: reuse package caches instead of refetching per task.
///
/// Proxy variables are deliberately absent: their URLs can embed credentials. Callers that
/// need them pass them through `CommandSpec::env`.
pub const INHERITED_ENV_VARS: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TERM",
    "TMPDIR",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "GOPATH",
    "GOROOT",
    "GOCACHE",
    "GOMODCACHE",
    "JAVA_HOME",
    "NPM_CONFIG_CACHE",
    "PIP_CACHE_DIR",
];

/// Builds a child's complete environment: the allowlisted variables found by `parent`, then
/// `extra` on top (an explicit entry wins over an inherited one).
///
/// `parent` is injectable so tests can supply a fake parent environment instead of mutating
/// the real one (which is `unsafe` in edition 2024 and racy across test threads).
pub fn child_env(
    parent: impl Fn(&str) -> Option<OsString>,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = INHERITED_ENV_VARS
        .iter()
        .filter_map(|name| parent(name).map(|value| (OsString::from(name), value)))
        .collect();
    for (name, value) in extra {
        env.insert(OsString::from(name), OsString::from(value));
    }
    env
}

/// [`child_env`] over the worker's real environment.
pub fn child_env_from_process(extra: &BTreeMap<String, String>) -> BTreeMap<OsString, OsString> {
    child_env(|name| std::env::var_os(name), extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_parent(name: &str) -> Option<OsString> {
        let vars = [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/home/worker"),
            ("GIT_TOKEN", "ghp_secret"),
            ("OPENAI_API_KEY", "sk-secret"),
            ("AMQP_URL", "amqp://user:pw@broker"),
            ("HTTPS_PROXY", "http://user:pw@proxy"),
        ];
        vars.iter().find(|(n, _)| *n == name).map(|(_, v)| OsString::from(v))
    }

    fn os(pairs: &[(&str, &str)]) -> BTreeMap<OsString, OsString> {
        pairs.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn only_allowlisted_parent_variables_are_inherited() {
        let env = child_env(fake_parent, &BTreeMap::new());
        assert_eq!(env, os(&[("HOME", "/home/worker"), ("PATH", "/usr/bin:/bin")]));
    }

    #[test]
    fn explicit_variables_are_added_and_override_inherited_ones() {
        let extra = BTreeMap::from([
            ("GIT_TOKEN".to_string(), "given".to_string()),
            ("PATH".to_string(), "/opt/bin".to_string()),
        ]);
        let env = child_env(fake_parent, &extra);
        assert_eq!(env, os(&[("GIT_TOKEN", "given"), ("HOME", "/home/worker"), ("PATH", "/opt/bin")]));
    }
}
