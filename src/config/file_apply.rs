//! The file layer's values laid over the defaults: each raw field checked by the
//! shared rules in `values`, errors naming the file and the dotted key.

use super::file::{
    RawAmqp, RawConfig, RawGit, RawLimits, RawLlm, RawPlaybook, RawPool, RawReliability, RawSandbox,
};
use std::time::Duration;

use super::layer::Layered;
use super::remotes;
use super::values::{self as v, AmqpUrl, ArtifactStoreLocation, ExecutionMode, LogLevel};
use super::{
    ConfigError, ConfigSource, MAX_CONCURRENCY, MAX_CPU_PERCENT, MAX_MAX_FILE_BYTES, MAX_OUTPUT_CAP_BYTES,
    MAX_PROCESSES_LIMIT, MIN_MAX_FILE_BYTES,
};

/// Lays the file's values over `layered`, checking each.
pub(crate) fn apply(mut raw: RawConfig, src: &ConfigSource, l: &mut Layered) -> Result<(), ConfigError> {
    super::deployment::apply(&mut raw, src, l)?;
    l.set(
        src,
        "execution_mode",
        raw.execution_mode,
        |s| ExecutionMode::parse(&s),
        |c| &mut c.execution_mode,
    )?;
    l.set(
        src,
        "task_registry_url",
        raw.task_registry_url,
        |s| v::http_url(&s).map(Some),
        |c| &mut c.services.task_registry_url,
    )?;
    l.set(
        src,
        "repo_pool_url",
        raw.repo_pool_url,
        |s| v::http_url(&s).map(Some),
        |c| &mut c.services.repo_pool_url,
    )?;
    l.set(
        src,
        "artifact_store_url",
        raw.artifact_store_url,
        |s| ArtifactStoreLocation::parse(&s),
        |c| &mut c.services.artifact_store,
    )?;
    l.set(src, "default_timeout_seconds", raw.default_timeout_seconds, v::seconds, |c| {
        &mut c.default_timeout
    })?;
    l.set(src, "git_retry_count", raw.git_retry_count, v::retries, |c| &mut c.retry.git)?;
    l.set(src, "network_retry_count", raw.network_retry_count, v::retries, |c| &mut c.retry.network)?;
    l.set(src, "llm_retry_count", raw.llm_retry_count, v::retries, |c| &mut c.retry.llm)?;
    l.set(
        src,
        "max_memory_mb",
        raw.max_memory_mb,
        |n| v::in_range(n, 1, u64::MAX).map(Some),
        |c| &mut c.limits.max_memory_mb,
    )?;
    l.set(
        src,
        "max_cpu_percent",
        raw.max_cpu_percent,
        |n| v::in_range(n, 1, MAX_CPU_PERCENT).map(Some),
        |c| &mut c.limits.max_cpu_percent,
    )?;
    l.set(src, "log_level", raw.log_level, |s| LogLevel::parse(&s), |c| &mut c.logging.level)?;
    l.set(src, "structured_logging", raw.structured_logging, Ok, |c| &mut c.logging.structured)?;
    l.set(src, "mask_secrets", raw.mask_secrets, Ok, |c| &mut c.logging.mask_secrets)?;
    l.set(
        src,
        "git_token_env_var",
        raw.git_token_env_var,
        |s| v::env_var_name(&s),
        |c| &mut c.git.token_env_var,
    )?;
    l.set(
        src,
        "llm_api_key_env_var",
        raw.llm_api_key_env_var,
        |s| v::env_var_name(&s),
        |c| &mut c.llm.api_key_env_var,
    )?;
    l.set(src, "runner_id", raw.runner_id, |s| v::runner_id(&s), |c| &mut c.runner_id)?;
    l.set(src, "pool_dir", raw.pool_dir, v::directory, |c| &mut c.pool_dir)?;
    l.set(src, "playbooks_dir", raw.playbooks_dir, v::directory, |c| &mut c.playbooks_dir)?;
    super::ops::apply_file(raw.http, raw.mirror, src, l)?;
    apply_llm(raw.llm.unwrap_or_default(), src, l)?;
    apply_amqp(raw.amqp.unwrap_or_default(), src, l)?;
    apply_git(raw.git.unwrap_or_default(), src, l)?;
    apply_pool(raw.pool.unwrap_or_default(), src, l)?;
    apply_playbook(raw.playbook.unwrap_or_default(), src, l)?;
    apply_limits(raw.limits.unwrap_or_default(), src, l)?;
    apply_sandbox(raw.sandbox.unwrap_or_default(), src, l)?;
    super::engine::apply(raw.engine.unwrap_or_default(), src, l)?;
    apply_reliability(raw.reliability.unwrap_or_default(), src, l)
}

fn apply_limits(raw: RawLimits, src: &ConfigSource, l: &mut Layered) -> Result<(), ConfigError> {
    l.set(
        src,
        "limits.max_processes",
        raw.max_processes,
        |n| v::in_range(n, 1, u64::from(MAX_PROCESSES_LIMIT)).map(Some),
        |c| &mut c.limits.max_processes,
    )?;
    l.set(
        src,
        "limits.max_file_bytes",
        raw.max_file_bytes,
        |n| v::in_range(n, MIN_MAX_FILE_BYTES, MAX_MAX_FILE_BYTES),
        |c| &mut c.limits.max_file_bytes,
    )
}

fn apply_sandbox(raw: RawSandbox, src: &ConfigSource, l: &mut Layered) -> Result<(), ConfigError> {
    l.set(src, "sandbox.uid", raw.uid, v::sandbox_id, |c| &mut c.sandbox.uid)?;
    l.set(src, "sandbox.gid", raw.gid, v::sandbox_id, |c| &mut c.sandbox.gid)?;
    l.set(src, "sandbox.read_only_paths", raw.read_only_paths, v::read_only_paths, |c| {
        &mut c.sandbox.read_only_paths
    })
}

fn apply_llm(raw: RawLlm, src: &ConfigSource, l: &mut Layered) -> Result<(), ConfigError> {
    l.set(src, "llm.model", raw.model, |s| v::text_line(&s), |c| &mut c.llm.model)?;
    l.set(src, "llm.endpoint", raw.endpoint, |s| v::http_url(&s).map(Some), |c| &mut c.llm.endpoint)?;
    l.set(src, "llm.timeout_seconds", raw.timeout_seconds, v::seconds, |c| &mut c.llm.timeout)?;
    l.set(
        src,
        "llm.context_tokens",
        raw.context_tokens,
        |n| v::context_tokens(n).map(Some),
        |c| &mut c.llm.context_tokens,
    )?;
    l.set(src, "llm.temperature", raw.temperature, v::temperature, |c| &mut c.llm.temperature)?;
    l.set(src, "llm.max_tokens", raw.max_tokens, |n| v::max_tokens(n).map(Some), |c| &mut c.llm.max_tokens)
}

fn apply_amqp(raw: RawAmqp, src: &ConfigSource, l: &mut Layered) -> Result<(), ConfigError> {
    l.set(src, "amqp.url", raw.url, |s| AmqpUrl::parse(&s), |c| &mut c.amqp.url)?;
    l.set(src, "amqp.task_exchange", raw.task_exchange, |s| v::amqp_name(&s), |c| &mut c.amqp.task_exchange)?;
    l.set(src, "amqp.work_queue", raw.work_queue, |s| v::amqp_name(&s), |c| &mut c.amqp.work_queue)?;
    l.set(src, "amqp.binding_keys", raw.binding_keys, v::binding_keys, |c| &mut c.amqp.binding_keys)?;
    l.set(
        src,
        "amqp.dead_letter_exchange",
        raw.dead_letter_exchange,
        |s| v::amqp_name(&s),
        |c| &mut c.amqp.dead_letter_exchange,
    )?;
    l.set(
        src,
        "amqp.dead_letter_queue",
        raw.dead_letter_queue,
        |s| v::amqp_name(&s),
        |c| &mut c.amqp.dead_letter_queue,
    )?;
    l.set(
        src,
        "amqp.events_exchange",
        raw.events_exchange,
        |s| v::amqp_name(&s),
        |c| &mut c.amqp.events_exchange,
    )?;
    l.set(
        src,
        "amqp.control_exchange",
        raw.control_exchange,
        |s| v::amqp_name(&s),
        |c| &mut c.amqp.control_exchange,
    )?;
    l.set(
        src,
        "amqp.delivery_limit",
        raw.delivery_limit,
        |n| v::in_range(n, 1, u64::from(u32::MAX)),
        |c| &mut c.amqp.delivery_limit,
    )?;
    l.set(
        src,
        "amqp.concurrency",
        raw.concurrency,
        |n| v::in_range(n, 1, MAX_CONCURRENCY),
        |c| &mut c.amqp.concurrency,
    )?;
    l.set(
        src,
        "amqp.prefetch",
        raw.prefetch,
        |n| v::in_range(n, 1, u64::from(u16::MAX)),
        |c| &mut c.amqp.prefetch,
    )?;
    l.set(src, "amqp.consumer_timeout_seconds", raw.consumer_timeout_seconds, v::seconds, |c| {
        &mut c.amqp.consumer_timeout
    })?;
    l.set(
        src,
        "amqp.idle_timeout_seconds",
        raw.idle_timeout_seconds,
        |s| v::seconds(s).map(Some),
        |c| &mut c.amqp.idle_timeout,
    )
}

fn apply_git(raw: RawGit, src: &ConfigSource, l: &mut Layered) -> Result<(), ConfigError> {
    l.set(src, "git.author_name", raw.author_name, |s| v::text_line(&s), |c| &mut c.git.author_name)?;
    l.set(src, "git.author_email", raw.author_email, |s| v::text_line(&s), |c| &mut c.git.author_email)?;
    l.set(src, "git.remote_name", raw.remote_name, |s| v::text_line(&s), |c| &mut c.git.remote_name)?;
    l.set(src, "git.allowed_remotes", raw.allowed_remotes, remotes::allowed_remotes, |c| {
        &mut c.git.allowed_remotes
    })?;
    l.set(src, "git.token_hosts", raw.token_hosts, remotes::token_hosts, |c| &mut c.git.token_hosts)?;
    l.set(
        src,
        "git.secret_scan_allow",
        raw.secret_scan_allow,
        |patterns| crate::secrets::AllowPatterns::new(&patterns),
        |c| &mut c.git.secret_scan_allow,
    )
}

fn apply_pool(raw: RawPool, src: &ConfigSource, l: &mut Layered) -> Result<(), ConfigError> {
    l.set(
        src,
        "pool.slot_roots",
        raw.slot_roots,
        |roots| remotes::slot_roots(roots).map(Some),
        |c| &mut c.pool.slot_roots,
    )
}

fn apply_playbook(raw: RawPlaybook, src: &ConfigSource, l: &mut Layered) -> Result<(), ConfigError> {
    l.set(src, "playbook.default_step_timeout_seconds", raw.default_step_timeout_seconds, v::seconds, |c| {
        &mut c.playbook.default_step_timeout
    })?;
    l.set(
        src,
        "playbook.output_cap_bytes",
        raw.output_cap_bytes,
        |n| v::in_range(n, 1, MAX_OUTPUT_CAP_BYTES),
        |c| &mut c.playbook.output_cap_bytes,
    )?;
    l.set(src, "playbook.allow_inline", raw.allow_inline, Ok, |c| &mut c.playbook.allow_inline)?;
    l.set(
        src,
        "playbook.repair_rounds",
        raw.repair_rounds,
        |n| v::in_range(n, 0, MAX_REPAIR_ROUNDS),
        |c| &mut c.playbook.repair_rounds,
    )?;
    l.set(src, "playbook.variables", raw.variables, v::condition_variables, |c| &mut c.playbook.variables)
}

/// Each repair round is a full model call and test run; past ten, a task is not
/// converging and the budget is better spent elsewhere.
const MAX_REPAIR_ROUNDS: u64 = 10;

fn apply_reliability(raw: RawReliability, src: &ConfigSource, l: &mut Layered) -> Result<(), ConfigError> {
    l.set(
        src,
        "reliability.max_attempts",
        raw.max_attempts,
        |n| v::in_range(n, 1, MAX_ATTEMPTS),
        |c| &mut c.reliability.max_attempts,
    )?;
    l.set(src, "reliability.retry_delays_seconds", raw.retry_delays_seconds, retry_delays, |c| {
        &mut c.reliability.retry_delays
    })?;
    l.set(
        src,
        "reliability.shutdown_grace_seconds",
        raw.shutdown_grace_seconds,
        |n| v::in_range(n, 0, MAX_SHUTDOWN_GRACE_SECONDS).map(Duration::from_secs),
        |c| &mut c.reliability.shutdown_grace,
    )?;
    l.set(
        src,
        "reliability.reconnect_max_delay_seconds",
        raw.reconnect_max_delay_seconds,
        |n| v::in_range(n, 1, MAX_RECONNECT_DELAY_SECONDS).map(Duration::from_secs),
        |c| &mut c.reliability.reconnect_max_delay,
    )
}

/// Each attempt may call the model again; past twenty, a task is failing for a reason
/// retrying will not fix, and an operator should look at it.
const MAX_ATTEMPTS: u64 = 20;
/// Each delay is a queue on the broker; a handful covers any sensible backoff curve.
const MAX_RETRY_DELAYS: usize = 10;
/// A retry parked longer than a day is better replayed by an operator from the DLQ.
const MAX_RETRY_DELAY_SECONDS: u64 = 24 * 3600;
/// A draining worker lets its running task finish, and the worker accepts task timeouts
/// up to the broker's consumer timeout (itself at most `MAX_TIMEOUT_SECONDS`): the grace
/// must be able to outlast the longest of them plus an hour of push and upload.
/// Kubernetes' terminationGracePeriodSeconds must cover it (deploy/kubernetes/).
const MAX_SHUTDOWN_GRACE_SECONDS: u64 = v::MAX_TIMEOUT_SECONDS + 3600;
/// Beyond five minutes between attempts, a recovered broker sits idle too long.
const MAX_RECONNECT_DELAY_SECONDS: u64 = 300;

/// Retry delays: one to ten, each between one second and a day, strictly growing (each
/// one is a queue named after its length, and backoff that shrinks is a tight loop).
fn retry_delays(delays: Vec<u64>) -> Result<Vec<Duration>, String> {
    if delays.is_empty() || delays.len() > MAX_RETRY_DELAYS {
        return Err(format!("must list 1 to {MAX_RETRY_DELAYS} delays, not {}", delays.len()));
    }
    let mut checked: Vec<Duration> = Vec::with_capacity(delays.len());
    for seconds in delays {
        let delay = v::in_range::<u64>(seconds, 1, MAX_RETRY_DELAY_SECONDS).map(Duration::from_secs)?;
        if checked.last().is_some_and(|previous| *previous >= delay) {
            return Err(format!("{seconds} does not grow from the delay before it"));
        }
        checked.push(delay);
    }
    Ok(checked)
}
