//! The decisions planning makes, as typed values: the actions, why an action was held back,
//! and the one hourly budget per policy and cluster that every kind of action draws from.
//! Pure.
//!
//! Both planners (tasks in `plan`, capacity in `capacity::plan`) build these; neither imports
//! the other's module for them (`plan` uses `capacity`, never the reverse). Prose for people
//! comes from [`Hold::detail`] and the findings' `reason`; nothing is ever parsed back from it.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::Serialize;

use crate::causes::CauseCode;
use crate::diagnose::{Condition, Evidence, rfc3339, short};
use crate::domain::{ClusterSnapshot, RunTaskRequest};
use crate::history::History;
use crate::policy::{PolicyMode, PolicySet};
use crate::prose::plural;

/// What kind of step an action is, as the audit trail names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ActionKind {
    StopTask,
    ReplaceTask,
    RunReplacement,
    CordonLaunchTemplate,
    NudgeCapacity,
    DrainContainerInstance,
    /// A capacity hold whose action is not known yet (the observation is incomplete, or the
    /// cause has no remedy).
    Capacity,
}

impl ActionKind {
    /// The name in the audit trail (`action`) and the plan tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::StopTask => "stopTask",
            ActionKind::ReplaceTask => "replaceTask",
            ActionKind::RunReplacement => "runReplacement",
            ActionKind::CordonLaunchTemplate => "cordonLaunchTemplate",
            ActionKind::NudgeCapacity => "nudgeCapacity",
            ActionKind::DrainContainerInstance => "drainContainerInstance",
            ActionKind::Capacity => "capacity",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mutating step the controller may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
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
    /// What kind of step this is.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::StopServiceTask { .. } => ActionKind::StopTask,
            Action::ReplaceStandaloneTask { .. } => ActionKind::ReplaceTask,
            Action::FinishReplacement { .. } => ActionKind::RunReplacement,
            Action::CordonLaunchTemplate { .. } => ActionKind::CordonLaunchTemplate,
            Action::NudgeCapacity { .. } => ActionKind::NudgeCapacity,
            Action::DrainContainerInstance { .. } => ActionKind::DrainContainerInstance,
        }
    }

    /// The action's name in the audit trail.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The ARN of the task, group or container instance acted on.
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

    /// Whether the action draws on the hourly budget. Finishing a replacement, a cordon
    /// already recorded on its group, or a nudge whose tag was written completes an action
    /// that was counted when it started: it does not draw again.
    pub fn draws_on_budget(&self) -> bool {
        match self {
            Action::FinishReplacement { .. } => false,
            Action::CordonLaunchTemplate { tag, .. } | Action::NudgeCapacity { tag, .. } => {
                tag.is_some()
            }
            _ => true,
        }
    }
}

/// Why no action can help, as a typed reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum NoRemedy {
    /// The task was already told to stop; replacing it would not hurry it.
    AlreadyStopping,
    /// ECS managed scaling sets the group's desired capacity.
    ManagedScaling,
    /// The group launches from a version the controller cordoned.
    #[serde(rename_all = "camelCase")]
    LaunchesFromCordoned { template_id: String, version: u32 },
    /// The version is cordoned but no version of its template is known to work.
    #[serde(rename_all = "camelCase")]
    NoKnownGoodVersion { template_id: String, version: u32 },
    /// `nudgeCapacity.step` is 0.
    StepZero,
    /// The capacity provider's Auto Scaling group no longer exists.
    #[serde(rename_all = "camelCase")]
    GroupMissing {
        capacity_provider: String,
        group_arn: Option<String>,
    },
    /// Instances fail to register, but the group's launch cannot be cordoned.
    #[serde(rename_all = "camelCase")]
    UnsupportedLaunch { group: String, why: String },
    /// A capacity cause no controller action remedies (a task no instance fits, failing
    /// launches, the PROVISIONING quota).
    #[serde(rename_all = "camelCase")]
    Cause { code: CauseCode },
}

impl NoRemedy {
    /// One line for people.
    pub fn detail(&self) -> String {
        match self {
            NoRemedy::AlreadyStopping => "already told to stop; replacing it would not hurry it \
                                          (a disconnected container agent is the usual cause)"
                .into(),
            NoRemedy::ManagedScaling => {
                "ECS managed scaling owns this group's desired capacity".into()
            }
            NoRemedy::LaunchesFromCordoned {
                template_id,
                version,
            } => format!("the group launches from cordoned version {version} of {template_id}"),
            NoRemedy::NoKnownGoodVersion {
                template_id,
                version,
            } => format!(
                "version {version} is cordoned, but no version of {template_id} is known to \
                 work: nothing pinned; an operator must publish or choose a working version"
            ),
            NoRemedy::StepZero => "nudgeCapacity.step is 0: a nudge would add no capacity".into(),
            NoRemedy::GroupMissing {
                capacity_provider,
                group_arn,
            } => format!(
                "capacity provider {capacity_provider}'s Auto Scaling group no longer exists ({})",
                group_arn.as_deref().unwrap_or("no group ARN")
            ),
            NoRemedy::UnsupportedLaunch { group, why } => format!(
                "instances of group {group} never registered, but the {why}: cordoning is \
                 supported for launch templates only"
            ),
            NoRemedy::Cause { code } => {
                let what = match code {
                    CauseCode::NoInstanceFits => {
                        "the waiting tasks are larger than the group's instance type: a new \
                         instance would not fit them either"
                    }
                    CauseCode::LaunchFailed => {
                        "the group's launches fail: a nudge would fail the same way"
                    }
                    CauseCode::ProvisioningQuota => {
                        "the cluster's quota of tasks in PROVISIONING is reached: more capacity \
                         would not start them sooner"
                    }
                    _ => "no controller action remedies this cause",
                };
                format!("{} ({}); reported, not acted on", what, code.as_str())
            }
        }
    }
}

/// Why a standalone task cannot be started again with the same settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CannotReplicate {
    /// An awsvpc task whose subnets are unknown.
    UnknownSubnets,
    /// An awsvpc task whose security groups are unknown (its network interface was never
    /// attached): RunTask would fall back to the VPC's default group.
    UnknownSecurityGroups,
}

impl CannotReplicate {
    pub fn detail(self) -> &'static str {
        match self {
            CannotReplicate::UnknownSubnets => "awsvpc task whose subnets are unknown",
            CannotReplicate::UnknownSecurityGroups => {
                "awsvpc task whose security groups are unknown (its network interface was never \
                 attached); stopping it would lose it"
            }
        }
    }
}

/// Why an action was held back.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "guardrail")]
pub enum Hold {
    /// The task carries an exclusion tag.
    Exempt { tag: String },
    /// The policy does not allow this remediation (the setting that is missing).
    NotAllowed { missing: &'static str },
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
    /// No action would help.
    NoRemedy { why: NoRemedy },
    /// A replacement could not be started with the same settings.
    CannotReplicate { why: CannotReplicate },
    /// The task waits on capacity: replacing it would only make another stuck task. `reason`
    /// is the capacity finding's line for people.
    CapacityCause { cause: CauseCode, reason: String },
    /// A replacement for the same condition was already made and is stuck again.
    #[serde(rename_all = "camelCase")]
    NotCured {
        condition: Condition,
        #[serde(with = "humantime_serde")]
        replaced_at: SystemTime,
    },
    /// The group was nudged within the policy's cooldown.
    Cooldown {
        #[serde(with = "humantime_serde")]
        last: SystemTime,
        #[serde(with = "humantime_serde")]
        cooldown: Duration,
    },
    /// The group is at its ceiling; the controller may not add capacity.
    CapacityExhausted,
    /// The Auto Scaling group does not carry the opt-in tag (`[managed_tag]`): the controller
    /// never writes to it.
    #[serde(rename_all = "camelCase")]
    NotManaged {
        group: String,
        tag_key: String,
        tag_value: String,
    },
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
            Hold::NotManaged { .. } => "notManaged",
        }
    }

    /// One line for people.
    pub fn detail(&self) -> String {
        match self {
            Hold::Exempt { tag } => format!("task carries exclusion tag {tag}"),
            Hold::NotAllowed { missing } => format!("policy does not allow {missing}"),
            Hold::MaxActionsPerHour { used, limit } => {
                format!(
                    "{} in the last hour, limit {limit}",
                    plural(*used, "action", "actions")
                )
            }
            Hold::MaxInFlightPerService { in_flight, limit } => format!(
                "{} of the service already being replaced, limit {limit}",
                plural(*in_flight, "task", "tasks")
            ),
            Hold::PauseWhenStuckAbove {
                stuck,
                governed,
                threshold,
            } => format!(
                "{stuck} of {} stuck, above {threshold}%: likely a wider outage, paused",
                plural(*governed, "task", "tasks")
            ),
            Hold::IncompleteObservation { gaps } => {
                format!("observation incomplete: {}", gaps.join("; "))
            }
            Hold::NoRemedy { why } => why.detail(),
            Hold::CannotReplicate { why } => why.detail().to_string(),
            Hold::CapacityCause { cause, reason } => {
                format!("waits on capacity ({}): {reason}", cause.as_str())
            }
            Hold::NotCured { replaced_at, .. } => format!(
                "a task was already replaced for the same cause at {} and its replacement is \
                 stuck again: replacing does not cure this",
                rfc3339(*replaced_at)
            ),
            Hold::Cooldown { last, cooldown } => {
                format!(
                    "last nudged at {}, cooldown {}",
                    rfc3339(*last),
                    short(*cooldown)
                )
            }
            Hold::CapacityExhausted => "at the group's ceiling: no capacity action allowed".into(),
            Hold::NotManaged {
                group,
                tag_key,
                tag_value,
            } => format!(
                "group {group} does not carry the opt-in tag {tag_key}={tag_value}: the \
                 controller never writes to it"
            ),
        }
    }
}

/// A step the controller takes (or, in dry-run mode, records that it would take).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedAction {
    pub policy: String,
    pub mode: PolicyMode,
    pub cluster: String,
    pub service: Option<String>,
    pub action: Action,
    /// The task's condition, for a task remediation: what history remembers it by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// The diagnosis: why the task needs it.
    pub reason: String,
    /// Shared with the finding and the audit records: one map, never copied.
    #[serde(serialize_with = "crate::diagnose::serialize_shared")]
    #[schemars(with = "Evidence")]
    pub evidence: Arc<Evidence>,
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
    pub action: ActionKind,
    pub target: String,
    pub reason: String,
    pub hold: Hold,
    /// Shared with the finding and the audit records: one map, never copied.
    #[serde(serialize_with = "crate::diagnose::serialize_shared")]
    pub evidence: Arc<Evidence>,
}

/// One policy's hourly budget in one cluster: `maxActionsPerHour`, less the actions done in
/// the last hour and those planned in this pass, of every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub used: usize,
}

impl Budget {
    /// Takes one action from the budget, or says which guardrail holds it back.
    pub fn draw(&mut self) -> Result<(), Hold> {
        if self.used >= self.limit as usize {
            return Err(Hold::MaxActionsPerHour {
                used: self.used,
                limit: self.limit,
            });
        }
        self.used = self.used.saturating_add(1);
        Ok(())
    }
}

/// The budgets of every policy in one cluster, shared by both planners within a pass.
#[derive(Debug, Clone, Default)]
pub struct Budgets {
    by_policy: BTreeMap<String, Budget>,
}

impl Budgets {
    /// Each policy's budget in the snapshot's cluster, with what history says was done in the
    /// last hour already drawn.
    pub fn new(snapshot: &ClusterSnapshot, policies: &PolicySet, history: &History) -> Budgets {
        let now = snapshot.observed_at;
        let in_cluster: Vec<_> = policies.for_cluster(&snapshot.cluster_name).collect();
        let mut by_policy: BTreeMap<String, Budget> = in_cluster
            .iter()
            .map(|p| {
                let used = history.actions_in_window(&p.name, now);
                let budget = Budget {
                    limit: p.guardrails.max_actions_per_hour,
                    used,
                };
                (p.name.clone(), budget)
            })
            .collect();
        // Replacements whose stopped original ECS no longer shows carry no policy name: they
        // count for the policy that governs them, as diagnosis would choose it.
        for task in history.orphan_replacements(snapshot) {
            let governor = in_cluster.iter().find(|p| p.target.selects_task(task));
            if let Some(budget) = governor.and_then(|p| by_policy.get_mut(&p.name)) {
                budget.used = budget.used.saturating_add(1);
            }
        }
        Budgets { by_policy }
    }

    /// The budget of `policy`; a policy not in the cluster has none left.
    pub fn of(&mut self, policy: &str) -> &mut Budget {
        self.by_policy
            .entry(policy.to_string())
            .or_insert(Budget { limit: 0, used: 0 })
    }
}
