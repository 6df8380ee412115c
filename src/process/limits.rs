//! Resource limits for one command and what happens in the child before `exec`.
//!
//! Two layers, because neither is enough alone without cgroups:
//! - kernel rlimits set in the child (`RLIMIT_DATA` per process, `RLIMIT_CPU` per process,
//!   no core dumps): immediate, but per process, so forty processes may use forty times
//!   the memory;
//! - the [`super::watchdog`], which sums memory, CPU time and the process count over the
//!   whole process group and tree and kills it when a limit is crossed.
//!
//! `RLIMIT_NPROC` is deliberately not used: it counts every process of the user (the
//! worker's own threads and every other task's processes included), so no per-command
//! value is right, and root ignores it altogether. The watchdog counts instead.

use std::fmt;
use std::io;

/// Extra CPU seconds the per-process `RLIMIT_CPU` allows beyond the budget: the watchdog,
/// which sees the whole group, should be the one to stop a command (with a clear reason);
/// the rlimit is the backstop when sampling lags.
const CPU_RLIMIT_SLACK_SECONDS: u64 = 2;

/// What one command may use; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessLimits {
    /// Resident memory of the whole group (watchdog) and data segment per process (rlimit), MiB.
    pub max_memory_mb: Option<u64>,
    /// CPU time of the whole group (watchdog) and per process (rlimit), seconds.
    pub cpu_seconds: Option<u64>,
    /// Processes alive in the group at once (watchdog).
    pub max_processes: Option<u32>,
}

impl ProcessLimits {
    /// Whether any limit is set (otherwise there is nothing to watch).
    pub fn any(&self) -> bool {
        self.max_memory_mb.is_some() || self.cpu_seconds.is_some() || self.max_processes.is_some()
    }

    /// The tighter of two limit sets, limit by limit: a playbook step may lower what the
    /// operator configured, never raise it.
    pub fn tightened_by(self, other: ProcessLimits) -> ProcessLimits {
        fn min<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        ProcessLimits {
            max_memory_mb: min(self.max_memory_mb, other.max_memory_mb),
            cpu_seconds: min(self.cpu_seconds, other.cpu_seconds),
            max_processes: min(self.max_processes, other.max_processes),
        }
    }

    /// The CPU-time budget of a step: `max_cpu_percent` of one core over its timeout
    /// (200 % for 60 s is 120 CPU-seconds), rounded up. Without cgroups a rate cannot be
    /// throttled, so the rate becomes a budget.
    pub fn cpu_budget_seconds(timeout_seconds: u64, max_cpu_percent: u32) -> u64 {
        (timeout_seconds.saturating_mul(u64::from(max_cpu_percent))).div_ceil(100).max(1)
    }
}

/// Which limit a command crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    Memory,
    CpuTime,
    Processes,
}

impl LimitKind {
    /// The name used in events and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Memory => "memory",
            LimitKind::CpuTime => "cpu_time",
            LimitKind::Processes => "processes",
        }
    }
}

/// A limit the watchdog saw crossed; the command's group was killed for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LimitBreach {
    pub kind: LimitKind,
    /// The limit, in MiB, seconds or processes.
    pub limit: u64,
    /// What was measured when it was crossed, same unit (for processes: at least this
    /// many; counting stops once the limit is passed).
    pub observed: u64,
}

impl fmt::Display for LimitBreach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (limit, observed) = (self.limit, self.observed);
        match self.kind {
            LimitKind::Memory => write!(f, "memory limit of {limit} MiB exceeded ({observed} MiB resident)"),
            LimitKind::CpuTime => write!(f, "CPU-time budget of {limit} s exceeded ({observed} s used)"),
            LimitKind::Processes => {
                write!(f, "process limit of {limit} exceeded (at least {observed} processes)")
            }
        }
    }
}

/// The rlimits to set in the child, computed before `fork` so the child only makes syscalls.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RlimitPlan {
    data_bytes: Option<libc::rlim_t>,
    cpu_seconds: Option<libc::rlim_t>,
}

impl RlimitPlan {
    pub(crate) fn new(limits: &ProcessLimits) -> Self {
        RlimitPlan {
            data_bytes: limits.max_memory_mb.map(|mb| mb.saturating_mul(1024 * 1024) as libc::rlim_t),
            cpu_seconds: limits
                .cpu_seconds
                .map(|s| s.saturating_add(CPU_RLIMIT_SLACK_SECONDS) as libc::rlim_t),
        }
    }

    /// Runs in the forked child before `exec`: only async-signal-safe syscalls, no allocation.
    pub(crate) fn apply(&self) -> io::Result<()> {
        set_rlimit(libc::RLIMIT_CORE, 0, 0)?;
        if let Some(bytes) = self.data_bytes {
            set_rlimit(libc::RLIMIT_DATA, bytes, bytes)?;
        }
        if let Some(seconds) = self.cpu_seconds {
            // SIGXCPU at the soft limit, SIGKILL one second later for a process that catches it.
            set_rlimit(libc::RLIMIT_CPU, seconds, seconds.saturating_add(1))?;
        }
        Ok(())
    }
}

fn set_rlimit(resource: libc::__rlimit_resource_t, soft: libc::rlim_t, hard: libc::rlim_t) -> io::Result<()> {
    let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: setrlimit reads one plain struct we own; it is async-signal-safe.
    if unsafe { libc::setrlimit(resource, &limit) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Runs in the forked child before `exec`: the child and everything it starts can never
/// gain privileges (setuid binaries, file capabilities), and a root worker's child also
/// loses every capability, so root-owned-but-protected things (another process's
/// `/proc/<pid>/environ` when it is not dumpable, raw sockets, mounts) stay out of reach.
pub(crate) fn drop_privileges() -> io::Result<()> {
    forbid_new_privileges()?;
    // SAFETY: geteuid has no failure mode and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    drop_root_capabilities()
}

/// Runs in the forked child before `exec`: no `exec` from here on can gain privileges.
pub(crate) fn forbid_new_privileges() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only; async-signal-safe.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the worker process non-dumpable, once, before its first child starts: its
/// `/proc/<pid>/environ`, `mem` and `fd` then need `CAP_SYS_PTRACE`, which a child of a
/// non-root worker never has and a child of a root worker has dropped. Also stops core
/// dumps of the worker, which would hold the secrets in plain text.
pub(crate) fn make_worker_undumpable() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            tracing::warn!(error = %io::Error::last_os_error(), "cannot make the worker non-dumpable");
        }
    });
}

/// `SECBIT_NOROOT` and friends: uid 0 no longer implies capabilities across `exec`.
const ROOT_SECUREBITS: libc::c_ulong = 0x01 | 0x02 | 0x04 | 0x08 | 0x10 | 0x20;
/// Highest capability number any kernel we run on defines; unknown numbers fail harmlessly.
const LAST_CAPABILITY: libc::c_ulong = 63;
/// `_LINUX_CAPABILITY_VERSION_3`: the 64-bit capability sets.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn drop_root_capabilities() -> io::Result<()> {
    // SAFETY: prctl/syscall with integers and a pointer to locals we own; all async-signal-safe.
    unsafe {
        if libc::prctl(libc::PR_SET_SECUREBITS, ROOT_SECUREBITS, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        for cap in 0..=LAST_CAPABILITY {
            // EINVAL past the kernel's last capability is expected and ignored.
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        let header = [CAPABILITY_VERSION_3, 0u32];
        let data = [0u32; 6];
        if libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_can_lower_but_not_raise_the_configured_limits() {
        let configured =
            ProcessLimits { max_memory_mb: Some(512), cpu_seconds: None, max_processes: Some(64) };
        let step = ProcessLimits { max_memory_mb: Some(4096), cpu_seconds: Some(30), max_processes: Some(8) };
        assert_eq!(
            configured.tightened_by(step),
            ProcessLimits { max_memory_mb: Some(512), cpu_seconds: Some(30), max_processes: Some(8) }
        );
        assert_eq!(ProcessLimits::default().tightened_by(ProcessLimits::default()), ProcessLimits::default());
    }

    #[test]
    fn cpu_percent_over_the_timeout_is_the_budget() {
        assert_eq!(ProcessLimits::cpu_budget_seconds(60, 200), 120);
        assert_eq!(ProcessLimits::cpu_budget_seconds(10, 15), 2);
        assert_eq!(ProcessLimits::cpu_budget_seconds(1, 1), 1);
    }

    #[test]
    fn breaches_read_as_sentences() {
        let breach = LimitBreach { kind: LimitKind::Processes, limit: 32, observed: 97 };
        assert_eq!(breach.to_string(), "process limit of 32 exceeded (at least 97 processes)");
        let breach = LimitBreach { kind: LimitKind::Memory, limit: 256, observed: 300 };
        assert_eq!(breach.to_string(), "memory limit of 256 MiB exceeded (300 MiB resident)");
    }
}
