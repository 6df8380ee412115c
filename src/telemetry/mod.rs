//! Logging setup: JSON lines for machines (the default), human-readable text for a
//! terminal. `RUST_LOG` refines the configured level when set.
//!
//! Every formatted line passes through the process-wide log [`Masker`] on its way to
//! stderr, so a secret that reaches a log field (an error message quoting a URL, a
//! command's output) is masked like it is in artifacts and events. Secrets are added
//! with [`mask_in_logs`] once they are loaded, which is after logging starts.
//!
//! JSON lines are flat ([`task_line`]): the task's identity sits on every line emitted
//! while working on it. Work moved to a blocking thread keeps its span through
//! [`spawn_blocking_in_span`].

use std::io::{self, Write};
use std::sync::{Arc, LazyLock, RwLock};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::LoggingConfig;
use crate::secrets::Masker;

mod task_line;

pub use task_line::task_span;

/// The masker applied to every log line this process writes.
static LOG_MASKER: LazyLock<Arc<RwLock<Masker>>> = LazyLock::new(Default::default);

/// Installs the global subscriber. Logs go to stderr, so stdout stays clean for the
/// JSON that `run` and `dlq list --json` print.
///
/// lapin's own log lines are off unless `RUST_LOG` asks for them: it logs every broker
/// refusal at ERROR with a Rust debug dump of the frame, while the worker reports the
/// same failure once, in its own words, where it can say what it was doing.
pub fn init(logging: &LoggingConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("agent_runner={},lapin=off,warn", logging.level.as_str()))
    });
    let writer = MaskingWriter::new(io::stderr, Arc::clone(&LOG_MASKER));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    // A second init (tests, embedding) is not an error worth failing on.
    let _ = if logging.structured {
        builder.fmt_fields(task_line::span_fields()).event_format(task_line::FlatJsonLines).try_init()
    } else {
        builder.compact().try_init()
    };
}

/// [`tokio::task::spawn_blocking`], with the caller's span entered on the blocking
/// thread: what git or the file system step logs there still names its task.
pub fn spawn_blocking_in_span<F, R>(work: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
}

/// Adds `masker`'s secrets to those masked in this process's logs.
pub fn mask_in_logs(masker: &Masker) {
    if masker.is_empty() {
        return;
    }
    let mut current = LOG_MASKER.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    *current = current.union(masker);
}

/// `text` masked like a log line: for what the CLI prints to stdout and stderr (the run
/// summary, dead letters, errors), which leaves the process as surely as a log does.
pub fn mask_output(text: &str) -> String {
    LOG_MASKER.read().unwrap_or_else(|poisoned| poisoned.into_inner()).mask(text)
}

/// A [`MakeWriter`] whose writers mask each formatted event before passing it on.
/// The fmt layer writes one whole event per `write` call, so a secret is never split
/// across two calls.
#[derive(Clone)]
pub struct MaskingWriter<M> {
    inner: M,
    masker: Arc<RwLock<Masker>>,
}

impl<M> MaskingWriter<M> {
    /// Wraps `inner`, masking with whatever `masker` holds at the time of each write.
    pub fn new(inner: M, masker: Arc<RwLock<Masker>>) -> Self {
        MaskingWriter { inner, masker }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for MaskingWriter<M> {
    type Writer = MaskedWrite<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedWrite { inner: self.inner.make_writer(), masker: Arc::clone(&self.masker) }
    }
}

/// One event's writer; see [`MaskingWriter`].
pub struct MaskedWrite<W> {
    inner: W,
    masker: Arc<RwLock<Masker>>,
}

impl<W: Write> Write for MaskedWrite<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let masker = self.masker.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if masker.is_empty() {
            self.inner.write_all(buf)?;
        } else {
            self.inner.write_all(masker.mask(&String::from_utf8_lossy(buf)).as_bytes())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use std::sync::Mutex;

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_are_masked_in_every_encoding_the_masker_knows() {
        let token = SecretString::from("ghp_logged\"token/42".to_string());
        let masker = Arc::new(RwLock::new(Masker::new([Some(&token)])));
        let captured = Captured::default();
        let sink = captured.clone();
        let writer = MaskingWriter::new(move || sink.clone(), masker);
        let subscriber = tracing_subscriber::fmt().json().with_writer(writer).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                url = "https://x:ghp_logged%22token%2F42@host",
                "push failed: ghp_logged\"token/42"
            );
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("push failed: ****") && text.contains("https://x:****@host"), "{text}");
        assert!(!text.contains("ghp_logged"), "{text}");
    }
}
