//! The controller loop: per cluster, observe → diagnose → investigate (the root-cause reads,
//! `src/investigate.rs`) → plan → act, then requeue.
//!
//! Every cluster in scope is reconciled each resync interval, a bounded number at a time. A
//! cluster whose reconcile fails is requeued with exponential backoff (backon) and does not
//! hold up the others. On shutdown no new cluster or action is started, the call in flight
//! completes, and the audit trail is flushed.
//!
//! Acting is write-ahead: an enforced action's intent record is written before its first
//! mutating call and its outcome record (same attempt id) after the last. When the intent
//! cannot be written, nothing is called: the action is held as `skipped:auditUnavailable`,
//! logged at error level, and due again next pass. After any failed audit write, the rest of
//! that reconcile starts no action; [`Controller::audit_available`] says whether the last
//! write succeeded.
//!
//! The only state kept in memory is what can be rebuilt or safely forgotten: when tasks were
//! first seen in a state (forgetting it only delays action), a ledger of the actions this
//! process took (covers stale reads; the same facts are on the tasks and the groups' tags,
//! except for drains, which only the ledger counts against the budget), which audit records were
//! already written (to keep the trail free of repeats), and outcome records that could not be
//! written yet (also logged whole at error level).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::audit::{AuditRecord, AuditSink, Outcome, mode_name};
use crate::capacity::diagnose_capacity;
use crate::capacity::tags::ManagedTag;
use crate::causes::Clues;
use crate::cloud::{Cloud, CloudError, ErrorCategory};
use crate::decision::{Action, HeldAction, PlannedAction};
use crate::diagnose::{Sightings, diagnose};
use crate::domain::{ClusterSnapshot, Tags};
use crate::history::{BUDGET_WINDOW, History, PastAction, cordon_key, nudge_key};
use crate::investigate;
use crate::plan::{Plan, plan_with_capacity};
use crate::policy::{PolicyMode, PolicySet};
use crate::supervise::panic_message;
use crate::telemetry::{Silent, Telemetry, Trigger};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// How often every cluster is reconciled.
    pub resync: Duration,
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
    pub snapshot: ClusterSnapshot,
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
    /// Outcome records of performed calls that could not be written; written again first
    /// thing in the next reconcile.
    unwritten: Mutex<Vec<AuditRecord>>,
    memory: Mutex<HashMap<String, ClusterMemory>>,
    telemetry: Arc<dyn Telemetry>,
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
            unwritten: Mutex::new(Vec::new()),
            memory: Mutex::new(HashMap::new()),
            telemetry: Arc::new(Silent),
        }
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
        Ok(names.into_keys().collect())
    }

    /// One pass over every cluster in scope, `concurrency` at a time.
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

    /// Reconciles `clusters`, `concurrency` at a time. A reconcile that panicked is re-raised
    /// here once the others have finished: that cluster's memory (ledger, sightings) may be
    /// half-updated, so the loop must die and the process restart to rebuild it from the account.
    async fn reconcile_many(
        self: &Arc<Self>,
        clusters: Vec<String>,
        shutdown: &CancellationToken,
    ) -> Vec<(String, Result<ClusterReport, CloudError>)> {
        // More permits than clusters change nothing; tokio refuses more than MAX_PERMITS.
        let permits = self.settings.concurrency.clamp(1, Semaphore::MAX_PERMITS);
        let limit = Arc::new(Semaphore::new(permits));
        let mut set = JoinSet::new();
        let mut cluster_of_task = HashMap::new();
        for cluster in clusters {
            let this = Arc::clone(self);
            let limit = Arc::clone(&limit);
            let shutdown = shutdown.clone();
            let span = info_span!("reconcile", cluster = %cluster);
            let name = cluster.clone();
            let task = set.spawn(
                async move {
                    // Waiting for a permit and observing are reads: a shutdown drops them, so a
                    // large pass does not hold the stop up. Acting is never cut short.
                    let observed = shutdown
                        .run_until_cancelled(async {
                            let permit = limit.acquire_owned().await;
                            let started = Instant::now();
                            (permit, started, this.cloud.observe_cluster(&cluster).await)
                        })
                        .await;
                    let Some((_permit, started, snapshot)) = observed else {
                        return (cluster, None);
                    };
                    let result = match snapshot {
                        Ok(snapshot) => {
                            Ok(this.reconcile_observed(&cluster, snapshot, &shutdown).await)
                        }
                        Err(e) => Err(e),
                    };
                    this.telemetry.reconciled(
                        &cluster,
                        Trigger::Resync,
                        result.as_ref(),
                        started.elapsed(),
                    );
                    (cluster, Some(result))
                }
                .instrument(span),
            );
            cluster_of_task.insert(task.id(), name);
        }
        let mut out = Vec::new();
        let mut panicked = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((cluster, Some(result))) => out.push((cluster, result)),
                Ok((cluster, None)) => debug!(cluster = %cluster, "shutting down: not reconciled"),
                Err(e) if e.is_panic() => {
                    let cluster = cluster_of_task.remove(&e.id()).unwrap_or_default();
                    let message = panic_message(e.into_panic());
                    panicked.get_or_insert(format!(
                        "the reconcile of cluster {cluster} panicked: {message}"
                    ));
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

    /// Observe, diagnose, plan and act on one cluster.
    pub async fn reconcile_cluster(
        &self,
        cluster: &str,
        shutdown: &CancellationToken,
    ) -> Result<ClusterReport, CloudError> {
        let snapshot = self.cloud.observe_cluster(cluster).await?;
        Ok(self.reconcile_observed(cluster, snapshot, shutdown).await)
    }

    /// Diagnose, investigate, plan and act on one cluster as observed. Once an action has
    /// started, its calls run to the end: shutdown only stops the next action from starting.
    async fn reconcile_observed(
        &self,
        cluster: &str,
        snapshot: ClusterSnapshot,
        shutdown: &CancellationToken,
    ) -> ClusterReport {
        let policies = self.policies();
        // The memory is not held across the reads: take what they need, read, re-lock, plan.
        let (diagnosis, capacity, selection) = {
            let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
            let mem = memory.entry(cluster.to_string()).or_default();
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
            self.record_held(held, &snapshot, &policies.fingerprint, &mut trail);
        }
        let mut outcomes = Vec::new();
        for action in &plan.actions {
            if shutdown.is_cancelled() {
                info!("shutting down: no further actions started");
                break;
            }
            let (outcome, detail) = self
                .perform(action, &snapshot, &policies.fingerprint, &mut trail)
                .await;
            outcomes.push((action.clone(), outcome, detail));
        }
        self.forget_gone_tasks(&snapshot);
        ClusterReport {
            cluster: cluster.to_string(),
            snapshot,
            plan,
            clues,
            outcomes,
        }
    }

    /// One action under the write-ahead rule: in dry-run mode only recorded as planned;
    /// otherwise its intent is written first (nothing is called if that fails: the action is
    /// held as `skipped:auditUnavailable`), then the calls are made, then the outcome is
    /// written with the intent's attempt id.
    async fn perform(
        &self,
        planned: &PlannedAction,
        snapshot: &ClusterSnapshot,
        policy_set: &str,
        trail: &mut TrailGate,
    ) -> (Outcome, Option<String>) {
        let record = |outcome, detail, attempt| {
            action_record(planned, snapshot, policy_set, outcome, detail, attempt)
        };
        if planned.mode == PolicyMode::Audit {
            self.record_once(record(Outcome::Planned, None, None), trail);
            return (Outcome::Planned, None);
        }
        if trail.closed {
            let detail = "the audit trail failed earlier in this reconcile; nothing was done";
            self.hold_for_audit(&record(
                Outcome::AuditUnavailable,
                Some(detail.into()),
                None,
            ));
            return (Outcome::AuditUnavailable, Some(detail.into()));
        }
        let attempt = self.next_attempt();
        let intent = record(
            Outcome::Started,
            Some(intended_calls(&planned.action)),
            Some(attempt.clone()),
        );
        if let Err(e) = self.write_audit(&intent) {
            trail.close();
            self.audit_ok.store(false, Ordering::Relaxed);
            let detail = format!("the intent record could not be written ({e}); nothing was done");
            let held = record(
                Outcome::AuditUnavailable,
                Some(detail.clone()),
                Some(attempt),
            );
            // Closes the attempt in case the intent reached the trail after all.
            let _ = self.write_audit(&held);
            self.hold_for_audit(&held);
            return (Outcome::AuditUnavailable, Some(detail));
        }
        self.audit_ok.store(true, Ordering::Relaxed);
        let (outcome, detail) = self.act(planned, snapshot).await;
        self.record_outcome(
            planned,
            record(outcome.clone(), detail.clone(), Some(attempt)),
            trail,
        );
        (outcome, detail)
    }

    /// Makes the calls of one enforced action. Returns the outcome and a detail line.
    async fn act(
        &self,
        planned: &PlannedAction,
        snapshot: &ClusterSnapshot,
    ) -> (Outcome, Option<String>) {
        let cluster = &snapshot.cluster_name;
        let ledger_entry = || PastAction {
            at: snapshot.observed_at,
            policy: planned.policy.clone(),
            kind: planned.action.kind(),
            service: planned.service.clone(),
            target: planned.action.target().to_string(),
            condition: planned.condition,
        };
        match &planned.action {
            Action::StopServiceTask {
                task_arn,
                stop_reason,
            } => match self.cloud.stop_task(cluster, task_arn, stop_reason).await {
                Ok(()) => {
                    self.remember(cluster, ledger_entry());
                    (Outcome::Done, None)
                }
                Err(e) => failed(e, None),
            },
            Action::ReplaceStandaloneTask {
                task_arn,
                stop_reason,
                run,
            } => {
                if let Err(e) = self.cloud.stop_task(cluster, task_arn, stop_reason).await {
                    return failed(e, Some("StopTask failed; nothing was started"));
                }
                self.remember(cluster, ledger_entry());
                match self.cloud.run_task(cluster, run).await {
                    Ok(new_arn) => (Outcome::Done, Some(format!("replacement {new_arn}"))),
                    Err(e) => failed(
                        e,
                        Some(
                            "stopped, but RunTask failed; retried next pass with the same client token",
                        ),
                    ),
                }
            }
            Action::FinishReplacement { run, .. } => {
                match self.cloud.run_task(cluster, run).await {
                    Ok(new_arn) => (Outcome::Done, Some(format!("replacement {new_arn}"))),
                    Err(e) => failed(e, Some("retried next pass with the same client token")),
                }
            }
            Action::CordonLaunchTemplate {
                group,
                group_arn,
                template_id,
                version,
                tag,
                pin_to,
                terminate,
            } => {
                // The cordon counts once its tag is written (the tag itself counts after a
                // restart), whatever becomes of pinning and terminating.
                let recorded = || {
                    let key = cordon_key(group_arn, template_id, *version);
                    self.remember(
                        cluster,
                        PastAction {
                            target: key,
                            ..ledger_entry()
                        },
                    );
                };
                self.cordon(
                    group,
                    template_id,
                    *version,
                    tag,
                    *pin_to,
                    terminate,
                    recorded,
                )
                .await
            }
            Action::NudgeCapacity {
                group,
                group_arn,
                to,
                tag,
                ..
            } => {
                if let Some((k, v)) = tag {
                    let tags = Tags::from([(k.clone(), v.clone())]);
                    if let Err(e) = self.cloud.tag_group(group, &tags).await {
                        return failed(e, Some("nothing changed"));
                    }
                    let key = nudge_key(group_arn, snapshot.observed_at);
                    self.remember(
                        cluster,
                        PastAction {
                            target: key,
                            ..ledger_entry()
                        },
                    );
                }
                match self.cloud.set_desired_capacity(group, *to).await {
                    Ok(()) => (Outcome::Done, Some(format!("desired capacity {to}"))),
                    Err(e) => failed(
                        e,
                        Some("the nudge is recorded on the group and finished next pass"),
                    ),
                }
            }
            Action::DrainContainerInstance {
                container_instance_arn,
            } => match self
                .cloud
                .drain_container_instance(cluster, container_instance_arn)
                .await
            {
                Ok(()) => {
                    self.remember(cluster, ledger_entry());
                    (Outcome::Done, Some("DRAINING".into()))
                }
                Err(e) => failed(e, None),
            },
        }
    }

    /// Tag first (so the cordon survives anything that follows), then pin, then terminate the
    /// never-registered instances. Each step is idempotent; a restart redoes what is missing.
    /// `recorded` is called once the tag is written.
    #[allow(clippy::too_many_arguments)]
    async fn cordon(
        &self,
        group: &str,
        template_id: &str,
        version: u32,
        tag: &Option<(String, String)>,
        pin_to: Option<u32>,
        terminate: &[String],
        recorded: impl FnOnce(),
    ) -> (Outcome, Option<String>) {
        let mut done = Vec::new();
        if let Some((k, v)) = tag {
            let tags = Tags::from([(k.clone(), v.clone())]);
            if let Err(e) = self.cloud.tag_group(group, &tags).await {
                return failed(e, Some("nothing changed"));
            }
            recorded();
            done.push(format!(
                "cordon of {template_id} version {version} recorded"
            ));
        }
        if let Some(good) = pin_to {
            if let Err(e) = self
                .cloud
                .pin_launch_template_version(group, template_id, good)
                .await
            {
                let note = format!("{}; pinning failed, retried next pass", done.join("; "));
                return failed(e, Some(&note));
            }
            done.push(format!("pinned to version {good}"));
        } else if tag.is_some() && terminate.is_empty() {
            done.push("no known-good version: nothing pinned, nothing terminated".into());
        }
        let mut terminated = Vec::new();
        for instance in terminate {
            match self.cloud.terminate_instance(instance).await {
                Ok(()) => terminated.push(instance.as_str()),
                Err(e) if e.category == ErrorCategory::NotFound => {}
                Err(e) => {
                    let note = format!(
                        "{}; terminated {:?}; the rest retried next pass",
                        done.join("; "),
                        terminated
                    );
                    return failed(e, Some(&note));
                }
            }
        }
        if !terminated.is_empty() {
            done.push(format!("terminated {}", terminated.join(", ")));
        }
        (Outcome::Done, Some(done.join("; ")))
    }

    fn remember(&self, cluster: &str, action: PastAction) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory
            .entry(cluster.to_string())
            .or_default()
            .ledger
            .push(action);
    }

    fn record_held(
        &self,
        held: &HeldAction,
        snapshot: &ClusterSnapshot,
        policy_set: &str,
        trail: &mut TrailGate,
    ) {
        self.record_once(
            AuditRecord {
                time: AuditRecord::time_of(snapshot.observed_at),
                mode: mode_name(held.mode),
                policy_set: policy_set.to_string(),
                policy: held.policy.clone(),
                action: held.action.to_string(),
                target: held.target.clone(),
                cluster: held.cluster.clone(),
                service: held.service.clone(),
                reason: held.reason.clone(),
                evidence: Arc::clone(&held.evidence),
                outcome: Outcome::Skipped(held.hold.name()),
                attempt: None,
                detail: Some(held.hold.detail()),
            },
            trail,
        );
    }

    /// Writes a planned or skipped record unless the same decision on the same target was
    /// already written. A record that could not be written is tried again next pass.
    fn record_once(&self, record: AuditRecord, trail: &mut TrailGate) {
        if trail.closed || self.already_audited(&record) {
            return;
        }
        if record.outcome == Outcome::Planned {
            info!(action = %record.action, target = %record.target, reason = %record.reason, outcome = %record.outcome, "action");
        }
        if self.write(&record, trail) {
            self.mark_audited(&record);
        }
    }

    /// Writes the outcome of an attempt whose calls were made. If it cannot be written, the
    /// whole record goes to the log at error level, and the trail is closed for the rest of
    /// the reconcile.
    fn record_outcome(&self, planned: &PlannedAction, record: AuditRecord, trail: &mut TrailGate) {
        let (action, target, outcome) = (&record.action, &record.target, &record.outcome);
        if *outcome == Outcome::Done {
            info!(action = %action, target = %target, reason = %planned.reason, outcome = %outcome, "action");
        } else {
            warn!(action = %action, target = %target, reason = %planned.reason, outcome = %outcome, detail = ?record.detail, "action");
        }
        if let Err(e) = self.write_audit(&record) {
            trail.close();
            self.audit_ok.store(false, Ordering::Relaxed);
            error!(
                error = %e,
                record = %record.to_json(),
                "cannot write the outcome of an action that was performed (the record is here; \
                 it is tried again next reconcile)"
            );
            self.lock_unwritten().push(record);
            return;
        }
        self.audit_ok.store(true, Ordering::Relaxed);
        if record.outcome != Outcome::Done {
            self.mark_audited(&record);
        }
    }

    /// Writes the outcome records that could not be written before, oldest first; stops at
    /// the first failure (closing the trail for this reconcile) and keeps the rest.
    fn write_unwritten(&self, trail: &mut TrailGate) {
        let pending = std::mem::take(&mut *self.lock_unwritten());
        let mut rest = pending.into_iter();
        for record in rest.by_ref() {
            if let Err(e) = self.write_audit(&record) {
                warn!(error = %e, attempt = ?record.attempt, "the audit trail still cannot be written");
                trail.close();
                self.audit_ok.store(false, Ordering::Relaxed);
                let mut unwritten = self.lock_unwritten();
                let newer = std::mem::take(&mut *unwritten);
                unwritten.extend(std::iter::once(record).chain(rest).chain(newer));
                return;
            }
            self.audit_ok.store(true, Ordering::Relaxed);
            info!(attempt = ?record.attempt, "outcome record written late");
        }
    }

    fn lock_unwritten(&self) -> std::sync::MutexGuard<'_, Vec<AuditRecord>> {
        self.unwritten.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs an action held because the audit trail cannot be written.
    fn hold_for_audit(&self, record: &AuditRecord) {
        error!(
            action = %record.action,
            target = %record.target,
            reason = %record.reason,
            outcome = %record.outcome,
            detail = ?record.detail,
            "action held: the audit trail cannot be written"
        );
    }

    /// Whether this decision (target, action, outcome) was already written.
    fn already_audited(&self, record: &AuditRecord) -> bool {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let key = (record.target.clone(), record.action.clone());
        memory
            .get(&record.cluster)
            .and_then(|mem| mem.audited.get(&key))
            .is_some_and(|last| *last == record.outcome.to_string())
    }

    fn mark_audited(&self, record: &AuditRecord) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let mem = memory.entry(record.cluster.clone()).or_default();
        mem.audited.insert(
            (record.target.clone(), record.action.clone()),
            record.outcome.to_string(),
        );
    }

    /// The id of the next attempt of an action: this process's id and a sequence number.
    fn next_attempt(&self) -> String {
        let n = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}-{n}", self.process_id)
    }

    fn forget_gone_tasks(&self, snapshot: &ClusterSnapshot) {
        let present: HashSet<&str> = snapshot
            .tasks
            .iter()
            .map(|t| t.arn.as_str())
            .chain(snapshot.auto_scaling_groups.iter().map(|g| g.arn.as_str()))
            .chain(snapshot.container_instances.iter().map(|c| c.arn.as_str()))
            .chain(
                snapshot
                    .capacity_providers
                    .iter()
                    .filter_map(|p| p.auto_scaling_group_arn.as_deref()),
            )
            .collect();
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mem) = memory.get_mut(&snapshot.cluster_name) {
            mem.audited
                .retain(|(target, _), _| present.contains(target.as_str()));
        }
    }

    /// Writes a record that stands for no call (planned, skipped); on failure logs it whole
    /// and closes the trail for the rest of the reconcile. Whether it was written.
    fn write(&self, record: &AuditRecord, trail: &mut TrailGate) -> bool {
        match self.write_audit(record) {
            Ok(()) => {
                self.audit_ok.store(true, Ordering::Relaxed);
                true
            }
            Err(e) => {
                trail.close();
                self.audit_ok.store(false, Ordering::Relaxed);
                error!(error = %e, record = %record.to_json(), "cannot write the audit trail");
                false
            }
        }
    }

    /// Writes one audit record and, once it is written, tells the telemetry.
    fn write_audit(&self, record: &AuditRecord) -> std::io::Result<()> {
        self.audit.record(record)?;
        self.telemetry.recorded(record);
        Ok(())
    }

    /// Whether the last audit record was written (for readiness). False from a failed write
    /// until the next record is written whole; while false, enforced actions are held as
    /// `skipped:auditUnavailable` whenever their intent cannot be written.
    pub fn audit_available(&self) -> bool {
        self.audit_ok.load(Ordering::Relaxed)
    }

    /// Reconciles every cluster in scope each resync interval until `shutdown` is cancelled.
    /// A cluster whose reconcile fails is retried sooner, with exponential backoff.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut due: BTreeMap<String, Instant> = BTreeMap::new();
        let mut backoffs: HashMap<String, ExponentialBackoff> = HashMap::new();
        let mut next_scope_refresh = Instant::now();
        let mut scope: Vec<String> = Vec::new();
        while !shutdown.is_cancelled() {
            self.telemetry.loop_progressed();
            let now = Instant::now();
            if now >= next_scope_refresh {
                match self.clusters_in_scope().await {
                    Ok(clusters) => {
                        scope = clusters;
                        next_scope_refresh = now + self.settings.resync;
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot list clusters in scope; retrying");
                        next_scope_refresh =
                            now + backoff_step(&mut backoffs, "*", self.settings.resync);
                    }
                }
                due.retain(|c, _| scope.contains(c));
                for cluster in &scope {
                    due.entry(cluster.clone()).or_insert(now);
                }
            }
            let ready: Vec<String> = due
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(c, _)| c.clone())
                .collect();
            for (cluster, result) in self.reconcile_many(ready, &shutdown).await {
                let delay = match result {
                    Ok(report) => {
                        backoffs.remove(&cluster);
                        info!(
                            cluster = %cluster,
                            findings = report.plan.findings.len(),
                            actions = report.plan.actions.len(),
                            held = report.plan.held.len(),
                            "reconciled"
                        );
                        self.settings.resync
                    }
                    Err(e) => {
                        let delay = backoff_step(&mut backoffs, &cluster, self.settings.resync);
                        warn!(cluster = %cluster, error = %e, retry_in = ?delay, "reconcile failed");
                        delay
                    }
                };
                due.insert(cluster, Instant::now() + delay);
            }
            let wake = due
                .values()
                .copied()
                .min()
                .unwrap_or(next_scope_refresh)
                .min(next_scope_refresh);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        if let Err(e) = self.audit.flush() {
            warn!(error = %e, "cannot flush the audit trail");
        }
        info!("controller stopped");
    }
}

/// A random 8-hex-digit name for this controller instance (std's per-process random hash
/// keys; no clock read, no extra dependency).
fn process_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:08x}", h.finish() as u32)
}

/// The audit record of a planned action with this outcome.
fn action_record(
    planned: &PlannedAction,
    snapshot: &ClusterSnapshot,
    policy_set: &str,
    outcome: Outcome,
    detail: Option<String>,
    attempt: Option<String>,
) -> AuditRecord {
    AuditRecord {
        time: AuditRecord::time_of(snapshot.observed_at),
        mode: mode_name(planned.mode),
        policy_set: policy_set.to_string(),
        policy: planned.policy.clone(),
        action: planned.action.name().to_string(),
        target: planned.action.target().to_string(),
        cluster: planned.cluster.clone(),
        service: planned.service.clone(),
        reason: planned.reason.clone(),
        evidence: Arc::clone(&planned.evidence),
        outcome,
        attempt,
        detail,
    }
}

/// The mutating calls an action is about to make, in order, for its intent record.
fn intended_calls(action: &Action) -> String {
    // The tag's value repeats the reason; its key says what it records.
    let tag = |tag: &Option<(String, String)>| {
        tag.as_ref()
            .map(|(key, _)| format!("CreateOrUpdateTags {key}"))
    };
    let calls: Vec<String> = match action {
        Action::StopServiceTask { .. } => vec!["StopTask".into()],
        Action::ReplaceStandaloneTask { run, .. } => vec![
            "StopTask".into(),
            format!("RunTask (client token {})", run.client_token),
        ],
        Action::FinishReplacement { run, .. } => {
            vec![format!("RunTask (client token {})", run.client_token)]
        }
        Action::CordonLaunchTemplate {
            tag: cordon,
            pin_to,
            terminate,
            ..
        } => tag(cordon)
            .into_iter()
            .chain(pin_to.map(|v| format!("UpdateAutoScalingGroup to version {v}")))
            .chain((!terminate.is_empty()).then(|| {
                format!(
                    "TerminateInstanceInAutoScalingGroup {}",
                    terminate.join(", ")
                )
            }))
            .collect(),
        Action::NudgeCapacity {
            from,
            to,
            tag: nudge,
            ..
        } => tag(nudge)
            .into_iter()
            .chain([format!("SetDesiredCapacity {from} -> {to}")])
            .collect(),
        Action::DrainContainerInstance { .. } => {
            vec!["UpdateContainerInstancesState DRAINING".into()]
        }
    };
    if calls.is_empty() {
        "calls: none".into()
    } else {
        format!("calls: {}", calls.join("; "))
    }
}

fn failed(e: CloudError, note: Option<&str>) -> (Outcome, Option<String>) {
    let detail = match note {
        Some(n) => format!("{e}; {n}"),
        None => e.to_string(),
    };
    (Outcome::Failed(e.category.as_str()), Some(detail))
}

/// The next retry delay for a key: 1 s doubling up to `max`, with jitter.
fn backoff_step(
    backoffs: &mut HashMap<String, ExponentialBackoff>,
    key: &str,
    max: Duration,
) -> Duration {
    let backoff = backoffs.entry(key.to_string()).or_insert_with(|| {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(max)
            .with_jitter()
            .without_max_times()
            .build()
    });
    backoff.next().unwrap_or(max)
}

/// Seconds of `t` after `start`, for narration.
pub fn since(start: SystemTime, t: SystemTime) -> Duration {
    t.duration_since(start).unwrap_or(Duration::ZERO)
}
