//! Watching one command's processes and stopping them when they use too much.
//!
//! A command's processes are the members of its process group plus every descendant of
//! its leader (a descendant that moved to its own session is still caught while its
//! parent lives; in sandbox mode everything stays under bubblewrap's PID namespace).
//! The watchdog reads `/proc` directly rather than through sysinfo: it needs the process
//! group of every process (sysinfo does not expose it) and must be cheap at a fast pace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::limits::{LimitBreach, LimitKind, ProcessLimits};

/// How often a command with a memory or CPU limit is fully sampled (one /proc walk: a
/// few hundred small reads). Memory and CPU time grow at most as fast as pages can be
/// touched and cores can run, so this pace bounds their overshoot well.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);

/// How often the system-wide task count is glanced at between full samples. A fork bomb
/// makes thousands of processes per 50 ms; one read of `/proc/loadavg` every few
/// milliseconds notices the growth and triggers a full sample at once.
pub const GLANCE_INTERVAL: Duration = Duration::from_millis(5);

/// How many kill passes are made over a command's processes. Each pass kills everything
/// alive; a process forked during a pass is caught by the next one, and a killed process
/// cannot fork, so a fork bomb is gone after a handful of passes.
const KILL_PASSES: usize = 50;

/// Pause between kill passes, so the kernel can deliver the signals and reap.
const KILL_PASS_PAUSE: Duration = Duration::from_millis(10);

/// What one command's processes use right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupUsage {
    pub processes: u64,
    pub resident_bytes: u64,
    /// User and system time of the live processes and of the children they reaped.
    pub cpu_ticks: u64,
}

/// One `/proc/<pid>/stat` line, reduced to what the watchdog needs.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    ppid: i32,
    pgrp: i32,
    cpu_ticks: u64,
    resident_pages: u64,
}

/// How often an unlimited command's memory is sampled for its figures alone (a limited
/// one is sampled at [`SAMPLE_INTERVAL`] anyway). A tenth of a second catches any peak a
/// step holds for longer; the walk costs a few hundred small reads.
pub const METER_INTERVAL: Duration = Duration::from_millis(100);

/// Samples until a limit is crossed and returns the breach; never returns when `limits`
/// sets nothing. `leader` is the command's pid (and process group id). Every sample's
/// resident memory raises `peak_resident` (the command's peak memory figure, which the
/// caller seeds with the shell's size right after spawn).
///
/// A full sample walks all of `/proc` (without `CONFIG_PROC_CHILDREN` nothing smaller
/// finds a command's descendants), so it is taken only at the pace the limits need: one
/// interval after the start, not at once, since an overshoot within one interval is the
/// bound anyway; memory and CPU limits every [`SAMPLE_INTERVAL`]; a process limit alone
/// at the figures' [`METER_INTERVAL`], and at once when the system's task count says the
/// command may have grown past it. A command shorter than that costs no walk at all.
pub async fn watch(
    leader: i32,
    limits: ProcessLimits,
    tasks_before_spawn: Option<u64>,
    peak_resident: &AtomicU64,
) -> LimitBreach {
    let sampled = |usage: &GroupUsage| peak_resident.fetch_max(usage.resident_bytes, Ordering::Relaxed);
    if !limits.any() {
        loop {
            tokio::time::sleep(METER_INTERVAL).await;
            let usage = crate::telemetry::spawn_blocking_in_span(move || sample(leader, None))
                .await
                .unwrap_or_default();
            sampled(&usage);
        }
    }
    let full_pace = if limits.max_memory_mb.is_some() || limits.cpu_seconds.is_some() {
        SAMPLE_INTERVAL
    } else {
        METER_INTERVAL
    };
    // Tasks on the system that are not this command's, as of the last full sample.
    let mut others = tasks_before_spawn.unwrap_or(0);
    let mut last_full = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval(GLANCE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let total = system_task_count();
        let grew_past_limit = limits
            .max_processes
            .zip(total)
            .is_some_and(|(max, total)| total.saturating_sub(others) > u64::from(max));
        if !grew_past_limit && last_full.elapsed() < full_pace {
            continue;
        }
        last_full = tokio::time::Instant::now();
        let stop_at = limits.max_processes.map(u64::from);
        let usage = crate::telemetry::spawn_blocking_in_span(move || sample(leader, stop_at))
            .await
            .unwrap_or_default();
        sampled(&usage);
        if let Some(breach) = check(&limits, &usage) {
            return breach;
        }
        others = total.unwrap_or(0).saturating_sub(usage.processes);
    }
}

/// Threads on the whole system (`/proc/loadavg`'s fourth field, `running/total`): one
/// small read, so it can be polled fast. Only its growth matters.
pub fn system_task_count() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok()
}

/// The first limit `usage` crosses, if any. Process count first: a fork bomb also eats
/// memory, and "too many processes" is the truer reason.
pub fn check(limits: &ProcessLimits, usage: &GroupUsage) -> Option<LimitBreach> {
    if let Some(max) = limits.max_processes
        && usage.processes > u64::from(max)
    {
        return Some(LimitBreach {
            kind: LimitKind::Processes,
            limit: max.into(),
            observed: usage.processes,
        });
    }
    if let Some(max_mb) = limits.max_memory_mb {
        let observed = usage.resident_bytes / (1024 * 1024);
        if observed > max_mb {
            return Some(LimitBreach { kind: LimitKind::Memory, limit: max_mb, observed });
        }
    }
    if let Some(budget) = limits.cpu_seconds {
        let observed = usage.cpu_ticks / clock_ticks_per_second();
        if observed >= budget {
            return Some(LimitBreach { kind: LimitKind::CpuTime, limit: budget, observed });
        }
    }
    None
}

/// Current usage of `leader`'s group and tree. With `stop_at`, the walk ends early once
/// more than that many processes of the group are seen: a fork bomb grows while /proc is
/// read, and the count so far is already the verdict.
pub fn sample(leader: i32, stop_at: Option<u64>) -> GroupUsage {
    let table = process_table(leader, stop_at);
    if let Some(max) = stop_at {
        let in_group = table.values().filter(|s| s.pgrp == leader).count() as u64;
        if in_group > max {
            return GroupUsage { processes: in_group, ..GroupUsage::default() };
        }
    }
    let page = page_size();
    let mut usage = GroupUsage::default();
    for stat in members(&table, leader).iter().filter_map(|pid| table.get(pid)) {
        usage.processes += 1;
        usage.resident_bytes += stat.resident_pages * page;
        usage.cpu_ticks += stat.cpu_ticks;
    }
    usage
}

/// SIGKILLs the group and every descendant of `leader`, pass after pass, until none is
/// left. Pids come from a fresh scan right before each kill, which keeps the window for
/// hitting a recycled pid to microseconds.
pub async fn kill_all(leader: i32) {
    for _ in 0..KILL_PASSES {
        // SAFETY: killpg takes integers; ESRCH for an empty group is fine.
        unsafe {
            libc::killpg(leader, libc::SIGKILL);
        }
        let alive = crate::telemetry::spawn_blocking_in_span(move || {
            let table = process_table(leader, None);
            let members = members(&table, leader);
            // Only the leader may linger as a zombie until our `wait`; it is not a threat.
            let others: Vec<i32> = members.into_iter().filter(|pid| *pid != leader).collect();
            for pid in &others {
                // SAFETY: kill takes integers.
                unsafe {
                    libc::kill(*pid, libc::SIGKILL);
                }
            }
            others.len()
        })
        .await
        .unwrap_or(0);
        if alive == 0 {
            return;
        }
        tokio::time::sleep(KILL_PASS_PAUSE).await;
    }
    tracing::warn!(leader, "processes survived every kill pass");
}

/// Members of `leader`'s command: its process group, plus descendants of the leader.
fn members(table: &HashMap<i32, ProcStat>, leader: i32) -> Vec<i32> {
    let mut verdict: HashMap<i32, bool> = HashMap::with_capacity(table.len());
    table.keys().copied().filter(|pid| is_member(table, *pid, leader, &mut verdict)).collect()
}

fn is_member(table: &HashMap<i32, ProcStat>, pid: i32, leader: i32, memo: &mut HashMap<i32, bool>) -> bool {
    let mut chain = Vec::new();
    let mut cursor = pid;
    let answer = loop {
        if let Some(known) = memo.get(&cursor) {
            break *known;
        }
        let Some(stat) = table.get(&cursor) else { break false };
        if cursor == leader || stat.pgrp == leader {
            break true;
        }
        chain.push(cursor);
        // pid 0/1 end the chain; the length bound guards against a cycle during pid reuse.
        if stat.ppid <= 1 || chain.len() > table.len() {
            break false;
        }
        cursor = stat.ppid;
    };
    for p in chain {
        memo.insert(p, answer);
    }
    answer
}

/// Every process's stat, or fewer: the walk stops once more than `stop_at` members of
/// `leader`'s group were read.
fn process_table(leader: i32, stop_at: Option<u64>) -> HashMap<i32, ProcStat> {
    let mut table = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return table };
    let mut in_group = 0u64;
    for pid in entries.filter_map(Result::ok).filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()) {
        let Some(stat) =
            std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|t| parse_stat(&t))
        else {
            continue;
        };
        in_group += u64::from(stat.pgrp == leader);
        table.insert(pid, stat);
        if stop_at.is_some_and(|max| in_group > max) {
            break;
        }
    }
    table
}

/// Parses `/proc/<pid>/stat`. The command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`: field 3 (state) is index 0 after it.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest: Vec<&str> = text.get(text.rfind(')')? + 1..)?.split_whitespace().collect();
    let num = |field: usize| rest.get(field - 3).and_then(|v| v.parse::<i64>().ok());
    let ticks = |field: usize| num(field).map_or(0, |v| u64::try_from(v).unwrap_or(0));
    Some(ProcStat {
        ppid: i32::try_from(num(4)?).ok()?,
        pgrp: i32::try_from(num(5)?).ok()?,
        cpu_ticks: ticks(14) + ticks(15) + ticks(16) + ticks(17),
        resident_pages: ticks(24),
    })
}

/// One process's resident memory, a single small read: `None` when it has exited
/// (gone, or a zombie waiting to be reaped, whose size reads 0 for good).
pub(crate) fn resident_bytes(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = text.get(text.rfind(')')? + 1..)?.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    parse_stat(&text).map(|stat| stat.resident_pages * page_size())
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (we ird) (x)) S 17 4242 4242 0 -1 4194560 100 0 0 0 7 3 2 1 20 0 1 0 \
                    99 1000000 250 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!((stat.ppid, stat.pgrp, stat.cpu_ticks, stat.resident_pages), (17, 4242, 13, 250));
    }

    #[test]
    fn the_process_count_is_checked_before_memory_and_cpu() {
        let limits = ProcessLimits { max_memory_mb: Some(1), cpu_seconds: Some(1), max_processes: Some(4) };
        let usage = GroupUsage { processes: 9, resident_bytes: 1 << 30, cpu_ticks: 10_000 };
        assert_eq!(
            check(&limits, &usage),
            Some(LimitBreach { kind: LimitKind::Processes, limit: 4, observed: 9 })
        );
        let calm = GroupUsage { processes: 2, resident_bytes: 1 << 20, cpu_ticks: 0 };
        assert_eq!(check(&limits, &calm), None);
    }

    #[test]
    fn members_are_the_group_and_the_leaders_descendants() {
        let stat = |ppid, pgrp| ProcStat { ppid, pgrp, cpu_ticks: 0, resident_pages: 0 };
        let table = HashMap::from([
            (100, stat(1, 100)), // leader
            (101, stat(100, 100)),
            (102, stat(101, 102)), // own group, still a descendant
            (103, stat(1, 100)),   // orphaned, still in the group
            (200, stat(1, 200)),   // a stranger
            (201, stat(200, 200)),
        ]);
        let mut found = members(&table, 100);
        found.sort();
        assert_eq!(found, vec![100, 101, 102, 103]);
    }
}
