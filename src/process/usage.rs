//! What a command's own processes used: CPU time (user and system) and peak memory.
//!
//! CPU time is the kernel's account: when a process is reaped, its usage is added to its
//! parent's "children" account, so the shell a command runs in, once it has exited,
//! carries the CPU of itself and of every process it waited for (`getrusage`'s
//! `RUSAGE_BOTH` of the zombie). [`ExitWatch`] waits for the shell's exit on a pidfd and
//! reads that account with `waitid(WNOWAIT)`, before tokio reaps the shell: the figures
//! are this command's alone, never the worker's nor another task's (the worker-wide
//! `RUSAGE_CHILDREN` would mix concurrent tasks). Processes the command left running in
//! the background are killed with its group and not waited for by it, so their CPU is not
//! in the figures.
//!
//! Peak memory is the watchdog's: the resident memory of the command's processes
//! together, sampled while it runs (`watchdog::METER_INTERVAL`). The kernel's `ru_maxrss`
//! would be exact for one process, but a command's first process starts as a forked copy
//! of the worker, and the copy's resident set counts: every figure would be at least the
//! worker's own memory.
//!
//! A docker-mode command's figures come from its container's cgroup (see
//! `isolation::DOCKER_USAGE_SCRIPT`): the CLI's own say nothing of the step.

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use serde::Serialize;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// CPU time and peak memory of one command (or, added up, of several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ResourceUsage {
    /// User-mode CPU time, in microseconds.
    pub cpu_user_us: u64,
    /// Kernel-mode CPU time, in microseconds.
    pub cpu_system_us: u64,
    /// The peak resident memory of the processes together, in bytes, as sampled; for a
    /// container, the peak of its memory cgroup.
    pub peak_memory_bytes: u64,
}

impl ResourceUsage {
    /// User plus system CPU time, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        Duration::from_micros(self.cpu_user_us.saturating_add(self.cpu_system_us)).as_secs_f64()
    }

    /// Two commands' usage as one: CPU times add up, the memory peak is the larger one
    /// (the commands ran one after the other, never at once).
    pub fn combined(self, other: ResourceUsage) -> ResourceUsage {
        ResourceUsage {
            cpu_user_us: self.cpu_user_us.saturating_add(other.cpu_user_us),
            cpu_system_us: self.cpu_system_us.saturating_add(other.cpu_system_us),
            peak_memory_bytes: self.peak_memory_bytes.max(other.peak_memory_bytes),
        }
    }
}

/// A pidfd on a child, to learn of its exit without reaping it.
pub(crate) struct ExitWatch {
    pid: libc::pid_t,
    pidfd: AsyncFd<OwnedFd>,
}

impl ExitWatch {
    /// Opens a pidfd on `pid`, a child of this process not yet reaped. `None` where the
    /// kernel has no pidfds (before 5.3): the command then runs unmeasured.
    pub(crate) fn open(pid: libc::pid_t) -> Option<ExitWatch> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: `fd` was just returned by the kernel and is owned by nothing else.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: `owned` is a valid open descriptor, and the AsyncFd owns it for its whole
        // life: it cannot be closed or replaced underneath the registration.
        let pidfd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }.ok()?;
        Some(ExitWatch { pid, pidfd })
    }

    /// Resolves once the child has exited (a pidfd turns readable then).
    pub(crate) async fn exited(&self) {
        // An error here (the reactor gone) only means no figures: the caller reaps anyway.
        let _ = self.pidfd.readable().await;
    }

    /// The exited, unreaped child's usage and that of everything it reaped. `None` when
    /// it has not exited or was reaped already.
    pub(crate) fn usage(&self) -> Option<ResourceUsage> {
        // SAFETY: zeroed siginfo_t and rusage are valid values of these plain C structs.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: the kernel writes into the two structs passed by pointer, both live for
        // the call. WNOWAIT leaves the child a zombie for tokio to reap; WNOHANG makes an
        // unexpected "still running" return at once instead of blocking the thread. The
        // raw syscall is used because libc's `waitid` has no rusage argument.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_waitid,
                libc::P_PID,
                self.pid,
                &mut info as *mut libc::siginfo_t,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
                &mut usage as *mut libc::rusage,
            )
        };
        // SAFETY: si_pid is set by the kernel for the WEXITED case, and left 0 otherwise.
        if rc != 0 || unsafe { info.si_pid() } == 0 {
            return None;
        }
        Some(from_rusage(&usage))
    }
}

/// The figures a step container left in `dir` (see `isolation::DOCKER_USAGE_SCRIPT`):
/// cgroup v2's `cpu.stat` and `memory.peak`, or v1's `cpuacct.usage` (nanoseconds),
/// `cpuacct.stat` (user and system in clock ticks) and `memory.max_usage_in_bytes`.
/// `None` when the container wrote nothing (it was killed, or its image has no `sh`
/// that got that far).
pub(crate) fn read_container_usage(dir: &std::path::Path) -> Option<ResourceUsage> {
    let path = dir.join(super::isolation::CONTAINER_USAGE_FILE);
    // A few hundred bytes are written; more is not the script's doing and is not read.
    let text = crate::workspace_files::read_capped(&path, 64 * 1024).ok()?;
    parse_container_usage(&String::from_utf8_lossy(&text))
}

/// Clock ticks per second of cgroup v1's `cpuacct.stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: u64 = 100;

fn parse_container_usage(text: &str) -> Option<ResourceUsage> {
    let mut usage = ResourceUsage::default();
    let mut seen = false;
    let (mut v1_total_ns, mut v1_user_ticks, mut v1_system_ticks) = (None, 0u64, 0u64);
    let mut file = "";
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            file = name.rsplit('/').next().unwrap_or_default();
            continue;
        }
        let mut words = line.split_whitespace();
        let (first, second) = (words.next(), words.next());
        let number = |word: Option<&str>| word.and_then(|w| w.parse::<u64>().ok());
        match (file, first) {
            ("cpu.stat", Some("user_usec")) => usage.cpu_user_us = number(second)?,
            ("cpu.stat", Some("system_usec")) => usage.cpu_system_us = number(second)?,
            ("memory.peak" | "memory.max_usage_in_bytes", _) => usage.peak_memory_bytes = number(first)?,
            ("cpuacct.usage", _) => v1_total_ns = number(first),
            ("cpuacct.stat", Some("user")) => v1_user_ticks = number(second)?,
            ("cpuacct.stat", Some("system")) => v1_system_ticks = number(second)?,
            _ => continue,
        }
        seen = true;
    }
    if usage.cpu_user_us == 0 && usage.cpu_system_us == 0 {
        // v1: the exact total, split as the coarse tick counts are.
        let ticks = v1_user_ticks.saturating_add(v1_system_ticks);
        let total_us = v1_total_ns.map_or(ticks.saturating_mul(1_000_000 / USER_HZ), |ns| ns / 1000);
        let system = (u128::from(total_us) * u128::from(v1_system_ticks)).checked_div(u128::from(ticks));
        usage.cpu_system_us = system.and_then(|us| u64::try_from(us).ok()).unwrap_or(0);
        usage.cpu_user_us = total_us.saturating_sub(usage.cpu_system_us);
    }
    seen.then_some(usage)
}

fn micros(time: libc::timeval) -> u64 {
    let seconds = u64::try_from(time.tv_sec).unwrap_or(0);
    let micros = u64::try_from(time.tv_usec).unwrap_or(0);
    seconds.saturating_mul(1_000_000).saturating_add(micros)
}

fn from_rusage(usage: &libc::rusage) -> ResourceUsage {
    ResourceUsage {
        cpu_user_us: micros(usage.ru_utime),
        cpu_system_us: micros(usage.ru_stime),
        // Linux reports ru_maxrss in kibibytes.
        peak_memory_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0).saturating_mul(1024),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_add_their_cpu_and_keep_the_larger_peak() {
        let a = ResourceUsage { cpu_user_us: 1_500_000, cpu_system_us: 250_000, peak_memory_bytes: 10 };
        let b = ResourceUsage { cpu_user_us: 500_000, cpu_system_us: 750_000, peak_memory_bytes: 30 };
        let both = a.combined(b);
        assert_eq!(
            both,
            ResourceUsage { cpu_user_us: 2_000_000, cpu_system_us: 1_000_000, peak_memory_bytes: 30 }
        );
        assert_eq!(both.cpu_seconds(), 3.0);
    }

    #[test]
    fn cgroup_v2_figures_are_read_as_they_are() {
        let text = "== /sys/fs/cgroup/cpu.stat\nusage_usec 1500000\nuser_usec 1200000\nsystem_usec 300000\n\
                    nr_periods 0\n== /sys/fs/cgroup/memory.peak\n209715200\n";
        let expected =
            ResourceUsage { cpu_user_us: 1_200_000, cpu_system_us: 300_000, peak_memory_bytes: 209_715_200 };
        assert_eq!(parse_container_usage(text), Some(expected));
    }

    #[test]
    fn cgroup_v1_total_is_split_as_its_ticks_are() {
        let text = "== /sys/fs/cgroup/cpuacct/cpuacct.stat\nuser 75\nsystem 25\n\
                    == /sys/fs/cgroup/cpuacct/cpuacct.usage\n1000000000\n\
                    == /sys/fs/cgroup/memory/memory.max_usage_in_bytes\n212897792\n";
        let expected =
            ResourceUsage { cpu_user_us: 750_000, cpu_system_us: 250_000, peak_memory_bytes: 212_897_792 };
        assert_eq!(parse_container_usage(text), Some(expected));
    }

    #[test]
    fn nothing_written_is_no_figures() {
        assert_eq!(parse_container_usage(""), None);
        assert_eq!(parse_container_usage("== /sys/fs/cgroup/cpu.stat\n"), None);
    }
}
