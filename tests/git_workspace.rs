//! Slots, workspaces, commits and pushes against a real bare repository as the remote.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Barrier;

use agent_runner::error::{Classify, FailureKind};
use agent_runner::git::{
    CommitRequest, GitAuthor, GitCredentials, GitError, GitRemote, LocalSlotPool, changed_files, commit_all,
    diff_since, prepare_workspace, push_branch, remote_branch_commit,
};
use common::git;
use tempfile::TempDir;

const BRANCH: &str = "feature/task-login-1";

struct Fixture {
    tmp: TempDir,
    bare: PathBuf,
    /// A separate clone standing in for other people pushing to the remote.
    seed: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        let bare = tmp.path().join("remote.git");
        git(tmp.path(), &["init", "--bare", "--initial-branch=main", bare.to_str().unwrap()]);
        let seed = tmp.path().join("seed");
        git(tmp.path(), &["clone", bare.to_str().unwrap(), seed.to_str().unwrap()]);
        git(&seed, &["symbolic-ref", "HEAD", "refs/heads/main"]);
        std::fs::write(seed.join("README.md"), "hello\n").unwrap();
        std::fs::write(seed.join(".gitignore"), "target/\n*.log\n").unwrap();
        std::fs::write(seed.join("old.txt"), "to be deleted\n").unwrap();
        git(&seed, &["add", "-A"]);
        git(&seed, &["commit", "-m", "initial"]);
        git(&seed, &["push", "origin", "main"]);
        Fixture { tmp, bare, seed }
    }

    fn remote(&self) -> GitRemote {
        GitRemote::new(self.bare.to_str().unwrap(), GitCredentials::anonymous()).unwrap()
    }

    fn pool(&self) -> LocalSlotPool {
        LocalSlotPool::new(self.tmp.path().join("slots"))
    }

    fn remote_ref(&self, name: &str) -> Option<String> {
        let bare = git2::Repository::open_bare(&self.bare).unwrap();
        bare.find_reference(name).ok().map(|r| r.target().unwrap().to_string())
    }

    /// Commits a change in the seed clone and pushes it to main, as another developer would.
    fn push_upstream_change(&self, file: &str, content: &str) -> String {
        std::fs::write(self.seed.join(file), content).unwrap();
        git(&self.seed, &["add", "-A"]);
        git(&self.seed, &["commit", "-m", "upstream change"]);
        git(&self.seed, &["push", "origin", "main"]);
        git(&self.seed, &["rev-parse", "HEAD"])
    }
}

fn request<'a>(message: &'a str, author: &'a GitAuthor) -> CommitRequest<'a> {
    CommitRequest {
        message,
        task_id: "task-1",
        runner_id: None,
        author,
        remote: None,
        max_file_bytes: agent_runner::workspace_files::DEFAULT_MAX_FILE_BYTES,
    }
}

#[test]
fn acquire_clones_then_busy_slots_are_skipped_and_released_slots_reused() {
    let fx = Fixture::new();
    let pool = fx.pool();
    let first = pool.acquire(&fx.remote()).unwrap();
    assert!(first.slot_id.ends_with("/slot-0"), "{}", first.slot_id);
    assert_eq!(std::fs::read_to_string(first.path.join("README.md")).unwrap(), "hello\n");
    std::fs::write(first.path.join(".git/test-marker"), "kept").unwrap();

    let second = pool.acquire(&fx.remote()).unwrap();
    assert!(second.slot_id.ends_with("/slot-1"), "{}", second.slot_id);
    assert_ne!(first.path, second.path);

    let first_path = first.path.clone();
    drop(first);
    let again = pool.acquire(&fx.remote()).unwrap();
    assert_eq!(again.path, first_path);
    assert_eq!(std::fs::read_to_string(again.path.join(".git/test-marker")).unwrap(), "kept");
}

#[test]
fn concurrent_acquires_never_share_a_slot() {
    const THREADS: usize = 4;
    let fx = Fixture::new();
    let pool = fx.pool();
    let remote = fx.remote();
    let all_acquired = Barrier::new(THREADS);
    let ids: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    let lease = pool.acquire(&remote).unwrap();
                    // Hold every lease until all threads have one.
                    all_acquired.wait();
                    lease.slot_id.clone()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), THREADS, "{ids:?}");
}

#[test]
fn exhausted_pool_is_a_transient_workspace_error() {
    let fx = Fixture::new();
    let pool = fx.pool().with_max_slots(1);
    let _held = pool.acquire(&fx.remote()).unwrap();
    let err = pool.acquire(&fx.remote()).unwrap_err();
    assert!(matches!(err, GitError::SlotsBusy { max: 1, .. }), "{err}");
    assert!(err.is_transient());
    assert_eq!(err.failure_kind(), FailureKind::WorkspacePreparation);
}

#[test]
fn a_slot_is_cloned_afresh_after_serving_its_leases_and_only_then() {
    let fx = Fixture::new();
    let pool = fx.pool().with_max_slots(1).with_recycle_after_uses(2);
    let remote = fx.remote();
    // Objects a finished task leaves behind in the clone stand in for its growth.
    let leftover = |path: &Path| path.join(".git/objects/left-by-an-earlier-task");
    let first = pool.acquire(&remote).unwrap();
    std::fs::write(leftover(&first.path), "x").unwrap();
    let path = first.path.clone();
    drop(first);
    let second = pool.acquire(&remote).unwrap();
    assert!(leftover(&second.path).exists(), "the clone was replaced before serving its two leases");
    drop(second);
    let third = pool.acquire(&remote).unwrap();
    assert_eq!(third.path, path);
    assert!(!leftover(&third.path).exists(), "the clone was not replaced after two leases");
    // The fresh clone works and counts from one again: the next lease keeps it.
    let workspace = prepare_workspace(&third.path, &remote, "main", BRANCH).unwrap();
    assert_eq!(workspace.branch, BRANCH);
    std::fs::write(leftover(&third.path), "x").unwrap();
    drop(third);
    assert!(leftover(&pool.acquire(&remote).unwrap().path).exists(), "recycled after one lease");
}

#[test]
fn half_cloned_slots_are_wiped_and_cloned_again() {
    let fx = Fixture::new();
    let pool = fx.pool();
    let remote = fx.remote();
    let slot0 = pool.repo_dir(remote.url()).join("slot-0");
    std::fs::create_dir_all(&slot0).unwrap();
    std::fs::write(slot0.join("junk"), "left by a crash").unwrap();
    // An initialised but never fetched clone: a crash mid-clone looks like this.
    git(&slot0, &["init", "--initial-branch=main"]);

    let lease = pool.acquire(&remote).unwrap();
    assert_eq!(lease.path, slot0);
    assert!(!slot0.join("junk").exists());
    assert_eq!(git(&slot0, &["rev-parse", "HEAD"]), fx.remote_ref("refs/heads/main").unwrap());
}

#[test]
fn prepare_resets_a_dirty_slot_onto_the_latest_remote_base() {
    let fx = Fixture::new();
    let lease = fx.pool().acquire(&fx.remote()).unwrap();
    let path = &lease.path;
    std::fs::write(path.join("README.md"), "agent edit\n").unwrap();
    std::fs::write(path.join("notes.txt"), "untracked").unwrap();
    std::fs::create_dir_all(path.join("target/debug")).unwrap();
    std::fs::write(path.join("target/debug/out.bin"), "ignored").unwrap();
    std::fs::write(path.join("build.log"), "ignored").unwrap();
    let upstream = fx.push_upstream_change("README.md", "hello\nupstream\n");

    let prepared = prepare_workspace(path, &fx.remote(), "main", BRANCH).unwrap();

    assert_eq!(prepared.base_commit, upstream);
    assert_eq!(prepared.branch, BRANCH);
    assert_eq!(std::fs::read_to_string(path.join("README.md")).unwrap(), "hello\nupstream\n");
    for gone in ["notes.txt", "target", "build.log"] {
        assert!(!path.join(gone).exists(), "{gone} survived");
    }
    assert_eq!(git(path, &["status", "--porcelain", "--ignored"]), "");
    assert_eq!(git(path, &["symbolic-ref", "HEAD"]), format!("refs/heads/{BRANCH}"));
    assert_eq!(git(path, &["rev-parse", "HEAD", "main"]), format!("{upstream}\n{upstream}"));
}

#[test]
fn a_warm_slot_keeps_only_the_base_and_the_current_task_branch() {
    let fx = Fixture::new();
    // Other tasks' branches pile up on the remote; a slot must neither fetch them nor
    // keep the branches of the tasks it ran before.
    let upstream = fx.pool().acquire(&fx.remote()).unwrap();
    for n in 0..3 {
        git(&upstream.path, &["push", "-q", "origin", &format!("HEAD:refs/heads/feature/other-{n}")]);
    }
    drop(upstream);
    let lease = fx.pool().acquire(&fx.remote()).unwrap();
    for branch in ["feature/task-a", "feature/task-b"] {
        prepare_workspace(&lease.path, &fx.remote(), "main", branch).unwrap();
    }
    let refs = git(&lease.path, &["for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes"]);
    assert_eq!(refs, "refs/heads/feature/task-b\nrefs/heads/main\nrefs/remotes/origin/main");
}

#[test]
fn prepare_fetches_from_the_task_remote_even_if_origin_was_rewritten() {
    let fx = Fixture::new();
    let lease = fx.pool().acquire(&fx.remote()).unwrap();
    git(&lease.path, &["remote", "set-url", "origin", "/nonexistent/elsewhere.git"]);
    git(&lease.path, &["remote", "set-url", "--push", "origin", "/nonexistent/push.git"]);
    let upstream = fx.push_upstream_change("new.txt", "x\n");

    let prepared = prepare_workspace(&lease.path, &fx.remote(), "main", BRANCH).unwrap();
    assert_eq!(prepared.base_commit, upstream);
    assert_eq!(git(&lease.path, &["remote", "get-url", "--push", "origin"]), fx.bare.to_str().unwrap());
}

#[test]
fn missing_base_branch_is_a_clear_permanent_error() {
    let fx = Fixture::new();
    let lease = fx.pool().acquire(&fx.remote()).unwrap();
    let err = prepare_workspace(&lease.path, &fx.remote(), "develop", BRANCH).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("base branch develop does not exist on remote {}", fx.bare.display())
    );
    assert!(!err.is_transient());
    assert_eq!(err.failure_kind(), FailureKind::WorkspacePreparation);
}

#[test]
fn commit_adds_trailer_and_reports_changes_and_nothing_to_commit_is_none() {
    let fx = Fixture::new();
    let lease = fx.pool().acquire(&fx.remote()).unwrap();
    let prepared = prepare_workspace(&lease.path, &fx.remote(), "main", BRANCH).unwrap();
    let author = GitAuthor::default();
    assert_eq!(commit_all(&lease.path, &request("Nothing", &author)).unwrap(), None);

    std::fs::write(lease.path.join("README.md"), "hello\nworld\n").unwrap();
    std::fs::write(lease.path.join("added.txt"), "new\n").unwrap();
    std::fs::write(lease.path.join("ignored.log"), "not committed\n").unwrap();
    std::fs::remove_file(lease.path.join("old.txt")).unwrap();
    let info = commit_all(&lease.path, &request("Implement login", &author)).unwrap().unwrap();

    assert_eq!(info.files_changed, ["README.md", "added.txt", "old.txt"]);
    let repo = git2::Repository::open(&lease.path).unwrap();
    let commit = repo.find_commit(git2::Oid::from_str(&info.id).unwrap()).unwrap();
    assert_eq!(commit.message().unwrap(), "Implement login\n\nTask-Id: task-1\n");
    assert_eq!(commit.author().name().unwrap(), "agent-runner");
    assert_eq!(commit.author().email().unwrap(), "agent-runner@necrocode.local");
    assert_eq!(commit.parent_id(0).unwrap().to_string(), prepared.base_commit);
    assert_eq!(git(&lease.path, &["symbolic-ref", "HEAD"]), format!("refs/heads/{BRANCH}"));

    assert_eq!(changed_files(&lease.path, &prepared.base_commit).unwrap(), info.files_changed);
    let patch = diff_since(&lease.path, &prepared.base_commit, 5 * 1024 * 1024).unwrap();
    assert_eq!(patch, git(&lease.path, &["diff", "--no-color", &prepared.base_commit, "HEAD"]) + "\n");
    assert!(patch.contains("+world\n") && patch.contains("deleted file mode"), "{patch}");
    assert_eq!(commit_all(&lease.path, &request("Again", &author)).unwrap(), None);
}

fn prepare_commit(fx: &Fixture, pool: &LocalSlotPool, file: &str) -> (agent_runner::git::SlotLease, String) {
    let lease = pool.acquire(&fx.remote()).unwrap();
    prepare_workspace(&lease.path, &fx.remote(), "main", BRANCH).unwrap();
    std::fs::write(lease.path.join(file), "work\n").unwrap();
    let info = commit_all(&lease.path, &request("Work", &GitAuthor::default())).unwrap().unwrap();
    (lease, info.id)
}

#[test]
fn push_lands_on_the_remote_and_ls_remote_sees_it() {
    let fx = Fixture::new();
    let (lease, commit) = prepare_commit(&fx, &fx.pool(), "a.txt");
    assert_eq!(remote_branch_commit(&fx.remote(), BRANCH).unwrap(), None);

    let outcome = push_branch(&lease.path, &fx.remote(), BRANCH).unwrap();
    assert_eq!(outcome.commit, commit);
    assert_eq!(outcome.branch, BRANCH);
    assert_eq!(fx.remote_ref(&format!("refs/heads/{BRANCH}")), Some(commit.clone()));
    assert_eq!(remote_branch_commit(&fx.remote(), BRANCH).unwrap(), Some(commit));
}

#[test]
fn non_fast_forward_push_is_rejected_not_forced() {
    let fx = Fixture::new();
    let pool = fx.pool();
    let (first, first_commit) = prepare_commit(&fx, &pool, "a.txt");
    push_branch(&first.path, &fx.remote(), BRANCH).unwrap();
    let (second, _) = prepare_commit(&fx, &pool, "b.txt");

    let err = push_branch(&second.path, &fx.remote(), BRANCH).unwrap_err();
    assert!(matches!(err, GitError::PushRejected { .. }), "{err:?}");
    assert_eq!(err.failure_kind(), FailureKind::Push);
    assert!(!err.is_transient());
    assert_eq!(fx.remote_ref(&format!("refs/heads/{BRANCH}")), Some(first_commit));
}

#[test]
fn unreachable_remote_fails_clone_as_workspace_error_without_leaving_a_slot() {
    let fx = Fixture::new();
    let missing =
        GitRemote::new(fx.tmp.path().join("absent.git").to_str().unwrap(), GitCredentials::anonymous())
            .unwrap();
    let pool = fx.pool();
    let err = pool.acquire(&missing).unwrap_err();
    assert!(matches!(err, GitError::Clone { .. }), "{err:?}");
    assert_eq!(err.failure_kind(), FailureKind::WorkspacePreparation);
    assert!(!pool.repo_dir(missing.url()).join("slot-0").exists());
}

/// A real HTTP server on 127.0.0.1 that refuses every request with 401 Basic, recording
/// the Authorization headers it was sent.
fn spawn_refusing_http_server() -> (String, std::sync::mpsc::Receiver<Option<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/org/app.git", listener.local_addr().unwrap());
    let (seen, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut authorization = None;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if line.to_ascii_lowercase().starts_with("authorization:") {
                    authorization = Some(line.trim().to_string());
                }
                line.clear();
            }
            let _ = seen.send(authorization);
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (url, received)
}

#[test]
fn refused_token_is_tried_once_and_fails_as_permanent_auth_error() {
    const TOKEN: &str = "tok-refused-123";
    let fx = Fixture::new();
    let (url, requests) = spawn_refusing_http_server();
    // The server is plain http on a local port: named as a token host explicitly.
    let origin = &url[..url["http://".len()..].find('/').map_or(url.len(), |i| i + "http://".len())];
    let hosts = vec![agent_runner::git::TokenHost::parse(origin).unwrap()];
    let creds = GitCredentials::with_token(secrecy::SecretString::from(TOKEN.to_string()), hosts);
    let remote = GitRemote::new(url, creds).unwrap();

    let err = fx.pool().acquire(&remote).unwrap_err();

    let GitError::Clone { detail, .. } = &err else { panic!("{err:?}") };
    assert_eq!(detail.code, git2::ErrorCode::Auth, "{err}");
    assert!(!err.is_transient());
    assert!(!format!("{err} {err:?}").contains(TOKEN));
    let headers: Vec<Option<String>> = requests.try_iter().collect();
    let with_token = headers.iter().filter(|h| h.is_some()).count();
    assert_eq!(with_token, 1, "token must be offered exactly once: {headers:?}");
}
