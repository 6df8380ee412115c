//! The execution log: a timestamped, masked transcript of one task's run, uploaded as
//! the `log` artifact. Shared by the steps of a task; cheap to append to.

use std::sync::{Arc, Mutex};

use crate::secrets::Masker;

/// Lines of text are capped so a chatty test suite cannot grow the log without bound;
/// the test-results artifact keeps each step's output tail anyway.
const MAX_LOG_BYTES: usize = 4 * 1024 * 1024;

/// An append-only, masked log of one task run.
#[derive(Clone)]
pub struct ExecutionLog {
    inner: Arc<Mutex<String>>,
    masker: Masker,
}

impl ExecutionLog {
    pub fn new(masker: Masker) -> Self {
        ExecutionLog { inner: Arc::new(Mutex::new(String::new())), masker }
    }

    /// Appends one entry, attributed to `step`, masked of secrets.
    pub fn record(&self, step: &str, text: &str) {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let masked = self.masker.mask(text);
        if let Ok(mut log) = self.inner.lock() {
            if log.len() >= MAX_LOG_BYTES {
                return;
            }
            for line in masked.lines() {
                log.push_str(&format!("{now} [{step}] {line}\n"));
            }
            if log.len() >= MAX_LOG_BYTES {
                log.push_str("[log truncated: size limit reached]\n");
            }
        }
    }

    /// The log so far.
    pub fn contents(&self) -> String {
        self.inner.lock().map(|l| l.clone()).unwrap_or_default()
    }
}
