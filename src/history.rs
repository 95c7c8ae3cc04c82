//! What the controller already did: rebuilt from the AWS resources themselves, so a restarted
//! (or second) controller knows its hourly budgets, what is in flight and what it must not
//! repeat.
//!
//! Sources, merged:
//! - the stop reasons ECS keeps on stopped tasks (at least an hour), which carry a machine
//!   token with the condition and the policy: `ecs-reconciler[stuck:PROVISIONING policy=web]:
//!   <prose>` (the older form, `ecs-reconciler: <prose> [policy web]`, written by releases
//!   already deployed, is still read);
//! - the tag on replacement tasks (the id of the task replaced), which counts a replacement
//!   whose stopped original ECS no longer shows;
//! - the cordon and nudge tags on the Auto Scaling groups (`capacity::tags`), with their times
//!   and policy;
//! - the process's own ledger of calls it made, which covers reads that are stale right after
//!   an action. Drains count from the ledger only: a container instance carries no record of
//!   who drained it, so after a restart the drains of the last hour are forgotten.
//!
//! Pure.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use crate::capacity::tags;
use crate::decision::ActionKind;
use crate::diagnose::{Condition, rfc3339};
use crate::domain::{ClusterSnapshot, DesiredStatus, Task, TaskStatus};

/// Every stop reason the controller writes starts with this.
pub const STOP_REASON_MARK: &str = "ecs-reconciler";

/// The prefix of the stop reasons written before the machine token (still recognised).
pub const LEGACY_STOP_REASON_PREFIX: &str = "ecs-reconciler:";

/// The tag a replacement task carries: the id of the task it replaces.
pub const REPLACES_TAG: &str = "ecs-reconciler/replaces";

/// How far back budgets look.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(3600);

/// StopTask takes at most 255 characters of reason.
pub const MAX_STOP_REASON: usize = 255;

/// The stop reason for a task stopped under `policy` for `condition`:
/// `ecs-reconciler[stuck:PROVISIONING policy=web]: <prose>`. At most 255 bytes (so 255
/// characters): the prose is cut on a character boundary, never the token. Policy names are
/// RFC 1123 labels (at most 63 characters, no `]` or space), so the token always fits.
pub fn stop_reason(policy: &str, condition: Condition, prose: &str) -> String {
    let mut reason = format!(
        "{STOP_REASON_MARK}[{} policy={policy}]: ",
        condition.token()
    );
    let room = MAX_STOP_REASON.saturating_sub(reason.len());
    let cut = if prose.len() > room {
        prose.floor_char_boundary(room)
    } else {
        prose.len()
    };
    reason.push_str(&prose[..cut]);
    reason
}

/// What a stop reason the controller wrote says: the policy, and the condition when the
/// reason says which (always in the token form; in the older form when its prose is one the
/// controller wrote).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopMark<'a> {
    pub policy: &'a str,
    pub condition: Option<Condition>,
}

/// Reads a stop reason the controller wrote, in either form; `None` for any other reason.
pub fn read_stop_reason(reason: &str) -> Option<StopMark<'_>> {
    if let Some(rest) = reason.strip_prefix(LEGACY_STOP_REASON_PREFIX) {
        return read_legacy(rest);
    }
    let rest = reason.strip_prefix(STOP_REASON_MARK)?.strip_prefix('[')?;
    let (token, _) = rest.split_once(']')?;
    let (condition, policy) = token.split_once(' ')?;
    let policy = policy.strip_prefix("policy=")?;
    if policy.is_empty() {
        return None;
    }
    Some(StopMark {
        policy,
        condition: Condition::from_token(condition),
    })
}

/// The older form: `ecs-reconciler: <prose> [policy NAME]`. Its condition is known only from
/// the prose the release that wrote it used; nothing the current release writes is read this
/// way.
fn read_legacy(rest: &str) -> Option<StopMark<'_>> {
    let (prose, policy) = rest.rsplit_once(" [policy ")?;
    let policy = policy.strip_suffix(']')?;
    let prose = prose.trim_start();
    let status_after = |prefix: &str| {
        let word = prose.strip_prefix(prefix)?.split_whitespace().next()?;
        TaskStatus::parse(word)
    };
    let condition = if prose.starts_with("UNHEALTHY while RUNNING") {
        Some(Condition::Unhealthy)
    } else {
        status_after("stuck in ")
            .or_else(|| status_after("hanging on the way down in "))
            .map(Condition::InState)
    };
    Some(StopMark { policy, condition })
}

/// The key under which a cordon counts in the budget: one per group and version.
pub fn cordon_key(group_arn: &str, template_id: &str, version: u32) -> String {
    format!("{group_arn}#cordon/{template_id}/{version}")
}

/// The key under which a nudge counts in the budget: one per group and time of the nudge.
pub fn nudge_key(group_arn: &str, at: SystemTime) -> String {
    format!("{group_arn}#nudge/{}", rfc3339(at))
}

/// One action the controller took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastAction {
    pub at: SystemTime,
    pub policy: String,
    pub kind: ActionKind,
    pub service: Option<String>,
    /// The task or container instance acted on; for a cordon or nudge, its [`cordon_key`] or
    /// [`nudge_key`].
    pub target: String,
    /// The condition a task was stopped for; `None` for capacity actions, and for a stop
    /// reason in the older form whose prose does not say.
    pub condition: Option<Condition>,
}

/// The remediations of one cluster within the budget window.
#[derive(Debug, Clone, Default)]
pub struct History {
    by_target: BTreeMap<String, PastAction>,
    /// Task ids that already have a replacement (a task tagged `REPLACES_TAG`).
    replaced: Vec<String>,
    /// Positions in the snapshot of replacement tasks created in the window.
    replacements: Vec<usize>,
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
        let in_window =
            |at: SystemTime| now.duration_since(at).unwrap_or(Duration::ZERO) < BUDGET_WINDOW;
        let mut history = History::default();
        let ledger_arns: HashSet<&str> = ledger.iter().map(|a| a.target.as_str()).collect();
        for (index, task) in snapshot.tasks.iter().enumerate() {
            if let Some(replaced) = task.tags.get(REPLACES_TAG) {
                history.replaced.push(replaced.to_string());
                if task.timestamps.created_at.is_some_and(in_window) {
                    history.replacements.push(index);
                }
            }
            let mark = task.stopped_reason.as_deref().and_then(read_stop_reason);
            if mark.is_none() && !ledger_arns.contains(task.arn.as_str()) {
                continue;
            }
            history
                .still_stopping
                .insert(task.arn.clone(), task.last_status != TaskStatus::Stopped);
            let standalone = task.service_name().is_none();
            if standalone && task.desired_status == DesiredStatus::Stopped {
                history.stopped_standalone.push(index);
            }
            let Some(mark) = mark else {
                continue;
            };
            let at = task
                .timestamps
                .stopping_at
                .or(task.timestamps.stopped_at)
                .unwrap_or(now);
            let kind = if standalone {
                ActionKind::ReplaceTask
            } else {
                ActionKind::StopTask
            };
            history.by_target.insert(
                task.arn.clone(),
                PastAction {
                    at,
                    policy: mark.policy.to_string(),
                    kind,
                    service: task.service_name().map(str::to_string),
                    target: task.arn.clone(),
                    condition: mark.condition,
                },
            );
        }
        history.read_group_tags(snapshot);
        // The ledger covers reads that do not show an action yet. A ledger entry whose task is
        // gone from the picture finished stopping long ago (`still_stopping` stays false).
        for action in ledger {
            history
                .by_target
                .entry(action.target.clone())
                .or_insert_with(|| action.clone());
        }
        history.by_target.retain(|_, a| in_window(a.at));
        history
    }

    /// The cordons and the last nudge recorded on the groups: actions of the policy named in
    /// the tag, at the time in the tag.
    fn read_group_tags(&mut self, snapshot: &ClusterSnapshot) {
        for group in &snapshot.auto_scaling_groups {
            for cordon in tags::cordons(group) {
                let (Some(at), Some(policy)) = (cordon.at, cordon.policy) else {
                    continue;
                };
                let target = cordon_key(&group.arn, &cordon.template_id, cordon.version);
                self.by_target.insert(
                    target.clone(),
                    PastAction {
                        at,
                        policy,
                        kind: ActionKind::CordonLaunchTemplate,
                        service: None,
                        target,
                        condition: None,
                    },
                );
            }
            if let Some(nudge) = tags::last_nudge(group).filter(|n| !n.policy.is_empty()) {
                let target = nudge_key(&group.arn, nudge.at);
                self.by_target.insert(
                    target.clone(),
                    PastAction {
                        at: nudge.at,
                        policy: nudge.policy,
                        kind: ActionKind::NudgeCapacity,
                        service: None,
                        target,
                        condition: None,
                    },
                );
            }
        }
    }

    /// An earlier replacement made for the same condition that `task` looks like the result
    /// of: for a service task, a task of the same service stopped for that condition before
    /// this one was created; for a standalone task, the task it replaces (its replaces tag).
    pub fn replaced_for_same_cause(
        &self,
        task: &Task,
        condition: Condition,
    ) -> Option<&PastAction> {
        let created = task.timestamps.created_at?;
        let same = |a: &&PastAction| a.condition == Some(condition);
        match task.service_name() {
            Some(service) => self
                .by_target
                .values()
                .filter(same)
                .find(|a| a.service.as_deref() == Some(service) && a.at <= created),
            None => {
                let replaces = task.tags.get(REPLACES_TAG)?;
                self.by_target
                    .values()
                    .filter(same)
                    .find(|a| a.target.rsplit('/').next() == Some(replaces.as_str()))
            }
        }
    }

    /// Whether the controller already acted on this task or container instance.
    pub fn acted_on(&self, arn: &str) -> bool {
        self.by_target.contains_key(arn)
    }

    /// Whether a task (by id) already has a replacement started by the controller.
    pub fn has_replacement(&self, task_id: &str) -> bool {
        self.replaced.iter().any(|r| r == task_id)
    }

    /// Actions of `policy`, of every kind, in the window ending at `now`.
    pub fn actions_in_window(&self, policy: &str, now: SystemTime) -> usize {
        self.by_target
            .values()
            .filter(|a| a.policy == policy)
            .filter(|a| now.duration_since(a.at).unwrap_or(Duration::ZERO) < BUDGET_WINDOW)
            .count()
    }

    /// Replacement tasks created in the window whose original is not among the actions read
    /// (ECS no longer shows it): each stands for one replacement of its governing policy.
    /// `snapshot` is the one the history was rebuilt from.
    pub fn orphan_replacements<'a>(
        &'a self,
        snapshot: &'a ClusterSnapshot,
    ) -> impl Iterator<Item = &'a Task> + 'a {
        let known: HashSet<&str> = self
            .by_target
            .values()
            .filter(|a| a.kind == ActionKind::ReplaceTask)
            .filter_map(|a| a.target.rsplit('/').next())
            .collect();
        self.replacements.iter().filter_map(move |&index| {
            let task = snapshot.tasks.get(index)?;
            let replaces = task.tags.get(REPLACES_TAG)?;
            (!known.contains(replaces.as_str())).then_some(task)
        })
    }

    /// Tasks of `service` the controller stopped that are still on their way down.
    pub fn in_flight(&self, service: &str) -> usize {
        self.by_target
            .values()
            .filter(|a| a.service.as_deref() == Some(service))
            .filter(|a| self.still_stopping.get(&a.target).copied().unwrap_or(false))
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
            let action = self.by_target.get(&task.arn)?;
            (!self.has_replacement(task.id())).then_some((task, action))
        })
    }
}
