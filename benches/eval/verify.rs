//! The independent check: what the harness itself finds on the remote, whatever the
//! worker's summary says. A fresh clone of the pushed branch, no file under the
//! protected test paths different from the base, and the task's tests run there by the
//! harness with its own command.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::git::{self, Origin};
use crate::spec::EvalTask;

/// Longest the harness lets a task's tests run; the tasks' tests take about a second.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);
/// Characters of test output kept for the report.
const OUTPUT_TAIL_CHARS: usize = 600;

/// What the check found.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub passed: bool,
    /// Paths that differ from the base on the branch.
    pub touched: Vec<String>,
    /// Touched paths under the protected test paths.
    pub protected_touched: Vec<String>,
    /// Why it failed, in one line; empty when it passed.
    pub reason: String,
}

/// The engine's default protected paths (`engine.protected_paths`), compiled by the
/// harness itself with the engine's matcher semantics (`*` does not cross `/`, case
/// folded), so a file the engine should have refused is caught even if it was not.
pub fn protected_globs() -> anyhow::Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for pattern in agent_runner::llm::agent::DEFAULT_PROTECTED_PATHS {
        set.add(GlobBuilder::new(pattern).literal_separator(true).case_insensitive(true).build()?);
    }
    Ok(set.build()?)
}

/// Checks `branch` of `origin` for `task`, in `scratch` (a fresh directory).
pub fn check_branch(
    task: &EvalTask,
    origin: &Origin,
    branch: &str,
    scratch: &Path,
    protected: &GlobSet,
) -> anyhow::Result<Verdict> {
    std::fs::create_dir_all(scratch)?;
    let checkout = scratch.join("verify");
    if let Err(e) = git::clone_branch(origin, branch, &checkout) {
        return Ok(Verdict {
            passed: false,
            touched: Vec::new(),
            protected_touched: Vec::new(),
            reason: format!("branch {branch} not on the remote: {e}"),
        });
    }
    let touched = git::changed_paths(&checkout, &origin.base_commit)?;
    let protected_touched: Vec<String> =
        touched.iter().filter(|p| protected.is_match(p.as_str())).cloned().collect();
    if !protected_touched.is_empty() {
        let reason = format!("protected test files changed: {}", protected_touched.join(", "));
        return Ok(Verdict { passed: false, touched, protected_touched, reason });
    }
    let (ok, output) = run_check(&task.file.check, &checkout)?;
    let reason = if ok { String::new() } else { format!("tests fail in a fresh clone: {}", tail(&output)) };
    Ok(Verdict { passed: ok, touched, protected_touched, reason })
}

/// Runs the task's check command in `dir`: exit status 0 and the combined output.
pub fn run_check(command: &str, dir: &Path) -> anyhow::Result<(bool, String)> {
    let output = Command::new("timeout")
        .args(["-k", "5", &CHECK_TIMEOUT.as_secs().to_string(), "bash", "-c", command])
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", dir)
        .env("LANG", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), text))
}

/// The last lines of `text`, on one line, at most [`OUTPUT_TAIL_CHARS`].
pub fn tail(text: &str) -> String {
    let joined = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ");
    let count = joined.chars().count();
    if count <= OUTPUT_TAIL_CHARS {
        return joined;
    }
    let kept: String = joined.chars().skip(count - OUTPUT_TAIL_CHARS).collect();
    format!("…{kept}")
}
