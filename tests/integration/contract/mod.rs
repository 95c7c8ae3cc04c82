//! The `Cloud` contract for the cluster reads, the targeted reads and every mutating call: one
//! set of test bodies, each a generic async fn over [`Account`], run once on the simulated
//! account (`sim.rs`) and once on moto through the AWS adapter (`moto.rs`). They pin what
//! makes the simulator's scale figures trustworthy: the same calls per operation (page sizes
//! and batches), the same failures becoming the same gaps (worded the same up to the error
//! code), the same error categories and operations. The root-cause reads have their own
//! contract in `contract_reads`.
//!
//! Faults are injected the same way on both: every call of an operation fails with a category
//! (`Account::fail`): on moto, the launcher's `/_harness/fault` answers the error code AWS
//! gives for it (the adapter then runs with one attempt, so a throttle is not retried); on the
//! simulator, `SimAccount::fail_always`.
//!
//! Drifts this suite found in the simulator, and fixed there (the adapter is the truth):
//! - ListServices paged 10 ARNs at a time (AWS: 100).
//! - DescribeAutoScalingGroups took 50 names a call (AWS: 100).
//! - A failed DescribeTasks failed the whole snapshot; a retryable one is a gap
//!   (`N tasks not described: ...`) on AWS. The same for a failed DescribeNetworkInterfaces,
//!   which is always a gap on AWS (`security groups of N network interfaces not read: ...`).
//! - A denied (non-retryable) ListServices, DescribeServices, ListContainerInstances or
//!   DescribeContainerInstances was a gap; on AWS it fails the snapshot. Gaps were worded
//!   `services: ...`, `container instances: ...`, `auto scaling groups: ...`,
//!   `launch templates: ...`, `capacity providers: ...`; they now read as the adapter's.
//! - When tasks failed the snapshot, the simulator skipped the other parts' calls; the adapter
//!   reads the parts concurrently and makes them all.
//! - DescribeLaunchTemplates was called for groups pinned to a numbered version and for mixed
//!   instances policies (AWS: only for `$Latest`/`$Default` on a direct template), once for
//!   any number of templates (AWS: 200 a call).
//! - DescribeInstances (the instances' launch times) was never counted, and could not fail.
//! - DescribeCapacityProviders was called for FARGATE-only clusters (AWS: not described), once
//!   for any number of providers (AWS: 100 a call); a failure dropped FARGATE providers too.
//! - DescribeTasks matched full ARNs only (ECS also takes a bare task id), and with no ARNs
//!   made a call (AWS: none).
//! - A STOPPED standalone awsvpc task was looked up in DescribeNetworkInterfaces (the adapter
//!   does not look it up: its interface is gone).
//! - The writes ECS or Auto Scaling refuse with a broad code (StopTask of an unknown task,
//!   SetDesiredCapacity/UpdateAutoScalingGroup/CreateOrUpdateTags of an unknown group or out of
//!   bounds, TerminateInstanceInAutoScalingGroup of an unknown instance) cost one call on the
//!   simulator; the adapter makes one confirming read (DescribeTasks, DescribeAutoScalingGroups,
//!   DescribeAutoScalingInstances), so two. So does DescribeScalingActivities when it answers
//!   no activity.
//! - CreateOrUpdateTags with no tags was a call refused as invalid (the adapter makes none).
//! - A missing cluster in observe_cluster read `ClusterNotFoundException: ...`; the adapter
//!   says `no cluster NAME` (DescribeClusters answers MISSING in `failures[]`).
//!
//! One drift is kept, for the lead to decide: a STOPPED standalone awsvpc task still reports
//! its security groups on the simulator; through the adapter it has none (EC2 deleted its
//! interface, and DescribeTasks never names security groups). The scenario
//! `scenarios::a_restart_between_stop_and_run_finishes_the_replacement_exactly_once` replaces
//! such a task after a restart from them; on AWS that replacement would be held
//! `cannotReplicate`, since nothing that survives the process records the security groups.
//!
//! Known limits (the simulator only, or neither): the simulator does not model task
//! definitions, so a RunTask of an unknown one starts a task there (ECS: `ClientException`,
//! `Invalid`); moto's RunTask cannot be refused for
//! capacity, and its DescribeTasks never answers a `failures[]` entry other than MISSING; the
//! security group lookups of awsvpc tasks are covered by `aws_adapter` and `sim_account`, not
//! here; the SDK's own retries (standard mode) are not modelled by the simulator, which answers
//! a fault at once (the call counts are the same: the adapter counts operations, not attempts).

mod moto;
mod sim;

use std::collections::BTreeMap;

use ecs_reconciler::cloud::{Cloud, CloudError, ErrorCategory, KnownTasks};
use ecs_reconciler::domain::{
    Capacity, DesiredStatus, GroupLaunch, RunTaskRequest, Tags, TaskOverrides,
};

/// One Auto Scaling group of a seeded cluster, behind its own capacity provider `cp-NAME`.
#[derive(Debug, Clone, Copy)]
pub struct GroupShape {
    pub name: &'static str,
    /// `$Latest` or a number.
    pub version: &'static str,
    pub instances: u32,
}

/// What [`Account::seed`] makes: a cluster with services (desired count 0), running standalone
/// FARGATE tasks of task definition `web`, container instances, and groups.
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub services: usize,
    pub tasks: usize,
    /// Running standalone FARGATE tasks of the awsvpc task definition `batch`, in one subnet
    /// with one security group (after the `tasks`).
    pub awsvpc_tasks: usize,
    pub container_instances: usize,
    pub groups: Vec<GroupShape>,
}

/// What was seeded.
#[derive(Debug, Clone, Default)]
pub struct Seeded {
    /// The `tasks`, then the `awsvpc_tasks`.
    pub task_arns: Vec<String>,
    /// The security group of the awsvpc tasks.
    pub security_group: String,
    pub container_instance_arns: Vec<String>,
    /// Group name → (launch template id, instance ids).
    pub groups: BTreeMap<String, (String, Vec<String>)>,
}

pub trait Account {
    type C: Cloud;
    fn cloud(&self) -> &Self::C;
    /// Creates cluster `cluster` shaped as `shape`, then forgets the calls made so far.
    async fn seed(&self, cluster: &str, shape: Shape) -> Seeded;
    /// From now on, every call of `operation` fails with `category`.
    async fn fail(&self, operation: &str, category: ErrorCategory);
    /// Calls answer again.
    async fn clear_faults(&self);
    /// Lets what the account does by itself happen (a stopped task going through its way
    /// down): a minute of the simulator's clock; moto changes at once.
    async fn settle(&self);
    /// The calls made since the last [`Account::reset_calls`] (or the seed), per operation.
    fn calls(&self) -> BTreeMap<String, u64>;
    fn reset_calls(&self);
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(op, n)| (op.to_string(), *n)).collect()
}

/// A gap up to its error code: `3 tasks not described: DescribeTasks failed (throttled):
/// ThrottlingException` (the message after the code is the service's own words).
fn shape(gap: &str) -> String {
    let Some((head, tail)) = gap.split_once("): ") else {
        return gap.to_string();
    };
    let code = tail.split(':').next().unwrap_or(tail);
    format!("{head}): {code}")
}

fn shapes(gaps: &[String]) -> Vec<String> {
    gaps.iter().map(|g| shape(g)).collect()
}

fn assert_error(err: &CloudError, category: ErrorCategory, operation: &str) {
    assert_eq!(err.category, category, "{err}");
    assert_eq!(err.operation, operation, "{err}");
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn fargate_request() -> RunTaskRequest {
    RunTaskRequest {
        task_definition: "web".into(),
        overrides: TaskOverrides::default(),
        tags: Tags::new(),
        group: None,
        started_by: None,
        capacity: Capacity::LaunchType("FARGATE".into()),
        network: None,
        client_token: String::new(),
    }
}

/// An ARN of the cluster's tasks (or container instances), made from a seeded one, that ECS
/// does not know.
fn unknown_task_arn(known: &str) -> String {
    let (prefix, _) = known.rsplit_once('/').expect("a task ARN");
    format!("{prefix}/0123456789abcdef0123456789abcdef")
}

const LATEST: GroupShape = GroupShape {
    name: "g-latest",
    version: "$Latest",
    instances: 2,
};
const PINNED: GroupShape = GroupShape {
    name: "g-pinned",
    version: "1",
    instances: 1,
};

// ---- list_clusters ----

pub async fn list_clusters_is_one_page(a: impl Account) {
    a.seed("alpha", Shape::default()).await;
    a.seed("beta", Shape::default()).await;
    let mut names = a.cloud().list_clusters().await.unwrap();
    names.sort();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(a.calls(), counts(&[("ListClusters", 1)]));

    a.fail("ListClusters", ErrorCategory::Throttled).await;
    let err = a.cloud().list_clusters().await.unwrap_err();
    assert_error(&err, ErrorCategory::Throttled, "ListClusters");
}

// ---- observe_cluster ----

pub async fn observe_costs_one_call_per_page_and_batch(a: impl Account) {
    let shape = Shape {
        services: 12,
        tasks: 105,
        container_instances: 3,
        ..Shape::default()
    };
    a.seed("c", shape).await;
    let snapshot = a.cloud().observe_cluster("c").await.unwrap();
    assert!(snapshot.gaps.is_empty(), "{:?}", snapshot.gaps);
    assert_eq!(snapshot.services.len(), 12);
    assert_eq!(snapshot.tasks.len(), 105);
    assert_eq!(snapshot.container_instances.len(), 3);
    assert_eq!(
        a.calls(),
        counts(&[
            ("DescribeClusters", 1),
            // 100 ARNs a page, then 10 services a DescribeServices.
            ("ListServices", 1),
            ("DescribeServices", 2),
            // Two pages of desired RUNNING, one (empty) of desired STOPPED.
            ("ListTasks", 3),
            ("DescribeTasks", 2),
            ("ListContainerInstances", 1),
            ("DescribeContainerInstances", 1),
        ])
    );
}

/// Each part that fails retryably is a gap worded as the adapter words it; denied, it fails
/// the snapshot. DescribeClusters and ListTasks fail it either way.
pub async fn failed_parts_are_gaps_when_retryable_and_fail_otherwise(a: impl Account) {
    let shape = Shape {
        services: 12,
        tasks: 3,
        container_instances: 2,
        ..Shape::default()
    };
    a.seed("c", shape).await;
    let cases: [(&str, &[&str]); 5] = [
        ("ListServices", &["services not read"]),
        (
            "DescribeServices",
            &["10 services not described", "2 services not described"],
        ),
        ("DescribeTasks", &["3 tasks not described"]),
        ("ListContainerInstances", &["container instances not read"]),
        (
            "DescribeContainerInstances",
            &["2 container instances not described"],
        ),
    ];
    for (op, what) in cases {
        a.clear_faults().await;
        a.fail(op, ErrorCategory::Throttled).await;
        let snapshot = a.cloud().observe_cluster("c").await.unwrap();
        let expected: Vec<String> = what
            .iter()
            .map(|w| format!("{w}: {op} failed (throttled): ThrottlingException"))
            .collect();
        assert_eq!(shapes(&snapshot.gaps), expected, "{op}");

        a.fail(op, ErrorCategory::Denied).await;
        let err = a.cloud().observe_cluster("c").await.unwrap_err();
        assert_error(&err, ErrorCategory::Denied, op);
    }
    // A throttled DescribeTasks leaves the other parts whole.
    a.clear_faults().await;
    a.fail("DescribeTasks", ErrorCategory::Throttled).await;
    let snapshot = a.cloud().observe_cluster("c").await.unwrap();
    assert!(snapshot.tasks.is_empty());
    assert_eq!(snapshot.services.len(), 12);
    assert_eq!(snapshot.container_instances.len(), 2);

    for op in ["DescribeClusters", "ListTasks"] {
        a.clear_faults().await;
        a.fail(op, ErrorCategory::Throttled).await;
        let err = a.cloud().observe_cluster("c").await.unwrap_err();
        assert_error(&err, ErrorCategory::Throttled, op);
    }
}

/// Every part is read even when one fails the snapshot (the adapter reads them concurrently).
pub async fn a_failed_snapshot_still_made_every_parts_calls(a: impl Account) {
    let shape = Shape {
        services: 1,
        tasks: 1,
        container_instances: 1,
        ..Shape::default()
    };
    a.seed("c", shape).await;
    a.fail("ListTasks", ErrorCategory::Denied).await;
    a.cloud().observe_cluster("c").await.unwrap_err();
    assert_eq!(
        a.calls(),
        counts(&[
            ("DescribeClusters", 1),
            ("ListServices", 1),
            ("DescribeServices", 1),
            ("ListTasks", 1),
            ("ListContainerInstances", 1),
            ("DescribeContainerInstances", 1),
        ])
    );
}

pub async fn a_missing_cluster_is_not_found_everywhere(a: impl Account) {
    let seeded = a
        .seed(
            "real",
            Shape {
                tasks: 1,
                container_instances: 1,
                ..Shape::default()
            },
        )
        .await;
    let cloud = a.cloud();
    let err = cloud.observe_cluster("ghost").await.unwrap_err();
    assert_error(&err, ErrorCategory::NotFound, "DescribeClusters");
    assert_eq!(err.message, "no cluster ghost");
    let task = &seeded.task_arns[0];
    let err = cloud
        .describe_tasks("ghost", std::slice::from_ref(task))
        .await
        .unwrap_err();
    assert_error(&err, ErrorCategory::NotFound, "DescribeTasks");
    let err = cloud.stop_task("ghost", task, "x").await.unwrap_err();
    assert_error(&err, ErrorCategory::NotFound, "StopTask");
    let err = cloud
        .run_task("ghost", &fargate_request())
        .await
        .unwrap_err();
    assert_error(&err, ErrorCategory::NotFound, "RunTask");
    let instance = &seeded.container_instance_arns[0];
    let err = cloud
        .drain_container_instance("ghost", instance)
        .await
        .unwrap_err();
    assert_error(
        &err,
        ErrorCategory::NotFound,
        "UpdateContainerInstancesState",
    );
    // One call each, no confirming read: ECS names the cluster it does not know.
    assert_eq!(
        a.calls(),
        counts(&[
            ("DescribeClusters", 1),
            ("DescribeTasks", 1),
            ("StopTask", 1),
            ("RunTask", 1),
            ("UpdateContainerInstancesState", 1),
        ])
    );
    // No ARNs, no call: nothing is said about the cluster.
    a.reset_calls();
    let reads = cloud.describe_tasks("ghost", &[]).await.unwrap();
    assert_eq!(reads, Default::default());
    assert!(a.calls().is_empty(), "{:?}", a.calls());
}

/// The security groups of standalone awsvpc tasks come from EC2, 200 interfaces a call; that
/// lookup failing, even denied, is a gap and the tasks keep none. A STOPPED task is not looked
/// up (what it then reports differs: see the module doc's last drift).
pub async fn security_groups_are_one_lookup_and_a_gap_when_it_fails(a: impl Account) {
    let seeded = a
        .seed(
            "net",
            Shape {
                tasks: 1,
                awsvpc_tasks: 2,
                ..Shape::default()
            },
        )
        .await;
    let awsvpc = &seeded.task_arns[1..];
    let snapshot = a.cloud().observe_cluster("net").await.unwrap();
    assert!(snapshot.gaps.is_empty(), "{:?}", snapshot.gaps);
    for task in snapshot.tasks.iter().filter(|t| awsvpc.contains(&t.arn)) {
        let network = task.network.as_ref().expect("awsvpc");
        assert_eq!(network.security_groups, [seeded.security_group.as_str()]);
    }
    assert_eq!(a.calls()["DescribeNetworkInterfaces"], 1, "{:?}", a.calls());

    a.reset_calls();
    let reads = a.cloud().describe_tasks("net", awsvpc).await.unwrap();
    assert_eq!(reads.tasks.len(), 2);
    assert_eq!(
        a.calls(),
        counts(&[("DescribeTasks", 1), ("DescribeNetworkInterfaces", 1)])
    );

    a.fail("DescribeNetworkInterfaces", ErrorCategory::Denied)
        .await;
    let expected = ["security groups of 2 network interfaces not read: \
                     DescribeNetworkInterfaces failed (denied): AccessDeniedException"];
    let snapshot = a.cloud().observe_cluster("net").await.unwrap();
    assert_eq!(shapes(&snapshot.gaps), expected);
    assert_eq!(snapshot.tasks.len(), 3);
    let reads = a.cloud().describe_tasks("net", awsvpc).await.unwrap();
    assert_eq!(shapes(&reads.gaps), expected);
    for task in snapshot.tasks.iter().chain(&reads.tasks) {
        let groups = task.network.as_ref().map(|n| n.security_groups.len());
        assert!(matches!(groups, None | Some(0)), "{task:?}");
    }

    // Stopped, a task's interface is not looked up (it is gone).
    a.clear_faults().await;
    a.cloud()
        .stop_task("net", &awsvpc[0], "done")
        .await
        .unwrap();
    a.settle().await;
    a.reset_calls();
    let reads = a.cloud().describe_tasks("net", &awsvpc[..1]).await.unwrap();
    assert_eq!(reads.tasks.len(), 1);
    assert!(reads.gaps.is_empty(), "{:?}", reads.gaps);
    assert_eq!(a.calls(), counts(&[("DescribeTasks", 1)]));
}

/// ECS takes a cluster's ARN wherever it takes its name.
pub async fn a_cluster_arn_names_the_cluster(a: impl Account) {
    let seeded = a
        .seed(
            "by-arn",
            Shape {
                tasks: 1,
                ..Shape::default()
            },
        )
        .await;
    let snapshot = a.cloud().observe_cluster("by-arn").await.unwrap();
    let arn = snapshot.cluster_arn.clone();
    assert!(arn.ends_with(":cluster/by-arn"), "{arn}");
    let by_arn = a.cloud().observe_cluster(&arn).await.unwrap();
    assert_eq!(by_arn.cluster_name, "by-arn");
    assert_eq!(by_arn.tasks.len(), 1);
    let reads = a
        .cloud()
        .describe_tasks(&arn, &seeded.task_arns)
        .await
        .unwrap();
    assert_eq!(reads.tasks.len(), 1, "{reads:?}");
    a.cloud()
        .stop_task(&arn, &seeded.task_arns[0], "by ARN")
        .await
        .unwrap();
    a.cloud().run_task(&arn, &fargate_request()).await.unwrap();
}

// ---- describe_tasks ----

pub async fn describe_tasks_reads_a_hundred_at_a_time(a: impl Account) {
    let seeded = a
        .seed(
            "c",
            Shape {
                tasks: 105,
                ..Shape::default()
            },
        )
        .await;
    let unknown = unknown_task_arn(&seeded.task_arns[0]);
    let bare_id = seeded.task_arns[0].rsplit('/').next().unwrap().to_string();
    let mut arns = seeded.task_arns.clone();
    arns.push(unknown.clone());
    arns.push(bare_id);
    let reads = a.cloud().describe_tasks("c", &arns).await.unwrap();
    assert_eq!(
        reads.tasks.len(),
        106,
        "105 by ARN, one of them again by id"
    );
    assert_eq!(reads.tasks[105].arn, seeded.task_arns[0]);
    assert_eq!(reads.missing, [unknown]);
    assert!(reads.gaps.is_empty(), "{:?}", reads.gaps);
    assert_eq!(a.calls(), counts(&[("DescribeTasks", 2)]));

    a.fail("DescribeTasks", ErrorCategory::Throttled).await;
    let reads = a.cloud().describe_tasks("c", &arns).await.unwrap();
    assert!(reads.tasks.is_empty() && reads.missing.is_empty());
    assert_eq!(
        shapes(&reads.gaps),
        [
            "100 tasks not described: DescribeTasks failed (throttled): ThrottlingException",
            "7 tasks not described: DescribeTasks failed (throttled): ThrottlingException",
        ]
    );
    a.fail("DescribeTasks", ErrorCategory::Denied).await;
    let err = a.cloud().describe_tasks("c", &arns).await.unwrap_err();
    assert_error(&err, ErrorCategory::Denied, "DescribeTasks");
}

// ---- resync_cluster ----

/// A list and diff: both lists and the rest of the cluster as in a full observation, then
/// DescribeTasks of only the listed tasks the caller does not hold: new ones, and one listed
/// as desired STOPPED that the caller holds as RUNNING. A known task in neither list is in
/// neither answer.
pub async fn resync_describes_only_what_the_caller_does_not_know(a: impl Account) {
    let shape = Shape {
        services: 12,
        tasks: 105,
        container_instances: 3,
        ..Shape::default()
    };
    let seeded = a.seed("c", shape).await;
    let cloud = a.cloud();
    let stopped = seeded.task_arns[0].clone();
    let new = &seeded.task_arns[103..];
    let mut known: KnownTasks = seeded.task_arns[..103]
        .iter()
        .map(|arn| (arn.clone(), DesiredStatus::Running))
        .collect();
    let vanished = unknown_task_arn(&stopped);
    known.insert(vanished.clone(), DesiredStatus::Running);
    cloud
        .stop_task("c", &stopped, "contract: stop")
        .await
        .unwrap();
    a.reset_calls();

    let resync = cloud.resync_cluster("c", &known).await.unwrap();
    assert!(
        resync.snapshot.gaps.is_empty(),
        "{:?}",
        resync.snapshot.gaps
    );
    let mut described: Vec<&str> = resync
        .snapshot
        .tasks
        .iter()
        .map(|t| t.arn.as_str())
        .collect();
    described.sort_unstable();
    let mut expected: Vec<&str> = new.iter().chain([&stopped]).map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(described, expected);
    let mut kept = resync.kept.clone();
    kept.sort_unstable();
    let mut held: Vec<String> = seeded.task_arns[1..103].to_vec();
    held.sort_unstable();
    assert_eq!(kept, held, "every known, listed task, and nothing else");
    assert_eq!(resync.snapshot.services.len(), 12);
    assert_eq!(resync.snapshot.container_instances.len(), 3);
    assert_eq!(
        a.calls(),
        counts(&[
            ("DescribeClusters", 1),
            ("ListServices", 1),
            ("DescribeServices", 2),
            // 104 desired RUNNING in two pages, the stopped one in one.
            ("ListTasks", 3),
            ("DescribeTasks", 1),
            ("ListContainerInstances", 1),
            ("DescribeContainerInstances", 1),
        ])
    );

    // Knowing every listed task, nothing is described.
    let all: KnownTasks = resync
        .snapshot
        .tasks
        .iter()
        .map(|t| (t.arn.clone(), t.desired_status))
        .chain(
            resync
                .kept
                .iter()
                .map(|arn| (arn.clone(), DesiredStatus::Running)),
        )
        .collect();
    a.reset_calls();
    let again = cloud.resync_cluster("c", &all).await.unwrap();
    assert!(
        again.snapshot.tasks.is_empty(),
        "{:?}",
        again.snapshot.tasks
    );
    assert_eq!(again.kept.len(), 105);
    assert_eq!(a.calls().get("DescribeTasks"), None);

    // ListTasks fails the resync as it fails the observation.
    a.fail("ListTasks", ErrorCategory::Throttled).await;
    let err = cloud.resync_cluster("c", &all).await.unwrap_err();
    assert_error(&err, ErrorCategory::Throttled, "ListTasks");
}

// ---- the capacity chain ----

fn resolved(launch: &GroupLaunch) -> Option<u32> {
    match launch {
        GroupLaunch::LaunchTemplate {
            resolved_version, ..
        } => *resolved_version,
        other => panic!("not a launch template: {other:?}"),
    }
}

pub async fn capacity_chain_costs_one_call_per_kind(a: impl Account) {
    let shape = Shape {
        groups: vec![LATEST, PINNED],
        ..Shape::default()
    };
    a.seed("cap", shape).await;
    let snapshot = a.cloud().observe_cluster("cap").await.unwrap();
    assert!(snapshot.gaps.is_empty(), "{:?}", snapshot.gaps);
    assert_eq!(snapshot.capacity_providers.len(), 2);
    let mut groups = snapshot.auto_scaling_groups.clone();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(resolved(&groups[0].launch), Some(1), "{:?}", groups[0]);
    assert_eq!(resolved(&groups[1].launch), Some(1), "{:?}", groups[1]);
    assert_eq!(groups[0].instances.len(), 2);
    assert_eq!(groups[1].instances.len(), 1);
    for instance in groups.iter().flat_map(|g| &g.instances) {
        assert!(instance.launched_at.is_some(), "{instance:?}");
        assert_eq!(instance.launch_template_version, Some(1), "{instance:?}");
    }
    assert_eq!(
        a.calls(),
        counts(&[
            ("DescribeClusters", 1),
            ("ListServices", 1),
            ("ListTasks", 2),
            ("ListContainerInstances", 1),
            ("DescribeCapacityProviders", 1),
            ("DescribeAutoScalingGroups", 1),
            // Only the group at $Latest needs its template's numbers.
            ("DescribeLaunchTemplates", 1),
            ("DescribeInstances", 1),
        ])
    );
}

/// ECS answers at most 10 capacity providers a page: 10 names a DescribeCapacityProviders;
/// Auto Scaling takes 100 names a DescribeAutoScalingGroups. Groups at a numbered version with
/// no instances need nothing from EC2.
pub async fn providers_are_described_ten_at_a_time(a: impl Account) {
    const NAMES: [&str; 11] = [
        "g-00", "g-01", "g-02", "g-03", "g-04", "g-05", "g-06", "g-07", "g-08", "g-09", "g-10",
    ];
    let groups = NAMES
        .iter()
        .map(|name| GroupShape {
            name,
            version: "1",
            instances: 0,
        })
        .collect();
    a.seed(
        "many",
        Shape {
            groups,
            ..Shape::default()
        },
    )
    .await;
    let snapshot = a.cloud().observe_cluster("many").await.unwrap();
    assert!(snapshot.gaps.is_empty(), "{:?}", snapshot.gaps);
    assert_eq!(snapshot.capacity_providers.len(), 11);
    assert_eq!(snapshot.auto_scaling_groups.len(), 11);
    let calls = a.calls();
    assert_eq!(calls["DescribeCapacityProviders"], 2, "{calls:?}");
    assert_eq!(calls["DescribeAutoScalingGroups"], 1, "{calls:?}");
    assert!(!calls.contains_key("DescribeLaunchTemplates"), "{calls:?}");
    assert!(!calls.contains_key("DescribeInstances"), "{calls:?}");
}

/// Every failure in the capacity chain is a gap, never a failed snapshot, and what it would
/// have told is missing.
pub async fn capacity_failures_are_gaps(a: impl Account) {
    let shape = Shape {
        groups: vec![LATEST, PINNED],
        ..Shape::default()
    };
    a.seed("cap", shape).await;
    let observe = || async {
        let mut snapshot = a.cloud().observe_cluster("cap").await.unwrap();
        snapshot
            .auto_scaling_groups
            .sort_by(|a, b| a.name.cmp(&b.name));
        snapshot
    };

    a.fail("DescribeCapacityProviders", ErrorCategory::Denied)
        .await;
    let snapshot = observe().await;
    assert_eq!(
        shapes(&snapshot.gaps),
        [
            "2 capacity providers not described: DescribeCapacityProviders failed (denied): \
          AccessDeniedException"
        ]
    );
    assert!(snapshot.capacity_providers.is_empty() && snapshot.auto_scaling_groups.is_empty());

    a.clear_faults().await;
    a.fail("DescribeAutoScalingGroups", ErrorCategory::Throttled)
        .await;
    let snapshot = observe().await;
    assert_eq!(
        shapes(&snapshot.gaps),
        [
            "2 Auto Scaling groups not described: DescribeAutoScalingGroups failed (throttled): \
          ThrottlingException"
        ]
    );
    assert_eq!(snapshot.capacity_providers.len(), 2);
    assert!(snapshot.auto_scaling_groups.is_empty());

    a.clear_faults().await;
    a.fail("DescribeLaunchTemplates", ErrorCategory::Transient)
        .await;
    let snapshot = observe().await;
    assert_eq!(
        shapes(&snapshot.gaps),
        [
            "launch template versions of 1 templates not resolved: DescribeLaunchTemplates failed \
          (transient): ServiceUnavailable"
        ]
    );
    let groups = &snapshot.auto_scaling_groups;
    assert_eq!(resolved(&groups[0].launch), None, "$Latest unresolved");
    assert_eq!(resolved(&groups[1].launch), Some(1), "numbered");

    a.clear_faults().await;
    a.fail("DescribeInstances", ErrorCategory::Throttled).await;
    let snapshot = observe().await;
    assert_eq!(
        shapes(&snapshot.gaps),
        [
            "launch details of 3 instances not read: DescribeInstances failed (throttled): \
          ThrottlingException"
        ]
    );
    let groups = &snapshot.auto_scaling_groups;
    for instance in groups.iter().flat_map(|g| &g.instances) {
        assert_eq!(instance.launched_at, None, "{instance:?}");
    }
    // Without EC2's tag, an instance's version is what Auto Scaling names: a number or not.
    for instance in &groups[1].instances {
        assert_eq!(instance.launch_template_version, Some(1), "{instance:?}");
    }
}

// ---- observe_group ----

pub async fn observe_group_reads_one_groups_chain(a: impl Account) {
    let shape = Shape {
        groups: vec![LATEST, PINNED],
        ..Shape::default()
    };
    let seeded = a.seed("cap", shape).await;
    let read = a.cloud().observe_group("g-latest").await.unwrap();
    assert!(read.gaps.is_empty(), "{:?}", read.gaps);
    let group = read.group.expect("the group");
    assert_eq!(group.name, "g-latest");
    assert_eq!(resolved(&group.launch), Some(1));
    let mut ids: Vec<String> = group
        .instances
        .iter()
        .map(|i| i.instance_id.clone())
        .collect();
    ids.sort();
    let mut seeded_ids = seeded.groups["g-latest"].1.clone();
    seeded_ids.sort();
    assert_eq!(ids, seeded_ids);
    assert_eq!(
        a.calls(),
        counts(&[
            ("DescribeAutoScalingGroups", 1),
            ("DescribeLaunchTemplates", 1),
            ("DescribeInstances", 1),
        ])
    );

    a.reset_calls();
    let read = a.cloud().observe_group("g-pinned").await.unwrap();
    assert_eq!(read.group.map(|g| g.name).as_deref(), Some("g-pinned"));
    assert_eq!(
        a.calls(),
        counts(&[("DescribeAutoScalingGroups", 1), ("DescribeInstances", 1)]),
        "a numbered version needs no template lookup"
    );

    a.reset_calls();
    let read = a.cloud().observe_group("no-such-group").await.unwrap();
    assert_eq!(read.group, None);
    assert!(read.gaps.is_empty());
    assert_eq!(a.calls(), counts(&[("DescribeAutoScalingGroups", 1)]));

    a.fail("DescribeInstances", ErrorCategory::Throttled).await;
    let read = a.cloud().observe_group("g-latest").await.unwrap();
    assert_eq!(
        shapes(&read.gaps),
        [
            "launch details of 2 instances not read: DescribeInstances failed (throttled): \
          ThrottlingException"
        ]
    );
    assert!(read.group.is_some());
    a.fail("DescribeAutoScalingGroups", ErrorCategory::Throttled)
        .await;
    let err = a.cloud().observe_group("g-latest").await.unwrap_err();
    assert_error(&err, ErrorCategory::Throttled, "DescribeAutoScalingGroups");
}

// ---- mutating calls ----

pub async fn writes_do_what_they_say_in_one_call(a: impl Account) {
    let shape = Shape {
        tasks: 1,
        container_instances: 1,
        groups: vec![LATEST],
        ..Shape::default()
    };
    let seeded = a.seed("w", shape).await;
    let cloud = a.cloud();
    let (template, instances) = &seeded.groups["g-latest"];
    let task = &seeded.task_arns[0];

    cloud.stop_task("w", task, "contract: stop").await.unwrap();
    cloud.set_desired_capacity("g-latest", 3).await.unwrap();
    cloud
        .pin_launch_template_version("g-latest", template, 1)
        .await
        .unwrap();
    cloud
        .tag_group("g-latest", &tags(&[("ecs-reconciler:k", "v")]))
        .await
        .unwrap();
    cloud
        .drain_container_instance("w", &seeded.container_instance_arns[0])
        .await
        .unwrap();
    cloud.terminate_instance(&instances[0]).await.unwrap();
    let new_task = cloud.run_task("w", &fargate_request()).await.unwrap();
    assert_eq!(
        a.calls(),
        counts(&[
            ("StopTask", 1),
            ("SetDesiredCapacity", 1),
            ("UpdateAutoScalingGroup", 1),
            ("CreateOrUpdateTags", 1),
            ("UpdateContainerInstancesState", 1),
            ("TerminateInstanceInAutoScalingGroup", 1),
            ("RunTask", 1),
        ])
    );

    let reads = cloud
        .describe_tasks("w", &[task.clone(), new_task.clone()])
        .await
        .unwrap();
    assert_eq!(reads.tasks.len(), 2, "{reads:?}");
    let stopped = &reads.tasks[0];
    assert_eq!(stopped.desired_status, DesiredStatus::Stopped);
    assert_eq!(stopped.stopped_reason.as_deref(), Some("contract: stop"));
    assert_eq!(reads.tasks[1].arn, new_task);
    let group = cloud
        .observe_group("g-latest")
        .await
        .unwrap()
        .group
        .unwrap();
    assert_eq!(group.desired_capacity, 3);
    assert_eq!(
        group.tags.get("ecs-reconciler:k").map(|v| v.as_str()),
        Some("v")
    );
    assert!(
        matches!(&group.launch, GroupLaunch::LaunchTemplate { version, .. } if version == "1"),
        "{:?}",
        group.launch
    );
    let snapshot = cloud.observe_cluster("w").await.unwrap();
    assert_eq!(snapshot.container_instances[0].status, "DRAINING");

    // No tags: nothing to send.
    a.reset_calls();
    cloud.tag_group("g-latest", &Tags::new()).await.unwrap();
    assert!(a.calls().is_empty(), "{:?}", a.calls());
}

/// RunTask with a client token already used starts no second task: ECS answers the first.
pub async fn run_task_is_idempotent_by_client_token(a: impl Account) {
    a.seed("idem", Shape::default()).await;
    let request = RunTaskRequest {
        client_token: "contract-token-1".into(),
        ..fargate_request()
    };
    let first = a.cloud().run_task("idem", &request).await.unwrap();
    let again = a.cloud().run_task("idem", &request).await.unwrap();
    assert_eq!(first, again);
    let other = RunTaskRequest {
        client_token: "contract-token-2".into(),
        ..fargate_request()
    };
    let second = a.cloud().run_task("idem", &other).await.unwrap();
    assert_ne!(first, second);
    assert_eq!(a.calls(), counts(&[("RunTask", 3)]));
    let snapshot = a.cloud().observe_cluster("idem").await.unwrap();
    assert_eq!(snapshot.tasks.len(), 2, "{:?}", snapshot.tasks);
}

/// What ECS or Auto Scaling refuse with a broad code is `NotFound` only once one read confirms
/// the subject is absent, and `Invalid` when it exists: two calls each.
pub async fn refused_writes_are_confirmed_by_one_read(a: impl Account) {
    let shape = Shape {
        tasks: 1,
        container_instances: 1,
        groups: vec![LATEST],
        ..Shape::default()
    };
    let seeded = a.seed("w", shape).await;
    let cloud = a.cloud();
    let (template, _) = &seeded.groups["g-latest"];
    let unknown_task = unknown_task_arn(&seeded.task_arns[0]);

    let err = cloud.stop_task("w", &unknown_task, "x").await.unwrap_err();
    assert_error(&err, ErrorCategory::NotFound, "StopTask");
    assert_eq!(a.calls(), counts(&[("StopTask", 1), ("DescribeTasks", 1)]));

    // ECS names an unknown container instance in failures[] (MISSING): no read needed.
    a.reset_calls();
    let unknown_instance = unknown_task_arn(&seeded.container_instance_arns[0]);
    let err = cloud
        .drain_container_instance("w", &unknown_instance)
        .await
        .unwrap_err();
    assert_error(
        &err,
        ErrorCategory::NotFound,
        "UpdateContainerInstancesState",
    );
    assert_eq!(a.calls(), counts(&[("UpdateContainerInstancesState", 1)]));

    let group_cases: [(&str, ErrorCategory); 2] = [
        ("no-such-group", ErrorCategory::NotFound),
        ("g-latest", ErrorCategory::Invalid),
    ];
    for (group, category) in group_cases {
        a.reset_calls();
        let err = cloud.set_desired_capacity(group, 11).await.unwrap_err();
        assert_error(&err, category, "SetDesiredCapacity");
        assert_eq!(
            a.calls(),
            counts(&[("SetDesiredCapacity", 1), ("DescribeAutoScalingGroups", 1)]),
            "{group}"
        );
    }
    a.reset_calls();
    let err = cloud
        .pin_launch_template_version("no-such-group", template, 1)
        .await
        .unwrap_err();
    assert_error(&err, ErrorCategory::NotFound, "UpdateAutoScalingGroup");
    let err = cloud
        .tag_group("no-such-group", &tags(&[("k", "v")]))
        .await
        .unwrap_err();
    assert_error(&err, ErrorCategory::NotFound, "CreateOrUpdateTags");
    let err = cloud
        .terminate_instance("i-0123456789abcdef0")
        .await
        .unwrap_err();
    assert_error(
        &err,
        ErrorCategory::NotFound,
        "TerminateInstanceInAutoScalingGroup",
    );
    assert_eq!(
        a.calls(),
        counts(&[
            ("UpdateAutoScalingGroup", 1),
            ("CreateOrUpdateTags", 1),
            ("TerminateInstanceInAutoScalingGroup", 1),
            ("DescribeAutoScalingGroups", 2),
            ("DescribeAutoScalingInstances", 1),
        ])
    );

    // The confirming read fails: the refusal stands as it came.
    a.reset_calls();
    a.fail("DescribeAutoScalingGroups", ErrorCategory::Throttled)
        .await;
    let err = cloud
        .set_desired_capacity("no-such-group", 1)
        .await
        .unwrap_err();
    assert_error(&err, ErrorCategory::Invalid, "SetDesiredCapacity");
}

/// A denied write is `Denied` after exactly one call (no confirming read).
pub async fn denied_writes_are_denied_after_one_call(a: impl Account) {
    let shape = Shape {
        tasks: 1,
        container_instances: 1,
        groups: vec![LATEST],
        ..Shape::default()
    };
    let seeded = a.seed("w", shape).await;
    let cloud = a.cloud();
    let (template, instances) = &seeded.groups["g-latest"];
    let ops = [
        "StopTask",
        "RunTask",
        "SetDesiredCapacity",
        "UpdateAutoScalingGroup",
        "CreateOrUpdateTags",
        "TerminateInstanceInAutoScalingGroup",
        "UpdateContainerInstancesState",
    ];
    for op in ops {
        a.fail(op, ErrorCategory::Denied).await;
    }
    let results: [(&str, Result<(), CloudError>); 7] = [
        (
            "StopTask",
            cloud.stop_task("w", &seeded.task_arns[0], "x").await,
        ),
        (
            "RunTask",
            cloud.run_task("w", &fargate_request()).await.map(|_| ()),
        ),
        (
            "SetDesiredCapacity",
            cloud.set_desired_capacity("g-latest", 1).await,
        ),
        (
            "UpdateAutoScalingGroup",
            cloud
                .pin_launch_template_version("g-latest", template, 1)
                .await,
        ),
        (
            "CreateOrUpdateTags",
            cloud.tag_group("g-latest", &tags(&[("k", "v")])).await,
        ),
        (
            "TerminateInstanceInAutoScalingGroup",
            cloud.terminate_instance(&instances[0]).await,
        ),
        (
            "UpdateContainerInstancesState",
            cloud
                .drain_container_instance("w", &seeded.container_instance_arns[0])
                .await,
        ),
    ];
    for (op, result) in results {
        let err = result.unwrap_err();
        assert_error(&err, ErrorCategory::Denied, op);
        assert!(err.message.starts_with("AccessDeniedException"), "{err}");
    }
    let expected: Vec<(&str, u64)> = ops.iter().map(|op| (*op, 1)).collect();
    assert_eq!(a.calls(), counts(&expected));
}

/// DescribeScalingActivities answering no activity is confirmed with DescribeAutoScalingGroups.
pub async fn no_scaling_activity_is_confirmed_by_one_read(a: impl Account) {
    let shape = Shape {
        groups: vec![GroupShape {
            name: "idle",
            version: "1",
            instances: 0,
        }],
        ..Shape::default()
    };
    a.seed("s", shape).await;
    let activities = a.cloud().scaling_activities("idle").await.unwrap();
    assert!(activities.is_empty(), "{activities:?}");
    let err = a
        .cloud()
        .scaling_activities("no-such-group")
        .await
        .unwrap_err();
    assert_error(&err, ErrorCategory::NotFound, "DescribeScalingActivities");
    assert_eq!(
        a.calls(),
        counts(&[
            ("DescribeScalingActivities", 2),
            ("DescribeAutoScalingGroups", 2)
        ])
    );
}

/// The bodies, for `sim.rs` and `moto.rs` to instantiate.
#[macro_export]
macro_rules! contract_bodies {
    ($on:ident) => {
        $on!(
            list_clusters_is_one_page,
            observe_costs_one_call_per_page_and_batch,
            failed_parts_are_gaps_when_retryable_and_fail_otherwise,
            a_failed_snapshot_still_made_every_parts_calls,
            a_missing_cluster_is_not_found_everywhere,
            describe_tasks_reads_a_hundred_at_a_time,
            resync_describes_only_what_the_caller_does_not_know,
            security_groups_are_one_lookup_and_a_gap_when_it_fails,
            a_cluster_arn_names_the_cluster,
            capacity_chain_costs_one_call_per_kind,
            capacity_failures_are_gaps,
            providers_are_described_ten_at_a_time,
            observe_group_reads_one_groups_chain,
            writes_do_what_they_say_in_one_call,
            run_task_is_idempotent_by_client_token,
            refused_writes_are_confirmed_by_one_read,
            denied_writes_are_denied_after_one_call,
            no_scaling_activity_is_confirmed_by_one_read,
        );
    };
}
