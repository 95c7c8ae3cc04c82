//! Lease traffic and takeover, in virtual time: replicas' keepers (`src/lease/keeper.rs`) on
//! one in-process table, sampled every 100 ms. Prints, per setup, the DynamoDB calls per
//! replica per minute and their on-demand cost, the time until a killed replica's shards are
//! all held again, and the sampled instants at which two replicas might act on one shard
//! (must be 0).
//!
//! `cargo test --bench leases -- --full` (an hour of steady state; without `--full`, two
//! minutes, as `cargo test --benches` runs it). Virtual time: the debug build is quick enough.
//!
//! Cost: a PutItem of a lease record (under 1 KB) is one write request unit; a consistent Scan
//! of a table under 4 KB is one read request unit. Prices are on-demand, us-east-1, as listed
//! on the DynamoDB pricing page when this was written (per million: writes $0.625, reads
//! $0.125); check the page for yours.

use std::sync::Arc;
use std::time::Duration;

use ecs_reconciler::lease::Ownership;
use ecs_reconciler::lease::keeper::{Keeper, LeaseConfig, Leases};
use ecs_reconciler::lease::rules::LeaseTiming;
use ecs_reconciler::lease::store::MemoryStore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const WRITE_PRICE_PER_MILLION: f64 = 0.625;
const READ_PRICE_PER_MILLION: f64 = 0.125;
const STEP: Duration = Duration::from_millis(100);

struct Replica {
    leases: Arc<Leases>,
    keeper: JoinHandle<()>,
}

fn start(table: &Arc<MemoryStore>, name: &str, shards: u32) -> Replica {
    let config = LeaseConfig {
        shards,
        timing: LeaseTiming::with_defaults(Duration::from_secs(5)),
        account: "111122223333".into(),
        region: "us-east-1".into(),
    };
    let leases = Leases::new(name, config);
    let keeper = Keeper::new(Arc::clone(table), Arc::clone(&leases));
    let keeper = tokio::spawn(async move {
        let _ = keeper.run(CancellationToken::new()).await;
    });
    Replica { leases, keeper }
}

fn clusters(leases: &Leases, shards: u32) -> Vec<String> {
    let mut found: Vec<Option<String>> = vec![None; shards as usize];
    let mut i = 0;
    while found.iter().any(Option::is_none) {
        let name = format!("cluster-{i}");
        found[leases.shard(&name) as usize].get_or_insert(name);
        i += 1;
    }
    found.into_iter().flatten().collect()
}

/// Advances `total`; returns the sampled instants with two replicas that may act on a shard.
async fn run_for(replicas: &[Replica], clusters: &[String], total: Duration) -> u64 {
    let mut doubled = 0;
    let end = Instant::now() + total;
    while Instant::now() < end {
        tokio::time::advance(STEP).await;
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        for c in clusters {
            if replicas.iter().filter(|r| r.leases.may_act(c)).count() > 1 {
                doubled += 1;
            }
        }
    }
    doubled
}

async fn setup(replica_count: usize, shards: u32, steady: Duration) {
    let table = Arc::new(MemoryStore::new());
    let replicas: Vec<Replica> = (0..replica_count)
        .map(|i| start(&table, &format!("replica-{i}"), shards))
        .collect();
    let cs = clusters(&replicas[0].leases, shards);
    let mut doubled = run_for(&replicas, &cs, Duration::from_secs(60)).await;
    let (scans0, writes0) = table.calls();
    doubled += run_for(&replicas, &cs, steady).await;
    let (scans, writes) = table.calls();
    let minutes = steady.as_secs_f64() / 60.0;
    let per = |n: u64| n as f64 / replica_count as f64 / minutes;
    let (scan_rate, write_rate) = (per(scans - scans0), per(writes - writes0));
    let month = 30.0 * 24.0 * 60.0;
    let cost =
        month * (write_rate * WRITE_PRICE_PER_MILLION + scan_rate * READ_PRICE_PER_MILLION) / 1e6;
    let held: Vec<usize> = replicas.iter().map(|r| r.leases.held().len()).collect();
    // Kill the replica holding the most shards.
    let victim = (0..replicas.len()).max_by_key(|&i| held[i]).unwrap_or(0);
    let orphaned = replicas[victim].leases.held();
    replicas[victim].keeper.abort();
    let killed = Instant::now();
    let survivors: Vec<&Replica> = replicas
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, r)| r)
        .collect();
    let mut takeover = None;
    let deadline = killed + Duration::from_secs(300);
    while Instant::now() < deadline {
        doubled += run_for(&replicas, &cs, STEP).await;
        let all_held = orphaned.iter().all(|s| {
            let c = &cs[*s as usize];
            survivors.iter().any(|r| r.leases.may_act(c))
        });
        if all_held {
            takeover = Some(Instant::now() - killed);
            break;
        }
    }
    println!(
        "{replica_count} replicas, shards = {shards}: held {held:?}; per replica per minute \
         {scan_rate:.1} Scan + {write_rate:.1} PutItem (${cost:.4} a month on demand); \
         killed the holder of {} shards: all acted on again after {}; doubled instants {doubled}",
        orphaned.len(),
        takeover.map_or("never (within 300 s)".to_string(), |t| format!(
            "{:.1} s",
            t.as_secs_f64()
        )),
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    let steady = Duration::from_secs(if full { 3600 } else { 120 });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!(
            "lease traffic and takeover (lease 15 s, renew every 5 s, actions of at most 5 s; \
             {} of steady state)",
            humantime::format_duration(steady)
        );
        setup(2, 1, steady).await;
        setup(3, 6, steady).await;
        setup(3, 30, steady).await;
    });
}
