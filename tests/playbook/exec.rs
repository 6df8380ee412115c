//! Running playbooks with real `sh` in temporary directories.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use agent_runner::playbook::{
    PlaybookReport, PlaybookRun, StepExecution, StepReport, StepStatus, parse_playbook, run_playbook,
};
use tokio_util::sync::CancellationToken;

use crate::common::processes::{is_gone, wait_for};

const CAP: usize = 64 * 1024;

async fn run(yaml: &str, dir: &Path, vars: &[(&str, &str)]) -> PlaybookReport {
    run_with(yaml, dir, vars, Duration::from_secs(60), &CancellationToken::new()).await
}

async fn run_with(
    yaml: &str,
    dir: &Path,
    vars: &[(&str, &str)],
    default_step_timeout: Duration,
    cancel: &CancellationToken,
) -> PlaybookReport {
    let playbook = parse_playbook(yaml, "test.yaml").unwrap();
    let variables: BTreeMap<String, String> =
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let ctx = PlaybookRun {
        workdir: dir,
        variables: &variables,
        default_step_timeout,
        output_cap_bytes: CAP,
        cancel,
        execution: &StepExecution::default(),
    };
    normalize(run_playbook(&playbook, &ctx).await)
}

/// Durations differ run to run; zero them so whole reports can be compared.
fn normalize(mut report: PlaybookReport) -> PlaybookReport {
    report.duration_ms = 0;
    for step in &mut report.steps {
        step.duration_ms = 0;
        // Figures differ run to run too (tests/process_usage.rs checks them).
        step.usage = None;
    }
    report
}

fn step(name: &str, command: &str, status: StepStatus) -> StepReport {
    StepReport {
        name: name.into(),
        command: command.into(),
        status,
        exit_code: None,
        attempts: 0,
        duration_ms: 0,
        output_tail: String::new(),
        reason: None,
        limit_exceeded: None,
        usage: None,
    }
}

fn passed(name: &str, command: &str, output: &str) -> StepReport {
    StepReport {
        exit_code: Some(0),
        attempts: 1,
        output_tail: output.into(),
        ..step(name, command, StepStatus::Passed)
    }
}

#[tokio::test]
async fn passing_steps_run_in_order_in_the_workdir_with_their_env() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "\
name: ok
steps:
  - name: write
    command: echo hello > f.txt && echo wrote
  - name: read
    command: cat f.txt; echo \"$GREETING\"
    env: {GREETING: hi}
";
    let report = run(yaml, dir.path(), &[]).await;
    let expected = PlaybookReport {
        playbook: "ok".into(),
        success: true,
        steps: vec![
            passed("write", "echo hello > f.txt && echo wrote", "wrote\n"),
            passed("read", "cat f.txt; echo \"$GREETING\"", "hello\nhi\n"),
        ],
        duration_ms: 0,
    };
    assert_eq!(report, expected);
    assert_eq!(report.failure_summary(), None);
}

const FLAKY: &str =
    "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo attempt $n; [ $n -ge 3 ]";

#[tokio::test]
async fn a_failing_step_is_retried_until_it_passes() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!("name: r\nsteps:\n  - name: flaky\n    command: '{FLAKY}'\n    retry_count: 2\n");
    let report = run(&yaml, dir.path(), &[]).await;
    assert_eq!(report.steps, vec![StepReport { attempts: 3, ..passed("flaky", FLAKY, "attempt 3\n") }]);
    assert!(report.success);
}

#[tokio::test]
async fn retries_run_out_and_the_last_attempt_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!("name: r\nsteps:\n  - name: flaky\n    command: '{FLAKY}'\n    retry_count: 1\n");
    let report = run(&yaml, dir.path(), &[]).await;
    let expected = StepReport {
        exit_code: Some(1),
        attempts: 2,
        output_tail: "attempt 2\n".into(),
        reason: Some("exited with code 1".into()),
        ..step("flaky", FLAKY, StepStatus::Failed)
    };
    assert_eq!(report.steps, vec![expected]);
    assert_eq!(report.failure_summary().as_deref(), Some("playbook 'r' failed: 'flaky' exited with code 1"));
}

#[tokio::test]
async fn fail_fast_stops_the_playbook() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: ff\nsteps:\n  - name: build\n    command: echo broken; exit 3\n  - name: test\n    command: touch ran\n";
    let report = run(yaml, dir.path(), &[]).await;
    let expected = PlaybookReport {
        playbook: "ff".into(),
        success: false,
        steps: vec![
            StepReport {
                exit_code: Some(3),
                attempts: 1,
                output_tail: "broken\n".into(),
                reason: Some("exited with code 3".into()),
                ..step("build", "echo broken; exit 3", StepStatus::Failed)
            },
            StepReport {
                reason: Some("step 'build' failed and is fail_fast".into()),
                ..step("test", "touch ran", StepStatus::NotRun)
            },
        ],
        duration_ms: 0,
    };
    assert_eq!(report, expected);
    assert!(!dir.path().join("ran").exists());
    assert_eq!(report.failure_summary().as_deref(), Some("playbook 'ff' failed: 'build' exited with code 3"));
}

#[tokio::test]
async fn without_fail_fast_later_steps_run_but_the_playbook_fails() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "\
name: lenient
steps:
  - name: lint
    command: exit 1
    fail_fast: false
  - name: test
    command: touch ran
";
    let report = run(yaml, dir.path(), &[]).await;
    assert_eq!(
        report.steps.iter().map(|s| s.status).collect::<Vec<_>>(),
        [StepStatus::Failed, StepStatus::Passed]
    );
    assert!(!report.success);
    assert!(dir.path().join("ran").exists());
    assert_eq!(
        report.failure_summary().as_deref(),
        Some("playbook 'lenient' failed: 'lint' exited with code 1")
    );
}

#[tokio::test]
async fn a_false_condition_skips_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let yaml =
        "name: c\nsteps:\n  - name: lint\n    command: touch linted\n    condition: lint_enabled == true\n";
    let off = run(yaml, dir.path(), &[("lint_enabled", "false")]).await;
    let skipped = StepReport {
        reason: Some("condition `lint_enabled == true` is false".into()),
        ..step("lint", "touch linted", StepStatus::Skipped)
    };
    assert_eq!(off.steps, vec![skipped]);
    assert!(off.success);
    assert!(!dir.path().join("linted").exists());

    let on = run(yaml, dir.path(), &[("lint_enabled", "true")]).await;
    assert_eq!(on.steps, vec![passed("lint", "touch linted", "")]);
    assert!(dir.path().join("linted").exists());
}

#[tokio::test]
async fn a_timed_out_step_has_its_whole_group_killed() {
    let dir = tempfile::tempdir().unwrap();
    let command = "sleep 30 & echo $! > bg.pid; sleep 30";
    let yaml = format!(
        "name: t\nsteps:\n  - name: hang\n    command: '{command}'\n    timeout_seconds: 1\n  - name: after\n    command: 'true'\n"
    );
    let report = run(&yaml, dir.path(), &[]).await;
    let expected = vec![
        StepReport {
            attempts: 1,
            reason: Some("timed out after 1s".into()),
            ..step("hang", command, StepStatus::TimedOut)
        },
        StepReport {
            reason: Some("step 'hang' failed and is fail_fast".into()),
            ..step("after", "true", StepStatus::NotRun)
        },
    ];
    assert_eq!(report.steps, expected);
    let pid: i32 = std::fs::read_to_string(dir.path().join("bg.pid")).unwrap().trim().parse().unwrap();
    wait_for("background sleep killed", || is_gone(pid)).await;
}

#[tokio::test]
async fn steps_without_a_timeout_use_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: d\nsteps:\n  - name: hang\n    command: sleep 30\n";
    let report = run_with(yaml, dir.path(), &[], Duration::from_millis(500), &CancellationToken::new()).await;
    assert_eq!(report.steps[0].status, StepStatus::TimedOut);
    assert_eq!(report.steps[0].reason.as_deref(), Some("timed out after 0.5s"));
}

#[tokio::test]
async fn cancellation_stops_the_running_step_and_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: c\nsteps:\n  - name: long\n    command: touch started; sleep 30\n    retry_count: 3\n  - name: next\n    command: 'true'\n";
    let cancel = CancellationToken::new();
    let task = {
        let (dir, cancel) = (dir.path().to_path_buf(), cancel.clone());
        tokio::spawn(async move { run_with(yaml, &dir, &[], Duration::from_secs(60), &cancel).await })
    };
    wait_for("step started", || dir.path().join("started").exists()).await;
    cancel.cancel();
    let report = task.await.unwrap();
    let expected = vec![
        StepReport {
            attempts: 1,
            reason: Some("was cancelled".into()),
            ..step("long", "touch started; sleep 30", StepStatus::Cancelled)
        },
        StepReport {
            reason: Some("the run was cancelled".into()),
            ..step("next", "true", StepStatus::NotRun)
        },
    ];
    assert_eq!(report.steps, expected);
    assert!(!report.success);
}

#[tokio::test]
async fn a_command_that_cannot_start_fails_without_retries() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let yaml = "name: s\nsteps:\n  - name: x\n    command: 'true'\n    retry_count: 2\n";
    let report = run(yaml, &missing, &[]).await;
    let only = &report.steps[0];
    assert_eq!((only.status, only.attempts, only.exit_code), (StepStatus::Failed, 1, None));
    let reason = only.reason.as_deref().unwrap();
    assert!(
        reason.starts_with(&format!("could not start: cannot start `sh` in {}: ", missing.display())),
        "{reason}"
    );
}

#[test]
fn the_report_serialises_as_the_test_results_artifact() {
    let report = PlaybookReport {
        playbook: "p".into(),
        success: false,
        steps: vec![StepReport {
            attempts: 2,
            duration_ms: 7,
            reason: Some("timed out after 1s".into()),
            ..step("s", "c", StepStatus::TimedOut)
        }],
        duration_ms: 9,
    };
    let expected = serde_json::json!({
        "playbook": "p",
        "success": false,
        "steps": [{
            "name": "s", "command": "c", "status": "timed_out", "exit_code": null, "attempts": 2,
            "duration_ms": 7, "output_tail": "", "reason": "timed out after 1s"
        }],
        "duration_ms": 9
    });
    assert_eq!(serde_json::to_value(&report).unwrap(), expected);
}
