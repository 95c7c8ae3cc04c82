//! The demo's "without the controller" comparison: what a scenario is about, counted in the
//! account the controller ran on and in the same scenario left alone.

use std::time::Duration;

use crate::cloud::sim::SimAccount;
use crate::cloud::sim::scenario::Concern;
use crate::domain::{DesiredStatus, HealthStatus, TaskStatus};

use crate::prose::plural;

/// One measure of what a scenario is about, with and without the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compared {
    pub measure: Measure,
    pub with: usize,
    pub without: usize,
}

/// A count of trouble in an account's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Tasks that should run, still PROVISIONING, PENDING or ACTIVATING.
    WayUp,
    /// Tasks hanging in STOPPING.
    Stopping,
    /// Container instances whose agent is disconnected, still ACTIVE.
    DisconnectedActive,
    /// Tasks that should run, RUNNING but UNHEALTHY.
    Unhealthy,
    /// Tasks missing from services' desired counts of healthy RUNNING tasks.
    Missing,
}

impl Measure {
    /// What to count for a scenario about `concerns`.
    pub(super) fn all_of(concerns: &[Concern]) -> Vec<Measure> {
        concerns
            .iter()
            .flat_map(|c| Measure::of(*c))
            .copied()
            .collect()
    }

    fn of(concern: Concern) -> &'static [Measure] {
        match concern {
            Concern::WayUp => &[Measure::WayUp],
            Concern::StoppingHang => &[Measure::Stopping, Measure::DisconnectedActive],
            Concern::Unhealthy => &[Measure::Unhealthy],
            Concern::Capacity => &[Measure::Missing],
        }
    }

    /// The count in `account`'s current state.
    pub(super) fn count(self, account: &SimAccount) -> usize {
        let clusters = account.cluster_names();
        let tasks = || clusters.iter().flat_map(|c| account.tasks(c));
        let should_run = |t: &crate::domain::Task| t.desired_status == DesiredStatus::Running;
        match self {
            Measure::WayUp => tasks()
                .filter(|t| should_run(t) && t.last_status.is_way_up())
                .count(),
            Measure::Stopping => tasks()
                .filter(|t| t.last_status == TaskStatus::Stopping)
                .count(),
            Measure::DisconnectedActive => clusters
                .iter()
                .flat_map(|c| account.container_instances(c))
                .filter(|ci| !ci.agent_connected && ci.status == "ACTIVE")
                .count(),
            Measure::Unhealthy => tasks()
                .filter(|t| {
                    should_run(t)
                        && t.last_status == TaskStatus::Running
                        && t.health == HealthStatus::Unhealthy
                })
                .count(),
            Measure::Missing => clusters
                .iter()
                .flat_map(|c| {
                    let tasks = account.tasks(c);
                    account
                        .services(c)
                        .into_iter()
                        .map(move |s| missing(&s, &tasks))
                })
                .sum(),
        }
    }

    /// `n` of this, for people: "2 tasks on the way up (PROVISIONING, PENDING or ACTIVATING)".
    fn phrase(self, n: usize) -> String {
        let tasks = plural(n, "task", "tasks");
        match self {
            Measure::WayUp => {
                format!("{tasks} on the way up (PROVISIONING, PENDING or ACTIVATING)")
            }
            Measure::Stopping => format!("{tasks} hanging in STOPPING"),
            Measure::DisconnectedActive => format!(
                "{} with a disconnected agent still ACTIVE",
                plural(n, "container instance", "container instances")
            ),
            Measure::Unhealthy => format!("{tasks} RUNNING but UNHEALTHY"),
            Measure::Missing => format!(
                "{} missing from services' desired counts",
                plural(n, "healthy RUNNING task", "healthy RUNNING tasks")
            ),
        }
    }
}

/// How many healthy RUNNING tasks `service` lacks.
fn missing(service: &crate::domain::Service, tasks: &[crate::domain::Task]) -> usize {
    let healthy = tasks
        .iter()
        .filter(|t| {
            t.service_name() == Some(&service.name)
                && t.desired_status == DesiredStatus::Running
                && t.last_status == TaskStatus::Running
                && t.health != HealthStatus::Unhealthy
        })
        .count();
    (service.desired_count as usize).saturating_sub(healthy)
}

/// "without the controller, after 45m of virtual time the same account has 2 tasks …,
/// against 0 with it".
pub(super) fn comparison(span: Duration, compared: &[Compared], dry_run: bool) -> String {
    let with = if dry_run {
        "with it in dry-run mode"
    } else {
        "with it"
    };
    let each = compared
        .iter()
        .map(|c| format!("{}, against {} {with}", c.measure.phrase(c.without), c.with))
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "without the controller, after {} of virtual time the same account has {each}",
        crate::diagnose::short(span)
    )
}
