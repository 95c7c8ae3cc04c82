//! The cached pictures and the events applied to them (the controller as an `EventSink`), on
//! the simulated account in paused time: versions decide, an unknown service task joins with
//! its tags unread and nothing is done to it before a read reports them, and the resync
//! cadence follows the event source's health.

use std::sync::Arc;
use std::time::Duration;

use ecs_reconciler::cloud::ErrorCategory;
use ecs_reconciler::cloud::sim::{SimAccount, TaskBehavior};
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::domain::{HealthStatus, Task, TaskStatus};
use ecs_reconciler::events::{Disposition, Event, EventSink, InstanceChange, TaskChange};
use ecs_reconciler::telemetry::Trigger;
use tokio_util::sync::CancellationToken;

use crate::work_queue::{Reconciles, controller, run_for, service, start, two_minute_policy};

/// What a task state change event says of `task`: no tags, health unknown, no security groups.
fn event_of(mut task: Task, version: u64) -> Event {
    task.tags.clear();
    task.health = HealthStatus::Unknown;
    if let Some(net) = task.network.as_mut() {
        net.security_groups.clear();
    }
    task.version = version;
    Event::Task(TaskChange {
        task: Box::new(task),
    })
}

fn event_settings() -> ControllerSettings {
    ControllerSettings {
        event_resync: Duration::from_secs(600),
        ..ControllerSettings::default()
    }
}

#[tokio::test(start_paused = true)]
async fn events_in_any_order_never_move_a_task_backwards() {
    let sim = Arc::new(SimAccount::new(start()));
    sim.add_cluster("prod-web");
    sim.add_service("prod-web", service("web", 2).with_tag("team", "storefront"));
    let c = controller(
        Arc::clone(&sim),
        two_minute_policy(),
        event_settings(),
        Arc::default(),
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    c.pass(&CancellationToken::new()).await;
    let cached = c.cached("prod-web").expect("observed");
    let task = cached.tasks[0].clone();
    assert_eq!(task.last_status, TaskStatus::Running);
    assert_eq!(
        task.tags.get("team").map(|v| v.as_str()),
        Some("storefront")
    );
    let mut newer = task.clone();
    newer.last_status = TaskStatus::Deactivating;
    newer.desired_status = ecs_reconciler::domain::DesiredStatus::Stopped;
    let mut older = task.clone();
    older.last_status = TaskStatus::Running;
    let at = sim.now();
    assert_eq!(
        c.apply(event_of(newer, task.version + 2), at),
        Disposition::Applied
    );
    assert_eq!(
        c.apply(event_of(older, task.version + 1), at),
        Disposition::Stale
    );
    assert_eq!(
        c.apply(event_of(task.clone(), task.version + 2), at),
        Disposition::Stale,
        "a duplicate is stale too"
    );
    let cached = c.cached("prod-web").unwrap();
    let now = cached.tasks.iter().find(|t| t.arn == task.arn).unwrap();
    assert_eq!(now.last_status, TaskStatus::Deactivating);
    assert_eq!(now.version, task.version + 2);
    assert_eq!(now.tags, task.tags, "the cached tags are kept");
    assert_eq!(now.health, task.health, "the cached health is kept");
}

/// A cluster whose service `web` has one healthy task, observed once, and the controller; the
/// service's next task hangs in PROVISIONING.
async fn with_a_hanging_launch(
    service_tags: &[(&str, &str)],
) -> (
    Arc<SimAccount>,
    Arc<Controller<Arc<SimAccount>>>,
    Arc<Reconciles>,
) {
    let sim = Arc::new(SimAccount::new(start()));
    sim.add_cluster("prod-web");
    let mut spec = service("web", 1);
    for (k, v) in service_tags {
        spec = spec.with_tag(k, v);
    }
    sim.add_service("prod-web", spec);
    let reconciles = Arc::new(Reconciles::default());
    let c = controller(
        Arc::clone(&sim),
        two_minute_policy(),
        ControllerSettings {
            resync: Duration::from_secs(600),
            ..event_settings()
        },
        Arc::clone(&reconciles),
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    c.pass(&CancellationToken::new()).await;
    sim.push_service_launch(
        "prod-web",
        "web",
        TaskBehavior::hangs_in(TaskStatus::Provisioning),
    );
    (sim, c, reconciles)
}

/// The service starts a task the cache has not seen; three minutes later (past its limit)
/// an event names it, carrying no tags. Returns the task.
async fn an_unseen_task_past_its_limit(sim: &SimAccount, c: &Controller<Arc<SimAccount>>) -> Task {
    sim.set_desired_count("prod-web", "web", 2);
    tokio::time::advance(Duration::from_secs(180)).await;
    let unseen = sim
        .tasks("prod-web")
        .into_iter()
        .find(|t| t.last_status == TaskStatus::Provisioning)
        .expect("the new task hangs");
    assert_eq!(
        c.apply(event_of(unseen.clone(), unseen.version), sim.now()),
        Disposition::UnknownTask
    );
    unseen
}

#[tokio::test(start_paused = true)]
async fn an_unknown_service_task_joins_unread_and_is_described_before_anything_is_done() {
    let (sim, c, reconciles) = with_a_hanging_launch(&[("ecs-reconciler/exempt", "true")]).await;
    let unseen = an_unseen_task_past_its_limit(&sim, &c).await;
    let cached = c.cached("prod-web").unwrap();
    let joined = cached
        .tasks
        .iter()
        .find(|t| t.arn == unseen.arn)
        .expect("it joined");
    assert!(joined.tags.is_empty(), "as the event shows it");
    assert!(cached.tags_unread.contains(&unseen.arn));

    sim.reset_calls();
    run_for(&c, Duration::from_secs(5)).await;
    assert_eq!(sim.call_count("DescribeTasks"), 1, "{:?}", sim.calls());
    assert_eq!(
        sim.call_count("ListTasks"),
        0,
        "no resync: {:?}",
        sim.calls()
    );
    assert_eq!(sim.call_count("StopTask"), 0, "its tags exempt it");
    assert_eq!(
        reconciles.count(Trigger::Deadline),
        1,
        "its deadline read it"
    );
    let cached = c.cached("prod-web").unwrap();
    assert!(cached.tags_unread.is_empty());
    let described = cached.tasks.iter().find(|t| t.arn == unseen.arn).unwrap();
    assert_eq!(
        described
            .tags
            .get("ecs-reconciler/exempt")
            .map(|v| v.as_str()),
        Some("true")
    );
}

#[tokio::test(start_paused = true)]
async fn a_stuck_task_whose_tags_no_read_reported_is_held() {
    let (sim, c, _) = with_a_hanging_launch(&[]).await;
    let unseen = an_unseen_task_past_its_limit(&sim, &c).await;
    sim.fail_always("DescribeTasks", ErrorCategory::Throttled);
    run_for(&c, Duration::from_secs(5)).await;
    assert_eq!(sim.call_count("StopTask"), 0, "held: its tags are unknown");
    let records = c.audit().records();
    let held = records
        .iter()
        .find(|r| r.target == unseen.arn)
        .expect("the hold is recorded");
    assert_eq!(held.outcome.to_string(), "skipped:incompleteObservation");

    // Re-read (past its deadline, every `resync` without events), then replaced.
    sim.clear_faults();
    run_for(&c, Duration::from_secs(11 * 60)).await;
    assert_eq!(sim.call_count("StopTask"), 1, "read, then replaced");
}

#[tokio::test(start_paused = true)]
async fn events_about_clusters_out_of_scope_change_nothing() {
    let sim = Arc::new(SimAccount::new(start()));
    sim.add_cluster("prod-web");
    sim.add_cluster("staging");
    sim.add_service("staging", service("web", 1));
    let c = controller(
        Arc::clone(&sim),
        two_minute_policy(),
        event_settings(),
        Arc::default(),
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    c.pass(&CancellationToken::new()).await;
    let task = sim.tasks("staging").remove(0);
    let version = task.version + 1;
    assert_eq!(
        c.apply(event_of(task, version), sim.now()),
        Disposition::OutOfScope
    );
    let instance = InstanceChange {
        cluster_arn: "arn:aws:ecs:us-east-1:123456789012:cluster/staging".into(),
        container_instance_arn: "arn:aws:ecs:us-east-1:123456789012:container-instance/staging/x"
            .into(),
        ec2_instance_id: None,
        version: 3,
        agent_connected: false,
        status: "ACTIVE".into(),
    };
    assert_eq!(
        c.apply(Event::ContainerInstance(instance), sim.now()),
        Disposition::OutOfScope
    );
    assert!(c.cached("staging").is_none());
}

#[tokio::test(start_paused = true)]
async fn the_resync_runs_at_the_event_cadence_and_falls_back_to_30s_when_degraded() {
    let sim = Arc::new(SimAccount::new(start()));
    sim.add_cluster("prod-web");
    sim.add_service("prod-web", service("web", 2));
    let reconciles = Arc::new(Reconciles::default());
    let c = controller(
        Arc::clone(&sim),
        two_minute_policy(),
        event_settings(),
        Arc::clone(&reconciles),
    );
    c.set_degraded(false);
    assert!(c.events_healthy());
    let token = CancellationToken::new();
    let handle = tokio::spawn(Arc::clone(&c).run(token.clone()));
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(
        reconciles.count(Trigger::Resync),
        1,
        "events healthy: one resync in 5 minutes"
    );
    c.set_degraded(true);
    tokio::time::sleep(Duration::from_secs(299)).await;
    // The last resync was 5 minutes ago: one right away, then every 30 s.
    assert_eq!(reconciles.count(Trigger::Resync), 1 + 10);
    c.set_degraded(false);
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(
        reconciles.count(Trigger::Resync),
        11,
        "events healthy again: the next resync is 10 minutes after the last"
    );
    token.cancel();
    handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_service_action_or_a_group_activity_reads_the_clusters_capacity_chain_again() {
    use ecs_reconciler::cloud::sim::build_scenario;
    use ecs_reconciler::demo::scenario_policies;
    use ecs_reconciler::events::GroupActivityKind;
    let sim = Arc::new(build_scenario("capacity-short", start()).unwrap().0);
    let c = controller(
        Arc::clone(&sim),
        scenario_policies().unwrap(),
        ControllerSettings {
            resync: Duration::from_secs(600),
            ..event_settings()
        },
        Arc::default(),
    );
    c.pass(&CancellationToken::new()).await;
    let cached = c.cached("demo-capacity").expect("observed");
    let group = cached.auto_scaling_groups[0].name.clone();
    let activity = |group_name: &str| Event::GroupActivity {
        group_name: group_name.to_string(),
        kind: GroupActivityKind::LaunchUnsuccessful,
        message: None,
    };
    assert_eq!(
        c.apply(activity("someone-elses-asg"), sim.now()),
        Disposition::OutOfScope
    );
    assert_eq!(c.apply(activity(&group), sim.now()), Disposition::Applied);
    let action = Event::ServiceAction {
        cluster_arn: cached.cluster_arn.clone(),
        service_arn: cached.services[0].arn.clone(),
        event_name: "SERVICE_TASK_PLACEMENT_FAILURE".into(),
        reason: None,
    };
    assert_eq!(c.apply(action, sim.now()), Disposition::Applied);
    sim.reset_calls();
    run_for(&c, Duration::from_secs(5)).await;
    assert_eq!(
        sim.call_count("ListTasks"),
        0,
        "no resync: {:?}",
        sim.calls()
    );
    assert_eq!(
        sim.call_count("DescribeAutoScalingGroups"),
        1,
        "both events, one read of the group: {:?}",
        sim.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn a_change_made_while_a_reconcile_holds_the_picture_is_merged_once_it_is_free() {
    use crate::support::fixtures::{TaskBuilder, snapshot};
    use ecs_reconciler::cache::{ClusterCache, Merge};
    use ecs_reconciler::cloud::TaskReads;
    let a = TaskBuilder::service("web", "a").build();
    let b = TaskBuilder::service("web", "b").build();
    let now = tokio::time::Instant::now();
    let mut cache = ClusterCache::new(
        snapshot(vec![a.clone(), b.clone()], &[("web", 2)]),
        now,
        now + Duration::from_secs(30),
    );
    let held = Arc::clone(cache.snapshot());
    let mut newer = a.clone();
    newer.version = a.version + 1;
    newer.last_status = TaskStatus::Deactivating;
    newer.tags.clear();
    assert_eq!(cache.apply_task(newer.clone()), Merge::Applied);
    assert_eq!(
        cache.task(&a.arn).unwrap().last_status,
        TaskStatus::Deactivating
    );
    assert_eq!(
        held.tasks[0].last_status,
        TaskStatus::Running,
        "the held picture is untouched"
    );
    drop(held);
    let observed_at = cache.snapshot().observed_at;
    // b is gone (DescribeTasks: MISSING); a's newer picture survives an older describe.
    let reads = TaskReads {
        tasks: vec![a.clone()],
        missing: vec![b.arn.clone()],
        gaps: Vec::new(),
    };
    cache.merge_reads(
        reads,
        Vec::new(),
        observed_at + Duration::from_secs(5),
        Vec::new(),
    );
    let picture = cache.snapshot();
    assert_eq!(picture.tasks.len(), 1, "the missing task is removed");
    assert_eq!(picture.tasks[0].last_status, TaskStatus::Deactivating);
    assert_eq!(
        picture.tasks[0].tags, a.tags,
        "the event kept the cached tags"
    );
    assert_eq!(picture.observed_at, observed_at + Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn with_events_the_resync_lists_every_task_and_describes_only_the_new_ones() {
    let sim = Arc::new(SimAccount::new(start()));
    sim.add_cluster("prod-web");
    sim.add_service("prod-web", service("web", 150));
    // No health read falls in the window (the policy has an `unhealthy` limit).
    let c = controller(
        Arc::clone(&sim),
        two_minute_policy(),
        ControllerSettings {
            health_interval: Duration::from_secs(3600),
            ..event_settings()
        },
        Arc::default(),
    );
    // Every task is RUNNING before the controller first looks.
    tokio::time::advance(Duration::from_secs(60)).await;
    c.set_degraded(false);
    let token = CancellationToken::new();
    let handle = tokio::spawn(Arc::clone(&c).run(token.clone()));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(c.cached("prod-web").unwrap().tasks.len(), 150);
    // Two tasks start that no event reports (a lost event).
    sim.set_desired_count("prod-web", "web", 152);
    sim.reset_calls();
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        sim.call_count("ListTasks"),
        3,
        "two pages of desired RUNNING, one of STOPPED: {:?}",
        sim.calls()
    );
    assert_eq!(
        sim.call_count("DescribeTasks"),
        1,
        "only the two new tasks: {:?}",
        sim.calls()
    );
    let cached = c.cached("prod-web").unwrap();
    assert_eq!(cached.tasks.len(), 152, "the lost event is repaired");
    assert!(cached.tags_unread.is_empty());
    token.cancel();
    handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn with_events_a_fleet_too_large_for_the_resync_share_is_resynced_less_often() {
    let sim = Arc::new(SimAccount::new(start()));
    sim.add_cluster("prod-web");
    sim.add_service("prod-web", service("web", 250));
    let reconciles = Arc::new(Reconciles::default());
    // One resync costs 3 + 1 ListTasks pages (RUNNING, STOPPED) and 1 ListContainerInstances
    // (no instances to describe) = 5 reads; at 0.005
    // reads a second that is one resync every 1,000 s, not every 600 s.
    let c = controller(
        Arc::clone(&sim),
        two_minute_policy(),
        ControllerSettings {
            resync_read_rate: Some(0.005),
            ..event_settings()
        },
        Arc::clone(&reconciles),
    );
    c.set_degraded(false);
    let token = CancellationToken::new();
    let handle = tokio::spawn(Arc::clone(&c).run(token.clone()));
    tokio::time::sleep(Duration::from_secs(990)).await;
    assert_eq!(
        reconciles.count(Trigger::Resync),
        1,
        "only the first observation"
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(reconciles.count(Trigger::Resync), 2, "then one at 1,000 s");
    token.cancel();
    handle.await.unwrap();
}
