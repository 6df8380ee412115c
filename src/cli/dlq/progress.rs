//! Progress of a `dlq replay` or `dlq purge` over many dead letters: `n/total`, the rate
//! and the time left, on one line redrawn in place on a terminal and as a plain line per
//! message otherwise (a log file or a pipe keeps every line, and no control characters).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// One pass's progress, printed on standard output.
pub struct Progress {
    verb: &'static str,
    total: usize,
    done: usize,
    started: Instant,
    terminal: bool,
}

impl Progress {
    /// A pass that will act on `total` messages, described by `verb` (`replayed`, …).
    pub fn new(verb: &'static str, total: usize) -> Self {
        Progress { verb, total, done: 0, started: Instant::now(), terminal: std::io::stdout().is_terminal() }
    }

    /// One more message done; `line` says which.
    pub fn step(&mut self, line: &str) {
        self.done += 1;
        let status = status(self.done, self.total, self.started.elapsed());
        let mut out = std::io::stdout().lock();
        // A failed write to standard output is not the pass's failure: the queue work
        // goes on and the closing count says what was done.
        let _ = if self.terminal {
            write!(out, "\r\x1b[2K{} {status} {line}", self.verb).and_then(|()| out.flush())
        } else {
            writeln!(out, "{} {status} {line}", self.verb)
        };
    }

    /// Ends the redrawn line on a terminal.
    pub fn finish(&self) {
        if self.terminal && self.done > 0 {
            println!();
        }
    }
}

/// `3/44 (7%, 2.5/s, 16s left)`.
pub fn status(done: usize, total: usize, elapsed: Duration) -> String {
    let total = total.max(done);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 || done == 0 {
        return format!("{done}/{total} ({percent}%)");
    }
    let rate = done as f64 / seconds;
    let left = Duration::from_secs_f64((total - done) as f64 / rate);
    format!("{done}/{total} ({percent}%, {rate:.1}/s, {} left)", humantime::format_duration(round(left)))
}

/// Whole seconds: an ETA to the millisecond is noise.
fn round(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs_f64().round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_has_the_count_the_rate_and_the_time_left() {
        assert_eq!(status(0, 44, Duration::ZERO), "0/44 (0%)");
        assert_eq!(status(11, 44, Duration::from_secs(2)), "11/44 (25%, 5.5/s, 6s left)");
        assert_eq!(status(44, 44, Duration::from_secs(8)), "44/44 (100%, 5.5/s, 0s left)");
        assert_eq!(status(2, 1, Duration::from_secs(1)), "2/2 (100%, 2.0/s, 0s left)");
        assert_eq!(status(1, 3600, Duration::from_secs(1)), "1/3600 (0%, 1.0/s, 59m 59s left)");
    }
}
