//! What the controller tells whoever watches it (the metrics, a recording): a narrow trait of
//! notifications with empty defaults, so the loop never knows who listens.
//!
//! Calls are made inline on the reconcile's task: an implementation must be quick and must
//! never block or fail (count, don't write to disk synchronously).

use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditRecord;
use crate::cloud::CloudError;
use crate::controller::ClusterReport;
use crate::events::Disposition;

/// Why a cluster was reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trigger {
    /// The periodic full list and describe.
    Resync,
    /// A watched task reached its policy limit: only the tasks that fell due were read.
    Deadline,
    /// An event asked for a look.
    Event,
    /// A retry after a failed reconcile.
    Retry,
}

impl Trigger {
    pub const ALL: [Trigger; 4] = [
        Trigger::Resync,
        Trigger::Deadline,
        Trigger::Event,
        Trigger::Retry,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Resync => "resync",
            Trigger::Deadline => "deadline",
            Trigger::Event => "event",
            Trigger::Retry => "retry",
        }
    }
}

/// Notifications from the controller, the event pump and the policy reload.
pub trait Telemetry: Send + Sync + 'static {
    /// One reconcile of `cluster` ended, after `took` (on the runtime's clock).
    fn reconciled(
        &self,
        cluster: &str,
        trigger: Trigger,
        result: Result<&ClusterReport, &CloudError>,
        took: Duration,
    ) {
        let _ = (cluster, trigger, result, took);
    }

    /// The loop came round once more (woke, scheduled, or reconciled): what `/livez` checks.
    fn loop_progressed(&self) {}

    /// An audit record was written (planned, skipped, started, done, failed ...): the
    /// action counters follow the trail exactly.
    fn recorded(&self, record: &AuditRecord) {
        let _ = record;
    }

    /// One queue message was disposed of; `lag` is the time from the event to its
    /// application, when the envelope said when it happened.
    fn event(&self, disposition: Disposition, lag: Option<Duration>) {
        let _ = (disposition, lag);
    }

    /// The event queue failed and the controller fell back to the resync cadence (`true`), or
    /// the queue answers again (`false`).
    fn events_degraded(&self, degraded: bool) {
        let _ = degraded;
    }

    /// A policy reload ended: `Ok(fingerprint)` of the set now in force, or the error that
    /// kept the last good set.
    fn policies_reloaded(&self, result: Result<&str, &str>) {
        let _ = result;
    }

    /// The recorder (`run --record`) dropped an entry, failed a write, or resumed.
    fn recording(&self, event: RecordingEvent) {
        let _ = event;
    }
}

/// What the recorder tells of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingEvent {
    /// An entry was not written: the hand-over queue was full, or recording was paused.
    Dropped,
    /// A write failed: recording is paused.
    WriteFailed,
    /// Recording goes on after a pause.
    Resumed,
}

/// Tells every listener, in order.
pub struct Tee(pub Vec<Arc<dyn Telemetry>>);

impl Telemetry for Tee {
    fn reconciled(
        &self,
        cluster: &str,
        trigger: Trigger,
        result: Result<&ClusterReport, &CloudError>,
        took: Duration,
    ) {
        for t in &self.0 {
            t.reconciled(cluster, trigger, result, took);
        }
    }

    fn loop_progressed(&self) {
        self.0.iter().for_each(|t| t.loop_progressed());
    }

    fn recorded(&self, record: &AuditRecord) {
        self.0.iter().for_each(|t| t.recorded(record));
    }

    fn event(&self, disposition: Disposition, lag: Option<Duration>) {
        self.0.iter().for_each(|t| t.event(disposition, lag));
    }

    fn events_degraded(&self, degraded: bool) {
        self.0.iter().for_each(|t| t.events_degraded(degraded));
    }

    fn policies_reloaded(&self, result: Result<&str, &str>) {
        self.0.iter().for_each(|t| t.policies_reloaded(result));
    }

    fn recording(&self, event: RecordingEvent) {
        self.0.iter().for_each(|t| t.recording(event));
    }
}

/// Tells nobody.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Telemetry for Silent {}
