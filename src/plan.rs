//! Planning: turns findings into actions under the policies' remediations and guardrails. Pure.
//!
//! The plan is a function of (snapshot, diagnosis, policies, history): no clock, no I/O. Every
//! finding ends in exactly one place: a planned action, or a held action that names the
//! guardrail (or missing permission) that held it back. Findings are considered in a fixed
//! order (policy order, longest stuck first, then ARN), so planning twice on one snapshot gives
//! one plan.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::capacity::{CapacityFinding, Cause, diagnose_capacity, plan_capacity};
use crate::causes::Clues;
use crate::diagnose::{Condition, Diagnosis, Evidence, Finding, Sightings};
use crate::domain::{ClusterSnapshot, DesiredStatus, RunTaskRequest, Task};
use crate::history::{History, REPLACES_TAG, stop_reason};
use crate::policy::{Policy, PolicyMode, PolicySet};

/// A mutating step the controller may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Action {
    /// StopTask on a service task; the service scheduler starts its replacement.
    #[serde(rename_all = "camelCase")]
    StopServiceTask {
        task_arn: String,
        stop_reason: String,
    },
    /// StopTask, then RunTask of the same definition and settings, for a standalone task.
    #[serde(rename_all = "camelCase")]
    ReplaceStandaloneTask {
        task_arn: String,
        stop_reason: String,
        run: Box<RunTaskRequest>,
    },
    /// RunTask for a standalone task the controller already stopped whose replacement never
    /// started (the process died between the two calls, or RunTask failed).
    #[serde(rename_all = "camelCase")]
    FinishReplacement {
        task_arn: String,
        run: Box<RunTaskRequest>,
    },
    /// Record the cordon on the group (tag), pin the group to a known-good version, and
    /// terminate the instances that never registered (desired capacity unchanged).
    #[serde(rename_all = "camelCase")]
    CordonLaunchTemplate {
        group: String,
        group_arn: String,
        template_id: String,
        version: u32,
        /// `None` when the cordon is already recorded.
        tag: Option<(String, String)>,
        /// `None` when there is no known-good version or the group is already pinned to it.
        pin_to: Option<u32>,
        terminate: Vec<String>,
    },
    /// Raise the group's desired capacity; the tag (written first) records the nudge.
    #[serde(rename_all = "camelCase")]
    NudgeCapacity {
        group: String,
        group_arn: String,
        from: u32,
        to: u32,
        /// `None` when finishing a nudge whose tag was written but whose change was not.
        tag: Option<(String, String)>,
    },
    /// Set a container instance to DRAINING.
    #[serde(rename_all = "camelCase")]
    DrainContainerInstance { container_instance_arn: String },
}

impl Action {
    /// The action's name in the audit trail.
    pub fn name(&self) -> &'static str {
        match self {
            Action::StopServiceTask { .. } => "stopTask",
            Action::ReplaceStandaloneTask { .. } => "replaceTask",
            Action::FinishReplacement { .. } => "runReplacement",
            Action::CordonLaunchTemplate { .. } => "cordonLaunchTemplate",
            Action::NudgeCapacity { .. } => "nudgeCapacity",
            Action::DrainContainerInstance { .. } => "drainContainerInstance",
        }
    }

    /// The ARN of the task acted on.
    pub fn target(&self) -> &str {
        match self {
            Action::StopServiceTask { task_arn, .. }
            | Action::ReplaceStandaloneTask { task_arn, .. }
            | Action::FinishReplacement { task_arn, .. } => task_arn,
            Action::CordonLaunchTemplate { group_arn, .. }
            | Action::NudgeCapacity { group_arn, .. } => group_arn,
            Action::DrainContainerInstance {
                container_instance_arn,
            } => container_instance_arn,
        }
    }
}

/// Why an action was held back.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "guardrail")]
pub enum Hold {
    /// The task carries an exclusion tag.
    Exempt { tag: String },
    /// The policy does not allow this remediation.
    NotAllowed { missing: String },
    /// The policy's hourly budget in this cluster is spent.
    MaxActionsPerHour { used: usize, limit: u32 },
    /// Enough tasks of the service are already being replaced.
    MaxInFlightPerService { in_flight: usize, limit: usize },
    /// Too many of the policy's tasks are stuck at once: likely a wider outage.
    PauseWhenStuckAbove {
        stuck: usize,
        governed: usize,
        threshold: f64,
    },
    /// Part of the cluster could not be read, so percentages cannot be trusted.
    IncompleteObservation { gaps: Vec<String> },
    /// The task is already on its way down; no task-level action hurries it.
    NoRemedy { why: String },
    /// A replacement could not be started with the same settings.
    CannotReplicate { why: String },
    /// The task waits on capacity: replacing it would only make another stuck task.
    CapacityCause { cause: String, reason: String },
    /// A replacement for the same cause was already made and is stuck again.
    NotCured { why: String },
    /// The group was nudged within the policy's cooldown.
    Cooldown { last: String, cooldown: String },
    /// The group is at its ceiling; the controller may not add capacity.
    CapacityExhausted,
}

impl Hold {
    /// The guardrail's name in the audit trail (`skipped:NAME`).
    pub fn name(&self) -> &'static str {
        match self {
            Hold::Exempt { .. } => "exempt",
            Hold::NotAllowed { .. } => "notAllowed",
            Hold::MaxActionsPerHour { .. } => "maxActionsPerHour",
            Hold::MaxInFlightPerService { .. } => "maxInFlightPerService",
            Hold::PauseWhenStuckAbove { .. } => "pauseWhenStuckAbove",
            Hold::IncompleteObservation { .. } => "incompleteObservation",
            Hold::NoRemedy { .. } => "noRemedy",
            Hold::CannotReplicate { .. } => "cannotReplicate",
            Hold::CapacityCause { .. } => "capacityCause",
            Hold::NotCured { .. } => "notCured",
            Hold::Cooldown { .. } => "cooldown",
            Hold::CapacityExhausted => "capacityExhausted",
        }
    }

    /// One line for people.
    pub fn detail(&self) -> String {
        match self {
            Hold::Exempt { tag } => format!("task carries exclusion tag {tag}"),
            Hold::NotAllowed { missing } => format!("policy does not allow {missing}"),
            Hold::MaxActionsPerHour { used, limit } => {
                format!("{used} actions in the last hour, limit {limit}")
            }
            Hold::MaxInFlightPerService { in_flight, limit } => {
                format!("{in_flight} tasks of the service already being replaced, limit {limit}")
            }
            Hold::PauseWhenStuckAbove {
                stuck,
                governed,
                threshold,
            } => format!(
                "{stuck} of {governed} tasks stuck, above {threshold}%: likely a wider outage, \
                 paused"
            ),
            Hold::IncompleteObservation { gaps } => {
                format!("observation incomplete: {}", gaps.join("; "))
            }
            Hold::NoRemedy { why } | Hold::CannotReplicate { why } | Hold::NotCured { why } => {
                why.clone()
            }
            Hold::CapacityCause { cause, reason } => {
                format!("waits on capacity ({cause}): {reason}")
            }
            Hold::Cooldown { last, cooldown } => {
                format!("last nudged at {last}, cooldown {cooldown}")
            }
            Hold::CapacityExhausted => "at the group's ceiling: no capacity action allowed".into(),
        }
    }
}

/// A step the controller takes (or, in audit mode, records that it would take).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedAction {
    pub policy: String,
    pub mode: PolicyMode,
    pub cluster: String,
    pub service: Option<String>,
    pub action: Action,
    /// The diagnosis: why the task needs it.
    pub reason: String,
    pub evidence: Evidence,
}

/// An action a guardrail held back.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldAction {
    pub policy: String,
    pub mode: PolicyMode,
    pub cluster: String,
    pub service: Option<String>,
    /// The action that would have been taken.
    pub action: &'static str,
    pub target: String,
    pub reason: String,
    pub hold: Hold,
    pub evidence: Evidence,
}

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

/// Plans one cluster. `dry_run` turns every action into an audit-mode one.
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
            used: history.actions_in_window(&policy.name, snapshot.observed_at),
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
    let capacity_plan = plan_capacity(snapshot, &capacity, policies, sightings, history, dry_run);
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
    used: usize,
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
        let action_name = if standalone {
            "replaceTask"
        } else {
            "stopTask"
        };
        if let Some(hold) = self.hold_for(finding, task, standalone) {
            self.out.held.push(HeldAction {
                policy: self.policy.name.clone(),
                mode: self.mode,
                cluster: self.snapshot.cluster_name.clone(),
                service: finding.service.clone(),
                action: action_name,
                target: task.arn.clone(),
                reason: finding.reason.clone(),
                hold,
                evidence: finding.evidence.clone(),
            });
            return;
        }
        let stop_reason = stop_reason(&self.policy.name, &finding.reason);
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
        self.used = self.used.saturating_add(1);
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
            reason: finding.reason.clone(),
            evidence: finding.evidence.clone(),
        });
    }

    /// The first guardrail that holds this action back, in order of how fundamental it is.
    fn hold_for(&self, finding: &Finding, task: &Task, standalone: bool) -> Option<Hold> {
        let policy = self.policy;
        if let Some((k, v)) = policy.target.exclusion(task) {
            return Some(Hold::Exempt {
                tag: format!("{k}={v}"),
            });
        }
        if matches!(finding.condition, Condition::InState(s) if s.is_way_down()) {
            return Some(Hold::NoRemedy {
                why: "already told to stop; replacing it would not hurry it (a disconnected \
                      container agent is the usual cause)"
                    .into(),
            });
        }
        let Some(replace) = &policy.remediate.replace_task else {
            return Some(Hold::NotAllowed {
                missing: "remediate.replaceTask".into(),
            });
        };
        if standalone && !replace.standalone {
            return Some(Hold::NotAllowed {
                missing: "remediate.replaceTask.standalone".into(),
            });
        }
        if standalone && let Some(why) = cannot_replicate(task) {
            return Some(Hold::CannotReplicate { why });
        }
        if let Some(capacity) = self.capacity_bound.get(task.arn.as_str()) {
            return Some(Hold::CapacityCause {
                cause: capacity.cause.name().into(),
                reason: capacity.reason.clone(),
            });
        }
        if let Some(past) = self
            .history
            .replaced_for_same_cause(task, condition_key(&finding.reason))
        {
            return Some(Hold::NotCured {
                why: format!(
                    "a task was already replaced for the same cause at {} and its replacement \
                     is stuck again: replacing does not cure this",
                    crate::diagnose::rfc3339(past.at)
                ),
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
        let limit = policy.guardrails.max_actions_per_hour;
        if self.used >= limit as usize {
            return Some(Hold::MaxActionsPerHour {
                used: self.used,
                limit,
            });
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
                    missing: "remediate.replaceTask.standalone".into(),
                })
            } else {
                cannot_replicate(task).map(|why| Hold::CannotReplicate { why })
            };
            if let Some(hold) = hold {
                self.out.held.push(HeldAction {
                    policy: policy.name.clone(),
                    mode: self.mode,
                    cluster: self.snapshot.cluster_name.clone(),
                    service: None,
                    action: "runReplacement",
                    target: task.arn.clone(),
                    reason,
                    hold,
                    evidence,
                });
                continue;
            }
            self.out.actions.push(PlannedAction {
                policy: policy.name.clone(),
                mode: self.mode,
                cluster: self.snapshot.cluster_name.clone(),
                service: None,
                action: Action::FinishReplacement {
                    task_arn: task.arn.clone(),
                    run: Box::new(replacement_request(task)),
                },
                reason,
                evidence,
            });
        }
    }
}

/// The cause part of a diagnosis, without the durations: "stuck in PROVISIONING".
pub fn condition_key(reason: &str) -> &str {
    reason.split(" for ").next().unwrap_or(reason)
}

/// Why a standalone task cannot be started again the same way, if it cannot. An awsvpc task's
/// security groups are known only from its network interface; without them RunTask would
/// fall back to the VPC's default group, which is never what the task had.
fn cannot_replicate(task: &Task) -> Option<String> {
    let network = task.network.as_ref()?;
    if network.subnets.is_empty() {
        return Some("awsvpc task whose subnets are unknown".into());
    }
    if network.security_groups.is_empty() {
        return Some(
            "awsvpc task whose security groups are unknown (its network interface was never \
             attached); stopping it would lose it"
                .into(),
        );
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
    tags.insert(REPLACES_TAG.to_string(), task.id().to_string());
    RunTaskRequest {
        task_definition: task.task_definition_arn.clone(),
        overrides: task.overrides.clone(),
        tags,
        group: task.group.clone(),
        started_by: task.started_by.clone(),
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
