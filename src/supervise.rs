//! Supervision of `run`'s long-lived work: a dead task is a dead process.
//!
//! A [`Supervisor`] owns the named tasks of `run` (the controller loop, the policy reload
//! watcher, the simulated clock; later the SQS poller, the lease keeper, the HTTP server:
//! each one [`Supervisor::spawn`] line). [`Supervisor::wait`] returns an [`Ending`]:
//!
//! - a task that panics, or returns before shutdown was requested, has died: shutdown is
//!   requested for the others, and the process is to exit non-zero, saying which task died and
//!   why, so that the orchestrator restarts it (state that matters is rebuilt from AWS);
//! - a stop request (SIGTERM or SIGINT, from [`listen_for_stop_signals`]) requests shutdown;
//!   the tasks then have `stop_timeout` to end, after which the process exits non-zero anyway.
//!
//! The signals are listened for on a thread of their own, with its own small runtime, so that
//! they are honoured even when `run`'s runtime is wedged (a task blocked in a system call): a
//! second signal exits at once, and so does the shutdown deadline passing (measured there on the
//! wall clock, a little after the supervisor's own deadline) — see [`exit_now`]. That thread is
//! supervised too, as [`SIGNAL_HANDLER`]: if it ends, its channel closes, and that is a death.
//!
//! The last line a dying process writes goes straight to standard error, bounded in time and
//! ignoring errors, so that neither a closed nor a full pipe can keep the process from exiting.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Stop requests (the name of the signal that asked), as [`listen_for_stop_signals`] sends them.
/// The channel closing means the listener is gone: the death of [`SIGNAL_HANDLER`].
pub type StopRequests = mpsc::UnboundedReceiver<&'static str>;

/// The name under which the signal listener is supervised.
pub const SIGNAL_HANDLER: &str = "signal handler";

/// How much longer than the supervisor's deadline the signal thread waits before it ends a
/// process whose runtime no longer answers.
pub const BACKSTOP_GRACE: Duration = Duration::from_secs(2);

/// How long the last line may take to reach standard error.
const LAST_LINE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a task died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// It panicked, with this message.
    Panicked(String),
    /// It returned while the process was meant to go on.
    Returned,
}

/// A supervised task that died.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    pub task: &'static str,
    pub cause: Cause,
}

impl fmt::Display for Death {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::Panicked(message) => write!(f, "task '{}' panicked: {message}", self.task),
            Cause::Returned => write!(
                f,
                "task '{}' ended before shutdown was requested",
                self.task
            ),
        }
    }
}

/// How the stop went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Every task ended.
    Complete,
    /// The shutdown deadline passed with these tasks still running.
    DeadlinePassed { running: Vec<&'static str> },
    /// A second stop signal arrived during shutdown.
    Forced { signal: &'static str },
    /// The wall-clock deadline passed and the runtime had not stopped (it does not answer).
    Unresponsive,
}

/// What the supervised tasks came to, and so how the process ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The first task that died, if any.
    pub death: Option<Death>,
    pub stop: Stop,
    /// The shutdown deadline that applied.
    pub stop_timeout: Duration,
}

impl Ending {
    /// A graceful stop: nothing died and everything ended in time.
    pub fn is_clean(&self) -> bool {
        self.death.is_none() && self.stop == Stop::Complete
    }

    /// 0 for a clean stop, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.is_clean() { 0 } else { 1 }
    }

    /// The process's last line on standard error; none for a clean stop.
    pub fn last_line(&self) -> Option<String> {
        if self.is_clean() {
            return None;
        }
        let timeout = humantime::format_duration(self.stop_timeout);
        let stop = match &self.stop {
            Stop::Complete => None,
            Stop::DeadlinePassed { running } => Some(format!(
                "shutdown deadline of {timeout} passed with {} still running",
                running.join(", ")
            )),
            Stop::Forced { signal } => Some(format!("second {signal} during shutdown")),
            Stop::Unresponsive => Some(format!(
                "shutdown deadline of {timeout} passed and the runtime did not stop"
            )),
        };
        let why = match (&self.death, stop) {
            (Some(death), Some(stop)) => format!("{death}; then {stop}"),
            (Some(death), None) => death.to_string(),
            (None, Some(stop)) => stop,
            (None, None) => return None,
        };
        Some(format!(
            "ecs-reconciler: exiting with status {}: {why}",
            self.exit_code()
        ))
    }
}

/// The named tasks of `run`, and the shutdown token they all watch.
pub struct Supervisor {
    tasks: JoinSet<()>,
    names: HashMap<Id, &'static str>,
    shutdown: CancellationToken,
}

impl Supervisor {
    /// Supervises tasks that stop when `shutdown` is cancelled.
    pub fn new(shutdown: CancellationToken) -> Self {
        Supervisor {
            tasks: JoinSet::new(),
            names: HashMap::new(),
            shutdown,
        }
    }

    /// Runs `task` as the supervised task `name`. It must run until shutdown is requested.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Supervises a task spawned elsewhere (e.g. by [`PolicyWatcher::start`]): its panic is
    /// the supervised task's panic.
    ///
    /// [`PolicyWatcher::start`]: crate::reload::PolicyWatcher::start
    pub fn adopt(&mut self, name: &'static str, handle: JoinHandle<()>) {
        self.spawn(name, async move {
            if let Err(e) = handle.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        });
    }

    /// The names of the tasks still running, sorted.
    pub fn running(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.names.values().copied().collect();
        names.sort_unstable();
        names
    }

    /// Waits until shutdown is requested (a stop request, a task cancelling the token, or a
    /// task dying), then for at most `stop_timeout` until every task has ended.
    pub async fn wait(mut self, mut requests: StopRequests, stop_timeout: Duration) -> Ending {
        let mut death = None;
        loop {
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                request = requests.recv() => {
                    if request.is_none() {
                        // The thread that listens for signals is gone: no stop would be heard.
                        let d = Death { task: SIGNAL_HANDLER, cause: Cause::Returned };
                        error!("{d}; stopping the others");
                        death = Some(d);
                    }
                    self.shutdown.cancel();
                    break;
                }
                Some(joined) = self.tasks.join_next_with_id() => {
                    if let Some(d) = self.ended(joined) {
                        error!("{d}; stopping the others");
                        death = Some(d);
                        self.shutdown.cancel();
                        break;
                    }
                }
            }
        }
        let deadline = Instant::now() + stop_timeout;
        let stop = loop {
            tokio::select! {
                biased;
                joined = self.tasks.join_next_with_id() => match joined {
                    None => break Stop::Complete,
                    Some(joined) => {
                        if let Some(d) = self.ended(joined) {
                            error!("{d}");
                            death.get_or_insert(d);
                        }
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let running = self.running();
                    warn!(timeout = ?stop_timeout, running = ?running, "shutdown deadline passed");
                    break Stop::DeadlinePassed { running };
                }
            }
        };
        Ending {
            death,
            stop,
            stop_timeout,
        }
    }

    /// Forgets a task that ended; its death, if ending was not its job yet.
    fn ended(&mut self, joined: Result<(Id, ()), JoinError>) -> Option<Death> {
        let (id, cause) = match joined {
            Ok((id, ())) if self.shutdown.is_cancelled() => (id, None),
            Ok((id, ())) => (id, Some(Cause::Returned)),
            Err(e) if e.is_panic() => {
                (e.id(), Some(Cause::Panicked(panic_message(e.into_panic()))))
            }
            // Cancelled: only the supervisor aborts, when it gives up on the task.
            Err(e) => (e.id(), None),
        };
        let task = self.names.remove(&id).unwrap_or("unnamed task");
        cause.map(|cause| Death { task, cause })
    }
}

/// The message a panic was raised with.
pub fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "(a panic without a message)".to_string(),
        },
    }
}

/// Listens for SIGTERM and SIGINT on a thread of its own. The first is sent on the returned
/// channel (the supervisor starts the graceful shutdown); a second, or `stop_timeout` plus
/// [`BACKSTOP_GRACE`] passing after the first, ends the process at once with status 1.
///
/// An error means the handlers could not be installed: a start-up error.
pub fn listen_for_stop_signals(stop_timeout: Duration) -> io::Result<StopRequests> {
    let (requests, received) = mpsc::unbounded_channel();
    let (ready, installed) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut signals = match StopSignals::install() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let first = signals.next().await;
                info!(signal = first, "shutdown requested");
                let _ = requests.send(first);
                let stop = tokio::select! {
                    signal = signals.next() => Stop::Forced { signal },
                    _ = tokio::time::sleep(stop_timeout + BACKSTOP_GRACE) => Stop::Unresponsive,
                };
                let ending = Ending {
                    death: None,
                    stop,
                    stop_timeout,
                };
                if let Some(line) = ending.last_line() {
                    exit_now(&line, ending.exit_code());
                }
            });
        })?;
    match installed.recv() {
        Ok(Ok(())) => Ok(received),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::other(
            "the signal thread ended before it listened",
        )),
    }
}

struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    #[cfg(unix)]
    fn install() -> io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> io::Result<Self> {
        Ok(StopSignals {})
    }

    /// The next stop signal's name.
    #[cfg(unix)]
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = self.terminate.recv() => "SIGTERM",
            Some(()) = self.interrupt.recv() => "SIGINT",
            else => std::future::pending().await,
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> &'static str {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(_) => std::future::pending().await,
        }
    }
}

static EXITING: AtomicBool = AtomicBool::new(false);

/// Ends the process now with `code`: flushes the log (bounded), writes `last_line` straight to
/// standard error (bounded, errors ignored), and exits without waiting for any task or thread.
/// When two threads get here, the second waits for the first to end the process.
pub fn exit_now(last_line: &str, code: u8) -> ! {
    if EXITING.swap(true, Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
    crate::logging::flush(crate::logging::FLUSH_TIMEOUT);
    write_last_line(last_line);
    std::process::exit(i32::from(code))
}

/// Writes one line to standard error from a helper thread, waiting at most
/// [`LAST_LINE_TIMEOUT`]: a pipe nobody reads can block a write forever.
fn write_last_line(line: &str) {
    let text = format!("{line}\n");
    let (done, written) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("last-line".into())
        .spawn(move || {
            let _ = io::stderr().write_all(text.as_bytes());
            let _ = done.send(());
        });
    if spawned.is_ok() {
        let _ = written.recv_timeout(LAST_LINE_TIMEOUT);
    }
}

/// Panics are logged through the log (which cannot block) instead of written to standard
/// error by the default hook (which can block on a full pipe, stalling the panicking thread).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a panic without a message)".into());
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_string();
        let backtrace = std::backtrace::Backtrace::capture();
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            error!(%location, %thread, %backtrace, "panic: {message}");
        } else {
            error!(%location, %thread, "panic: {message}");
        }
    }));
}
