//! Bounded capture of a child's combined output.
//!
//! A test run can print gigabytes; the worker keeps the first and the last part (where the
//! command line and the failure summary usually are) and counts what it dropped in between.

use std::collections::VecDeque;

/// Collects bytes up to a cap, keeping the head and the tail and counting the middle.
#[derive(Debug)]
pub struct OutputCollector {
    head: Vec<u8>,
    head_cap: usize,
    tail: VecDeque<u8>,
    tail_cap: usize,
    total: usize,
}

impl OutputCollector {
    /// A collector that keeps at most `cap` bytes: half from the start, half from the end.
    pub fn new(cap: usize) -> Self {
        let head_cap = cap / 2;
        OutputCollector {
            head: Vec::new(),
            head_cap,
            tail: VecDeque::new(),
            tail_cap: cap - head_cap,
            total: 0,
        }
    }

    /// Appends a chunk as it was read from either pipe.
    pub fn push(&mut self, mut chunk: &[u8]) {
        self.total += chunk.len();
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let take = room.min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        if self.tail_cap == 0 {
            return;
        }
        if chunk.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&chunk[chunk.len() - self.tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + chunk.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.tail.extend(chunk);
    }

    /// Whether bytes were dropped.
    pub fn truncated(&self) -> bool {
        self.total > self.head.len() + self.tail.len()
    }

    /// The kept output as text (invalid UTF-8 replaced), with a marker where bytes were dropped.
    pub fn render(&self) -> String {
        let kept = self.head.len() + self.tail.len();
        let mut bytes = self.head.clone();
        if self.truncated() {
            let omitted = self.total - kept;
            bytes.extend_from_slice(format!("\n[... {omitted} bytes omitted ...]\n").as_bytes());
        }
        bytes.extend(self.tail.iter());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_under_the_cap_is_kept_whole() {
        let mut c = OutputCollector::new(10);
        c.push(b"abc");
        c.push(b"defg");
        assert!(!c.truncated());
        assert_eq!(c.render(), "abcdefg");
    }

    #[test]
    fn output_over_the_cap_keeps_head_and_tail() {
        let mut c = OutputCollector::new(6);
        c.push(b"abcd");
        c.push(b"efghij");
        c.push(b"kl");
        assert!(c.truncated());
        assert_eq!(c.render(), "abc\n[... 6 bytes omitted ...]\njkl");
    }

    #[test]
    fn exactly_the_cap_is_not_truncated() {
        let mut c = OutputCollector::new(4);
        c.push(b"ab");
        c.push(b"cd");
        assert!(!c.truncated());
        assert_eq!(c.render(), "abcd");
    }

    #[test]
    fn a_zero_cap_keeps_nothing_but_counts() {
        let mut c = OutputCollector::new(0);
        c.push(b"hello");
        assert_eq!(c.render(), "\n[... 5 bytes omitted ...]\n");
    }
}
