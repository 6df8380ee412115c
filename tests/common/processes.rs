//! Watching processes from tests: whether a pid is gone, and waiting for a condition.

use std::time::Duration;

/// A pid is gone once it no longer exists or is a zombie nobody reaped yet (in containers
/// PID 1 may not reap re-parented orphans).
pub fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Polls a condition; killing is asynchronous in the kernel, so "gone" may lag a moment.
pub async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition never became true: {what}");
}

/// A step that uses at least one second of CPU and 200 MiB of memory, whatever the load:
/// the shell spins until its own `/proc` CPU counters (user plus system, in 1/100 s
/// ticks) reach 100, then holds 200 MiB of zeros (read into a variable, turned into `x`s)
/// for half a second, long enough for any sampler. POSIX `sh` and coreutils only, so it
/// runs in the minimal test image too.
pub const BURN_CPU_AND_MEMORY: &str = "while read -r s < /proc/$$/stat; set -- $s; \
    [ $(( ${14} + ${15} )) -lt 100 ]; do :; done; \
    held=$(head -c 200M /dev/zero | tr '\\0' x); sleep 0.5; echo burnt ${#held}";

/// What [`BURN_CPU_AND_MEMORY`] uses at least: CPU seconds and bytes.
pub const BURNT_CPU_SECONDS: f64 = 1.0;
pub const BURNT_MEMORY_BYTES: u64 = 200 * 1024 * 1024;
