//! Ready-made simulated accounts, by name: for the demo, `run --sim SCENARIO`, scenario tests
//! and scale benchmarks.
//!
//! Every scenario comes with history: its world begins [`SCENARIO_HISTORY`] before `start`
//! and is run up to `start` while it is built. So at the first observation healthy tasks are
//! already RUNNING (with createdAt and startedAt in the past), and a task that hangs has been
//! stuck for about 15 minutes, longer than a typical policy limit of 10 minutes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::SimAccount;
use super::behavior::TaskBehavior;
use super::world::{ServiceSpec, World};
use crate::domain::{
    Capacity, CapacityProviderStrategyItem, ContainerOverride, EnvVar, NetworkConfig,
    RunTaskRequest, TaskOverrides, TaskStatus,
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
}

const SCENARIOS: &[(&str, &str)] = &[
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
    let scenario = Scenario {
        name,
        description,
        clusters,
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
        tags: BTreeMap::from([
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
