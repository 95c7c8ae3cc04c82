//! Observing a cluster the way the AWS adapter does, and counting the calls that would take.
//!
//! DescribeClusters 1; ListServices ceil(S/10) (at least 1) and DescribeServices ceil(S/10);
//! ListTasks per desiredStatus filter ceil(N/100) (at least 1 each) and DescribeTasks
//! ceil(N/100); ListContainerInstances ceil(C/100) (at least 1) and DescribeContainerInstances
//! ceil(C/100). A failing cluster or task call fails the whole observation; a failing service or
//! container instance call leaves that part empty and named in `gaps`. DescribeNetworkInterfaces
//! ceil(E/200) for the E standalone awsvpc tasks whose network interface exists.
//!
//! The capacity chain, when the cluster has capacity providers: DescribeCapacityProviders 1;
//! DescribeAutoScalingGroups ceil(G/50) for the G groups those providers name (deleted ones
//! too: the adapter cannot know); EC2 DescribeLaunchTemplates 1 when any group found launches
//! from a template (to resolve `$Latest` and `$Default`). A failing capacity call leaves that
//! part empty (or, for launch templates, `$Latest`/`$Default` unresolved) and named in `gaps`.

use std::time::SystemTime;

use super::calls::{Calls, pages};
use super::world::{ClusterState, World};
use crate::cloud::{CloudError, ErrorCategory, GroupRead, TaskReads};
use crate::domain::{ClusterSnapshot, DesiredStatus, Task};

/// A task as the adapter reports it. DescribeTasks never reports an awsvpc task's security
/// groups; the adapter reads them from the task's network interface (EC2), which exists only
/// once the task has left PROVISIONING (connectivityAt), and only for standalone tasks.
fn as_described(mut task: Task) -> Task {
    let eni_known = task.service_name().is_none() && task.timestamps.connectivity_at.is_some();
    if let Some(network) = &mut task.network
        && !eni_known
    {
        network.security_groups.clear();
    }
    task
}

/// The snapshot of `cluster` at the world's current time.
pub(crate) fn observe(
    world: &World,
    calls: &mut Calls,
    cluster: &str,
    observed_at: SystemTime,
) -> Result<ClusterSnapshot, CloudError> {
    calls.call("DescribeClusters")?;
    let Some(c) = world.cluster(cluster) else {
        return Err(CloudError::new(
            ErrorCategory::NotFound,
            "DescribeClusters",
            format!("ClusterNotFoundException: cluster {cluster} not found"),
        ));
    };
    let mut snapshot = ClusterSnapshot::empty(c.name(), c.arn(), observed_at);

    let services = c.service_count();
    let read_services = calls
        .call_pages("ListServices", pages(services, 10, 1))
        .and_then(|()| calls.call_pages("DescribeServices", pages(services, 10, 0)));
    match read_services {
        Ok(()) => snapshot.services = c.services(),
        Err(e) => snapshot.gaps.push(format!("services: {e}")),
    }

    let running = c
        .tasks()
        .filter(|t| t.desired_status == DesiredStatus::Running)
        .count();
    let stopped = c.task_count() - running;
    calls.call_pages("ListTasks", pages(running, 100, 1))?;
    calls.call_pages("ListTasks", pages(stopped, 100, 1))?;
    calls.call_pages("DescribeTasks", pages(c.task_count(), 100, 0))?;
    snapshot.tasks = c.tasks().cloned().map(as_described).collect();
    let enis = snapshot
        .tasks
        .iter()
        .filter(|t| t.service_name().is_none() && t.network.is_some())
        .filter(|t| t.timestamps.connectivity_at.is_some())
        .count();
    if enis > 0 {
        calls.call_pages("DescribeNetworkInterfaces", pages(enis, 200, 0))?;
    }

    let instances = c.container_instance_count();
    let read_instances = calls
        .call_pages("ListContainerInstances", pages(instances, 100, 1))
        .and_then(|()| calls.call_pages("DescribeContainerInstances", pages(instances, 100, 0)));
    match read_instances {
        Ok(()) => snapshot.container_instances = c.container_instances(),
        Err(e) => snapshot.gaps.push(format!("container instances: {e}")),
    }

    observe_capacity(world, calls, c, &mut snapshot);
    Ok(snapshot)
}

/// Fills the capacity providers and their Auto Scaling groups.
fn observe_capacity(
    world: &World,
    calls: &mut Calls,
    c: &ClusterState,
    snapshot: &mut ClusterSnapshot,
) {
    let providers = c.capacity_providers();
    if providers.is_empty() {
        return;
    }
    if let Err(e) = calls.call("DescribeCapacityProviders") {
        snapshot.gaps.push(format!("capacity providers: {e}"));
        return;
    }
    snapshot.capacity_providers = providers;
    let names = c.provider_group_names();
    if names.is_empty() {
        return;
    }
    if let Err(e) = calls.call_pages("DescribeAutoScalingGroups", pages(names.len(), 50, 0)) {
        snapshot.gaps.push(format!("auto scaling groups: {e}"));
        return;
    }
    let mut templates_read = false;
    if names.iter().any(|n| world.group_uses_template(n)) {
        match calls.call("DescribeLaunchTemplates") {
            Ok(()) => templates_read = true,
            Err(e) => snapshot.gaps.push(format!("launch templates: {e}")),
        }
    }
    snapshot.auto_scaling_groups = names
        .iter()
        .filter_map(|n| world.auto_scaling_group(n, templates_read))
        .collect();
}

/// DescribeTasks on `arns` of `cluster`, 100 a call, as the adapter makes it: a batch whose
/// call fails retryably is a gap, any other failure fails the read; unknown ARNs are missing.
pub(crate) fn describe_tasks(
    world: &World,
    calls: &mut Calls,
    cluster: &str,
    arns: &[String],
) -> Result<TaskReads, CloudError> {
    const OP: &str = "DescribeTasks";
    let Some(c) = world.cluster(cluster) else {
        calls.call(OP)?;
        return Err(CloudError::new(
            ErrorCategory::NotFound,
            OP,
            format!("ClusterNotFoundException: cluster {cluster} not found"),
        ));
    };
    let mut reads = TaskReads::default();
    for batch in arns.chunks(100) {
        if let Err(e) = calls.call(OP) {
            if !e.category.is_retryable() {
                return Err(e);
            }
            reads
                .gaps
                .push(format!("{} tasks not described: {e}", batch.len()));
            continue;
        }
        for arn in batch {
            match c.tasks().find(|t| &t.arn == arn) {
                Some(task) => reads.tasks.push(as_described(task.clone())),
                None => reads.missing.push(arn.clone()),
            }
        }
    }
    let enis = reads
        .tasks
        .iter()
        .filter(|t| t.service_name().is_none() && t.network.is_some())
        .filter(|t| t.timestamps.connectivity_at.is_some())
        .count();
    if enis > 0 {
        calls.call_pages("DescribeNetworkInterfaces", pages(enis, 200, 0))?;
    }
    Ok(reads)
}

/// The capacity chain of one group by name, as the adapter reads it.
pub(crate) fn observe_group(
    world: &World,
    calls: &mut Calls,
    name: &str,
) -> Result<GroupRead, CloudError> {
    calls.call("DescribeAutoScalingGroups")?;
    let mut read = GroupRead::default();
    let mut templates_read = false;
    if world.group_uses_template(name) {
        match calls.call("DescribeLaunchTemplates") {
            Ok(()) => templates_read = true,
            Err(e) => read.gaps.push(format!("launch templates: {e}")),
        }
    }
    read.group = world.auto_scaling_group(name, templates_read);
    Ok(read)
}
