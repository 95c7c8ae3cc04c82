//! Client-side API pacing, in paused virtual time: the burst goes at once, the rest at the
//! budget's rate; tasks share a category's bucket; categories are independent; a throttling
//! answer halves the rate, which then recovers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ecs_reconciler::cloud::budget::{
    ApiBudget, Category, CategoryReport, PacingSettings, Rate, category_of,
};
use ecs_reconciler::config::{FlagOverrides, load_with_env_prefix};
use tokio::time::Instant;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A budget of `per_second` with `burst` for service modify, defaults elsewhere.
fn budget(per_second: f64, burst: u32) -> ApiBudget {
    let mut settings = PacingSettings::default();
    settings
        .overrides
        .insert(Category::ServiceModify, Rate { per_second, burst });
    ApiBudget::new(&settings).unwrap()
}

async fn acquire_n(budget: &ApiBudget, operation: &str, n: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        budget.acquire(operation).await;
    }
    start.elapsed()
}

fn report_of(budget: &ApiBudget, category: Category) -> CategoryReport {
    budget
        .report()
        .into_iter()
        .find(|r| r.category == category)
        .unwrap()
}

#[test]
fn operations_map_to_their_throttle_category() {
    let cases = [
        ("DescribeTasks", Category::ClusterResourceRead),
        ("ListTasks", Category::ClusterResourceRead),
        ("DescribeContainerInstances", Category::ClusterResourceRead),
        ("ListContainerInstances", Category::ClusterResourceRead),
        ("RunTask", Category::ClusterResourceModify),
        ("StopTask", Category::ClusterResourceModify),
        (
            "UpdateContainerInstancesState",
            Category::ClusterResourceModify,
        ),
        ("DescribeServices", Category::ServiceRead),
        ("ListServices", Category::ServiceRead),
        ("UpdateService", Category::ServiceModify),
        ("DescribeClusters", Category::ClusterRead),
        ("ListClusters", Category::ClusterRead),
        ("DescribeCapacityProviders", Category::CapacityProviderRead),
        ("DescribeAutoScalingGroups", Category::AutoScaling),
        ("SetDesiredCapacity", Category::AutoScaling),
        ("UpdateAutoScalingGroup", Category::AutoScaling),
        ("TerminateInstanceInAutoScalingGroup", Category::AutoScaling),
        ("DescribeScalingActivities", Category::AutoScaling),
        ("CreateOrUpdateTags", Category::AutoScaling),
        ("DescribeTags", Category::AutoScaling),
        ("autoscaling:DescribeTags", Category::AutoScaling),
        ("ec2:DescribeTags", Category::Ec2Describe),
        ("ec2:CreateTags", Category::Other),
        ("DescribeInstances", Category::Ec2Describe),
        ("DescribeLaunchTemplateVersions", Category::Ec2Describe),
        ("DescribeNetworkInterfaces", Category::Ec2Describe),
        ("DescribeSecurityGroups", Category::Ec2Describe),
        ("ecs:DescribeTasks", Category::ClusterResourceRead),
        ("DescribeTaskDefinition", Category::Other),
        ("ecs:DescribeInstances", Category::Other),
    ];
    for (operation, category) in cases {
        assert_eq!(category_of(operation), category, "{operation}");
    }
}

#[test]
fn the_default_budget_is_half_of_each_account_bucket() {
    let budget = ApiBudget::default();
    let expected = [
        (Category::ClusterResourceRead, 10.0, 50),
        (Category::ClusterResourceModify, 20.0, 50),
        (Category::ServiceRead, 10.0, 50),
        (Category::ServiceModify, 2.5, 25),
        (Category::ClusterRead, 10.0, 25),
        (Category::CapacityProviderRead, 10.0, 25),
        (Category::AutoScaling, 5.0, 10),
        (Category::Ec2Describe, 10.0, 25),
    ];
    for (category, per_second, burst) in expected {
        assert_eq!(
            budget.budget(category),
            Rate { per_second, burst },
            "{category}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn acquires_beyond_the_burst_wait_for_the_rate() {
    let budget = budget(2.0, 5);
    // The burst goes at once.
    assert_eq!(acquire_n(&budget, "UpdateService", 5).await, Duration::ZERO);
    // 20 more at 2/s: 10 virtual seconds.
    let elapsed = acquire_n(&budget, "UpdateService", 20).await;
    assert!(elapsed >= secs(10.0), "{elapsed:?}");
    assert!(elapsed < secs(10.1), "{elapsed:?}");
    let report = report_of(&budget, Category::ServiceModify);
    assert_eq!(report.calls, 25);
    assert_eq!(report.budget_per_sec, 2.0);
    // 25 calls over the 10 s since the budget was made.
    assert!((report.observed_per_sec - 2.5).abs() < 0.01, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn a_quiet_time_refills_the_burst_but_no_more() {
    let budget = budget(2.0, 5);
    acquire_n(&budget, "UpdateService", 5).await;
    tokio::time::sleep(secs(3600.0)).await;
    assert_eq!(acquire_n(&budget, "UpdateService", 5).await, Duration::ZERO);
    let elapsed = acquire_n(&budget, "UpdateService", 1).await;
    assert!(elapsed >= secs(0.5), "{elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn tasks_share_one_bucket_per_category() {
    let budget = Arc::new(budget(4.0, 4));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let budget = Arc::clone(&budget);
        tasks.push(tokio::spawn(async move {
            acquire_n(&budget, "UpdateService", 10).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // 40 calls, 4 from the burst, 36 at 4/s.
    let elapsed = start.elapsed();
    assert!(elapsed >= secs(9.0), "{elapsed:?}");
    assert!(elapsed < secs(9.1), "{elapsed:?}");
    assert_eq!(report_of(&budget, Category::ServiceModify).calls, 40);
}

#[tokio::test(start_paused = true)]
async fn categories_are_independent() {
    let budget = budget(1.0, 1);
    acquire_n(&budget, "UpdateService", 1).await;
    // Service modify is empty; cluster resource read (burst 50) is not held up by it.
    let start = Instant::now();
    acquire_n(&budget, "DescribeTasks", 50).await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    budget.throttled("UpdateService");
    assert_eq!(
        report_of(&budget, Category::ClusterResourceRead).budget_per_sec,
        10.0
    );
    assert_eq!(report_of(&budget, Category::ClusterResourceRead).calls, 50);
    assert_eq!(report_of(&budget, Category::ServiceModify).calls, 1);
}

#[tokio::test(start_paused = true)]
async fn a_throttling_answer_halves_the_rate_then_it_recovers() {
    let budget = budget(4.0, 4);
    budget.throttled("UpdateService");
    assert_eq!(
        report_of(&budget, Category::ServiceModify).budget_per_sec,
        2.0
    );
    // The bucket was emptied: 10 calls at 2/s take 5 s (within the 60 s hold).
    let elapsed = acquire_n(&budget, "UpdateService", 10).await;
    assert!(elapsed >= secs(5.0), "{elapsed:?}");
    assert!(elapsed < secs(5.1), "{elapsed:?}");
    // A second throttle halves again.
    budget.throttled("UpdateService");
    assert_eq!(
        report_of(&budget, Category::ServiceModify).budget_per_sec,
        1.0
    );
    // Held for 60 s, then back to the full rate over the next 60 s.
    tokio::time::sleep(secs(60.0)).await;
    assert_eq!(
        report_of(&budget, Category::ServiceModify).budget_per_sec,
        1.0
    );
    tokio::time::sleep(secs(30.0)).await;
    let halfway = report_of(&budget, Category::ServiceModify).budget_per_sec;
    assert!((halfway - 2.5).abs() < 1e-9, "{halfway}");
    tokio::time::sleep(secs(30.0)).await;
    assert_eq!(
        report_of(&budget, Category::ServiceModify).budget_per_sec,
        4.0
    );
    // Recovered: a full burst again after a quiet second.
    tokio::time::sleep(secs(1.0)).await;
    assert_eq!(acquire_n(&budget, "UpdateService", 4).await, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn repeated_throttling_never_stops_a_category() {
    let budget = budget(4.0, 4);
    for _ in 0..20 {
        budget.throttled("UpdateService");
    }
    assert_eq!(
        report_of(&budget, Category::ServiceModify).budget_per_sec,
        0.25
    );
    let elapsed = acquire_n(&budget, "UpdateService", 2).await;
    assert!(elapsed >= secs(8.0), "{elapsed:?}");
}

#[test]
fn pacing_is_configured_with_a_scale_and_per_category_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(
        &file,
        "[pacing]\nscale = 0.25\nthrottle_hold = \"2m\"\n\
         [pacing.overrides.service-modify]\nper_second = 1.0\nburst = 3\n",
    )
    .unwrap();
    let settings =
        load_with_env_prefix(Some(&file), &FlagOverrides::default(), "ECSR_BUDGET_TEST_").unwrap();
    assert_eq!(settings.pacing.scale, 0.25);
    assert_eq!(settings.pacing.throttle_hold, secs(120.0));
    assert_eq!(
        settings.pacing.overrides,
        BTreeMap::from([(
            Category::ServiceModify,
            Rate {
                per_second: 1.0,
                burst: 3
            }
        )])
    );
    let budget = ApiBudget::new(&settings.pacing).unwrap();
    assert_eq!(
        budget.budget(Category::ClusterResourceModify),
        Rate {
            per_second: 10.0,
            burst: 25
        }
    );
    assert_eq!(
        budget.budget(Category::ServiceModify),
        Rate {
            per_second: 1.0,
            burst: 3
        }
    );

    for bad in [
        "[pacing]\nscale = 0.0\n",
        "[pacing]\nscale = 2.0\n",
        "[pacing.overrides.service-modify]\nper_second = 0.0\nburst = 3\n",
        "[pacing.overrides.no-such-category]\nper_second = 1.0\nburst = 3\n",
        "[pacing]\nrate = 3\n",
    ] {
        std::fs::write(&file, bad).unwrap();
        let result =
            load_with_env_prefix(Some(&file), &FlagOverrides::default(), "ECSR_BUDGET_TEST_");
        assert!(result.is_err(), "accepted:\n{bad}");
    }
}
