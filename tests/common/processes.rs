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
