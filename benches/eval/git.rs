//! The git command line, as the harness's own tool: the origin a task starts from, and
//! the fresh clone of what the worker pushed. Deliberately not the worker's git2 code,
//! so the check does not share the code it checks.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A bare origin holding `main` with one commit: the task's `repo/` tree.
pub struct Origin {
    pub bare: PathBuf,
    pub base_commit: String,
}

impl Origin {
    /// `file://` URL of the bare repository, as the task's `repo_url`.
    pub fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }
}

/// Identity and signing for the harness's own commits, whatever the machine's settings.
const FIXED_SETTINGS: [&str; 6] =
    ["-c", "user.name=eval", "-c", "user.email=eval@agent-runner.local", "-c", "commit.gpgsign=false"];

/// Runs git in `dir` with a fixed identity and no user or system configuration, so the
/// machine's settings (hooks, signing, default branch) cannot change what it does.
pub fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("git")
        .args(FIXED_SETTINGS)
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "git {} in {}: {} {}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&output.stderr).trim(),
        String::from_utf8_lossy(&output.stdout).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Makes `<dir>/origin.git` from the tree at `repo`, through a scratch repository at
/// `<dir>/seed` whose `origin` is the bare one.
pub fn make_origin(repo: &Path, dir: &Path) -> anyhow::Result<Origin> {
    let seed = dir.join("seed");
    std::fs::create_dir_all(&seed)?;
    crate::spec::overlay(repo, &seed)?;
    git(&seed, &["init", "-q", "-b", "main"])?;
    git(&seed, &["add", "-A"])?;
    git(&seed, &["commit", "-q", "-m", "Task repository"])?;
    let base_commit = git(&seed, &["rev-parse", "HEAD"])?;
    let bare = dir.join("origin.git");
    git(dir, &["clone", "-q", "--bare", &seed.to_string_lossy(), &bare.to_string_lossy()])?;
    // The seed pushes the reference solutions in `--check-solutions`.
    git(&seed, &["remote", "add", "origin", &bare.to_string_lossy()])?;
    Ok(Origin { bare, base_commit })
}

/// Clones `branch` of `origin` into `into` (which must not exist).
pub fn clone_branch(origin: &Origin, branch: &str, into: &Path) -> anyhow::Result<()> {
    let parent = into.parent().unwrap_or(Path::new("/"));
    git(parent, &["clone", "-q", "--branch", branch, &origin.url(), &into.to_string_lossy()])?;
    Ok(())
}

/// Paths that differ between `base` and `HEAD` in `checkout` (added, changed, deleted,
/// renamed on both sides).
pub fn changed_paths(checkout: &Path, base: &str) -> anyhow::Result<Vec<String>> {
    let names = git(checkout, &["diff", "--no-renames", "--name-only", base, "HEAD"])?;
    Ok(names.lines().map(str::to_string).filter(|l| !l.is_empty()).collect())
}
