//! Acting on a plan: each action under the write-ahead rule (intent record, calls, outcome
//! record), and the audit trail's bookkeeping (records written once, outcomes written late).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{error, info, warn};

use super::{Controller, TrailGate};
use crate::audit::{AuditRecord, Outcome, mode_name};
use crate::cloud::{Cloud, CloudError, ErrorCategory};
use crate::decision::{Action, HeldAction, PlannedAction};
use crate::domain::{ClusterSnapshot, Tags};
use crate::history::{PastAction, cordon_key, nudge_key};
use crate::lease::LEASE_NOT_HELD;
use crate::policy::PolicyMode;

impl<C: Cloud> Controller<C> {
    /// One action under the write-ahead rule: in dry-run mode only recorded as planned;
    /// otherwise its intent is written first (nothing is called if that fails: the action is
    /// held as `skipped:auditUnavailable`), then the calls are made, then the outcome is
    /// written with the intent's attempt id.
    pub(super) async fn perform(
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
        if !self.ownership.may_act(&snapshot.cluster_name) {
            let detail =
                "this replica does not hold the lease of the cluster's shard; nothing was done";
            let held = record(Outcome::Skipped(LEASE_NOT_HELD), Some(detail.into()), None);
            self.record_once(held, trail);
            return (Outcome::Skipped(LEASE_NOT_HELD), Some(detail.into()));
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
        // The intent record took time: the lease must still cover the whole call.
        if !self.ownership.may_act(&snapshot.cluster_name) {
            let detail = "the lease of the cluster's shard ran short while the intent was \
                          recorded; nothing was done";
            let held = record(
                Outcome::Skipped(LEASE_NOT_HELD),
                Some(detail.into()),
                Some(attempt),
            );
            self.record_once(held, trail);
            return (Outcome::Skipped(LEASE_NOT_HELD), Some(detail.into()));
        }
        let (outcome, detail) = self.act_within_lease(planned, snapshot).await;
        self.record_outcome(
            planned,
            record(outcome.clone(), detail.clone(), Some(attempt)),
            trail,
        );
        (outcome, detail)
    }

    /// [`Controller::act`], cut at the ownership's action limit (the lease's longest call):
    /// a call still waiting for the API budget then, or still unanswered, is abandoned before
    /// the lease it started under can run out.
    async fn act_within_lease(
        &self,
        planned: &PlannedAction,
        snapshot: &ClusterSnapshot,
    ) -> (Outcome, Option<String>) {
        let Some(limit) = self.ownership.action_limit() else {
            return self.act(planned, snapshot).await;
        };
        match tokio::time::timeout(limit, self.act(planned, snapshot)).await {
            Ok(done) => done,
            Err(_) => failed(
                CloudError::new(
                    ErrorCategory::Transient,
                    planned.action.kind().as_str(),
                    format!("did not finish within lease.action_timeout ({limit:?})"),
                ),
                Some("abandoned so that it cannot outlast the lease; tried again next pass"),
            ),
        }
    }

    /// Makes the calls of one enforced action. Returns the outcome and a detail line.
    pub(super) async fn act(
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
    pub(super) async fn cordon(
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

    pub(super) fn remember(&self, cluster: &str, action: PastAction) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory
            .entry(cluster.to_string())
            .or_default()
            .ledger
            .push(action);
    }

    pub(super) fn record_held(
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
                account: None,
                region: None,
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
    pub(super) fn record_once(&self, record: AuditRecord, trail: &mut TrailGate) {
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
    pub(super) fn record_outcome(
        &self,
        planned: &PlannedAction,
        record: AuditRecord,
        trail: &mut TrailGate,
    ) {
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
    pub(super) fn write_unwritten(&self, trail: &mut TrailGate) {
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

    pub(super) fn lock_unwritten(&self) -> std::sync::MutexGuard<'_, Vec<AuditRecord>> {
        self.unwritten.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs an action held because the audit trail cannot be written.
    pub(super) fn hold_for_audit(&self, record: &AuditRecord) {
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
    pub(super) fn already_audited(&self, record: &AuditRecord) -> bool {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let key = (record.target.clone(), record.action.clone());
        memory
            .get(&record.cluster)
            .and_then(|mem| mem.audited.get(&key))
            .is_some_and(|last| *last == record.outcome.to_string())
    }

    pub(super) fn mark_audited(&self, record: &AuditRecord) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let mem = memory.entry(record.cluster.clone()).or_default();
        mem.audited.insert(
            (record.target.clone(), record.action.clone()),
            record.outcome.to_string(),
        );
    }

    /// The id of the next attempt of an action: this process's id and a sequence number.
    pub(super) fn next_attempt(&self) -> String {
        let n = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}-{n}", self.process_id)
    }

    pub(super) fn forget_gone_tasks(&self, snapshot: &ClusterSnapshot) {
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
    pub(super) fn write(&self, record: &AuditRecord, trail: &mut TrailGate) -> bool {
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
    pub(super) fn write_audit(&self, record: &AuditRecord) -> std::io::Result<()> {
        let placed;
        let record = match &self.place {
            Some(place) if record.account.is_none() => {
                placed = AuditRecord {
                    account: Some(place.account.clone()),
                    region: Some(place.region.clone()),
                    ..record.clone()
                };
                &placed
            }
            _ => record,
        };
        self.audit.record(record)?;
        self.telemetry.recorded(record);
        Ok(())
    }
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
        account: None,
        region: None,
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
