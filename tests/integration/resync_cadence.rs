//! The safety-net resync's cost and cadence in event mode (`src/resync.rs`): what a list and
//! diff of a picture costs, and a period that keeps every cluster's resyncs within the share of
//! the budget.

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use ecs_reconciler::domain::{ClusterSnapshot, ContainerInstance, DesiredStatus};
use ecs_reconciler::resync::{resync_period, resync_reads};
use proptest::prelude::*;

use crate::support::fixtures::TaskBuilder;

fn snapshot(running: usize, stopped: usize, instances: usize, unread: usize) -> ClusterSnapshot {
    let mut s = ClusterSnapshot::empty(
        "c",
        "arn:aws:ecs:us-east-1:123456789012:cluster/c",
        UNIX_EPOCH,
    );
    for i in 0..running + stopped {
        let mut t = TaskBuilder::service("web", &format!("{i:032x}")).build();
        if i >= running {
            t.desired_status = DesiredStatus::Stopped;
        }
        s.tasks.push(t);
    }
    s.container_instances = (0..instances)
        .map(|i| ContainerInstance {
            arn: format!("arn:aws:ecs:us-east-1:123456789012:container-instance/c/{i}"),
            ec2_instance_id: None,
            status: "ACTIVE".into(),
            agent_connected: true,
            registered_at: None,
        })
        .collect();
    s.tags_unread = (0..unread)
        .map(|i| format!("unread-{i}"))
        .collect::<BTreeSet<_>>();
    s
}

#[test]
fn a_resync_costs_its_list_pages_instance_reads_and_the_unread_tasks() {
    // 250 RUNNING: 3 pages; none STOPPED: still 1 page; no instances: 1 list, no describe.
    assert_eq!(resync_reads(&snapshot(250, 0, 0, 0)), 3 + 1 + 1);
    // 100 RUNNING, 101 STOPPED: 1 + 2 pages; 150 instances: 2 pages and 2 describes; 3 tasks
    // known from events only: 1 DescribeTasks.
    assert_eq!(resync_reads(&snapshot(100, 101, 150, 3)), 1 + 2 + 2 + 2 + 1);
}

#[test]
fn the_period_is_the_base_unless_the_share_would_be_exceeded() {
    let base = Duration::from_secs(600);
    assert_eq!(
        resync_period(base, 100, Some(0.5)),
        base,
        "100 reads in 600 s: 0.17/s"
    );
    assert_eq!(
        resync_period(base, 1_000, Some(0.5)),
        Duration::from_secs(2_000)
    );
    assert_eq!(resync_period(base, 1_000_000, None), base, "no bound");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Never sooner than the base, and never more than the rate on average.
    #[test]
    fn the_period_keeps_the_resyncs_within_the_rate(
        base_s in 1u64..86_400,
        reads in 0u64..10_000_000,
        rate in 0.001f64..1_000.0,
    ) {
        let base = Duration::from_secs(base_s);
        let period = resync_period(base, reads, Some(rate));
        prop_assert!(period >= base);
        let used = reads as f64 / period.as_secs_f64();
        prop_assert!(used <= rate * (1.0 + 1e-9), "{used} reads/s over {rate}");
    }
}
