//! Planning: turns findings into actions under the policies' remediations and guardrails. Pure.
//!
//! The plan is a function of (snapshot, diagnosis, capacity findings, policies, history,
//! sightings): no clock, no I/O. Every
//! finding ends in exactly one place: a planned action, or a held action that names the
//! guardrail (or missing permission) that held it back. Findings are considered in a fixed
//! order (policy order, longest stuck first, then ARN), so planning twice on one snapshot gives
//! one plan.
//!
//! Every kind of action, here and in `capacity::plan`, draws on one hourly budget per policy
//! and cluster ([`Budgets`]): task actions are planned first, then capacity actions and drains
//! take what is left.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::capacity::tags::ManagedTag;
use crate::capacity::{CapacityFinding, Cause, diagnose_capacity, plan_capacity};
use crate::causes::Clues;
use crate::decision::{
    Action, ActionKind, Budgets, CannotReplicate, HeldAction, Hold, NoRemedy, PlannedAction,
};
use crate::diagnose::{Condition, Diagnosis, Evidence, Finding, Sightings};
use crate::domain::{ClusterSnapshot, DesiredStatus, RunTaskRequest, Task, TaskOverrides};
use crate::history::{History, REPLACES_TAG, stop_reason};
use crate::policy::{Policy, PolicyMode, PolicySet};

/// Everything decided for one cluster in one pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub cluster: String,
    pub findings: Vec<Finding>,
    /// Why tasks wait in PROVISIONING, per capacity provider.
    pub capacity: Vec<CapacityFinding>,
    pub actions: Vec<PlannedAction>,
    pub held: Vec<HeldAction>,
}

/// Plans one cluster. `dry_run` turns every action into a dry-run one.
pub fn plan(
    snapshot: &ClusterSnapshot,
    diagnosis: Diagnosis,
    policies: &PolicySet,
    history: &History,
    sightings: &Sightings,
    clues: &Clues,
    dry_run: bool,
) -> Plan {
    let capacity = diagnose_capacity(snapshot, &diagnosis, policies, clues);
    plan_with_capacity(
        snapshot,
        diagnosis,
        capacity,
        policies,
        history,
        sightings,
        &ManagedTag::default(),
        dry_run,
    )
}

/// Plans one cluster whose capacity findings are already made (by [`diagnose_capacity`]).
/// Auto Scaling groups without the `managed` tag are never written to (`notManaged`).
#[allow(clippy::too_many_arguments)]
pub fn plan_with_capacity(
    snapshot: &ClusterSnapshot,
    diagnosis: Diagnosis,
    capacity: Vec<CapacityFinding>,
    policies: &PolicySet,
    history: &History,
    sightings: &Sightings,
    managed: &ManagedTag,
    dry_run: bool,
) -> Plan {
    // Tasks whose wait has a capacity cause are not replaced: the cause is remedied instead.
    let capacity_bound: HashMap<&str, &CapacityFinding> = capacity
        .iter()
        .filter(|c| c.cause != Cause::Unknown)
        .flat_map(|c| c.waiting_tasks.iter().map(move |t| (t.as_str(), c)))
        .collect();
    let mut out = Plan {
        cluster: snapshot.cluster_name.clone(),
        findings: Vec::new(),
        capacity: Vec::new(),
        actions: Vec::new(),
        held: Vec::new(),
    };
    let mut budgets = Budgets::new(snapshot, policies, history);
    let tasks: HashMap<&str, &Task> = diagnosis
        .findings
        .iter()
        .filter_map(|f| f.task(snapshot).map(|t| (t.arn.as_str(), t)))
        .collect();
    for policy in policies.for_cluster(&snapshot.cluster_name) {
        let mode = if dry_run {
            PolicyMode::Audit
        } else {
            policy.mode
        };
        let mut findings: Vec<&Finding> = diagnosis
            .findings
            .iter()
            .filter(|f| f.policy == policy.name)
            .collect();
        findings.sort_by_key(|f| (Reverse(f.elapsed), f.task_arn.as_str()));
        let governed = diagnosis
            .governed_running
            .get(&policy.name)
            .copied()
            .unwrap_or(0);
        let mut ctx = PolicyPass {
            policy,
            mode,
            snapshot,
            history,
            governed,
            stuck: count_stuck(&findings, &tasks, policy),
            budgets: &mut budgets,
            planned_per_service: BTreeMap::new(),
            capacity_bound: &capacity_bound,
            out: &mut out,
        };
        for finding in findings {
            if let Some(task) = tasks.get(finding.task_arn.as_str()) {
                ctx.consider(finding, task);
            }
        }
        ctx.finish_replacements();
    }
    let capacity_plan = plan_capacity(
        snapshot,
        &capacity,
        policies,
        sightings,
        history,
        &mut budgets,
        managed,
        dry_run,
    );
    out.actions.extend(capacity_plan.actions);
    out.held.extend(capacity_plan.held);
    out.capacity = capacity;
    out.findings = diagnosis.findings;
    out
}

/// Stuck tasks that count toward `pauseWhenStuckAbove`: desired RUNNING and not exempt.
fn count_stuck(findings: &[&Finding], tasks: &HashMap<&str, &Task>, policy: &Policy) -> usize {
    findings
        .iter()
        .filter_map(|f| tasks.get(f.task_arn.as_str()))
        .filter(|t| t.desired_status == DesiredStatus::Running)
        .filter(|t| policy.target.exclusion(t).is_none())
        .count()
}

/// The state of planning one policy in one cluster.
struct PolicyPass<'a> {
    policy: &'a Policy,
    mode: PolicyMode,
    snapshot: &'a ClusterSnapshot,
    history: &'a History,
    governed: usize,
    stuck: usize,
    budgets: &'a mut Budgets,
    planned_per_service: BTreeMap<String, usize>,
    capacity_bound: &'a HashMap<&'a str, &'a CapacityFinding>,
    out: &'a mut Plan,
}

impl PolicyPass<'_> {
    fn consider(&mut self, finding: &Finding, task: &Task) {
        if self.history.acted_on(&task.arn) {
            // Already stopped by the controller; the read that shows it stuck is stale.
            return;
        }
        let standalone = task.service_name().is_none();
        let kind = if standalone {
            ActionKind::ReplaceTask
        } else {
            ActionKind::StopTask
        };
        let hold = self
            .hold_for(finding, task, standalone)
            .map_or_else(|| self.budgets.of(&self.policy.name).draw().err(), Some);
        if let Some(hold) = hold {
            self.out.held.push(HeldAction {
                policy: self.policy.name.clone(),
                mode: self.mode,
                cluster: self.snapshot.cluster_name.clone(),
                service: finding.service.clone(),
                action: kind,
                target: task.arn.clone(),
                reason: finding.reason.clone(),
                hold,
                evidence: Arc::clone(&finding.evidence),
            });
            return;
        }
        let stop_reason = stop_reason(&self.policy.name, finding.condition, &finding.reason);
        let action = if standalone {
            Action::ReplaceStandaloneTask {
                task_arn: task.arn.clone(),
                stop_reason,
                run: Box::new(replacement_request(task)),
            }
        } else {
            Action::StopServiceTask {
                task_arn: task.arn.clone(),
                stop_reason,
            }
        };
        if let Some(service) = &finding.service {
            let planned = self.planned_per_service.entry(service.clone()).or_default();
            *planned = planned.saturating_add(1);
        }
        self.out.actions.push(PlannedAction {
            policy: self.policy.name.clone(),
            mode: self.mode,
            cluster: self.snapshot.cluster_name.clone(),
            service: finding.service.clone(),
            action,
            condition: Some(finding.condition),
            reason: finding.reason.clone(),
            evidence: Arc::clone(&finding.evidence),
        });
    }

    /// The first guardrail that holds this action back, in order of how fundamental it is.
    fn hold_for(&self, finding: &Finding, task: &Task, standalone: bool) -> Option<Hold> {
        let policy = self.policy;
        if self.snapshot.tags_unread.contains(&task.arn) {
            // Its exemption tag, if it has one, is not known yet.
            return Some(Hold::IncompleteObservation {
                gaps: vec![format!("tags of task {} not read yet", task.id())],
            });
        }
        if let Some((k, v)) = policy.target.exclusion(task) {
            return Some(Hold::Exempt {
                tag: format!("{k}={v}"),
            });
        }
        if matches!(finding.condition, Condition::InState(s) if s.is_way_down()) {
            return Some(Hold::NoRemedy {
                why: NoRemedy::AlreadyStopping,
            });
        }
        let Some(replace) = &policy.remediate.replace_task else {
            return Some(Hold::NotAllowed {
                missing: "remediate.replaceTask",
            });
        };
        if standalone && !replace.standalone {
            return Some(Hold::NotAllowed {
                missing: "remediate.replaceTask.standalone",
            });
        }
        if standalone && let Some(why) = cannot_replicate(task) {
            return Some(Hold::CannotReplicate { why });
        }
        if let Some(capacity) = self.capacity_bound.get(task.arn.as_str()) {
            return Some(Hold::CapacityCause {
                cause: capacity.cause.code(),
                reason: capacity.reason.clone(),
            });
        }
        if let Some(past) = self
            .history
            .replaced_for_same_cause(task, finding.condition)
        {
            return Some(Hold::NotCured {
                condition: finding.condition,
                replaced_at: past.at,
            });
        }
        if !self.snapshot.is_complete() {
            return Some(Hold::IncompleteObservation {
                gaps: self.snapshot.gaps.clone(),
            });
        }
        let threshold = policy.guardrails.pause_when_stuck_above;
        // A single stuck task is never "a wider outage", however small the fleet.
        if self.stuck >= 2 && self.stuck as f64 > threshold.0 / 100.0 * self.governed as f64 {
            return Some(Hold::PauseWhenStuckAbove {
                stuck: self.stuck,
                governed: self.governed,
                threshold: threshold.0,
            });
        }
        if let Some(service) = &finding.service {
            let Some(desired) = self.snapshot.service(service).map(|s| s.desired_count) else {
                return Some(Hold::IncompleteObservation {
                    gaps: vec![format!("service {service} not observed")],
                });
            };
            let limit = (policy
                .guardrails
                .max_in_flight_per_service
                .of(desired)
                .floor() as usize)
                .max(1);
            let in_flight = self
                .history
                .in_flight(service)
                .saturating_add(self.planned_per_service.get(service).copied().unwrap_or(0));
            if in_flight >= limit {
                return Some(Hold::MaxInFlightPerService { in_flight, limit });
            }
        }
        None
    }

    /// Standalone tasks this policy stopped whose replacement never started.
    fn finish_replacements(&mut self) {
        let policy = self.policy;
        for (task, past) in self.history.unfinished_replacements(self.snapshot) {
            if past.policy != policy.name {
                continue;
            }
            let reason = format!(
                "stopped by ecs-reconciler at {} but its replacement never started",
                crate::diagnose::rfc3339(past.at)
            );
            let allowed = policy
                .remediate
                .replace_task
                .as_ref()
                .is_some_and(|r| r.standalone);
            let mut evidence = Evidence::new();
            evidence.insert(
                "stoppedReason".into(),
                task.stopped_reason.clone().unwrap_or_default(),
            );
            evidence.insert("lastStatus".into(), task.last_status.to_string());
            let hold = if let Some((k, v)) = policy.target.exclusion(task) {
                Some(Hold::Exempt {
                    tag: format!("{k}={v}"),
                })
            } else if !allowed {
                Some(Hold::NotAllowed {
                    missing: "remediate.replaceTask.standalone",
                })
            } else {
                cannot_replicate(task).map(|why| Hold::CannotReplicate { why })
            };
            let evidence = Arc::new(evidence);
            if let Some(hold) = hold {
                self.out.held.push(HeldAction {
                    policy: policy.name.clone(),
                    mode: self.mode,
                    cluster: self.snapshot.cluster_name.clone(),
                    service: None,
                    action: ActionKind::RunReplacement,
                    target: task.arn.clone(),
                    reason,
                    hold,
                    evidence,
                });
                continue;
            }
            // Finishing completes the replacement counted when its task was stopped: it does
            // not draw on the budget again.
            self.out.actions.push(PlannedAction {
                policy: policy.name.clone(),
                mode: self.mode,
                cluster: self.snapshot.cluster_name.clone(),
                service: None,
                action: Action::FinishReplacement {
                    task_arn: task.arn.clone(),
                    run: Box::new(replacement_request(task)),
                },
                condition: past.condition,
                reason,
                evidence,
            });
        }
    }
}

/// Why a standalone task cannot be started again the same way, if it cannot. An awsvpc task's
/// security groups are known only from its network interface; without them RunTask would
/// fall back to the VPC's default group, which is never what the task had.
fn cannot_replicate(task: &Task) -> Option<CannotReplicate> {
    let network = task.network.as_ref()?;
    if network.subnets.is_empty() {
        return Some(CannotReplicate::UnknownSubnets);
    }
    if network.security_groups.is_empty() {
        return Some(CannotReplicate::UnknownSecurityGroups);
    }
    None
}

/// RunTask's settings for a replacement of `task`: the same definition, overrides, tags,
/// group, startedBy, capacity and network, a tag naming the task it replaces, and a client
/// token derived from the task's ARN so that no retry or restart starts two.
pub fn replacement_request(task: &Task) -> RunTaskRequest {
    let mut tags = task.tags.clone();
    // Tags with the aws: prefix are reserved and refused by RunTask.
    tags.retain(|k, _| !k.starts_with("aws:"));
    tags.insert(REPLACES_TAG, task.id());
    RunTaskRequest {
        task_definition: task.task_definition_arn.to_string(),
        overrides: TaskOverrides::clone(&task.overrides),
        tags,
        group: task.group.as_deref().map(String::from),
        started_by: task.started_by.as_deref().map(String::from),
        capacity: task.capacity.clone(),
        network: task.network.clone(),
        client_token: client_token(&task.arn),
    }
}

/// `ecsr-` and 40 hex digits of SHA-256 of the task ARN: within RunTask's 64-character limit.
pub fn client_token(task_arn: &str) -> String {
    let digest = Sha256::digest(task_arn.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("ecsr-{}", &hex[..40])
}
