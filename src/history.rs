//! What the controller already did: rebuilt from the AWS resources themselves, so a restarted
//! (or second) controller knows its hourly budgets, what is in flight and what it must not
//! repeat.
//!
//! Two sources, merged: the stop reasons ECS keeps on stopped tasks (at least an hour), which
//! carry the `ecs-reconciler:` prefix and the policy name, and tags on replacement tasks; and
//! the process's own ledger of calls it made, which covers reads that are stale right after an
//! action. Pure.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use crate::domain::{ClusterSnapshot, DesiredStatus, Task, TaskStatus};

/// Every stop reason the controller writes starts with this.
pub const STOP_REASON_PREFIX: &str = "ecs-reconciler:";

/// The tag a replacement task carries: the id of the task it replaces.
pub const REPLACES_TAG: &str = "ecs-reconciler/replaces";

/// How far back budgets look.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(3600);

/// StopTask takes at most 255 characters of reason.
const MAX_STOP_REASON: usize = 255;

/// The stop reason for a task stopped under `policy` because of `diagnosis`.
pub fn stop_reason(policy: &str, diagnosis: &str) -> String {
    let suffix = format!(" [policy {policy}]");
    let mut head = format!("{STOP_REASON_PREFIX} {diagnosis}");
    let room = MAX_STOP_REASON.saturating_sub(suffix.len());
    if head.len() > room {
        head.truncate(head.floor_char_boundary(room));
    }
    head.push_str(&suffix);
    head
}

/// The policy named in a stop reason the controller wrote; `None` for any other reason.
pub fn policy_of_stop_reason(reason: &str) -> Option<&str> {
    let rest = reason.strip_prefix(STOP_REASON_PREFIX)?;
    let (_, policy) = rest.rsplit_once(" [policy ")?;
    policy.strip_suffix(']')
}

/// The cause named in a stop reason the controller wrote: "stuck in PROVISIONING".
pub fn condition_of_stop_reason(reason: &str) -> Option<&str> {
    let rest = reason.strip_prefix(STOP_REASON_PREFIX)?.trim_start();
    Some(crate::plan::condition_key(rest))
}

/// One remediation of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastAction {
    pub at: SystemTime,
    pub policy: String,
    pub service: Option<String>,
    pub task_arn: String,
    /// The cause it was stopped for, e.g. "stuck in PROVISIONING".
    pub condition: String,
}

/// The remediations of one cluster within the budget window.
#[derive(Debug, Clone, Default)]
pub struct History {
    by_task: BTreeMap<String, PastAction>,
    /// Task ids that already have a replacement (a task tagged `REPLACES_TAG`).
    replaced: Vec<String>,
    /// Task ARN → whether it is still on its way down (not STOPPED) in the snapshot.
    still_stopping: BTreeMap<String, bool>,
    /// Positions in the snapshot of standalone tasks told to stop that the controller acted
    /// on: the candidates for an unfinished replacement.
    stopped_standalone: Vec<usize>,
}

impl History {
    /// Merges what the snapshot shows with the process's own ledger (actions it performed).
    pub fn rebuild(snapshot: &ClusterSnapshot, ledger: &[PastAction]) -> History {
        let now = snapshot.observed_at;
        let mut history = History::default();
        let ledger_arns: HashSet<&str> = ledger.iter().map(|a| a.task_arn.as_str()).collect();
        for (index, task) in snapshot.tasks.iter().enumerate() {
            if let Some(replaced) = task.tags.get(REPLACES_TAG) {
                history.replaced.push(replaced.clone());
            }
            let policy = task
                .stopped_reason
                .as_deref()
                .and_then(policy_of_stop_reason);
            if policy.is_none()
                && (ledger_arns.is_empty() || !ledger_arns.contains(task.arn.as_str()))
            {
                continue;
            }
            history
                .still_stopping
                .insert(task.arn.clone(), task.last_status != TaskStatus::Stopped);
            if task.service_name().is_none() && task.desired_status == DesiredStatus::Stopped {
                history.stopped_standalone.push(index);
            }
            let Some(policy) = policy else {
                continue;
            };
            let at = task
                .timestamps
                .stopping_at
                .or(task.timestamps.stopped_at)
                .unwrap_or(now);
            history.by_task.insert(
                task.arn.clone(),
                PastAction {
                    at,
                    policy: policy.to_string(),
                    service: task.service_name().map(str::to_string),
                    task_arn: task.arn.clone(),
                    condition: task
                        .stopped_reason
                        .as_deref()
                        .and_then(condition_of_stop_reason)
                        .unwrap_or_default()
                        .to_string(),
                },
            );
        }
        // The ledger covers reads that do not show an action yet. A ledger entry whose task is
        // gone from the picture finished stopping long ago (`still_stopping` stays false).
        for action in ledger {
            history
                .by_task
                .entry(action.task_arn.clone())
                .or_insert_with(|| action.clone());
        }
        history
            .by_task
            .retain(|_, a| now.duration_since(a.at).unwrap_or(Duration::ZERO) < BUDGET_WINDOW);
        history
    }

    /// An earlier replacement made for the same cause that `task` looks like the result of:
    /// for a service task, a task of the same service stopped for that cause before this one
    /// was created; for a standalone task, the task it replaces (its replaces tag).
    pub fn replaced_for_same_cause(&self, task: &Task, condition: &str) -> Option<&PastAction> {
        let created = task.timestamps.created_at?;
        match task.service_name() {
            Some(service) => self.by_task.values().find(|a| {
                a.service.as_deref() == Some(service) && a.condition == condition && a.at <= created
            }),
            None => {
                let replaces = task.tags.get(REPLACES_TAG)?;
                self.by_task.values().find(|a| {
                    a.task_arn.rsplit('/').next() == Some(replaces.as_str())
                        && a.condition == condition
                })
            }
        }
    }

    /// Whether the controller already acted on this task.
    pub fn acted_on(&self, task_arn: &str) -> bool {
        self.by_task.contains_key(task_arn)
    }

    /// Whether a task (by id) already has a replacement started by the controller.
    pub fn has_replacement(&self, task_id: &str) -> bool {
        self.replaced.iter().any(|r| r == task_id)
    }

    /// Actions of `policy` in the window ending at `now`.
    pub fn actions_in_window(&self, policy: &str, now: SystemTime) -> usize {
        self.by_task
            .values()
            .filter(|a| a.policy == policy)
            .filter(|a| now.duration_since(a.at).unwrap_or(Duration::ZERO) < BUDGET_WINDOW)
            .count()
    }

    /// Tasks of `service` the controller stopped that are still on their way down.
    pub fn in_flight(&self, service: &str) -> usize {
        self.by_task
            .values()
            .filter(|a| a.service.as_deref() == Some(service))
            .filter(|a| {
                self.still_stopping
                    .get(&a.task_arn)
                    .copied()
                    .unwrap_or(false)
            })
            .count()
    }

    /// Standalone tasks the controller stopped whose replacement was never started (a crash
    /// between StopTask and RunTask): the planner finishes them. `snapshot` is the one the
    /// history was rebuilt from.
    pub fn unfinished_replacements<'a>(
        &'a self,
        snapshot: &'a ClusterSnapshot,
    ) -> impl Iterator<Item = (&'a Task, &'a PastAction)> + 'a {
        self.stopped_standalone.iter().filter_map(move |&index| {
            let task = snapshot.tasks.get(index)?;
            let action = self.by_task.get(&task.arn)?;
            (!self.has_replacement(task.id())).then_some((task, action))
        })
    }
}
