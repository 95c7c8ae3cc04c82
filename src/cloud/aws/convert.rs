//! Conversions between ECS SDK types and domain types, in both directions.
//!
//! SDK → domain never panics: a task whose essential fields are missing or unknown is refused
//! with a reason, which the observer records as a gap in the snapshot. The tasks of one answer
//! share their repeated ARNs, names and tag lists through one [`Interner`].

use std::time::SystemTime;

use aws_sdk_ecs::primitives::DateTime;
use aws_sdk_ecs::types as ecs;

use crate::compact::Interner;
use crate::domain::{
    Capacity, CapacityProviderStrategyItem, ContainerInstance, ContainerOverride, DesiredStatus,
    EnvVar, HealthStatus, NetworkConfig, RunTaskRequest, Service, ServiceEvent, Task,
    TaskOverrides, TaskStatus, TaskTimestamps,
};

/// The attachment type of a task's awsvpc network interface.
const ENI_ATTACHMENT: &str = "ElasticNetworkInterface";

fn time(t: Option<&DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// A DescribeTasks task in domain terms, or why it cannot be used; `interner` shares what it
/// repeats with the other tasks of the same answer.
pub(crate) fn task(
    t: &ecs::Task,
    cluster_arn: &str,
    interner: &mut Interner,
) -> Result<Task, String> {
    let arn = non_empty(t.task_arn()).ok_or("a task without taskArn")?;
    let refuse = |why: String| format!("task {arn}: {why}");
    let last_status = match t.last_status() {
        Some(s) => {
            TaskStatus::parse(s).ok_or_else(|| refuse(format!("unknown lastStatus {s:?}")))?
        }
        None => return Err(refuse("no lastStatus".into())),
    };
    let desired_status = match t.desired_status() {
        Some("RUNNING") => DesiredStatus::Running,
        Some("STOPPED") => DesiredStatus::Stopped,
        other => return Err(refuse(format!("unknown desiredStatus {other:?}"))),
    };
    let health = match t.health_status() {
        Some(ecs::HealthStatus::Healthy) => HealthStatus::Healthy,
        Some(ecs::HealthStatus::Unhealthy) => HealthStatus::Unhealthy,
        _ => HealthStatus::Unknown,
    };
    let task_definition_arn = t
        .task_definition_arn()
        .filter(|d| !d.is_empty())
        .map(|d| interner.intern(d))
        .ok_or_else(|| refuse("no taskDefinitionArn".into()))?;
    let mut shared = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(|s| interner.intern(s));
    let capacity = if let Some(provider) = non_empty(t.capacity_provider_name()) {
        // DescribeTasks reports only the provider the task was placed with, not the strategy.
        Capacity::CapacityProviderStrategy(vec![CapacityProviderStrategyItem {
            capacity_provider: provider,
            weight: 1,
            base: 0,
        }])
    } else if let Some(launch_type) = t.launch_type().filter(|l| !l.as_str().is_empty()) {
        Capacity::LaunchType(launch_type.as_str().to_string())
    } else {
        return Err(refuse("neither launchType nor capacityProviderName".into()));
    };
    Ok(Task {
        task_definition_arn,
        cluster_arn: shared(
            t.cluster_arn()
                .filter(|a| !a.is_empty())
                .or(Some(cluster_arn)),
        )
        .unwrap_or_default(),
        group: shared(t.group()),
        started_by: shared(t.started_by()),
        last_status,
        desired_status,
        health,
        timestamps: TaskTimestamps {
            created_at: time(t.created_at()),
            connectivity_at: time(t.connectivity_at()),
            pull_started_at: time(t.pull_started_at()),
            pull_stopped_at: time(t.pull_stopped_at()),
            started_at: time(t.started_at()),
            stopping_at: time(t.stopping_at()),
            execution_stopped_at: time(t.execution_stopped_at()),
            stopped_at: time(t.stopped_at()),
        },
        stopped_reason: non_empty(t.stopped_reason()),
        stop_code: t
            .stop_code()
            .map(|c| c.as_str().to_string())
            .filter(|c| !c.is_empty()),
        cpu: t.cpu().and_then(|c| c.trim().parse().ok()),
        memory: t.memory().and_then(|m| m.trim().parse().ok()),
        tags: interner.tags(tags(t.tags())),
        capacity,
        network: network(t.attachments()),
        overrides: t.overrides().map(overrides).unwrap_or_default().into(),
        container_instance_arn: non_empty(t.container_instance_arn()),
        version: t.version().try_into().unwrap_or(0),
        arn,
    })
}

/// The key and value of each tag (a tag without a key is no tag).
fn tags(tags: &[ecs::Tag]) -> impl Iterator<Item = (&str, &str)> + Clone {
    tags.iter()
        .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
}

/// The task's awsvpc network interface attachment, if it has one.
fn eni_attachment(attachments: &[ecs::Attachment]) -> Option<&ecs::Attachment> {
    attachments
        .iter()
        .find(|a| a.r#type() == Some(ENI_ATTACHMENT))
}

/// The values of an attachment's detail `name`.
fn detail_values<'a>(
    attachment: &'a ecs::Attachment,
    name: &'a str,
) -> impl Iterator<Item = String> + 'a {
    attachment
        .details()
        .iter()
        .filter(move |d| d.name() == Some(name))
        .filter_map(|d| non_empty(d.value()))
}

/// The awsvpc configuration, from the task's network interface attachment.
///
/// DescribeTasks reports the interface's subnet but not its security groups, nor whether a
/// public IP was asked for: security groups stay empty here (the observer fills them in from
/// EC2 for standalone tasks, see [`eni_id`]) and the public IP unknown. `None` when the task
/// has no network interface attachment (not awsvpc, or not attached yet).
fn network(attachments: &[ecs::Attachment]) -> Option<NetworkConfig> {
    let subnets: Vec<String> = detail_values(eni_attachment(attachments)?, "subnetId").collect();
    (!subnets.is_empty()).then(|| NetworkConfig {
        subnets,
        security_groups: Vec::new(),
        assign_public_ip: None,
    })
}

/// The id of the task's awsvpc network interface, once ECS has created it (a task still
/// PROVISIONING may have an attachment without one).
pub(crate) fn eni_id(t: &ecs::Task) -> Option<String> {
    detail_values(eni_attachment(t.attachments())?, "networkInterfaceId").next()
}

/// Whether a container override changes anything. DescribeTasks lists one for every container
/// of the task, most of them naming the container only: RunTask treats such an entry as no
/// override at all, so the domain keeps only the others (a task of two plain containers then
/// holds no override, as the simulator's tasks do).
fn overrides_something(c: &ecs::ContainerOverride) -> bool {
    !c.command().is_empty()
        || !c.environment().is_empty()
        || c.cpu().is_some()
        || c.memory().is_some()
        || c.memory_reservation().is_some()
}

fn overrides(o: &ecs::TaskOverride) -> TaskOverrides {
    TaskOverrides {
        containers: o
            .container_overrides()
            .iter()
            .filter(|c| overrides_something(c))
            .map(|c| ContainerOverride {
                name: c.name().unwrap_or_default().to_string(),
                command: (!c.command().is_empty()).then(|| c.command().to_vec()),
                environment: c
                    .environment()
                    .iter()
                    .map(|kv| EnvVar {
                        name: kv.name().unwrap_or_default().to_string(),
                        value: kv.value().unwrap_or_default().to_string(),
                    })
                    .collect(),
                cpu: c.cpu(),
                memory: c.memory(),
                memory_reservation: c.memory_reservation(),
            })
            .collect(),
        cpu: non_empty(o.cpu()),
        memory: non_empty(o.memory()),
        task_role_arn: non_empty(o.task_role_arn()),
        execution_role_arn: non_empty(o.execution_role_arn()),
    }
}

/// A DescribeServices service in domain terms, or why it cannot be used.
pub(crate) fn service(s: &ecs::Service) -> Result<Service, String> {
    let arn = non_empty(s.service_arn()).ok_or("a service without serviceArn")?;
    let name = non_empty(s.service_name())
        .or_else(|| arn.rsplit('/').next().map(str::to_string))
        .ok_or_else(|| format!("service {arn}: no serviceName"))?;
    Ok(Service {
        name,
        arn,
        desired_count: count(s.desired_count()),
        running_count: count(s.running_count()),
        pending_count: count(s.pending_count()),
        events: s
            .events()
            .iter()
            .filter_map(|e| {
                Some(ServiceEvent {
                    at: time(e.created_at()),
                    message: non_empty(e.message())?,
                })
            })
            .collect(),
    })
}

/// A DescribeContainerInstances instance in domain terms, or why it cannot be used.
pub(crate) fn container_instance(c: &ecs::ContainerInstance) -> Result<ContainerInstance, String> {
    let arn = non_empty(c.container_instance_arn())
        .ok_or("a container instance without containerInstanceArn")?;
    let status =
        non_empty(c.status()).ok_or_else(|| format!("container instance {arn}: no status"))?;
    Ok(ContainerInstance {
        ec2_instance_id: non_empty(c.ec2_instance_id()),
        status,
        agent_connected: c.agent_connected(),
        registered_at: time(c.registered_at()),
        arn,
    })
}

/// Everything RunTask takes from a request, in SDK types.
pub(crate) struct RunTaskParts {
    pub overrides: ecs::TaskOverride,
    pub tags: Vec<ecs::Tag>,
    pub launch_type: Option<ecs::LaunchType>,
    pub strategy: Option<Vec<ecs::CapacityProviderStrategyItem>>,
    pub network: Option<ecs::NetworkConfiguration>,
}

/// Builds RunTask's parameters; `Err` names a field ECS would refuse.
pub(crate) fn run_task_parts(r: &RunTaskRequest) -> Result<RunTaskParts, String> {
    let containers = r
        .overrides
        .containers
        .iter()
        .map(|c| {
            ecs::ContainerOverride::builder()
                .name(&c.name)
                .set_command(c.command.clone())
                .set_environment((!c.environment.is_empty()).then(|| {
                    c.environment
                        .iter()
                        .map(|e| {
                            ecs::KeyValuePair::builder()
                                .name(&e.name)
                                .value(&e.value)
                                .build()
                        })
                        .collect()
                }))
                .set_cpu(c.cpu)
                .set_memory(c.memory)
                .set_memory_reservation(c.memory_reservation)
                .build()
        })
        .collect::<Vec<_>>();
    let overrides = ecs::TaskOverride::builder()
        .set_container_overrides((!containers.is_empty()).then_some(containers))
        .set_cpu(r.overrides.cpu.clone())
        .set_memory(r.overrides.memory.clone())
        .set_task_role_arn(r.overrides.task_role_arn.clone())
        .set_execution_role_arn(r.overrides.execution_role_arn.clone())
        .build();
    let tags = r
        .tags
        .iter()
        .map(|(k, v)| ecs::Tag::builder().key(k).value(v).build())
        .collect();
    let (launch_type, strategy) = match &r.capacity {
        Capacity::LaunchType(l) => (Some(ecs::LaunchType::from(l.as_str())), None),
        Capacity::CapacityProviderStrategy(items) => {
            let items = items
                .iter()
                .map(|i| {
                    ecs::CapacityProviderStrategyItem::builder()
                        .capacity_provider(&i.capacity_provider)
                        .weight(i.weight)
                        .base(i.base)
                        .build()
                        .map_err(|e| format!("capacity provider strategy: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (None, Some(items))
        }
    };
    let network = match &r.network {
        None => None,
        // ECS would put the task in the VPC's default security group: a different network
        // reach than the task being replaced had. Refuse rather than guess.
        Some(n) if n.security_groups.is_empty() => {
            return Err(
                "network configuration without security groups: refusing to start \
                        a task in the VPC's default security group"
                    .into(),
            );
        }
        Some(n) => {
            let vpc = ecs::AwsVpcConfiguration::builder()
                .set_subnets(Some(n.subnets.clone()))
                .set_security_groups(Some(n.security_groups.clone()))
                .set_assign_public_ip(n.assign_public_ip.map(|on| {
                    if on {
                        ecs::AssignPublicIp::Enabled
                    } else {
                        ecs::AssignPublicIp::Disabled
                    }
                }))
                .build()
                .map_err(|e| format!("network configuration: {e}"))?;
            Some(
                ecs::NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
        }
    };
    Ok(RunTaskParts {
        overrides,
        tags,
        launch_type,
        strategy,
        network,
    })
}

/// Describes an ECS `failures[]` entry in one line.
pub(crate) fn failure(f: &ecs::Failure) -> String {
    let mut text = format!(
        "{}: {}",
        f.arn().unwrap_or("(no arn)"),
        f.reason().unwrap_or("(no reason)")
    );
    if let Some(detail) = f.detail().filter(|d| !d.is_empty()) {
        text.push_str(&format!(" ({detail})"));
    }
    text
}
