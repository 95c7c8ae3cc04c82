//! Many accounts, several replicas (issue 11, item 5): the real controllers of three replicas
//! over 10 simulated accounts × 2 Regions × 10 clusters, sharing the work through leases on one
//! in-process table, in paused (virtual) tokio time. One replica is killed mid-run (its keeper
//! and every controller of it aborted at once, as kill -9 would).
//!
//! Each account-Region is its own [`SimAccount`] with its own API budget (AWS throttles per
//! account and Region); each replica runs one controller per account-Region, owning the
//! clusters whose shard it holds (`lease::PlaceScope`), exactly as `run` does with
//! `[[targets]]` and `[lease]`. Tasks fail at random moments (seeded); each replacement hangs in
//! PROVISIONING, which the policy stops after 10 minutes.
//!
//! Prints: the detection delay beyond the limit (from the task's limit to the first audit
//! record about it) for tasks whose limit fell before the kill and after it; the time until
//! every shard of the killed replica is held again; the number of tasks whose stop was
//! started by two replicas, and the StopTask calls the accounts received against the distinct
//! tasks stopped. Exits 1 if any action was doubled.
//!
//! ```sh
//! cargo test --bench targets               # smoke: 2 accounts × 2 Regions × 2 clusters
//! cargo test --bench targets -- --full     # the full run, debug build (virtual time)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallInstant, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::{AuditRecord, AuditSink, Outcome};
use ecs_reconciler::cloud::budget::{ApiBudget, PacingSettings};
use ecs_reconciler::cloud::sim::{ServiceSpec, SimAccount, TaskBehavior};
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::domain::TaskStatus;
use ecs_reconciler::lease::keeper::{Keeper, LeaseConfig, Leases};
use ecs_reconciler::lease::rules::LeaseTiming;
use ecs_reconciler::lease::store::MemoryStore;
use ecs_reconciler::lease::{Ownership, PlaceScope};
use ecs_reconciler::policy::{self, PolicySet};
use ecs_reconciler::targets::Place;
use ecs_reconciler::telemetry::Telemetry;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const POLICY: &str = r#"
apiVersion: ecs-reconciler/v1
kind: RemediationPolicy
metadata:
  name: fleet
spec:
  target:
    clusters: ["web-*"]
  stuck:
    PROVISIONING: 10m
  remediate:
    replaceTask: {}
  guardrails:
    maxActionsPerHour: 1000
    maxInFlightPerService: 50%
    pauseWhenStuckAbove: 50%
"#;
const LIMIT: Duration = Duration::from_secs(600);
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const REPLICAS: usize = 3;

#[derive(Debug, Clone)]
struct Run {
    accounts: usize,
    clusters: usize,
    tasks_per_cluster: usize,
    stuck_share: f64,
    shards: u32,
    /// Failures fall at random moments within this time from the start.
    failures_over: Duration,
    kill_at: Duration,
    run_for: Duration,
}

impl Run {
    fn full() -> Self {
        Run {
            accounts: 10,
            clusters: 10,
            tasks_per_cluster: 20,
            stuck_share: 0.05,
            shards: 30,
            failures_over: Duration::from_secs(30 * 60),
            kill_at: Duration::from_secs(20 * 60),
            run_for: Duration::from_secs(45 * 60),
        }
    }

    fn smoke() -> Self {
        Run {
            accounts: 2,
            clusters: 2,
            tasks_per_cluster: 10,
            stuck_share: 0.2,
            shards: 6,
            failures_over: Duration::from_secs(4 * 60),
            kill_at: Duration::from_secs(12 * 60),
            run_for: Duration::from_secs(20 * 60),
        }
    }
}

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

/// SplitMix64, for the planted failures.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (x ^ (x >> 31)) % n.max(1)
    }
}

/// One account-Region of the simulated fleet.
struct World {
    place: Place,
    sim: Arc<SimAccount>,
}

fn worlds(run: &Run) -> Vec<World> {
    let mut out = Vec::new();
    for a in 0..run.accounts {
        for region in REGIONS {
            let sim = Arc::new(SimAccount::new(start()));
            for c in 0..run.clusters {
                let cluster = format!("web-{c}");
                sim.add_cluster(&cluster);
                sim.add_service(
                    &cluster,
                    ServiceSpec::new("web", run.tasks_per_cluster as u32),
                );
            }
            let budget = ApiBudget::new(&PacingSettings::default()).expect("defaults");
            sim.set_budget(Some(Arc::new(budget)));
            out.push(World {
                place: Place {
                    account: format!("{:012}", 100_000_000_000u64 + a as u64),
                    account_name: None,
                    region: region.to_string(),
                },
                sim,
            });
        }
    }
    out
}

/// Plants the failures at random moments from now; how many.
fn plant(worlds: &[World], run: &Run) -> usize {
    let mut rng = Seeded(11);
    let mut tasks: Vec<(usize, String)> = Vec::new();
    for (w, world) in worlds.iter().enumerate() {
        for c in 0..run.clusters {
            for t in world.sim.tasks(&format!("web-{c}")) {
                tasks.push((w, t.arn));
            }
        }
    }
    let stuck = (tasks.len() as f64 * run.stuck_share).round() as usize;
    let over = run.failures_over.as_millis() as u64;
    for n in 0..stuck {
        let pick = n + rng.below((tasks.len() - n) as u64) as usize;
        tasks.swap(n, pick);
        let after = Duration::from_millis(rng.below(over));
        let (w, arn) = &tasks[n];
        worlds[*w].sim.fail_task_after(
            arn,
            after,
            TaskBehavior::hangs_in(TaskStatus::Provisioning),
        );
    }
    stuck
}

fn policies() -> PolicySet {
    let policies = policy::parse_str(std::path::Path::new("<targets bench policy>"), POLICY)
        .expect("the bench policy is valid");
    PolicySet {
        policies,
        fingerprint: "targets-bench".into(),
    }
}

/// A task of one account-Region: the simulated accounts number their tasks alike, so an ARN
/// alone is not unique across them.
type TaskKey = (Option<String>, Option<String>, String);

fn key_of(record: &AuditRecord) -> TaskKey {
    (
        record.account.clone(),
        record.region.clone(),
        record.target.clone(),
    )
}

/// What every replica's controllers wrote: the first record of each task with its delay
/// beyond the limit, and the replicas that started a stop of each task.
#[derive(Default)]
struct Seen {
    /// Task → (its deadline, the delay beyond it to the first record).
    first: BTreeMap<TaskKey, (SystemTime, Duration)>,
    /// Task → the replicas whose intent record (`started`) names it.
    started_by: BTreeMap<TaskKey, BTreeSet<usize>>,
    /// Records by outcome (`planned`, `done`, `skipped:GUARDRAIL`, ...), intents aside.
    outcomes: BTreeMap<String, u64>,
}

struct Watcher {
    replica: usize,
    seen: Arc<Mutex<Seen>>,
    sim: Arc<SimAccount>,
}

impl Telemetry for Watcher {
    fn recorded(&self, record: &AuditRecord) {
        let now = self.sim.now();
        let key = key_of(record);
        let mut seen = self.seen.lock().unwrap();
        if record.outcome == Outcome::Started {
            seen.started_by
                .entry(key.clone())
                .or_default()
                .insert(self.replica);
        } else {
            *seen.outcomes.entry(record.outcome.to_string()).or_default() += 1;
        }
        if seen.first.contains_key(&key) {
            return;
        }
        let since = record
            .evidence
            .get("clockStartedAt")
            .and_then(|t| humantime::parse_rfc3339(t).ok());
        if let Some(since) = since {
            let deadline = since + LIMIT;
            let delay = now.duration_since(deadline).unwrap_or(Duration::ZERO);
            seen.first.insert(key, (deadline, delay));
        }
    }
}

struct Replica {
    leases: Arc<Leases>,
    tasks: Vec<JoinHandle<()>>,
}

fn replica(
    n: usize,
    table: &Arc<MemoryStore>,
    worlds: &[World],
    run: &Run,
    seen: &Arc<Mutex<Seen>>,
) -> Replica {
    let config = LeaseConfig {
        shards: run.shards,
        timing: LeaseTiming::with_defaults(Duration::from_secs(5)),
        account: String::new(),
        region: String::new(),
    };
    let leases = Leases::new(&format!("replica-{n}"), config);
    let token = CancellationToken::new();
    let mut controllers = Vec::new();
    for world in worlds {
        let scope = PlaceScope {
            leases: Some(Arc::clone(&leases)),
            account: world.place.account.clone(),
            region: world.place.region.clone(),
            clusters: None,
        };
        let watcher = Watcher {
            replica: n,
            seen: Arc::clone(seen),
            sim: Arc::clone(&world.sim),
        };
        let policies = policies().for_place(&world.place);
        let c = Controller::new(
            Arc::clone(&world.sim),
            policies,
            ControllerSettings::default(),
            AuditSink::memory(),
        )
        .with_place(world.place.clone())
        .with_ownership(Arc::new(scope) as Arc<dyn Ownership>)
        .with_telemetry(Arc::new(watcher) as Arc<dyn Telemetry>);
        controllers.push(Arc::new(c));
    }
    let all = controllers.clone();
    let keeper =
        Keeper::new(Arc::clone(table), Arc::clone(&leases)).on_change(Arc::new(move || {
            for c in &all {
                c.scope_changed();
            }
        }));
    let keeper_token = token.clone();
    let mut tasks = vec![tokio::spawn(async move {
        let _ = keeper.run(keeper_token).await;
    })];
    for c in controllers {
        tasks.push(tokio::spawn(c.run(token.clone())));
    }
    Replica { leases, tasks }
}

struct Figures {
    planted: usize,
    found_before: Vec<Duration>,
    found_after: Vec<Duration>,
    takeover: Option<Duration>,
    doubled: usize,
    stop_calls: u64,
    distinct_stopped: usize,
    outcomes: BTreeMap<String, u64>,
    wall: Duration,
}

async fn run_fleet(run: Run) -> Figures {
    let wall = WallInstant::now();
    let worlds = worlds(&run);
    // Every task is RUNNING before the replicas start.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let planted = plant(&worlds, &run);
    let origin = worlds[0].sim.now();
    let table = Arc::new(MemoryStore::new());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut replicas: Vec<Replica> = (0..REPLICAS)
        .map(|n| replica(n, &table, &worlds, &run, &seen))
        .collect();
    tokio::time::sleep(run.kill_at).await;
    let victim = (0..REPLICAS)
        .max_by_key(|&n| replicas[n].leases.held().len())
        .unwrap_or(0);
    let orphaned = replicas[victim].leases.held();
    for task in &replicas[victim].tasks {
        task.abort();
    }
    let killed_at = tokio::time::Instant::now();
    let mut takeover = None;
    let end = killed_at + (run.run_for - run.kill_at);
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if takeover.is_none() {
            let held: BTreeSet<u32> = (0..REPLICAS)
                .filter(|&n| n != victim)
                .flat_map(|n| replicas[n].leases.held())
                .collect();
            if orphaned.iter().all(|s| held.contains(s)) {
                takeover = Some(killed_at.elapsed());
            }
        }
    }
    for r in &mut replicas {
        r.tasks.iter().for_each(JoinHandle::abort);
    }
    let kill_time = origin + run.kill_at;
    let seen = seen.lock().unwrap();
    let mut found_before = Vec::new();
    let mut found_after = Vec::new();
    for (deadline, delay) in seen.first.values() {
        if *deadline < kill_time {
            found_before.push(*delay);
        } else {
            found_after.push(*delay);
        }
    }
    found_before.sort();
    found_after.sort();
    let stop_calls = worlds
        .iter()
        .map(|w| w.sim.calls().get("StopTask").copied().unwrap_or(0))
        .sum();
    Figures {
        planted,
        found_before,
        found_after,
        takeover,
        doubled: seen.started_by.values().filter(|r| r.len() > 1).count(),
        stop_calls,
        distinct_stopped: seen.started_by.len(),
        outcomes: seen.outcomes.clone(),
        wall: wall.elapsed(),
    }
}

fn percentile(sorted: &[Duration], p: usize) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = (sorted.len() * p / 100).min(sorted.len() - 1);
    format!("{:.1} s", sorted[i].as_secs_f64())
}

fn row(name: &str, delays: &[Duration]) -> String {
    format!(
        "| {name} | {} | {} | {} | {} |",
        delays.len(),
        percentile(delays, 50),
        percentile(delays, 99),
        percentile(delays, 100)
    )
}

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    let run = if full { Run::full() } else { Run::smoke() };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let f = runtime.block_on(run_fleet(run.clone()));
    println!(
        "{} accounts × {} Regions × {} clusters of {} tasks, {REPLICAS} replicas, {} shards; \
         lease 15 s, renewed every 5 s; the replica holding most shards killed at {} min; \
         {} min virtual, {:.1} s wall",
        run.accounts,
        REGIONS.len(),
        run.clusters,
        run.tasks_per_cluster,
        run.shards,
        run.kill_at.as_secs() / 60,
        run.run_for.as_secs() / 60,
        f.wall.as_secs_f64()
    );
    println!("\n| stuck tasks whose limit fell | found | p50 beyond limit | p99 | max |");
    println!("|---|---|---|---|---|");
    println!("{}", row("before the kill", &f.found_before));
    println!("{}", row("after the kill", &f.found_after));
    println!(
        "\nplanted {}, found {}; takeover of the killed replica's shards: {}",
        f.planted,
        f.found_before.len() + f.found_after.len(),
        f.takeover.map_or("not within the run".into(), |t| format!(
            "{:.1} s",
            t.as_secs_f64()
        ))
    );
    println!(
        "stops started by two replicas: {}; StopTask calls {} for {} distinct tasks",
        f.doubled, f.stop_calls, f.distinct_stopped
    );
    println!("audit records by outcome: {:?}", f.outcomes);
    if f.doubled > 0 || f.stop_calls != f.distinct_stopped as u64 {
        eprintln!("an action was doubled");
        std::process::exit(1);
    }
}
