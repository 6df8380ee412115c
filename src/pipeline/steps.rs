//! The pipeline's steps, in order. Each step is a function returning an outcome; the
//! state they build up (slot, workspace, implementation, test report, commit) is kept in
//! [`RunState`] so that a failure at any point still knows what to report and upload.

use std::path::{Path, PathBuf};

use super::RunContext;
use super::test_step::{StepTests, repair_feedback, run_tests};
use crate::error::{Classify, FailureKind, TaskFailure};
use crate::git::{self, CommitInfo, CommitRequest, GitRemote, PreparedWorkspace, SlotLease};
use crate::llm::{self, AgentSession, EngineContext, ImplementRequest, ImplementationResult};
use crate::playbook::{self, PlaybookReport, PlaybookSpec};
use crate::task::PlaybookRequest;

/// What the steps have produced so far.
#[derive(Default)]
pub struct RunState {
    /// Held for the whole run (artifact upload reads the workspace); dropping it
    /// releases the slot.
    pub slot: Option<SlotLease>,
    /// A Repo Pool slot, released by `Runner::run` after the run (or on drop).
    pub pool_slot: Option<crate::clients::PooledSlot>,
    pub remote: Option<GitRemote>,
    pub workspace: Option<PreparedWorkspace>,
    /// The engine's totals over the rounds run so far.
    pub implementation: Option<ImplementationResult>,
    /// The engine's per-task state; its transcript is uploaded even when a round fails.
    pub engine: Option<AgentSession>,
    pub test_report: Option<PlaybookReport>,
    pub playbook_source: Option<String>,
    pub commit: Option<CommitInfo>,
    pub pushed: bool,
    /// An earlier attempt had already pushed this task's commit (see `resume`).
    pub resumed: bool,
}

impl RunState {
    /// The workspace directory, once a slot is held.
    pub fn workspace_path(&self) -> Option<PathBuf> {
        self.slot.as_ref().map(|s| s.path.clone())
    }
}

/// Runs every step in order, stopping at the first failure.
pub async fn run_steps(ctx: &RunContext<'_>, state: &mut RunState) -> Result<(), TaskFailure> {
    let (slot, remote, pool_slot) = ctx.step("slot", acquire_slot(ctx)).await?;
    let path = slot.path.clone();
    state.slot = Some(slot);
    state.pool_slot = pool_slot;
    state.remote = Some(remote.clone());

    let workspace = ctx.step("workspace", prepare_workspace(ctx, path.clone(), remote.clone())).await?;
    let branch = workspace.branch.clone();
    let base = workspace.base_commit.clone();
    state.workspace = Some(workspace);
    if let Some(previous) = super::resume::previous_push(ctx, &path, &branch, &base).await? {
        state.commit = Some(previous);
        (state.pushed, state.resumed) = (true, true);
        return Ok(());
    }

    let resolved = resolve_playbook(ctx, &path)?;
    state.playbook_source = Some(resolved.source.clone());
    ctx.log.record("test", &format!("playbook: {}", resolved.source));

    let mut previous_failure = None;
    let rounds = ctx.runner.settings.repair_rounds;
    let session = state.engine.insert(AgentSession::new(&ctx.runner.settings.engine));
    for round in 0..=rounds {
        // The first round sees the clean checkout of the base: its view comes from the commit.
        let clean_at = (round == 0).then_some(base.as_str());
        let work =
            implement(ctx, &path, clean_at, &resolved.playbook, previous_failure.take(), round, session);
        let outcome = ctx.step("implement", work).await;
        state.implementation = session.totals().cloned();
        outcome?;

        let tests = run_tests(ctx, &resolved.playbook, &path);
        let report = ctx.judged_step("test", tests, |report| report.success).await?;
        if ctx.cancel.is_cancelled() {
            // The tests "failed" because their processes were killed: no repair round.
            return Err(TaskFailure::new(FailureKind::Cancelled, "test", "the task was stopped"));
        }
        let passed = report.success;
        let failure_text = repair_feedback(&report);
        state.test_report = Some(report);
        if passed {
            break;
        }
        if round == rounds {
            return Err(TaskFailure::new(
                FailureKind::TestExecution,
                "test",
                format!("tests still failing after {rounds} repair round(s): {failure_text}"),
            ));
        }
        previous_failure = Some(failure_text);
    }

    let commit = ctx.step("commit", commit(ctx, path.clone(), remote.clone())).await?;
    state.commit = Some(commit.clone());
    if let Some(theirs) = ctx.step("push", push(ctx, path, remote, branch, base)).await? {
        state.commit = Some(theirs);
        state.resumed = true;
    }
    state.pushed = true;
    Ok(())
}

async fn blocking<T: Send + 'static>(
    step: &str,
    work: impl FnOnce() -> Result<T, git::GitError> + Send + 'static,
) -> Result<T, TaskFailure> {
    match crate::telemetry::spawn_blocking_in_span(work).await {
        Ok(outcome) => outcome.map_err(|e| e.to_failure(step)),
        Err(join) => Err(TaskFailure::new(
            FailureKind::WorkspacePreparation,
            step,
            format!("git worker panicked: {join}"),
        )),
    }
}

type AcquiredSlot = (SlotLease, GitRemote, Option<crate::clients::PooledSlot>);

async fn acquire_slot(ctx: &RunContext<'_>) -> Result<AcquiredSlot, TaskFailure> {
    let task = ctx.task;
    // Only a remote on a token host gets the token; any other allowed remote is reached
    // anonymously.
    let credentials_for = |url: &str| ctx.runner.services.git_credentials.for_remote(url);
    if let Some(slot) = &task.slot {
        // Checked again at the point of use: this is the path the lease will reset.
        let slot_path = ctx.runner.admitted_slot_path(&slot.slot_path)?;
        let lease = SlotLease::preallocated(slot.slot_id.clone(), slot_path.clone());
        let url = match &task.repo_url {
            Some(url) => url.clone(),
            None => {
                let url = blocking("slot", move || git::origin_url(&slot_path)).await?;
                ctx.runner.admit_slot_origin(&url)?;
                url
            }
        };
        let remote = GitRemote::new(url.clone(), credentials_for(&url)).map_err(|e| e.to_failure("slot"))?;
        return Ok((lease, remote, None));
    }
    let url = task.repo_url.clone().unwrap_or_default();
    let remote = GitRemote::new(url.clone(), credentials_for(&url)).map_err(|e| e.to_failure("slot"))?;
    if let Some(repo_pool) = &ctx.runner.services.repo_pool {
        let required_by = format!("{}/{}/{}", ctx.runner.settings.runner_id, task.spec_name, task.task_id);
        // The allocation runs in a task of its own: if this run is stopped while the
        // pool is answering, the slot it grants is still wrapped in a `PooledSlot`, and
        // dropping that (the receiver is gone) releases it. Awaited inline, the grant
        // would be lost with the dropped future and the slot leaked.
        let (granted, grant) = tokio::sync::oneshot::channel();
        let (client, timeout_seconds, repo_url) = (repo_pool.clone(), task.timeout_seconds, url.clone());
        let allocating = async move {
            let allocated =
                client.allocate(&repo_url, &required_by, timeout_seconds).await.map(|allocation| {
                    let pooled = crate::clients::PooledSlot::new(client.clone(), allocation.slot_id.clone());
                    (allocation, pooled)
                });
            let _ = granted.send(allocated);
        };
        tokio::spawn(tracing::Instrument::in_current_span(allocating));
        let (allocation, pooled) = grant
            .await
            .map_err(|_| {
                TaskFailure::new(FailureKind::WorkspacePreparation, "slot", "the slot allocation was lost")
            })?
            .map_err(|e| e.to_failure("slot"))?;
        ctx.log.record(
            "slot",
            &format!("Repo Pool slot {} at {}", allocation.slot_id, allocation.slot_path.display()),
        );
        let lease = SlotLease::preallocated(allocation.slot_id, allocation.slot_path);
        return Ok((lease, remote, Some(pooled)));
    }
    let pool = ctx.runner.services.slot_pool.clone();
    let for_pool = remote.clone();
    let retries = ctx.runner.settings.git_retry_count;
    let lease = super::git_retry::with_git_retries(
        "slot",
        retries,
        |line| ctx.log.record("slot", line),
        move || pool.acquire(&for_pool),
    )
    .await?;
    ctx.log.record("slot", &format!("slot {} at {}", lease.slot_id, lease.path.display()));
    Ok((lease, remote, None))
}

async fn prepare_workspace(
    ctx: &RunContext<'_>,
    path: PathBuf,
    remote: GitRemote,
) -> Result<PreparedWorkspace, TaskFailure> {
    let branch = git::sanitize_branch_name(&ctx.task.branch_name())
        .map_err(|e| TaskFailure::new(FailureKind::Validation, "workspace", e.to_string()))?;
    let base = ctx.task.base_branch.clone();
    let retries = ctx.runner.settings.git_retry_count;
    let log = |line: &str| ctx.log.record("workspace", line);
    let prepared = super::git_retry::with_git_retries("workspace", retries, log, move || {
        git::prepare_workspace(&path, &remote, &base, &branch)
    })
    .await?;
    ctx.log.record("workspace", &format!("branch {} at {}", prepared.branch, prepared.base_commit));
    Ok(prepared)
}

fn resolve_playbook(
    ctx: &RunContext<'_>,
    workspace: &std::path::Path,
) -> Result<playbook::ResolvedPlaybook, TaskFailure> {
    let spec = match &ctx.task.playbook {
        None => None,
        Some(PlaybookRequest::Named(name)) => Some(PlaybookSpec::Named(name.clone())),
        Some(PlaybookRequest::Inline(_)) if !ctx.runner.settings.allow_inline_playbooks => {
            return Err(TaskFailure::new(
                FailureKind::Validation,
                "test",
                "playbook: inline playbooks are disabled by configuration (playbook.allow_inline)",
            ));
        }
        Some(PlaybookRequest::Inline(value)) => Some(PlaybookSpec::Inline(value.clone())),
    };
    playbook::resolve_playbook(
        spec.as_ref(),
        ctx.task.required_skill.as_deref(),
        &ctx.runner.settings.playbooks_dir,
        workspace,
    )
    .map_err(|e| e.to_failure("test"))
}

async fn implement(
    ctx: &RunContext<'_>,
    workspace: &Path,
    clean_at: Option<&str>,
    playbook: &playbook::Playbook,
    previous_failure: Option<String>,
    round: u32,
    session: &mut AgentSession,
) -> Result<(), TaskFailure> {
    let task = ctx.task;
    let engine = &ctx.runner.settings.engine;
    let client = ctx.runner.services.llm.get().await.map_err(|e| e.to_failure("implement"))?;
    // The view and the failure take their share of the model's window (asked once).
    let limits = client.context_limits().await;
    // Off the runtime thread, like the git work: the task's deadline and cancellation
    // (which drop this future) never wait on the file system.
    let (view_root, budget) = (workspace.to_path_buf(), llm::agent::repo_view_budget(engine.mode, limits));
    let clean_at = clean_at.map(str::to_string);
    let repo_view = crate::telemetry::spawn_blocking_in_span(move || match clean_at {
        Some(commit) => llm::repo_view_at(&view_root, &commit, budget).map_err(|e| e.message().to_string()),
        None => llm::repo_view(&view_root, budget).map_err(|e| e.to_string()),
    })
    .await
    .map_err(|join| join.to_string())
    .and_then(|view| view)
    .map_err(|e| {
        TaskFailure::new(FailureKind::Implementation, "implement", format!("cannot read the workspace: {e}"))
    })?;
    let commands: Vec<&str> = playbook.steps.iter().map(|s| s.command.as_str()).collect();
    let request = ImplementRequest {
        title: task.title.clone(),
        description: task.description.clone(),
        acceptance_criteria: task.acceptance_criteria.clone(),
        dependencies: task.dependencies.clone(),
        test_command_hint: (!commands.is_empty()).then(|| commands.join(" && ")),
        repo_view,
        previous_failure: previous_failure.map(|f| {
            llm::agent::tail_chars(&ctx.runner.services.masker.mask(&f), llm::agent::failure_chars(limits))
        }),
    };
    let tests = StepTests { ctx, playbook, workspace, unavailable: std::sync::Mutex::new(None) };
    let engine_ctx = EngineContext {
        settings: engine,
        max_file_bytes: ctx.runner.settings.max_file_bytes,
        tests: Some(&tests),
        masker: &ctx.runner.services.masker,
    };
    let result = llm::implement_round(&request, workspace, client, &engine_ctx, session).await;
    // The engine's own test run met an engine that could not run the tests: that, not
    // whatever the model made of it, is why the round ended.
    if let Some(unavailable) = tests.take_unavailable() {
        return Err(unavailable);
    }
    let result = result.map_err(|e| e.to_failure("implement"))?;
    ctx.log.record(
        "implement",
        &format!(
            "round {round}: model {} changed {:?} in {} turns ({} tokens, tools {:?}): {}",
            result.llm_model,
            result.files_changed,
            result.turns,
            result.tokens_used,
            result.tool_calls,
            result.explanation
        ),
    );
    Ok(())
}

async fn commit(ctx: &RunContext<'_>, path: PathBuf, remote: GitRemote) -> Result<CommitInfo, TaskFailure> {
    let message = ctx.task.commit_subject();
    let task_id = ctx.task.task_id.clone();
    let runner_id = ctx.runner.settings.runner_id.clone();
    let author = ctx.runner.services.git_author.clone();
    let max_file_bytes = ctx.runner.settings.max_file_bytes;
    let committed = blocking("commit", move || {
        git::commit_all(
            &path,
            &CommitRequest {
                message: &message,
                task_id: &task_id,
                runner_id: Some(&runner_id),
                author: &author,
                remote: Some(&remote),
                max_file_bytes,
            },
        )
    })
    .await?;
    let info = committed.ok_or_else(|| {
        TaskFailure::new(FailureKind::Implementation, "commit", "the implementation left no change to commit")
    })?;
    ctx.log.record("commit", &format!("commit {} ({} files)", info.id, info.files_changed.len()));
    Ok(info)
}

/// Pushes the task branch (never forced). When the remote rejects it because another
/// attempt of this same task pushed first, that attempt's commit is adopted and returned.
async fn push(
    ctx: &RunContext<'_>,
    path: PathBuf,
    remote: GitRemote,
    branch: String,
    base: String,
) -> Result<Option<CommitInfo>, TaskFailure> {
    super::push_guard::check_before_push(ctx, path.clone(), &branch, &base).await?;
    let (push_path, push_remote, push_branch) = (path.clone(), remote.clone(), branch.clone());
    let retries = ctx.runner.settings.git_retry_count;
    let log = |line: &str| ctx.log.record("push", line);
    // A rejection is not retried in place (it is not transient); it comes back here as
    // the error, so the adoption below still sees it.
    let pushed = super::git_retry::retry_git(retries, log, move || {
        git::push_branch(&push_path, &push_remote, &push_branch)
    })
    .await
    .map_err(|join| TaskFailure::new(FailureKind::Push, "push", format!("git worker panicked: {join}")))?;
    match pushed {
        Ok(outcome) => {
            ctx.log.record("push", &format!("pushed {outcome:?}"));
            Ok(None)
        }
        Err(rejected @ git::GitError::PushRejected { .. }) => {
            match super::resume::adopt_after_rejection(ctx, &path, &remote, &branch, &base).await {
                Some(theirs) => Ok(Some(theirs)),
                None => Err(rejected.to_failure("push")),
            }
        }
        Err(other) => Err(other.to_failure("push")),
    }
}
