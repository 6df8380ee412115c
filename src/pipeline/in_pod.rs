//! A task run in its own Kubernetes Job (`execution_mode: kubernetes`, see
//! [`crate::kubernetes`]): start or find the Job, follow its pod, read the outcome the pod
//! reports, and check the effects it claims before the run counts as a success.
//!
//! What happens to the Job (ARCHITECTURE.md "Kubernetes execution mode"):
//! - once its outcome is read, the worker deletes it (the pod's artifacts hold its log);
//!   a worker that dies first leaves it to `ttlSecondsAfterFinished`;
//! - an operator's cancel deletes it, which stops the pod;
//! - a worker shutting down leaves it running: the delivery goes back to the broker and
//!   the next worker finds the Job by its name and follows it to its end;
//! - a finished Job found for a new delivery is read when it succeeded (the work is done,
//!   only the settling was lost) and replaced when it failed (that delivery is a retry).

use std::time::Duration;

use super::{RunContext, StopCause, StopReason};
use crate::artifacts::{ArtifactKey, ArtifactKind};
use crate::error::{Classify, FailureKind, TaskFailure};
use crate::git::{self, BranchOnRemote, GitRemote};
use crate::kubernetes::{
    JobClient, JobEnd, KubernetesJobs, PodOutcome, Started, TaskJob, job_name, relayed_event,
};

/// Time a pod gets beyond the task timeout to be scheduled, pull its image and store
/// its artifacts; the pod applies the task timeout to its own run.
pub const POD_ALLOWANCE: Duration = Duration::from_secs(300);
/// How long the log follower may lag behind the Job's end before it is dropped.
const LOG_DRAIN: Duration = Duration::from_secs(5);
/// Tries to create a Job while a failed one of the same name is being deleted.
const REPLACE_TRIES: u32 = 10;

const STEP: &str = "kubernetes";

/// Runs the task in its Job. `Ok` means the pod reported success and the remote and
/// the artifact store show it; the outcome is returned whenever the pod wrote one.
pub async fn run_in_pod(
    ctx: &RunContext<'_>,
    jobs: &KubernetesJobs,
    cause: &StopCause,
    timeout: Duration,
) -> (Result<(), TaskFailure>, Option<PodOutcome>) {
    // The pod applies the task timeout to its own run and Kubernetes the Job's deadline
    // to the pod; this bound is for an API that stopped answering.
    let last_resort = timeout + POD_ALLOWANCE + super::WRAP_UP_BUDGET;
    let stalled = TaskFailure::new(
        FailureKind::Timeout,
        STEP,
        format!("no end of the task's job within {} seconds", last_resort.as_secs()),
    );
    tokio::select! {
        ran = run_job(ctx, jobs, cause, timeout) => ran,
        () = tokio::time::sleep(last_resort) => (Err(stalled), None),
    }
}

async fn run_job(
    ctx: &RunContext<'_>,
    jobs: &KubernetesJobs,
    cause: &StopCause,
    timeout: Duration,
) -> (Result<(), TaskFailure>, Option<PodOutcome>) {
    let client = match jobs.client().await {
        Ok(client) => client,
        Err(error) => return (Err(infrastructure(error.to_string(), error.transient())), None),
    };
    let name = job_name(&ctx.task.task_id);
    let message = ctx.task.to_message().to_string();
    let task = TaskJob {
        task_id: &ctx.task.task_id,
        spec_name: &ctx.task.spec_name,
        task_json: &message,
        deadline: timeout + POD_ALLOWANCE,
        attempt: ctx.attempt,
    };
    if let Err(failure) = start(ctx, client, jobs, task, &name).await {
        return (Err(failure), None);
    }
    // The log is followed while the Job runs, and may trail its end by a moment; the
    // pod's step events in it are published as they come.
    let wait_and_drain = async {
        let (relay, mut relayed) = tokio::sync::mpsc::unbounded_channel();
        let job = name.as_str();
        let read = client.follow_log(job, move |line| match relayed_event(line) {
            Some(event) => {
                let _ = relay.send(event);
            }
            None => {
                ctx.log.record("pod", line);
                tracing::debug!(job, line, "pod log");
            }
        });
        let publish = async {
            while let Some(event) = relayed.recv().await {
                crate::events::publish_best_effort(ctx.runner.services.events.as_ref(), &event).await;
            }
        };
        let follow = async {
            tokio::join!(read, publish);
        };
        let waited = client.wait(&name);
        tokio::pin!(follow, waited);
        tokio::select! {
            ended = &mut waited => {
                let _ = tokio::time::timeout(LOG_DRAIN, &mut follow).await;
                ended
            }
            () = &mut follow => waited.await,
        }
    };
    let ended = tokio::select! {
        ended = wait_and_drain => ended,
        () = ctx.cancel.cancelled() => {
            if cause.reason() == StopReason::Cancelled {
                delete(ctx, client, &name).await;
            } else {
                ctx.log.record(STEP, &format!("left job {name} running for the next delivery"));
            }
            return (Err(TaskFailure::new(FailureKind::Cancelled, STEP, "stopped")), None);
        }
    };
    let end = match ended {
        Ok(end) => end,
        Err(error) => return (Err(infrastructure(error.to_string(), error.transient())), None),
    };
    let (result, outcome) = settle_end(ctx, &name, end, timeout).await;
    delete(ctx, client, &name).await;
    (result, outcome)
}

/// Creates the task's Job, or adopts the one an earlier delivery created (see the module
/// docs for which found Jobs are kept).
async fn start(
    ctx: &RunContext<'_>,
    client: &JobClient,
    jobs: &KubernetesJobs,
    task: TaskJob<'_>,
    name: &str,
) -> Result<(), TaskFailure> {
    let job = jobs.template.job_for(task).map_err(|e| infrastructure(e.to_string(), false))?;
    for _ in 0..REPLACE_TRIES {
        match client.start(&job).await.map_err(|e| infrastructure(e.to_string(), e.transient()))? {
            Started::Created => {
                ctx.log.record(STEP, &format!("created job {name}"));
                return Ok(());
            }
            Started::Found => {
                let end =
                    client.end_now(name).await.map_err(|e| infrastructure(e.to_string(), e.transient()))?;
                match end {
                    None | Some(JobEnd::Succeeded { .. }) => {
                        ctx.log
                            .record(STEP, &format!("found job {name} of an earlier delivery; following it"));
                        return Ok(());
                    }
                    Some(JobEnd::Failed { .. }) => {
                        ctx.log.record(STEP, &format!("replacing job {name}, which failed before"));
                        delete(ctx, client, name).await;
                    }
                    Some(JobEnd::Vanished) => {}
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    Err(infrastructure(format!("job {name} could not be replaced: it is still being deleted"), true))
}

async fn delete(ctx: &RunContext<'_>, client: &JobClient, name: &str) {
    match client.delete(name).await {
        Ok(()) => ctx.log.record(STEP, &format!("deleted job {name}")),
        Err(error) => tracing::warn!(%error, job = name, "job not deleted; its ttl removes it"),
    }
}

/// The run's result from how the Job ended.
async fn settle_end(
    ctx: &RunContext<'_>,
    name: &str,
    end: JobEnd,
    timeout: Duration,
) -> (Result<(), TaskFailure>, Option<PodOutcome>) {
    let termination = match &end {
        JobEnd::Succeeded { termination } | JobEnd::Failed { termination, .. } => termination.clone(),
        JobEnd::Vanished => None,
    };
    let outcome = termination.as_ref().and_then(|t| PodOutcome::from_message(&t.message));
    let masked = |text: &str| ctx.runner.services.masker.mask(text);
    let result = match (&end, &outcome) {
        (_, Some(outcome)) if outcome.success => verify_effects(ctx, outcome).await,
        (_, Some(outcome)) => Err(outcome.error.clone().unwrap_or_else(|| {
            infrastructure("the task pod reported a failure without a reason".to_string(), true)
        })),
        (JobEnd::Vanished, None) => {
            Err(infrastructure(format!("job {name} was deleted before it reported an outcome"), true))
        }
        (JobEnd::Failed { reason, .. }, None) if reason == "DeadlineExceeded" => Err(TaskFailure::new(
            FailureKind::Timeout,
            STEP,
            format!("the task pod did not finish within {} seconds", (timeout + POD_ALLOWANCE).as_secs()),
        )),
        (_, None) => match &termination {
            Some(t) if t.reason == "OOMKilled" => Err(infrastructure(
                "the task pod was killed for exceeding its memory limit (max_memory_mb)".to_string(),
                false,
            )),
            Some(t) => Err(infrastructure(
                format!(
                    "the task pod exited {} ({}) without an outcome: {}",
                    t.exit_code,
                    t.reason,
                    masked(&t.message)
                ),
                true,
            )),
            None => Err(infrastructure(format!("job {name} ended without a pod status: {end:?}"), true)),
        },
    };
    (result, outcome)
}

/// Checks what a successful pod claims: this task's commit on the remote branch, and
/// every artifact it lists in the store.
async fn verify_effects(ctx: &RunContext<'_>, outcome: &PodOutcome) -> Result<(), TaskFailure> {
    let unproven =
        |kind, message: String| Err(TaskFailure { transient: true, ..TaskFailure::new(kind, STEP, message) });
    let (Some(branch), Some(commit), Some(url)) = (&outcome.branch, &outcome.commit, &ctx.task.repo_url)
    else {
        return unproven(
            FailureKind::Push,
            "the task pod reported success without a pushed branch".to_string(),
        );
    };
    let credentials = ctx.runner.services.git_credentials.for_remote(url);
    let remote = GitRemote::new(url.clone(), credentials).map_err(|e| e.to_failure(STEP))?;
    let (branch_name, task_id) = (branch.clone(), ctx.task.task_id.clone());
    let found = crate::telemetry::spawn_blocking_in_span(move || {
        git::task_branch_on_remote(&remote, &branch_name, &task_id)
    })
    .await;
    match found {
        Ok(Ok(BranchOnRemote::ThisTask { commit: tip })) if &tip == commit => {}
        Ok(Ok(state)) => {
            return unproven(
                FailureKind::Push,
                format!("the task pod reported commit {commit} on {branch}; the remote shows {state:?}"),
            );
        }
        Ok(Err(error)) => return Err(error.to_failure(STEP)),
        Err(join) => return unproven(FailureKind::Push, format!("the remote check panicked: {join}")),
    }
    for required in [ArtifactKind::Log, ArtifactKind::Summary] {
        if !outcome.artifacts.iter().any(|a| a.kind == required) {
            return unproven(
                FailureKind::ArtifactUpload,
                format!("the task pod reported no {} artifact", required.as_str()),
            );
        }
    }
    for artifact in &outcome.artifacts {
        let key = ArtifactKey {
            spec_name: ctx.task.spec_name.clone(),
            task_id: ctx.task.task_id.clone(),
            kind: artifact.kind,
        };
        match ctx.runner.services.artifact_store.find(&key).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return unproven(
                    FailureKind::ArtifactUpload,
                    format!(
                        "artifact {} reported at {} is not in the store",
                        artifact.kind.as_str(),
                        artifact.uri
                    ),
                );
            }
            Err(error) => {
                return unproven(
                    FailureKind::ArtifactUpload,
                    format!("cannot read the artifact store: {error}"),
                );
            }
        }
    }
    ctx.log
        .record(STEP, &format!("verified: {branch} carries this task's commit {commit}; artifacts stored"));
    Ok(())
}

/// What the pod did, in the worker's run result (its summary is the pod's own artifact).
pub fn adopt_outcome(result: &mut super::RunResult, outcome: &PodOutcome) {
    result.branch.clone_from(&outcome.branch);
    result.commit.clone_from(&outcome.commit);
    result.pushed = outcome.pushed;
    result.resumed = outcome.resumed;
    result.artifacts.clone_from(&outcome.artifacts);
    if let Some(metrics) = outcome.metrics {
        result.metrics = metrics;
    }
}

fn infrastructure(message: String, transient: bool) -> TaskFailure {
    TaskFailure { transient, ..TaskFailure::new(FailureKind::Infrastructure, STEP, message) }
}
