//! `--check-solutions`: the harness tested without a model. For every task: its tests
//! fail on the base repository; its reference solution, committed onto a branch and
//! pushed to a bare origin, passes the independent check; and the same branch with a
//! protected test file edited as well is refused, so the check can fail.

use std::path::Path;

use crate::git::{self, git};
use crate::spec::EvalTask;
use crate::verify;

/// Runs the three checks on every task; an error names every task that failed one.
pub fn check_all(tasks: &[EvalTask], work: &Path) -> anyhow::Result<()> {
    let protected = verify::protected_globs()?;
    let mut failures = Vec::new();
    for task in tasks {
        let dir = work.join("solutions").join(&task.name);
        std::fs::create_dir_all(&dir)?;
        match check_one(task, &dir, &protected) {
            Ok(()) => println!("ok   {}", task.name),
            Err(e) => {
                println!("FAIL {}: {e:#}", task.name);
                failures.push(task.name.clone());
            }
        }
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {} tasks failed: {}",
        failures.len(),
        tasks.len(),
        failures.join(", ")
    );
    println!("all {} tasks: base fails, solution passes, tampered tests refused", tasks.len());
    Ok(())
}

fn check_one(task: &EvalTask, dir: &Path, protected: &globset::GlobSet) -> anyhow::Result<()> {
    let origin = git::make_origin(&task.repo, dir)?;
    let seed = dir.join("seed");
    let (base_ok, base_output) = verify::run_check(&task.file.check, &seed)?;
    anyhow::ensure!(!base_ok, "the tests pass on the base repository: {}", verify::tail(&base_output));

    push_branch(task, &seed, "solution", None)?;
    let verdict = verify::check_branch(task, &origin, "solution", &dir.join("solution-check"), protected)?;
    anyhow::ensure!(verdict.passed, "the reference solution does not pass: {}", verdict.reason);

    let test_file = spec_test_file(task, protected)?;
    git(&seed, &["checkout", "-q", "main"])?;
    push_branch(task, &seed, "tampered", Some(&test_file))?;
    let tampered = verify::check_branch(task, &origin, "tampered", &dir.join("tampered-check"), protected)?;
    anyhow::ensure!(
        !tampered.passed && tampered.protected_touched == vec![test_file.clone()],
        "a branch editing {test_file} was not refused: {tampered:?}"
    );
    Ok(())
}

/// Commits the solution (and, with `tamper`, a changed protected file) on `branch` and
/// pushes it to the origin.
fn push_branch(task: &EvalTask, seed: &Path, branch: &str, tamper: Option<&str>) -> anyhow::Result<()> {
    git(seed, &["checkout", "-q", "-b", branch])?;
    crate::spec::overlay(&task.solution, seed)?;
    if let Some(path) = tamper {
        let file = seed.join(path);
        let mut text = std::fs::read_to_string(&file)?;
        text.push_str("\n# changed by the model\n");
        std::fs::write(&file, text)?;
    }
    git(seed, &["add", "-A"])?;
    // Empty when a solution changes nothing: the check then says the tests fail.
    git(seed, &["commit", "-q", "--allow-empty", "-m", branch])?;
    git(seed, &["push", "-q", "origin", branch])?;
    Ok(())
}

/// The task's first protected file (its tests).
fn spec_test_file(task: &EvalTask, protected: &globset::GlobSet) -> anyhow::Result<String> {
    crate::spec::files_under(&task.repo)?.into_iter().find(|p| protected.is_match(p.as_str())).ok_or_else(
        || anyhow::anyhow!("no file under the protected test paths: the model could edit the tests"),
    )
}
