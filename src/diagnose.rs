//! Diagnosis: which selected tasks are stuck, for how long, and why. Pure.
//!
//! A task is stuck when it has stayed in a lifecycle state longer than its policy's limit for
//! that state, or has reported UNHEALTHY while RUNNING longer than the `unhealthy` limit. Time
//! in state is measured from the timestamp that marks entry into the state (docs/design.md
//! §2), or, where ECS gives none, from when the controller first saw the task in that state.
//! When in doubt the clock starts later, never earlier: the controller never acts on less
//! evidence than the limit.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::domain::{ClusterSnapshot, DesiredStatus, HealthStatus, Task, TaskStatus};
use crate::policy::{Policy, PolicySet};

/// The observed facts a decision relied on, by name.
pub type Evidence = BTreeMap<String, String>;

/// Serializes shared evidence as the map itself (for `#[serde(serialize_with)]`), so sharing
/// it changes nothing in the JSON of findings, plans and audit records.
pub fn serialize_shared<S: serde::Serializer>(
    evidence: &Arc<Evidence>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    evidence.as_ref().serialize(serializer)
}

/// What a task is stuck in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Condition {
    /// Stayed in a lifecycle state (on the way up or down) past the limit.
    InState(TaskStatus),
    /// RUNNING but reporting UNHEALTHY past the limit.
    Unhealthy,
}

impl Condition {
    /// The machine token of the condition in a stop reason: `stuck:PROVISIONING` (any
    /// lifecycle state, on the way up or down) or `unhealthy`.
    pub fn token(self) -> String {
        match self {
            Condition::InState(status) => format!("stuck:{}", status.as_str()),
            Condition::Unhealthy => "unhealthy".into(),
        }
    }

    /// The condition a token names; `None` for anything else.
    pub fn from_token(token: &str) -> Option<Condition> {
        if token == "unhealthy" {
            return Some(Condition::Unhealthy);
        }
        let status = TaskStatus::parse(token.strip_prefix("stuck:")?)?;
        Some(Condition::InState(status))
    }
}

/// A stuck task, with the one-line why and the facts behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub task_arn: String,
    /// The task's position in the snapshot's `tasks`, so planning finds it without a lookup.
    #[serde(skip)]
    pub task_index: usize,
    pub cluster: String,
    pub service: Option<String>,
    /// The policy that governs the task.
    pub policy: String,
    pub condition: Condition,
    /// How long the task has been in the condition.
    #[serde(with = "humantime_serde")]
    pub elapsed: Duration,
    #[serde(with = "humantime_serde")]
    pub limit: Duration,
    /// One line for people, e.g. "stuck in PROVISIONING for 14m, limit 10m". Never parsed:
    /// decisions read `condition`, `elapsed` and `limit`.
    pub reason: String,
    /// Shared with the planned or held action and its audit records: one map, never copied.
    #[serde(serialize_with = "serialize_shared")]
    pub evidence: Arc<Evidence>,
}

impl Finding {
    /// The task this finding is about, in the snapshot it was made from.
    pub fn task<'a>(&self, snapshot: &'a ClusterSnapshot) -> Option<&'a Task> {
        snapshot
            .tasks
            .get(self.task_index)
            .filter(|t| t.arn == self.task_arn)
            .or_else(|| snapshot.tasks.iter().find(|t| t.arn == self.task_arn))
    }
}

/// The result of diagnosing one cluster snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    pub findings: Vec<Finding>,
    /// Per policy: how many tasks with desiredStatus RUNNING it governs in this cluster (the
    /// denominator of `pauseWhenStuckAbove`).
    pub governed_running: BTreeMap<String, usize>,
}

/// When the controller first saw each task of one cluster in each condition. Kept per cluster
/// between passes, in memory only: after a restart the clocks that depend on it start again, which errs on the
/// side of waiting.
///
/// A task is in at most one condition at a time ([`current_conditions`]) and a container
/// instance only ever has the one, so one entry per ARN holds everything: the ARN once, as a
/// boxed `str` (looked up by `&str`, with no allocation), and what it was seen in since when.
#[derive(Debug, Clone, Default)]
pub struct Sightings {
    first_seen: HashMap<Box<str>, Sighting>,
}

/// What an ARN was first seen in, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sighting {
    seen: Seen,
    since: SystemTime,
}

/// What is sighted: a task in a condition, or a container instance with its agent
/// disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Task(Condition),
    AgentDisconnected,
}

impl Sightings {
    /// Records what the snapshot shows and forgets tasks that left the picture or the
    /// condition.
    pub fn record(&mut self, snapshot: &ClusterSnapshot) {
        let now = snapshot.observed_at;
        let tasks = snapshot
            .tasks
            .iter()
            .filter_map(|t| current_conditions(t).map(|c| (t.arn.as_str(), Seen::Task(c))));
        let instances = snapshot
            .container_instances
            .iter()
            .filter(|ci| !ci.agent_connected)
            .map(|ci| (ci.arn.as_str(), Seen::AgentDisconnected));
        let mut previous = std::mem::take(&mut self.first_seen);
        self.first_seen.reserve(previous.len());
        for (arn, seen) in tasks.chain(instances) {
            // The key of the earlier sighting is moved over, not allocated again.
            let (key, since) = match previous.remove_entry(arn) {
                Some((key, earlier)) if earlier.seen == seen => (key, earlier.since),
                Some((key, _)) => (key, now),
                None => match self.first_seen.get(arn) {
                    // Listed twice in one snapshot: the first listing stands.
                    Some(_) => continue,
                    None => (Box::from(arn), now),
                },
            };
            self.first_seen.insert(key, Sighting { seen, since });
        }
    }

    /// Records that the task was seen in `condition` at `at` (an event's sighting, between
    /// observations); an earlier sighting is kept. [`Sightings::record`] forgets it once a
    /// snapshot shows the task out of the condition.
    pub fn saw(&mut self, task_arn: &str, condition: Condition, at: SystemTime) {
        let seen = Seen::Task(condition);
        match self.first_seen.get_mut(task_arn) {
            Some(s) if s.seen == seen => s.since = s.since.min(at),
            Some(s) => *s = Sighting { seen, since: at },
            None => {
                self.first_seen
                    .insert(Box::from(task_arn), Sighting { seen, since: at });
            }
        }
    }

    /// When the container instance was first seen with its agent disconnected, if it was.
    pub fn first_disconnected(&self, container_instance_arn: &str) -> Option<SystemTime> {
        self.since(container_instance_arn, Seen::AgentDisconnected)
    }

    /// When the task was first seen in the condition, if it was.
    pub fn first_seen(&self, task_arn: &str, condition: Condition) -> Option<SystemTime> {
        self.since(task_arn, Seen::Task(condition))
    }

    fn since(&self, arn: &str, seen: Seen) -> Option<SystemTime> {
        self.first_seen
            .get(arn)
            .filter(|s| s.seen == seen)
            .map(|s| s.since)
    }
}

/// The conditions a task is in right now that a stuck clock may need a sighting for: a state
/// on the way up or down, or UNHEALTHY while RUNNING. A healthy RUNNING or a STOPPED task is in
/// none, which keeps the record small on large clusters.
fn current_conditions(task: &Task) -> Option<Condition> {
    match task.last_status {
        TaskStatus::Running if task.health == HealthStatus::Unhealthy => Some(Condition::Unhealthy),
        TaskStatus::Running | TaskStatus::Stopped => None,
        status => Some(Condition::InState(status)),
    }
}

/// Finds the stuck tasks of one cluster. `now` is the snapshot's `observed_at`.
pub fn diagnose(
    snapshot: &ClusterSnapshot,
    policies: &PolicySet,
    sightings: &Sightings,
) -> Diagnosis {
    let now = snapshot.observed_at;
    let mut diagnosis = Diagnosis::default();
    let in_cluster: Vec<&Policy> = policies.for_cluster(&snapshot.cluster_name).collect();
    if in_cluster.is_empty() {
        return diagnosis;
    }
    // Which policy governs depends only on the task's service (or its being standalone), so it
    // is worked out once per service, not once per task.
    let mut governing: HashMap<Option<&str>, Option<usize>> = HashMap::new();
    let mut running = vec![0usize; in_cluster.len()];
    let mut last: Option<(Option<&str>, Option<usize>)> = None;
    for (task_index, task) in snapshot.tasks.iter().enumerate() {
        let service = task.service_name();
        // Tasks of one service usually come together: check the last one before hashing.
        let governor = match last {
            Some((s, g)) if s == service => g,
            _ => {
                let g = *governing
                    .entry(service)
                    .or_insert_with(|| in_cluster.iter().position(|p| p.target.selects_task(task)));
                last = Some((service, g));
                g
            }
        };
        let Some(index) = governor else {
            continue;
        };
        if task.desired_status == DesiredStatus::Running {
            running[index] = running[index].saturating_add(1);
        }
        if let Some(mut finding) = diagnose_task(snapshot, task, in_cluster[index], sightings, now)
        {
            finding.task_index = task_index;
            diagnosis.findings.push(finding);
        }
    }
    for (policy, count) in in_cluster.iter().zip(running) {
        if count > 0 {
            diagnosis
                .governed_running
                .insert(policy.name.clone(), count);
        }
    }
    diagnosis
}

fn diagnose_task(
    snapshot: &ClusterSnapshot,
    task: &Task,
    policy: &Policy,
    sightings: &Sightings,
    now: SystemTime,
) -> Option<Finding> {
    let (condition, limit) = watched_condition(task, policy)?;
    let (since, clock) = clock_start(task, condition, sightings)?;
    let elapsed = now.duration_since(since).unwrap_or(Duration::ZERO);
    if elapsed <= limit {
        return None;
    }
    let reason = match condition {
        Condition::InState(status) if status.is_way_down() => format!(
            "hanging on the way down in {status} for {}, limit {}",
            short(elapsed),
            short(limit)
        ),
        Condition::InState(status) => format!(
            "stuck in {status} for {}, limit {}",
            short(elapsed),
            short(limit)
        ),
        Condition::Unhealthy => format!(
            "UNHEALTHY while RUNNING for {}, limit {}",
            short(elapsed),
            short(limit)
        ),
    };
    let mut evidence = Evidence::new();
    evidence.insert("lastStatus".into(), task.last_status.to_string());
    evidence.insert(
        "desiredStatus".into(),
        match task.desired_status {
            DesiredStatus::Running => "RUNNING".into(),
            DesiredStatus::Stopped => "STOPPED".into(),
        },
    );
    evidence.insert(
        "healthStatus".into(),
        format!("{:?}", task.health).to_uppercase(),
    );
    evidence.insert("clockStartedAt".into(), rfc3339(since));
    evidence.insert("clockSource".into(), clock.into());
    evidence.insert(
        "taskDefinition".into(),
        task.task_definition_arn.to_string(),
    );
    if let Some(group) = &task.group {
        evidence.insert("group".into(), group.to_string());
    }
    let providers = task.capacity_providers();
    if !providers.is_empty() {
        evidence.insert("capacityProviders".into(), providers.join(","));
    }
    if let Some(ci) = &task.container_instance_arn {
        evidence.insert("containerInstance".into(), ci.clone());
    }
    Some(Finding {
        task_arn: task.arn.clone(),
        task_index: 0,
        cluster: snapshot.cluster_name.clone(),
        service: task.service_name().map(str::to_string),
        policy: policy.name.clone(),
        condition,
        elapsed,
        limit,
        reason,
        evidence: Arc::new(evidence),
    })
}

/// The condition the policy watches the task in right now, with the policy's limit for it;
/// `None` when the task is in no watched state (or the policy sets no limit for it). Diagnosis
/// and the task deadlines (`src/deadline.rs`) share this rule.
pub fn watched_condition(task: &Task, policy: &Policy) -> Option<(Condition, Duration)> {
    match (task.desired_status, task.last_status) {
        (DesiredStatus::Running, status) if status.is_way_up() => {
            Some((Condition::InState(status), policy.stuck.limit_for(status)?))
        }
        (DesiredStatus::Running, TaskStatus::Running) if task.health == HealthStatus::Unhealthy => {
            Some((Condition::Unhealthy, policy.stuck.unhealthy?))
        }
        (DesiredStatus::Stopped, status) if status.is_way_down() => {
            Some((Condition::InState(status), policy.stuck.limit_for(status)?))
        }
        _ => None,
    }
}

/// When the task entered the condition, and which fact says so. `None` when there is no
/// evidence at all (not even a sighting): then the task is not judged yet.
fn clock_start(
    task: &Task,
    condition: Condition,
    sightings: &Sightings,
) -> Option<(SystemTime, &'static str)> {
    entry_time(task, condition, sightings.first_seen(&task.arn, condition))
}

/// When the task entered the condition: the documented timestamp (docs/design.md §2), or else
/// `first_seen`, the controller's first sighting of it there. Diagnosis and the task deadlines
/// share this rule.
pub fn entry_time(
    task: &Task,
    condition: Condition,
    first_seen: Option<SystemTime>,
) -> Option<(SystemTime, &'static str)> {
    let ts = &task.timestamps;
    let documented: Option<(SystemTime, &'static str)> = match condition {
        Condition::InState(TaskStatus::Provisioning) => ts.created_at.map(|t| (t, "createdAt")),
        Condition::InState(TaskStatus::Pending) => latest(&[
            (ts.connectivity_at, "connectivityAt"),
            (ts.pull_started_at, "pullStartedAt"),
        ]),
        Condition::InState(TaskStatus::Activating) => latest(&[
            (ts.connectivity_at, "connectivityAt"),
            (ts.pull_started_at, "pullStartedAt"),
            (ts.pull_stopped_at, "pullStoppedAt"),
        ]),
        Condition::InState(status) if status.is_way_down() => {
            ts.stopping_at.map(|t| (t, "stoppingAt"))
        }
        _ => None,
    };
    documented.or_else(|| first_seen.map(|t| (t, "firstSeenByController")))
}

fn latest(candidates: &[(Option<SystemTime>, &'static str)]) -> Option<(SystemTime, &'static str)> {
    candidates
        .iter()
        .filter_map(|(t, name)| t.map(|t| (t, *name)))
        .max_by_key(|(t, _)| *t)
}

/// A duration rounded to whole seconds, in humantime form ("14m 3s").
pub fn short(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// A timestamp in RFC 3339 with second precision.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
