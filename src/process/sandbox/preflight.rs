//! A start-up check that the sandbox works on this host: `true` run once through the
//! whole sandbox (the uid change, the staged view, bubblewrap's namespaces, the seccomp
//! filter), so a host without bubblewrap or without unprivileged user namespaces is
//! reported when the worker starts, with the reason, not as a failed test step later.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{SandboxError, SandboxPolicy};
use crate::process::{CommandEnd, CommandSpec, Isolation, ProcessError, run_command};

/// How long the check may take: bubblewrap starts in milliseconds, so a host that needs
/// this long is not going to run steps either.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(30);
/// Enough of bubblewrap's own message to say why it failed.
const PREFLIGHT_OUTPUT_CAP_BYTES: usize = 4096;

/// Runs `true` in the sandbox `policy` describes, in an empty temporary workspace.
pub async fn sandbox_preflight(policy: &SandboxPolicy) -> Result<(), SandboxError> {
    let workspace =
        tempfile::tempdir().map_err(|e| SandboxError::Unavailable(format!("no temporary directory: {e}")))?;
    let spec = CommandSpec {
        isolation: Isolation::Sandbox { network: false, policy: policy.clone() },
        ..CommandSpec::new("true", workspace.path(), PREFLIGHT_TIMEOUT, PREFLIGHT_OUTPUT_CAP_BYTES)
    };
    let outcome = match run_command(&spec, &CancellationToken::new()).await {
        Ok(outcome) => outcome,
        Err(ProcessError::Sandbox(error)) => return Err(error),
        Err(ProcessError::Spawn { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(SandboxError::Unavailable(format!(
                "`{}` is not installed (Debian/Ubuntu package bubblewrap)",
                super::BWRAP_PROGRAM
            )));
        }
        Err(other) => return Err(SandboxError::Unavailable(other.to_string())),
    };
    match outcome.end {
        CommandEnd::Exited(0) => Ok(()),
        end => Err(SandboxError::Unavailable(format!(
            "`true` in the sandbox ended with {end:?}: {}",
            outcome.output.trim()
        ))),
    }
}
