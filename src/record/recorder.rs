//! `run --record DIR`: a [`Telemetry`] listener that hands each reconciled picture and each
//! audit record to a thread of its own, which writes the recording. The controller's side
//! never waits: a full hand-over queue drops the entry (counted), and a delta is always
//! against the previous picture actually written, so a dropped one costs detail, never
//! consistency.
//!
//! A failed write (disk full, permissions) pauses recording for [`PAUSE`] of observed time:
//! it is logged once, counted, and the segment is abandoned; the next write starts a new one
//! with full snapshots. Reconciling goes on throughout.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use crate::audit::AuditRecord;
use crate::causes::Clues;
use crate::cloud::CloudError;
use crate::controller::ClusterReport;
use crate::domain::ClusterSnapshot;
use crate::record::RecordedAction;
use crate::record::segments::{Limits, SegmentWriter};
use crate::telemetry::{RecordingEvent, Telemetry, Trigger};

/// How long recording stays paused after a failed write, on the observed clock.
pub const PAUSE: Duration = Duration::from_secs(60);

/// Entries waiting for the writer thread; beyond this they are dropped.
const QUEUE: usize = 1024;

enum Message {
    Observation {
        policy_set: String,
        snapshot: Arc<ClusterSnapshot>,
        clues: Arc<Clues>,
    },
    Action(RecordedAction),
    /// Answered once everything sent before it is written.
    Sync(SyncSender<()>),
}

/// What the recorder has done so far.
#[derive(Debug, Default)]
pub struct RecordStats {
    pub observations: AtomicU64,
    pub actions: AtomicU64,
    /// Entries not written: the queue was full, or recording was paused.
    pub dropped: AtomicU64,
    pub write_failures: AtomicU64,
    pub paused: AtomicBool,
}

/// Hands entries to the writer thread. Dropping it (or [`Recorder::finish`]) lets the thread
/// write what is queued and close the segment.
pub struct Recorder {
    tx: Mutex<Option<SyncSender<Message>>>,
    stats: Arc<RecordStats>,
    notify: Arc<dyn Telemetry>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Recorder {
    /// Starts recording into `dir`; the writer thread tells `notify` of drops and failures.
    /// The error (the directory cannot be made or read) is one line.
    pub fn start(dir: &Path, limits: Limits, notify: Arc<dyn Telemetry>) -> Result<Self, String> {
        let writer = SegmentWriter::open(dir, limits)
            .map_err(|e| format!("--record {}: {e}", dir.display()))?;
        let (tx, rx) = sync_channel(QUEUE);
        let stats = Arc::new(RecordStats::default());
        let thread_stats = Arc::clone(&stats);
        let thread_notify = Arc::clone(&notify);
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || write_loop(writer, rx, &thread_stats, thread_notify.as_ref()))
            .map_err(|e| format!("--record: cannot start the recorder thread: {e}"))?;
        info!(dir = %dir.display(), "recording observations and decisions");
        Ok(Recorder {
            tx: Mutex::new(Some(tx)),
            stats,
            notify,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn stats(&self) -> &RecordStats {
        &self.stats
    }

    /// Waits until every entry handed over so far is written (or dropped). Blocks: for the end
    /// of a pass with `--once`, and tests, never the controller's loop.
    pub fn sync(&self) {
        let (done, wait) = sync_channel(1);
        let sent = lock(&self.tx)
            .as_ref()
            .is_some_and(|tx| tx.send(Message::Sync(done)).is_ok());
        if sent {
            let _ = wait.recv();
        }
    }

    /// Writes what is queued, closes the segment and waits for the thread.
    pub fn finish(&self) {
        drop(lock(&self.tx).take());
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }

    fn send(&self, message: Message) {
        let guard = lock(&self.tx);
        let Some(tx) = guard.as_ref() else {
            return;
        };
        match tx.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                self.notify.recording(RecordingEvent::Dropped);
            }
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Telemetry for Recorder {
    fn reconciled(
        &self,
        _cluster: &str,
        _trigger: Trigger,
        result: Result<&ClusterReport, &CloudError>,
        _took: Duration,
    ) {
        if let Ok(report) = result {
            self.send(Message::Observation {
                policy_set: report.policy_set.clone(),
                snapshot: Arc::clone(&report.snapshot),
                clues: Arc::clone(&report.clues),
            });
        }
    }

    fn recorded(&self, record: &AuditRecord) {
        let Ok(time) = humantime::parse_rfc3339(&record.time) else {
            return;
        };
        self.send(Message::Action(RecordedAction {
            time,
            policy: record.policy.clone(),
            action: record.action.clone(),
            target: record.target.clone(),
            cluster: record.cluster.clone(),
            outcome: record.outcome.to_string(),
        }));
    }
}

/// The writer thread: writes each entry, pausing after a failure.
fn write_loop(
    mut writer: SegmentWriter,
    rx: Receiver<Message>,
    stats: &RecordStats,
    notify: &dyn Telemetry,
) {
    let mut paused_until: Option<SystemTime> = None;
    let mut paused = false;
    for message in rx {
        let at = match &message {
            Message::Observation { snapshot, .. } => snapshot.observed_at,
            Message::Action(a) => a.time,
            Message::Sync(done) => {
                let _ = done.send(());
                continue;
            }
        };
        if let Some(until) = paused_until {
            if at < until {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                notify.recording(RecordingEvent::Dropped);
                continue;
            }
            paused_until = None;
        }
        let written = match message {
            Message::Observation {
                policy_set,
                snapshot,
                clues,
            } => writer
                .observation(&policy_set, &snapshot, &clues)
                .map(|()| &stats.observations),
            Message::Action(action) => writer.action(action).map(|()| &stats.actions),
            Message::Sync(_) => continue,
        };
        match written {
            Ok(counter) => {
                counter.fetch_add(1, Ordering::Relaxed);
                if paused {
                    paused = false;
                    stats.paused.store(false, Ordering::Relaxed);
                    notify.recording(RecordingEvent::Resumed);
                    info!("recording resumed");
                }
            }
            Err(e) => {
                error!(error = %e, pause = ?PAUSE, "cannot write the recording: recording paused, reconciling goes on");
                stats.write_failures.fetch_add(1, Ordering::Relaxed);
                paused = true;
                stats.paused.store(true, Ordering::Relaxed);
                notify.recording(RecordingEvent::WriteFailed);
                writer.abandon();
                paused_until = Some(at + PAUSE);
            }
        }
    }
    if let Err(e) = writer.close() {
        warn!(error = %e, "cannot close the recording's last segment");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
