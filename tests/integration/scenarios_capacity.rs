//! Capacity scenarios on the simulated account with paused time: the seed story (a broken
//! launch template version), short and exhausted capacity, a healthy rollout, a disconnected
//! agent; each also in dry run; and the controller killed between the steps of a remediation.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::{AuditRecord, AuditSink, Outcome};
use ecs_reconciler::causes::CauseCode;
use ecs_reconciler::cloud::read_only::ReadOnly;
use ecs_reconciler::cloud::sim::{
    GroupSpec, ServiceSpec, SimAccount, VersionBehavior, build_scenario,
};
use ecs_reconciler::cloud::{Cloud, ErrorCategory};
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::demo::scenario_policies;
use ecs_reconciler::domain::{
    Capacity, CapacityProviderStrategyItem, DesiredStatus, GroupLaunch, TaskStatus,
};
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "demo-capacity";
const GROUP: &str = "demo-asg";

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

fn scenario(name: &str) -> Arc<SimAccount> {
    Arc::new(build_scenario(name, start()).expect("scenario exists").0)
}

fn controller<C: Cloud>(cloud: C, dry_run: bool) -> Arc<Controller<C>> {
    Arc::new(Controller::new(
        cloud,
        scenario_policies().unwrap(),
        ControllerSettings {
            dry_run,
            ..ControllerSettings::default()
        },
        AuditSink::memory(),
    ))
}

fn waiting(sim: &SimAccount) -> usize {
    sim.tasks(CLUSTER)
        .iter()
        .filter(|t| t.desired_status == DesiredStatus::Running && t.last_status.is_way_up())
        .count()
}

fn running(sim: &SimAccount) -> usize {
    sim.tasks(CLUSTER)
        .iter()
        .filter(|t| t.desired_status == DesiredStatus::Running)
        .filter(|t| t.last_status == TaskStatus::Running)
        .count()
}

/// Passes every 30 s until `done` or `limit`; the virtual time it took.
async fn until<C: Cloud>(
    c: &Arc<Controller<C>>,
    limit: Duration,
    done: impl Fn() -> bool,
) -> Option<Duration> {
    let token = CancellationToken::new();
    let began = tokio::time::Instant::now();
    loop {
        c.pass(&token).await;
        if done() {
            return Some(began.elapsed());
        }
        if began.elapsed() >= limit {
            return None;
        }
        tokio::time::advance(Duration::from_secs(30)).await;
    }
}

/// The records of one action but the intents (`started`, written before the calls;
/// audit_trail.rs checks that each is paired with its outcome).
fn of<'a>(records: &'a [AuditRecord], action: &str) -> Vec<&'a AuditRecord> {
    records
        .iter()
        .filter(|r| r.action == action && r.outcome != Outcome::Started)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn seed_story_cordons_the_broken_version_and_recovers() {
    let sim = scenario("broken-launch-template");
    assert_eq!(waiting(&sim), 4);
    let c = controller(Arc::clone(&sim), false);
    let recovery = until(&c, Duration::from_secs(3600), || running(&sim) == 6)
        .await
        .expect("the stuck tasks reach RUNNING");
    eprintln!("seed story: time to recovery {recovery:?} (virtual)");
    assert!(recovery <= Duration::from_secs(5 * 60), "{recovery:?}");
    assert_eq!(
        sim.call_count("CreateOrUpdateTags"),
        1,
        "the cordon recorded once"
    );
    assert_eq!(sim.call_count("UpdateAutoScalingGroup"), 1, "pinned once");
    assert_eq!(sim.call_count("TerminateInstanceInAutoScalingGroup"), 2);
    assert_eq!(
        sim.call_count("SetDesiredCapacity"),
        0,
        "never nudged a broken version"
    );
    assert_eq!(
        sim.call_count("StopTask"),
        0,
        "stuck tasks were not replaced"
    );
    let group = sim.auto_scaling_group(GROUP).unwrap();
    match &group.launch {
        GroupLaunch::LaunchTemplate { version, .. } => assert_eq!(version, "1"),
        other => panic!("{other:?}"),
    }
    assert!(
        group
            .tags
            .keys()
            .any(|k| k.starts_with("ecs-reconciler/cordon/"))
    );
    let records = c.audit().records();
    let cordons = of(&records, "cordonLaunchTemplate");
    assert_eq!(cordons.len(), 1);
    assert_eq!(cordons[0].outcome.to_string(), "done");
    assert!(
        cordons[0].reason.contains("version 2 is broken"),
        "{}",
        cordons[0].reason
    );
    assert!(
        cordons[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("pinned to version 1")
    );
    // Judged on its own record later: the cordon is never lifted by the controller.
    until(&c, Duration::from_secs(600), || false).await;
    assert_eq!(sim.call_count("UpdateAutoScalingGroup"), 1);
    assert!(
        sim.auto_scaling_group(GROUP)
            .unwrap()
            .tags
            .keys()
            .any(|k| k.starts_with("ecs-reconciler/cordon/"))
    );
}

#[tokio::test(start_paused = true)]
async fn seed_story_without_a_controller_never_recovers() {
    let sim = scenario("broken-launch-template");
    tokio::time::advance(Duration::from_secs(2 * 3600)).await;
    assert_eq!(waiting(&sim), 4);
}

#[tokio::test(start_paused = true)]
async fn seed_story_dry_run_records_the_cordon_and_changes_nothing() {
    let sim = scenario("broken-launch-template");
    let read_only = Arc::new(ReadOnly::new(Arc::clone(&sim)));
    let c = controller(Arc::clone(&read_only), true);
    until(&c, Duration::from_secs(600), || false).await;
    assert_eq!(sim.mutating_calls(), 0);
    assert_eq!(read_only.refused_writes(), 0);
    assert_eq!(waiting(&sim), 4);
    let records = c.audit().records();
    let cordons = of(&records, "cordonLaunchTemplate");
    assert_eq!(cordons.len(), 1, "recorded once, not every pass");
    assert_eq!(cordons[0].outcome.to_string(), "planned");
    assert_eq!(cordons[0].mode, "dry-run");
    assert_eq!(
        of(&records, "stopTask")
            .iter()
            .filter(|r| r.outcome.to_string() == "skipped:capacityCause")
            .count(),
        4
    );
}

#[tokio::test(start_paused = true)]
async fn short_capacity_is_nudged_once_per_cooldown_and_recovers() {
    let sim = scenario("capacity-short");
    let c = controller(Arc::clone(&sim), false);
    let recovery = until(&c, Duration::from_secs(3600), || running(&sim) == 6)
        .await
        .expect("recovers");
    eprintln!("capacity short: time to recovery {recovery:?} (virtual)");
    let nudges = sim.call_count("SetDesiredCapacity");
    // 4 waiting tasks at 2 slots an instance: two nudges of one, 5 minutes apart.
    assert_eq!(nudges, 2, "one step per cooldown");
    assert!(
        recovery >= Duration::from_secs(5 * 60),
        "no second nudge inside the cooldown"
    );
    assert_eq!(sim.auto_scaling_group(GROUP).unwrap().desired_capacity, 3);
    assert_eq!(sim.call_count("CreateOrUpdateTags"), 2, "each nudge tagged");
    assert_eq!(sim.call_count("StopTask"), 0);

    let dry = scenario("capacity-short");
    let c = controller(ReadOnly::new(Arc::clone(&dry)), true);
    until(&c, Duration::from_secs(600), || false).await;
    assert_eq!(dry.mutating_calls(), 0);
    let records = c.audit().records();
    assert_eq!(
        of(&records, "nudgeCapacity")[0].outcome.to_string(),
        "planned"
    );
}

#[tokio::test(start_paused = true)]
async fn exhausted_capacity_gets_no_action_and_one_clear_record() {
    for dry_run in [false, true] {
        let sim = scenario("capacity-exhausted");
        let c = controller(Arc::clone(&sim), dry_run);
        until(&c, Duration::from_secs(900), || false).await;
        assert_eq!(sim.mutating_calls(), 0);
        let records = c.audit().records();
        let nudges = of(&records, "nudgeCapacity");
        assert_eq!(nudges.len(), 1, "{records:?}");
        assert_eq!(nudges[0].outcome.to_string(), "skipped:capacityExhausted");
        assert!(
            nudges[0].reason.starts_with("capacity exhausted"),
            "{}",
            nudges[0].reason
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_healthy_rollout_is_not_cordoned() {
    // Tasks wait in PROVISIONING past the 10m limit while a new version's instances are still
    // booting inside the 10m registration timeout: only the cordon logic (booting is not
    // failed) keeps the controller from cordoning the new version.
    let sim = Arc::new(SimAccount::new(start()));
    sim.add_cluster(CLUSTER);
    let template =
        sim.add_launch_template("demo-lt", VersionBehavior::good(Duration::from_secs(60)));
    sim.add_auto_scaling_group(
        GroupSpec::new(GROUP, CLUSTER, &template, 1)
            .with_slots(2)
            .with_existing(1, Some(1), Duration::from_secs(3 * 24 * 3600)),
    );
    sim.add_capacity_provider(CLUSTER, "demo-cp", Some(GROUP));
    let strategy = Capacity::CapacityProviderStrategy(vec![CapacityProviderStrategyItem {
        capacity_provider: "demo-cp".into(),
        weight: 1,
        base: 0,
    }]);
    sim.add_service(CLUSTER, ServiceSpec::new("app", 2).with_capacity(strategy));
    tokio::time::advance(Duration::from_secs(60)).await;
    sim.set_desired_count(CLUSTER, "app", 6);
    tokio::time::advance(Duration::from_secs(6 * 60)).await;
    // Version 2 is good but slow: it registers 8.5 minutes after launch.
    let slow = VersionBehavior::good(Duration::from_secs(8 * 60));
    sim.publish_launch_template_version(&template, slow, true);
    sim.set_desired_capacity(GROUP, 3).await.unwrap();
    tokio::time::advance(Duration::from_secs(5 * 60)).await;
    sim.reset_calls();

    let c = controller(Arc::clone(&sim), false);
    let token = CancellationToken::new();
    let first = c.pass(&token).await;
    let plan = &first.clusters[0].plan;
    assert!(
        plan.findings.iter().any(|f| f.elapsed > f.limit),
        "tasks must be stuck past the limit: {:?}",
        plan.findings
    );
    assert!(
        plan.capacity
            .iter()
            .any(|f| f.cause.code() == CauseCode::CapacityOnItsWay),
        "the new version's instances are booting: {:?}",
        plan.capacity
    );
    until(&c, Duration::from_secs(20 * 60), || false).await;
    assert_eq!(sim.mutating_calls(), 0, "{:?}", sim.calls());
    assert_eq!(running(&sim), 6);
}

#[tokio::test(start_paused = true)]
async fn an_instance_whose_agent_is_gone_is_drained_once() {
    let sim = scenario("agent-disconnected");
    let c = controller(Arc::clone(&sim), false);
    // The controller counts from its first sighting (ECS gives no disconnect time): 15m.
    until(&c, Duration::from_secs(14 * 60), || false).await;
    assert_eq!(
        sim.call_count("UpdateContainerInstancesState"),
        0,
        "not before the limit"
    );
    until(&c, Duration::from_secs(5 * 60), || false).await;
    assert_eq!(sim.call_count("UpdateContainerInstancesState"), 1);
    let drained: Vec<_> = sim
        .container_instances(CLUSTER)
        .into_iter()
        .filter(|ci| ci.status == "DRAINING")
        .collect();
    assert_eq!(drained.len(), 1);
    assert!(!drained[0].agent_connected);
    let records = c.audit().records();
    let drains = of(&records, "drainContainerInstance");
    assert_eq!(drains.len(), 1);
    assert!(
        drains[0]
            .reason
            .starts_with("container agent disconnected for")
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_between_pin_and_terminate_finishes_without_repeating() {
    let sim = scenario("broken-launch-template");
    sim.fail_next(
        "TerminateInstanceInAutoScalingGroup",
        ErrorCategory::Transient,
        1,
    );
    let first = controller(Arc::clone(&sim), false);
    until(&first, Duration::ZERO, || false).await;
    assert_eq!(sim.call_count("UpdateAutoScalingGroup"), 1);
    let failed = of(&first.audit().records(), "cordonLaunchTemplate")[0].clone();
    assert_eq!(failed.outcome.to_string(), "failed:transient");
    drop(first);
    tokio::time::advance(Duration::from_secs(30)).await;
    let second = controller(Arc::clone(&sim), false);
    until(&second, Duration::from_secs(3600), || running(&sim) == 6)
        .await
        .expect("recovers after the restart");
    assert_eq!(
        sim.call_count("CreateOrUpdateTags"),
        1,
        "the cordon is not recorded twice"
    );
    assert_eq!(
        sim.call_count("UpdateAutoScalingGroup"),
        1,
        "not pinned twice"
    );
    // One failed attempt plus the two instances terminated after the restart.
    assert_eq!(sim.call_count("TerminateInstanceInAutoScalingGroup"), 3);
}

#[tokio::test(start_paused = true)]
async fn a_crash_between_the_cordon_tag_and_the_pin_finishes_the_pin() {
    let sim = scenario("broken-launch-template");
    sim.fail_next("UpdateAutoScalingGroup", ErrorCategory::Transient, 1);
    let first = controller(Arc::clone(&sim), false);
    until(&first, Duration::ZERO, || false).await;
    assert_eq!(sim.call_count("CreateOrUpdateTags"), 1);
    assert_eq!(sim.call_count("TerminateInstanceInAutoScalingGroup"), 0);
    drop(first);
    let second = controller(Arc::clone(&sim), false);
    until(&second, Duration::from_secs(3600), || running(&sim) == 6)
        .await
        .expect("recovers after the restart");
    assert_eq!(sim.call_count("CreateOrUpdateTags"), 1);
    assert_eq!(
        sim.call_count("UpdateAutoScalingGroup"),
        2,
        "one failed, one done"
    );
    assert_eq!(sim.call_count("TerminateInstanceInAutoScalingGroup"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_crash_after_the_nudge_tag_finishes_the_nudge_once() {
    let sim = scenario("capacity-short");
    sim.fail_next("SetDesiredCapacity", ErrorCategory::Transient, 1);
    let first = controller(Arc::clone(&sim), false);
    until(&first, Duration::ZERO, || false).await;
    assert_eq!(sim.call_count("CreateOrUpdateTags"), 1);
    assert_eq!(sim.auto_scaling_group(GROUP).unwrap().desired_capacity, 1);
    drop(first);
    let second = controller(Arc::clone(&sim), false);
    until(&second, Duration::from_secs(60), || false).await;
    assert_eq!(sim.auto_scaling_group(GROUP).unwrap().desired_capacity, 2);
    assert_eq!(
        sim.call_count("CreateOrUpdateTags"),
        1,
        "finished, not a new nudge"
    );
    let records = second.audit().records();
    assert_eq!(of(&records, "nudgeCapacity")[0].outcome.to_string(), "done");
}

#[tokio::test(start_paused = true)]
async fn a_denied_pin_is_recorded_and_nothing_is_terminated() {
    let sim = scenario("broken-launch-template");
    sim.deny("UpdateAutoScalingGroup");
    let c = controller(Arc::clone(&sim), false);
    until(&c, Duration::from_secs(120), || false).await;
    assert_eq!(
        sim.call_count("TerminateInstanceInAutoScalingGroup"),
        0,
        "no instance terminated while the group would relaunch the broken version"
    );
    let records = c.audit().records();
    let cordons = of(&records, "cordonLaunchTemplate");
    assert_eq!(
        cordons.len() as u64,
        sim.call_count("UpdateAutoScalingGroup"),
        "every attempt has its outcome written"
    );
    assert!(
        cordons
            .iter()
            .all(|r| r.outcome.to_string() == "failed:denied")
    );
    assert!(
        cordons[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("pinning failed")
    );
    assert_eq!(waiting(&sim), 4);
}
