//! Observation: one cluster's snapshot from the ECS read APIs, paged and batched at their limits.
//!
//! Cost for a cluster with N tasks, S services and I container instances: 1 DescribeClusters,
//! ceil(N/100) ListTasks per desired status (RUNNING, then STOPPED), ceil(N/100) DescribeTasks
//! (in a list-and-diff resync, ceil(D/100) for the D listed tasks the caller does not know),
//! ceil(S/100) ListServices (at most 100 a page) + ceil(S/10) DescribeServices, and
//! ceil(I/100) ListContainerInstances + ceil(I/100) DescribeContainerInstances; plus, for the E
//! standalone awsvpc tasks whose interface ECS has created (not STOPPED), ceil(E/200) EC2
//! DescribeNetworkInterfaces for their security groups (none when E is 0; service tasks are
//! never looked up). Services, tasks and container instances are read concurrently, and so is
//! the capacity chain (capacity providers, their Auto Scaling groups, launch template versions
//! and instances: see [`capacity`], whose cost and failures are its own; it never fails the
//! snapshot). DescribeClusters reports the cluster's `capacityProviders` without any `include`
//! (that parameter only adds attachments, settings, configurations, statistics and tags).
//!
//! Failures: a missing cluster is `NotFound`; DescribeClusters and ListTasks failures fail the
//! snapshot. Any other part that fails with a retryable category (after the SDK's own retries)
//! becomes a `gaps` entry, as do `failures[]` entries other than MISSING and tasks this adapter
//! cannot read. A task that vanished between ListTasks and DescribeTasks (MISSING) is simply
//! not in the snapshot. A failed DescribeNetworkInterfaces never fails the snapshot: it is a
//! gap, and those tasks keep empty security groups (as do tasks whose interface is gone).
//!
//! Pacing: each call (each page of a list) first takes a token of the process's budget
//! ([`Pacer`]); the lists are paged by hand for that reason.

use std::collections::BTreeSet;
use std::time::SystemTime;

use aws_sdk_ecs::Client;
use aws_sdk_ecs::types::{DesiredStatus as EcsDesiredStatus, Failure, TaskField};

use super::capacity::{self, Clients};
use super::pacing::Pacer;
use super::{convert, errors, network};
use crate::cloud::{CloudError, ErrorCategory, KnownTasks, Resync};
use crate::domain::{ClusterSnapshot, ContainerInstance, DesiredStatus, Service, Task, TaskStatus};

/// ListTasks and ListContainerInstances return at most 100 ARNs a page.
const LIST_PAGE: i32 = 100;
/// ListServices returns at most 100 ARNs a page.
const LIST_SERVICES_PAGE: i32 = 100;
/// DescribeTasks and DescribeContainerInstances take at most 100 ARNs.
const DESCRIBE_BATCH: usize = 100;
/// DescribeServices takes at most 10 names.
const DESCRIBE_SERVICES_BATCH: usize = 10;
/// The `failures[]` reason for a resource ECS does not (any longer) know.
const MISSING: &str = "MISSING";

/// What one part of the observation found, and what it could not read.
pub(super) struct Part<T> {
    pub items: Vec<T>,
    pub gaps: Vec<String>,
}

impl<T> Default for Part<T> {
    fn default() -> Self {
        Part {
            items: Vec::new(),
            gaps: Vec::new(),
        }
    }
}

/// A failed call in a part that may be incomplete: retryable errors become a gap, the rest
/// fail the snapshot.
fn gap_or_fail(err: CloudError, what: &str) -> Result<String, CloudError> {
    if err.category.is_retryable() {
        Ok(format!("{what}: {err}"))
    } else {
        Err(err)
    }
}

/// Gaps for `failures[]` entries, except MISSING ones (gone between list and describe).
fn failure_gaps(operation: &str, failures: &[Failure]) -> Vec<String> {
    failures
        .iter()
        .filter(|f| f.reason() != Some(MISSING))
        .map(|f| format!("{operation}: {}", convert::failure(f)))
        .collect()
}

pub(super) async fn observe_cluster(
    clients: &Clients<'_>,
    cluster: &str,
    known: &KnownTasks,
) -> Result<Resync, CloudError> {
    let (ecs, ec2, pacer) = (clients.ecs, clients.ec2, clients.pacer);
    let observed_at = SystemTime::now();
    let (cluster_arn, providers) = describe_cluster(ecs, pacer, cluster).await?;
    let (services, tasks, instances, chain) = tokio::join!(
        services(ecs, pacer, &cluster_arn),
        tasks(ecs, ec2, pacer, &cluster_arn, known),
        container_instances(ecs, pacer, &cluster_arn),
        capacity::observe(clients, &providers),
    );
    let (services, (tasks, kept), instances) = (services?, tasks?, instances?);
    let name = cluster_arn
        .rsplit('/')
        .next()
        .unwrap_or(cluster)
        .to_string();
    let mut snapshot = ClusterSnapshot::empty(&name, &cluster_arn, observed_at);
    snapshot.services = services.items;
    snapshot.tasks = tasks.items;
    snapshot.container_instances = instances.items;
    snapshot.capacity_providers = chain.providers;
    snapshot.auto_scaling_groups = chain.groups;
    snapshot.gaps = [services.gaps, tasks.gaps, instances.gaps, chain.gaps].concat();
    Ok(Resync { snapshot, kept })
}

/// The cluster's ARN and capacity provider names, or `NotFound` if it does not exist or is no
/// longer ACTIVE.
async fn describe_cluster(
    ecs: &Client,
    pacer: &Pacer,
    cluster: &str,
) -> Result<(String, Vec<String>), CloudError> {
    const OP: &str = "DescribeClusters";
    let send = Box::pin(ecs.describe_clusters().clusters(cluster).send());
    let output = pacer
        .call(OP, async {
            send.await.map_err(|e| errors::from_sdk(OP, e))
        })
        .await?;
    let not_found =
        || CloudError::new(ErrorCategory::NotFound, OP, format!("no cluster {cluster}"));
    if let Some(failure) = output.failures().first() {
        return Err(if failure.reason() == Some(MISSING) {
            not_found()
        } else {
            CloudError::new(ErrorCategory::Transient, OP, convert::failure(failure))
        });
    }
    let found = output.clusters().first().ok_or_else(not_found)?;
    match found.status() {
        Some("INACTIVE") => Err(CloudError::new(
            ErrorCategory::NotFound,
            OP,
            format!("cluster {cluster} is INACTIVE (deleted)"),
        )),
        _ => {
            let arn = found.cluster_arn().map(str::to_string).ok_or_else(|| {
                CloudError::new(ErrorCategory::Transient, OP, "cluster without ARN")
            })?;
            Ok((arn, found.capacity_providers().to_vec()))
        }
    }
}

async fn services(
    ecs: &Client,
    pacer: &Pacer,
    cluster_arn: &str,
) -> Result<Part<Service>, CloudError> {
    const LIST: &str = "ListServices";
    const DESCRIBE: &str = "DescribeServices";
    let mut part = Part::default();
    let listed = pacer
        .pages(LIST, |token| async move {
            let page = ecs
                .list_services()
                .cluster(cluster_arn)
                .max_results(LIST_SERVICES_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| errors::from_sdk(LIST, e))?;
            Ok((
                page.service_arns().to_vec(),
                page.next_token().map(str::to_string),
            ))
        })
        .await;
    let arns = match listed {
        Ok(arns) => arns,
        Err(err) => {
            let gap = gap_or_fail(err, "services not read")?;
            part.gaps.push(gap);
            return Ok(part);
        }
    };
    for batch in arns.chunks(DESCRIBE_SERVICES_BATCH) {
        let send = Box::pin(
            ecs.describe_services()
                .cluster(cluster_arn)
                .set_services(Some(batch.to_vec()))
                .send(),
        );
        match pacer
            .call(DESCRIBE, async {
                send.await.map_err(|e| errors::from_sdk(DESCRIBE, e))
            })
            .await
        {
            Ok(output) => {
                part.gaps
                    .extend(failure_gaps("DescribeServices", output.failures()));
                for s in output.services() {
                    match convert::service(s) {
                        Ok(service) => part.items.push(service),
                        Err(why) => part.gaps.push(why),
                    }
                }
            }
            Err(err) => {
                let what = format!("{} services not described", batch.len());
                part.gaps.push(gap_or_fail(err, &what)?);
            }
        }
    }
    Ok(part)
}

async fn list_tasks(
    ecs: &Client,
    pacer: &Pacer,
    cluster_arn: &str,
    desired: EcsDesiredStatus,
) -> Result<Vec<String>, CloudError> {
    const OP: &str = "ListTasks";
    pacer
        .pages(OP, |token| {
            let desired = desired.clone();
            async move {
                let page = ecs
                    .list_tasks()
                    .cluster(cluster_arn)
                    .desired_status(desired)
                    .max_results(LIST_PAGE)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| errors::from_sdk(OP, e))?;
                Ok((
                    page.task_arns().to_vec(),
                    page.next_token().map(str::to_string),
                ))
            }
        })
        .await
}

/// Both ListTasks, then DescribeTasks of the listed tasks `known` does not hold; returns
/// those described and the ARNs kept undescribed.
async fn tasks(
    ecs: &Client,
    ec2: &aws_sdk_ec2::Client,
    pacer: &Pacer,
    cluster_arn: &str,
    known: &KnownTasks,
) -> Result<(Part<Task>, Vec<String>), CloudError> {
    let running = list_tasks(ecs, pacer, cluster_arn, EcsDesiredStatus::Running).await?;
    let stopped = list_tasks(ecs, pacer, cluster_arn, EcsDesiredStatus::Stopped).await?;
    let (arns, kept) = diff_listed(running, stopped, known);
    let described = describe(ecs, ec2, pacer, cluster_arn, &arns).await?;
    Ok((described.part, kept))
}

/// The listed ARNs to describe and those to keep. A task stopped between the two lists shows
/// up in both: it counts once, as desired STOPPED.
fn diff_listed(
    running: Vec<String>,
    stopped: Vec<String>,
    known: &KnownTasks,
) -> (Vec<String>, Vec<String>) {
    let stopping: BTreeSet<&str> = stopped.iter().map(String::as_str).collect();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let listed: Vec<(String, DesiredStatus)> = running
        .iter()
        .map(|arn| {
            let desired = if stopping.contains(arn.as_str()) {
                DesiredStatus::Stopped
            } else {
                DesiredStatus::Running
            };
            (arn.clone(), desired)
        })
        .chain(
            stopped
                .iter()
                .map(|arn| (arn.clone(), DesiredStatus::Stopped)),
        )
        .filter(|(arn, _)| seen.insert(arn.clone()))
        .collect();
    let (kept, described): (Vec<_>, Vec<_>) = listed
        .into_iter()
        .partition(|(arn, desired)| known.holds(arn, *desired));
    (
        described.into_iter().map(|(arn, _)| arn).collect(),
        kept.into_iter().map(|(arn, _)| arn).collect(),
    )
}

/// Tasks as DescribeTasks reports them, and the ARNs ECS no longer knows.
pub(super) struct Described {
    pub part: Part<Task>,
    pub missing: Vec<String>,
}

/// DescribeTasks on `arns` (100 a call), then the security groups of the standalone awsvpc
/// tasks from their interfaces. A batch that fails retryably is a gap; any other failure fails
/// the whole read.
pub(super) async fn describe(
    ecs: &Client,
    ec2: &aws_sdk_ec2::Client,
    pacer: &Pacer,
    cluster: &str,
    arns: &[String],
) -> Result<Described, CloudError> {
    const DESCRIBE: &str = "DescribeTasks";
    let mut part = Part::default();
    let mut missing = Vec::new();
    // (index in part.items, interface id) of the tasks whose security groups to look up.
    let mut lookups: Vec<(usize, String)> = Vec::new();
    for batch in arns.chunks(DESCRIBE_BATCH) {
        let send = Box::pin(
            ecs.describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(batch.to_vec()))
                .include(TaskField::Tags)
                .send(),
        );
        match pacer
            .call(DESCRIBE, async {
                send.await.map_err(|e| errors::from_sdk(DESCRIBE, e))
            })
            .await
        {
            Ok(output) => {
                part.gaps
                    .extend(failure_gaps("DescribeTasks", output.failures()));
                missing.extend(
                    output
                        .failures()
                        .iter()
                        .filter(|f| f.reason() == Some(MISSING))
                        .filter_map(|f| f.arn().map(str::to_string)),
                );
                let mut interner = crate::compact::Interner::default();
                for t in output.tasks() {
                    match convert::task(t, cluster, &mut interner) {
                        Ok(task) => {
                            if let Some(eni) = needs_security_groups(&task, t) {
                                lookups.push((part.items.len(), eni));
                            }
                            part.items.push(task);
                        }
                        Err(why) => part.gaps.push(why),
                    }
                }
            }
            Err(err) => {
                let what = format!("{} tasks not described", batch.len());
                part.gaps.push(gap_or_fail(err, &what)?);
            }
        }
    }
    if !lookups.is_empty() {
        let found =
            network::security_groups(ec2, pacer, lookups.iter().map(|(_, eni)| eni.as_str())).await;
        for (index, eni) in &lookups {
            if let (Some(groups), Some(network)) = (
                found.by_interface.get(eni),
                part.items[*index].network.as_mut(),
            ) {
                network.security_groups = groups.clone();
            }
        }
        part.gaps.extend(found.gaps);
    }
    Ok(Described { part, missing })
}

/// The interface whose security groups `task` needs, if any: only a standalone task can be
/// re-run by the controller (a service's scheduler replaces its own tasks), only an awsvpc
/// task has an interface, and a STOPPED task's interface has been deleted.
fn needs_security_groups(task: &Task, sdk_task: &aws_sdk_ecs::types::Task) -> Option<String> {
    let standalone = task.service_name().is_none();
    let has_network = task.network.is_some();
    let live = task.last_status != TaskStatus::Stopped;
    if standalone && has_network && live {
        convert::eni_id(sdk_task)
    } else {
        None
    }
}

async fn container_instances(
    ecs: &Client,
    pacer: &Pacer,
    cluster_arn: &str,
) -> Result<Part<ContainerInstance>, CloudError> {
    const LIST: &str = "ListContainerInstances";
    const DESCRIBE: &str = "DescribeContainerInstances";
    let mut part = Part::default();
    let listed = pacer
        .pages(LIST, |token| async move {
            let page = ecs
                .list_container_instances()
                .cluster(cluster_arn)
                .max_results(LIST_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| errors::from_sdk(LIST, e))?;
            Ok((
                page.container_instance_arns().to_vec(),
                page.next_token().map(str::to_string),
            ))
        })
        .await;
    let arns = match listed {
        Ok(arns) => arns,
        Err(err) => {
            part.gaps
                .push(gap_or_fail(err, "container instances not read")?);
            return Ok(part);
        }
    };
    for batch in arns.chunks(DESCRIBE_BATCH) {
        let send = Box::pin(
            ecs.describe_container_instances()
                .cluster(cluster_arn)
                .set_container_instances(Some(batch.to_vec()))
                .send(),
        );
        match pacer
            .call(DESCRIBE, async {
                send.await.map_err(|e| errors::from_sdk(DESCRIBE, e))
            })
            .await
        {
            Ok(output) => {
                part.gaps.extend(failure_gaps(
                    "DescribeContainerInstances",
                    output.failures(),
                ));
                for c in output.container_instances() {
                    match convert::container_instance(c) {
                        Ok(instance) => part.items.push(instance),
                        Err(why) => part.gaps.push(why),
                    }
                }
            }
            Err(err) => {
                let what = format!("{} container instances not described", batch.len());
                part.gaps.push(gap_or_fail(err, &what)?);
            }
        }
    }
    Ok(part)
}
