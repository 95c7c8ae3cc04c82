//! The event pump: receive → parse → [`EventSink::apply`] → delete, until shutdown.
//!
//! The delivery model is SQS's and EventBridge's: **at least once, unordered**. The same event
//! can arrive twice (EventBridge retries, SQS redelivers a message whose delete was lost), late,
//! or before an older one. So:
//! - a message is deleted only once its event has been applied (or once it is known to be
//!   useless: malformed and unknown messages are deleted and counted by kind, never left to
//!   poison the queue). A pump that dies between apply and delete leaves the message on the
//!   queue; it comes back after the queue's visibility timeout and is applied again, which is
//!   harmless because the cache never lets an older `version` overwrite a newer one;
//! - a recently applied event id (kept in a small window, as node-termination-handler does)
//!   is not applied again: the redelivery is deleted and counted `stale`;
//! - an event that never arrives is repaired by the controller's periodic resync, which is
//!   why the events only speed decisions up and never decide anything alone.
//!
//! A failed receive (throttling included) backs off exponentially, 1 s up to 30 s, and puts the
//! controller back on the resync cadence without events ([`EventSink::set_degraded`]); nothing
//! is lost meanwhile, since nothing was deleted. The first receive that answers again ends
//! that. On shutdown the pump stops receiving (a long poll in flight is dropped; whatever it had
//! taken becomes visible again after the visibility timeout), then finishes applying and
//! deleting the batch it holds.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::parse::{self, Parsed};
use super::{Disposition, EventSink, EventSource, Message};
use crate::telemetry::Telemetry;

/// How the pump paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PumpSettings {
    /// The first wait after a failed receive.
    pub backoff_min: Duration,
    /// The longest wait between failed receives.
    pub backoff_max: Duration,
    /// How long an applied event id is remembered, to skip its redeliveries.
    pub dedup_window: Duration,
    /// How many event ids are remembered at most (the oldest are forgotten first).
    pub dedup_capacity: usize,
    /// The least time between two receives that both came back empty: a source that answers
    /// at once instead of long-polling must not make the pump spin.
    pub min_empty_poll: Duration,
}

impl Default for PumpSettings {
    fn default() -> Self {
        PumpSettings {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            // Longer than SQS's default visibility timeout (30 s) many times over.
            dedup_window: Duration::from_secs(600),
            dedup_capacity: 10_000,
            min_empty_poll: Duration::from_secs(1),
        }
    }
}

/// What the pump has done so far, readable while it runs (tests, the status line).
#[derive(Debug, Default)]
pub struct PumpCounts {
    by_disposition: [AtomicU64; Disposition::ALL.len()],
    received: AtomicU64,
    deleted: AtomicU64,
    not_deleted: AtomicU64,
    failed_receives: AtomicU64,
}

impl PumpCounts {
    /// Messages disposed of as `disposition`.
    pub fn of(&self, disposition: Disposition) -> u64 {
        self.by_disposition[index(disposition)].load(Ordering::Relaxed)
    }

    /// Messages disposed of, whatever became of them.
    pub fn disposed(&self) -> u64 {
        Disposition::ALL.into_iter().map(|d| self.of(d)).sum()
    }

    /// Messages received (every delivery counts).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Deliveries deleted from the queue.
    pub fn deleted(&self) -> u64 {
        self.deleted.load(Ordering::Relaxed)
    }

    /// Deliveries whose delete failed (they come back, harmlessly).
    pub fn not_deleted(&self) -> u64 {
        self.not_deleted.load(Ordering::Relaxed)
    }

    /// Receives that failed.
    pub fn failed_receives(&self) -> u64 {
        self.failed_receives.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

fn index(disposition: Disposition) -> usize {
    Disposition::ALL
        .iter()
        .position(|d| *d == disposition)
        .unwrap_or(0)
}

/// Receives from `source` and applies to `sink` until shutdown.
pub struct Pump<Q: EventSource> {
    source: Q,
    sink: Arc<dyn EventSink>,
    telemetry: Arc<dyn Telemetry>,
    settings: PumpSettings,
    counts: Arc<PumpCounts>,
}

impl<Q: EventSource> Pump<Q> {
    pub fn new(source: Q, sink: Arc<dyn EventSink>, telemetry: Arc<dyn Telemetry>) -> Self {
        Pump {
            source,
            sink,
            telemetry,
            settings: PumpSettings::default(),
            counts: Arc::new(PumpCounts::default()),
        }
    }

    pub fn with_settings(mut self, settings: PumpSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The counts, shared with the running pump.
    pub fn counts(&self) -> Arc<PumpCounts> {
        Arc::clone(&self.counts)
    }

    /// Runs until `shutdown` is cancelled, then returns once the batch in hand is applied and
    /// deleted.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut recent =
            RecentEvents::new(self.settings.dedup_window, self.settings.dedup_capacity);
        let mut health = QueueHealth::new(&self.settings);
        loop {
            let polled_at = Instant::now();
            let answer = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                answer = self.source.receive() => answer,
            };
            match answer {
                Ok(messages) if messages.is_empty() => {
                    health.answered(self.sink.as_ref(), self.telemetry.as_ref());
                    let next = polled_at + self.settings.min_empty_poll;
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep_until(next) => {}
                    }
                }
                Ok(messages) => {
                    health.answered(self.sink.as_ref(), self.telemetry.as_ref());
                    PumpCounts::add(&self.counts.received, messages.len());
                    self.handle(messages, &mut recent).await;
                }
                Err(err) => {
                    self.counts.failed_receives.fetch_add(1, Ordering::Relaxed);
                    let wait = health.failed(&err, self.sink.as_ref(), self.telemetry.as_ref());
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        debug!("event pump stopped");
    }

    /// Applies one batch, then deletes every delivery that got its disposition.
    async fn handle(&self, messages: Vec<Message>, recent: &mut RecentEvents) {
        let mut done = Vec::with_capacity(messages.len());
        for message in messages {
            let disposition = self.dispose(&message, recent);
            debug!(message = %message.id, %disposition, "event message");
            done.push(message.receipt);
        }
        if done.is_empty() {
            return;
        }
        match self.source.delete(&done).await {
            Ok(left) => {
                PumpCounts::add(&self.counts.deleted, done.len().saturating_sub(left.len()));
                PumpCounts::add(&self.counts.not_deleted, left.len());
                if !left.is_empty() {
                    debug!(
                        count = left.len(),
                        "event messages not deleted: they will be delivered again"
                    );
                }
            }
            Err(err) => {
                PumpCounts::add(&self.counts.not_deleted, done.len());
                warn!(error = %err, count = done.len(),
                    "event messages not deleted: they will be delivered again");
            }
        }
    }

    /// What becomes of one delivery: parsed, skipped as a redelivery, or applied.
    fn dispose(&self, message: &Message, recent: &mut RecentEvents) -> Disposition {
        let received_at = SystemTime::now();
        let (disposition, lag) = match parse::parse(&message.body) {
            Err(rejected) => {
                debug!(message = %message.id, why = %rejected.why, "event message not used");
                (rejected.disposition, None)
            }
            Ok(Parsed {
                event_id,
                happened_at,
                event,
            }) => {
                let lag = happened_at.and_then(|t| received_at.duration_since(t).ok());
                if recent.contains(&event_id) {
                    (Disposition::Stale, lag)
                } else {
                    let disposition = self.sink.apply(event, received_at);
                    recent.insert(event_id);
                    (disposition, lag)
                }
            }
        };
        self.counts.by_disposition[index(disposition)].fetch_add(1, Ordering::Relaxed);
        self.telemetry.event(disposition, lag);
        disposition
    }
}

/// Whether the queue answers, and how long to wait after a failed receive.
struct QueueHealth {
    degraded: bool,
    /// Whether a receive has answered yet: the first answer puts the controller, which starts
    /// on the resync cadence without events, in event mode.
    answered_once: bool,
    builder: ExponentialBuilder,
    delays: backon::ExponentialBackoff,
}

impl QueueHealth {
    fn new(settings: &PumpSettings) -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(settings.backoff_min)
            .with_max_delay(settings.backoff_max)
            .with_factor(2.0)
            .without_max_times();
        QueueHealth {
            degraded: false,
            answered_once: false,
            delays: builder.build(),
            builder,
        }
    }

    fn answered(&mut self, sink: &dyn EventSink, telemetry: &dyn Telemetry) {
        self.delays = self.builder.build();
        if !self.answered_once && !self.degraded {
            sink.set_degraded(false);
        }
        self.answered_once = true;
        if self.degraded {
            self.degraded = false;
            sink.set_degraded(false);
            telemetry.events_degraded(false);
            info!("the event queue answers again: event-driven reconciling resumes");
        }
    }

    /// Marks the queue failed (logging it once) and says how long to wait.
    fn failed(
        &mut self,
        err: &crate::cloud::CloudError,
        sink: &dyn EventSink,
        telemetry: &dyn Telemetry,
    ) -> Duration {
        let wait = self.delays.next().unwrap_or(Duration::from_secs(30));
        if !self.degraded {
            self.degraded = true;
            sink.set_degraded(true);
            telemetry.events_degraded(true);
            warn!(error = %err, "the event queue fails: falling back to the resync cadence \
                until it answers again");
        } else {
            debug!(error = %err, ?wait, "the event queue still fails");
        }
        wait
    }
}

/// Event ids applied lately, forgotten after `window` or when more than `capacity` are held.
struct RecentEvents {
    window: Duration,
    capacity: usize,
    seen: HashMap<String, Instant>,
    order: VecDeque<(String, Instant)>,
}

impl RecentEvents {
    fn new(window: Duration, capacity: usize) -> Self {
        RecentEvents {
            window,
            capacity: capacity.max(1),
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn contains(&mut self, id: &str) -> bool {
        self.forget_old(Instant::now());
        self.seen.contains_key(id)
    }

    fn insert(&mut self, id: String) {
        let now = Instant::now();
        self.forget_old(now);
        if self.seen.insert(id.clone(), now).is_none() {
            self.order.push_back((id, now));
        }
        while self.order.len() > self.capacity {
            if let Some((oldest, _)) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
    }

    fn forget_old(&mut self, now: Instant) {
        while let Some((id, at)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.window {
                break;
            }
            self.seen.remove(id);
            self.order.pop_front();
        }
    }
}
