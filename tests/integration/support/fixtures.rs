//! Fixture builders for domain values: tasks, snapshots and policy sets, small and readable.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::capacity::tags::{MANAGED_TAG_KEY, MANAGED_TAG_VALUE};
use ecs_reconciler::domain::{
    AutoScalingGroup, Capacity, CapacityProvider, CapacityProviderStrategyItem, ClusterSnapshot,
    ContainerInstance, ContainerOverride, DesiredStatus, EnvVar, GroupInstance, GroupLaunch,
    HealthStatus, NetworkConfig, Overrides, Service, Task, TaskOverrides, TaskStatus,
    TaskTimestamps,
};
use ecs_reconciler::policy::{PolicySet, parse_str};

pub const CLUSTER: &str = "prod-web";

/// A fixed "now" for pure tests.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// `m` minutes before [`now`].
pub fn ago(m: u64) -> SystemTime {
    now() - mins(m)
}

pub fn task_arn(id: &str) -> String {
    format!("arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/{id}")
}

/// Builds a task; by default a RUNNING, healthy task of service `web` created an hour ago.
#[derive(Clone)]
pub struct TaskBuilder(Task);

impl TaskBuilder {
    pub fn service(service: &str, id: &str) -> Self {
        TaskBuilder(Task {
            arn: task_arn(id),
            cluster_arn: format!("arn:aws:ecs:us-east-1:123456789012:cluster/{CLUSTER}").into(),
            task_definition_arn: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:7".into(),
            group: Some(format!("service:{service}").into()),
            started_by: Some("ecs-svc/1234567890".into()),
            last_status: TaskStatus::Running,
            desired_status: DesiredStatus::Running,
            health: HealthStatus::Healthy,
            timestamps: TaskTimestamps {
                created_at: Some(ago(60)),
                started_at: Some(ago(58)),
                ..TaskTimestamps::default()
            },
            stopped_reason: None,
            stop_code: None,
            cpu: None,
            memory: None,
            tags: Default::default(),
            capacity: Capacity::CapacityProviderStrategy(vec![CapacityProviderStrategyItem {
                capacity_provider: "web-asg-cp".into(),
                weight: 1,
                base: 0,
            }]),
            network: Some(NetworkConfig {
                subnets: vec!["subnet-1".into()],
                security_groups: vec!["sg-1".into()],
                assign_public_ip: Some(false),
            }),
            overrides: Default::default(),
            container_instance_arn: None,
            version: 1,
        })
    }

    /// A standalone task of group `batch:nightly`, started with overrides and tags.
    pub fn standalone(id: &str) -> Self {
        let mut b = Self::service("unused", id);
        b.0.group = Some("batch:nightly".into());
        b.0.started_by = Some("scheduler".into());
        b.0.task_definition_arn =
            "arn:aws:ecs:us-east-1:123456789012:task-definition/nightly:3".into();
        b.0.capacity = Capacity::LaunchType("FARGATE".into());
        b.0.overrides = Overrides::from(TaskOverrides {
            containers: vec![ContainerOverride {
                name: "job".into(),
                command: Some(vec!["run".into(), "--date=today".into()]),
                environment: vec![EnvVar {
                    name: "MODE".into(),
                    value: "full".into(),
                }],
                cpu: Some(256),
                memory: None,
                memory_reservation: None,
            }],
            cpu: Some("512".into()),
            memory: Some("1024".into()),
            task_role_arn: Some("arn:aws:iam::123456789012:role/job".into()),
            execution_role_arn: None,
        });
        b.0.tags.insert("team", "data");
        b.0.tags.insert("aws:ecs:clusterName", CLUSTER);
        b
    }

    /// In `status` since `since` minutes ago, on the way up, with the documented timestamps.
    pub fn stuck_in(mut self, status: TaskStatus, since: u64) -> Self {
        let t = &mut self.0.timestamps;
        *t = TaskTimestamps::default();
        match status {
            TaskStatus::Provisioning => t.created_at = Some(ago(since)),
            TaskStatus::Pending => {
                t.created_at = Some(ago(since + 1));
                t.connectivity_at = Some(ago(since));
            }
            TaskStatus::Activating => {
                t.created_at = Some(ago(since + 3));
                t.connectivity_at = Some(ago(since + 2));
                t.pull_started_at = Some(ago(since + 1));
                t.pull_stopped_at = Some(ago(since));
            }
            other => panic!("stuck_in takes a way-up state, not {other}"),
        }
        self.0.last_status = status;
        self
    }

    pub fn status(mut self, status: TaskStatus) -> Self {
        self.0.last_status = status;
        self
    }

    pub fn health(mut self, health: HealthStatus) -> Self {
        self.0.health = health;
        self
    }

    pub fn timestamps(mut self, f: impl FnOnce(&mut TaskTimestamps)) -> Self {
        f(&mut self.0.timestamps);
        self
    }

    /// Told to stop `since` minutes ago with `reason`, now in `status`.
    pub fn stopped(mut self, status: TaskStatus, since: u64, reason: &str) -> Self {
        self.0.desired_status = DesiredStatus::Stopped;
        self.0.last_status = status;
        self.0.timestamps.stopping_at = Some(ago(since));
        self.0.stopped_reason = Some(reason.into());
        self
    }

    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.0.tags.insert(key, value);
        self
    }

    pub fn build(self) -> Task {
        self.0
    }
}

/// A complete snapshot of [`CLUSTER`] at [`now`].
pub fn snapshot(tasks: Vec<Task>, services: &[(&str, u32)]) -> ClusterSnapshot {
    let mut snap = ClusterSnapshot::empty(
        CLUSTER,
        &format!("arn:aws:ecs:us-east-1:123456789012:cluster/{CLUSTER}"),
        now(),
    );
    snap.services = services
        .iter()
        .map(|(name, desired)| Service {
            name: name.to_string(),
            arn: format!("arn:aws:ecs:us-east-1:123456789012:service/{CLUSTER}/{name}"),
            desired_count: *desired,
            running_count: 0,
            pending_count: 0,
            events: Vec::new(),
        })
        .collect();
    snap.tasks = tasks;
    snap
}

/// A policy set from YAML text.
pub fn policies(yaml: &str) -> PolicySet {
    let policies = parse_str(Path::new("test.yaml"), yaml)
        .unwrap_or_else(|e| panic!("fixture policy must be valid: {e}"));
    PolicySet {
        policies,
        fingerprint: "test".into(),
    }
}

/// One enforce policy over [`CLUSTER`] with the given `stuck`, `remediate` and `guardrails`
/// bodies (YAML flow mappings).
pub fn policy(stuck: &str, remediate: &str, guardrails: &str) -> PolicySet {
    policies(&format!(
        "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata:\n  name: web\nspec:\n  \
         target:\n    clusters: [\"prod-*\"]\n    standalone: true\n  stuck: {stuck}\n  \
         remediate: {remediate}\n  guardrails: {guardrails}\n"
    ))
}

/// The usual policy: PROVISIONING/PENDING 10m, ACTIVATING 5m, STOPPING 20m, unhealthy 5m;
/// replaceTask for service and standalone tasks; generous guardrails.
pub fn usual_policy() -> PolicySet {
    policy(
        "{PROVISIONING: 10m, PENDING: 10m, ACTIVATING: 5m, STOPPING: 20m, unhealthy: 5m}",
        "{replaceTask: {standalone: true}}",
        "{maxActionsPerHour: 100, maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}",
    )
}

pub const GROUP: &str = "web-asg";
pub const PROVIDER: &str = "web-asg-cp";
pub const TEMPLATE: &str = "lt-0web";

pub fn group_arn(name: &str) -> String {
    format!(
        "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:uuid:autoScalingGroupName/{name}"
    )
}

/// The capacity provider [`PROVIDER`] of [`GROUP`].
pub fn provider(managed_scaling: bool) -> CapacityProvider {
    CapacityProvider {
        name: PROVIDER.into(),
        auto_scaling_group_arn: Some(group_arn(GROUP)),
        managed_scaling,
    }
}

/// Builds [`GROUP`]: launch template [`TEMPLATE`] at `$Latest`, no instances, carrying the
/// opt-in tag (`ecs-reconciler:managed=true`; [`GroupBuilder::unmanaged`] removes it).
pub struct GroupBuilder(pub AutoScalingGroup);

impl GroupBuilder {
    pub fn new(desired: u32, max: u32, latest: u32) -> Self {
        GroupBuilder(AutoScalingGroup {
            name: GROUP.into(),
            arn: group_arn(GROUP),
            min_size: 0,
            max_size: max,
            desired_capacity: desired,
            launch: GroupLaunch::LaunchTemplate {
                template_id: TEMPLATE.into(),
                template_name: "web".into(),
                version: "$Latest".into(),
                resolved_version: Some(latest),
            },
            instances: Vec::new(),
            tags: [(MANAGED_TAG_KEY.to_string(), MANAGED_TAG_VALUE.to_string())].into(),
        })
    }

    /// Without the opt-in tag: the controller must never write to it.
    pub fn unmanaged(mut self) -> Self {
        self.0.tags.remove(MANAGED_TAG_KEY);
        self
    }

    /// An InService instance launched `minutes` ago from `version`.
    pub fn instance(mut self, id: &str, version: u32, minutes: u64) -> Self {
        self.0.instances.push(GroupInstance {
            instance_id: id.into(),
            lifecycle_state: "InService".into(),
            health_status: "Healthy".into(),
            launch_template_version: Some(version),
            launched_at: Some(ago(minutes)),
            instance_type: None,
        });
        self
    }

    pub fn pinned(mut self, version: u32) -> Self {
        if let GroupLaunch::LaunchTemplate {
            version: v,
            resolved_version,
            ..
        } = &mut self.0.launch
        {
            *v = version.to_string();
            *resolved_version = Some(version);
        }
        self
    }

    pub fn launch(mut self, launch: GroupLaunch) -> Self {
        self.0.launch = launch;
        self
    }

    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.0.tags.insert(key, value);
        self
    }

    pub fn build(self) -> AutoScalingGroup {
        self.0
    }
}

/// A container instance on EC2 instance `ec2_id`.
pub fn container_instance(ec2_id: &str, agent_connected: bool) -> ContainerInstance {
    ContainerInstance {
        arn: format!("arn:aws:ecs:us-east-1:123456789012:container-instance/{CLUSTER}/{ec2_id}"),
        ec2_instance_id: Some(ec2_id.into()),
        status: "ACTIVE".into(),
        agent_connected,
        registered_at: Some(ago(30)),
    }
}

/// `n` service tasks of `web` stuck in PROVISIONING on [`PROVIDER`] for `minutes`.
pub fn waiting_tasks(n: usize, minutes: u64) -> Vec<Task> {
    (0..n)
        .map(|i| {
            TaskBuilder::service("web", &format!("wait{i}"))
                .stuck_in(TaskStatus::Provisioning, minutes)
                .build()
        })
        .collect()
}

/// The policy for capacity tests: PROVISIONING 10m, every remediation allowed.
pub fn capacity_policy() -> PolicySet {
    policy(
        "{PROVISIONING: 10m}",
        "{replaceTask: {}, nudgeCapacity: {step: 1, maxDesired: 8, cooldown: 5m}, \
         cordonLaunchTemplate: {registrationTimeout: 10m, minFailedInstances: 2}, \
         drainContainerInstance: {agentDisconnected: 15m}}",
        "{maxActionsPerHour: 20, maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}",
    )
}
