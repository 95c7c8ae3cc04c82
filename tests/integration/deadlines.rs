//! Task deadlines on the simulated account in paused time: a task that crosses its limit is
//! acted on at its deadline, not at the next resync, and the deadline reads only the tasks
//! that fell due.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ecs_reconciler::audit::Outcome;
use ecs_reconciler::cloud::sim::{SimAccount, TaskBehavior};
use ecs_reconciler::controller::ControllerSettings;
use ecs_reconciler::deadline::deadlines;
use ecs_reconciler::diagnose::{Condition, Sightings};
use ecs_reconciler::domain::TaskStatus;
use ecs_reconciler::events::EventSink;
use ecs_reconciler::telemetry::Trigger;

use crate::support::fixtures::{TaskBuilder, mins, now, snapshot, usual_policy};
use crate::work_queue::{
    Reconciles, SlowCluster, controller, run_for, service, start, two_minute_policy,
};

/// Resync every 10 minutes, so only a deadline can explain an action within them.
fn slow_resync() -> ControllerSettings {
    ControllerSettings {
        resync: Duration::from_secs(600),
        event_resync: Duration::from_secs(600),
        ..ControllerSettings::default()
    }
}

fn parse_time(t: &str) -> SystemTime {
    humantime::parse_rfc3339(t).expect("audit times are RFC 3339")
}

/// prod-web: `healthy` healthy tasks and one launched now that hangs in PROVISIONING.
fn cluster_with_one_hanging(healthy: u32) -> Arc<SimAccount> {
    let sim = Arc::new(SimAccount::new(start()));
    sim.add_cluster("prod-web");
    sim.add_service(
        "prod-web",
        service("web", healthy + 1)
            .then_launch(1, TaskBehavior::hangs_in(TaskStatus::Provisioning)),
    );
    sim
}

#[tokio::test(start_paused = true)]
async fn a_task_past_its_limit_is_acted_on_at_its_deadline_not_at_the_next_resync() {
    let sim = cluster_with_one_hanging(2);
    let hanging = sim
        .tasks("prod-web")
        .into_iter()
        .find(|t| t.last_status == TaskStatus::Provisioning)
        .expect("one task hangs");
    let created = hanging.timestamps.created_at.expect("createdAt");
    let reconciles = Arc::new(Reconciles::default());
    let c = controller(
        Arc::clone(&sim),
        two_minute_policy(),
        slow_resync(),
        Arc::clone(&reconciles),
    );
    run_for(&c, Duration::from_secs(300)).await;
    let records = c.audit().records();
    let stop = records
        .iter()
        .find(|r| r.outcome == Outcome::Done && r.target == hanging.arn)
        .expect("the hanging task was stopped");
    let late = parse_time(&stop.time)
        .duration_since(created + Duration::from_secs(120))
        .expect("never before the deadline");
    assert!(
        late <= Duration::from_secs(2),
        "acted {late:?} after the deadline"
    );
    assert_eq!(
        reconciles.count(Trigger::Resync),
        1,
        "only the first resync ran"
    );
    assert!(reconciles.count(Trigger::Deadline) >= 1);
    assert_eq!(sim.call_count("StopTask"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_describes_only_the_tasks_that_fell_due() {
    // 250 healthy tasks: a resync would page ListTasks and DescribeTasks three times each.
    let sim = cluster_with_one_hanging(250);
    let reconciles = Arc::new(Reconciles::default());
    let c = controller(
        Arc::clone(&sim),
        two_minute_policy(),
        slow_resync(),
        Arc::clone(&reconciles),
    );
    // The healthy tasks are RUNNING after 30 s.
    tokio::time::advance(Duration::from_secs(30)).await;
    let token = tokio_util::sync::CancellationToken::new();
    let first = c.pass(&token).await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!(first.action_count(), 0, "nothing is stuck yet");
    assert_eq!(
        sim.call_count("DescribeTasks"),
        3,
        "the resync pages 100 at a time"
    );
    sim.reset_calls();
    run_for(&c, Duration::from_secs(180)).await;
    assert_eq!(
        sim.call_count("ListTasks"),
        0,
        "no resync: {:?}",
        sim.calls()
    );
    assert_eq!(
        sim.call_count("DescribeTasks"),
        1,
        "one call for the one task due: {:?}",
        sim.calls()
    );
    assert_eq!(sim.call_count("StopTask"), 1);
    assert_eq!(reconciles.count(Trigger::Deadline), 1);
}

#[test]
fn deadlines_follow_diagnosis_entry_rule_and_the_policy_limit() {
    let policies = usual_policy();
    let provisioning = TaskBuilder::service("web", "p")
        .stuck_in(TaskStatus::Provisioning, 3)
        .build();
    let pending = TaskBuilder::service("web", "q")
        .status(TaskStatus::Pending)
        .timestamps(|t| *t = Default::default())
        .build();
    let running = TaskBuilder::service("web", "r").build();
    let snap = snapshot(vec![provisioning, pending, running], &[("web", 3)]);
    let mut sightings = Sightings::default();
    let found = deadlines(&snap, &policies, &sightings);
    assert_eq!(
        found.len(),
        1,
        "PENDING without a timestamp has no clock yet: {found:?}"
    );
    assert_eq!(
        found[0].1.condition,
        Condition::InState(TaskStatus::Provisioning)
    );
    assert_eq!(found[0].1.at(), now() - mins(3) + mins(10));
    sightings.record(&snap);
    let found = deadlines(&snap, &policies, &sightings);
    let pending = found.iter().find(|(arn, _)| arn.ends_with("/q")).unwrap();
    assert_eq!(
        pending.1.at(),
        now() + mins(10),
        "first sighting plus the limit"
    );
}

#[tokio::test(start_paused = true)]
async fn in_event_mode_an_unhealthy_task_is_found_by_the_health_reads_within_their_interval() {
    let sim = Arc::new(SimAccount::new(start()));
    sim.add_cluster("prod-web");
    sim.add_service(
        "prod-web",
        service("web", 1).then_launch(
            1,
            TaskBehavior::turns_unhealthy_after(Duration::from_secs(60)),
        ),
    );
    let reconciles = Arc::new(Reconciles::default());
    let c = controller(
        Arc::clone(&sim),
        two_minute_policy(),
        ControllerSettings {
            health_interval: Duration::from_secs(60),
            ..slow_resync()
        },
        Arc::clone(&reconciles),
    );
    c.set_degraded(false);
    // RUNNING and HEALTHY at the first resync; UNHEALTHY about 40 s later.
    tokio::time::advance(Duration::from_secs(30)).await;
    run_for(&c, Duration::from_secs(480)).await;
    assert_eq!(
        sim.call_count("DescribeClusters"),
        1,
        "one resync: {:?}",
        sim.calls()
    );
    let records = c.audit().records();
    let stop = records
        .iter()
        .find(|r| r.outcome == Outcome::Done)
        .expect("the unhealthy task was stopped");
    let task = sim.task(&stop.target).expect("still described");
    let unhealthy_at = task.timestamps.started_at.unwrap() + Duration::from_secs(60);
    let after = parse_time(&stop.time)
        .duration_since(unhealthy_at)
        .expect("after it turned unhealthy");
    // The 5 minute limit, plus at most one health interval (and a second of rounding).
    assert!(after >= Duration::from_secs(300), "{after:?}");
    assert!(after <= Duration::from_secs(361), "{after:?}");
    // Health reads are DescribeTasks of the watched tasks only: one task, one call each.
    // The resync, the health read that saw it, the read at its deadline.
    assert_eq!(sim.call_count("DescribeTasks"), 3, "{:?}", sim.calls());
}

#[tokio::test(start_paused = true)]
async fn in_event_mode_an_agent_that_stays_away_is_drained_at_its_limit() {
    use ecs_reconciler::events::{Event, InstanceChange};
    let sim = Arc::new(SimAccount::new(start()));
    let cluster_arn = sim.add_cluster("prod-web");
    let instance = sim.add_container_instance("prod-web", "i-0abc");
    sim.add_service("prod-web", service("web", 1));
    let drains = crate::support::fixtures::policy(
        "{PROVISIONING: 2m}",
        "{drainContainerInstance: {agentDisconnected: 3m}}",
        "{maxActionsPerHour: 100, maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}",
    );
    let c = controller(Arc::clone(&sim), drains, slow_resync(), Arc::default());
    c.set_degraded(false);
    tokio::time::advance(Duration::from_secs(30)).await;
    c.pass(&tokio_util::sync::CancellationToken::new()).await;
    sim.set_agent_connected("prod-web", &instance, false);
    let gone_at = sim.now();
    let change = InstanceChange {
        cluster_arn,
        container_instance_arn: instance.clone(),
        ec2_instance_id: Some("i-0abc".into()),
        version: 2,
        agent_connected: false,
        status: "ACTIVE".into(),
    };
    assert_eq!(
        c.apply(Event::ContainerInstance(change), gone_at),
        ecs_reconciler::events::Disposition::Applied
    );
    run_for(&c, Duration::from_secs(240)).await;
    assert_eq!(
        sim.call_count("UpdateContainerInstancesState"),
        1,
        "{:?}",
        sim.calls()
    );
    assert_eq!(
        sim.call_count("DescribeClusters"),
        1,
        "no resync: {:?}",
        sim.calls()
    );
    let records = c.audit().records();
    let drain = records
        .iter()
        .find(|r| r.outcome == Outcome::Done && r.target == instance)
        .expect("drained");
    let late = parse_time(&drain.time)
        .duration_since(gone_at + Duration::from_secs(180))
        .expect("not before the limit");
    assert!(
        late <= Duration::from_secs(2),
        "drained {late:?} after the limit"
    );
}

/// When the Done record of the stop of `arn` was written, after `deadline`.
fn acted_after(
    records: &[ecs_reconciler::audit::AuditRecord],
    arn: &str,
    deadline: SystemTime,
) -> Duration {
    let stop = records
        .iter()
        .find(|r| r.outcome == Outcome::Done && r.target == arn)
        .expect("the hanging task was stopped");
    parse_time(&stop.time)
        .duration_since(deadline)
        .expect("never before the deadline")
}

#[tokio::test(start_paused = true)]
async fn a_deadline_falling_during_its_clusters_long_resync_is_met_at_once() {
    let sim = cluster_with_one_hanging(2);
    let hanging = sim
        .tasks("prod-web")
        .into_iter()
        .find(|t| t.last_status == TaskStatus::Provisioning)
        .expect("one task hangs");
    let deadline = hanging.timestamps.created_at.expect("createdAt") + Duration::from_secs(120);
    let reconciles = Arc::new(Reconciles::default());
    // Resync every 30 s; from the second on, each observation takes 5 virtual minutes: the
    // one begun at 30 s is in flight when the deadline falls at 120 s.
    let cloud = SlowCluster {
        later_take: Some(Duration::from_secs(300)),
        ..SlowCluster::new(&sim, "prod-web")
    };
    let c = controller(
        cloud,
        two_minute_policy(),
        ControllerSettings::default(),
        Arc::clone(&reconciles),
    );
    // By 123 s of virtual time (the audit's time is the picture's, so it is the account's
    // calls that tell when).
    run_for(&c, Duration::from_secs(123)).await;
    assert_eq!(sim.call_count("StopTask"), 1, "stopped at its deadline");
    let late = acted_after(&c.audit().records(), &hanging.arn, deadline);
    assert!(
        late <= Duration::from_secs(2),
        "acted {late:?} after the deadline"
    );
    assert_eq!(
        reconciles.count(Trigger::Resync),
        1,
        "the long resync has not arrived yet"
    );
    assert_eq!(sim.call_count("StopTask"), 1);
}

#[tokio::test(start_paused = true)]
async fn after_a_long_resync_the_clusters_clock_runs_from_when_its_observation_began() {
    let sim = cluster_with_one_hanging(2);
    // The healthy tasks are RUNNING after 30 s; the controller starts then (times below are
    // from the start of the account).
    tokio::time::advance(Duration::from_secs(30)).await;
    let healthy = sim
        .tasks("prod-web")
        .into_iter()
        .find(|t| t.last_status == TaskStatus::Running)
        .expect("a healthy task");
    // At 40 s it fails and its replacement hangs in PROVISIONING: the first resync (30 s) does
    // not see it, the one begun at 60 s (taking 90 s) does; its deadline (160 s) falls after
    // that observation ended (150 s). A clock started at the end would fire it 90 s late.
    sim.fail_task_after(
        &healthy.arn,
        Duration::from_secs(10),
        TaskBehavior::hangs_in(TaskStatus::Provisioning),
    );
    let cloud = SlowCluster {
        later_take: Some(Duration::from_secs(90)),
        ..SlowCluster::new(&sim, "prod-web")
    };
    let reconciles = Arc::new(Reconciles::default());
    let c = controller(
        cloud,
        two_minute_policy(),
        ControllerSettings::default(),
        Arc::clone(&reconciles),
    );
    // Until 163 s: both deadlines (120 s, 160 s) have passed by up to 3 s.
    run_for(&c, Duration::from_secs(133)).await;
    assert_eq!(
        sim.call_count("StopTask"),
        2,
        "both stopped at their deadlines"
    );
    let done: Vec<_> = c
        .audit()
        .records()
        .into_iter()
        .filter(|r| r.outcome == Outcome::Done)
        .collect();
    assert_eq!(done.len(), 2, "both hanging tasks were stopped: {done:?}");
    for record in &done {
        let since = parse_time(&record.evidence["clockStartedAt"]);
        let late = acted_after(&done, &record.target, since + Duration::from_secs(120));
        assert!(
            late <= Duration::from_secs(2),
            "{}: acted {late:?} after the deadline",
            record.target
        );
    }
}

#[tokio::test(start_paused = true)]
async fn events_that_came_during_a_clusters_first_observation_are_not_lost() {
    use ecs_reconciler::cloud::sim::QueueFaults;
    use ecs_reconciler::events::pump::Pump;
    use ecs_reconciler::telemetry::Silent;

    let sim = cluster_with_one_hanging(2);
    tokio::time::advance(Duration::from_secs(30)).await;
    let healthy = sim
        .tasks("prod-web")
        .into_iter()
        .find(|t| t.last_status == TaskStatus::Running)
        .expect("a healthy task");
    // At 40 s it fails and its replacement hangs in PROVISIONING: its only event comes while
    // the first observation (begun at 30 s, its picture of then, 5 minutes long) is in flight.
    sim.fail_task_after(
        &healthy.arn,
        Duration::from_secs(10),
        TaskBehavior::hangs_in(TaskStatus::Provisioning),
    );
    let cloud = SlowCluster {
        later_take: Some(Duration::from_secs(300)),
        slow_from: 0,
        ..SlowCluster::new(&sim, "prod-web")
    };
    let reconciles = Arc::new(Reconciles::default());
    let c = controller(
        cloud,
        two_minute_policy(),
        ControllerSettings::default(),
        Arc::clone(&reconciles),
    );
    let queue = sim.event_queue(QueueFaults::default());
    let pump = Pump::new(
        queue,
        Arc::clone(&c) as Arc<dyn EventSink>,
        Arc::new(Silent),
    );
    let token = tokio_util::sync::CancellationToken::new();
    let pumping = tokio::spawn(pump.run(token.clone()));
    // Until 340 s: the first picture arrived at 330 s; the next resync (event mode) is 10
    // minutes later, so only the remembered event explains a stop of the replacement.
    run_for(&c, Duration::from_secs(310)).await;
    token.cancel();
    pumping.await.expect("the pump ends");
    assert!(c.events_healthy(), "event mode");
    assert_eq!(
        reconciles.count(Trigger::Resync),
        1,
        "only the first resync ran"
    );
    assert_eq!(
        sim.call_count("StopTask"),
        2,
        "both hanging tasks stopped after the first picture"
    );
}
