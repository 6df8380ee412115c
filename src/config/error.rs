//! Why a configuration could not be loaded: which source, which key, and what is wrong.
//!
//! Config errors stop the process before any task is taken, so they carry no
//! `Classify`; what they must do is tell the operator exactly where to look.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from, in the words an operator would search for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The embedded defaults (only seen in cross-field checks on values nobody set).
    Default,
    /// The YAML file given with `--config`.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, spelled as typed (`--concurrency`).
    Flag(&'static str),
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Default => f.write_str("built-in defaults"),
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Env(name) => write!(f, "env {name}"),
            ConfigSource::Flag(flag) => f.write_str(flag),
        }
    }
}

/// A configuration that cannot be used. No variant ever holds a secret value: the
/// reasons quote scheme names, numbers and key names, never a URL's userinfo or a key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` could not be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML, has an unknown or forbidden key, or a value of the
    /// wrong type. `message` is the parser's, which names the dotted key and ends with
    /// `at line L column C` when the parser knows the position.
    #[error("invalid config file {}: {message}", .path.display())]
    Syntax {
        path: PathBuf,
        /// 1-based line of the offending token, when known.
        line: Option<usize>,
        /// 1-based column of the offending token, when known.
        column: Option<usize>,
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("invalid {key} from {origin}: {reason}")]
    Invalid {
        /// Which layer supplied the value at fault.
        origin: ConfigSource,
        /// The dotted config key (`amqp.concurrency`), the same in every layer.
        key: String,
        reason: String,
    },
    /// A secret's `NAME_FILE` could not be read.
    #[error("cannot read secret file {} named by env {var}: {source}", .path.display())]
    SecretFile {
        var: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A secret is set in a way that cannot be used (never says what its value is).
    #[error("invalid secret from env {var}: {reason}")]
    Secret { var: String, reason: String },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub(crate) fn invalid(origin: &ConfigSource, key: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid { origin: origin.clone(), key: key.to_string(), reason: reason.into() }
    }

    /// A value that cannot be used whichever layer set it (the mode a build lacks).
    pub fn invalid_default(key: &str, reason: impl Into<String>) -> Self {
        ConfigError::invalid(&ConfigSource::Default, key, reason)
    }
}
