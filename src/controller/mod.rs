//! The controller: per cluster, observe → diagnose → investigate (the root-cause reads,
//! `src/investigate.rs`) → plan → act, level-triggered and event-driven (list + watch +
//! periodic resync, the way kube-runtime's controllers run).
//!
//! **The work queue** (`src/queue.rs`) holds each cluster with its own next run time.
//! [`Controller::run`] spawns every due reconcile on its own, at most `concurrency` at once, so
//! a slow cluster never holds up another; a cluster whose reconcile fails backs off on its own.
//! On shutdown no new reconcile or action starts, a reconcile waiting for its permit or still
//! reading is dropped, an action in flight completes all its calls, and the audit trail is
//! flushed. A panicked reconcile ends the loop, naming its cluster (docs/design.md §4).
//!
//! **The cache** (`src/cache.rs`) keeps the last picture of each cluster, updated by events
//! ([`crate::events::EventSink`], `events.rs`) and by targeted reads. Diagnosis and planning
//! stay pure; their input is the cached picture, whose `observed_at` is the account's time of
//! the read that produced it (never earlier than the deadline that woke it). What a run of a
//! cluster's key reads depends on what fell due:
//! - *resync*: the safety net. While no event source is healthy, the full list and describe
//!   (`observe_cluster`) every `resync` (30 s). While one is, a list and diff
//!   (`resync_cluster`): both ListTasks, then DescribeTasks of only the listed tasks the
//!   picture does not hold, holds under the other desired status, or knows from events only;
//!   every `event_resync` (10 min), stretched so that all clusters' resyncs stay within
//!   `resync_read_rate` (`src/resync.rs`). Events keep the known tasks current, and every
//!   decision on a task rests on a read of it: its deadline's;
//! - *deadline*: DescribeTasks of only the tasks whose deadline (`src/deadline.rs`: entry time
//!   plus the policy's limit) has come, 100 ARNs a call;
//! - *event*: DescribeTasks of standalone tasks an event named that the cache did not hold
//!   (their tags may exempt them: nothing is decided on them before; an unknown service task
//!   joins the picture with its tags unread, see `events.rs`), the capacity chain of the cluster's
//!   groups (`observe_group`) after a service action or a group activity, or just a fresh
//!   diagnosis after a container instance changed.
//!
//! **UNHEALTHY in event mode.** Health is not in the events. While events are healthy, the
//! RUNNING tasks that report HEALTHY and whose policy has an `unhealthy` limit are re-described
//! every `health_interval` (default 5 min), 100 a call: ceil(H/100) DescribeTasks per cluster
//! per interval for H such tasks, in the cluster-resource-read bucket whose half budget is
//! 10 calls/s (docs/design.md §2). 10,000 such tasks: 100 calls every 5 min, 0.33/s (3% of the
//! half budget); 100,000: 3.3/s (33%), so a fleet that large wants a longer interval. A full
//! resync resets the interval (it reads health too; a list and diff does not). A task
//! seen UNHEALTHY gets a deadline (first sighting plus the limit) and is re-read then, so one is
//! acted on at most `health_interval` after its limit. A task whose health stays UNKNOWN (no
//! health check, or one that fails before its first pass) is judged at the resync. Without
//! events the resync every 30 s reads health anyway, and no health read is made.
//!
//! Tasks past their deadline (stuck, and acted on or held) are re-read until they leave the
//! condition: every `resync` without events; with events, which report their leaving it, every
//! `health_interval` (at least `resync`), for the holds that time clears (a budget window, a
//! pause). Re-read every 30 s, the held tasks of a 100,000-task fleet cost more reads than the
//! resyncs.
//!
//! Acting is write-ahead (`act.rs`): an enforced action's intent record is written before its
//! first mutating call and its outcome record (same attempt id) after the last. When the intent
//! cannot be written, nothing is called: the action is held as `skipped:auditUnavailable`,
//! logged at error level, and due again next pass. After any failed audit write, the rest of
//! that reconcile starts no action; [`Controller::audit_available`] says whether the last
//! write succeeded.
//!
//! The only state kept in memory is what can be rebuilt or safely forgotten: the cached
//! pictures, when tasks were first seen in a state (forgetting it only delays action), a ledger
//! of the actions this process took (covers stale reads; the same facts are on the tasks and the
//! groups' tags, except for drains, which only the ledger counts against the budget), which
//! audit records were already written (to keep the trail free of repeats), and outcome records
//! that could not be written yet (also logged whole at error level).

mod act;
mod events;
mod run;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::audit::{AuditRecord, AuditSink, Outcome};
use crate::cache::{ClusterCache, DEADLINE_SLACK};
use crate::capacity::diagnose_capacity;
use crate::capacity::tags::ManagedTag;
use crate::causes::Clues;
use crate::cloud::{Cloud, CloudError, Resync, TaskReads};
use crate::deadline::{Deadline, deadlines, drain_deadlines, governing, health_watched};
use crate::decision::PlannedAction;
use crate::diagnose::{Condition, Sightings, diagnose};
use crate::domain::ClusterSnapshot;
use crate::history::{BUDGET_WINDOW, History, PastAction};
use crate::investigate;
use crate::lease::{Everything, Ownership};
use crate::plan::{Plan, plan_with_capacity};
use crate::policy::{Policy, PolicySet};
use crate::queue::WorkQueue;
use crate::resync::{default_resync_read_rate, resync_period};
use crate::supervise::panic_message;
use crate::targets::Place;
use crate::telemetry::{Silent, Telemetry, Trigger};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// How often every cluster is fully observed while no event source is healthy.
    pub resync: Duration,
    /// How often every cluster is listed and diffed while an event source is healthy, at
    /// least: see `resync_read_rate`.
    pub event_resync: Duration,
    /// The cluster-resource reads per second the resyncs of all clusters may use on average
    /// while an event source is healthy (`events.resync_budget` of the budget): a fleet whose
    /// resyncs cost more is resynced less often than `event_resync`. `None`: no bound.
    pub resync_read_rate: Option<f64>,
    /// In event mode, how often the HEALTHY RUNNING tasks under an `unhealthy` limit are
    /// re-described (events carry no health).
    pub health_interval: Duration,
    /// How many clusters are reconciled at once.
    pub concurrency: usize,
    /// Plan and record only; never mutate.
    pub dry_run: bool,
    /// Make the root-cause reads diagnosis asks for (`src/investigate.rs`).
    pub root_cause_reads: bool,
    /// The tag an Auto Scaling group must carry for the controller to write to it.
    pub managed_tag: ManagedTag,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            resync: Duration::from_secs(30),
            event_resync: Duration::from_secs(600),
            resync_read_rate: Some(default_resync_read_rate()),
            health_interval: Duration::from_secs(300),
            concurrency: 4,
            dry_run: false,
            root_cause_reads: true,
            managed_tag: ManagedTag::default(),
        }
    }
}

/// What one cluster's reconcile produced.
#[derive(Debug, Clone)]
pub struct ClusterReport {
    pub cluster: String,
    /// The fingerprint of the policy set the plan was made under.
    pub policy_set: String,
    /// The picture the reconcile judged: the cached snapshot, shared with the cache.
    pub snapshot: Arc<ClusterSnapshot>,
    pub plan: Plan,
    /// What the root-cause reads have found for this cluster so far (this pass included).
    pub clues: Arc<Clues>,
    /// Each action with what became of it.
    pub outcomes: Vec<(PlannedAction, Outcome, Option<String>)>,
}

impl ClusterReport {
    /// Actions held as `skipped:auditUnavailable`: nothing was done because the audit trail
    /// could not be written.
    pub fn held_for_audit(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|(_, outcome, _)| *outcome == Outcome::AuditUnavailable)
            .count()
    }
}

/// The result of one pass over every cluster in scope.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    pub clusters: Vec<ClusterReport>,
    /// Clusters that could not be reconciled, with why.
    pub errors: Vec<(String, CloudError)>,
}

impl PassReport {
    /// Actions planned or performed in this pass.
    pub fn action_count(&self) -> usize {
        self.clusters.iter().map(|c| c.plan.actions.len()).sum()
    }

    /// Actions held in this pass because the audit trail could not be written.
    pub fn held_for_audit(&self) -> usize {
        self.clusters
            .iter()
            .map(ClusterReport::held_for_audit)
            .sum()
    }
}

#[derive(Default)]
struct ClusterMemory {
    sightings: Sightings,
    ledger: Vec<PastAction>,
    /// (target, action) → the outcome last written to the audit trail.
    audited: HashMap<(String, String), String>,
    /// What the root-cause reads found so far (a stuck instance's boot output does not
    /// change, so it is read once).
    clues: Arc<Clues>,
}

/// The reconciling controller over one cloud.
pub struct Controller<C> {
    cloud: C,
    settings: ControllerSettings,
    policies: RwLock<Arc<PolicySet>>,
    audit: AuditSink,
    /// Whether the last audit write succeeded.
    audit_ok: AtomicBool,
    /// Names this process in attempt ids, so attempts of two processes never share one.
    process_id: String,
    attempts: AtomicU64,
    /// Numbers the reconciles, for their spans.
    reconciles: AtomicU64,
    /// Outcome records of performed calls that could not be written; written again first
    /// thing in the next reconcile.
    unwritten: Mutex<Vec<AuditRecord>>,
    memory: Mutex<HashMap<String, ClusterMemory>>,
    /// The cached picture of each cluster. Locked briefly (never across a read, never while
    /// `memory` is wanted), so applying an event is quick.
    cache: Mutex<HashMap<String, ClusterCache>>,
    /// Tasks events named in a cluster in scope whose first observation has not arrived yet:
    /// described after it (else a task whose events all came before the first picture, or
    /// were newer than it, would wait for the next resync).
    before_first: Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
    queue: Mutex<WorkQueue>,
    /// Wakes the loop when an event scheduled a cluster.
    wake: Notify,
    /// Whether an event source is healthy (event mode): set by [`crate::events::EventSink`].
    events_healthy: AtomicBool,
    telemetry: Arc<dyn Telemetry>,
    /// Which clusters this replica reconciles and may act on.
    ownership: Arc<dyn Ownership>,
    /// Set when the ownership changed (a lease taken or lost): the loop lists its scope again
    /// at once.
    scope_stale: AtomicBool,
    /// The account and Region of `cloud`, written into every audit record; `None` when not
    /// known (one ambient account whose id could not be read).
    place: Option<Place>,
}

/// Within one reconcile: closed after a failed audit write, so no further action starts
/// (nor record is tried) until the next reconcile.
#[derive(Default)]
struct TrailGate {
    closed: bool,
}

impl TrailGate {
    fn close(&mut self) {
        self.closed = true;
    }
}

/// What a run of a cluster's key reads.
#[derive(Debug)]
/// What a resync read: the full list and describe, or a list and diff against the picture.
enum Observation {
    Full(ClusterSnapshot),
    Diff(Resync),
}

enum Work {
    /// The full list and describe, holding the key (the first observation of a cluster, and
    /// `pass`).
    Resync,
    /// The full list and describe, run in the background without the key: deadline and event
    /// runs of the cluster go on meanwhile.
    Observe,
    /// Judge the picture a background observation left in the cache; when it began.
    Judge(Instant),
    /// Only what fell due.
    Targeted(Targeted),
}

#[derive(Debug)]
struct Targeted {
    trigger: Trigger,
    /// Tasks to describe: due deadlines, tasks events named, health-watched tasks.
    arns: Vec<String>,
    /// The latest deadline among them: the picture's "now" is never earlier.
    floor: Option<SystemTime>,
    /// Auto Scaling groups whose capacity chain is read again.
    groups: Vec<String>,
    /// Whether the health-watched tasks are among `arns`.
    health: bool,
}

/// A picture ready to be judged: why it was made, and what it is.
struct Prepared {
    trigger: Trigger,
    /// When the reads behind this picture began, if before this run (a background
    /// observation).
    began: Option<Instant>,
    snapshot: Arc<ClusterSnapshot>,
    sighted: Vec<(String, Condition, SystemTime)>,
}

impl<C: Cloud> Controller<C> {
    pub fn new(
        cloud: C,
        policies: PolicySet,
        settings: ControllerSettings,
        audit: AuditSink,
    ) -> Self {
        Controller {
            cloud,
            settings,
            policies: RwLock::new(Arc::new(policies)),
            audit,
            audit_ok: AtomicBool::new(true),
            process_id: process_id(),
            attempts: AtomicU64::new(0),
            reconciles: AtomicU64::new(0),
            unwritten: Mutex::new(Vec::new()),
            memory: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            before_first: Mutex::new(HashMap::new()),
            queue: Mutex::new(WorkQueue::new()),
            wake: Notify::new(),
            events_healthy: AtomicBool::new(false),
            telemetry: Arc::new(Silent),
            ownership: Arc::new(Everything),
            scope_stale: AtomicBool::new(false),
            place: None,
        }
    }

    /// Names the account and Region `cloud` reaches, in every audit record.
    pub fn with_place(mut self, place: Place) -> Self {
        self.place = Some(place);
        self
    }

    pub fn place(&self) -> Option<&Place> {
        self.place.as_ref()
    }

    /// Reconciles only the clusters `ownership` says are this replica's, and acts on them only
    /// while it may.
    pub fn with_ownership(mut self, ownership: Arc<dyn Ownership>) -> Self {
        self.ownership = ownership;
        self
    }

    /// The clusters this replica owns changed: the loop lists its scope again at once.
    pub fn scope_changed(&self) {
        self.scope_stale.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Tells `telemetry` what the loop does.
    pub fn with_telemetry(mut self, telemetry: Arc<dyn Telemetry>) -> Self {
        self.telemetry = telemetry;
        self
    }

    pub fn telemetry(&self) -> &Arc<dyn Telemetry> {
        &self.telemetry
    }

    pub fn cloud(&self) -> &C {
        &self.cloud
    }

    pub fn audit(&self) -> &AuditSink {
        &self.audit
    }

    pub fn settings(&self) -> &ControllerSettings {
        &self.settings
    }

    /// The policy set in force.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts a new, already validated policy set in force from the next reconcile on.
    pub fn set_policies(&self, policies: PolicySet) {
        *self.policies.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policies);
    }

    /// Whether an event source is healthy, so the resync runs at the event cadence.
    pub fn events_healthy(&self) -> bool {
        self.events_healthy.load(Ordering::Relaxed)
    }

    /// The cached picture of a cluster with every event applied, if it was observed.
    pub fn cached(&self, cluster: &str) -> Option<Arc<ClusterSnapshot>> {
        let mut cache = self.lock_cache();
        let entry = cache.get_mut(cluster)?;
        entry.merge_aside();
        Some(Arc::clone(entry.snapshot()))
    }

    /// When the cluster's key is due next, if it is scheduled.
    pub fn scheduled_at(&self, cluster: &str) -> Option<Instant> {
        self.lock_queue().due_at(cluster)
    }

    fn lock_cache(&self) -> MutexGuard<'_, HashMap<String, ClusterCache>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_before_first(
        &self,
    ) -> MutexGuard<'_, HashMap<String, std::collections::BTreeSet<String>>> {
        self.before_first.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_queue(&self) -> MutexGuard<'_, WorkQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_memory(&self) -> MutexGuard<'_, HashMap<String, ClusterMemory>> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The clusters the policies select: literal names as written (so a missing one is
    /// reported), and, only when some pattern is a glob, the account's clusters that match.
    pub async fn clusters_in_scope(&self) -> Result<Vec<String>, CloudError> {
        let policies = self.policies();
        let mut names = BTreeMap::new();
        let mut has_glob = false;
        for policy in &policies.policies {
            for pattern in &policy.target.cluster_patterns {
                if pattern.contains(['*', '?', '[', '{']) {
                    has_glob = true;
                } else {
                    names.insert(pattern.clone(), ());
                }
            }
        }
        if has_glob {
            for name in self.cloud.list_clusters().await? {
                if policies.for_cluster(&name).next().is_some() {
                    names.insert(name, ());
                }
            }
        }
        Ok(names
            .into_keys()
            .filter(|c| self.ownership.owns(c))
            .collect())
    }

    /// One pass over every cluster in scope (a full observation of each), `concurrency` at a
    /// time.
    pub async fn pass(self: &Arc<Self>, shutdown: &CancellationToken) -> PassReport {
        let clusters = match self.clusters_in_scope().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot list clusters in scope");
                return PassReport {
                    clusters: Vec::new(),
                    errors: vec![("*".into(), e)],
                };
            }
        };
        let results = self.reconcile_many(clusters, shutdown).await;
        let mut report = PassReport::default();
        for (cluster, result) in results {
            match result {
                Ok(r) => report.clusters.push(r),
                Err(e) => report.errors.push((cluster, e)),
            }
        }
        report.clusters.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        report.errors.sort_by(|a, b| a.0.cmp(&b.0));
        report
    }

    /// Fully observes and reconciles `clusters`, `concurrency` at a time. A reconcile that
    /// panicked is re-raised here once the others have finished: that cluster's memory
    /// (ledger, sightings) may be half-updated, so the loop must die and the process restart
    /// to rebuild it from the account.
    async fn reconcile_many(
        self: &Arc<Self>,
        clusters: Vec<String>,
        shutdown: &CancellationToken,
    ) -> Vec<(String, Result<ClusterReport, CloudError>)> {
        let limit = Arc::new(Semaphore::new(permits(self.settings.concurrency)));
        let mut set = JoinSet::new();
        let mut cluster_of_task = HashMap::new();
        for cluster in clusters {
            let name = cluster.clone();
            let task = set.spawn(Arc::clone(self).run_key(
                cluster,
                true,
                false,
                Arc::clone(&limit),
                shutdown.clone(),
            ));
            cluster_of_task.insert(task.id(), name);
        }
        let mut out = Vec::new();
        let mut panicked = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((cluster, Ran::Reconciled(result))) => out.push((cluster, *result)),
                Ok((cluster, _)) => debug!(cluster = %cluster, "shutting down: not reconciled"),
                Err(e) if e.is_panic() => {
                    let cluster = cluster_of_task.remove(&e.id()).unwrap_or_default();
                    panicked.get_or_insert(panicked_message(&cluster, e));
                }
                // Nothing aborts these tasks.
                Err(e) => warn!(error = %e, "a reconcile task was cancelled"),
            }
        }
        if let Some(message) = panicked {
            std::panic::resume_unwind(Box::new(message));
        }
        out
    }

    /// Observes, diagnoses, plans and acts on one cluster.
    pub async fn reconcile_cluster(
        &self,
        cluster: &str,
        shutdown: &CancellationToken,
    ) -> Result<ClusterReport, CloudError> {
        let prepared = self.resync(cluster).await?;
        Ok(self.reconcile_prepared(cluster, prepared, shutdown).await)
    }

    /// One run of a cluster's key, in its span: waits for a permit, reads what fell due (a
    /// shutdown drops both), then judges and acts on the picture (never cut short).
    async fn run_key(
        self: Arc<Self>,
        cluster: String,
        force_resync: bool,
        retry: bool,
        limit: Arc<Semaphore>,
        shutdown: CancellationToken,
    ) -> (String, Ran) {
        let n = self.reconciles.fetch_add(1, Ordering::Relaxed) + 1;
        let span = info_span!("reconcile", cluster = %cluster, reconcile = n);
        async move {
            let read = shutdown
                .run_until_cancelled(async {
                    let permit = limit.acquire_owned().await;
                    let started = Instant::now();
                    let work = if force_resync {
                        Some(Work::Resync)
                    } else {
                        self.next_work(&cluster, started)
                    };
                    let prepared = match work {
                        Some(Work::Observe) => return None,
                        Some(work) => self.prepare(&cluster, work).await,
                        None => Ok(None),
                    };
                    Some((permit, started, prepared))
                })
                .await;
            let Some(read) = read else {
                return (cluster, Ran::Cancelled);
            };
            let Some((_permit, mut started, prepared)) = read else {
                return (cluster, Ran::Observe);
            };
            let (trigger, result) = match prepared {
                Ok(None) => return (cluster, Ran::Idle),
                Ok(Some(p)) => {
                    started = p.began.unwrap_or(started);
                    (
                        p.trigger,
                        Ok(self.reconcile_prepared(&cluster, p, &shutdown).await),
                    )
                }
                Err((trigger, e)) => (trigger, Err(e)),
            };
            let trigger = if retry { Trigger::Retry } else { trigger };
            self.telemetry
                .reconciled(&cluster, trigger, result.as_ref(), started.elapsed());
            (cluster, Ran::Reconciled(Box::new(result)))
        }
        .instrument(span)
        .await
    }

    /// What the cluster's key has to read now; `None` when nothing fell due (it was woken
    /// early, for a time that has moved).
    fn next_work(&self, cluster: &str, now: Instant) -> Option<Work> {
        let events = self.events_healthy();
        let mut cache = self.lock_cache();
        let Some(entry) = cache.get_mut(cluster) else {
            return Some(Work::Resync);
        };
        if let Some(began) = entry.resync_ready.take() {
            return Some(Work::Judge(began));
        }
        if now >= entry.next_resync && entry.observing.is_none() {
            entry.begin_observation(now);
            return Some(Work::Observe);
        }
        let clock = entry.clock(now);
        let (mut arns, mut floor) = entry.deadlines().due(clock);
        let drain = entry.next_drain.filter(|at| *at <= clock);
        if drain.is_some() {
            floor = floor.max(drain);
        }
        let deadline = !arns.is_empty() || drain.is_some();
        let health = events && now >= entry.next_health && !entry.health_watched.is_empty();
        if health {
            arns.extend(entry.health_watched.iter().cloned());
        }
        arns.extend(entry.to_describe.iter().cloned());
        arns.sort_unstable();
        arns.dedup();
        let groups = if entry.refresh_groups {
            entry.group_names()
        } else {
            Vec::new()
        };
        let event = !entry.to_describe.is_empty() || entry.refresh_groups || entry.rediagnose;
        if arns.is_empty() && !event && !deadline {
            return None;
        }
        let trigger = if deadline || health {
            Trigger::Deadline
        } else {
            Trigger::Event
        };
        Some(Work::Targeted(Targeted {
            trigger,
            arns,
            floor,
            groups,
            health,
        }))
    }

    /// Makes the reads of `work` and merges them into the cluster's cached picture.
    async fn prepare(
        &self,
        cluster: &str,
        work: Work,
    ) -> Result<Option<Prepared>, (Trigger, CloudError)> {
        match work {
            Work::Resync => self
                .resync(cluster)
                .await
                .map(Some)
                .map_err(|e| (Trigger::Resync, e)),
            Work::Observe => Ok(None),
            Work::Judge(began) => Ok(self.judge(cluster, began)),
            Work::Targeted(t) => {
                let trigger = t.trigger;
                self.targeted(cluster, t)
                    .await
                    .map(Some)
                    .map_err(|e| (trigger, e))
            }
        }
    }

    /// The full list and describe, replacing the cached picture.
    async fn resync(&self, cluster: &str) -> Result<Prepared, CloudError> {
        // The snapshot is stamped when its observation begins, so the cache's clock starts
        // there too: started at the end, it would run behind the account by the length of the
        // observation (minutes for a large cluster) and every deadline would fire that late.
        let began = Instant::now();
        let snapshot = self.cloud.observe_cluster(cluster).await?;
        let read_at = Instant::now();
        let mut cache = self.lock_cache();
        let others: u64 = cache
            .iter()
            .filter(|(name, _)| *name != cluster)
            .map(|(_, entry)| entry.resync_reads())
            .sum();
        let entry = match cache.entry(cluster.to_string()) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let entry = o.into_mut();
                entry.replace(snapshot, began);
                entry
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                let entry = v.insert(ClusterCache::new(snapshot, began, read_at));
                // Described even if the picture lists them: the event may be newer than it.
                entry.to_describe = self.lock_before_first().remove(cluster).unwrap_or_default();
                entry
            }
        };
        entry.next_resync = read_at + self.cadence_for(others + entry.resync_reads());
        entry.next_health = read_at + self.settings.health_interval;
        Ok(Prepared {
            trigger: Trigger::Resync,
            began: None,
            snapshot: Arc::clone(entry.snapshot()),
            sighted: std::mem::take(&mut entry.sighted),
        })
    }

    /// The full list and describe of a background observation, without the cluster's key;
    /// `None` when shutdown dropped it. Returns when it began (once it had its permit).
    pub(super) async fn observe_in_background(
        &self,
        cluster: &str,
        limit: &Semaphore,
        shutdown: &CancellationToken,
    ) -> Option<(Instant, Result<(), CloudError>)> {
        let (began, observed) = shutdown
            .run_until_cancelled(async {
                let _permit = limit.acquire().await;
                let began = Instant::now();
                (began, self.observe_or_diff(cluster).await)
            })
            .await?;
        let mut cache = self.lock_cache();
        let entry = cache.get_mut(cluster)?;
        let diffed = match observed {
            Ok(Observation::Full(snapshot)) => {
                // Stamped when it began, like the snapshot (see `resync`).
                entry.replace(snapshot, began);
                false
            }
            Ok(Observation::Diff(resync)) => {
                entry.replace_diff(resync, began);
                true
            }
            Err(e) => {
                entry.abandon_observation();
                return Some((began, Err(e)));
            }
        };
        entry.resync_ready = Some(began);
        let cadence = self.resync_cadence_of(&cache);
        let entry = cache.get_mut(cluster)?;
        let read_at = Instant::now();
        entry.next_resync = read_at + cadence;
        if !diffed {
            // Only a full observation read every task's health.
            entry.next_health = read_at + self.settings.health_interval;
        }
        Some((began, Ok(())))
    }

    /// The resync's reads: while events are healthy a list and diff against the cached
    /// picture (events keep the known tasks current; deadlines and health reads re-describe
    /// the ones a decision rests on), else the full list and describe.
    async fn observe_or_diff(&self, cluster: &str) -> Result<Observation, CloudError> {
        let known = if self.events_healthy() {
            self.lock_cache().get(cluster).map(ClusterCache::known)
        } else {
            None
        };
        match known {
            Some(known) => Ok(Observation::Diff(
                self.cloud.resync_cluster(cluster, &known).await?,
            )),
            None => Ok(Observation::Full(
                self.cloud.observe_cluster(cluster).await?,
            )),
        }
    }

    /// The picture a background observation merged, ready to be judged.
    fn judge(&self, cluster: &str, began: Instant) -> Option<Prepared> {
        let mut cache = self.lock_cache();
        let entry = cache.get_mut(cluster)?;
        entry.merge_aside();
        Some(Prepared {
            trigger: Trigger::Resync,
            began: Some(began),
            snapshot: Arc::clone(entry.snapshot()),
            sighted: std::mem::take(&mut entry.sighted),
        })
    }

    /// DescribeTasks of the tasks due (100 a call) and the capacity chains asked for, merged
    /// into the cached picture.
    async fn targeted(&self, cluster: &str, work: Targeted) -> Result<Prepared, CloudError> {
        let reads = if work.arns.is_empty() {
            TaskReads::default()
        } else {
            self.cloud.describe_tasks(cluster, &work.arns).await?
        };
        let mut groups = Vec::with_capacity(work.groups.len());
        for group in &work.groups {
            groups.push(self.cloud.observe_group(group).await?);
        }
        let read_at = Instant::now();
        let mut cache = self.lock_cache();
        let Some(entry) = cache.get_mut(cluster) else {
            // Dropped from scope while reading.
            return Err(CloudError::new(
                crate::cloud::ErrorCategory::NotFound,
                "DescribeTasks",
                format!("cluster {cluster} is no longer in scope"),
            ));
        };
        let clock = entry.clock(read_at);
        let now = work.floor.map_or(clock, |floor| clock.max(floor));
        entry.merge_reads(reads, groups, now, Vec::new());
        // Read: an ARN the account did not answer for is not asked about again and again.
        for arn in &work.arns {
            entry.to_describe.remove(arn);
        }
        if !work.groups.is_empty() {
            entry.refresh_groups = false;
        }
        entry.rediagnose = false;
        if work.health {
            entry.next_health = read_at + self.settings.health_interval;
        }
        Ok(Prepared {
            trigger: work.trigger,
            began: None,
            snapshot: Arc::clone(entry.snapshot()),
            sighted: std::mem::take(&mut entry.sighted),
        })
    }

    /// The resync cadence in force: `resync` while no event source is healthy; while one is,
    /// `event_resync`, stretched so that the resyncs of every cached cluster stay within
    /// `resync_read_rate` on average ([`resync_period`]).
    fn resync_cadence_of(&self, cache: &HashMap<String, ClusterCache>) -> Duration {
        if !self.events_healthy() {
            return self.settings.resync;
        }
        self.cadence_for(cache.values().map(ClusterCache::resync_reads).sum())
    }

    /// How soon a task past its deadline is read again (see the module doc).
    fn reread_interval(&self) -> Duration {
        if self.events_healthy() {
            self.settings.resync.max(self.settings.health_interval)
        } else {
            self.settings.resync
        }
    }

    /// The cadence in force when one resync of every cached cluster costs `reads`.
    fn cadence_for(&self, reads: u64) -> Duration {
        if !self.events_healthy() {
            return self.settings.resync;
        }
        resync_period(
            self.settings.event_resync,
            reads,
            self.settings.resync_read_rate,
        )
    }

    /// Judges and acts on a prepared picture, then works out the cluster's deadlines anew.
    async fn reconcile_prepared(
        &self,
        cluster: &str,
        prepared: Prepared,
        shutdown: &CancellationToken,
    ) -> ClusterReport {
        let report = self
            .reconcile_observed(
                cluster,
                Arc::clone(&prepared.snapshot),
                prepared.sighted,
                shutdown,
            )
            .await;
        self.track(cluster, &prepared.snapshot);
        report
    }

    /// Rebuilds the cluster's deadlines and health-watched tasks from the picture just judged.
    /// Tasks an event changed meanwhile keep the deadline the event gave them.
    fn track(&self, cluster: &str, snapshot: &ClusterSnapshot) {
        let policies = self.policies();
        let (due, health, drain) = {
            let memory = self.lock_memory();
            let empty = Sightings::default();
            let sightings = memory.get(cluster).map_or(&empty, |m| &m.sightings);
            let due: Vec<(String, Deadline)> = deadlines(snapshot, &policies, sightings)
                .into_iter()
                .map(|(arn, d)| (arn.to_string(), d))
                .collect();
            let drain = drain_deadlines(snapshot, &policies, sightings)
                .into_iter()
                .map(|(_, at)| at + DEADLINE_SLACK)
                .filter(|at| *at > snapshot.observed_at)
                .min();
            (due, health_watched_tasks(snapshot, &policies), drain)
        };
        let mut cache = self.lock_cache();
        let Some(entry) = cache.get_mut(cluster) else {
            return;
        };
        let now = snapshot.observed_at;
        // Tasks an event changed, or added, since the picture judged was taken.
        let changed: Vec<(String, Option<Deadline>)> = snapshot
            .tasks
            .iter()
            .filter_map(|t| entry.task(&t.arn).filter(|c| c.version > t.version))
            .map(|t| &t.arn)
            .chain(entry.aside_arns())
            .map(|arn| (arn.clone(), entry.deadlines().get(arn).copied()))
            .collect();
        let deadlines = entry.deadlines_mut();
        deadlines.rebuild(
            due.iter().map(|(a, d)| (a.as_str(), *d)),
            now,
            self.reread_interval(),
        );
        for (arn, deadline) in changed {
            deadlines.set(&arn, deadline, now);
        }
        entry.health_watched = health;
        entry.next_drain = drain;
    }

    /// When the cluster's key should run next: its next resync, its earliest deadline, or (in
    /// event mode) its next health read.
    fn next_run(&self, cluster: &str) -> Option<Instant> {
        let events = self.events_healthy();
        let cache = self.lock_cache();
        let entry = cache.get(cluster)?;
        let deadline = [entry.deadlines().next_wake(), entry.next_drain]
            .into_iter()
            .flatten()
            .min()
            .map(|t| entry.instant_of(t));
        let health = (events && !entry.health_watched.is_empty()).then_some(entry.next_health);
        // While an observation is in flight its arrival schedules the key.
        let resync = entry.observing.is_none().then_some(entry.next_resync);
        let event = (!entry.to_describe.is_empty() || entry.refresh_groups || entry.rediagnose)
            .then(Instant::now);
        [resync, deadline, health, event]
            .into_iter()
            .flatten()
            .min()
    }

    /// Diagnose, investigate, plan and act on one cluster as observed. Once an action has
    /// started, its calls run to the end: shutdown only stops the next action from starting.
    async fn reconcile_observed(
        &self,
        cluster: &str,
        snapshot: Arc<ClusterSnapshot>,
        sighted: Vec<(String, Condition, SystemTime)>,
        shutdown: &CancellationToken,
    ) -> ClusterReport {
        let policies = self.policies();
        // The memory is not held across the reads: take what they need, read, re-lock, plan.
        let (diagnosis, capacity, selection) = {
            let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            let mem = memory.entry(cluster.to_string()).or_default();
            for (arn, condition, at) in sighted {
                mem.sightings.saw(&arn, condition, at);
            }
            mem.sightings.record(&snapshot);
            let now = snapshot.observed_at;
            mem.ledger
                .retain(|a| now.duration_since(a.at).unwrap_or(Duration::ZERO) < BUDGET_WINDOW);
            let diagnosis = diagnose(&snapshot, &policies, &mem.sightings);
            investigate::prepare(Arc::make_mut(&mut mem.clues), &snapshot);
            let capacity = diagnose_capacity(&snapshot, &diagnosis, &policies, &mem.clues);
            let selection = investigate::select(
                &snapshot,
                &capacity,
                &policies,
                &mem.clues,
                self.settings.root_cause_reads,
            );
            (diagnosis, capacity, selection)
        };
        let found = investigate::read(&self.cloud, &selection.to_read).await;
        let (plan, clues) = {
            let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            let mem = memory.entry(cluster.to_string()).or_default();
            let learned = !selection.to_read.is_empty() || !selection.skipped.is_empty();
            investigate::store(Arc::make_mut(&mut mem.clues), found, &selection.skipped);
            // The capacity findings are made again only when this pass's reads added clues.
            let capacity = if learned {
                diagnose_capacity(&snapshot, &diagnosis, &policies, &mem.clues)
            } else {
                capacity
            };
            let history = History::rebuild(&snapshot, &mem.ledger);
            let plan = plan_with_capacity(
                &snapshot,
                diagnosis,
                capacity,
                &policies,
                &history,
                &mem.sightings,
                &self.settings.managed_tag,
                self.settings.dry_run,
            );
            (plan, Arc::clone(&mem.clues))
        };
        if !snapshot.gaps.is_empty() {
            warn!(gaps = ?snapshot.gaps, "observation incomplete");
        }
        let mut trail = TrailGate::default();
        self.write_unwritten(&mut trail);
        for held in &plan.held {
            info_span!("action", policy = %held.policy)
                .in_scope(|| self.record_held(held, &snapshot, &policies.fingerprint, &mut trail));
        }
        let mut outcomes = Vec::new();
        for action in &plan.actions {
            if shutdown.is_cancelled() {
                info!("shutting down: no further actions started");
                break;
            }
            let (outcome, detail) = self
                .perform(action, &snapshot, &policies.fingerprint, &mut trail)
                .instrument(info_span!("action", policy = %action.policy))
                .await;
            outcomes.push((action.clone(), outcome, detail));
        }
        self.forget_gone_tasks(&snapshot);
        ClusterReport {
            cluster: cluster.to_string(),
            policy_set: policies.fingerprint.clone(),
            snapshot,
            plan,
            clues,
            outcomes,
        }
    }

    /// Whether the last audit record was written (for readiness). False from a failed write
    /// until the next record is written whole; while false, enforced actions are held as
    /// `skipped:auditUnavailable` whenever their intent cannot be written.
    pub fn audit_available(&self) -> bool {
        self.audit_ok.load(Ordering::Relaxed)
    }
}

/// What one run of a cluster's key came to.
enum Ran {
    Reconciled(Box<Result<ClusterReport, CloudError>>),
    /// Woken early: nothing had fallen due.
    Idle,
    /// Its resync is due: the loop starts the full observation in the background, and the key
    /// is free until it arrives.
    Observe,
    /// Shutdown came while it waited for its permit or read.
    Cancelled,
}

/// The permits of `concurrency`: more permits than clusters change nothing, and tokio refuses
/// more than MAX_PERMITS.
fn permits(concurrency: usize) -> usize {
    concurrency.clamp(1, Semaphore::MAX_PERMITS)
}

/// The loop's last words about a panicked reconcile.
fn panicked_message(cluster: &str, e: tokio::task::JoinError) -> String {
    let message = panic_message(e.into_panic());
    format!("the reconcile of cluster {cluster} panicked: {message}")
}

/// The tasks whose health is re-read on the health cadence in event mode.
fn health_watched_tasks(snapshot: &ClusterSnapshot, policies: &PolicySet) -> Vec<String> {
    let in_cluster: Vec<&Policy> = policies.for_cluster(&snapshot.cluster_name).collect();
    snapshot
        .tasks
        .iter()
        .filter(|t| governing(&in_cluster, t).is_some_and(|p| health_watched(t, p)))
        .map(|t| t.arn.clone())
        .collect()
}

/// A random 8-hex-digit name for this controller instance (std's per-process random hash
/// keys; no clock read, no extra dependency).
fn process_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

/// Seconds of `t` after `start`, for narration.
pub fn since(start: SystemTime, t: SystemTime) -> Duration {
    t.duration_since(start).unwrap_or(Duration::ZERO)
}
