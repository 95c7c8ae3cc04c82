//! Scenarios on the simulated account with paused tokio time: the controller end to end, in
//! enforce and dry-run mode, with faults, restarts and shutdown.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::{AuditRecord, AuditSink, Outcome};
use ecs_reconciler::cloud::ErrorCategory;
use ecs_reconciler::cloud::read_only::ReadOnly;
use ecs_reconciler::cloud::sim::{SimAccount, build_scenario};
use ecs_reconciler::controller::{Controller, ControllerSettings, PassReport};
use ecs_reconciler::demo::{run_demo, scenario_policies};
use ecs_reconciler::domain::{DesiredStatus, HealthStatus, TaskStatus};
use ecs_reconciler::history::REPLACES_TAG;
use ecs_reconciler::policy::PolicySet;
use tokio_util::sync::CancellationToken;

use crate::support::fixtures::policies;

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

fn scenario(name: &str) -> Arc<SimAccount> {
    Arc::new(build_scenario(name, start()).expect("scenario exists").0)
}

fn controller<C: ecs_reconciler::cloud::Cloud>(
    cloud: C,
    set: PolicySet,
    dry_run: bool,
) -> Arc<Controller<C>> {
    Arc::new(Controller::new(
        cloud,
        set,
        ControllerSettings {
            dry_run,
            ..ControllerSettings::default()
        },
        AuditSink::memory(),
    ))
}

/// `passes` passes, 30 s of virtual time apart; the last report.
async fn passes<C: ecs_reconciler::cloud::Cloud>(
    c: &Arc<Controller<C>>,
    passes: usize,
) -> PassReport {
    let token = CancellationToken::new();
    let mut report = c.pass(&token).await;
    for _ in 1..passes {
        tokio::time::advance(Duration::from_secs(30)).await;
        report = c.pass(&token).await;
    }
    report
}

/// `action outcome` of every record but the intents (`started`, written before the calls;
/// audit_trail.rs checks that each is paired with its outcome).
fn outcomes(records: &[AuditRecord]) -> Vec<String> {
    records
        .iter()
        .filter(|r| r.outcome != Outcome::Started)
        .map(|r| format!("{} {}", r.action, r.outcome))
        .collect()
}

fn healthy_running(sim: &SimAccount, cluster: &str) -> usize {
    sim.tasks(cluster)
        .iter()
        .filter(|t| t.desired_status == DesiredStatus::Running)
        .filter(|t| t.last_status == TaskStatus::Running && t.health != HealthStatus::Unhealthy)
        .count()
}

#[tokio::test(start_paused = true)]
async fn stuck_provisioning_tasks_are_replaced_once_and_the_service_recovers() {
    let sim = scenario("stuck-provisioning");
    assert_eq!(healthy_running(&sim, "demo-web"), 4);
    let c = controller(Arc::clone(&sim), scenario_policies().unwrap(), false);
    passes(&c, 10).await;
    assert_eq!(
        sim.call_count("StopTask"),
        2,
        "each stuck task stopped exactly once"
    );
    assert_eq!(
        sim.call_count("RunTask"),
        0,
        "service tasks are replaced by the scheduler"
    );
    assert_eq!(healthy_running(&sim, "demo-web"), 6);
    let records = c.audit().records();
    assert_eq!(outcomes(&records), vec!["stopTask done", "stopTask done"]);
    let intents = records.iter().filter(|r| r.outcome == Outcome::Started);
    assert_eq!(intents.count(), 2, "each stop written ahead as an intent");
    for r in &records {
        assert_eq!(r.mode, "enforce");
        assert_eq!(r.policy, "demo-stuck-tasks");
        assert_eq!(r.cluster, "demo-web");
        assert_eq!(r.service.as_deref(), Some("web"));
        assert!(
            r.reason.starts_with("stuck in PROVISIONING for 15m"),
            "{}",
            r.reason
        );
        assert_eq!(r.evidence["clockSource"], "createdAt");
        assert_eq!(r.policy_set, "builtin-demo");
    }
    let stopped = sim.tasks_stopped_with("ecs-reconciler[");
    assert_eq!(stopped.len(), 2);
    assert!(stopped.iter().all(|t| {
        t.stopped_reason
            .as_deref()
            .unwrap()
            .starts_with("ecs-reconciler[stuck:PROVISIONING policy=demo-stuck-tasks]: ")
    }));
}

#[tokio::test(start_paused = true)]
async fn dry_run_makes_no_mutating_call_and_records_each_plan_once() {
    let sim = scenario("stuck-provisioning");
    let read_only = Arc::new(ReadOnly::new(Arc::clone(&sim)));
    let c = controller(Arc::clone(&read_only), scenario_policies().unwrap(), true);
    let report = passes(&c, 6).await;
    assert_eq!(sim.mutating_calls(), 0);
    assert_eq!(
        read_only.refused_writes(),
        0,
        "the controller never even tried"
    );
    assert_eq!(report.action_count(), 2, "still planned on the last pass");
    let records = c.audit().records();
    assert_eq!(
        outcomes(&records),
        vec!["stopTask planned", "stopTask planned"]
    );
    assert!(records.iter().all(|r| r.mode == "dry-run"));
    assert_eq!(healthy_running(&sim, "demo-web"), 4, "nothing changed");
}

#[tokio::test(start_paused = true)]
async fn an_audit_mode_policy_only_plans() {
    let sim = scenario("stuck-provisioning");
    let mut set = scenario_policies().unwrap();
    set.policies[0].mode = ecs_reconciler::policy::PolicyMode::Audit;
    let c = controller(Arc::clone(&sim), set, false);
    passes(&c, 3).await;
    assert_eq!(sim.mutating_calls(), 0);
    assert_eq!(
        outcomes(&c.audit().records()),
        vec!["stopTask planned", "stopTask planned"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_task_hanging_in_activating_is_replaced() {
    let sim = scenario("hang-activating");
    let c = controller(Arc::clone(&sim), scenario_policies().unwrap(), false);
    passes(&c, 6).await;
    assert_eq!(sim.call_count("StopTask"), 1);
    assert_eq!(healthy_running(&sim, "demo-api"), 4);
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_task_is_replaced_only_after_the_limit_from_first_sighting() {
    let sim = scenario("unhealthy");
    let c = controller(Arc::clone(&sim), scenario_policies().unwrap(), false);
    let token = CancellationToken::new();
    // The task is UNHEALTHY from the start; the policy allows 3m from the first sighting.
    let mut first_action_after = None;
    for pass in 0..20u64 {
        let report = c.pass(&token).await;
        if report.action_count() > 0 {
            first_action_after = Some(Duration::from_secs(pass * 30));
            break;
        }
        tokio::time::advance(Duration::from_secs(30)).await;
    }
    let after = first_action_after.expect("the unhealthy task is replaced");
    assert!(
        after > Duration::from_secs(180),
        "acted after {after:?}, before the 3m limit"
    );
    assert!(after <= Duration::from_secs(210), "acted late: {after:?}");
    assert_eq!(sim.call_count("StopTask"), 1);
    let r = &c.audit().records()[0];
    assert!(
        r.reason.starts_with("UNHEALTHY while RUNNING for 3m 30s"),
        "{}",
        r.reason
    );
    assert_eq!(r.evidence["clockSource"], "firstSeenByController");
}

#[tokio::test(start_paused = true)]
async fn a_standalone_task_is_rerun_once_with_its_settings() {
    let sim = scenario("standalone");
    let stuck = sim
        .tasks("demo-batch")
        .into_iter()
        .find(|t| t.last_status == TaskStatus::Pending)
        .expect("one task hangs in PENDING");
    let c = controller(Arc::clone(&sim), scenario_policies().unwrap(), false);
    passes(&c, 8).await;
    assert_eq!(sim.call_count("StopTask"), 1);
    assert_eq!(sim.call_count("RunTask"), 1);
    let replacement = sim
        .tasks("demo-batch")
        .into_iter()
        .find(|t| t.tags.get(REPLACES_TAG).map(|v| v.as_str()) == Some(stuck.id()))
        .expect("a replacement tagged with the task it replaces");
    assert_eq!(replacement.last_status, TaskStatus::Running);
    assert_eq!(replacement.task_definition_arn, stuck.task_definition_arn);
    assert_eq!(replacement.overrides, stuck.overrides);
    assert_eq!(replacement.group, stuck.group);
    assert_eq!(replacement.started_by, stuck.started_by);
    assert_eq!(replacement.capacity, stuck.capacity);
    assert_eq!(replacement.tags.get("team"), stuck.tags.get("team"));
    let records = c.audit().records();
    assert_eq!(outcomes(&records), vec!["replaceTask done"]);
    let done = records.iter().find(|r| r.outcome == Outcome::Done).unwrap();
    assert!(done.detail.as_deref().unwrap().contains(&replacement.arn));
}

#[tokio::test(start_paused = true)]
async fn a_wide_outage_pauses_the_policy_and_says_so_once() {
    let sim = scenario("outage");
    let c = controller(Arc::clone(&sim), scenario_policies().unwrap(), false);
    passes(&c, 5).await;
    assert_eq!(sim.mutating_calls(), 0);
    let records = c.audit().records();
    assert_eq!(
        records.len(),
        8,
        "one record per stuck task, not one per pass"
    );
    assert!(
        records
            .iter()
            .all(|r| r.outcome.to_string() == "skipped:pauseWhenStuckAbove")
    );
    assert!(
        records[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("8 of 10 tasks stuck")
    );
}

#[tokio::test(start_paused = true)]
async fn exempt_tasks_are_left_alone_and_a_denied_stop_does_not_stop_the_loop() {
    let sim = scenario("mixed");
    sim.deny("StopTask");
    let c = controller(Arc::clone(&sim), scenario_policies().unwrap(), false);
    let report = passes(&c, 3).await;
    assert!(report.errors.is_empty());
    assert_eq!(report.clusters.len(), 4, "every cluster reconciled");
    let records = c.audit().records();
    let exempt: Vec<_> = records
        .iter()
        .filter(|r| r.outcome.to_string() == "skipped:exempt")
        .collect();
    assert_eq!(exempt.len(), 1);
    assert!(
        sim.task(&exempt[0].target).unwrap().desired_status == DesiredStatus::Running,
        "the exempt task was not stopped"
    );
    let denied: Vec<_> = records
        .iter()
        .filter(|r| r.outcome.to_string() == "failed:denied")
        .collect();
    assert!(
        denied.len() >= 4,
        "each stuck task's stop recorded as denied: {denied:?}"
    );
    let before = denied.len();
    passes(&c, 2).await;
    let again = c
        .audit()
        .records()
        .iter()
        .filter(|r| r.outcome.to_string() == "failed:denied")
        .count();
    assert!(again > before, "it is retried");
    assert_eq!(
        again as u64,
        sim.call_count("StopTask"),
        "every attempt, repeated or not, has its outcome written"
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_cluster_is_reported_and_the_others_still_reconciled() {
    let sim = scenario("stuck-provisioning");
    let set = policies(
        "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {name: p}\nspec:\n  \
         target: {clusters: [demo-web, no-such-cluster]}\n  stuck: {PROVISIONING: 10m}\n  \
         remediate: {replaceTask: {}}\n",
    );
    let c = controller(Arc::clone(&sim), set, false);
    let report = passes(&c, 1).await;
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].0, "no-such-cluster");
    assert_eq!(report.errors[0].1.category, ErrorCategory::NotFound);
    assert_eq!(report.clusters.len(), 1);
    // Default maxInFlightPerService (25% of 6, so 1) lets one of the two stuck tasks go first.
    assert_eq!(sim.call_count("StopTask"), 1);
    assert_eq!(
        report.clusters[0].plan.held[0].hold.name(),
        "maxInFlightPerService"
    );
}

#[tokio::test(start_paused = true)]
async fn a_restart_between_stop_and_run_finishes_the_replacement_exactly_once() {
    let sim = scenario("standalone");
    sim.fail_next("RunTask", ErrorCategory::Transient, 1);
    let first = controller(Arc::clone(&sim), scenario_policies().unwrap(), false);
    passes(&first, 1).await;
    assert_eq!(sim.call_count("StopTask"), 1);
    assert_eq!(
        outcomes(&first.audit().records()),
        vec!["replaceTask failed:transient"]
    );
    drop(first);
    // A fresh process: nothing in memory, only what the account shows.
    tokio::time::advance(Duration::from_secs(30)).await;
    let second = controller(Arc::clone(&sim), scenario_policies().unwrap(), false);
    passes(&second, 6).await;
    assert_eq!(sim.call_count("StopTask"), 1, "never stopped twice");
    assert_eq!(
        outcomes(&second.audit().records()),
        vec!["runReplacement done"]
    );
    let replacements: Vec<_> = sim
        .tasks("demo-batch")
        .into_iter()
        .filter(|t| t.tags.contains_key(REPLACES_TAG))
        .collect();
    assert_eq!(replacements.len(), 1);
    // A third process after everything is done does nothing.
    let third = controller(Arc::clone(&sim), scenario_policies().unwrap(), false);
    passes(&third, 3).await;
    assert!(third.audit().records().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_hourly_budget_survives_a_restart() {
    let sim = scenario("stuck-provisioning");
    let set = policies(
        "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {name: budget}\nspec:\n  \
         target: {clusters: [demo-web]}\n  stuck: {PROVISIONING: 10m}\n  remediate: \
         {replaceTask: {}}\n  guardrails: {maxActionsPerHour: 1, maxInFlightPerService: 100%}\n",
    );
    let first = controller(Arc::clone(&sim), set.clone(), false);
    passes(&first, 1).await;
    assert_eq!(sim.call_count("StopTask"), 1);
    drop(first);
    let second = controller(Arc::clone(&sim), set, false);
    passes(&second, 4).await;
    assert_eq!(
        sim.call_count("StopTask"),
        1,
        "the budget used before the restart counts"
    );
    let records = second.audit().records();
    assert_eq!(
        outcomes(&records),
        vec!["stopTask skipped:maxActionsPerHour"]
    );
}

#[tokio::test(start_paused = true)]
async fn the_loop_runs_until_cancelled_and_then_stops() {
    let sim = scenario("stuck-provisioning");
    let c = controller(Arc::clone(&sim), scenario_policies().unwrap(), false);
    let token = CancellationToken::new();
    let handle = tokio::spawn(Arc::clone(&c).run(token.clone()));
    tokio::time::sleep(Duration::from_secs(5 * 60)).await;
    token.cancel();
    handle.await.expect("the loop ends cleanly");
    assert_eq!(sim.call_count("StopTask"), 2);
    // About one observation of demo-web per 30 s resync over 5 minutes.
    let observed = sim.call_count("DescribeClusters");
    assert!((10..=12).contains(&observed), "observed {observed} times");
    assert_eq!(healthy_running(&sim, "demo-web"), 6);
}

#[tokio::test(start_paused = true)]
async fn a_failing_cluster_is_retried_with_backoff_without_holding_up_the_rest() {
    let sim = scenario("mixed");
    sim.fail_next("DescribeClusters", ErrorCategory::Throttled, 1);
    let c = controller(Arc::clone(&sim), scenario_policies().unwrap(), false);
    let token = CancellationToken::new();
    let handle = tokio::spawn(Arc::clone(&c).run(token.clone()));
    tokio::time::sleep(Duration::from_secs(10)).await;
    token.cancel();
    handle.await.unwrap();
    // 4 clusters once each, plus the failed one retried within seconds (not after 30 s).
    assert_eq!(sim.call_count("DescribeClusters"), 5);
}

#[tokio::test(start_paused = true)]
async fn the_demo_recovers_and_its_dry_run_changes_nothing() {
    let mut out = Vec::new();
    let summary = run_demo(
        "stuck-provisioning",
        false,
        AuditSink::memory(),
        Duration::from_secs(45 * 60),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(summary.stuck_found, 2);
    assert_eq!(summary.actions_taken, 2);
    assert_eq!(summary.recovered, 2);
    assert!(summary.time_to_recovery.is_some());
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("stuck in PROVISIONING for 15m, limit 10m"),
        "{text}"
    );
    assert!(
        text.contains("summary: 2 stuck tasks found, 2 actions taken"),
        "{text}"
    );

    let mut out = Vec::new();
    let summary = run_demo(
        "stuck-provisioning",
        true,
        AuditSink::memory(),
        Duration::from_secs(10 * 60),
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(summary.mutating_calls, 0);
    assert_eq!(summary.actions_taken, 0);
    assert_eq!(summary.actions_planned, 2);
    assert_eq!(summary.recovered, 0);
    assert_eq!(summary.time_to_recovery, None);
}
