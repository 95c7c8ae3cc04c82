//! Events: what EventBridge says changed, as typed values the controller applies to its cached
//! picture of each cluster (docs/design.md §7).
//!
//! Events only say *something changed, look again*: the periodic resync repairs whatever they
//! missed, so a lost, duplicated or reordered event delays a decision and never makes a wrong
//! one. Task and container-instance events carry ECS's `version`, and an older version never
//! overwrites a newer picture.
//!
//! An [`EventSource`] delivers raw messages (the SQS adapter in `cloud::aws`, or the simulated
//! account's in-process queue); parsing them into [`Event`]s is pure. A message is deleted only
//! once its event has been applied; one that cannot be read is deleted and counted by its
//! [`Disposition`], never left on the queue to poison it.

pub mod envelope;
pub mod parse;
pub mod pump;
pub mod route;

use std::fmt;
use std::future::Future;
use std::time::SystemTime;

use crate::cloud::CloudError;
use crate::domain::Task;

/// One message as the queue delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The queue's message id (the same for every delivery of one message).
    pub id: String,
    /// The handle that deletes this delivery.
    pub receipt: String,
    /// The body: an EventBridge envelope as JSON, if all is well.
    pub body: String,
}

/// Where events come from: an SQS queue, or the simulated account's queue.
pub trait EventSource: Send + Sync + 'static {
    /// Waits for messages (on SQS: a long poll of up to 20 s, at most 10 messages). An empty
    /// answer is not an error.
    fn receive(&self) -> impl Future<Output = Result<Vec<Message>, CloudError>> + Send;

    /// Deletes these deliveries (on SQS: DeleteMessageBatch, 10 a call). Returns the receipts
    /// that could not be deleted; they will be delivered again, which is harmless.
    fn delete(
        &self,
        receipts: &[String],
    ) -> impl Future<Output = Result<Vec<String>, CloudError>> + Send;
}

/// Where parsed events go: the controller's cached clusters. Applying is synchronous and
/// quick (a cache update and maybe a requeue), so a message can be deleted right after.
pub trait EventSink: Send + Sync + 'static {
    /// Applies one event received at `received_at`; says what became of it.
    fn apply(&self, event: Event, received_at: SystemTime) -> Disposition;

    /// The queue failed (`true`: fall back to the resync cadence without events) or answers
    /// again (`false`).
    fn set_degraded(&self, degraded: bool);
}

/// What an event says, in domain terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `ECS Task State Change`.
    Task(TaskChange),
    /// `ECS Container Instance State Change`.
    ContainerInstance(InstanceChange),
    /// `ECS Service Action` of type WARN or ERROR (SERVICE_TASK_PLACEMENT_FAILURE, ...): the
    /// cluster is looked at again.
    ServiceAction {
        cluster_arn: String,
        service_arn: String,
        event_name: String,
        reason: Option<String>,
    },
    /// An Auto Scaling launch (successful or not) or terminate lifecycle action: the cluster
    /// whose capacity provider uses the group is looked at again.
    GroupActivity {
        group_name: String,
        kind: GroupActivityKind,
        /// The event's StatusMessage or Cause, for the log.
        message: Option<String>,
    },
}

/// The Auto Scaling events used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupActivityKind {
    LaunchSuccessful,
    LaunchUnsuccessful,
    TerminateLifecycleAction,
}

/// A task's state as its state change event tells it. `task` has what the event carries:
/// no tags, health `Unknown`, no security groups. A task already in the cache keeps those
/// from its last describe; a task never seen is described before anything is decided on it
/// (its tags may exempt it).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskChange {
    pub task: Box<Task>,
}

/// A container instance's state as its state change event tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceChange {
    pub cluster_arn: String,
    pub container_instance_arn: String,
    pub ec2_instance_id: Option<String>,
    /// ECS's `version` of the container instance.
    pub version: u64,
    pub agent_connected: bool,
    /// ACTIVE, DRAINING, ...
    pub status: String,
}

/// What became of one message: every message gets exactly one, and each is counted by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Disposition {
    /// Applied to the cache (or requeued its cluster).
    Applied,
    /// The body is not JSON.
    NotJson,
    /// JSON, but not an EventBridge envelope (no `detail-type`, `source` or `detail`).
    NotEnvelope,
    /// An envelope of a source or detail type this controller does not use.
    UnknownType,
    /// A known type whose `detail` lacks a field the controller needs or has a bad value.
    Malformed,
    /// About a cluster (or group) no policy selects.
    OutOfScope,
    /// A task or container instance event whose version is older than (or the same as) the
    /// cached picture; or a redelivery of an event the pump applied moments ago (same
    /// envelope `id`), which is deleted without being applied again.
    Stale,
    /// About a task the cache has not seen: it is described before it is acted on.
    UnknownTask,
}

impl Disposition {
    pub const ALL: [Disposition; 8] = [
        Disposition::Applied,
        Disposition::NotJson,
        Disposition::NotEnvelope,
        Disposition::UnknownType,
        Disposition::Malformed,
        Disposition::OutOfScope,
        Disposition::Stale,
        Disposition::UnknownTask,
    ];

    /// The name used in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Applied => "applied",
            Disposition::NotJson => "not_json",
            Disposition::NotEnvelope => "not_envelope",
            Disposition::UnknownType => "unknown_type",
            Disposition::Malformed => "malformed",
            Disposition::OutOfScope => "out_of_scope",
            Disposition::Stale => "stale",
            Disposition::UnknownTask => "unknown_task",
        }
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
