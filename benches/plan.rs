//! Diagnose + plan over 100,000 tasks (20 clusters of 5,000) under 10 policies: the work the
//! controller's pure core does for one pass over a large account. Target: 50 ms or less on one
//! core. Run: `cargo bench --bench plan`.
//!
//! Also loading a policy directory of 15,000 generated policies (about 5 MB), once as one file
//! of 15,000 documents and once as 150 files of 100: `cargo bench --bench plan -- load`. Under
//! `cargo test --benches` (one run of each, no `--bench` argument) it loads 1,500.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use ecs_reconciler::causes::Clues;
use ecs_reconciler::diagnose::{Condition, Sightings, diagnose};
use ecs_reconciler::domain::{
    Capacity, ClusterSnapshot, DesiredStatus, HealthStatus, Service, Task, TaskStatus,
    TaskTimestamps,
};
use ecs_reconciler::history::{History, stop_reason};
use ecs_reconciler::plan::plan;
use ecs_reconciler::policy::{PolicySet, load_dir, parse_str};

const CLUSTERS: usize = 20;
const TASKS_PER_CLUSTER: usize = 5_000;
const TASKS_PER_SERVICE: usize = 50;
const POLICIES: usize = 10;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// Ten policies, each over the services of one team (`team-N-*`) in every bench cluster.
fn policies() -> PolicySet {
    let mut yaml = String::new();
    for i in 0..POLICIES {
        yaml.push_str(&format!(
            "---\napiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {{name: \
             team-{i}}}\nspec:\n  target: {{clusters: [\"bench-*\"], services: \
             [\"team-{i}-*\"]}}\n  stuck: {{PROVISIONING: 10m, PENDING: 10m, ACTIVATING: 5m, \
             STOPPING: 20m, unhealthy: 5m}}\n  remediate: {{replaceTask: {{}}}}\n  guardrails: \
             {{maxActionsPerHour: 20, maxInFlightPerService: 25%, pauseWhenStuckAbove: 50%}}\n"
        ));
    }
    PolicySet {
        policies: parse_str(Path::new("bench.yaml"), &yaml).expect("bench policies are valid"),
        fingerprint: "bench".into(),
    }
}

/// A cluster of healthy tasks with about 3% stuck on the way up, 1% unhealthy, and some
/// recently stopped by the controller.
fn cluster(c: usize) -> ClusterSnapshot {
    let name = format!("bench-{c:02}");
    let mut snap = ClusterSnapshot::empty(&name, &format!("arn:aws:ecs:::cluster/{name}"), now());
    let services = TASKS_PER_CLUSTER / TASKS_PER_SERVICE;
    for s in 0..services {
        snap.services.push(Service {
            name: format!("team-{}-svc-{s}", s % POLICIES),
            arn: format!("arn:aws:ecs:::service/{name}/svc-{s}"),
            desired_count: TASKS_PER_SERVICE as u32,
            running_count: TASKS_PER_SERVICE as u32,
            pending_count: 0,
            events: Vec::new(),
        });
    }
    for t in 0..TASKS_PER_CLUSTER {
        let s = t / TASKS_PER_SERVICE;
        let minutes = |m: u64| now() - Duration::from_secs(m * 60);
        let mut task = Task {
            arn: format!("arn:aws:ecs:us-east-1:123456789012:task/{name}/{t:032x}"),
            cluster_arn: snap.cluster_arn.as_str().into(),
            task_definition_arn: "arn:aws:ecs:::task-definition/app:1".into(),
            group: Some(format!("service:team-{}-svc-{s}", s % POLICIES).into()),
            started_by: Some("ecs-svc/1".into()),
            last_status: TaskStatus::Running,
            desired_status: DesiredStatus::Running,
            health: HealthStatus::Healthy,
            timestamps: TaskTimestamps {
                created_at: Some(minutes(120)),
                started_at: Some(minutes(118)),
                ..TaskTimestamps::default()
            },
            stopped_reason: None,
            stop_code: None,
            cpu: None,
            memory: None,
            tags: Default::default(),
            capacity: Capacity::LaunchType("EC2".into()),
            network: None,
            overrides: Default::default(),
            container_instance_arn: None,
            version: 1,
        };
        match t % 100 {
            0 => {
                task.last_status = TaskStatus::Provisioning;
                task.timestamps.created_at = Some(minutes(15));
            }
            1 => {
                task.last_status = TaskStatus::Pending;
                task.timestamps.connectivity_at = Some(minutes(12));
            }
            2 => {
                task.last_status = TaskStatus::Activating;
                task.timestamps.pull_stopped_at = Some(minutes(7));
            }
            3 => task.health = HealthStatus::Unhealthy,
            4 if t % 300 == 4 => {
                task.desired_status = DesiredStatus::Stopped;
                task.last_status = TaskStatus::Stopped;
                task.timestamps.stopping_at = Some(minutes(20));
                task.stopped_reason = Some(stop_reason(
                    &format!("team-{}", s % POLICIES),
                    Condition::InState(TaskStatus::Provisioning),
                    "stuck in PROVISIONING for 11m, limit 10m",
                ));
            }
            _ => {}
        }
        snap.tasks.push(task);
    }
    snap
}

fn bench(c: &mut Criterion) {
    let policies = policies();
    let snapshots: Vec<ClusterSnapshot> = (0..CLUSTERS).map(cluster).collect();
    let mut sightings: Vec<Sightings> = snapshots
        .iter()
        .map(|s| {
            let mut earlier = s.clone();
            earlier.observed_at = now() - Duration::from_secs(600);
            let mut sightings = Sightings::default();
            sightings.record(&earlier);
            sightings
        })
        .collect();
    let total: usize = snapshots.iter().map(|s| s.tasks.len()).sum();
    let mut group = c.benchmark_group("pure core");
    group.sample_size(20);
    group.bench_function(
        format!("diagnose+plan {total} tasks, {POLICIES} policies"),
        |b| {
            b.iter(|| {
                let mut actions = 0;
                for (snap, sightings) in snapshots.iter().zip(sightings.iter_mut()) {
                    sightings.record(snap);
                    let diagnosis = diagnose(snap, &policies, sightings);
                    let history = History::rebuild(snap, &[]);
                    actions += plan(
                        snap,
                        diagnosis,
                        &policies,
                        &history,
                        sightings,
                        &Clues::default(),
                        false,
                    )
                    .actions
                    .len();
                }
                black_box(actions)
            })
        },
    );
    group.finish();
}

/// One generated policy document of about 330 bytes.
fn generated_policy(i: usize) -> String {
    format!(
        "---\napiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata:\n  name: \
         generated-{i}\n  description: policy {i} generated for the load benchmark\nspec:\n  \
         target:\n    clusters: [\"bench-*\"]\n    services: [\"team-{i}-*\"]\n  stuck:\n    \
         PROVISIONING: 10m\n    PENDING: 10m\n    unhealthy: 5m\n  remediate:\n    \
         replaceTask: {{}}\n  guardrails:\n    maxActionsPerHour: 20\n    \
         maxInFlightPerService: 25%\n"
    )
}

/// A temporary policy directory of `policies` generated policies spread over `files` files.
fn generated_dir(policies: usize, files: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let per_file = policies.div_ceil(files);
    for f in 0..files {
        let text: String = (f * per_file..((f + 1) * per_file).min(policies))
            .map(generated_policy)
            .collect();
        std::fs::write(dir.path().join(format!("policies-{f:03}.yaml")), text).expect("write");
    }
    dir
}

fn load(c: &mut Criterion) {
    // Full size only under `cargo bench`; `cargo test --benches` runs each benchmark once.
    let full = std::env::args().any(|a| a == "--bench");
    let policies = if full { 15_000 } else { 1_500 };
    let mut group = c.benchmark_group("policy load");
    group.sample_size(10);
    for files in [1, policies / 100] {
        let dir = generated_dir(policies, files);
        let loaded = load_dir(dir.path()).expect("generated policies are valid");
        assert_eq!(loaded.policies.len(), policies);
        group.bench_function(
            format!("load_dir {policies} policies in {files} files"),
            |b| b.iter(|| black_box(load_dir(dir.path()).map(|set| set.policies.len()))),
        );
    }
    group.finish();
}

criterion_group!(benches, bench, load);
criterion_main!(benches);
