//! Task deadlines: when each watched task of a cluster crosses its policy's limit. Pure.
//!
//! A task's deadline is its entry into the watched condition plus the governing policy's limit
//! for it, by the rules diagnosis judges with ([`diagnose::watched_condition`],
//! [`diagnose::entry_time`]): the documented timestamp, or else the controller's first
//! sighting (docs/design.md §2). The controller wakes a cluster at its earliest deadline and
//! re-reads only the tasks that fell due, instead of listing the whole cluster.

// Times and durations: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use std::time::{Duration, SystemTime};

use crate::diagnose::{Condition, Sightings, entry_time, watched_condition};
use crate::domain::{ClusterSnapshot, Task};
use crate::policy::{Policy, PolicySet};

/// When one task crosses its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub condition: Condition,
    /// When the task entered the condition.
    pub since: SystemTime,
    pub limit: Duration,
}

impl Deadline {
    /// The moment the task's time in the condition reaches the limit: past it, diagnosis
    /// finds the task stuck.
    pub fn at(&self) -> SystemTime {
        self.since.checked_add(self.limit).unwrap_or(self.since)
    }
}

/// The policy that governs `task` among those selecting its cluster: the first that selects it,
/// as diagnosis picks it.
pub fn governing<'a>(in_cluster: &[&'a Policy], task: &Task) -> Option<&'a Policy> {
    in_cluster
        .iter()
        .copied()
        .find(|p| p.target.selects_task(task))
}

/// The deadline of one task under `policy`, with `first_seen` the controller's first sighting
/// of it in its current condition (if any). `None` when the task is in no watched condition,
/// or when its clock has not started (no timestamp, no sighting).
pub fn task_deadline(
    task: &Task,
    policy: &Policy,
    first_seen: impl FnOnce(Condition) -> Option<SystemTime>,
) -> Option<Deadline> {
    let (condition, limit) = watched_condition(task, policy)?;
    let (since, _) = entry_time(task, condition, first_seen(condition))?;
    Some(Deadline {
        condition,
        since,
        limit,
    })
}

/// The deadline of every watched task of the snapshot, by task ARN.
pub fn deadlines<'s>(
    snapshot: &'s ClusterSnapshot,
    policies: &PolicySet,
    sightings: &Sightings,
) -> Vec<(&'s str, Deadline)> {
    let in_cluster: Vec<&Policy> = policies.for_cluster(&snapshot.cluster_name).collect();
    if in_cluster.is_empty() {
        return Vec::new();
    }
    snapshot
        .tasks
        .iter()
        .filter_map(|task| {
            let policy = governing(&in_cluster, task)?;
            let deadline = task_deadline(task, policy, |c| sightings.first_seen(&task.arn, c))?;
            Some((task.arn.as_str(), deadline))
        })
        .collect()
}

/// Whether the task's health is worth re-reading on a cadence in event mode: it is RUNNING
/// (desired RUNNING), reports a health status (it has health checks), is not UNHEALTHY yet
/// (then it has a deadline), and its policy has an `unhealthy` limit. Events carry no health.
pub fn health_watched(task: &Task, policy: &Policy) -> bool {
    use crate::domain::{DesiredStatus, HealthStatus, TaskStatus};
    task.desired_status == DesiredStatus::Running
        && task.last_status == TaskStatus::Running
        && task.health == HealthStatus::Healthy
        && policy.stuck.unhealthy.is_some()
}

/// When each container instance whose agent is disconnected reaches the drain limit of the
/// cluster's first policy that drains (as capacity planning picks it): the first sighting of
/// the disconnection plus `agentDisconnected`. Events carry agent connectivity, so in event mode
/// the drain is planned at this moment instead of at the next resync.
pub fn drain_deadlines<'s>(
    snapshot: &'s ClusterSnapshot,
    policies: &PolicySet,
    sightings: &Sightings,
) -> Vec<(&'s str, SystemTime)> {
    let Some(limit) = policies
        .for_cluster(&snapshot.cluster_name)
        .find_map(|p| p.remediate.drain_container_instance.as_ref())
        .map(|d| d.agent_disconnected)
    else {
        return Vec::new();
    };
    snapshot
        .container_instances
        .iter()
        .filter(|ci| !ci.agent_connected && ci.status == "ACTIVE")
        .filter_map(|ci| {
            let since = sightings.first_disconnected(&ci.arn)?;
            Some((ci.arn.as_str(), since.checked_add(limit)?))
        })
        .collect()
}
