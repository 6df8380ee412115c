//! Typed configuration values and the checks that produce them.
//!
//! Every layer (file, environment, flags) funnels its raw values through the same
//! functions here, so a value is judged the same way wherever it came from. Each check
//! returns only a reason; the caller adds the source and the key.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

/// Most tasks one worker process runs at once. Each task holds a slot, an LLM
/// conversation and a playbook process tree; past this, run more replicas instead.
pub const MAX_CONCURRENCY: u64 = 64;
/// Longest timeout accepted anywhere: one week. Anything longer is almost surely
/// milliseconds typed where seconds were meant.
pub const MAX_TIMEOUT_SECONDS: u64 = 7 * 24 * 3600;
/// Most retries of one operation. Backoff doubles per attempt, so past this a single
/// step would wait longer than any task timeout.
pub const MAX_RETRY_COUNT: u64 = 10;
/// Highest `max_cpu_percent`: 100 per core, up to 64 cores.
pub const MAX_CPU_PERCENT: u64 = 6400;
/// Largest per-step output cap: captured output is held in memory and uploaded.
pub const MAX_OUTPUT_CAP_BYTES: u64 = 64 * 1024 * 1024;
/// AMQP names (exchanges, queues, routing keys) are short strings: at most 255 bytes.
pub const MAX_AMQP_NAME_BYTES: usize = 255;
/// Runner ids appear in headers, events and branch metadata; keep them readable.
pub const MAX_RUNNER_ID_CHARS: usize = 128;

/// How playbook commands and LLM tools are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionMode {
    /// Child processes of the worker, in their own process group.
    LocalProcess,
    /// Child processes under bubblewrap: no network, read-only root.
    Sandbox,
    /// One container per command, from `docker.image`.
    Docker,
    /// A Kubernetes Job per task through the Kubernetes API, from `k8s_image`
    /// ([`crate::kubernetes`]).
    Kubernetes,
}

impl ExecutionMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionMode::LocalProcess => "local-process",
            ExecutionMode::Sandbox => "sandbox",
            ExecutionMode::Docker => "docker",
            ExecutionMode::Kubernetes => "kubernetes",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "local-process" => Ok(ExecutionMode::LocalProcess),
            "sandbox" => Ok(ExecutionMode::Sandbox),
            "docker" => Ok(ExecutionMode::Docker),
            "kubernetes" | "k8s" => Ok(ExecutionMode::Kubernetes),
            other => {
                Err(format!("expected one of local-process, sandbox, docker, kubernetes, got `{other}`"))
            }
        }
    }
}

impl fmt::Display for ExecutionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most verbose log level written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The lower-case name, usable as a `tracing_subscriber` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    /// Case-insensitive, because the seed writes `INFO`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            _ => Err(format!("expected one of trace, debug, info, warn, error, got `{text}`")),
        }
    }
}

impl From<LogLevel> for tracing::Level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Trace => tracing::Level::TRACE,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        }
    }
}

/// The broker URL. It usually carries a password (even the default `guest:guest`), so
/// `Debug` and `Display` show it masked; only [`AmqpUrl::expose`] gives the real text,
/// for the one call that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrl {
    raw: String,
    redacted: String,
}

impl AmqpUrl {
    /// Accepts `amqp://` and `amqps://` URLs with a host, or several, comma-separated:
    /// the nodes of a cluster, tried in turn when a connection is lost. The reason never
    /// quotes a URL, which may hold a password.
    pub fn parse(text: &str) -> Result<Self, String> {
        let nodes: Vec<&str> = text.split(',').map(str::trim).collect();
        if nodes.len() == 1 {
            return Self::parse_node(text);
        }
        let mut redacted = Vec::with_capacity(nodes.len());
        for (index, node) in nodes.iter().enumerate() {
            let parsed = Self::parse_node(node).map_err(|reason| format!("node {}: {reason}", index + 1))?;
            redacted.push(parsed.redacted);
        }
        Ok(AmqpUrl { raw: nodes.join(","), redacted: redacted.join(",") })
    }

    fn parse_node(text: &str) -> Result<Self, String> {
        let mut url = Url::parse(text.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
        if !matches!(url.scheme(), "amqp" | "amqps") {
            return Err(format!("scheme must be amqp or amqps, got `{}`", url.scheme()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("the URL names no host".to_string());
        }
        if url.password().is_some() {
            // Cannot fail: the URL has a host, which is all set_password needs.
            let _ = url.set_password(Some("***"));
        }
        Ok(AmqpUrl { raw: text.trim().to_string(), redacted: url.to_string() })
    }

    /// The real URL, password included: pass it to the connection and nowhere else.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The URL with any password replaced by `***`, safe for logs.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AmqpUrl").field(&self.redacted).finish()
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

/// Where artifacts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactStoreLocation {
    /// The embedded filesystem store rooted at this directory (`file://` URIs).
    Filesystem(PathBuf),
    /// An Artifact Store service speaking the REST contract (`POST /artifacts`).
    Http(Url),
    /// An S3 bucket and optional key prefix (`s3://bucket/prefix`).
    S3(Url),
}

impl ArtifactStoreLocation {
    /// Accepts absolute `file://` URLs and `http`, `https` and `s3` URLs.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
        match url.scheme() {
            "file" => url.to_file_path().map(ArtifactStoreLocation::Filesystem).map_err(|()| {
                "a file URL must hold an absolute path, as in file:///var/lib/agent-runner/artifacts"
                    .to_string()
            }),
            "http" | "https" => http_url(text).map(ArtifactStoreLocation::Http),
            "s3" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(ArtifactStoreLocation::S3(url)),
            "s3" => Err("an s3 URL must name a bucket, as in s3://bucket/prefix".to_string()),
            other => Err(format!("scheme must be file, http, https or s3, got `{other}`")),
        }
    }
}

impl fmt::Display for ArtifactStoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArtifactStoreLocation::Filesystem(dir) => write!(f, "file://{}", dir.display()),
            ArtifactStoreLocation::Http(url) | ArtifactStoreLocation::S3(url) => {
                write!(f, "{url}")
            }
        }
    }
}

/// An `http`/`https` service URL. A password in it is refused: these URLs are logged
/// and put in events, and the REST contract has no URL credentials.
pub(crate) fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme must be http or https, got `{}`", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host".to_string());
    }
    if url.password().is_some() {
        return Err("the URL carries a password, which would reach logs and events".to_string());
    }
    Ok(url)
}

/// A whole number from text (environment variables).
pub(crate) fn number(text: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|_| format!("expected a whole number, got `{text}`"))
}

/// A boolean from text (environment variables): true/false, 1/0, yes/no, on/off.
pub(crate) fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true or false, got `{text}`")),
    }
}

/// `value` within `min..=max`, converted to the target integer type.
pub(crate) fn in_range<T: TryFrom<u64>>(value: u64, min: u64, max: u64) -> Result<T, String> {
    if !(min..=max).contains(&value) {
        return Err(format!("must be between {min} and {max}, got {value}"));
    }
    T::try_from(value).map_err(|_| format!("{value} does not fit this platform"))
}

/// A timeout in whole seconds, at least one.
pub(crate) fn seconds(value: u64) -> Result<Duration, String> {
    in_range::<u64>(value, 1, MAX_TIMEOUT_SECONDS).map(Duration::from_secs)
}

/// `llm.context_tokens`: a context window the engine can work in.
pub(crate) fn context_tokens(value: u64) -> Result<u32, String> {
    in_range(value, u64::from(crate::llm::MIN_CONTEXT_TOKENS), u64::from(crate::llm::MAX_CONTEXT_TOKENS))
}

/// `llm.max_tokens`: a completion cap (checked against `llm.context_tokens` at the end).
pub(crate) fn max_tokens(value: u64) -> Result<u32, String> {
    in_range(value, u64::from(crate::llm::MIN_MAX_TOKENS), u64::from(crate::llm::MAX_CONTEXT_TOKENS))
}

/// `llm.temperature`: OpenAI's range, which the other servers accept too.
pub(crate) fn temperature(value: f64) -> Result<f32, String> {
    if !(0.0..=2.0).contains(&value) {
        return Err(format!("must be between 0 and 2, got {value}"));
    }
    // Within 0..=2 the narrowing keeps every value a person would type.
    #[allow(clippy::cast_possible_truncation)]
    Ok(value as f32)
}

/// A retry count (zero means "no retries").
pub(crate) fn retries(value: u64) -> Result<u32, String> {
    in_range(value, 0, MAX_RETRY_COUNT)
}

/// A non-empty single-line text (model names, git identity); control characters
/// would break headers and commit objects.
pub(crate) fn text_line(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".to_string());
    }
    if trimmed.chars().any(char::is_control) {
        return Err("must be one line without control characters".to_string());
    }
    Ok(trimmed.to_string())
}

/// An AMQP exchange, queue or routing-key name.
pub(crate) fn amqp_name(text: &str) -> Result<String, String> {
    let name = text_line(text)?;
    if name.len() > MAX_AMQP_NAME_BYTES {
        return Err(format!("must be at most {MAX_AMQP_NAME_BYTES} bytes, got {}", name.len()));
    }
    Ok(name)
}

/// The routing keys the work queue is bound with: at least one.
pub(crate) fn binding_keys(keys: Vec<String>) -> Result<Vec<String>, String> {
    if keys.is_empty() {
        return Err("must list at least one routing key".to_string());
    }
    keys.iter().map(|k| amqp_name(k)).collect()
}

/// A runner id: printable, no whitespace, bounded length.
pub(crate) fn runner_id(text: &str) -> Result<String, String> {
    let id = text.trim();
    if id.is_empty() {
        return Err("must not be empty".to_string());
    }
    if id.chars().count() > MAX_RUNNER_ID_CHARS {
        return Err(format!("must be at most {MAX_RUNNER_ID_CHARS} characters"));
    }
    if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_string());
    }
    Ok(id.to_string())
}

/// The name of an environment variable that holds a secret.
pub(crate) fn env_var_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    let mut chars = name.chars();
    let valid_start = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_start || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("must be an environment variable name (letters, digits, _), got `{name}`"));
    }
    Ok(name.to_string())
}

/// A non-empty directory path.
pub(crate) fn directory(path: PathBuf) -> Result<PathBuf, String> {
    if path.as_os_str().is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(path)
}

/// A sandbox uid or gid: not root's (the sandbox would be root on the host again) and not
/// `(uid_t)-1`, which `setresuid` reads as "leave unchanged".
pub(crate) fn sandbox_id(value: u64) -> Result<u32, String> {
    in_range(value, 1, u64::from(u32::MAX - 1))
}

/// Paths shown read-only in the sandbox: absolute and plain (no `.` or `..`), and never
/// `/` itself, which would put the whole host back in view.
pub(crate) fn read_only_paths(paths: Vec<PathBuf>) -> Result<Vec<PathBuf>, String> {
    use std::path::Component;
    let most = crate::process::sandbox::MAX_READ_ONLY_PATHS;
    if paths.len() > most {
        return Err(format!("at most {most} paths, got {}", paths.len()));
    }
    for path in &paths {
        let plain = path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !path.is_absolute() || !plain {
            return Err(format!("{} must be an absolute path without `.` or `..`", path.display()));
        }
        if path.parent().is_none() {
            return Err("`/` would show the whole host; name the directories the commands need".to_string());
        }
    }
    Ok(paths)
}

/// Playbook condition variables: YAML scalars, held as the strings conditions compare.
pub(crate) fn condition_variables(
    raw: std::collections::BTreeMap<String, serde_yaml::Value>,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    raw.into_iter()
        .map(|(name, value)| {
            let text = match value {
                serde_yaml::Value::Bool(b) => b.to_string(),
                serde_yaml::Value::Number(n) => n.to_string(),
                serde_yaml::Value::String(s) => s,
                _ => return Err(format!("variable '{name}' must be a string, number or boolean")),
            };
            Ok((name, text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp_url_masks_only_the_password() {
        let url = AmqpUrl::parse("amqps://svc:p%40ss@mq.example:5671/prod").unwrap();
        assert_eq!(url.redacted(), "amqps://svc:***@mq.example:5671/prod");
        assert_eq!(url.to_string(), "amqps://svc:***@mq.example:5671/prod");
        assert_eq!(format!("{url:?}"), r#"AmqpUrl("amqps://svc:***@mq.example:5671/prod")"#);
        assert_eq!(url.expose(), "amqps://svc:p%40ss@mq.example:5671/prod");
        let plain = AmqpUrl::parse("amqp://mq/%2f").unwrap();
        assert_eq!(plain.redacted(), "amqp://mq/%2f");
    }

    #[test]
    fn amqp_url_errors_never_quote_the_url() {
        let err = AmqpUrl::parse("amqp://user:hunter2@").unwrap_err();
        assert_eq!(err, "not a valid URL: empty host");
        assert_eq!(AmqpUrl::parse("not a url").unwrap_err(), "not a valid URL: relative URL without a base");
    }

    #[test]
    fn artifact_store_locations() {
        assert_eq!(
            ArtifactStoreLocation::parse("file:///var/lib/ar/artifacts"),
            Ok(ArtifactStoreLocation::Filesystem(PathBuf::from("/var/lib/ar/artifacts")))
        );
        let http = ArtifactStoreLocation::parse("http://store:8003").unwrap();
        assert_eq!(http.to_string(), "http://store:8003/");
        assert_eq!(
            ArtifactStoreLocation::parse("s3:///prefix"),
            Err("an s3 URL must name a bucket, as in s3://bucket/prefix".to_string())
        );
    }

    #[test]
    fn text_values() {
        assert_eq!(LogLevel::parse("WARNING"), Ok(LogLevel::Warn));
        assert_eq!(ExecutionMode::parse(" Docker "), Ok(ExecutionMode::Docker));
        assert_eq!(boolean("Off"), Ok(false));
        assert_eq!(boolean("maybe"), Err("expected true or false, got `maybe`".to_string()));
        assert_eq!(env_var_name("GIT_TOKEN"), Ok("GIT_TOKEN".to_string()));
        assert_eq!(
            env_var_name("1TOKEN"),
            Err("must be an environment variable name (letters, digits, _), got `1TOKEN`".to_string())
        );
        assert_eq!(runner_id("a b"), Err("must not contain whitespace or control characters".to_string()));
        assert_eq!(text_line("a\nb"), Err("must be one line without control characters".to_string()));
        assert_eq!(binding_keys(vec![]), Err("must list at least one routing key".to_string()));
    }
}
