//! Turning the readings in [`Clues`] into root causes, evidence and the list of what could not
//! be read, for one launch template version or one group's capacity. Pure: the capacity
//! diagnosis decides what the causes change; this module only says what the readings show.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use std::time::SystemTime;

use super::messages::{self, EcsMessage};
use super::{Clues, PROVISIONING_QUOTA, Reading, RootCause, activities, fit, userdata};
use crate::domain::{
    AutoScalingGroup, ClusterSnapshot, DesiredStatus, InstanceTypeSize, Task, TaskStatus,
};

/// At most this many service events and stopped tasks are quoted as evidence.
const MAX_MESSAGES: usize = 3;

/// What the readings show about one subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Explanation {
    pub root_causes: Vec<RootCause>,
    /// What could not be read, e.g. "GetConsoleOutput i-0abc: denied".
    pub unread: Vec<String>,
    /// Evidence entries, keyed as a finding's evidence is.
    pub evidence: Vec<(String, String)>,
}

impl Explanation {
    pub fn absorb(&mut self, other: Explanation) {
        self.root_causes.extend(other.root_causes);
        self.unread.extend(other.unread);
        self.evidence.extend(other.evidence);
    }

    /// Records a reading that holds no value.
    fn note_missing<T>(&mut self, reading: &Reading<T>, operation: &str, subject: &str) {
        let what = match reading {
            Reading::Read { .. } => return,
            Reading::NotYet => "not available yet".to_string(),
            Reading::Unreadable {
                operation,
                category,
            } => {
                return self
                    .unread
                    .push(format!("{operation} {subject}: {category}"));
            }
            Reading::Skipped => "skipped".to_string(),
        };
        self.unread.push(format!("{operation} {subject}: {what}"));
    }
}

/// What the version's UserData and instance profile show, as far as they were read.
pub fn version(
    snapshot: &ClusterSnapshot,
    template_id: &str,
    version: u32,
    clues: &Clues,
) -> Explanation {
    let mut out = Explanation::default();
    match clues.versions.get(&(template_id.to_string(), version)) {
        Some(Reading::Read { value }) => {
            let key = format!("userData version {version}");
            let report = match value.user_data.as_deref() {
                None => Ok(userdata::UserDataReport::default()),
                Some(text) => userdata::read(text),
            };
            match report {
                Ok(report) => {
                    out.evidence.push((key, report.describe()));
                    out.root_causes.extend(report.root_cause(
                        template_id,
                        version,
                        &snapshot.cluster_name,
                        &snapshot.cluster_arn,
                    ));
                }
                Err(e) => out
                    .unread
                    .push(format!("UserData {template_id} version {version}: {e}")),
            }
            if value.instance_profile.is_none() {
                out.root_causes.push(RootCause::NoInstanceProfile {
                    template_id: template_id.to_string(),
                    version,
                });
            }
        }
        Some(reading) => out.note_missing(
            reading,
            "DescribeLaunchTemplateVersions",
            &format!("{template_id} version {version}"),
        ),
        None => {}
    }
    out
}

/// What the boot output of instances that never registered shows, as far as it was read.
pub fn boot_outputs(instances: &[String], clues: &Clues) -> Explanation {
    let mut out = Explanation::default();
    for instance in instances {
        match clues.boot.get(instance) {
            Some(Reading::Read { value }) => {
                out.evidence
                    .push((format!("bootOutput {instance}"), value.describe()));
                out.root_causes.extend(value.root_cause(instance));
            }
            Some(reading) => out.note_missing(reading, "GetConsoleOutput", instance),
            None => {}
        }
    }
    out
}

/// What the group's scaling activities and instance types show about its capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapacityExplanation {
    pub explanation: Explanation,
    /// The group's recent launches fail.
    pub launches_fail: Option<super::LaunchFailure>,
    /// How many of the waiting tasks fit no instance type the group launches.
    pub misfits: usize,
    /// The cluster's PROVISIONING quota is reached.
    pub quota_reached: bool,
}

/// What the group's activities (since the oldest waiting task's wait), the sizes of its
/// instance types, and ECS's own words about the waiting tasks' services show.
pub fn capacity(
    snapshot: &ClusterSnapshot,
    group: &AutoScalingGroup,
    waiting: &[&Task],
    clues: &Clues,
) -> CapacityExplanation {
    let mut out = CapacityExplanation::default();
    let since = waiting
        .iter()
        .filter_map(|t| t.timestamps.created_at)
        .min()
        .unwrap_or(snapshot.observed_at);
    match clues.activities.get(&group.name) {
        Some(Reading::Read { value }) => {
            if let Some(cause) = activities::launch_failed(&group.name, value, since) {
                if let RootCause::LaunchFailed {
                    failure, message, ..
                } = &cause
                {
                    out.launches_fail = Some(*failure);
                    out.explanation
                        .evidence
                        .push(("launchActivity".into(), message.clone()));
                }
                out.explanation.root_causes.push(cause);
            }
        }
        Some(reading) => {
            out.explanation
                .note_missing(reading, "DescribeScalingActivities", &group.name)
        }
        None => {}
    }
    let sizes = instance_sizes(group, clues, &mut out.explanation);
    let (misfits, cause) = fit::too_large(waiting, &sizes);
    out.misfits = misfits.len();
    out.explanation.root_causes.extend(cause);
    let (evidence, quota_reached) = ecs_words(snapshot, waiting, since);
    out.explanation.evidence.extend(evidence);
    let provisioning = snapshot
        .tasks
        .iter()
        .filter(|t| t.last_status == TaskStatus::Provisioning)
        .count();
    out.quota_reached = quota_reached || provisioning >= PROVISIONING_QUOTA;
    if out.quota_reached {
        out.explanation
            .root_causes
            .push(RootCause::ProvisioningQuota { provisioning });
    }
    out
}

/// The sizes of the instance types the group launches, as far as they were read: its
/// instances' types, else its launch template version's.
fn instance_sizes(
    group: &AutoScalingGroup,
    clues: &Clues,
    out: &mut Explanation,
) -> Vec<InstanceTypeSize> {
    let mut sizes = Vec::new();
    for instance_type in clues.group_instance_types(group) {
        match clues.instance_types.get(&instance_type) {
            Some(Reading::Read { value }) => {
                out.evidence.push((
                    format!("instanceType {instance_type}"),
                    format!("{} vCPUs, {} MiB", value.vcpus, value.memory_mib),
                ));
                sizes.push(value.clone());
            }
            Some(reading) => out.note_missing(reading, "DescribeInstanceTypes", &instance_type),
            None => {}
        }
    }
    sizes
}

/// ECS's own words: the newest placement events of the waiting tasks' services, and the
/// tasks ECS stopped itself since the wait began. Also whether any says the PROVISIONING
/// quota was exceeded.
fn ecs_words(
    snapshot: &ClusterSnapshot,
    waiting: &[&Task],
    since: SystemTime,
) -> (Vec<(String, String)>, bool) {
    let mut evidence = Vec::new();
    let mut quota = false;
    let mut services: Vec<&str> = waiting.iter().filter_map(|t| t.service_name()).collect();
    services.sort_unstable();
    services.dedup();
    for service in services.iter().filter_map(|name| snapshot.service(name)) {
        let mut quoted = false;
        for event in service
            .events
            .iter()
            .filter(|e| e.at.is_none_or(|at| at >= since))
        {
            let said = messages::classify(&event.message);
            quota |= said.contains(&EcsMessage::ProvisioningLimit);
            if !said.is_empty() && !quoted {
                // Newest first: the first that says something is the one to show.
                evidence.push((
                    format!("serviceEvent {}", service.name),
                    event.message.clone(),
                ));
                quoted = true;
            }
        }
    }
    let mut stopped = 0usize;
    for task in snapshot
        .tasks
        .iter()
        .filter(|t| t.desired_status == DesiredStatus::Stopped)
    {
        let at = task.timestamps.stopped_at.or(task.timestamps.stopping_at);
        if at.is_some_and(|at| at < since) {
            continue;
        }
        let reason = task.stopped_reason.as_deref().unwrap_or("");
        let said = messages::classify(reason);
        quota |= said.contains(&EcsMessage::ProvisioningLimit);
        let by_ecs = task.stop_code.as_deref() == Some(messages::TASK_FAILED_TO_START);
        if (by_ecs || !said.is_empty()) && stopped < MAX_MESSAGES {
            let code = task.stop_code.as_deref().unwrap_or("stopped");
            evidence.push((
                format!("stoppedTask {}", task.id()),
                format!("{code}: {reason}"),
            ));
            stopped = stopped.saturating_add(1);
        }
    }
    (evidence, quota)
}
