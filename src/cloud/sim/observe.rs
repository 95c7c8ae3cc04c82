//! Observing a cluster the way the AWS adapter does (`src/cloud/aws/observe.rs` and
//! `capacity.rs`), and counting the calls that would take: the same page sizes, batches,
//! gaps (worded as the adapter words them) and failures, checked by the contract suite
//! (`tests/integration/contract/`).
//!
//! Cost for S services, N tasks, C container instances: DescribeClusters 1; ListServices
//! ceil(S/100) (at least 1) and DescribeServices ceil(S/10); ListTasks per desiredStatus filter
//! ceil(N/100) (at least 1 each) and DescribeTasks ceil(N/100); ListContainerInstances
//! ceil(C/100) (at least 1) and DescribeContainerInstances ceil(C/100); EC2
//! DescribeNetworkInterfaces ceil(E/200) for the E standalone awsvpc tasks, not STOPPED, whose
//! interface exists.
//!
//! Failures, as on the adapter: a missing cluster is `NotFound`; DescribeClusters and ListTasks
//! failures fail the snapshot. A failed list or describe of services, tasks or container
//! instances is a gap when its category is retryable and fails the snapshot otherwise. A failed
//! DescribeNetworkInterfaces is always a gap (those tasks keep no security groups). The parts
//! are read "concurrently": every part's calls are made even when one part fails the snapshot.
//!
//! The capacity chain (never fails the snapshot; each failure is a gap): DescribeCapacityProviders
//! ceil(P/10) (ECS answers 10 providers a page) for the providers other than FARGATE and FARGATE_SPOT (a failed batch leaves its
//! providers out); DescribeAutoScalingGroups ceil(G/100) for the G distinct groups those
//! providers name (deleted ones too: the adapter cannot know; a group recreated under the same
//! name with another ARN is not the provider's); EC2 DescribeLaunchTemplates ceil(T/200) for the
//! T distinct templates that groups launching directly from a template at `$Latest` or
//! `$Default` use (numbered versions and mixed instances policies need none); EC2
//! DescribeInstances ceil(I/200) for the groups' I instances (their launch times; when it fails
//! they are unknown, and an instance's version is known only where the group names a number).

use std::collections::BTreeSet;
use std::time::SystemTime;

use super::calls::{Calls, pages};
use super::world::{ClusterState, World};
use crate::cloud::{CloudError, ErrorCategory, GroupRead, KnownTasks, Resync, TaskReads};
use crate::domain::{
    AutoScalingGroup, CapacityProvider, ClusterSnapshot, DesiredStatus, GroupLaunch, Task,
    TaskStatus,
};

/// ListTasks, ListServices and ListContainerInstances: 100 ARNs a page.
const LIST_PAGE: usize = 100;
/// DescribeTasks and DescribeContainerInstances take 100 ARNs.
const DESCRIBE_BATCH: usize = 100;
/// DescribeServices takes 10 names.
const DESCRIBE_SERVICES_BATCH: usize = 10;
/// DescribeAutoScalingGroups takes 100 names.
const NAME_BATCH: usize = 100;
/// DescribeCapacityProviders answers 10 providers a page, so the adapter sends 10 names a call.
const PROVIDER_BATCH: usize = 10;
/// Values of one EC2 filter per call.
const FILTER_BATCH: usize = 200;
/// The providers AWS manages itself, which are not described.
const AWS_MANAGED_PROVIDERS: [&str; 2] = ["FARGATE", "FARGATE_SPOT"];

/// What one part of the observation found, and what it could not read.
struct Part<T> {
    items: Vec<T>,
    gaps: Vec<String>,
}

impl<T> Default for Part<T> {
    fn default() -> Self {
        Part {
            items: Vec::new(),
            gaps: Vec::new(),
        }
    }
}

/// As the adapter: a retryable failure is a gap `what: err`, any other fails the read.
fn gap_or_fail(err: CloudError, what: &str) -> Result<String, CloudError> {
    if err.category.is_retryable() {
        Ok(format!("{what}: {err}"))
    } else {
        Err(err)
    }
}

/// Whether the adapter looks up `task`'s security groups (and so reports them): a standalone
/// awsvpc task whose interface exists (connectivityAt) and that is not STOPPED.
fn needs_security_groups(task: &Task) -> bool {
    task.service_name().is_none()
        && task.network.is_some()
        && task.timestamps.connectivity_at.is_some()
        && task.last_status != TaskStatus::Stopped
}

/// A task as the adapter reports it: DescribeTasks never gives security groups; the adapter
/// adds them from EC2 for the tasks that need them, when that read answers.
///
/// The one drift kept: a STOPPED standalone awsvpc task keeps its security groups here
/// (without a lookup, which is counted as the adapter makes it: none), where the adapter has
/// none (its interface is gone). `scenarios::a_restart_between_stop_and_run_finishes_the_
/// replacement_exactly_once` relies on them to replace such a task after a restart; on AWS
/// that replacement is held `cannotReplicate` (unknown security groups).
fn as_described(mut task: Task, groups_read: bool) -> Task {
    let stopped_with_interface = task.service_name().is_none()
        && task.timestamps.connectivity_at.is_some()
        && task.last_status == TaskStatus::Stopped;
    let reported = stopped_with_interface || (groups_read && needs_security_groups(&task));
    if !reported && let Some(network) = &mut task.network {
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
    known: &KnownTasks,
) -> Result<Resync, CloudError> {
    calls.call("DescribeClusters")?;
    let Some(c) = world.cluster(cluster) else {
        return Err(CloudError::new(
            ErrorCategory::NotFound,
            "DescribeClusters",
            format!("no cluster {cluster}"),
        ));
    };
    let mut snapshot = ClusterSnapshot::empty(c.name(), c.arn(), observed_at);
    let services = services(c, calls);
    let tasks = tasks(c, calls, known);
    let instances = container_instances(c, calls);
    let chain = capacity(world, calls, c);
    let (services, (tasks, kept), instances) = (services?, tasks?, instances?);
    snapshot.services = services.items;
    snapshot.tasks = tasks.items;
    snapshot.container_instances = instances.items;
    snapshot.capacity_providers = chain.providers;
    snapshot.auto_scaling_groups = chain.groups.items;
    snapshot.gaps = [services.gaps, tasks.gaps, instances.gaps, chain.groups.gaps].concat();
    Ok(Resync { snapshot, kept })
}

fn services(
    c: &ClusterState,
    calls: &mut Calls,
) -> Result<Part<crate::domain::Service>, CloudError> {
    let mut part = Part::default();
    let listed = calls.call_pages("ListServices", pages(c.service_count(), LIST_PAGE, 1));
    if let Err(err) = listed {
        part.gaps.push(gap_or_fail(err, "services not read")?);
        return Ok(part);
    }
    for batch in c.services().chunks(DESCRIBE_SERVICES_BATCH) {
        match calls.call("DescribeServices") {
            Ok(()) => part.items.extend_from_slice(batch),
            Err(err) => {
                let what = format!("{} services not described", batch.len());
                part.gaps.push(gap_or_fail(err, &what)?);
            }
        }
    }
    Ok(part)
}

/// Both ListTasks, then DescribeTasks of the listed tasks `known` does not hold; returns
/// those described and the ARNs kept undescribed.
fn tasks(
    c: &ClusterState,
    calls: &mut Calls,
    known: &KnownTasks,
) -> Result<(Part<Task>, Vec<String>), CloudError> {
    let running = c
        .tasks()
        .filter(|t| t.desired_status == DesiredStatus::Running)
        .count();
    let stopped = c.task_count() - running;
    calls.call_pages("ListTasks", pages(running, LIST_PAGE, 1))?;
    calls.call_pages("ListTasks", pages(stopped, LIST_PAGE, 1))?;
    let (kept, described): (Vec<&Task>, Vec<&Task>) = c
        .tasks()
        .partition(|t| known.holds(&t.arn, t.desired_status));
    let part = describe(calls, &described)?;
    Ok((part, kept.into_iter().map(|t| t.arn.clone()).collect()))
}

/// DescribeTasks on `tasks` (100 a call), then the interface lookups of those it answered.
fn describe(calls: &mut Calls, tasks: &[&Task]) -> Result<Part<Task>, CloudError> {
    let mut gaps = Vec::new();
    let mut described: Vec<&Task> = Vec::new();
    for batch in tasks.chunks(DESCRIBE_BATCH) {
        match calls.call("DescribeTasks") {
            Ok(()) => described.extend_from_slice(batch),
            Err(err) => {
                let what = format!("{} tasks not described", batch.len());
                gaps.push(gap_or_fail(err, &what)?);
            }
        }
    }
    let mut part = describe_found(calls, &described);
    gaps.append(&mut part.gaps);
    part.gaps = gaps;
    Ok(part)
}

fn container_instances(
    c: &ClusterState,
    calls: &mut Calls,
) -> Result<Part<crate::domain::ContainerInstance>, CloudError> {
    let mut part = Part::default();
    let count = c.container_instance_count();
    if let Err(err) = calls.call_pages("ListContainerInstances", pages(count, LIST_PAGE, 1)) {
        part.gaps
            .push(gap_or_fail(err, "container instances not read")?);
        return Ok(part);
    }
    for batch in c.container_instances().chunks(DESCRIBE_BATCH) {
        match calls.call("DescribeContainerInstances") {
            Ok(()) => part.items.extend_from_slice(batch),
            Err(err) => {
                let what = format!("{} container instances not described", batch.len());
                part.gaps.push(gap_or_fail(err, &what)?);
            }
        }
    }
    Ok(part)
}

/// What the capacity chain found; `groups.gaps` holds every gap of the chain.
struct Chain {
    providers: Vec<CapacityProvider>,
    groups: Part<AutoScalingGroup>,
}

/// The group name in an Auto Scaling group ARN (a bare name as it is).
fn group_name(arn_or_name: &str) -> &str {
    arn_or_name
        .split_once(":autoScalingGroupName/")
        .map_or(arn_or_name, |(_, name)| name)
}

fn capacity(world: &World, calls: &mut Calls, c: &ClusterState) -> Chain {
    let mut groups = Part::default();
    let all = c.capacity_providers();
    let to_describe: Vec<&str> = all
        .iter()
        .map(|p| p.name.as_str())
        .filter(|n| !AWS_MANAGED_PROVIDERS.contains(n))
        .collect();
    let mut left_out: BTreeSet<&str> = BTreeSet::new();
    for batch in to_describe.chunks(PROVIDER_BATCH) {
        if let Err(err) = calls.call("DescribeCapacityProviders") {
            groups.gaps.push(format!(
                "{} capacity providers not described: {err}",
                batch.len()
            ));
            left_out.extend(batch.iter().copied());
        }
    }
    let providers: Vec<CapacityProvider> = all
        .iter()
        .filter(|p| !left_out.contains(p.name.as_str()))
        .cloned()
        .collect();
    // Distinct groups, in provider order, with the ARN the provider names.
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    for arn in providers
        .iter()
        .filter_map(|p| p.auto_scaling_group_arn.as_deref())
    {
        if !wanted.iter().any(|(n, _)| *n == group_name(arn)) {
            wanted.push((group_name(arn), arn));
        }
    }
    let mut described = Vec::new();
    let mut sorted: Vec<&str> = wanted.iter().map(|(n, _)| *n).collect();
    sorted.sort_unstable();
    let mut undescribed: BTreeSet<&str> = BTreeSet::new();
    for batch in sorted.chunks(NAME_BATCH) {
        if let Err(err) = calls.call("DescribeAutoScalingGroups") {
            groups.gaps.push(format!(
                "{} Auto Scaling groups not described: {err}",
                batch.len()
            ));
            undescribed.extend(batch.iter().copied());
        }
    }
    for (name, arn) in wanted {
        if undescribed.contains(name) {
            continue;
        }
        // The provider names a full ARN: it must be this very group.
        if let Some(group) = world.auto_scaling_group(name, true)
            && (!arn.contains(':') || group.arn == arn)
        {
            described.push(group);
        }
    }
    complete(calls, described, &mut groups);
    Chain { providers, groups }
}

/// As the adapter: the described groups' `$Latest`/`$Default` versions resolved by
/// DescribeLaunchTemplates and their instances' launches read by DescribeInstances; a failure
/// of either is a gap, and what it would have told is unknown.
fn complete(
    calls: &mut Calls,
    mut described: Vec<AutoScalingGroup>,
    part: &mut Part<AutoScalingGroup>,
) {
    let templates: BTreeSet<&str> = described
        .iter()
        .filter_map(|g| match &g.launch {
            GroupLaunch::LaunchTemplate {
                template_name,
                version,
                ..
            } if version.trim().parse::<u32>().is_err() && !template_name.is_empty() => {
                Some(template_name.as_str())
            }
            _ => None,
        })
        .collect();
    let templates: Vec<&str> = templates.into_iter().collect();
    let mut resolved = true;
    for batch in templates.chunks(FILTER_BATCH) {
        if let Err(err) = calls.call("DescribeLaunchTemplates") {
            part.gaps.push(format!(
                "launch template versions of {} templates not resolved: {err}",
                batch.len()
            ));
            resolved = false;
            break;
        }
    }
    let instances: BTreeSet<&str> = described
        .iter()
        .flat_map(|g| g.instances.iter().map(|i| i.instance_id.as_str()))
        .collect();
    let instances: Vec<&str> = instances.into_iter().collect();
    let mut launches_read = true;
    for batch in instances.chunks(FILTER_BATCH) {
        if let Err(err) = calls.call("DescribeInstances") {
            part.gaps.push(format!(
                "launch details of {} instances not read: {err}",
                batch.len()
            ));
            launches_read = false;
            break;
        }
    }
    for group in &mut described {
        let numbered = match &mut group.launch {
            GroupLaunch::LaunchTemplate {
                version,
                resolved_version,
                ..
            } => {
                let number = version.trim().parse::<u32>().ok();
                if number.is_none() && !resolved {
                    *resolved_version = None;
                }
                number
            }
            _ => None,
        };
        if !launches_read {
            for instance in &mut group.instances {
                // Auto Scaling reports the version the group names, a number or not.
                instance.launched_at = None;
                instance.launch_template_version = numbered;
            }
        }
    }
    part.items = described;
}

/// DescribeTasks on `arns` of `cluster` (ARNs or task ids), 100 a call, as the adapter makes
/// it: a batch whose call fails retryably is a gap, any other failure fails the read; unknown
/// ARNs are missing. No ARNs, no call (and so no answer about the cluster either).
pub(crate) fn describe_tasks(
    world: &World,
    calls: &mut Calls,
    cluster: &str,
    arns: &[String],
) -> Result<TaskReads, CloudError> {
    const OP: &str = "DescribeTasks";
    if arns.is_empty() {
        return Ok(TaskReads::default());
    }
    let Some(c) = world.cluster(cluster) else {
        calls.call(OP)?;
        return Err(CloudError::new(
            ErrorCategory::NotFound,
            OP,
            format!("ClusterNotFoundException: cluster {cluster} not found"),
        ));
    };
    let mut reads = TaskReads::default();
    let mut found: Vec<&Task> = Vec::new();
    for batch in arns.chunks(DESCRIBE_BATCH) {
        if let Err(err) = calls.call(OP) {
            let what = format!("{} tasks not described", batch.len());
            reads.gaps.push(gap_or_fail(err, &what)?);
            continue;
        }
        for arn in batch {
            // ECS takes an ARN or a bare id, and matches the id within the cluster.
            let id = arn.rsplit('/').next().unwrap_or(arn);
            match c.task_by_id(id) {
                Some(task) => found.push(task),
                None => reads.missing.push(arn.clone()),
            }
        }
    }
    let part = describe_found(calls, &found);
    reads.tasks = part.items;
    reads.gaps.extend(part.gaps);
    Ok(reads)
}

/// DescribeNetworkInterfaces for the tasks DescribeTasks answered that need their security
/// groups (200 interfaces a call), and the tasks as the adapter reports them.
fn describe_found(calls: &mut Calls, found: &[&Task]) -> Part<Task> {
    let mut part = Part::default();
    let lookups: Vec<usize> = (0..found.len())
        .filter(|&i| needs_security_groups(found[i]))
        .collect();
    let mut unread: BTreeSet<usize> = BTreeSet::new();
    for batch in lookups.chunks(FILTER_BATCH) {
        if let Err(err) = calls.call("DescribeNetworkInterfaces") {
            part.gaps.push(format!(
                "security groups of {} network interfaces not read: {err}",
                batch.len()
            ));
            unread.extend(batch.iter().copied());
        }
    }
    part.items = found
        .iter()
        .enumerate()
        .map(|(i, t)| as_described((*t).clone(), !unread.contains(&i)))
        .collect();
    part
}

/// The capacity chain of one group by name, as the adapter reads it: a failed
/// DescribeAutoScalingGroups is an error; an unknown group is `None`, with no further call.
pub(crate) fn observe_group(
    world: &World,
    calls: &mut Calls,
    name: &str,
) -> Result<GroupRead, CloudError> {
    calls.call("DescribeAutoScalingGroups")?;
    let described: Vec<AutoScalingGroup> =
        world.auto_scaling_group(name, true).into_iter().collect();
    let mut part = Part::default();
    complete(calls, described, &mut part);
    Ok(GroupRead {
        group: part.items.pop(),
        gaps: part.gaps,
    })
}
