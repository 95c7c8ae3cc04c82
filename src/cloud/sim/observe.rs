//! Observing a cluster the way the AWS adapter does, and counting the calls that would take.
//!
//! DescribeClusters 1; ListServices ceil(S/10) (at least 1) and DescribeServices ceil(S/10);
//! ListTasks per desiredStatus filter ceil(N/100) (at least 1 each) and DescribeTasks
//! ceil(N/100); ListContainerInstances ceil(C/100) (at least 1) and DescribeContainerInstances
//! ceil(C/100). A failing cluster or task call fails the whole observation; a failing service or
//! container instance call leaves that part empty and named in `gaps`. DescribeNetworkInterfaces
//! ceil(E/200) for the E standalone awsvpc tasks whose network interface exists.

use std::time::SystemTime;

use super::calls::{Calls, pages};
use super::world::World;
use crate::cloud::{CloudError, ErrorCategory};
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

    let instances = c.container_instances();
    let read_instances = calls
        .call_pages("ListContainerInstances", pages(instances.len(), 100, 1))
        .and_then(|()| {
            calls.call_pages("DescribeContainerInstances", pages(instances.len(), 100, 0))
        });
    match read_instances {
        Ok(()) => snapshot.container_instances = instances.to_vec(),
        Err(e) => snapshot.gaps.push(format!("container instances: {e}")),
    }
    Ok(snapshot)
}
