//! Ready-made simulated accounts, by name: for the demo, `run --sim SCENARIO`, scenario tests
//! and scale benchmarks.
//!
//! Every scenario comes with history: its world begins [`SCENARIO_HISTORY`] before `start`
//! and is run up to `start` while it is built. So at the first observation healthy tasks are
//! already RUNNING (with createdAt and startedAt in the past), and a task that hangs has been
//! stuck for about 15 minutes, longer than a typical policy limit of 10 minutes.
//!
//! The capacity scenarios (`broken-launch-template`, `capacity-short`, `capacity-exhausted`,
//! `healthy-rollout`, `agent-disconnected`, `task-too-large`, `launch-failing`) share one
//! layout: cluster `demo-capacity`, capacity provider `demo-cp` → Auto Scaling group
//! `demo-asg` (min 0, `$Latest` of launch template `demo-lt`, 2 task slots per container
//! instance unless said otherwise), and service `app` placed through `demo-cp`. Version 1 of
//! `demo-lt` is good: m5.large instances with the standard ECS UserData and the
//! `ecsInstanceRole` profile, InService 30 s after launch, registered 60 s after that, their
//! boot output a clean boot ending with the ECS agent started. Instances that were there
//! before the history began were launched 3 days before it.

use std::time::{Duration, SystemTime};

use super::SimAccount;
use super::behavior::TaskBehavior;
use super::capacity::{GroupSpec, VCPU_LIMIT_EXCEEDED, VersionBehavior, VersionSpec};
use super::world::{ServiceSpec, World};
use crate::capacity::tags::{MANAGED_TAG_KEY, MANAGED_TAG_VALUE};
use crate::domain::{
    Capacity, CapacityProviderStrategyItem, ContainerOverride, EnvVar, GroupLaunch, NetworkConfig,
    RunTaskRequest, Tags, TaskOverrides, TaskStatus,
};

/// How long a scenario's world has been running when the clock starts.
pub const SCENARIO_HISTORY: Duration = Duration::from_secs(15 * 60);

/// What a scenario is, for listing and for the demo's narration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    /// The clusters it sets up, sorted.
    pub clusters: Vec<String>,
    /// What goes wrong in it: what the demo compares with and without the controller.
    pub about: &'static [Concern],
    /// The launch templates its groups launch from, as (name, id).
    pub launch_templates: Vec<(String, String)>,
}

/// A kind of trouble a scenario is about, counted in an account's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Concern {
    /// Tasks that should run and are still PROVISIONING, PENDING or ACTIVATING.
    WayUp,
    /// Tasks told to stop that hang in STOPPING, and the container instances with a
    /// disconnected agent that are still ACTIVE (not drained).
    StoppingHang,
    /// Tasks that should run and are RUNNING but UNHEALTHY.
    Unhealthy,
    /// Tasks missing from services' desired counts of healthy RUNNING tasks.
    Capacity,
}

/// What each scenario is about (see [`Concern`]).
fn about(name: &str) -> &'static [Concern] {
    match name {
        "broken-launch-template"
        | "capacity-short"
        | "capacity-exhausted"
        | "healthy-rollout"
        | "task-too-large"
        | "launch-failing" => &[Concern::Capacity],
        "agent-disconnected" => &[Concern::StoppingHang],
        "unhealthy" => &[Concern::Unhealthy],
        "mixed" => &[Concern::WayUp, Concern::Unhealthy],
        _ => &[Concern::WayUp],
    }
}

const SCENARIOS: &[(&str, &str)] = &[
    (
        "broken-launch-template",
        "cluster demo-capacity: service app (desiredCount 6) on capacity provider demo-cp → group \
         demo-asg (min 0, max 10, desired 3, launch template demo-lt $Latest, 2 task slots per \
         instance). Version 2 of demo-lt (latest, not default) has UserData that mounts FSx \
         for Lustre fs-0a1b2c3d4e5f67890 at /fsx; the mount times out, cloud-init reports the \
         script failed, the ECS agent never starts and its instances never register (their \
         boot output says so). About 16 minutes before start 2 of the 3 version-1 \
         instances were replaced with version-2 ones, InService since 15.5 minutes; 1 \
         version-1 instance is registered and runs 2 tasks, 4 tasks wait in PROVISIONING \
         since 15 minutes. Never recovers by itself; pinning version 1 and terminating the \
         version-2 instances does",
    ),
    (
        "capacity-short",
        "cluster demo-capacity: service app (desiredCount 6) on demo-cp → demo-asg (min 0, max \
         10, desired 1, 2 task slots per instance); its one instance (version 1, good) runs 2 \
         tasks, 4 wait in PROVISIONING since 15 minutes; raising desired capacity to 3 fixes it",
    ),
    (
        "capacity-exhausted",
        "cluster demo-capacity: service app (desiredCount 6) on demo-cp → demo-asg (min 0, max \
         2, desired 2, 2 task slots per instance); its 2 good instances run 4 tasks, 2 wait in \
         PROVISIONING since 15 minutes; the group is at its maximum size",
    ),
    (
        "healthy-rollout",
        "cluster demo-capacity: demo-asg (min 0, max 10) ran 1 version-1 instance with service \
         app at 2 tasks; 2 minutes before start demo-lt version 2 (good, registers 3 minutes \
         after InService) was published as latest and default, the group went to desired 3 \
         and app to desiredCount 6: 2 version-2 instances are InService since 1.5 minutes and \
         register 1.5 minutes after start, when the 4 tasks in PROVISIONING (since 2 \
         minutes) are placed",
    ),
    (
        "agent-disconnected",
        "cluster demo-capacity: demo-asg (desired 2, max 10, 4 task slots per instance) with 2 \
         registered version-1 instances and service app (desiredCount 4); the agent of the \
         second instance disconnected 14.5 minutes before start and stays disconnected; an \
         app task on it stopped 13 minutes before start hangs in STOPPING, its replacement \
         runs on the first instance; the task stays in STOPPING while the agent is away, \
         whatever the controller does; draining the instance takes it out of service",
    ),
    (
        "task-too-large",
        "cluster demo-capacity: demo-asg (desired 2, max 10) of 2 registered m5.large \
         instances (2 vCPU, 8 GiB); service app (desiredCount 2) has tasks of 1024 CPU units \
         and 12288 MiB: they never place and wait in PROVISIONING since 15 minutes, and app's \
         service events say no container instance has enough memory",
    ),
    (
        "launch-failing",
        "cluster demo-capacity: demo-asg (min 0, max 10, desired 3) has 1 registered instance; \
         every launch fails on the account's vCPU limit (a Failed scaling activity every 2 \
         minutes, no instance); service app (desiredCount 6) runs 2 tasks, 4 wait in \
         PROVISIONING since 15 minutes",
    ),
    (
        "stuck-provisioning",
        "cluster demo-web: service web (desiredCount 6, EC2 capacity provider); its first 2 \
         launches hang in PROVISIONING, replacements come up healthy",
    ),
    (
        "hang-activating",
        "cluster demo-api: service api (desiredCount 4, Fargate); 1 task hangs in ACTIVATING, \
         replacements come up healthy",
    ),
    (
        "unhealthy",
        "cluster demo-worker: service worker (desiredCount 3); 1 task turns UNHEALTHY 1m after \
         reaching RUNNING, replacements stay healthy",
    ),
    (
        "standalone",
        "cluster demo-batch: 3 standalone tasks of group batch:nightly with tags and overrides, \
         1 hangs in PENDING; tasks started by RunTask come up healthy",
    ),
    (
        "outage",
        "cluster demo-web: service web (desiredCount 10); 8 tasks hang in PROVISIONING, a wide \
         outage where replacing tasks would not help",
    ),
    (
        "mixed",
        "stuck-provisioning, hang-activating, unhealthy and standalone in one account, plus a \
         stuck standalone task tagged ecs-reconciler/exempt=true in demo-batch",
    ),
    (
        "scale",
        "clusters scale-NN of service tasks (services of 50, 10 container instances each), a \
         share of them hanging in PROVISIONING, PENDING or ACTIVATING; by default 20 clusters \
         of 500 tasks, 3% stuck",
    ),
];

/// The names [`build_scenario`] knows.
pub fn scenario_names() -> &'static [&'static str] {
    const NAMES: &[&str] = &[
        "broken-launch-template",
        "capacity-short",
        "capacity-exhausted",
        "healthy-rollout",
        "agent-disconnected",
        "task-too-large",
        "launch-failing",
        "stuck-provisioning",
        "hang-activating",
        "unhealthy",
        "standalone",
        "outage",
        "mixed",
        "scale",
    ];
    NAMES
}

/// Builds the named scenario with its clock starting at `start`; `None` for an unknown name.
pub fn build_scenario(name: &str, start: SystemTime) -> Option<(SimAccount, Scenario)> {
    let (name, description) = SCENARIOS.iter().copied().find(|(n, _)| *n == name)?;
    if name == "scale" {
        return Some(build_scale(start, 20, 500, 0.03));
    }
    let sim = SimAccount::with_history(start, SCENARIO_HISTORY);
    sim.with_world(|w| match name {
        "stuck-provisioning" => web(w, 6, 2),
        "hang-activating" => api(w),
        "unhealthy" => worker(w),
        "standalone" => batch(w),
        "outage" => web(w, 10, 8),
        "broken-launch-template" => broken_launch_template(w),
        "capacity-short" => capacity_short(w, 1, 10),
        "capacity-exhausted" => capacity_short(w, 2, 2),
        "healthy-rollout" => healthy_rollout(w, start),
        "agent-disconnected" => agent_disconnected(w),
        "task-too-large" => task_too_large(w),
        "launch-failing" => launch_failing(w),
        "mixed" => {
            web(w, 6, 2);
            api(w);
            worker(w);
            batch(w);
            exempt(w);
        }
        _ => unreachable!("every listed scenario is built"),
    });
    Some(finish(sim, name, description))
}

/// Runs the world up to the clock's start and describes the result.
fn finish(
    sim: SimAccount,
    name: &'static str,
    description: &'static str,
) -> (SimAccount, Scenario) {
    let start = sim.start();
    let clusters = sim.with_world(|w| {
        w.advance_to(start);
        w.cluster_names()
    });
    let launch_templates = sim
        .auto_scaling_group(GROUP)
        .and_then(|g| match g.launch {
            GroupLaunch::LaunchTemplate {
                template_id,
                template_name,
                ..
            } => Some((template_name, template_id)),
            _ => None,
        })
        .into_iter()
        .collect();
    let scenario = Scenario {
        name,
        description,
        clusters,
        about: about(name),
        launch_templates,
    };
    (sim, scenario)
}

fn capacity_provider(name: &str) -> Capacity {
    Capacity::CapacityProviderStrategy(vec![CapacityProviderStrategyItem {
        capacity_provider: name.to_string(),
        weight: 1,
        base: 0,
    }])
}

fn awsvpc(subnet: &str, security_group: &str) -> NetworkConfig {
    NetworkConfig {
        subnets: vec![subnet.to_string()],
        security_groups: vec![security_group.to_string()],
        assign_public_ip: Some(false),
    }
}

/// demo-web: 3 container instances and service web on an EC2 capacity provider.
fn web(w: &mut World, desired: u32, hanging: usize) {
    w.add_cluster("demo-web");
    for _ in 0..3 {
        w.add_container_instance("demo-web", None);
    }
    let spec = ServiceSpec::new("web", desired)
        .with_task_definition("web:7")
        .with_tag("app", "web")
        .with_tag("team", "storefront")
        .with_capacity(capacity_provider("demo-web-asg"))
        .then_launch(hanging, TaskBehavior::hangs_in(TaskStatus::Provisioning));
    w.add_service("demo-web", spec);
}

/// demo-api: service api on Fargate, one task hanging in ACTIVATING.
fn api(w: &mut World) {
    w.add_cluster("demo-api");
    let spec = ServiceSpec::new("api", 4)
        .with_task_definition("api:12")
        .with_tag("app", "api")
        .with_capacity(Capacity::LaunchType("FARGATE".to_string()))
        .with_network(awsvpc("subnet-0a1b2c3d", "sg-0api"))
        .then_launch(1, TaskBehavior::hangs_in(TaskStatus::Activating));
    w.add_service("demo-api", spec);
}

/// demo-worker: service worker, one task turning UNHEALTHY a minute after it runs.
fn worker(w: &mut World) {
    w.add_cluster("demo-worker");
    for _ in 0..2 {
        w.add_container_instance("demo-worker", None);
    }
    let spec = ServiceSpec::new("worker", 3)
        .with_task_definition("worker:3")
        .with_tag("app", "worker")
        .then_launch(
            1,
            TaskBehavior::turns_unhealthy_after(Duration::from_secs(60)),
        );
    w.add_service("demo-worker", spec);
}

fn nightly_request(part: u32) -> RunTaskRequest {
    RunTaskRequest {
        task_definition: "nightly-etl:4".to_string(),
        overrides: TaskOverrides {
            containers: vec![ContainerOverride {
                name: "etl".to_string(),
                command: Some(vec![
                    "etl".to_string(),
                    "--part".to_string(),
                    part.to_string(),
                ]),
                environment: vec![EnvVar {
                    name: "RUN_DATE".to_string(),
                    value: "2025-01-15".to_string(),
                }],
                memory: Some(2048),
                ..ContainerOverride::default()
            }],
            cpu: Some("1024".to_string()),
            memory: Some("4096".to_string()),
            ..TaskOverrides::default()
        },
        tags: Tags::from([
            ("team".to_string(), "data".to_string()),
            ("job".to_string(), "nightly-etl".to_string()),
        ]),
        group: Some("batch:nightly".to_string()),
        started_by: Some("events-rule/nightly-etl".to_string()),
        capacity: Capacity::LaunchType("FARGATE".to_string()),
        network: Some(awsvpc("subnet-0batch01", "sg-0batch")),
        client_token: String::new(),
    }
}

/// demo-batch: three standalone nightly tasks, the second hanging in PENDING.
fn batch(w: &mut World) {
    w.add_cluster("demo-batch");
    for part in 1..=3 {
        let behavior = if part == 2 {
            TaskBehavior::hangs_in(TaskStatus::Pending)
        } else {
            TaskBehavior::healthy()
        };
        w.run_task("demo-batch", &nightly_request(part), Some(behavior));
    }
}

/// demo-batch: a stuck task that policies must leave alone.
fn exempt(w: &mut World) {
    let mut request = nightly_request(9);
    request.started_by = Some("alice".to_string());
    request
        .tags
        .insert("ecs-reconciler/exempt".to_string(), "true".to_string());
    w.run_task(
        "demo-batch",
        &request,
        Some(TaskBehavior::hangs_in(TaskStatus::Provisioning)),
    );
}

const CAPACITY_CLUSTER: &str = "demo-capacity";
/// The Auto Scaling group of the capacity scenarios.
const GROUP: &str = "demo-asg";
/// How long before the history began the instances that were already there were launched.
const SETTLED: Duration = Duration::from_secs(3 * 24 * 3600);

/// demo-capacity with launch template demo-lt (version 1 good); returns the template id.
fn capacity_cluster(w: &mut World) -> String {
    w.add_cluster(CAPACITY_CLUSTER);
    w.add_launch_template(
        "demo-lt",
        VersionBehavior::good(Duration::from_secs(60)).into(),
    )
}

/// Group demo-asg of `template` (min 0, `$Latest`) behind capacity provider demo-cp.
/// It carries the opt-in tag, so the controller may write to it.
fn demo_group(w: &mut World, spec: GroupSpec) {
    w.add_group(
        spec.with_tag("team", "platform")
            .with_tag(MANAGED_TAG_KEY, MANAGED_TAG_VALUE),
    );
    w.add_capacity_provider(CAPACITY_CLUSTER, "demo-cp", Some(GROUP));
}

fn group_spec(template: &str, desired: u32, max: u32) -> GroupSpec {
    GroupSpec::new(GROUP, CAPACITY_CLUSTER, template, desired)
        .with_bounds(0, max)
        .with_slots(2)
}

/// Service app of `desired` tasks on demo-cp.
fn app(desired: u32) -> ServiceSpec {
    ServiceSpec::new("app", desired)
        .with_task_definition("app:5")
        .with_tag("app", "app")
        .with_capacity(capacity_provider("demo-cp"))
}

/// The seed story: version 2 of demo-lt mounts an FSx for Lustre file system that its
/// instances cannot reach, so they never register; 2 of 3 instances are from it.
fn broken_launch_template(w: &mut World) {
    let template = capacity_cluster(w);
    let fsx = VersionSpec::fsx_mount_timeout(CAPACITY_CLUSTER);
    let broken = w.publish_template_version(&template, fsx, false);
    let spec = group_spec(&template, 3, 10)
        .with_existing(1, Some(1), SETTLED)
        .with_existing(2, Some(broken), Duration::from_secs(60));
    demo_group(w, spec);
    w.add_service(CAPACITY_CLUSTER, app(6));
}

/// Service app's tasks need 12 GiB; demo-lt launches m5.large (8 GiB): they never place.
fn task_too_large(w: &mut World) {
    let template = capacity_cluster(w);
    let spec = group_spec(&template, 2, 10).with_existing(2, Some(1), SETTLED);
    demo_group(w, spec);
    w.add_service(CAPACITY_CLUSTER, app(2).with_task_size(1024, 12 * 1024));
}

/// Launches of demo-asg fail on the account's vCPU limit: it stays at 1 of 3 instances.
fn launch_failing(w: &mut World) {
    let template = capacity_cluster(w);
    let spec = group_spec(&template, 1, 10).with_existing(1, Some(1), SETTLED);
    demo_group(w, spec);
    w.fail_launches("demo-asg", Some(VCPU_LIMIT_EXCEEDED));
    w.set_desired_capacity("demo-asg", 3)
        .expect("within the group's bounds");
    w.add_service(CAPACITY_CLUSTER, app(6));
}

/// Good instances, too few of them: desired `desired`, max `max`, 2 slots each, app needs 6.
fn capacity_short(w: &mut World, desired: u32, max: u32) {
    let template = capacity_cluster(w);
    let spec =
        group_spec(&template, desired, max).with_existing(desired as usize, Some(1), SETTLED);
    demo_group(w, spec);
    w.add_service(CAPACITY_CLUSTER, app(6));
}

/// A good version 2 rolled out 2 minutes before start, its instances still booting.
fn healthy_rollout(w: &mut World, start: SystemTime) {
    let template = capacity_cluster(w);
    demo_group(
        w,
        group_spec(&template, 1, 10).with_existing(1, Some(1), SETTLED),
    );
    w.add_service(CAPACITY_CLUSTER, app(2));
    w.advance_to(start - Duration::from_secs(120));
    let good = VersionBehavior::good(Duration::from_secs(180));
    w.publish_template_version(&template, good.into(), true);
    w.set_desired_capacity("demo-asg", 3)
        .expect("within the group's bounds");
    w.set_desired_count(CAPACITY_CLUSTER, "app", 6);
}

/// An instance whose agent is gone, with an app task hanging in STOPPING on it.
fn agent_disconnected(w: &mut World) {
    let template = capacity_cluster(w);
    let spec = group_spec(&template, 2, 10)
        .with_slots(4)
        .with_existing(2, Some(1), SETTLED);
    demo_group(w, spec);
    // Placement spreads: launches 1 and 3 land on the first instance, 2 and 4 on the second.
    let spec = app(4)
        .then_launch(1, TaskBehavior::healthy())
        .then_launch(1, TaskBehavior::hangs_in(TaskStatus::Stopping));
    w.add_service(CAPACITY_CLUSTER, spec);
    let history_began = w.now();
    w.advance_to(history_began + Duration::from_secs(30));
    let second = w
        .cluster(CAPACITY_CLUSTER)
        .and_then(|c| c.container_instances().get(1).map(|i| i.arn.clone()))
        .expect("two registered instances");
    w.change_container_instance(CAPACITY_CLUSTER, &second, |i| i.agent_connected = false);
    w.advance_to(history_began + Duration::from_secs(120));
    let stranded = w
        .cluster(CAPACITY_CLUSTER)
        .and_then(|c| {
            c.tasks()
                .find(|t| t.container_instance_arn.as_deref() == Some(second.as_str()))
                .map(|t| t.id().to_string())
        })
        .expect("a task on the second instance");
    w.stop_task(CAPACITY_CLUSTER, &stranded, "Task stopped by user");
}

/// A large account: `clusters` clusters `scale-NN`, each with `tasks_per_cluster` service
/// tasks in services `svc-NN` of at most 50 tasks, 10 container instances each. A share
/// `stuck_share` (0.0..=1.0) of the tasks, spread evenly, hang in PROVISIONING, PENDING or
/// ACTIVATING in turn; the rest (and every replacement) are healthy. Comes with
/// [`SCENARIO_HISTORY`] like every scenario.
pub fn build_scale(
    start: SystemTime,
    clusters: usize,
    tasks_per_cluster: usize,
    stuck_share: f64,
) -> (SimAccount, Scenario) {
    const PER_SERVICE: usize = 50;
    const HANGS: [TaskStatus; 3] = [
        TaskStatus::Provisioning,
        TaskStatus::Pending,
        TaskStatus::Activating,
    ];
    let share = stuck_share.clamp(0.0, 1.0);
    let sim = SimAccount::with_history(start, SCENARIO_HISTORY);
    sim.with_world(|w| {
        let mut stuck = 0usize;
        for c in 0..clusters {
            let cluster = format!("scale-{c:02}");
            w.add_cluster(&cluster);
            for _ in 0..10 {
                w.add_container_instance(&cluster, None);
            }
            let services = tasks_per_cluster.div_ceil(PER_SERVICE);
            for s in 0..services {
                let first = s * PER_SERVICE;
                let count = PER_SERVICE.min(tasks_per_cluster - first);
                let mut spec = ServiceSpec::new(&format!("svc-{s:02}"), count as u32)
                    .with_capacity(capacity_provider(&format!("{cluster}-asg")));
                for i in first..first + count {
                    let due = ((i + 1) as f64 * share).floor() > (i as f64 * share).floor();
                    spec.launch_behaviors.push_back(if due {
                        stuck += 1;
                        TaskBehavior::hangs_in(HANGS[stuck % HANGS.len()])
                    } else {
                        TaskBehavior::healthy()
                    });
                }
                w.add_service(&cluster, spec);
            }
        }
    });
    let description = SCENARIOS
        .iter()
        .find(|(n, _)| *n == "scale")
        .map_or("", |(_, d)| *d);
    finish(sim, "scale", description)
}
