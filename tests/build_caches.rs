//! Byte-code and tool caches a test run leaves in the workspace never reach the commit
//! (issue 17): the real playbook executor runs real Python, then the real commit.

use std::path::Path;
use std::time::Duration;

use agent_runner::git::{CommitRequest, GitAuthor, commit_all};
use agent_runner::playbook::{PlaybookRun, StepExecution, parse_playbook, run_playbook};
use tokio_util::sync::CancellationToken;

/// A repository with one commit: a module and its test under `tests/`.
fn repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init(dir.path()).unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("greet.py"), "def greet(name):\n    return 'Hi ' + name\n").unwrap();
    std::fs::write(
        dir.path().join("tests/test_greet.py"),
        "import greet\n\ndef test_greet():\n    assert greet.greet('x') == 'Hello x'\n",
    )
    .unwrap();
    let mut index = repo.index().unwrap();
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let signature = git2::Signature::now("seed", "seed@example.test").unwrap();
    repo.commit(Some("HEAD"), &signature, &signature, "seed", &tree, &[]).unwrap();
    dir
}

async fn run_steps(workdir: &Path, yaml: &str) -> bool {
    let playbook = parse_playbook(yaml, "test").unwrap();
    let (variables, cancel, execution) =
        (Default::default(), CancellationToken::new(), StepExecution::default());
    let run = PlaybookRun {
        workdir,
        variables: &variables,
        default_step_timeout: Duration::from_secs(60),
        output_cap_bytes: 64 * 1024,
        cancel: &cancel,
        execution: &execution,
    };
    let report = run_playbook(&playbook, &run).await;
    assert!(report.steps.iter().all(|s| s.reason.is_none()), "{report:?}");
    report.success
}

fn committed_paths(workdir: &Path) -> Vec<String> {
    let repo = git2::Repository::open(workdir).unwrap();
    let tree = repo.head().unwrap().peel_to_tree().unwrap();
    let mut paths = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob) {
            paths.push(format!("{root}{}", entry.name().unwrap_or("")));
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    paths.sort();
    paths
}

#[tokio::test]
async fn steps_run_python_without_writing_byte_code() {
    let ws = repository();
    // Importing the test module from its directory would write tests/__pycache__/.
    let yaml = "name: t\nsteps:\n  - name: import\n    command: cd tests && python3 -c 'import sys; sys.path.insert(0, \"..\"); import test_greet, greet'\n";
    assert!(run_steps(ws.path(), yaml).await);
    assert!(!ws.path().join("tests/__pycache__").exists());
    assert!(!ws.path().join("__pycache__").exists());
    // A step may still choose to write byte-code.
    let yaml = "name: t\nsteps:\n  - name: import\n    command: python3 -c 'import sys; print(sys.dont_write_bytecode)' | grep -x False\n    env:\n      PYTHONDONTWRITEBYTECODE: ''\n";
    assert!(run_steps(ws.path(), yaml).await);
}

#[tokio::test]
async fn caches_written_by_a_test_run_stay_out_of_the_commit_even_under_tests() {
    let ws = repository();
    std::fs::write(ws.path().join("greet.py"), "def greet(name):\n    return 'Hello ' + name\n").unwrap();
    // What pytest, mypy, ruff, bundlers and a byte-compiling run leave behind.
    let yaml = "name: t\nsteps:\n  - name: caches\n    command: >-\n      python3 -c 'import py_compile; py_compile.compile(\"tests/test_greet.py\", cfile=\"tests/__pycache__/test_greet.cpython-312.pyc\"); py_compile.compile(\"greet.py\", cfile=\"greet.pyc\")' &&\n      mkdir -p .pytest_cache/v/cache .mypy_cache/3.12 .ruff_cache web/node_modules/.cache/babel &&\n      echo '{}' > .pytest_cache/v/cache/lastfailed && echo x > .mypy_cache/3.12/greet.json &&\n      echo x > .ruff_cache/CACHEDIR.TAG && echo x > web/node_modules/.cache/babel/a.json &&\n      echo 'export const a = 1' > web/app.js\n";
    assert!(run_steps(ws.path(), yaml).await);
    assert!(ws.path().join("tests/__pycache__/test_greet.cpython-312.pyc").exists());

    let author = GitAuthor::default();
    let request = CommitRequest {
        message: "Greet with Hello",
        task_id: "task-17",
        runner_id: None,
        author: &author,
        remote: None,
        max_file_bytes: agent_runner::workspace_files::DEFAULT_MAX_FILE_BYTES,
    };
    let info = commit_all(ws.path(), &request).unwrap().unwrap();
    assert_eq!(info.files_changed, ["greet.py", "web/app.js"]);
    assert_eq!(committed_paths(ws.path()), ["greet.py", "tests/test_greet.py", "web/app.js"]);
}
