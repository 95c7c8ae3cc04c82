//! The simulated ECS account: an in-process [`Cloud`] on a virtual clock, for scenario tests,
//! the demo and scale benchmarks.
//!
//! [`SimAccount`] follows documented ECS semantics: the task lifecycle with its DescribeTasks
//! timestamps, a service scheduler that replaces stopped tasks, StopTask's stoppedReason,
//! RunTask's client-token idempotency, and STOPPED tasks that stay describable for an hour.
//! Every task follows a [`TaskBehavior`] (how long it dwells in each state, where it hangs,
//! when it turns unhealthy). The capacity chain follows EC2 and Auto Scaling ([`capacity`]):
//! launch template versions, Auto Scaling groups converging on their desired capacity,
//! instances that register as container instances (or, from a broken version, never do),
//! capacity providers whose tasks wait in PROVISIONING for a free slot.
//!
//! The root-cause reads answer from the same world: a launch template version is a
//! [`VersionSpec`] (UserData, instance profile, instance type, the boot output its instances
//! write, launches that fail); GetConsoleOutput has an instance's boot output a few minutes
//! after launch; each group records its scaling activities (a Successful launch per instance,
//! a Failed one per launch that failed, retried); DescribeInstanceTypes knows a small table of
//! real sizes ([`boot::INSTANCE_TYPES`]). A task larger than its group's instance type never
//! places, and its service gets ECS's "unable to place a task" event. Tasks stopped carry
//! ECS's stopCode.
//! Time comes from tokio's clock ([`clock`]), so a test with
//! `#[tokio::test(start_paused = true)]` moves it with `tokio::time::advance`. Each call first
//! brings the [`world`] up to now, then answers; calls are counted per AWS operation the real
//! adapter would make ([`calls`]) and can be made to fail.
//!
//! Pacing: with an [`ApiBudget`] attached ([`SimAccount::with_budget`]), every counted call
//! (every page) takes a token of its category, on tokio's clock, as the adapter's calls do; a
//! Throttled answer is reported to the budget. Reads are answered first and their tokens taken
//! after (the adapter's snapshot is also stamped when it begins); a mutating call takes its
//! token first and then acts. The account's lock is never held while waiting. Without a
//! budget (the default) nothing waits.
//!
//! Layout: [`behavior`] (what a task does), [`service`] (what a service is), [`capacity`]
//! (what templates and groups are), [`boot`] (what instances boot with and write, and
//! instance types), [`world`] (state and lifecycle events), [`observe`]
//! (snapshot and call counts), [`calls`] (accounting and faults), [`ids`] (ARNs), [`scenario`]
//! (ready-made accounts by name), [`fault`] (test-only faults of the process itself: a panic
//! or a hang inside a call).

pub mod behavior;
pub mod boot;
pub mod calls;
pub mod capacity;
pub mod clock;
pub mod events;
pub mod fault;
pub mod ids;
pub mod observe;
pub mod scenario;
pub mod service;
pub mod world;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

pub use behavior::{Dwell, TaskBehavior};
pub use capacity::{
    ExistingInstance, GroupSpec, LaunchSpec, TemplateVersion, UserData, VersionBehavior,
    VersionSpec,
};
pub use events::{QueueCounts, QueueFaults, SimQueue};
pub use fault::SimFault;
pub use scenario::{Scenario, build_scale, build_scenario, scenario_names};
pub use world::{REPLACEMENT_DELAY, STOPPED_RETENTION, ServiceSpec};

use super::budget::ApiBudget;
use super::{Cloud, CloudError, ErrorCategory, GroupRead, KnownTasks, Resync, TaskReads};
use crate::domain::{
    AutoScalingGroup, CapacityProvider, ClusterSnapshot, ContainerInstance, DesiredStatus,
    InstanceTypeSize, LaunchTemplateVersion, RunTaskRequest, ScalingActivity, Service, Tags, Task,
    TaskStatus,
};
use calls::{Calls, pages};
use clock::VirtualClock;
use world::World;

/// An in-process ECS account on a virtual clock. `Send + Sync`; share it with an `Arc`.
///
/// Setup and inspection methods panic on an unknown cluster or service (a broken test setup);
/// the [`Cloud`] methods answer with a [`CloudError`] as ECS would.
pub struct SimAccount {
    clock: VirtualClock,
    inner: Mutex<Inner>,
    /// Woken after a mutating call, so a waiting [`SimQueue`] sees its events at once.
    changed: tokio::sync::Notify,
}

struct Inner {
    world: World,
    calls: Calls,
    budget: Option<Arc<ApiBudget>>,
    /// A test-only fault struck in every observation ([`fault`]).
    fault: Option<SimFault>,
}

impl SimAccount {
    /// An empty account whose clock reads `start` now.
    pub fn new(start: SystemTime) -> Self {
        SimAccount::with_history(start, Duration::ZERO)
    }

    /// An account whose clock reads `start` now but whose world begins `history` earlier, so
    /// that what [`SimAccount::with_world`] sets up first has been running for a while when
    /// the clock starts.
    pub(crate) fn with_history(start: SystemTime, history: Duration) -> Self {
        SimAccount {
            clock: VirtualClock::new(start),
            inner: Mutex::new(Inner {
                world: World::new(start - history),
                calls: Calls::default(),
                budget: None,
                fault: None,
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The same account, its calls paced by `budget` (see the [module](self) documentation).
    pub fn with_budget(self, budget: Arc<ApiBudget>) -> Self {
        self.set_budget(Some(budget));
        self
    }

    /// Attaches a budget to pace the calls by (or, with `None`, stops pacing).
    pub fn set_budget(&self, budget: Option<Arc<ApiBudget>>) {
        self.lock().budget = budget;
    }

    /// Makes every `observe_cluster` strike `fault` (test-only; see [`fault`]), or, with
    /// `None`, answer again.
    pub fn set_fault(&self, fault: Option<SimFault>) {
        self.lock().fault = fault;
    }

    /// The budget the calls are paced by, if any.
    pub fn budget(&self) -> Option<Arc<ApiBudget>> {
        self.lock().budget.clone()
    }

    /// Runs `f` on the world at the world's own time, without bringing it up to now first.
    pub(crate) fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.lock().world)
    }

    /// Runs `f` on the world brought up to now, then (the lock released) takes the budget's
    /// tokens for the calls it made and reports their throttling answers.
    async fn read<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let (out, paced, budget) = {
            let mut inner = self.current();
            let out = f(&mut inner);
            let paced = inner.calls.take_paced();
            (out, paced, inner.budget.clone())
        };
        if let Some(budget) = budget {
            for operation in &paced.calls {
                budget.acquire(operation).await;
            }
            for operation in &paced.throttled {
                budget.throttled(operation);
            }
            for (operation, error) in &paced.answers {
                budget.answered(operation, *error);
            }
        }
        out
    }

    /// A mutating call of `operation`: takes its token first (no lock held), then runs `f` on
    /// the world brought up to the time after the wait, and reports a throttling answer.
    async fn mutate<T>(&self, operation: &str, f: impl FnOnce(&mut Inner) -> T) -> T {
        let budget = self.lock().budget.clone();
        if let Some(budget) = &budget {
            budget.acquire(operation).await;
        }
        let (out, paced) = {
            let mut inner = self.current();
            let out = f(&mut inner);
            (out, inner.calls.take_paced())
        };
        self.changed.notify_waiters();
        // The first of `paced.calls` is the call whose token was taken above; any after it are
        // the reads that confirm a refusal, paced as reads.
        if let Some(budget) = budget {
            for operation in paced.calls.iter().skip(1) {
                budget.acquire(operation).await;
            }
            for operation in &paced.throttled {
                budget.throttled(operation);
            }
            for (operation, error) in &paced.answers {
                budget.answered(operation, *error);
            }
        }
        out
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the world consistent enough for a test's report.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the account and brings its world up to the clock's now.
    fn current(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        let now = self.clock.now();
        inner.world.advance_to(now);
        inner
    }

    /// The virtual time now (processing whatever came due).
    pub fn now(&self) -> SystemTime {
        self.current().world.now()
    }

    /// The time the clock started at.
    pub fn start(&self) -> SystemTime {
        self.clock.start()
    }

    // ---- setup ----

    /// Creates a cluster (idempotent); returns its ARN.
    pub fn add_cluster(&self, name: &str) -> String {
        self.current().world.add_cluster(name)
    }

    /// Creates a service and launches its desired count of tasks now; returns its ARN.
    pub fn add_service(&self, cluster: &str, spec: ServiceSpec) -> String {
        self.current().world.add_service(cluster, spec)
    }

    /// Sets a service's desired count; the scheduler launches or stops tasks to match.
    pub fn set_desired_count(&self, cluster: &str, service: &str, desired: u32) {
        self.current()
            .world
            .set_desired_count(cluster, service, desired);
    }

    /// Queues what the service's next launch does (after those already queued).
    pub fn push_service_launch(&self, cluster: &str, service: &str, behavior: TaskBehavior) {
        self.current()
            .world
            .push_service_launch(cluster, service, behavior);
    }

    /// What the service's launches do once its queue is empty.
    pub fn set_service_default(&self, cluster: &str, service: &str, behavior: TaskBehavior) {
        self.current()
            .world
            .set_service_default(cluster, service, behavior);
    }

    /// Queues what the cluster's next RunTask launch does.
    pub fn push_standalone_launch(&self, cluster: &str, behavior: TaskBehavior) {
        self.current()
            .world
            .push_standalone_launch(cluster, behavior);
    }

    /// What the cluster's RunTask launches do once its queue is empty.
    pub fn set_standalone_default(&self, cluster: &str, behavior: TaskBehavior) {
        self.current()
            .world
            .set_standalone_default(cluster, behavior);
    }

    /// Starts a standalone task as RunTask would, with the given behavior, without counting a
    /// call (scenario setup). The client token is honored if not empty.
    pub fn start_task(
        &self,
        cluster: &str,
        request: &RunTaskRequest,
        behavior: TaskBehavior,
    ) -> String {
        self.current()
            .world
            .run_task(cluster, request, Some(behavior))
    }

    /// Makes the task `task_arn` fail `after` from now (its essential container exits) and
    /// the replacement its service launches at once behave as `replacement` (scenario setup;
    /// a standalone task is not replaced). Panics on an unknown task.
    pub fn fail_task_after(&self, task_arn: &str, after: Duration, replacement: TaskBehavior) {
        let (cluster, id) = ids::parse_task_arn(task_arn).expect("a task ARN");
        let mut inner = self.current();
        let at = inner.world.now() + after;
        let planted = inner.world.fail_task_at(cluster, id, at, replacement);
        assert!(planted, "no task {task_arn:?}");
    }

    /// Registers an ACTIVE container instance with a connected agent; returns its ARN.
    pub fn add_container_instance(&self, cluster: &str, ec2_instance_id: &str) -> String {
        self.current()
            .world
            .add_container_instance(cluster, Some(ec2_instance_id))
    }

    /// Connects or disconnects a container instance's agent.
    pub fn set_agent_connected(
        &self,
        cluster: &str,
        container_instance_arn: &str,
        connected: bool,
    ) {
        self.change_instance(cluster, container_instance_arn, |i| {
            i.agent_connected = connected;
        });
    }

    /// Sets a container instance's status (ACTIVE, DRAINING, ...).
    pub fn set_container_instance_status(
        &self,
        cluster: &str,
        container_instance_arn: &str,
        status: &str,
    ) {
        self.change_instance(cluster, container_instance_arn, |i| {
            i.status = status.to_string();
        });
    }

    fn change_instance(&self, cluster: &str, arn: &str, f: impl FnOnce(&mut ContainerInstance)) {
        let changed = self
            .current()
            .world
            .change_container_instance(cluster, arn, f);
        self.changed.notify_waiters();
        assert!(
            changed,
            "cluster {cluster:?} has no container instance {arn:?}"
        );
    }

    /// Creates an EC2 launch template whose version 1 (latest and default) is `first` (a
    /// [`VersionSpec`], or a [`VersionBehavior`] with the default content); returns its id
    /// (`lt-…`).
    pub fn add_launch_template(&self, name: &str, first: impl Into<VersionSpec>) -> String {
        self.current().world.add_launch_template(name, first.into())
    }

    /// Publishes a new version of a launch template (the new `$Latest`), making it the default
    /// if `make_default`; returns its number.
    pub fn publish_launch_template_version(
        &self,
        template_id: &str,
        version: impl Into<VersionSpec>,
        make_default: bool,
    ) -> u32 {
        self.current()
            .world
            .publish_template_version(template_id, version.into(), make_default)
    }

    /// Makes an existing version of a launch template its default.
    pub fn set_default_launch_template_version(&self, template_id: &str, version: u32) {
        self.current()
            .world
            .set_default_template_version(template_id, version);
    }

    /// Creates an Auto Scaling group (with its existing instances); it converges on its
    /// desired capacity from now on. Returns its ARN.
    pub fn add_auto_scaling_group(&self, spec: GroupSpec) -> String {
        self.current().world.add_group(spec)
    }

    /// Makes every launch of the group fail with `status_message` (a Failed scaling activity,
    /// no instance, a retry every [`capacity::LAUNCH_RETRY`]), e.g.
    /// [`capacity::VCPU_LIMIT_EXCEEDED`]; `None`: launches succeed again.
    pub fn fail_launches(&self, group: &str, status_message: Option<&str>) {
        self.current().world.fail_launches(group, status_message);
    }

    /// Deletes an Auto Scaling group: its instances are gone at once; capacity providers that
    /// name it keep its ARN.
    pub fn delete_auto_scaling_group(&self, name: &str) {
        self.current().world.delete_group(name);
    }

    /// Adds a capacity provider to `cluster`, with Auto Scaling group `group` behind it
    /// (which must exist). Tasks whose strategy names only such providers wait for a slot on
    /// their groups' instances.
    pub fn add_capacity_provider(&self, cluster: &str, name: &str, group: Option<&str>) {
        self.current()
            .world
            .add_capacity_provider(cluster, name, group);
    }

    // ---- inspection (no calls counted) ----

    /// Every cluster name, sorted.
    pub fn cluster_names(&self) -> Vec<String> {
        self.current().world.cluster_names()
    }

    /// The tasks observe_cluster would report for `cluster`, in launch order (empty for an
    /// unknown cluster).
    pub fn tasks(&self, cluster: &str) -> Vec<Task> {
        let inner = self.current();
        inner
            .world
            .cluster(cluster)
            .map(|c| c.tasks().cloned().collect())
            .unwrap_or_default()
    }

    /// The task with this ARN, while ECS still reports it.
    pub fn task(&self, arn: &str) -> Option<Task> {
        let (cluster, id) = ids::parse_task_arn(arn)?;
        let inner = self.current();
        inner.world.cluster(cluster)?.task_by_id(id).cloned()
    }

    /// The services of `cluster` with their running and pending counts.
    pub fn services(&self, cluster: &str) -> Vec<Service> {
        let inner = self.current();
        inner
            .world
            .cluster(cluster)
            .map(|c| c.services())
            .unwrap_or_default()
    }

    /// One service of `cluster`.
    pub fn service(&self, cluster: &str, name: &str) -> Option<Service> {
        self.services(cluster).into_iter().find(|s| s.name == name)
    }

    /// The container instances of `cluster`.
    pub fn container_instances(&self, cluster: &str) -> Vec<ContainerInstance> {
        let inner = self.current();
        inner
            .world
            .cluster(cluster)
            .map(|c| c.container_instances())
            .unwrap_or_default()
    }

    /// The capacity providers of `cluster`.
    pub fn capacity_providers(&self, cluster: &str) -> Vec<CapacityProvider> {
        let inner = self.current();
        inner
            .world
            .cluster(cluster)
            .map(|c| c.capacity_providers())
            .unwrap_or_default()
    }

    /// An Auto Scaling group as DescribeAutoScalingGroups shows it, with `$Latest` and
    /// `$Default` resolved.
    pub fn auto_scaling_group(&self, name: &str) -> Option<AutoScalingGroup> {
        self.current().world.auto_scaling_group(name, true)
    }

    /// How many of the reported tasks of `cluster` are in each lastStatus.
    pub fn status_counts(&self, cluster: &str) -> BTreeMap<TaskStatus, usize> {
        let inner = self.current();
        let mut counts = BTreeMap::new();
        if let Some(c) = inner.world.cluster(cluster) {
            for task in c.tasks() {
                *counts.entry(task.last_status).or_default() += 1;
            }
        }
        counts
    }

    /// How many tasks of `cluster` have desiredStatus RUNNING and lastStatus `status`.
    pub fn count_desired_running(&self, cluster: &str, status: TaskStatus) -> usize {
        self.tasks(cluster)
            .iter()
            .filter(|t| t.desired_status == DesiredStatus::Running && t.last_status == status)
            .count()
    }

    /// Every reported task, in any cluster, stopped with a reason starting with `prefix`.
    pub fn tasks_stopped_with(&self, prefix: &str) -> Vec<Task> {
        let inner = self.current();
        inner
            .world
            .clusters()
            .flat_map(|c| c.tasks())
            .filter(|t| {
                t.desired_status == DesiredStatus::Stopped
                    && t.stopped_reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with(prefix))
            })
            .cloned()
            .collect()
    }

    // ---- call accounting and faults ----

    /// Calls made per AWS operation since creation or the last [`SimAccount::reset_calls`].
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.counts()
    }

    /// Calls of `operation` made.
    pub fn call_count(&self, operation: &str) -> u64 {
        self.calls().get(operation).copied().unwrap_or(0)
    }

    /// Calls that would change the account (attempted, whether they succeeded or not); see
    /// [`calls::MUTATING_OPERATIONS`].
    pub fn mutating_calls(&self) -> u64 {
        self.lock().calls.mutating()
    }

    pub fn reset_calls(&self) {
        self.lock().calls.reset();
    }

    /// The next `times` calls of `operation` fail with `category`, without effect.
    pub fn fail_next(&self, operation: &str, category: ErrorCategory, times: u32) {
        self.lock().calls.fail_next(operation, category, times);
    }

    /// Every call of `operation` fails with AccessDenied ([`ErrorCategory::Denied`]).
    pub fn deny(&self, operation: &str) {
        self.lock().calls.deny(operation);
    }

    /// Every call of `operation` fails with `category`, without effect, until
    /// [`SimAccount::clear_faults`].
    pub fn fail_always(&self, operation: &str, category: ErrorCategory) {
        self.lock().calls.fail_always(operation, category);
    }

    /// Calls answer again: every failure armed by `fail_next`, `fail_always` or `deny` is
    /// forgotten.
    pub fn clear_faults(&self) {
        self.lock().calls.clear_faults();
    }
}

/// The cluster a name or ARN names: ECS takes either wherever it takes a cluster.
fn cluster_name(cluster: &str) -> &str {
    cluster
        .rsplit_once(":cluster/")
        .map_or(cluster, |(_, name)| name)
}

fn cluster_not_found(operation: &str, cluster: &str) -> CloudError {
    CloudError::new(
        ErrorCategory::NotFound,
        operation,
        format!("ClusterNotFoundException: cluster {cluster} not found"),
    )
}

impl Cloud for SimAccount {
    async fn list_clusters(&self) -> Result<Vec<String>, CloudError> {
        self.read(|inner| {
            let names = inner.world.cluster_names();
            inner
                .calls
                .call_pages("ListClusters", pages(names.len(), 100, 1))?;
            Ok(names)
        })
        .await
    }

    async fn observe_cluster(&self, cluster: &str) -> Result<ClusterSnapshot, CloudError> {
        let resync = self.resync_cluster(cluster, &KnownTasks::default()).await?;
        Ok(resync.snapshot)
    }

    async fn resync_cluster(
        &self,
        cluster: &str,
        known: &KnownTasks,
    ) -> Result<Resync, CloudError> {
        let cluster = cluster_name(cluster);
        // Read first and struck with the lock released, so a panic poisons nothing.
        let fault = self.lock().fault;
        if let Some(fault) = fault {
            fault.strike(cluster).await;
        }
        self.read(|inner| {
            let Inner { world, calls, .. } = inner;
            observe::observe(world, calls, cluster, world.now(), known)
        })
        .await
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        task_arns: &[String],
    ) -> Result<TaskReads, CloudError> {
        let cluster = cluster_name(cluster);
        self.read(|inner| {
            let Inner { world, calls, .. } = inner;
            observe::describe_tasks(world, calls, cluster, task_arns)
        })
        .await
    }

    async fn observe_group(&self, group: &str) -> Result<GroupRead, CloudError> {
        self.read(|inner| {
            let Inner { world, calls, .. } = inner;
            observe::observe_group(world, calls, group)
        })
        .await
    }

    async fn console_output(&self, instance_id: &str) -> Result<Option<Vec<u8>>, CloudError> {
        const OP: &str = "GetConsoleOutput";
        self.read(|inner| {
            inner.calls.call(OP)?;
            inner
                .world
                .console_output(instance_id)
                .map_err(|r| refused(OP, r))
        })
        .await
    }

    async fn launch_template_version(
        &self,
        template_id: &str,
        version: u32,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        const OP: &str = "DescribeLaunchTemplateVersions";
        self.read(|inner| {
            inner.calls.call(OP)?;
            inner
                .world
                .launch_template_version(template_id, version)
                .map_err(|r| refused(OP, r))
        })
        .await
    }

    async fn scaling_activities(&self, group: &str) -> Result<Vec<ScalingActivity>, CloudError> {
        self.read(|inner| scaling_activities(inner, group)).await
    }

    async fn instance_type(&self, instance_type: &str) -> Result<InstanceTypeSize, CloudError> {
        const OP: &str = "DescribeInstanceTypes";
        self.read(|inner| {
            inner.calls.call(OP)?;
            boot::instance_type_size(instance_type).ok_or_else(|| {
                CloudError::new(
                    ErrorCategory::NotFound,
                    OP,
                    format!(
                        "InvalidInstanceType: The following supplied instance types do not \
                         exist: [{instance_type}]"
                    ),
                )
            })
        })
        .await
    }

    async fn stop_task(
        &self,
        cluster: &str,
        task_arn: &str,
        reason: &str,
    ) -> Result<(), CloudError> {
        let cluster = cluster_name(cluster);
        self.mutate("StopTask", |inner| {
            stop_task(inner, cluster, task_arn, reason)
        })
        .await
    }

    async fn run_task(
        &self,
        cluster: &str,
        request: &RunTaskRequest,
    ) -> Result<String, CloudError> {
        let cluster = cluster_name(cluster);
        self.mutate("RunTask", |inner| run_task(inner, cluster, request))
            .await
    }

    async fn set_desired_capacity(&self, group: &str, desired: u32) -> Result<(), CloudError> {
        const OP: &str = "SetDesiredCapacity";
        // The adapter refuses, before any call, what Auto Scaling's integer cannot hold.
        if i32::try_from(desired).is_err() {
            return Err(CloudError::new(
                ErrorCategory::Invalid,
                OP,
                format!("desired capacity {desired} is too large"),
            ));
        }
        self.mutate(OP, |inner| {
            inner.calls.call(OP)?;
            let refusal = inner.world.set_desired_capacity(group, desired).err();
            confirmed(inner, OP, refusal, Confirm::Group(group))
        })
        .await
    }

    async fn pin_launch_template_version(
        &self,
        group: &str,
        template_id: &str,
        version: u32,
    ) -> Result<(), CloudError> {
        const OP: &str = "UpdateAutoScalingGroup";
        self.mutate(OP, |inner| {
            inner.calls.call(OP)?;
            let refusal = inner
                .world
                .pin_template_version(group, template_id, version)
                .err();
            confirmed(inner, OP, refusal, Confirm::Group(group))
        })
        .await
    }

    async fn tag_group(&self, group: &str, tags: &Tags) -> Result<(), CloudError> {
        const OP: &str = "CreateOrUpdateTags";
        // As the adapter: no tags, nothing to send.
        if tags.is_empty() {
            return Ok(());
        }
        self.mutate(OP, |inner| {
            inner.calls.call(OP)?;
            let refusal = inner.world.tag_group(group, tags).err();
            confirmed(inner, OP, refusal, Confirm::Group(group))
        })
        .await
    }

    async fn terminate_instance(&self, instance_id: &str) -> Result<(), CloudError> {
        const OP: &str = "TerminateInstanceInAutoScalingGroup";
        self.mutate(OP, |inner| {
            inner.calls.call(OP)?;
            let refusal = inner.world.terminate_instance(instance_id).err();
            confirmed(inner, OP, refusal, Confirm::GroupInstance(instance_id))
        })
        .await
    }

    async fn drain_container_instance(
        &self,
        cluster: &str,
        container_instance_arn: &str,
    ) -> Result<(), CloudError> {
        const OP: &str = "UpdateContainerInstancesState";
        let cluster = cluster_name(cluster);
        self.mutate(OP, |inner| {
            inner.calls.call(OP)?;
            inner
                .world
                .drain(cluster, container_instance_arn)
                .map_err(|r| refused(OP, r))
        })
        .await
    }
}

fn stop_task(
    inner: &mut Inner,
    cluster: &str,
    task_arn: &str,
    reason: &str,
) -> Result<(), CloudError> {
    {
        inner.calls.call("StopTask")?;
        if !inner.world.has_cluster(cluster) {
            return Err(cluster_not_found("StopTask", cluster));
        }
        // StopTask takes a task ARN or a bare task id.
        let id = match ids::parse_task_arn(task_arn) {
            Some((arn_cluster, id)) if arn_cluster == cluster => Some(id),
            Some(_) => None,
            None if !task_arn.contains('/') && !task_arn.contains(':') => Some(task_arn),
            None => None,
        };
        match id {
            Some(id) if inner.world.stop_task(cluster, id, reason) => Ok(()),
            _ => {
                let refusal = (
                    ErrorCategory::NotFound,
                    "InvalidParameterException: The referenced task was not found.".to_string(),
                );
                let subject = Confirm::Task { cluster, task_arn };
                confirmed(inner, "StopTask", Some(refusal), subject)
            }
        }
    }
}

fn run_task(
    inner: &mut Inner,
    cluster: &str,
    request: &RunTaskRequest,
) -> Result<String, CloudError> {
    {
        inner.calls.call("RunTask")?;
        if !inner.world.has_cluster(cluster) {
            return Err(cluster_not_found("RunTask", cluster));
        }
        if request.task_definition.is_empty() {
            return Err(CloudError::new(
                ErrorCategory::Invalid,
                "RunTask",
                "InvalidParameterException: taskDefinition can not be blank",
            ));
        }
        if request.client_token.len() > 64 || !request.client_token.is_ascii() {
            return Err(CloudError::new(
                ErrorCategory::Invalid,
                "RunTask",
                "InvalidParameterException: clientToken must be at most 64 ASCII characters",
            ));
        }
        Ok(inner.world.run_task(cluster, request, None))
    }
}

fn refused(operation: &str, (category, message): (ErrorCategory, String)) -> CloudError {
    CloudError::new(category, operation, message)
}

/// What a refused call was about, for the read the adapter makes to confirm it does not exist.
#[derive(Clone, Copy)]
enum Confirm<'a> {
    Group(&'a str),
    GroupInstance(&'a str),
    Task { cluster: &'a str, task_arn: &'a str },
}

impl Confirm<'_> {
    fn operation(self) -> &'static str {
        match self {
            Confirm::Group(_) => "DescribeAutoScalingGroups",
            Confirm::GroupInstance(_) => "DescribeAutoScalingInstances",
            Confirm::Task { .. } => "DescribeTasks",
        }
    }

    fn absent(self) -> String {
        match self {
            Confirm::Group(name) => format!("DescribeAutoScalingGroups has no group {name}"),
            Confirm::GroupInstance(id) => {
                format!("DescribeAutoScalingInstances has no instance {id}")
            }
            Confirm::Task { cluster, task_arn } => {
                format!("DescribeTasks reports task {task_arn} MISSING in cluster {cluster}")
            }
        }
    }
}

/// A refusal of the world as the adapter reports it. AWS answers these with a code too broad
/// to say "not found" (Auto Scaling's `ValidationError`, StopTask's
/// `InvalidParameterException`), so the adapter makes one confirming read
/// (`src/cloud/aws/confirm.rs`): `NotFound` only when that read says the subject is absent;
/// when the read fails, the refusal stays `Invalid`.
fn confirmed(
    inner: &mut Inner,
    operation: &str,
    refusal: Option<(ErrorCategory, String)>,
    subject: Confirm<'_>,
) -> Result<(), CloudError> {
    let Some((category, message)) = refusal else {
        return Ok(());
    };
    let mut err = CloudError::new(category, operation, message);
    match inner.calls.call(subject.operation()) {
        Ok(()) if category == ErrorCategory::NotFound => {
            err.message = format!("{}; {}", err.message, subject.absent());
        }
        Ok(()) => {}
        Err(_) => err.category = ErrorCategory::Invalid,
    }
    Err(err)
}

/// DescribeScalingActivities, and, as the adapter, DescribeAutoScalingGroups when the answer is
/// empty (Auto Scaling answers an unknown group with no activities): `NotFound` only when that
/// read says the group does not exist.
fn scaling_activities(inner: &mut Inner, group: &str) -> Result<Vec<ScalingActivity>, CloudError> {
    const OP: &str = "DescribeScalingActivities";
    inner.calls.call(OP)?;
    let activities = inner.world.scaling_activities(group).ok();
    if activities.as_ref().is_some_and(|a| !a.is_empty()) {
        return Ok(activities.unwrap_or_default());
    }
    let confirmed = inner.calls.call("DescribeAutoScalingGroups").is_ok();
    match activities {
        None if confirmed => Err(CloudError::new(
            ErrorCategory::NotFound,
            OP,
            format!("no Auto Scaling group {group}"),
        )),
        _ => Ok(Vec::new()),
    }
}
