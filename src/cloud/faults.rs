//! A fault-injecting decorator over any [`Cloud`], for scenarios: [`Faulty`].
//!
//! A test scripts what the next calls of a trait method do ([`Faulty::script`]), in order:
//!
//! - [`Fault::Fail`]: the call fails with a [`CloudError`] of a category, as the AWS adapter
//!   would return it after the SDK's own retries: [`Fault::throttled`], [`Fault::server_error`]
//!   (a 5xx, transient), [`Fault::timeout`] (transient), [`Fault::denied`]. The wrapped cloud is
//!   not called: a failed call has no effect.
//! - [`Fault::Stale`] (observe only): the wrapped cloud is asked, but the answer is the previous
//!   snapshot of that cluster, as an eventually consistent read can be (right after a StopTask,
//!   DescribeTasks may still report the task as it was), stamped with the new `observed_at`.
//!   With no previous snapshot, the fresh one.
//! - [`Fault::DropTasks`] (observe only): the last `n` tasks of the snapshot are left out and the
//!   snapshot names them in `gaps`, as DescribeTasks' `failures[]` does
//!   (`DescribeTasks failures[]: 1 task not described`).
//!
//! Unscripted calls pass through. With a budget attached ([`Faulty::with_budget`]), a scripted
//! throttling answer is reported to it (`budget.throttled(operation)`), as the AWS adapter
//! reports real ones, so the budget slows down.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cloud::budget::ApiBudget;
use crate::cloud::{Cloud, CloudError, ErrorCategory, GroupRead, TaskReads};
use crate::domain::{
    ClusterSnapshot, InstanceTypeSize, LaunchTemplateVersion, RunTaskRequest, ScalingActivity, Tags,
};

/// A method of the [`Cloud`] trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    ListClusters,
    ObserveCluster,
    DescribeTasks,
    ObserveGroup,
    StopTask,
    RunTask,
    SetDesiredCapacity,
    PinLaunchTemplateVersion,
    TagGroup,
    TerminateInstance,
    DrainContainerInstance,
    ConsoleOutput,
    LaunchTemplateVersion,
    ScalingActivities,
    InstanceType,
}

impl Method {
    /// The AWS operation a failure of this method is reported as (for an observation, ListTasks:
    /// the call whose failure fails a snapshot).
    pub fn operation(self) -> &'static str {
        match self {
            Method::ListClusters => "ListClusters",
            Method::ObserveCluster => "ListTasks",
            Method::DescribeTasks => "DescribeTasks",
            Method::ObserveGroup => "DescribeAutoScalingGroups",
            Method::StopTask => "StopTask",
            Method::RunTask => "RunTask",
            Method::ConsoleOutput => "GetConsoleOutput",
            Method::LaunchTemplateVersion => "DescribeLaunchTemplateVersions",
            Method::ScalingActivities => "DescribeScalingActivities",
            Method::InstanceType => "DescribeInstanceTypes",
            Method::SetDesiredCapacity => "SetDesiredCapacity",
            Method::PinLaunchTemplateVersion => "UpdateAutoScalingGroup",
            Method::TagGroup => "CreateOrUpdateTags",
            Method::TerminateInstance => "TerminateInstanceInAutoScalingGroup",
            Method::DrainContainerInstance => "UpdateContainerInstancesState",
        }
    }
}

/// What one scripted call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Fail with this category and message (the operation comes from the [`Method`]).
    Fail {
        category: ErrorCategory,
        message: String,
    },
    /// Observe only: answer with the cluster's previous snapshot.
    Stale,
    /// Observe only: leave out the last `n` tasks and name them in `gaps`.
    DropTasks(usize),
}

impl Fault {
    /// A throttling answer (after the SDK's retries).
    pub fn throttled() -> Fault {
        Fault::fail(
            ErrorCategory::Throttled,
            "ThrottlingException: Rate exceeded",
        )
    }

    /// An HTTP 5xx from the service.
    pub fn server_error() -> Fault {
        Fault::fail(
            ErrorCategory::Transient,
            "ServerException: HTTP 500 (injected)",
        )
    }

    /// No answer in time: the adapter reports a timeout as transient.
    pub fn timeout() -> Fault {
        Fault::fail(
            ErrorCategory::Transient,
            "timed out (operation or attempt timeout)",
        )
    }

    /// The caller lacks permission.
    pub fn denied() -> Fault {
        Fault::fail(
            ErrorCategory::Denied,
            "AccessDeniedException: not authorized (injected)",
        )
    }

    /// Fail with any category.
    pub fn fail(category: ErrorCategory, message: impl Into<String>) -> Fault {
        Fault::Fail {
            category,
            message: message.into(),
        }
    }
}

#[derive(Default)]
struct Script {
    next: HashMap<Method, VecDeque<Fault>>,
    /// The last snapshot the wrapped cloud gave, per cluster.
    last: HashMap<String, ClusterSnapshot>,
    /// Faults applied so far, in order.
    applied: Vec<(Method, Fault)>,
}

/// A [`Cloud`] that applies scripted faults to the calls of the one it wraps.
pub struct Faulty<C> {
    inner: C,
    script: Mutex<Script>,
    budget: Option<Arc<ApiBudget>>,
}

impl<C: Cloud> Faulty<C> {
    /// Wraps `inner` with an empty script (everything passes through).
    pub fn new(inner: C) -> Self {
        Faulty {
            inner,
            script: Mutex::new(Script::default()),
            budget: None,
        }
    }

    /// Reports scripted throttling answers to `budget`.
    pub fn with_budget(mut self, budget: Arc<ApiBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The wrapped cloud.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// The next `times` calls of `method` (after those already scripted) apply `fault`.
    pub fn script(&self, method: Method, fault: Fault, times: usize) -> &Self {
        self.lock()
            .next
            .entry(method)
            .or_default()
            .extend(std::iter::repeat_n(fault, times));
        self
    }

    /// Faults applied so far, in order.
    pub fn applied(&self) -> Vec<(Method, Fault)> {
        self.lock().applied.clone()
    }

    /// Scripted faults not yet applied.
    pub fn pending(&self) -> usize {
        self.lock().next.values().map(VecDeque::len).sum()
    }

    fn lock(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next fault of `method`, if any (recorded as applied).
    fn next(&self, method: Method) -> Option<Fault> {
        let mut script = self.lock();
        let fault = script.next.get_mut(&method)?.pop_front()?;
        script.applied.push((method, fault.clone()));
        Some(fault)
    }

    /// `Err` for a scripted failure of `method`; other faults are returned for the caller.
    fn check(&self, method: Method) -> Result<Option<Fault>, CloudError> {
        match self.next(method) {
            Some(Fault::Fail { category, message }) => {
                if category == ErrorCategory::Throttled
                    && let Some(budget) = &self.budget
                {
                    budget.throttled(method.operation());
                }
                Err(CloudError::new(category, method.operation(), message))
            }
            other => Ok(other),
        }
    }

    /// For methods with no other fault than failing.
    fn fail_only(&self, method: Method) -> Result<(), CloudError> {
        self.check(method).map(|_| ())
    }
}

/// Leaves out the last `n` tasks of `snapshot`, naming them in its gaps.
fn drop_tasks(snapshot: &mut ClusterSnapshot, n: usize) {
    let n = n.min(snapshot.tasks.len());
    snapshot.tasks.truncate(snapshot.tasks.len() - n);
    let noun = if n == 1 { "task" } else { "tasks" };
    snapshot.gaps.push(format!(
        "DescribeTasks failures[]: {n} {noun} not described (injected)"
    ));
}

/// `resync_cluster` keeps the trait's default (a full observation through the faults of
/// `observe_cluster`), so a scripted fault strikes a list-and-diff resync too.
impl<C: Cloud> Cloud for Faulty<C> {
    async fn list_clusters(&self) -> Result<Vec<String>, CloudError> {
        self.fail_only(Method::ListClusters)?;
        self.inner.list_clusters().await
    }

    async fn observe_cluster(&self, cluster: &str) -> Result<ClusterSnapshot, CloudError> {
        let fault = self.check(Method::ObserveCluster)?;
        let fresh = self.inner.observe_cluster(cluster).await?;
        let previous = self.lock().last.insert(cluster.to_string(), fresh.clone());
        Ok(match fault {
            // Old content, stamped now: what a lagging read looks like to the caller.
            Some(Fault::Stale) => match previous {
                Some(mut stale) => {
                    stale.observed_at = fresh.observed_at;
                    stale
                }
                None => fresh,
            },
            Some(Fault::DropTasks(n)) => {
                let mut snapshot = fresh;
                drop_tasks(&mut snapshot, n);
                snapshot
            }
            Some(Fault::Fail { .. }) | None => fresh,
        })
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        task_arns: &[String],
    ) -> Result<TaskReads, CloudError> {
        self.fail_only(Method::DescribeTasks)?;
        self.inner.describe_tasks(cluster, task_arns).await
    }

    async fn observe_group(&self, group: &str) -> Result<GroupRead, CloudError> {
        self.fail_only(Method::ObserveGroup)?;
        self.inner.observe_group(group).await
    }

    async fn console_output(&self, instance_id: &str) -> Result<Option<Vec<u8>>, CloudError> {
        self.fail_only(Method::ConsoleOutput)?;
        self.inner.console_output(instance_id).await
    }

    async fn launch_template_version(
        &self,
        template_id: &str,
        version: u32,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        self.fail_only(Method::LaunchTemplateVersion)?;
        self.inner
            .launch_template_version(template_id, version)
            .await
    }

    async fn scaling_activities(&self, group: &str) -> Result<Vec<ScalingActivity>, CloudError> {
        self.fail_only(Method::ScalingActivities)?;
        self.inner.scaling_activities(group).await
    }

    async fn instance_type(&self, instance_type: &str) -> Result<InstanceTypeSize, CloudError> {
        self.fail_only(Method::InstanceType)?;
        self.inner.instance_type(instance_type).await
    }

    async fn stop_task(
        &self,
        cluster: &str,
        task_arn: &str,
        reason: &str,
    ) -> Result<(), CloudError> {
        self.fail_only(Method::StopTask)?;
        self.inner.stop_task(cluster, task_arn, reason).await
    }

    async fn run_task(
        &self,
        cluster: &str,
        request: &RunTaskRequest,
    ) -> Result<String, CloudError> {
        self.fail_only(Method::RunTask)?;
        self.inner.run_task(cluster, request).await
    }

    async fn set_desired_capacity(&self, group: &str, desired: u32) -> Result<(), CloudError> {
        self.fail_only(Method::SetDesiredCapacity)?;
        self.inner.set_desired_capacity(group, desired).await
    }

    async fn pin_launch_template_version(
        &self,
        group: &str,
        template_id: &str,
        version: u32,
    ) -> Result<(), CloudError> {
        self.fail_only(Method::PinLaunchTemplateVersion)?;
        self.inner
            .pin_launch_template_version(group, template_id, version)
            .await
    }

    async fn tag_group(&self, group: &str, tags: &Tags) -> Result<(), CloudError> {
        self.fail_only(Method::TagGroup)?;
        self.inner.tag_group(group, tags).await
    }

    async fn terminate_instance(&self, instance_id: &str) -> Result<(), CloudError> {
        self.fail_only(Method::TerminateInstance)?;
        self.inner.terminate_instance(instance_id).await
    }

    async fn drain_container_instance(
        &self,
        cluster: &str,
        container_instance_arn: &str,
    ) -> Result<(), CloudError> {
        self.fail_only(Method::DrainContainerInstance)?;
        self.inner
            .drain_container_instance(cluster, container_instance_arn)
            .await
    }

    fn refuses_writes(&self) -> bool {
        self.inner.refuses_writes()
    }
}
