//! Build information for `agent-runner --version`: the git revision the binary was built
//! from (with `-dirty` when the tree had uncommitted changes), the target and the
//! profile; the revision and target also bare (`AGENT_RUNNER_REVISION`,
//! `AGENT_RUNNER_TARGET`) for the `agent_runner_build_info` metric. A build outside a git
//! checkout (a container build context without `.git`) says `unknown` or takes
//! `AGENT_RUNNER_GIT_REVISION` from the builder.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=AGENT_RUNNER_GIT_REVISION");
    // A new commit moves HEAD or the branch it names; the index changes with staging.
    // Asked of git, because in a linked worktree `.git` is a file naming the real place.
    let watched = [("--git-path", "HEAD"), ("--git-path", "index")];
    for (flag, name) in watched {
        if let Some(path) = git(&["rev-parse", flag, name]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &head_ref])
    {
        println!("cargo:rerun-if-changed={path}");
    }
    let revision = std::env::var("AGENT_RUNNER_GIT_REVISION").ok().filter(|r| !r.is_empty()).or_else(|| {
        let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        Some(if dirty { format!("{revision}-dirty") } else { revision })
    });
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    let revision = revision.as_deref().unwrap_or("unknown");
    println!(
        "cargo:rustc-env=AGENT_RUNNER_LONG_VERSION={} (revision {revision}, {target}, {profile})",
        std::env::var("CARGO_PKG_VERSION").unwrap_or_default(),
    );
    // The same, bare, for the `agent_runner_build_info` metric's labels.
    println!("cargo:rustc-env=AGENT_RUNNER_REVISION={revision}");
    println!("cargo:rustc-env=AGENT_RUNNER_TARGET={target}");
}
