//! Why tasks wait in PROVISIONING: the capacity chain behind them. Pure.
//!
//! For each capacity provider with tasks stuck in PROVISIONING, follow provider → Auto Scaling
//! group → the launch template versions its instances came from → whether those instances
//! registered with the cluster. The first cause that fits wins:
//!
//! 1. the provider's group no longer exists;
//! 2. a launch template version is broken: at least `minFailedInstances` of its instances have
//!    been in service longer than `registrationTimeout` without registering (or registered but
//!    with the agent never connected), and none of its instances registered;
//! 3. capacity is on its way: instances still booting inside the registration timeout (wait);
//! 4. capacity is short: every instance registered and connected, and the group has room below
//!    its ceiling (min of MaxSize and the policy's `maxDesired`);
//! 5. capacity is exhausted: the same, at the ceiling;
//! 6. unknown: the task-level rules apply.
//!
//! Then the root-cause readings the controller made for it ([`Clues`]: boot output, UserData,
//! scaling activities, instance types) explain the cause (docs/causes.md). They may refine a
//! capacity cause (launches failing, no instance type fits the tasks, the PROVISIONING quota),
//! never a registration one: whether a version is broken is decided by the registration
//! evidence alone, so a reading that failed never blocks a cordon.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::tags;
use crate::causes::{CauseCode, Clues, LaunchFailure, RootCause, explain};
use crate::diagnose::{Condition, Diagnosis, Evidence, short};
use crate::domain::{
    AutoScalingGroup, CapacityProvider, ClusterSnapshot, DesiredStatus, GroupLaunch, Task,
    TaskStatus,
};
use crate::policy::{CordonLaunchTemplate, Policy, PolicySet};
use crate::prose::{agree, plural};

/// Judged without a policy setting, the registration rules default to these.
pub const DEFAULT_RULES: CordonLaunchTemplate = CordonLaunchTemplate {
    registration_timeout: Duration::from_secs(600),
    min_failed_instances: 2,
};

/// What keeps the tasks of one capacity provider waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Cause {
    /// The capacity provider's Auto Scaling group was deleted.
    GroupMissing,
    /// Instances from this version never register.
    #[serde(rename_all = "camelCase")]
    BrokenLaunchTemplateVersion {
        template_id: String,
        version: u32,
        /// Instances of `version` past the registration timeout, never registered.
        failed_instances: Vec<String>,
        /// The newest version whose instances registered in this cluster, not cordoned.
        known_good: Option<u32>,
    },
    /// Instances are still booting inside the registration timeout: wait.
    #[serde(rename_all = "camelCase")]
    CapacityOnItsWay { booting: Vec<String> },
    /// Every instance is registered and healthy, and the group has room.
    #[serde(rename_all = "camelCase")]
    CapacityShort { desired: u32, ceiling: u32 },
    /// Every instance is registered and healthy, and the group is at its ceiling.
    #[serde(rename_all = "camelCase")]
    CapacityExhausted {
        desired: u32,
        max_size: u32,
        ceiling: u32,
    },
    /// Waiting tasks are larger than the group's instance type: a nudge would not help.
    #[serde(rename_all = "camelCase")]
    NoInstanceFits { instance_type: String },
    /// The group's launches fail (the scaling activities say why): a nudge would not help.
    #[serde(rename_all = "camelCase")]
    LaunchFailing { failure: LaunchFailure },
    /// The cluster's quota of tasks in PROVISIONING is reached.
    #[serde(rename_all = "camelCase")]
    ProvisioningQuota { provisioning: usize },
    /// Instances fail to register, but the group's launch is not a launch template the
    /// controller can cordon.
    #[serde(rename_all = "camelCase")]
    Unsupported { why: String },
    /// None of the above.
    Unknown,
}

impl Cause {
    /// The cause's stable code.
    pub fn code(&self) -> CauseCode {
        match self {
            Cause::GroupMissing => CauseCode::GroupMissing,
            Cause::BrokenLaunchTemplateVersion { .. } => CauseCode::BrokenLaunchTemplateVersion,
            Cause::CapacityOnItsWay { .. } => CauseCode::CapacityOnItsWay,
            Cause::CapacityShort { .. } => CauseCode::CapacityShort,
            Cause::CapacityExhausted { .. } => CauseCode::CapacityExhausted,
            Cause::NoInstanceFits { .. } => CauseCode::NoInstanceFits,
            Cause::LaunchFailing { .. } => CauseCode::LaunchFailed,
            Cause::ProvisioningQuota { .. } => CauseCode::ProvisioningQuota,
            Cause::Unsupported { .. } => CauseCode::Unsupported,
            Cause::Unknown => CauseCode::Unknown,
        }
    }

    /// The cause's name in the audit trail and plan output: its code.
    pub fn name(&self) -> &'static str {
        self.code().as_str()
    }
}

/// The capacity diagnosis of one provider whose tasks wait.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapacityFinding {
    pub cluster: String,
    pub capacity_provider: String,
    /// The group's name and ARN, when it exists.
    pub group: Option<String>,
    pub group_arn: Option<String>,
    /// The policy governing the first waiting task (in policy set order).
    pub policy: String,
    /// Stuck PROVISIONING tasks waiting on this provider.
    pub waiting_tasks: Vec<String>,
    pub cause: Cause,
    /// What the root-cause readings (boot output, UserData, scaling activities, instance
    /// types) found behind the cause.
    pub root_causes: Vec<RootCause>,
    /// The root-cause readings that could not be made, e.g. "GetConsoleOutput i-0abc:
    /// denied". The rest of the diagnosis stands without them.
    pub unread: Vec<String>,
    /// The group's instances past the registration timeout that never registered, by launch
    /// template version, oldest first: what the root-cause reads look into.
    pub never_registered: Vec<Unregistered>,
    /// One line.
    pub reason: String,
    /// Shared with the actions planned from the finding and their audit records, not copied.
    #[serde(serialize_with = "crate::diagnose::serialize_shared")]
    pub evidence: Arc<Evidence>,
}

/// Instances of one launch template version that never registered, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Unregistered {
    /// The launch template, when the group launches from one.
    pub template_id: Option<String>,
    pub version: Option<u32>,
    pub instances: Vec<String>,
}

/// Diagnoses the capacity chain behind every task stuck in PROVISIONING.
pub fn diagnose_capacity(
    snapshot: &ClusterSnapshot,
    diagnosis: &Diagnosis,
    policies: &PolicySet,
    clues: &Clues,
) -> Vec<CapacityFinding> {
    let order: HashMap<&str, usize> = policies
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    // Provider name → (waiting task ARNs, governing policy).
    let mut waiting: BTreeMap<&str, (Vec<String>, &str)> = BTreeMap::new();
    for finding in &diagnosis.findings {
        if finding.condition != Condition::InState(TaskStatus::Provisioning) {
            continue;
        }
        let Some(task) = finding.task(snapshot) else {
            continue;
        };
        if task.desired_status != DesiredStatus::Running {
            continue;
        }
        for provider in task.capacity_providers() {
            let entry = waiting
                .entry(provider)
                .or_insert_with(|| (Vec::new(), finding.policy.as_str()));
            entry.0.push(task.arn.clone());
            if order.get(finding.policy.as_str()) < order.get(entry.1) {
                entry.1 = finding.policy.as_str();
            }
        }
    }
    let mut out = Vec::new();
    for (provider_name, (mut waiting_tasks, policy_name)) in waiting {
        let Some(provider) = snapshot
            .capacity_providers
            .iter()
            .find(|p| p.name == provider_name)
        else {
            continue;
        };
        let Some(group_arn) = &provider.auto_scaling_group_arn else {
            continue; // FARGATE: no instances to diagnose.
        };
        let Some(policy) = policies.policies.iter().find(|p| p.name == policy_name) else {
            continue;
        };
        waiting_tasks.sort();
        let group = snapshot
            .auto_scaling_groups
            .iter()
            .find(|g| &g.arn == group_arn || group_arn.ends_with(&format!("/{}", g.name)));
        let (cause, reason, evidence, never_registered) = match group {
            None => (
                Cause::GroupMissing,
                format!(
                    "capacity provider {provider_name}'s Auto Scaling group no longer exists \
                     ({group_arn}); {} {}",
                    plural(waiting_tasks.len(), "task", "tasks"),
                    agree(waiting_tasks.len(), "waits", "wait")
                ),
                Evidence::from([("autoScalingGroupArn".to_string(), group_arn.clone())]),
                Vec::new(),
            ),
            Some(group) => judge_group(snapshot, provider, group, policy, waiting_tasks.len()),
        };
        let mut finding = CapacityFinding {
            cluster: snapshot.cluster_name.clone(),
            capacity_provider: provider_name.to_string(),
            group: group.map(|g| g.name.clone()),
            group_arn: Some(group_arn.clone()),
            policy: policy.name.clone(),
            waiting_tasks,
            cause,
            root_causes: Vec::new(),
            unread: Vec::new(),
            never_registered,
            reason,
            evidence: Arc::new(evidence),
        };
        if let Some(group) = group {
            explain_finding(snapshot, group, &mut finding, clues);
        }
        out.push(finding);
    }
    out
}

/// Attaches what the readings show to the finding, refines a capacity cause they prove, and
/// ends the reason with the most telling root cause.
fn explain_finding(
    snapshot: &ClusterSnapshot,
    group: &AutoScalingGroup,
    finding: &mut CapacityFinding,
    clues: &Clues,
) {
    let mut found = explain::Explanation::default();
    // The broken version first: its root cause is the one the reason names.
    let mut versions: Vec<&Unregistered> = finding.never_registered.iter().collect();
    if let Cause::BrokenLaunchTemplateVersion { version, .. } = &finding.cause {
        versions.sort_by_key(|u| u.version != Some(*version));
    }
    for unregistered in versions {
        // A launch configuration has no version to read, but its instances' boot output still
        // tells why they never registered.
        if let (Some(template_id), Some(version)) =
            (&unregistered.template_id, unregistered.version)
        {
            found.absorb(explain::version(snapshot, template_id, version, clues));
        }
        found.absorb(explain::boot_outputs(&unregistered.instances, clues));
    }
    if matches!(
        finding.cause,
        Cause::CapacityShort { .. }
            | Cause::CapacityExhausted { .. }
            | Cause::CapacityOnItsWay { .. }
            | Cause::Unknown
    ) {
        let waiting: Vec<&Task> = finding
            .waiting_tasks
            .iter()
            .filter_map(|arn| snapshot.tasks.iter().find(|t| &t.arn == arn))
            .collect();
        let capacity = explain::capacity(snapshot, group, &waiting, clues);
        if let Some((cause, reason)) = refine(finding, group, &capacity, waiting.len()) {
            finding.cause = cause;
            finding.reason = reason;
        }
        found.absorb(capacity.explanation);
    }
    let explain::Explanation {
        mut root_causes,
        unread,
        evidence,
    } = found;
    // Most telling first; a cause the readings changed puts its own root cause first.
    root_causes.sort_by_key(|r| (r.code() != finding.cause.code(), r.rank()));
    root_causes.dedup();
    // The finding is still the only holder of its evidence here: no copy is made.
    let facts = Arc::make_mut(&mut finding.evidence);
    if let Some(first) = root_causes.first() {
        finding.reason = format!("{}; why: {}", finding.reason, first.why());
        facts.insert(
            "rootCauses".into(),
            root_causes
                .iter()
                .map(|r| r.code().as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    facts.extend(evidence);
    if !unread.is_empty() {
        facts.insert("unread".into(), unread.join("; "));
    }
    finding.root_causes = root_causes;
    finding.unread = unread;
}

/// The capacity cause the readings prove instead, with its reason: tasks no instance type
/// fits (a new instance would not fit them either), launches that fail (a nudge would launch
/// nothing), or the PROVISIONING quota. Instances still booting keep "on its way" unless no
/// instance could fit the tasks.
fn refine(
    finding: &CapacityFinding,
    group: &AutoScalingGroup,
    capacity: &explain::CapacityExplanation,
    waiting: usize,
) -> Option<(Cause, String)> {
    let booting =
        matches!(&finding.cause, Cause::CapacityOnItsWay { booting } if !booting.is_empty());
    let misfit_type = capacity
        .explanation
        .root_causes
        .iter()
        .find_map(|r| match r {
            RootCause::NoInstanceFits { instance_type, .. } => Some(instance_type.clone()),
            _ => None,
        });
    if let Some(instance_type) = misfit_type.filter(|_| waiting > 0 && capacity.misfits == waiting)
        && !matches!(finding.cause, Cause::Unknown)
    {
        let reason = format!(
            "no instance fits: {} waiting on {} {} larger than every instance type group {} \
             launches (largest {instance_type}); a new instance would not fit {} either",
            every(u32::try_from(waiting).unwrap_or(u32::MAX), "task", "tasks"),
            finding.capacity_provider,
            agree(waiting, "is", "are"),
            group.name,
            agree(waiting, "it", "them")
        );
        return Some((Cause::NoInstanceFits { instance_type }, reason));
    }
    if let Some(failure) = capacity.launches_fail
        && (matches!(finding.cause, Cause::CapacityShort { .. })
            || (matches!(finding.cause, Cause::CapacityOnItsWay { .. }) && !booting))
    {
        let reason = format!(
            "launches failing: {} on {}; group {}'s most recent launch failed, so a nudge \
             would launch nothing",
            waiting_on(waiting),
            finding.capacity_provider,
            group.name
        );
        return Some((Cause::LaunchFailing { failure }, reason));
    }
    if capacity.quota_reached
        && matches!(
            finding.cause,
            Cause::CapacityExhausted { .. } | Cause::Unknown
        )
    {
        let provisioning = capacity
            .explanation
            .root_causes
            .iter()
            .find_map(|r| match r {
                RootCause::ProvisioningQuota { provisioning } => Some(*provisioning),
                _ => None,
            })
            .unwrap_or(0);
        let reason = format!(
            "provisioning quota: {provisioning} tasks of cluster {} are in PROVISIONING; ECS \
             places no more until some leave it",
            finding.cluster
        );
        return Some((Cause::ProvisioningQuota { provisioning }, reason));
    }
    None
}

/// How one instance of the group stands with the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Registration {
    /// Registered and its agent connected.
    Working,
    /// Past the registration timeout without working.
    Failed,
    /// Still inside the registration timeout.
    Booting,
}

fn judge_group(
    snapshot: &ClusterSnapshot,
    provider: &CapacityProvider,
    group: &AutoScalingGroup,
    policy: &Policy,
    waiting: usize,
) -> (Cause, String, Evidence, Vec<Unregistered>) {
    let rules = policy
        .remediate
        .cordon_launch_template
        .clone()
        .unwrap_or(DEFAULT_RULES);
    let now = snapshot.observed_at;
    let registered = snapshot.registered_instances();
    let mut evidence = Evidence::new();
    evidence.insert("autoScalingGroup".into(), group.name.clone());
    evidence.insert(
        "capacity".into(),
        format!(
            "desired {} min {} max {}",
            group.desired_capacity, group.min_size, group.max_size
        ),
    );
    evidence.insert("waitingTasks".into(), waiting.to_string());
    // Version → (working, failed, booting) instance ids.
    let mut by_version: BTreeMap<Option<u32>, [Vec<String>; 3]> = BTreeMap::new();
    let mut booting_all = Vec::new();
    let mut failed_all = Vec::new();
    for instance in &group.instances {
        let standing = match instance.lifecycle_state.as_str() {
            "InService" => {
                let works = registered
                    .get(instance.instance_id.as_str())
                    .is_some_and(|ci| ci.agent_connected);
                let age = instance
                    .launched_at
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or(Duration::ZERO);
                if works {
                    Registration::Working
                } else if age > rules.registration_timeout {
                    Registration::Failed
                } else {
                    Registration::Booting
                }
            }
            s if s.starts_with("Pending") => Registration::Booting,
            _ => continue, // Terminating, Standby, Detaching: not capacity.
        };
        let slot = &mut by_version
            .entry(instance.launch_template_version)
            .or_default()[standing as usize];
        slot.push(instance.instance_id.clone());
        match standing {
            Registration::Failed => failed_all.push(instance.instance_id.clone()),
            Registration::Booting => booting_all.push(instance.instance_id.clone()),
            Registration::Working => {}
        }
    }
    let never_registered = unregistered(group, &by_version);
    for (version, [working, failed, booting]) in &by_version {
        evidence.insert(
            format!(
                "version {}",
                version.map_or("unknown".to_string(), |v| v.to_string())
            ),
            format!(
                "{} registered, {} never registered past {}, {} booting",
                working.len(),
                failed.len(),
                short(rules.registration_timeout),
                booting.len()
            ),
        );
    }

    if let GroupLaunch::LaunchTemplate {
        template_id,
        resolved_version,
        ..
    } = &group.launch
    {
        let broken: Vec<(u32, &Vec<String>)> = by_version
            .iter()
            .filter_map(|(v, [working, failed, _])| {
                let v = (*v)?;
                // A version with no failed instance is never broken, whatever the threshold.
                (working.is_empty()
                    && !failed.is_empty()
                    && failed.len() >= rules.min_failed_instances as usize)
                    .then_some((v, failed))
            })
            .collect();
        // The version the group launches from now, if broken; else the newest broken one.
        let chosen = broken
            .iter()
            .find(|(v, _)| Some(*v) == *resolved_version)
            .or(broken.last());
        if let Some((version, failed)) = chosen {
            let broken_versions: BTreeSet<u32> = broken.iter().map(|(v, _)| *v).collect();
            let known_good = by_version
                .iter()
                .filter_map(|(v, [working, _, _])| {
                    let v = (*v)?;
                    (!working.is_empty()
                        && !broken_versions.contains(&v)
                        && !tags::is_cordoned(group, template_id, v))
                    .then_some(v)
                })
                .max();
            let good = match known_good {
                Some(v) => format!("version {v} registered"),
                None => "no version's instances registered".into(),
            };
            let reason = format!(
                "launch template {template_id} version {version} is broken: {} launched from \
                 it {} been in service over {} without registering with the cluster; {good}",
                plural(failed.len(), "instance", "instances"),
                agree(failed.len(), "has", "have"),
                short(rules.registration_timeout)
            );
            return (
                Cause::BrokenLaunchTemplateVersion {
                    template_id: template_id.clone(),
                    version: *version,
                    failed_instances: (*failed).clone(),
                    known_good,
                },
                reason,
                evidence,
                never_registered,
            );
        }
    } else if !failed_all.is_empty() {
        let why = match &group.launch {
            GroupLaunch::MixedInstancesPolicy { .. } => "a mixed instances policy",
            _ => "a launch configuration",
        };
        let reason = format!(
            "{} of group {} never registered, but the group uses {why}: cordoning is \
             supported for launch templates only",
            plural(failed_all.len(), "instance", "instances"),
            group.name
        );
        return (
            Cause::Unsupported {
                why: format!("group uses {why}"),
            },
            reason,
            evidence,
            never_registered,
        );
    }

    let launched = group
        .instances
        .iter()
        .filter(|i| i.lifecycle_state == "InService" || i.lifecycle_state.starts_with("Pending"))
        .count();
    let launched = u32::try_from(launched).unwrap_or(u32::MAX);
    if !booting_all.is_empty() || launched < group.desired_capacity {
        let reason = format!(
            "capacity on its way: {} of group {} still booting (inside the {} \
             registration timeout), {launched} of {} launched; waiting",
            plural(booting_all.len(), "instance", "instances"),
            group.name,
            short(rules.registration_timeout),
            group.desired_capacity
        );
        return (
            Cause::CapacityOnItsWay {
                booting: booting_all,
            },
            reason,
            evidence,
            never_registered,
        );
    }
    if !failed_all.is_empty() {
        let reason = format!(
            "{} of group {} never registered, too few or mixed with working ones to \
             call their version broken",
            plural(failed_all.len(), "instance", "instances"),
            group.name
        );
        return (Cause::Unknown, reason, evidence, never_registered);
    }
    let ceiling = policy
        .remediate
        .nudge_capacity
        .as_ref()
        .map_or(group.max_size, |n| n.max_desired.min(group.max_size));
    if group.desired_capacity < ceiling {
        let reason = format!(
            "capacity short: {} on {}; {} of group {} {} registered and connected, \
             desired {} below the ceiling {ceiling}",
            waiting_on(waiting),
            provider.name,
            every(launched, "instance", "instances"),
            group.name,
            agree(usize::try_from(launched).unwrap_or(usize::MAX), "is", "are"),
            group.desired_capacity
        );
        (
            Cause::CapacityShort {
                desired: group.desired_capacity,
                ceiling,
            },
            reason,
            evidence,
            never_registered,
        )
    } else {
        let reason = format!(
            "capacity exhausted: {} on {}; group {} is at its ceiling \
             (desired {}, max {}, policy ceiling {ceiling}); nothing the controller may do",
            waiting_on(waiting),
            provider.name,
            group.name,
            group.desired_capacity,
            group.max_size
        );
        (
            Cause::CapacityExhausted {
                desired: group.desired_capacity,
                max_size: group.max_size,
                ceiling,
            },
            reason,
            evidence,
            never_registered,
        )
    }
}

/// The failed instances of each version, oldest first.
fn unregistered(
    group: &AutoScalingGroup,
    by_version: &BTreeMap<Option<u32>, [Vec<String>; 3]>,
) -> Vec<Unregistered> {
    let template_id = group.launch.template_id().map(str::to_string);
    by_version
        .iter()
        .filter(|(_, [_, failed, _])| !failed.is_empty())
        .map(|(version, [_, failed, _])| {
            let mut instances = failed.clone();
            instances.sort_by_key(|id| {
                let launched = group
                    .instances
                    .iter()
                    .find(|i| &i.instance_id == id)
                    .and_then(|i| i.launched_at);
                (launched, id.clone())
            });
            Unregistered {
                template_id: template_id.clone(),
                version: *version,
                instances,
            }
        })
        .collect()
}

/// "1 task waits", "3 tasks wait".
fn waiting_on(waiting: usize) -> String {
    format!(
        "{} {}",
        plural(waiting, "task", "tasks"),
        agree(waiting, "waits", "wait")
    )
}

/// "all 3 instances", "the 1 instance".
fn every(n: u32, one: &str, many: &str) -> String {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    format!("{} {}", agree(n, "the", "all"), plural(n, one, many))
}
