//! Logging that can never block or panic the task that logs.
//!
//! Log lines go through a bounded queue to one writer thread, which writes them to standard
//! error. A line that finds the queue full (standard error is slow, or a pipe nobody reads has
//! filled up) is dropped and counted; so is a line the writer thread cannot write (EPIPE from a
//! pipe whose reader went away, ENOSPC, ...). Nothing here prints or panics on an error:
//! the logging task only ever enqueues. [`dropped_lines`] reads the count (for the metrics to
//! come); [`flush`] waits, for a bounded time, until what was queued has been written, and the
//! [`LogGuard`] the process keeps does that when it ends.
//!
//! `log_format = "json"` ([`json_subscriber`]) writes one JSON object a line with the current
//! span's fields (`span`: the cluster of a reconcile, and what the spans inside it add) and
//! every enclosing span's (`spans`, outermost first), so each line of a reconcile names its
//! cluster without a search for the line that opened it.
//!
//! Also what the log shows: [`filter_directives`] keeps the AWS SDK's own warnings (IMDS
//! probes, credential chains) out unless asked for, and [`use_colour`] says when lines carry
//! ANSI colour.
//!
//! Written here rather than taken from `tracing-appender`: its non-blocking writer does not count
//! write errors, and its guard prints to standard output (the audit trail) when its queue is
//! still full at exit.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Lines queued for the writer thread before new ones are dropped.
pub const QUEUE_LINES: usize = 16_384;

/// How long [`LogGuard`] waits for the queue to be written when the process ends.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// How many lines were lost, and why.
#[derive(Debug, Default)]
pub struct LogCounters {
    queue_full: AtomicU64,
    write_failed: AtomicU64,
}

impl LogCounters {
    /// Lines dropped because the queue was full (or the writer thread was gone).
    pub fn queue_full(&self) -> u64 {
        self.queue_full.load(Ordering::Relaxed)
    }

    /// Lines the writer thread could not write.
    pub fn write_failed(&self) -> u64 {
        self.write_failed.load(Ordering::Relaxed)
    }

    /// Every line lost.
    pub fn dropped(&self) -> u64 {
        self.queue_full().saturating_add(self.write_failed())
    }
}

enum Message {
    Line(Vec<u8>),
    /// Flush the sink, then answer.
    Flush(SyncSender<()>),
}

/// The [`MakeWriter`] of the log: each event is one line sent to the writer thread.
#[derive(Clone)]
pub struct LogWriter {
    queue: SyncSender<Message>,
    counters: Arc<LogCounters>,
}

impl LogWriter {
    /// The counters of this log.
    pub fn counters(&self) -> Arc<LogCounters> {
        Arc::clone(&self.counters)
    }

    /// Waits until every line queued so far has been handed to the sink and the sink flushed,
    /// for at most `timeout`. False when that did not happen in time (or the thread is gone).
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (ack, acked) = sync_channel(1);
        let mut request = Message::Flush(ack);
        loop {
            match self.queue.try_send(request) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    request = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        acked
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.queue.try_send(Message::Line(buf.to_vec())).is_err() {
            self.counters.queue_full.fetch_add(1, Ordering::Relaxed);
        }
        // Always "written": an error here would make the formatter report it on stderr.
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(|_| ())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Starts a writer thread over `sink` with a queue of `capacity` lines. If the thread cannot
/// be started, every line is dropped (and counted).
pub fn spawn_writer<W: Write + Send + 'static>(sink: W, capacity: usize) -> LogWriter {
    let (queue, lines) = sync_channel(capacity);
    let counters = Arc::new(LogCounters::default());
    let thread_counters = Arc::clone(&counters);
    // A failed spawn drops `lines`, so every send reports Disconnected and is counted.
    let _ = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_lines(sink, &lines, &thread_counters));
    LogWriter { queue, counters }
}

fn write_lines<W: Write>(mut sink: W, lines: &Receiver<Message>, counters: &LogCounters) {
    loop {
        let message = match lines.try_recv() {
            Ok(m) => m,
            Err(TryRecvError::Empty) => {
                // Queue drained: push out what the sink buffers before waiting.
                let _ = sink.flush();
                match lines.recv() {
                    Ok(m) => m,
                    Err(_) => return,
                }
            }
            Err(TryRecvError::Disconnected) => return,
        };
        match message {
            Message::Line(bytes) => {
                if sink.write_all(&bytes).is_err() {
                    counters.write_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::Flush(ack) => {
                let _ = sink.flush();
                let _ = ack.try_send(());
            }
        }
    }
}

/// The log of this process, once [`install_stderr`] has run.
static INSTALLED: OnceLock<LogWriter> = OnceLock::new();

/// Flushes the process's log when dropped (keep it for the life of the process).
#[must_use = "dropping the guard flushes the log; keep it until the process ends"]
pub struct LogGuard(());

impl Drop for LogGuard {
    fn drop(&mut self) {
        flush(FLUSH_TIMEOUT);
    }
}

/// The process's log writer to standard error (the same one on every call), and the guard
/// that flushes it at exit.
pub fn install_stderr() -> (LogWriter, LogGuard) {
    let writer = INSTALLED
        .get_or_init(|| spawn_writer(io::stderr(), QUEUE_LINES))
        .clone();
    (writer, LogGuard(()))
}

/// Lines of the process's log lost so far (queue full or write failed).
pub fn dropped_lines() -> u64 {
    INSTALLED.get().map_or(0, |w| w.counters.dropped())
}

/// Waits at most `timeout` for the process's log to be written out. False if it was not.
pub fn flush(timeout: Duration) -> bool {
    INSTALLED.get().is_none_or(|w| w.flush(timeout))
}

/// The JSON log: tracing-subscriber's JSON lines to `writer`, each with the current span's
/// fields and the list of the spans it is in.
pub fn json_subscriber<W>(writer: W, filter: EnvFilter) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        // The writer never fails; a formatting error must not be printed to stderr either.
        .log_internal_errors(false)
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .finish()
}

/// The AWS SDK's log targets (prefixes). Their warnings are the SDK's own probing (IMDS on a
/// machine that is not an instance, each provider of the credentials chain): the setup error
/// says what is missing in one line instead.
const SDK_TARGETS: [&str; 5] = [
    "aws_config",
    "aws_credential_types",
    "aws_runtime",
    "aws_sdk",
    "aws_smithy",
];

/// The filter for a configured `log_level` (used when `RUST_LOG` is not set): that level,
/// with the SDK's targets at `error` unless the level names them itself.
pub fn filter_directives(log_level: &str) -> String {
    let mut directives = vec![log_level.to_string()];
    directives.extend(
        SDK_TARGETS
            .iter()
            .filter(|target| !log_level.contains(*target))
            .map(|target| format!("{target}=error")),
    );
    directives.join(",")
}

/// Whether log lines carry ANSI colour: only on a terminal, and never when `NO_COLOR` is set
/// (to any value, the empty one included).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none()
}
