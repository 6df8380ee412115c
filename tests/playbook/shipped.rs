//! The playbooks shipped in `playbooks/` and the built-in default must parse and make sense.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use agent_runner::playbook::resolve::BUILTIN_PLAYBOOK_YAML;
use agent_runner::playbook::{PlaybookRun, StepExecution, StepStatus, parse_playbook, run_playbook};
use agent_runner::process::{CommandSpec, run_command};
use tokio_util::sync::CancellationToken;

#[test]
fn every_shipped_playbook_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let shown = path.display().to_string();
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml"),
            "{shown}: only .yaml files belong here"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let playbook = parse_playbook(&text, &shown).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            playbook.steps.iter().all(|s| s.timeout_seconds.is_some()),
            "{shown}: give every step a timeout"
        );
        names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(names, ["backend", "frontend", "generic", "node", "python", "rust"]);
}

#[tokio::test]
async fn the_built_in_default_passes_in_a_git_repository_and_fails_outside_one() {
    let playbook = parse_playbook(BUILTIN_PLAYBOOK_YAML, "built-in").unwrap();
    let repo = tempfile::tempdir().unwrap();
    let init = CommandSpec::new("git init -q .", repo.path(), Duration::from_secs(60), 4096);
    assert!(run_command(&init, &CancellationToken::new()).await.unwrap().success());

    let (vars, cancel, execution) = (BTreeMap::new(), CancellationToken::new(), StepExecution::default());
    let ctx = |workdir| PlaybookRun {
        workdir,
        variables: &vars,
        default_step_timeout: Duration::from_secs(60),
        output_cap_bytes: 4096,
        cancel: &cancel,
        execution: &execution,
    };
    let in_repo = run_playbook(&playbook, &ctx(repo.path())).await;
    assert!(in_repo.success, "{:?}", in_repo.steps);

    let not_repo = tempfile::tempdir().unwrap();
    let outside = run_playbook(&playbook, &ctx(not_repo.path())).await;
    assert_eq!(outside.steps[0].status, StepStatus::Failed);
}
