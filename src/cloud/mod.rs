//! The cloud boundary: one narrow trait in domain terms, with typed error categories.
//!
//! Implementations: [`aws::AwsCloud`] (the only place the AWS SDK appears), [`sim::SimAccount`]
//! (an in-process ECS account on a virtual clock) and [`read_only::ReadOnly`] (a decorator that
//! lets reads through and refuses every mutating call, used for dry runs). [`budget`] paces the
//! adapter's (and the simulator's) calls; [`faults::Faulty`] injects scripted faults for
//! scenarios.

pub mod aws;
pub mod budget;
pub mod faults;
pub mod memo;
pub mod read_only;
pub mod sim;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::{
    AutoScalingGroup, ClusterSnapshot, DesiredStatus, InstanceTypeSize, LaunchTemplateVersion,
    RunTaskRequest, ScalingActivity, Tags, Task,
};

/// What kind of failure a cloud call met; decides retry and how the audit trail names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCategory {
    /// The resource does not exist (any more).
    NotFound,
    /// The account's API rate was exceeded.
    Throttled,
    /// The caller lacks permission.
    Denied,
    /// A timeout, a 5xx or a dropped connection: worth trying again later.
    Transient,
    /// The request was refused as malformed or not allowed in the resource's state.
    Invalid,
}

impl ErrorCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::NotFound => "not_found",
            ErrorCategory::Throttled => "throttled",
            ErrorCategory::Denied => "denied",
            ErrorCategory::Transient => "transient",
            ErrorCategory::Invalid => "invalid",
        }
    }

    /// Whether a later attempt of the same call may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorCategory::Throttled | ErrorCategory::Transient)
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed cloud call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed ({category}): {message}")]
pub struct CloudError {
    pub category: ErrorCategory,
    /// The API operation, e.g. `StopTask`.
    pub operation: String,
    pub message: String,
}

impl CloudError {
    pub fn new(
        category: ErrorCategory,
        operation: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        CloudError {
            category,
            operation: operation.into(),
            message: message.into(),
        }
    }
}

/// What a targeted DescribeTasks found ([`Cloud::describe_tasks`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskReads {
    /// The tasks ECS described, as [`Cloud::observe_cluster`] would report them.
    pub tasks: Vec<Task>,
    /// ARNs ECS no longer knows (`failures[]` reason MISSING): gone for good.
    pub missing: Vec<String>,
    /// What could not be read: a batch that failed with a retryable category, or a
    /// `failures[]` entry other than MISSING. Those tasks keep their last known picture.
    pub gaps: Vec<String>,
}

/// The tasks a caller's picture already holds, each with the desired status it holds: what a
/// list-and-diff observation ([`Cloud::resync_cluster`]) need not describe again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KnownTasks {
    by_arn: HashMap<String, DesiredStatus>,
}

impl KnownTasks {
    pub fn insert(&mut self, arn: impl Into<String>, desired: DesiredStatus) {
        self.by_arn.insert(arn.into(), desired);
    }

    /// Whether a task ListTasks listed under `listed` can be left undescribed: known, and
    /// known with that desired status (one that turned STOPPED is described again).
    pub fn holds(&self, arn: &str, listed: DesiredStatus) -> bool {
        self.by_arn.get(arn) == Some(&listed)
    }
}

impl FromIterator<(String, DesiredStatus)> for KnownTasks {
    fn from_iter<I: IntoIterator<Item = (String, DesiredStatus)>>(iter: I) -> Self {
        KnownTasks {
            by_arn: iter.into_iter().collect(),
        }
    }
}

/// What a list-and-diff observation found ([`Cloud::resync_cluster`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Resync {
    /// The cluster as [`Cloud::observe_cluster`] reports it, except that its `tasks` are only
    /// the ones described: listed and not [`KnownTasks::holds`].
    pub snapshot: ClusterSnapshot,
    /// The listed tasks that were not described, because the caller's picture holds them.
    /// A known task in neither list is gone.
    pub kept: Vec<String>,
}

/// What a read of one Auto Scaling group's capacity chain found ([`Cloud::observe_group`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupRead {
    /// The group with its launch template and instances, as [`Cloud::observe_cluster`] would
    /// report it; `None` when the group does not exist.
    pub group: Option<AutoScalingGroup>,
    /// Parts that could not be read (launch templates unresolved, launch times unknown).
    pub gaps: Vec<String>,
}

/// The calls the controller makes, in domain terms.
///
/// Reads: [`Cloud::list_clusters`], [`Cloud::observe_cluster`] (and its list-and-diff form
/// [`Cloud::resync_cluster`]), the targeted reads of a cached
/// cluster ([`Cloud::describe_tasks`], [`Cloud::observe_group`]), and the root-cause reads
/// ([`Cloud::console_output`], [`Cloud::launch_template_version`],
/// [`Cloud::scaling_activities`], [`Cloud::instance_type`]). Everything else mutates.
pub trait Cloud: Send + Sync + 'static {
    /// Names of every cluster in the account and Region.
    fn list_clusters(&self) -> impl Future<Output = Result<Vec<String>, CloudError>> + Send;

    /// One consistent-enough picture of a cluster: its services, its tasks (desired RUNNING,
    /// and desired STOPPED that ECS still reports), and its container instances. A part that
    /// could not be read is named in `gaps`; a cluster that does not exist is `NotFound`.
    fn observe_cluster(
        &self,
        cluster: &str,
    ) -> impl Future<Output = Result<ClusterSnapshot, CloudError>> + Send;

    /// [`Cloud::observe_cluster`] as a list and diff: both ListTasks, then DescribeTasks of
    /// only the listed tasks `known` does not hold (new, or listed under another desired
    /// status); the rest of the cluster is read as in a full observation. The default makes
    /// the full observation and keeps nothing, which is always correct, only dearer.
    fn resync_cluster(
        &self,
        cluster: &str,
        known: &KnownTasks,
    ) -> impl Future<Output = Result<Resync, CloudError>> + Send {
        let _ = known;
        async move {
            Ok(Resync {
                snapshot: self.observe_cluster(cluster).await?,
                kept: Vec::new(),
            })
        }
    }

    /// DescribeTasks on these tasks of `cluster` (name or ARN), at most 100 ARNs a call, with
    /// their tags: the read a task deadline or an event asks for, instead of a whole
    /// observation. A cluster that does not exist is `NotFound` (no ARNs: no call, and no
    /// answer about the cluster); a non-retryable failure fails the read; retryable failures
    /// and `failures[]` entries other than MISSING are gaps. ECS takes a bare task id too.
    fn describe_tasks(
        &self,
        cluster: &str,
        task_arns: &[String],
    ) -> impl Future<Output = Result<TaskReads, CloudError>> + Send;

    /// The capacity chain of one Auto Scaling group (by name): DescribeAutoScalingGroups, its
    /// launch template versions resolved, its instances' launch times, as
    /// [`Cloud::observe_cluster`] reads them for a cluster's providers. Failures of the
    /// template and instance reads are gaps; a failed DescribeAutoScalingGroups is an error.
    fn observe_group(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<GroupRead, CloudError>> + Send;

    /// GetConsoleOutput of an EC2 instance (with `Latest=true` where the instance supports
    /// it), decoded from base64. `None` when EC2 has no output for it yet. The bytes are as the
    /// instance wrote them: not necessarily UTF-8, possibly cut in the middle of a line.
    fn console_output(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, CloudError>> + Send;

    /// DescribeLaunchTemplateVersions for one numbered version.
    fn launch_template_version(
        &self,
        template_id: &str,
        version: u32,
    ) -> impl Future<Output = Result<LaunchTemplateVersion, CloudError>> + Send;

    /// DescribeScalingActivities of a group: its most recent activities, newest first (one
    /// page).
    fn scaling_activities(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<Vec<ScalingActivity>, CloudError>> + Send;

    /// DescribeInstanceTypes for one instance type.
    fn instance_type(
        &self,
        instance_type: &str,
    ) -> impl Future<Output = Result<InstanceTypeSize, CloudError>> + Send;

    /// StopTask with `reason` (ECS keeps it as the task's stoppedReason).
    fn stop_task(
        &self,
        cluster: &str,
        task_arn: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// RunTask for one task; returns the new task's ARN.
    fn run_task(
        &self,
        cluster: &str,
        request: &RunTaskRequest,
    ) -> impl Future<Output = Result<String, CloudError>> + Send;

    /// SetDesiredCapacity of an Auto Scaling group (not honoring the group's cooldown: the
    /// controller keeps its own).
    fn set_desired_capacity(
        &self,
        group: &str,
        desired: u32,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// UpdateAutoScalingGroup: launch new instances from this numbered version of the
    /// group's launch template.
    fn pin_launch_template_version(
        &self,
        group: &str,
        template_id: &str,
        version: u32,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// CreateOrUpdateTags on the group (not propagated to instances).
    fn tag_group(
        &self,
        group: &str,
        tags: &Tags,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// TerminateInstanceInAutoScalingGroup without decrementing the desired capacity, so the
    /// group launches a replacement.
    fn terminate_instance(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// UpdateContainerInstancesState to DRAINING.
    fn drain_container_instance(
        &self,
        cluster: &str,
        container_instance_arn: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Whether this cloud refuses every mutating call by construction ([`read_only::ReadOnly`]),
    /// so a dry run can say it is read-only without taking the planner's word for it.
    fn refuses_writes(&self) -> bool {
        false
    }
}

impl<C: Cloud> Cloud for Arc<C> {
    fn list_clusters(&self) -> impl Future<Output = Result<Vec<String>, CloudError>> + Send {
        (**self).list_clusters()
    }

    fn observe_cluster(
        &self,
        cluster: &str,
    ) -> impl Future<Output = Result<ClusterSnapshot, CloudError>> + Send {
        (**self).observe_cluster(cluster)
    }

    fn resync_cluster(
        &self,
        cluster: &str,
        known: &KnownTasks,
    ) -> impl Future<Output = Result<Resync, CloudError>> + Send {
        (**self).resync_cluster(cluster, known)
    }

    fn describe_tasks(
        &self,
        cluster: &str,
        task_arns: &[String],
    ) -> impl Future<Output = Result<TaskReads, CloudError>> + Send {
        (**self).describe_tasks(cluster, task_arns)
    }

    fn observe_group(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<GroupRead, CloudError>> + Send {
        (**self).observe_group(group)
    }

    fn console_output(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, CloudError>> + Send {
        (**self).console_output(instance_id)
    }

    fn launch_template_version(
        &self,
        template_id: &str,
        version: u32,
    ) -> impl Future<Output = Result<LaunchTemplateVersion, CloudError>> + Send {
        (**self).launch_template_version(template_id, version)
    }

    fn scaling_activities(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<Vec<ScalingActivity>, CloudError>> + Send {
        (**self).scaling_activities(group)
    }

    fn instance_type(
        &self,
        instance_type: &str,
    ) -> impl Future<Output = Result<InstanceTypeSize, CloudError>> + Send {
        (**self).instance_type(instance_type)
    }

    fn stop_task(
        &self,
        cluster: &str,
        task_arn: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        (**self).stop_task(cluster, task_arn, reason)
    }

    fn run_task(
        &self,
        cluster: &str,
        request: &RunTaskRequest,
    ) -> impl Future<Output = Result<String, CloudError>> + Send {
        (**self).run_task(cluster, request)
    }

    fn set_desired_capacity(
        &self,
        group: &str,
        desired: u32,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        (**self).set_desired_capacity(group, desired)
    }

    fn pin_launch_template_version(
        &self,
        group: &str,
        template_id: &str,
        version: u32,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        (**self).pin_launch_template_version(group, template_id, version)
    }

    fn tag_group(
        &self,
        group: &str,
        tags: &Tags,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        (**self).tag_group(group, tags)
    }

    fn terminate_instance(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        (**self).terminate_instance(instance_id)
    }

    fn drain_container_instance(
        &self,
        cluster: &str,
        container_instance_arn: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        (**self).drain_container_instance(cluster, container_instance_arn)
    }

    fn refuses_writes(&self) -> bool {
        (**self).refuses_writes()
    }
}
