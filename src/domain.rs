//! Domain model: what the controller observes of an ECS account, in plain Rust types.
//!
//! Nothing here knows about the AWS SDK. The AWS adapter and the simulated account both
//! translate into these types, and diagnosis and planning read only these types.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Deref;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::compact::{Shared, Tags};

/// The `lastStatus` of an ECS task, in lifecycle order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 8] = [
        TaskStatus::Provisioning,
        TaskStatus::Pending,
        TaskStatus::Activating,
        TaskStatus::Running,
        TaskStatus::Deactivating,
        TaskStatus::Stopping,
        TaskStatus::Deprovisioning,
        TaskStatus::Stopped,
    ];

    /// The name ECS uses for this status.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Activating => "ACTIVATING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Deactivating => "DEACTIVATING",
            TaskStatus::Stopping => "STOPPING",
            TaskStatus::Deprovisioning => "DEPROVISIONING",
            TaskStatus::Stopped => "STOPPED",
        }
    }

    /// Parses the name ECS uses; `None` for anything else.
    pub fn parse(name: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True for the states on the way down (after RUNNING, before STOPPED).
    pub fn is_way_down(self) -> bool {
        matches!(
            self,
            TaskStatus::Deactivating | TaskStatus::Stopping | TaskStatus::Deprovisioning
        )
    }

    /// True for the states on the way up (before RUNNING).
    pub fn is_way_up(self) -> bool {
        matches!(
            self,
            TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `desiredStatus` of an ECS task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DesiredStatus {
    Running,
    Stopped,
}

/// The `healthStatus` of an ECS task (from its essential containers' health checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    Healthy,
    Unhealthy,
    #[default]
    Unknown,
}

/// The timestamps DescribeTasks reports for a task; each is absent until its moment came.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskTimestamps {
    pub created_at: Option<SystemTime>,
    pub connectivity_at: Option<SystemTime>,
    pub pull_started_at: Option<SystemTime>,
    pub pull_stopped_at: Option<SystemTime>,
    pub started_at: Option<SystemTime>,
    pub stopping_at: Option<SystemTime>,
    pub execution_stopped_at: Option<SystemTime>,
    pub stopped_at: Option<SystemTime>,
}

/// One entry of a capacity provider strategy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CapacityProviderStrategyItem {
    pub capacity_provider: String,
    pub weight: i32,
    pub base: i32,
}

/// Where a task gets its compute: a launch type, or a capacity provider strategy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Capacity {
    /// `EC2`, `FARGATE` or `EXTERNAL`.
    LaunchType(String),
    /// The strategy the task was placed with. A task placed by a capacity provider reports
    /// only that provider's name in DescribeTasks, so this often holds one item.
    CapacityProviderStrategy(Vec<CapacityProviderStrategyItem>),
}

/// The awsvpc network configuration of a task.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct NetworkConfig {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: Option<bool>,
}

/// A key/value pair of a container environment override.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// The overrides of one container, as RunTask takes them.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct ContainerOverride {
    pub name: String,
    pub command: Option<Vec<String>>,
    pub environment: Vec<EnvVar>,
    pub cpu: Option<i32>,
    pub memory: Option<i32>,
    pub memory_reservation: Option<i32>,
}

/// The overrides a task was started with, so a replacement can be started the same way.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct TaskOverrides {
    pub containers: Vec<ContainerOverride>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub task_role_arn: Option<String>,
    pub execution_role_arn: Option<String>,
}

/// The overrides a task was started with, boxed: most tasks have none, and then this holds
/// nothing. Reads as [`TaskOverrides`] (the empty one when there are none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Overrides(Option<Box<TaskOverrides>>);

/// What [`Overrides`] reads as when a task has none.
static NO_OVERRIDES: TaskOverrides = TaskOverrides {
    containers: Vec::new(),
    cpu: None,
    memory: None,
    task_role_arn: None,
    execution_role_arn: None,
};

impl Deref for Overrides {
    type Target = TaskOverrides;
    fn deref(&self) -> &TaskOverrides {
        self.0.as_deref().unwrap_or(&NO_OVERRIDES)
    }
}

impl From<TaskOverrides> for Overrides {
    fn from(o: TaskOverrides) -> Self {
        Overrides((o != NO_OVERRIDES).then(|| Box::new(o)))
    }
}

impl Serialize for Overrides {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TaskOverrides::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for Overrides {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        TaskOverrides::deserialize(deserializer).map(Overrides::from)
    }
}

/// One ECS task as observed. The ARNs and names many tasks repeat are [`Shared`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Task {
    pub arn: String,
    pub cluster_arn: Shared,
    pub task_definition_arn: Shared,
    /// `service:NAME` for service tasks; free text (or absent) for standalone tasks.
    pub group: Option<Shared>,
    pub started_by: Option<Shared>,
    pub last_status: TaskStatus,
    pub desired_status: DesiredStatus,
    pub health: HealthStatus,
    pub timestamps: TaskTimestamps,
    pub stopped_reason: Option<String>,
    /// Why ECS stopped the task, as a code (`TaskFailedToStart`, `EssentialContainerExited`,
    /// `UserInitiated`, ...); absent while it runs.
    pub stop_code: Option<String>,
    /// Task-level CPU units and memory (MiB), as the task reports them; absent when only the
    /// containers set them.
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
    pub tags: Tags,
    pub capacity: Capacity,
    pub network: Option<NetworkConfig>,
    pub overrides: Overrides,
    pub container_instance_arn: Option<String>,
    /// ECS's `version` of the task: it grows with every change ECS makes to the task, in
    /// DescribeTasks and in the task's state change events alike, so an older picture never
    /// overwrites a newer one (0 when unknown).
    #[serde(default)]
    pub version: u64,
}

impl Task {
    /// The service this task belongs to, from its `group` (`service:NAME`).
    pub fn service_name(&self) -> Option<&str> {
        self.group
            .as_deref()
            .and_then(|g| g.strip_prefix("service:"))
    }

    /// The task id: the last segment of the ARN.
    pub fn id(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or(&self.arn)
    }

    /// The capacity provider names this task was placed with, if any.
    pub fn capacity_providers(&self) -> Vec<&str> {
        match &self.capacity {
            Capacity::LaunchType(_) => Vec::new(),
            Capacity::CapacityProviderStrategy(items) => {
                items.iter().map(|i| i.capacity_provider.as_str()).collect()
            }
        }
    }
}

/// An ECS service as observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub arn: String,
    pub desired_count: u32,
    pub running_count: u32,
    pub pending_count: u32,
    /// The service's most recent events, newest first (DescribeServices keeps up to 100).
    pub events: Vec<ServiceEvent>,
}

/// One event of a service ("(service web) was unable to place a task because ...").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvent {
    pub at: Option<SystemTime>,
    pub message: String,
}

/// An ECS container instance as observed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerInstance {
    pub arn: String,
    pub ec2_instance_id: Option<String>,
    /// ACTIVE, DRAINING, REGISTERING, DEREGISTERING, REGISTRATION_FAILED, INACTIVE.
    pub status: String,
    pub agent_connected: bool,
    pub registered_at: Option<SystemTime>,
}

/// An ECS capacity provider of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityProvider {
    pub name: String,
    /// The ARN of its Auto Scaling group; `None` for FARGATE / FARGATE_SPOT.
    pub auto_scaling_group_arn: Option<String>,
    /// Whether ECS managed scaling drives the group's desired capacity.
    pub managed_scaling: bool,
}

/// How an Auto Scaling group launches instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GroupLaunch {
    /// A launch template, as the group is configured.
    LaunchTemplate {
        template_id: String,
        template_name: String,
        /// As configured: a number, `$Latest` or `$Default`.
        version: String,
        /// `version` resolved to a number (from the template's latest/default version).
        resolved_version: Option<u32>,
    },
    /// A mixed instances policy: not supported for cordoning.
    MixedInstancesPolicy { template_id: Option<String> },
    /// A launch configuration: not supported for cordoning.
    LaunchConfiguration { name: String },
}

impl GroupLaunch {
    /// The launch template the group launches from: a launch template's, or a mixed instances
    /// policy's when it names one; `None` for a launch configuration.
    pub fn template_id(&self) -> Option<&str> {
        match self {
            GroupLaunch::LaunchTemplate { template_id, .. } => Some(template_id),
            GroupLaunch::MixedInstancesPolicy { template_id } => template_id.as_deref(),
            GroupLaunch::LaunchConfiguration { .. } => None,
        }
    }
}

/// One instance of an Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInstance {
    pub instance_id: String,
    /// Auto Scaling lifecycle state: Pending, InService, Terminating, Terminated, ...
    pub lifecycle_state: String,
    /// Healthy or Unhealthy, as Auto Scaling sees it.
    pub health_status: String,
    /// The numbered launch template version the instance was launched from, if known.
    pub launch_template_version: Option<u32>,
    /// When EC2 launched it.
    pub launched_at: Option<SystemTime>,
    /// Its EC2 instance type, e.g. `m5.large`.
    pub instance_type: Option<String>,
}

/// An Auto Scaling group behind a capacity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoScalingGroup {
    pub name: String,
    pub arn: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    pub launch: GroupLaunch,
    pub instances: Vec<GroupInstance>,
    /// The group's tags; the controller keeps its cordons and nudge times here.
    pub tags: Tags,
}

/// Everything observed of one cluster in one pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSnapshot {
    pub cluster_name: String,
    pub cluster_arn: String,
    /// When the observation was made, on the clock of the account observed (virtual in the
    /// simulator). Diagnosis and planning use it as "now".
    pub observed_at: SystemTime,
    pub services: Vec<Service>,
    /// Tasks with desiredStatus RUNNING, and tasks with desiredStatus STOPPED that ECS still
    /// reports (on the way down, or stopped within roughly the last hour).
    pub tasks: Vec<Task>,
    pub container_instances: Vec<ContainerInstance>,
    /// The cluster's capacity providers (from DescribeClusters / DescribeCapacityProviders).
    pub capacity_providers: Vec<CapacityProvider>,
    /// The Auto Scaling groups behind those capacity providers.
    pub auto_scaling_groups: Vec<AutoScalingGroup>,
    /// Parts of the picture that could not be read. Empty means complete. Decisions that need
    /// the whole picture (percentages, pause thresholds) are not made on an incomplete one.
    pub gaps: Vec<String>,
    /// Tasks known only from events, by ARN: no read has reported their tags (an exemption
    /// tag among them), health or security groups yet, so nothing is done to them until one
    /// does. Always empty in a full observation.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub tags_unread: BTreeSet<String>,
}

impl ClusterSnapshot {
    /// An empty snapshot of a cluster, observed at `observed_at`.
    pub fn empty(cluster_name: &str, cluster_arn: &str, observed_at: SystemTime) -> Self {
        ClusterSnapshot {
            cluster_name: cluster_name.to_string(),
            cluster_arn: cluster_arn.to_string(),
            observed_at,
            services: Vec::new(),
            tasks: Vec::new(),
            container_instances: Vec::new(),
            capacity_providers: Vec::new(),
            auto_scaling_groups: Vec::new(),
            gaps: Vec::new(),
            tags_unread: BTreeSet::new(),
        }
    }

    pub fn is_complete(&self) -> bool {
        self.gaps.is_empty()
    }

    /// The container instances that stand for EC2 instances registered with the cluster, by
    /// EC2 instance id: every one but those ECS reports INACTIVE (deregistered). Diagnosis
    /// and `explain` both judge registration by this one function.
    pub fn registered_instances(&self) -> std::collections::HashMap<&str, &ContainerInstance> {
        self.container_instances
            .iter()
            .filter(|ci| ci.status != "INACTIVE")
            .filter_map(|ci| ci.ec2_instance_id.as_deref().map(|id| (id, ci)))
            .collect()
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// One numbered launch template version, as DescribeLaunchTemplateVersions gives it: what an
/// instance launched from it boots with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchTemplateVersion {
    pub template_id: String,
    pub version: u32,
    /// The UserData exactly as EC2 keeps it: base64, possibly of gzip or MIME multi-part.
    pub user_data: Option<String>,
    /// The instance profile's ARN or name; `None` when the version names none.
    pub instance_profile: Option<String>,
    pub instance_type: Option<String>,
    pub image_id: Option<String>,
}

/// One scaling activity of an Auto Scaling group (DescribeScalingActivities).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScalingActivity {
    pub activity_id: String,
    /// `Successful`, `Failed`, `Cancelled`, `InProgress`, `WaitingForSpotInstanceId`, ...
    pub status_code: String,
    /// Why it failed, as Auto Scaling words it ("You have requested more vCPU capacity than
    /// your current vCPU limit ...").
    pub status_message: Option<String>,
    pub description: Option<String>,
    pub cause: Option<String>,
    pub start_time: Option<SystemTime>,
}

/// The size of an EC2 instance type (DescribeInstanceTypes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceTypeSize {
    pub instance_type: String,
    pub vcpus: u32,
    pub memory_mib: u64,
}

/// Everything RunTask needs to start a replacement for a standalone task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunTaskRequest {
    pub task_definition: String,
    pub overrides: TaskOverrides,
    pub tags: Tags,
    pub group: Option<String>,
    pub started_by: Option<String>,
    pub capacity: Capacity,
    pub network: Option<NetworkConfig>,
    /// RunTask's idempotency token (at most 64 ASCII characters): derived from the task being
    /// replaced, so a retry or a restarted controller cannot start two replacements.
    pub client_token: String,
}

/// A resource named briefly for people: `task/CLUSTER/ID` for a task ARN, the name after the
/// last slash for anything else (an Auto Scaling group, a container instance).
pub fn short_name(arn: &str) -> &str {
    if let Some(i) = arn.find(":task/") {
        return &arn[i + 1..];
    }
    arn.rsplit('/').next().unwrap_or(arn)
}
