//! API pacing in use: the simulated account waits for the budget in virtual time (a pass over a
//! large cluster takes as long as the budget implies, and stays within it), a scale run stays
//! within every category's budget, and the AWS adapter takes a token for every call it sends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::AuditSink;
use ecs_reconciler::cloud::Cloud;
use ecs_reconciler::cloud::budget::{
    ApiBudget, Category, CategoryReport, PacingSettings, Rate, category_of,
};
use ecs_reconciler::cloud::sim::build_scale;
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::demo::scenario_policies;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::moto::Moto;

#[path = "../../benches/scale.rs"]
#[allow(dead_code)]
mod scale;

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

fn report(budget: &ApiBudget, category: Category) -> CategoryReport {
    budget
        .report()
        .into_iter()
        .find(|r| r.category == category)
        .expect("every category is reported")
}

/// One cluster-resource read a second, burst 1.
fn tiny_budget() -> Arc<ApiBudget> {
    let mut settings = PacingSettings::default();
    settings.overrides.insert(
        Category::ClusterResourceRead,
        Rate {
            per_second: 1.0,
            burst: 1,
        },
    );
    Arc::new(ApiBudget::new(&settings).unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_pass_over_a_large_cluster_takes_the_time_the_budget_implies() {
    let budget = tiny_budget();
    let (sim, _) = build_scale(start(), 1, 1000, 0.0);
    let sim = Arc::new(sim.with_budget(Arc::clone(&budget)));
    let c = Arc::new(Controller::new(
        Arc::clone(&sim),
        scenario_policies().unwrap(),
        ControllerSettings::default(),
        AuditSink::memory(),
    ));
    let began = Instant::now();
    let pass = c.pass(&CancellationToken::new()).await;
    let took = began.elapsed();
    assert!(pass.errors.is_empty(), "{:?}", pass.errors);
    assert_eq!(pass.clusters[0].snapshot.tasks.len(), 1000);

    let reads = report(&budget, Category::ClusterResourceRead);
    // ListTasks 10 + 1, DescribeTasks 10, ListContainerInstances 1, DescribeContainerInstances 1.
    let counted: u64 = [
        "ListTasks",
        "DescribeTasks",
        "ListContainerInstances",
        "DescribeContainerInstances",
    ]
    .iter()
    .map(|op| sim.call_count(op))
    .sum();
    assert_eq!(reads.calls, counted);
    assert_eq!(counted, 23);
    // The first goes on the burst token, each other waits a second for its own.
    let implied = Duration::from_secs(reads.calls - 1);
    assert!(took >= implied, "took {took:?}, budget implies {implied:?}");
    assert!(took < implied + Duration::from_secs(2), "took {took:?}");
    // Never more than the burst plus one refill in any second.
    assert!(reads.peak_per_sec <= 2, "{reads:?}");
    // Beyond the burst, at most the refill rate.
    assert!((reads.calls - 1) as f64 / took.as_secs_f64() <= 1.0 + 1e-9);
}

#[tokio::test(start_paused = true)]
async fn without_a_budget_the_simulator_does_not_wait() {
    let (sim, _) = build_scale(start(), 1, 1000, 0.0);
    assert!(sim.budget().is_none());
    let began = Instant::now();
    sim.observe_cluster("scale-00").await.unwrap();
    assert_eq!(began.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn mutating_calls_wait_for_their_token_before_they_act() {
    let mut settings = PacingSettings::default();
    settings.overrides.insert(
        Category::ClusterResourceModify,
        Rate {
            per_second: 0.5,
            burst: 1,
        },
    );
    let budget = Arc::new(ApiBudget::new(&settings).unwrap());
    let (sim, _) = build_scale(start(), 1, 4, 0.0);
    let sim = sim.with_budget(Arc::clone(&budget));
    let tasks = sim.tasks("scale-00");
    let began = Instant::now();
    for t in &tasks[..3] {
        sim.stop_task("scale-00", &t.arn, "test").await.unwrap();
    }
    // Burst 1, then 2 s per token.
    assert_eq!(began.elapsed(), Duration::from_secs(4));
    assert_eq!(report(&budget, Category::ClusterResourceModify).calls, 3);
}

#[test]
fn a_small_scale_run_stays_within_every_budget() {
    let figures = scale::scale_run(scale::ScaleRun {
        clusters: 4,
        tasks_per_cluster: 300,
        stuck_share: 0.03,
        virtual_time: Duration::from_secs(180),
    });
    let defaults = PacingSettings::default();
    assert!(!figures.categories.is_empty());
    for c in &figures.categories {
        let rate = defaults.budget(c.category);
        // Over the run: the refill plus the one burst.
        let allowed =
            rate.per_second + f64::from(rate.burst) / figures.virtual_elapsed.as_secs_f64();
        assert!(figures.per_second(c) <= allowed, "{}", figures.table());
        assert!(
            c.peak_per_sec as f64 <= f64::from(rate.burst) + rate.per_second.ceil(),
            "{}",
            figures.table()
        );
    }
    assert!(figures.done > 0, "{}", figures.table());
}

#[tokio::test]
async fn the_adapter_takes_a_token_for_every_call_it_sends() {
    let moto = Moto::new();
    let ecs = moto.ecs();
    ecs.create_cluster()
        .cluster_name("paced")
        .send()
        .await
        .unwrap();
    let budget = Arc::new(ApiBudget::default());
    let cloud = moto.cloud().await.with_budget(Arc::clone(&budget));
    assert!(Arc::ptr_eq(cloud.budget(), &budget));

    cloud.observe_cluster("paced").await.unwrap();
    cloud.list_clusters().await.unwrap();

    let mut sent: BTreeMap<Category, u64> = BTreeMap::new();
    for (op, n) in cloud.calls() {
        *sent.entry(category_of(&op)).or_default() += n;
    }
    let granted: BTreeMap<Category, u64> = budget
        .report()
        .into_iter()
        .filter(|r| r.calls > 0)
        .map(|r| (r.category, r.calls))
        .collect();
    assert_eq!(granted, sent);
    // ListTasks twice (RUNNING, STOPPED) and ListContainerInstances.
    assert!(granted[&Category::ClusterResourceRead] >= 3, "{granted:?}");
    assert_eq!(
        granted[&Category::ClusterRead],
        2,
        "DescribeClusters, ListClusters"
    );
}

#[tokio::test]
async fn the_root_cause_reads_take_a_token_each_in_their_category() {
    use crate::contract_reads::moto::MotoAccount;
    use crate::contract_reads::{ReadsAccount, seed};

    let account = MotoAccount::new().await;
    let seeded = account.seed(&seed()).await;
    let old = account.seed(&seed()).await;
    account
        .moto()
        .set_console_output(&old.instance_id, Some(b"buffered\n"), false)
        .await;
    let budget = Arc::new(ApiBudget::default());
    let cloud = account
        .moto()
        .cloud()
        .await
        .with_budget(Arc::clone(&budget));

    cloud.console_output(&seeded.instance_id).await.unwrap();
    // Latest unsupported: two calls, two tokens.
    cloud.console_output(&old.instance_id).await.unwrap();
    cloud
        .launch_template_version(&seeded.template_id, 1)
        .await
        .unwrap();
    cloud.instance_type("m5.large").await.unwrap();
    cloud.scaling_activities(&seeded.group).await.unwrap();
    // An unknown group: the empty answer is confirmed (one more Auto Scaling call).
    cloud.scaling_activities("no-such-group").await.unwrap_err();

    let granted: BTreeMap<Category, u64> = budget
        .report()
        .into_iter()
        .filter(|r| r.calls > 0)
        .map(|r| (r.category, r.calls))
        .collect();
    let expected = BTreeMap::from([(Category::Ec2Describe, 5), (Category::AutoScaling, 3)]);
    assert_eq!(granted, expected, "{:?}", cloud.calls());
}
