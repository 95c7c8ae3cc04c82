//! The fault-injecting decorator ([`Faulty`]) over the simulated account: the controller keeps
//! going through each fault, the audit trail names what failed and why, a partial observation
//! replaces nothing, a stale read does not stop a task twice, and throttling slows the budget.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::{AuditRecord, AuditSink, Outcome};
use ecs_reconciler::cloud::budget::{ApiBudget, Category, PacingSettings};
use ecs_reconciler::cloud::faults::{Fault, Faulty, Method};
use ecs_reconciler::cloud::sim::{SimAccount, build_scenario};
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::demo::scenario_policies;
use tokio_util::sync::CancellationToken;

/// The scenario's 2 tasks stuck in PROVISIONING, in cluster demo-web.
const STUCK: usize = 2;

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

type Faulted = Faulty<Arc<SimAccount>>;

fn setup() -> (Arc<SimAccount>, Arc<Controller<Arc<Faulted>>>, Arc<Faulted>) {
    let sim = Arc::new(
        build_scenario("stuck-provisioning", start())
            .expect("scenario exists")
            .0,
    );
    let faulty = Arc::new(Faulty::new(Arc::clone(&sim)));
    let controller = Arc::new(Controller::new(
        Arc::clone(&faulty),
        scenario_policies().unwrap(),
        ControllerSettings::default(),
        AuditSink::memory(),
    ));
    (sim, controller, faulty)
}

/// Runs the controller's own loop for `time` of virtual time, then shuts it down.
async fn run_for<C: ecs_reconciler::cloud::Cloud>(c: &Arc<Controller<C>>, time: Duration) {
    let token = CancellationToken::new();
    let looping = tokio::spawn(Arc::clone(c).run(token.clone()));
    tokio::time::sleep(time).await;
    token.cancel();
    looping.await.expect("the loop ends cleanly");
}

fn stop_outcomes(records: &[AuditRecord]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.action == "stopTask" && r.outcome != Outcome::Started)
        .map(|r| r.outcome.to_string())
        .collect()
}

/// A failing StopTask is audited as `failed:<category>`, and a later pass replaces the task.
async fn failed_stop_is_audited_and_retried(fault: Fault, outcome: &str) {
    let (sim, c, faulty) = setup();
    faulty.script(Method::StopTask, fault, 1);
    run_for(&c, Duration::from_secs(180)).await;
    let outcomes = stop_outcomes(&c.audit().records());
    assert_eq!(
        outcomes.first().map(String::as_str),
        Some(outcome),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| *o == "done").count(),
        STUCK,
        "the loop kept going and replaced both: {outcomes:?}"
    );
    assert_eq!(faulty.pending(), 0);
    // The failed call never reached the account.
    assert_eq!(sim.call_count("StopTask"), STUCK as u64);
}

#[tokio::test(start_paused = true)]
async fn throttled_stop_task_is_audited_failed_throttled() {
    failed_stop_is_audited_and_retried(Fault::throttled(), "failed:throttled").await;
}

#[tokio::test(start_paused = true)]
async fn server_error_on_stop_task_is_audited_failed_transient() {
    failed_stop_is_audited_and_retried(Fault::server_error(), "failed:transient").await;
}

#[tokio::test(start_paused = true)]
async fn timeout_on_stop_task_is_audited_failed_transient() {
    failed_stop_is_audited_and_retried(Fault::timeout(), "failed:transient").await;
}

#[tokio::test(start_paused = true)]
async fn denied_stop_task_is_audited_failed_denied() {
    failed_stop_is_audited_and_retried(Fault::denied(), "failed:denied").await;
}

#[tokio::test(start_paused = true)]
async fn failed_observations_are_requeued_and_the_loop_recovers() {
    let (sim, c, faulty) = setup();
    faulty
        .script(Method::ObserveCluster, Fault::throttled(), 1)
        .script(Method::ObserveCluster, Fault::server_error(), 1)
        .script(Method::ObserveCluster, Fault::timeout(), 1);
    run_for(&c, Duration::from_secs(300)).await;
    assert_eq!(
        faulty.pending(),
        0,
        "every scripted observation failed once"
    );
    assert_eq!(sim.call_count("StopTask"), STUCK as u64);
    let outcomes = stop_outcomes(&c.audit().records());
    assert_eq!(outcomes, vec!["done"; STUCK]);
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_with_gaps_gets_no_replacement() {
    let (sim, c, faulty) = setup();
    faulty.script(Method::ObserveCluster, Fault::DropTasks(1), 1);
    let token = CancellationToken::new();
    let report = c.pass(&token).await;
    let cluster = &report.clusters[0];
    assert_eq!(cluster.snapshot.gaps.len(), 1);
    assert!(
        cluster.snapshot.gaps[0].starts_with("DescribeTasks failures[]: 1 task not described"),
        "{:?}",
        cluster.snapshot.gaps
    );
    assert_eq!(sim.call_count("StopTask"), 0);
    let outcomes = stop_outcomes(&c.audit().records());
    assert!(!outcomes.is_empty());
    assert!(
        outcomes
            .iter()
            .all(|o| o == "skipped:incompleteObservation"),
        "{outcomes:?}"
    );

    // The next, complete observation acts.
    tokio::time::advance(Duration::from_secs(30)).await;
    c.pass(&token).await;
    assert_eq!(sim.call_count("StopTask"), STUCK as u64);
}

#[tokio::test(start_paused = true)]
async fn a_stale_read_right_after_stop_task_does_not_stop_again() {
    let (sim, c, faulty) = setup();
    let token = CancellationToken::new();
    c.pass(&token).await;
    assert_eq!(sim.call_count("StopTask"), STUCK as u64);

    // DescribeTasks lags: the next two reads still show the tasks stuck in PROVISIONING.
    faulty.script(Method::ObserveCluster, Fault::Stale, 2);
    for _ in 0..2 {
        tokio::time::advance(Duration::from_secs(30)).await;
        let report = c.pass(&token).await;
        let stale = &report.clusters[0].snapshot;
        assert!(
            stale
                .tasks
                .iter()
                .filter(|t| t.desired_status == ecs_reconciler::domain::DesiredStatus::Running)
                .count()
                > 0
        );
    }
    assert_eq!(faulty.pending(), 0);
    assert_eq!(
        sim.call_count("StopTask"),
        STUCK as u64,
        "no second StopTask for a task already stopped"
    );
}

#[tokio::test(start_paused = true)]
async fn throttling_answers_slow_the_budget_down() {
    let budget = Arc::new(ApiBudget::new(&PacingSettings::default()).unwrap());
    let configured = budget.budget(Category::ClusterResourceModify).per_second;
    let sim = Arc::new(
        build_scenario("stuck-provisioning", start())
            .unwrap()
            .0
            .with_budget(Arc::clone(&budget)),
    );
    let faulty = Arc::new(Faulty::new(Arc::clone(&sim)).with_budget(Arc::clone(&budget)));
    faulty.script(Method::StopTask, Fault::throttled(), 2);
    let c = Arc::new(Controller::new(
        Arc::clone(&faulty),
        scenario_policies().unwrap(),
        ControllerSettings::default(),
        AuditSink::memory(),
    ));
    c.pass(&CancellationToken::new()).await;
    let modify = |b: &ApiBudget| {
        b.report()
            .into_iter()
            .find(|r| r.category == Category::ClusterResourceModify)
            .unwrap()
    };
    // Two throttles: halved twice.
    let slowed = modify(&budget).budget_per_sec;
    assert!(
        (slowed - configured / 4.0).abs() < 1e-9,
        "{slowed} vs {configured}"
    );

    // A throttle the simulated account answers is reported as well.
    sim.fail_next(
        "ListContainerInstances",
        ecs_reconciler::cloud::ErrorCategory::Throttled,
        1,
    );
    let read_before = budget
        .report()
        .into_iter()
        .find(|r| r.category == Category::ClusterResourceRead)
        .unwrap()
        .budget_per_sec;
    tokio::time::advance(Duration::from_secs(30)).await;
    c.pass(&CancellationToken::new()).await;
    let read_after = budget
        .report()
        .into_iter()
        .find(|r| r.category == Category::ClusterResourceRead)
        .unwrap()
        .budget_per_sec;
    assert!(read_after < read_before, "{read_after} < {read_before}");
}
