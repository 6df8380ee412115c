//! Logging setup: JSON lines for machines (the default), human-readable text for a
//! terminal. `RUST_LOG` refines the configured level when set.

use tracing_subscriber::EnvFilter;

use crate::config::LoggingConfig;

/// Installs the global subscriber. Logs go to stderr, so stdout stays clean for the
/// JSON that `run` and `dlq list --json` print.
pub fn init(logging: &LoggingConfig) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("agent_runner={},warn", logging.level.as_str())));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests, embedding) is not an error worth failing on.
    let _ = if logging.structured {
        builder.json().flatten_event(true).with_current_span(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
