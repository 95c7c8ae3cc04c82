//! Names in the simulated account: ARNs and deterministic, realistic-looking resource ids.

/// The account every simulated resource lives in.
pub const ACCOUNT_ID: &str = "123456789012";
/// The Region every simulated resource lives in.
pub const REGION: &str = "us-east-1";

fn ecs_arn(resource: &str) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT_ID}:{resource}")
}

pub(crate) fn cluster_arn(cluster: &str) -> String {
    ecs_arn(&format!("cluster/{cluster}"))
}

pub(crate) fn service_arn(cluster: &str, service: &str) -> String {
    ecs_arn(&format!("service/{cluster}/{service}"))
}

pub(crate) fn task_arn(cluster: &str, id: &str) -> String {
    ecs_arn(&format!("task/{cluster}/{id}"))
}

pub(crate) fn container_instance_arn(cluster: &str, id: &str) -> String {
    ecs_arn(&format!("container-instance/{cluster}/{id}"))
}

/// A full task definition ARN from `family`, `family:revision` or an ARN (kept as is).
/// A bare family resolves to revision 1, standing in for ECS's "latest ACTIVE revision".
pub(crate) fn task_definition_arn(task_definition: &str) -> String {
    if task_definition.starts_with("arn:") {
        task_definition.to_string()
    } else if task_definition.contains(':') {
        ecs_arn(&format!("task-definition/{task_definition}"))
    } else {
        ecs_arn(&format!("task-definition/{task_definition}:1"))
    }
}

/// The family of a task definition ARN or name (`web` for `.../task-definition/web:3`).
pub(crate) fn task_definition_family(task_definition: &str) -> &str {
    let name = task_definition
        .rsplit('/')
        .next()
        .unwrap_or(task_definition);
    name.split(':').next().unwrap_or(name)
}

/// Splits `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID` into (CLUSTER, ID).
pub(crate) fn parse_task_arn(arn: &str) -> Option<(&str, &str)> {
    let resource = arn.strip_prefix("arn:aws:ecs:")?.splitn(3, ':').nth(2)?;
    let mut parts = resource.strip_prefix("task/")?.split('/');
    let (cluster, id) = (parts.next()?, parts.next()?);
    (parts.next().is_none() && !cluster.is_empty() && !id.is_empty()).then_some((cluster, id))
}

/// SplitMix64: a bijection on u64 that scatters consecutive counters.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A 32-hex-digit id (like an ECS task id), unique per counter value.
pub(crate) fn hex_id(counter: u64) -> String {
    format!("{:016x}{:016x}", mix(counter), mix(!counter))
}

/// A 19-digit deployment number, as in `ecs-svc/1234567890123456789`.
pub(crate) fn deployment_number(counter: u64) -> u64 {
    1_000_000_000_000_000_000 + mix(counter) % 8_000_000_000_000_000_000
}

/// An EC2 instance id (`i-` and 17 hex digits).
pub(crate) fn ec2_instance_id(counter: u64) -> String {
    format!("i-{:017x}", mix(counter) >> 4)
}

/// A launch template id (`lt-` and 17 hex digits).
pub(crate) fn launch_template_id(counter: u64) -> String {
    format!("lt-{:017x}", mix(!counter) >> 4)
}

/// An Auto Scaling group ARN, with a UUID made from `counter`.
pub(crate) fn auto_scaling_group_arn(counter: u64, name: &str) -> String {
    let hex = hex_id(counter);
    format!(
        "arn:aws:autoscaling:{REGION}:{ACCOUNT_ID}:autoScalingGroup:{}-{}-{}-{}-{}:\
         autoScalingGroupName/{name}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
