//! The simulated ECS account: lifecycle, scheduler, retention, idempotency, call accounting,
//! fault injection and the named scenarios, all on tokio's paused clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::cloud::sim::{
    REPLACEMENT_DELAY, STOPPED_RETENTION, ServiceSpec, SimAccount, TaskBehavior, build_scale,
    build_scenario, scenario::SCENARIO_HISTORY, scenario_names,
};
use ecs_reconciler::cloud::{Cloud, ErrorCategory};
use ecs_reconciler::domain::{
    Capacity, ContainerOverride, DesiredStatus, HealthStatus, NetworkConfig, RunTaskRequest, Tags,
    Task, TaskOverrides, TaskStatus,
};

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_736_900_000)
}

async fn advance(seconds: u64) {
    tokio::time::advance(Duration::from_secs(seconds)).await;
}

fn request(token: &str) -> RunTaskRequest {
    RunTaskRequest {
        task_definition: "batch:2".to_string(),
        overrides: TaskOverrides {
            containers: vec![ContainerOverride {
                name: "main".to_string(),
                command: Some(vec!["run".to_string()]),
                ..ContainerOverride::default()
            }],
            ..TaskOverrides::default()
        },
        tags: Tags::from([("team".to_string(), "data".to_string())]),
        group: Some("batch:test".to_string()),
        started_by: Some("tester".to_string()),
        capacity: Capacity::LaunchType("FARGATE".to_string()),
        network: Some(NetworkConfig {
            subnets: vec!["subnet-1".to_string()],
            security_groups: vec!["sg-1".to_string()],
            assign_public_ip: Some(false),
        }),
        client_token: token.to_string(),
    }
}

/// An account with one empty cluster `c`.
fn account() -> SimAccount {
    let sim = SimAccount::new(start());
    sim.add_cluster("c");
    sim
}

/// Advances a second at a time for `seconds`, recording each new lastStatus of `arn`.
async fn statuses_over(sim: &SimAccount, arn: &str, seconds: u64) -> Vec<TaskStatus> {
    let mut seen = vec![sim.task(arn).expect("task exists").last_status];
    for _ in 0..seconds {
        advance(1).await;
        let status = sim.task(arn).expect("task exists").last_status;
        if seen.last() != Some(&status) {
            seen.push(status);
        }
    }
    seen
}

fn desired_running(tasks: &[Task]) -> Vec<&Task> {
    tasks
        .iter()
        .filter(|t| t.desired_status == DesiredStatus::Running)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn lifecycle_runs_in_order_with_monotonic_timestamps() {
    let sim = account();
    let arn = sim.run_task("c", &request("")).await.unwrap();
    assert_eq!(sim.task(&arn).unwrap().timestamps.created_at, Some(start()));

    let up = statuses_over(&sim, &arn, 30).await;
    assert_eq!(
        up,
        [
            TaskStatus::Provisioning,
            TaskStatus::Pending,
            TaskStatus::Activating,
            TaskStatus::Running
        ]
    );
    let task = sim.task(&arn).unwrap();
    assert_eq!(task.health, HealthStatus::Healthy);
    let ts = &task.timestamps;
    let up_times = [
        ts.created_at,
        ts.connectivity_at,
        ts.pull_started_at,
        ts.pull_stopped_at,
        ts.started_at,
    ];
    assert!(up_times.iter().all(Option::is_some), "{ts:?}");
    assert!(up_times.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    assert!(ts.created_at < ts.started_at);
    assert_eq!(ts.stopping_at, None);

    sim.stop_task("c", &arn, "done here").await.unwrap();
    let down = statuses_over(&sim, &arn, 30).await;
    assert_eq!(
        down,
        [
            TaskStatus::Deactivating,
            TaskStatus::Stopping,
            TaskStatus::Deprovisioning,
            TaskStatus::Stopped
        ]
    );
    let task = sim.task(&arn).unwrap();
    assert_eq!(task.desired_status, DesiredStatus::Stopped);
    assert_eq!(task.stopped_reason.as_deref(), Some("done here"));
    let ts = &task.timestamps;
    let down_times = [
        ts.started_at,
        ts.stopping_at,
        ts.execution_stopped_at,
        ts.stopped_at,
    ];
    assert!(down_times.iter().all(Option::is_some), "{ts:?}");
    assert!(down_times.windows(2).all(|w| w[0] <= w[1]), "{ts:?}");
    assert!(ts.stopping_at < ts.stopped_at);
}

#[tokio::test(start_paused = true)]
async fn hanging_task_stays_until_stopped_and_the_scheduler_replaces_it() {
    let sim = account();
    let spec =
        ServiceSpec::new("web", 3).then_launch(1, TaskBehavior::hangs_in(TaskStatus::Provisioning));
    sim.add_service("c", spec);
    advance(3600).await;

    let tasks = sim.tasks("c");
    assert_eq!(tasks.len(), 3);
    let stuck: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.last_status == TaskStatus::Provisioning)
        .collect();
    assert_eq!(stuck.len(), 1, "{tasks:?}");
    let stuck_arn = stuck[0].arn.clone();
    assert_eq!(stuck[0].timestamps.created_at, Some(start()));
    assert_eq!(stuck[0].timestamps.connectivity_at, None);
    let web = sim.service("c", "web").unwrap();
    assert_eq!((web.running_count, web.pending_count), (2, 1));

    sim.stop_task("c", &stuck_arn, "ecs-reconciler: stuck in PROVISIONING")
        .await
        .unwrap();
    let stopping = sim.task(&stuck_arn).unwrap();
    assert_eq!(stopping.desired_status, DesiredStatus::Stopped);
    assert_eq!(stopping.timestamps.stopping_at, Some(sim.now()));
    assert_eq!(sim.service("c", "web").unwrap().pending_count, 0);

    advance(REPLACEMENT_DELAY.as_secs() + 1).await;
    let stopped = sim.task(&stuck_arn).unwrap();
    assert_eq!(stopped.last_status, TaskStatus::Stopped);
    assert_eq!(
        stopped.stopped_reason.as_deref(),
        Some("ecs-reconciler: stuck in PROVISIONING")
    );
    assert_eq!(stopped.timestamps.execution_stopped_at, None, "never ran");
    let tasks = sim.tasks("c");
    assert_eq!(desired_running(&tasks).len(), 3, "replacement launched");

    advance(30).await;
    let web = sim.service("c", "web").unwrap();
    assert_eq!((web.running_count, web.pending_count), (3, 0));
    let replacement = sim.tasks("c").into_iter().last().unwrap();
    assert_ne!(replacement.arn, stuck_arn);
    assert_eq!(replacement.group.as_deref(), Some("service:web"));
    assert!(
        replacement
            .started_by
            .as_deref()
            .is_some_and(|s| s.starts_with("ecs-svc/")),
        "{replacement:?}"
    );
    assert_eq!(sim.tasks_stopped_with("ecs-reconciler:").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn task_hanging_on_the_way_down_stays_after_stop_task() {
    let sim = account();
    let arn = sim
        .start_task(
            "c",
            &request(""),
            TaskBehavior::hangs_in(TaskStatus::Stopping),
        )
        .to_string();
    advance(60).await;
    assert_eq!(sim.task(&arn).unwrap().last_status, TaskStatus::Running);

    sim.stop_task("c", &arn, "first").await.unwrap();
    advance(3600).await;
    let task = sim.task(&arn).unwrap();
    assert_eq!(task.last_status, TaskStatus::Stopping);

    // StopTask again is accepted and changes nothing: the first reason stands.
    sim.stop_task("c", &arn, "second").await.unwrap();
    advance(60).await;
    let again = sim.task(&arn).unwrap();
    assert_eq!(again.last_status, TaskStatus::Stopping);
    assert_eq!(again.stopped_reason.as_deref(), Some("first"));
    assert_eq!(again.timestamps.stopping_at, task.timestamps.stopping_at);
}

#[tokio::test(start_paused = true)]
async fn stopped_tasks_vanish_after_an_hour() {
    let sim = account();
    let arn = sim.run_task("c", &request("")).await.unwrap();
    advance(30).await;
    sim.stop_task("c", &arn, "bye").await.unwrap();
    advance(30).await;
    let stopped_at = sim.task(&arn).unwrap().timestamps.stopped_at.unwrap();

    let until_expiry = STOPPED_RETENTION - sim.now().duration_since(stopped_at).unwrap();
    tokio::time::advance(until_expiry - Duration::from_secs(1)).await;
    let snapshot = sim.observe_cluster("c").await.unwrap();
    assert!(
        snapshot.tasks.iter().any(|t| t.arn == arn),
        "still reported"
    );

    advance(2).await;
    assert_eq!(sim.task(&arn), None);
    let snapshot = sim.observe_cluster("c").await.unwrap();
    assert!(snapshot.tasks.is_empty());
    let err = sim.stop_task("c", &arn, "again").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
}

#[tokio::test(start_paused = true)]
async fn run_task_honors_the_client_token_and_keeps_the_request() {
    let sim = account();
    let req = request("replace-abc123");
    let first = sim.run_task("c", &req).await.unwrap();
    advance(10).await;
    let second = sim.run_task("c", &req).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(sim.tasks("c").len(), 1);
    assert_eq!(sim.call_count("RunTask"), 2);

    let other = sim.run_task("c", &request("replace-def456")).await.unwrap();
    assert_ne!(other, first);
    assert_eq!(sim.tasks("c").len(), 2);

    let task = sim.task(&first).unwrap();
    assert!(
        task.arn
            .starts_with("arn:aws:ecs:us-east-1:123456789012:task/c/")
    );
    assert_eq!(task.id().len(), 32);
    assert_eq!(
        task.cluster_arn,
        "arn:aws:ecs:us-east-1:123456789012:cluster/c"
    );
    assert_eq!(
        task.task_definition_arn,
        "arn:aws:ecs:us-east-1:123456789012:task-definition/batch:2"
    );
    assert_eq!(task.group.as_deref(), req.group.as_deref());
    assert_eq!(task.started_by.as_deref(), req.started_by.as_deref());
    assert_eq!(task.tags, req.tags);
    assert_eq!(*task.overrides, req.overrides);
    assert_eq!(task.capacity, req.capacity);
    assert_eq!(task.network, req.network);
    assert_eq!(
        task.container_instance_arn, None,
        "Fargate is not placed on instances"
    );
}

#[tokio::test(start_paused = true)]
async fn observe_counts_the_calls_the_adapter_would_make() {
    let sim = account();
    sim.add_service("c", ServiceSpec::new("big", 239));
    for i in 1..=11 {
        sim.add_service("c", ServiceSpec::new(&format!("small-{i}"), 1));
    }
    for i in 0..150 {
        sim.add_container_instance("c", &format!("i-{i:017x}"));
    }
    advance(60).await;
    assert_eq!(sim.tasks("c").len(), 250);

    let snapshot = sim.observe_cluster("c").await.unwrap();
    assert_eq!(snapshot.tasks.len(), 250);
    assert_eq!(snapshot.services.len(), 12);
    assert_eq!(snapshot.container_instances.len(), 150);
    assert!(snapshot.is_complete());
    assert_eq!(snapshot.observed_at, start() + Duration::from_secs(60));
    let expected = BTreeMap::from([
        ("DescribeClusters".to_string(), 1),
        ("ListServices".to_string(), 1),
        ("DescribeServices".to_string(), 2),
        ("ListTasks".to_string(), 3 + 1),
        ("DescribeTasks".to_string(), 3),
        ("ListContainerInstances".to_string(), 2),
        ("DescribeContainerInstances".to_string(), 2),
    ]);
    assert_eq!(sim.calls(), expected);
    assert_eq!(sim.mutating_calls(), 0);

    sim.reset_calls();
    let victims: Vec<String> = sim
        .tasks("c")
        .into_iter()
        .take(101)
        .map(|t| t.arn)
        .collect();
    for arn in &victims {
        sim.stop_task("c", arn, "test").await.unwrap();
    }
    sim.observe_cluster("c").await.unwrap();
    let calls = sim.calls();
    assert_eq!(calls["StopTask"], 101);
    assert_eq!(calls["ListTasks"], 2 + 2, "149 running, 101 stopped");
    assert_eq!(calls["DescribeTasks"], 3);
    assert_eq!(sim.mutating_calls(), 101);

    sim.reset_calls();
    assert!(sim.calls().is_empty());
    assert_eq!(sim.mutating_calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn injected_faults_fail_without_effect() {
    let sim = account();
    let arn = sim.run_task("c", &request("")).await.unwrap();
    advance(30).await;

    sim.fail_next("StopTask", ErrorCategory::Throttled, 2);
    for _ in 0..2 {
        let err = sim.stop_task("c", &arn, "x").await.unwrap_err();
        assert_eq!(err.category, ErrorCategory::Throttled);
        assert_eq!(err.operation, "StopTask");
        assert_eq!(
            sim.task(&arn).unwrap().desired_status,
            DesiredStatus::Running
        );
    }
    sim.stop_task("c", &arn, "x").await.unwrap();
    assert_eq!(
        sim.task(&arn).unwrap().desired_status,
        DesiredStatus::Stopped
    );
    assert_eq!(sim.call_count("StopTask"), 3);

    sim.fail_next("RunTask", ErrorCategory::Transient, 1);
    let err = sim.run_task("c", &request("t1")).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Transient);
    assert_eq!(sim.tasks("c").len(), 1, "no task started");

    sim.fail_next("DescribeClusters", ErrorCategory::Transient, 1);
    let err = sim.observe_cluster("c").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Transient);
    assert!(sim.observe_cluster("c").await.is_ok());

    // Throttled, a part is a gap (denied, it would fail the snapshot, as on AWS).
    sim.fail_next("DescribeContainerInstances", ErrorCategory::Throttled, 1);
    sim.add_container_instance("c", "i-0123456789abcdef0");
    let snapshot = sim.observe_cluster("c").await.unwrap();
    assert!(!snapshot.is_complete());
    assert!(
        snapshot.gaps[0].contains("container instances"),
        "{:?}",
        snapshot.gaps
    );
    assert!(snapshot.container_instances.is_empty());
    assert_eq!(snapshot.tasks.len(), 1);

    sim.deny("ListTasks");
    for _ in 0..2 {
        let err = sim.observe_cluster("c").await.unwrap_err();
        assert_eq!(err.category, ErrorCategory::Denied);
    }
    sim.deny("ListClusters");
    let err = sim.list_clusters().await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Denied);
}

#[tokio::test(start_paused = true)]
async fn unknown_cluster_and_task_are_not_found() {
    let sim = account();
    let err = sim.observe_cluster("nope").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
    let err = sim.run_task("nope", &request("")).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
    let err = sim
        .stop_task(
            "nope",
            "arn:aws:ecs:us-east-1:123456789012:task/nope/abc",
            "x",
        )
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
    let err = sim
        .stop_task("c", "arn:aws:ecs:us-east-1:123456789012:task/c/abc", "x")
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
    assert_eq!(sim.list_clusters().await.unwrap(), ["c"]);
}

#[tokio::test(start_paused = true)]
async fn health_and_stopping_on_its_own_follow_the_behavior() {
    let sim = account();
    let spec = ServiceSpec::new("w", 2)
        .then_launch(
            1,
            TaskBehavior::turns_unhealthy_after(Duration::from_secs(60)),
        )
        .then_launch(
            1,
            TaskBehavior::stops_on_its_own_after(Duration::from_secs(300)),
        );
    sim.add_service("c", spec);
    let tasks = sim.tasks("c");
    let (sick, quitter) = (tasks[0].arn.clone(), tasks[1].arn.clone());

    advance(30).await;
    let task = sim.task(&sick).unwrap();
    assert_eq!(task.last_status, TaskStatus::Running);
    assert_eq!(task.health, HealthStatus::Healthy);
    let started = task.timestamps.started_at.unwrap();
    let until = (started + Duration::from_secs(59))
        .duration_since(sim.now())
        .unwrap();
    tokio::time::advance(until).await;
    assert_eq!(sim.task(&sick).unwrap().health, HealthStatus::Healthy);
    advance(2).await;
    assert_eq!(sim.task(&sick).unwrap().health, HealthStatus::Unhealthy);

    advance(300).await;
    let quit = sim.task(&quitter).unwrap();
    assert_eq!(quit.desired_status, DesiredStatus::Stopped);
    assert_eq!(
        quit.stopped_reason.as_deref(),
        Some("Essential container in task exited")
    );
    advance(30).await;
    assert_eq!(sim.service("c", "w").unwrap().running_count, 2, "replaced");
    assert_eq!(sim.mutating_calls(), 0, "nothing was called");
}

#[tokio::test(start_paused = true)]
async fn desired_count_and_container_instances_are_settable() {
    let sim: Arc<SimAccount> = Arc::new(account());
    let ci = sim.add_container_instance("c", "i-0aaaaaaaaaaaaaaaa");
    sim.add_service("c", ServiceSpec::new("web", 2));
    advance(30).await;
    assert!(
        sim.tasks("c")
            .iter()
            .all(|t| t.container_instance_arn.as_deref() == Some(ci.as_str())),
        "EC2 tasks are placed on the only instance"
    );

    sim.set_desired_count("c", "web", 4);
    advance(30).await;
    assert_eq!(sim.count_desired_running("c", TaskStatus::Running), 4);
    sim.set_desired_count("c", "web", 1);
    advance(30).await;
    assert_eq!(sim.count_desired_running("c", TaskStatus::Running), 1);
    assert_eq!(sim.service("c", "web").unwrap().desired_count, 1);

    sim.set_agent_connected("c", &ci, false);
    sim.set_container_instance_status("c", &ci, "DRAINING");
    let snapshot = Cloud::observe_cluster(&sim, "c").await.unwrap();
    let instance = &snapshot.container_instances[0];
    assert_eq!(
        (instance.status.as_str(), instance.agent_connected),
        ("DRAINING", false)
    );
    assert_eq!(instance.registered_at, Some(start()));
}

#[tokio::test(start_paused = true)]
async fn every_scenario_builds_and_shows_what_it_promises() {
    let history_ago = start() - SCENARIO_HISTORY;
    for name in scenario_names() {
        let (sim, scenario) = build_scenario(name, start()).expect("known scenario");
        assert_eq!(scenario.name, *name);
        assert!(!scenario.description.is_empty());
        assert_eq!(sim.now(), start());
        for cluster in &scenario.clusters {
            let snapshot = sim.observe_cluster(cluster).await.unwrap();
            assert!(snapshot.is_complete(), "{name}/{cluster}");
            assert!(!snapshot.tasks.is_empty(), "{name}/{cluster}");
        }
        assert_eq!(sim.list_clusters().await.unwrap(), scenario.clusters);
    }
    assert!(build_scenario("no-such-scenario", start()).is_none());

    let stuck_in = |sim: &SimAccount, cluster: &str, status: TaskStatus| -> Vec<Task> {
        sim.tasks(cluster)
            .into_iter()
            .filter(|t| t.desired_status == DesiredStatus::Running && t.last_status == status)
            .collect()
    };

    let (sim, _) = build_scenario("stuck-provisioning", start()).unwrap();
    let stuck = stuck_in(&sim, "demo-web", TaskStatus::Provisioning);
    assert_eq!(stuck.len(), 2);
    assert!(
        stuck
            .iter()
            .all(|t| t.timestamps.created_at == Some(history_ago))
    );
    assert_eq!(
        sim.count_desired_running("demo-web", TaskStatus::Running),
        4
    );
    assert_eq!(sim.service("demo-web", "web").unwrap().desired_count, 6);
    for task in &stuck {
        sim.stop_task("demo-web", &task.arn, "stuck").await.unwrap();
    }
    advance(60).await;
    assert_eq!(
        sim.count_desired_running("demo-web", TaskStatus::Running),
        6,
        "replacements healthy"
    );

    let (sim, _) = build_scenario("hang-activating", start()).unwrap();
    assert_eq!(stuck_in(&sim, "demo-api", TaskStatus::Activating).len(), 1);
    assert_eq!(
        sim.count_desired_running("demo-api", TaskStatus::Running),
        3
    );

    let (sim, _) = build_scenario("unhealthy", start()).unwrap();
    let health: Vec<HealthStatus> = sim.tasks("demo-worker").iter().map(|t| t.health).collect();
    assert_eq!(
        health
            .iter()
            .filter(|h| **h == HealthStatus::Unhealthy)
            .count(),
        1
    );
    assert_eq!(
        health
            .iter()
            .filter(|h| **h == HealthStatus::Healthy)
            .count(),
        2
    );

    let (sim, _) = build_scenario("standalone", start()).unwrap();
    let tasks = sim.tasks("demo-batch");
    assert_eq!(tasks.len(), 3);
    assert!(
        tasks
            .iter()
            .all(|t| t.group.as_deref() == Some("batch:nightly")
                && t.tags.get("team").map(|v| v.as_str()) == Some("data")
                && !t.overrides.containers.is_empty()
                && t.network.is_some())
    );
    let pending = stuck_in(&sim, "demo-batch", TaskStatus::Pending);
    assert_eq!(pending.len(), 1);
    assert!(pending[0].timestamps.pull_started_at.is_some());
    assert_eq!(pending[0].timestamps.pull_stopped_at, None);
    let mut rerun = request("rerun-1");
    rerun.group = pending[0].group.as_deref().map(String::from);
    let arn = sim.run_task("demo-batch", &rerun).await.unwrap();
    advance(60).await;
    assert_eq!(sim.task(&arn).unwrap().last_status, TaskStatus::Running);

    let (sim, _) = build_scenario("outage", start()).unwrap();
    assert_eq!(
        stuck_in(&sim, "demo-web", TaskStatus::Provisioning).len(),
        8
    );
    assert_eq!(
        sim.count_desired_running("demo-web", TaskStatus::Running),
        2
    );

    let (sim, scenario) = build_scenario("mixed", start()).unwrap();
    assert_eq!(
        scenario.clusters,
        ["demo-api", "demo-batch", "demo-web", "demo-worker"]
    );
    let exempt: Vec<Task> = sim
        .tasks("demo-batch")
        .into_iter()
        .filter(|t| t.tags.get("ecs-reconciler/exempt").map(|v| v.as_str()) == Some("true"))
        .collect();
    assert_eq!(exempt.len(), 1);
    assert!(exempt[0].last_status.is_way_up());
    assert_eq!(
        stuck_in(&sim, "demo-web", TaskStatus::Provisioning).len(),
        2
    );
    assert_eq!(stuck_in(&sim, "demo-api", TaskStatus::Activating).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn scale_account_observes_every_cluster() {
    let (sim, scenario) = build_scale(start(), 20, 500, 0.03);
    assert_eq!(scenario.clusters.len(), 20);
    let mut total = 0;
    let mut stuck = 0;
    for cluster in &scenario.clusters {
        let snapshot = sim.observe_cluster(cluster).await.unwrap();
        total += snapshot.tasks.len();
        stuck += snapshot
            .tasks
            .iter()
            .filter(|t| t.last_status.is_way_up())
            .count();
        assert_eq!(snapshot.services.len(), 10);
    }
    assert_eq!(total, 10_000);
    assert_eq!(stuck, 300);
    let calls = sim.calls();
    assert_eq!(calls["DescribeTasks"], 20 * 5);
    assert_eq!(calls["ListTasks"], 20 * (5 + 1));
}
