//! The ownership seam leases will plug into (`src/lease/mod.rs`): a replica reconciles only the
//! clusters it owns, and holds every mutating action on a cluster it may not act on, making no
//! call.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use ecs_reconciler::audit::{AuditSink, Outcome};
use ecs_reconciler::cloud::sim::{SimAccount, build_scenario};
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::demo::scenario_policies;
use ecs_reconciler::lease::{LEASE_NOT_HELD, Ownership};
use tokio_util::sync::CancellationToken;

/// Owns what `owned` says; may act only while `acting` is set.
struct Scripted {
    owned: &'static [&'static str],
    acting: AtomicBool,
}

impl Ownership for Scripted {
    fn owns(&self, cluster: &str) -> bool {
        self.owned.contains(&cluster)
    }

    fn may_act(&self, cluster: &str) -> bool {
        self.owns(cluster) && self.acting.load(Ordering::SeqCst)
    }
}

fn scenario() -> Arc<SimAccount> {
    let start = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    Arc::new(
        build_scenario("stuck-provisioning", start)
            .expect("scenario")
            .0,
    )
}

fn controller(sim: &Arc<SimAccount>, ownership: Arc<Scripted>) -> Controller<Arc<SimAccount>> {
    Controller::new(
        Arc::clone(sim),
        scenario_policies().unwrap(),
        ControllerSettings::default(),
        AuditSink::memory(),
    )
    .with_ownership(ownership)
}

#[tokio::test(start_paused = true)]
async fn a_cluster_this_replica_does_not_own_is_not_even_read() {
    let sim = scenario();
    let c = controller(
        &sim,
        Arc::new(Scripted {
            owned: &[],
            acting: AtomicBool::new(true),
        }),
    );
    assert!(c.clusters_in_scope().await.unwrap().is_empty());
    let report = Arc::new(c).pass(&CancellationToken::new()).await;
    assert!(report.clusters.is_empty());
    assert_eq!(sim.call_count("ListTasks"), 0);
    assert_eq!(sim.call_count("StopTask"), 0);
}

#[tokio::test(start_paused = true)]
async fn without_the_lease_a_stuck_task_is_held_and_no_call_is_made() {
    let sim = scenario();
    let ownership = Arc::new(Scripted {
        owned: &["demo-web"],
        acting: AtomicBool::new(false),
    });
    let c = Arc::new(controller(&sim, Arc::clone(&ownership)));
    let token = CancellationToken::new();
    let _ = c.pass(&token).await;
    tokio::time::advance(Duration::from_secs(20 * 60)).await;
    let _ = c.pass(&token).await;
    assert_eq!(sim.call_count("StopTask"), 0, "no lease, no stop");
    let records = c.audit().records();
    let held: Vec<_> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Skipped(LEASE_NOT_HELD))
        .collect();
    assert!(!held.is_empty(), "the stuck tasks are held as leaseNotHeld");
    assert!(records.iter().all(|r| r.outcome != Outcome::Started));

    ownership.acting.store(true, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(30)).await;
    let _ = c.pass(&token).await;
    assert_eq!(
        sim.call_count("StopTask"),
        held.len() as u64,
        "acts once the lease is held"
    );
}
