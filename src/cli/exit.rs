//! Exit codes: one meaning each, the same for every subcommand, so a script or a
//! supervisor can tell a typo from a broker outage (README "Exit codes").
//!
//! The values follow BSD `sysexits.h` where it has a name for the case, and the shell's
//! 128 + signal for an interrupt, so they read the same as other Unix tools'.

use std::process::ExitCode;

use crate::amqp::AmqpError;
use crate::config::ConfigError;
use crate::pipeline::PreflightError;

/// Why the process ended; `as u8` is the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    /// `run`: the task ran and did not complete (its summary says why).
    TaskFailed = 1,
    /// The command line is wrong, or a file it names cannot be read or parsed (clap
    /// uses 2 for its own errors too).
    Usage = 2,
    /// A service the command needs (the broker, an HTTP service) did not answer
    /// (`EX_UNAVAILABLE`); trying again later may work.
    Unavailable = 69,
    /// Anything else: a bug or an unexpected local failure (`EX_SOFTWARE`).
    Internal = 70,
    /// The broker or a service refused our credentials or permissions (`EX_NOPERM`).
    Authentication = 77,
    /// The configuration (file, environment, flags, secrets) is invalid, or asks for an
    /// execution mode this host cannot provide (`EX_CONFIG`).
    Configuration = 78,
    /// Stopped by SIGINT or SIGTERM before the work was done (128 + SIGINT).
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// A command-line mistake found after parsing: a file that cannot be read or is not
/// what the command expects.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A setting the command needs is not set: a configuration problem, reported with
/// what to set.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MissingSetting(pub String);

/// The exit code for an error that ended a command: the first cause in the chain that
/// says what kind of failure it is.
pub fn exit_for(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if cause.is::<UsageError>() {
            return Exit::Usage;
        }
        if cause.is::<ConfigError>() || cause.is::<MissingSetting>() {
            return Exit::Configuration;
        }
        if let Some(preflight) = cause.downcast_ref::<PreflightError>() {
            return match preflight {
                PreflightError::EngineUnreachable(_) | PreflightError::KubernetesUnreachable(_) => {
                    Exit::Unavailable
                }
                _ => Exit::Configuration,
            };
        }
        if let Some(amqp) = cause.downcast_ref::<AmqpError>() {
            return if amqp.is_authentication() { Exit::Authentication } else { Exit::Unavailable };
        }
        if let Some(http) = cause.downcast_ref::<reqwest::Error>() {
            let refused = http.status().is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403);
            return if refused { Exit::Authentication } else { Exit::Unavailable };
        }
    }
    Exit::Internal
}

/// The error and its causes on one line, each cause once: many errors repeat their
/// source's text in their own message (`cannot connect: IO error: refused`), and
/// printing the chain as it is would say the same thing three times.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("IO error: {0}")]
    struct Wrapping(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_printed_once() {
        let io =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
        let error = anyhow::Error::new(Wrapping(io))
            .context("cannot connect to the broker at amqp://h: IO error: Connection refused (os error 111)");
        assert_eq!(
            one_line(&error),
            "cannot connect to the broker at amqp://h: IO error: Connection refused (os error 111)"
        );
        let plain = anyhow::anyhow!("root cause").context("reading c.yaml");
        assert_eq!(one_line(&plain), "reading c.yaml: root cause");
    }

    #[test]
    fn each_kind_of_failure_has_its_own_code() {
        assert_eq!(exit_for(&anyhow::Error::new(UsageError("cannot read t.json".into()))), Exit::Usage);
        let config = ConfigError::invalid(
            &crate::config::ConfigSource::Flag("--timeout"),
            "default_timeout_seconds",
            "0",
        );
        assert_eq!(exit_for(&anyhow::Error::new(config).context("loading")), Exit::Configuration);
        assert_eq!(exit_for(&anyhow::anyhow!("something else")), Exit::Internal);
        let codes = [
            Exit::Success,
            Exit::TaskFailed,
            Exit::Usage,
            Exit::Unavailable,
            Exit::Internal,
            Exit::Authentication,
            Exit::Configuration,
            Exit::Interrupted,
        ]
        .map(|e| e as u8);
        assert_eq!(codes, [0, 1, 2, 69, 70, 77, 78, 130]);
    }
}
