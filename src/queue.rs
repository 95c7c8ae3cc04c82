//! The work queue: clusters to reconcile, each with its own next run time, in the spirit of
//! kube-runtime's scheduler.
//!
//! - Scheduling a key that is already pending keeps the earlier time.
//! - A key being reconciled is never handed out twice at once: a schedule made during its run
//!   is kept, and becomes pending when the run finishes.
//! - Each key backs off on its own after failures (backon's exponential backoff, 1 s doubling
//!   up to a maximum, with jitter), and a success resets it.
//!
//! The queue holds no clock: callers pass `now`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

/// Clusters (or any keys) waiting to be reconciled.
#[derive(Debug, Default)]
pub struct WorkQueue {
    /// Pending keys by next run time (earliest first).
    by_time: BTreeSet<(Instant, String)>,
    pending: HashMap<String, Instant>,
    /// Keys handed out and not finished yet.
    running: HashSet<String>,
    /// The earliest schedule made for a running key during its run.
    after_run: HashMap<String, Instant>,
    backoffs: HashMap<String, ExponentialBackoff>,
}

impl WorkQueue {
    pub fn new() -> Self {
        WorkQueue::default()
    }

    /// Runs `key` at `at`, or earlier if it is already due earlier. A running key gets it
    /// for after its run.
    pub fn schedule(&mut self, key: &str, at: Instant) {
        if self.running.contains(key) {
            let later = self.after_run.entry(key.to_string()).or_insert(at);
            *later = (*later).min(at);
            return;
        }
        match self.pending.get(key) {
            Some(&current) if current <= at => {}
            Some(&current) => {
                self.by_time.remove(&(current, key.to_string()));
                self.insert(key, at);
            }
            None => self.insert(key, at),
        }
    }

    fn insert(&mut self, key: &str, at: Instant) {
        self.pending.insert(key.to_string(), at);
        self.by_time.insert((at, key.to_string()));
    }

    /// Hands out every pending key due by `now` (earliest first) and marks it running.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut due = Vec::new();
        while let Some((at, _)) = self.by_time.first() {
            if *at > now {
                break;
            }
            let Some((_, key)) = self.by_time.pop_first() else {
                break;
            };
            self.pending.remove(&key);
            self.running.insert(key.clone());
            due.push(key);
        }
        due
    }

    /// The run of `key` ended: what was scheduled for it meanwhile becomes pending.
    pub fn finish(&mut self, key: &str) {
        self.running.remove(key);
        if let Some(at) = self.after_run.remove(key) {
            self.schedule(key, at);
        }
    }

    /// When the earliest pending key is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// When `key` is due next, if it is pending (or scheduled for after its run).
    pub fn due_at(&self, key: &str) -> Option<Instant> {
        self.pending
            .get(key)
            .or_else(|| self.after_run.get(key))
            .copied()
    }

    pub fn is_running(&self, key: &str) -> bool {
        self.running.contains(key)
    }

    /// Forgets every key `keep` refuses (out of scope now); a running one is only forgotten
    /// once it finishes (its schedule for after the run is dropped).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.by_time.retain(|(_, k)| keep(k));
        self.pending.retain(|k, _| keep(k));
        self.after_run.retain(|k, _| keep(k));
        self.backoffs.retain(|k, _| keep(k));
    }

    /// The next retry delay of `key` after a failure: 1 s doubling up to `max`, with jitter.
    pub fn backoff(&mut self, key: &str, max: Duration) -> Duration {
        let backoff = self.backoffs.entry(key.to_string()).or_insert_with(|| {
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_secs(1))
                .with_max_delay(max)
                .with_jitter()
                .without_max_times()
                .build()
        });
        backoff.next().unwrap_or(max).min(max)
    }

    /// `key` succeeded: its next failure backs off from the start again.
    pub fn succeeded(&mut self, key: &str) {
        self.backoffs.remove(key);
    }

    /// Whether `key` failed last time (it is backing off).
    pub fn is_backing_off(&self, key: &str) -> bool {
        self.backoffs.contains_key(key)
    }
}
