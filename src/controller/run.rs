//! The loop of `run`: takes the due clusters off the work queue, spawns each reconcile on its
//! own (bounded by `concurrency`), and schedules each cluster again when its run ends.
//!
//! A cluster's resync observation (the full list and describe, minutes for a large cluster)
//! runs as a task of its own, also at most `concurrency` at once, without holding the
//! cluster's key: only diagnose → plan → act is exclusive per cluster, so a deadline or event
//! falling meanwhile is handled at once. When the observation arrives it is merged into the
//! cache under the version rule and the key runs again to judge it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::Semaphore;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use super::{Controller, Ran, panicked_message, permits};
use crate::cloud::{Cloud, CloudError};
use crate::telemetry::Trigger;

type Runs = JoinSet<(String, Ran)>;
/// Background observations: the cluster, and when it began and whether it arrived (`None`:
/// dropped at shutdown, or the cluster left scope).
type Observed = (String, Option<(Instant, Result<(), CloudError>)>);
type Observations = JoinSet<Observed>;

/// The spawned runs and which cluster each is.
struct InFlight {
    set: Runs,
    cluster_of: HashMap<Id, String>,
    observations: Observations,
    observing: HashMap<Id, String>,
    /// Bounds the background observations (`concurrency` at once).
    observe_limit: Arc<Semaphore>,
    /// The first panic's last words: the loop ends with them.
    panicked: Option<String>,
}

impl<C: Cloud> Controller<C> {
    /// Reconciles every cluster in scope until `shutdown` is cancelled: each at its own next
    /// run time (resync, deadline, event), a failed one sooner with its own backoff.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let limit = Arc::new(Semaphore::new(permits(self.settings.concurrency)));
        let mut runs = InFlight {
            set: JoinSet::new(),
            cluster_of: HashMap::new(),
            observations: JoinSet::new(),
            observing: HashMap::new(),
            observe_limit: Arc::new(Semaphore::new(permits(self.settings.concurrency))),
            panicked: None,
        };
        let mut next_scope_refresh = Instant::now();
        while !shutdown.is_cancelled() && runs.panicked.is_none() {
            self.telemetry.loop_progressed();
            let now = Instant::now();
            if now >= next_scope_refresh || self.scope_stale.swap(false, Ordering::SeqCst) {
                next_scope_refresh = now + self.refresh_scope(now).await;
            }
            let due = self.lock_queue().take_due(now);
            for cluster in due {
                self.spawn_run(&mut runs, cluster, &limit, &shutdown);
            }
            let wake = self
                .lock_queue()
                .next_due()
                .map_or(next_scope_refresh, |at| at.min(next_scope_refresh));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
                _ = self.wake.notified() => {}
                Some(joined) = runs.set.join_next(), if !runs.set.is_empty() => {
                    self.finished(&mut runs, joined, &shutdown);
                }
                Some(joined) = runs.observations.join_next(), if !runs.observations.is_empty() => {
                    self.observed(&mut runs, joined);
                }
            }
        }
        while let Some(joined) = runs.set.join_next().await {
            self.finished(&mut runs, joined, &shutdown);
        }
        // Observations in flight end at shutdown (they read nothing more).
        while let Some(joined) = runs.observations.join_next().await {
            self.observed(&mut runs, joined);
        }
        if let Err(e) = self.audit.flush() {
            warn!(error = %e, "cannot flush the audit trail");
        }
        if let Some(message) = runs.panicked {
            std::panic::resume_unwind(Box::new(message));
        }
        info!("controller stopped");
    }

    /// Lists the clusters in scope; forgets those that left it and queues those that joined.
    /// Returns when to list again.
    async fn refresh_scope(&self, now: Instant) -> std::time::Duration {
        match self.clusters_in_scope().await {
            Ok(scope) => {
                self.lock_queue().succeeded("*");
                self.lock_cache().retain(|c, _| scope.contains(c));
                self.lock_before_first().retain(|c, _| scope.contains(c));
                let mut queue = self.lock_queue();
                queue.retain(|c| c == "*" || scope.contains(&c.to_string()));
                for cluster in &scope {
                    if queue.due_at(cluster).is_none() && !queue.is_running(cluster) {
                        queue.schedule(cluster, now);
                    }
                }
                self.settings.resync
            }
            Err(e) => {
                let delay = self.lock_queue().backoff("*", self.settings.resync);
                warn!(error = %e, retry_in = ?delay, "cannot list clusters in scope; retrying");
                delay
            }
        }
    }

    fn spawn_run(
        self: &Arc<Self>,
        runs: &mut InFlight,
        cluster: String,
        limit: &Arc<Semaphore>,
        shutdown: &CancellationToken,
    ) {
        let retry = self.lock_queue().is_backing_off(&cluster);
        let name = cluster.clone();
        let task = runs.set.spawn(Arc::clone(self).run_key(
            cluster,
            false,
            retry,
            Arc::clone(limit),
            shutdown.clone(),
        ));
        runs.cluster_of.insert(task.id(), name);
    }

    /// A run ended: the cluster is scheduled again (its next due time, or a backoff after a
    /// failure); a panic is kept to end the loop with.
    fn finished(
        self: &Arc<Self>,
        runs: &mut InFlight,
        joined: Result<(String, Ran), JoinError>,
        shutdown: &CancellationToken,
    ) {
        let (cluster, ran) = match joined {
            Ok(done) => done,
            Err(e) => {
                let cluster = runs.cluster_of.remove(&e.id()).unwrap_or_default();
                self.lock_queue().finish(&cluster);
                if e.is_panic() {
                    runs.panicked.get_or_insert(panicked_message(&cluster, e));
                } else {
                    warn!(cluster = %cluster, error = %e, "a reconcile task was cancelled");
                }
                return;
            }
        };
        runs.cluster_of.retain(|_, c| *c != cluster);
        let now = Instant::now();
        let next = match ran {
            Ran::Cancelled => {
                debug!(cluster = %cluster, "shutting down: not reconciled");
                None
            }
            Ran::Idle => self.next_run(&cluster),
            Ran::Observe => {
                self.spawn_observation(runs, &cluster, shutdown);
                self.next_run(&cluster)
            }
            Ran::Reconciled(result) => match *result {
                Ok(report) => {
                    self.lock_queue().succeeded(&cluster);
                    info!(
                        cluster = %cluster,
                        findings = report.plan.findings.len(),
                        actions = report.plan.actions.len(),
                        held = report.plan.held.len(),
                        "reconciled"
                    );
                    self.next_run(&cluster)
                }
                Err(e) => {
                    let delay = self.lock_queue().backoff(&cluster, self.settings.resync);
                    warn!(cluster = %cluster, error = %e, retry_in = ?delay, "reconcile failed");
                    Some(now + delay)
                }
            },
        };
        let mut queue = self.lock_queue();
        queue.finish(&cluster);
        if let Some(at) = next {
            queue.schedule(&cluster, at);
        }
    }
}

impl<C: Cloud> Controller<C> {
    /// Starts the full observation of `cluster` (begun at `began`) as a task of its own.
    fn spawn_observation(
        self: &Arc<Self>,
        runs: &mut InFlight,
        cluster: &str,
        shutdown: &CancellationToken,
    ) {
        let this = Arc::clone(self);
        let limit = Arc::clone(&runs.observe_limit);
        let shutdown = shutdown.clone();
        let name = cluster.to_string();
        let span = info_span!("observe", cluster = %cluster);
        let task = runs.observations.spawn(
            async move {
                let arrived = this.observe_in_background(&name, &limit, &shutdown).await;
                (name, arrived)
            }
            .instrument(span),
        );
        runs.observing.insert(task.id(), cluster.to_string());
    }

    /// A background observation ended: merged, the key runs to judge it; failed, the cluster
    /// backs off and observes again; a panic ends the loop like a reconcile's.
    fn observed(&self, runs: &mut InFlight, joined: Result<Observed, JoinError>) {
        let (cluster, arrived) = match joined {
            Ok(done) => done,
            Err(e) => {
                let cluster = runs.observing.remove(&e.id()).unwrap_or_default();
                if e.is_panic() {
                    runs.panicked.get_or_insert(panicked_message(&cluster, e));
                }
                return;
            }
        };
        runs.observing.retain(|_, c| *c != cluster);
        match arrived {
            None => debug!(cluster = %cluster, "observation dropped"),
            Some((_, Ok(()))) => self.lock_queue().schedule(&cluster, Instant::now()),
            Some((began, Err(e))) => {
                self.telemetry
                    .reconciled(&cluster, Trigger::Resync, Err(&e), began.elapsed());
                let delay = self.lock_queue().backoff(&cluster, self.settings.resync);
                warn!(cluster = %cluster, error = %e, retry_in = ?delay, "resync failed");
                let at = Instant::now() + delay;
                if let Some(entry) = self.lock_cache().get_mut(&cluster) {
                    entry.next_resync = at;
                }
                self.lock_queue().schedule(&cluster, at);
            }
        }
    }
}
