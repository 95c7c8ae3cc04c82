//! Several real `ecs-reconciler run` processes sharing one moto account through DynamoDB
//! leases (`src/lease/`): one shard is held by exactly one replica; six shards are shared two
//! by two among three; after kill -9, a cut-off DynamoDB or SIGSTOP, the work moves on and no
//! stuck task is stopped twice. StopTask is counted by the moto launcher, per task, on the
//! wire, not from the replicas' own audit trails.
//!
//! Leases are short here (6 s, renewed every 2 s, actions of at most 2 s) so that a takeover
//! takes seconds. No assertion is on elapsed time: each wait polls for a state with a generous
//! deadline, and the takeover times are printed. The tests of this file run one at a time
//! ([`SERIAL`]): a dozen processes polling one moto on two cores would time out their lease
//! calls.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use ecs_reconciler::lease::rules::shard_of;
use ecs_reconciler::lease::store::LeaseStore;
use serde_json::{Value, json};

use crate::support::moto::{Moto, REGION};

const TABLE: &str = "leases";
const POLICY: &str = "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {name: \
                      replicas}\nspec:\n  target: {clusters: [rep-*]}\n  stuck: {PROVISIONING: \
                      10m}\n  remediate: {replaceTask: {}}\n  guardrails: {maxActionsPerHour: \
                      1000, maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}\n";
/// How long any awaited state may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(90);
/// One test of this file at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One `ecs-reconciler run` process with its own session token (so faults can single it out).
struct Replica {
    name: String,
    token: String,
    child: Child,
    audit: PathBuf,
    log: PathBuf,
}

impl Replica {
    /// Unique to this test's account: faults named by it outlive the test.
    fn session_token(&self) -> String {
        self.token.clone()
    }

    fn start(moto: &Moto, dir: &Path, name: &str, shards: u32) -> Replica {
        let config = dir.join(format!("{name}.toml"));
        fs::write(
            &config,
            format!(
                "resync = \"1s\"\n[lease]\ntable = \"{TABLE}\"\nshards = {shards}\n\
                 duration = \"6s\"\nrenew_every = \"2s\"\naction_timeout = \"2s\"\n"
            ),
        )
        .unwrap();
        let token = format!("replica-{}-{name}", moto.account_id());
        let audit = dir.join(format!("{name}.audit.jsonl"));
        let log = dir.join(format!("{name}.log"));
        let child = crate::cli::bin()
            .arg("--config")
            .arg(&config)
            .args(["run", "--listen", "127.0.0.1:0", "--policies"])
            .arg(dir.join("policies"))
            .arg("--audit-log")
            .arg(&audit)
            .env("AWS_REGION", REGION)
            .env(
                "AWS_ACCESS_KEY_ID",
                format!("MOTOACCT{}", moto.account_id()),
            )
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_SESSION_TOKEN", &token)
            .env("AWS_ENDPOINT_URL", moto.endpoint())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Replica {
            name: name.to_string(),
            token,
            child,
            audit,
            log,
        }
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// The clusters of the actions this replica performed (outcome `done`).
    fn acted_on(&self) -> Vec<String> {
        let text = fs::read_to_string(&self.audit).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["outcome"] == "done")
            .map(|r| r["cluster"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Whether the lease table names this process as a holder.
    fn holds(&self, holders: &BTreeMap<String, String>) -> Vec<u32> {
        let pid = format!("-{}-", self.child.id());
        holders
            .iter()
            .filter(|(_, holder)| holder.contains(&pid))
            .filter_map(|(key, _)| key.strip_prefix("shard#")?.parse().ok())
            .collect()
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The moto account with the lease table, the task definition and the policy directory.
async fn arrange(moto: &Moto, dir: &Path, clusters: &[String]) {
    moto.lease_store(TABLE).check(true).await.unwrap();
    moto.register_web().await;
    let ecs = moto.ecs();
    for cluster in clusters {
        ecs.create_cluster()
            .cluster_name(cluster)
            .send()
            .await
            .unwrap();
        ecs.create_service()
            .cluster(cluster)
            .service_name("web")
            .task_definition("web")
            .desired_count(4)
            .send()
            .await
            .unwrap();
    }
    fs::create_dir_all(dir.join("policies")).unwrap();
    fs::write(dir.join("policies/replicas.yaml"), POLICY).unwrap();
}

/// One service task in each cluster, stuck in PROVISIONING for 20 minutes. Returns their
/// ARNs.
async fn stuck_batch(moto: &Moto, clusters: &[String]) -> Vec<String> {
    let mut arns = Vec::new();
    for cluster in clusters {
        arns.push(
            moto.stuck_web_task(cluster, Duration::from_secs(20 * 60))
                .await,
        );
    }
    arns
}

/// StopTask requests per task ARN, as moto received them.
async fn stops(moto: &Moto) -> BTreeMap<String, u64> {
    let answer = moto.harness("/_harness/calls", json!({})).await;
    serde_json::from_value(answer["StopTask"].clone()).unwrap()
}

/// The lease table: record key to holder.
async fn holders(moto: &Moto) -> BTreeMap<String, String> {
    let records = moto.lease_store(TABLE).scan().await.unwrap();
    records.into_iter().map(|r| (r.key, r.holder)).collect()
}

/// Polls `check` every 200 ms until it holds; fails after [`PATIENCE`] with `what`.
async fn until<F, Fut>(what: &str, replicas: &[&Replica], mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let began = Instant::now();
    while !check().await {
        let exited = replicas.iter().any(|r| r.log_text().starts_with("error:"));
        if exited || began.elapsed() > PATIENCE {
            let logs: Vec<String> = replicas
                .iter()
                .map(|r| format!("--- {}:\n{}", r.name, r.log_text()))
                .collect();
            panic!("{what}: not within {PATIENCE:?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    began.elapsed()
}

async fn all_stopped(moto: &Moto, arns: &[String]) -> bool {
    let stops = stops(moto).await;
    arns.iter().all(|a| stops.get(a).copied().unwrap_or(0) >= 1)
}

/// Every stuck task stopped exactly once, and nothing else stopped.
async fn each_stopped_once(moto: &Moto, arns: &[String]) {
    let stops = stops(moto).await;
    for arn in arns {
        assert_eq!(
            stops.get(arn),
            Some(&1),
            "StopTask calls on {arn}: {stops:?}"
        );
    }
    assert_eq!(stops.len(), arns.len(), "{stops:?}");
}

/// Cluster names, `per_shard` in each of `shards` shards (as the replicas compute them: the
/// ambient account, read from STS, and the Region).
fn clusters(moto: &Moto, shards: u32, per_shard: usize) -> Vec<String> {
    let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for i in 0.. {
        let name = format!("rep-{i}");
        let slot = by_shard
            .entry(shard_of(moto.account_id(), REGION, &name, shards))
            .or_default();
        if slot.len() < per_shard {
            slot.push(name);
        }
        if by_shard.len() == shards as usize && by_shard.values().all(|s| s.len() == per_shard) {
            break;
        }
    }
    by_shard.into_values().flatten().collect()
}

async fn exit_code(replica: &mut Replica) -> Option<i32> {
    let began = Instant::now();
    loop {
        if let Some(status) = replica.child.try_wait().unwrap() {
            return status.code();
        }
        if began.elapsed() > PATIENCE {
            panic!("{} did not exit:\n{}", replica.name, replica.log_text());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_and_one_shard_exactly_one_acts() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::new();
    let dir = tempfile::tempdir().unwrap();
    let names = clusters(&moto, 1, 3);
    arrange(&moto, dir.path(), &names).await;
    let a = Replica::start(&moto, dir.path(), "a", 1);
    let b = Replica::start(&moto, dir.path(), "b", 1);
    let stuck = stuck_batch(&moto, &names).await;
    until("every stuck task stopped", &[&a, &b], || {
        all_stopped(&moto, &stuck)
    })
    .await;
    let acted = [a.acted_on().len(), b.acted_on().len()];
    assert!(
        acted.contains(&0) && acted.contains(&3),
        "actions per replica: {acted:?}"
    );
    let table = holders(&moto).await;
    assert_eq!(
        a.holds(&table).len() + b.holds(&table).len(),
        1,
        "{table:?}"
    );
    each_stopped_once(&moto, &stuck).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_and_six_shards_act_on_two_each() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::new();
    let dir = tempfile::tempdir().unwrap();
    let names = clusters(&moto, 6, 2);
    arrange(&moto, dir.path(), &names).await;
    let replicas = [
        Replica::start(&moto, dir.path(), "a", 6),
        Replica::start(&moto, dir.path(), "b", 6),
        Replica::start(&moto, dir.path(), "c", 6),
    ];
    let all: Vec<&Replica> = replicas.iter().collect();
    let spread = until("two shards each", &all, || async {
        let table = holders(&moto).await;
        replicas.iter().all(|r| r.holds(&table).len() == 2)
    })
    .await;
    println!("three replicas held two shards each {spread:?} after start");
    let table = holders(&moto).await;
    let stuck = stuck_batch(&moto, &names).await;
    until("every stuck task stopped", &all, || {
        all_stopped(&moto, &stuck)
    })
    .await;
    for r in &replicas {
        let shards = r.holds(&table);
        let acted = r.acted_on();
        assert_eq!(acted.len(), 4, "{} acted on {acted:?}", r.name);
        for cluster in acted {
            let shard = shard_of(moto.account_id(), REGION, &cluster, 6);
            assert!(
                shards.contains(&shard),
                "{} acted on {cluster} of shard {shard}",
                r.name
            );
        }
    }
    each_stopped_once(&moto, &stuck).await;
}

/// Starts `a` and `b` on one shard, waits until one holds it and has stopped a first batch;
/// returns them as (holder, other) with the clusters and the first batch.
async fn holder_and_other(moto: &Moto, dir: &Path) -> (Replica, Replica, Vec<String>, Vec<String>) {
    let names = clusters(moto, 1, 3);
    arrange(moto, dir, &names).await;
    let a = Replica::start(moto, dir, "a", 1);
    let b = Replica::start(moto, dir, "b", 1);
    let first = stuck_batch(moto, &names).await;
    until("the first batch stopped", &[&a, &b], || {
        all_stopped(moto, &first)
    })
    .await;
    let table = holders(moto).await;
    if a.holds(&table).is_empty() {
        (b, a, names, first)
    } else {
        (a, b, names, first)
    }
}

async fn taken_by(moto: &Moto, replica: &Replica) -> bool {
    !replica.holds(&holders(moto).await).is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_other_replica_takes_over_and_nothing_is_stopped_twice() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::new();
    let dir = tempfile::tempdir().unwrap();
    let (holder, other, names, first) = holder_and_other(&moto, dir.path()).await;
    holder.signal("-KILL");
    let second = stuck_batch(&moto, &names).await;
    let took = until("the takeover", &[&other], || taken_by(&moto, &other)).await;
    println!("takeover {took:?} after kill -9 (lease 6 s, renewed every 2 s)");
    until("the second batch stopped", &[&other], || {
        all_stopped(&moto, &second)
    })
    .await;
    each_stopped_once(&moto, &[first, second].concat()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_dynamodb_stops_acting_and_exits_while_the_other_takes_over() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut holder, other, names, first) = holder_and_other(&moto, dir.path()).await;
    // Its ECS calls still work; its DynamoDB calls time out.
    for operation in ["PutItem", "Scan"] {
        moto.harness(
            "/_harness/fault",
            json!({"sessionToken": holder.session_token(), "operation": operation, "code": "InternalServerError",
                   "status": 500}),
        )
        .await;
    }
    let second = stuck_batch(&moto, &names).await;
    let code = exit_code(&mut holder).await;
    assert_eq!(code, Some(1), "{}", holder.log_text());
    assert!(
        holder.log_text().contains("lost every lease"),
        "{}",
        holder.log_text()
    );
    until("the takeover", &[&other], || taken_by(&moto, &other)).await;
    let third = stuck_batch(&moto, &names).await;
    let all = [first, second, third].concat();
    until("every batch stopped", &[&other], || {
        all_stopped(&moto, &all)
    })
    .await;
    each_stopped_once(&moto, &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_resumed_after_sigstop_does_not_act_on_the_shard_it_lost() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::new();
    let dir = tempfile::tempdir().unwrap();
    let (mut holder, other, names, first) = holder_and_other(&moto, dir.path()).await;
    holder.signal("-STOP");
    until("the takeover", &[&other], || taken_by(&moto, &other)).await;
    let second = stuck_batch(&moto, &names).await;
    until("the second batch stopped", &[&other], || {
        all_stopped(&moto, &second)
    })
    .await;
    // A third batch is stuck when the paused replica wakes: only the new holder may stop it.
    let third = stuck_batch(&moto, &names).await;
    holder.signal("-CONT");
    let code = exit_code(&mut holder).await;
    assert_eq!(code, Some(1), "{}", holder.log_text());
    until("the third batch stopped", &[&other], || {
        all_stopped(&moto, &third)
    })
    .await;
    each_stopped_once(&moto, &[first, second, third].concat()).await;
    let acted_after_pause = holder.acted_on().len();
    assert_eq!(
        acted_after_pause, 3,
        "the resumed replica acted on its lost shard"
    );
}

/// SIGTERM: the replica finishes, gives its lease back (no holder) and its heartbeat, and
/// exits 0; the standby then takes the lease without waiting a full lease, and acts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_with_sigterm_gives_its_lease_back() {
    let _serial = SERIAL.lock().await;
    let moto = Moto::new();
    let dir = tempfile::tempdir().unwrap();
    let names = clusters(&moto, 1, 2);
    arrange(&moto, dir.path(), &names).await;
    let mut replicas = [
        Replica::start(&moto, dir.path(), "a", 1),
        Replica::start(&moto, dir.path(), "b", 1),
    ];
    let all: Vec<&Replica> = replicas.iter().collect();
    until("one replica holds the shard", &all, || async {
        let table = holders(&moto).await;
        replicas.iter().any(|r| r.holds(&table).len() == 1)
    })
    .await;
    let table = holders(&moto).await;
    let holder = usize::from(replicas[0].holds(&table).is_empty());
    let holder_pid = replicas[holder].child.id();
    replicas[holder].signal("-TERM");
    let status = replicas[holder].child.wait().unwrap();
    assert!(
        status.success(),
        "{status}: {}",
        replicas[holder].log_text()
    );
    let log = replicas[holder].log_text();
    assert!(log.contains("leases released"), "{log}");
    // No record names the stopped process any more.
    let table = holders(&moto).await;
    let pid = format!("-{holder_pid}-");
    assert!(
        table.values().all(|h| !h.contains(&pid)),
        "released: {table:?}"
    );
    let standby = &replicas[1 - holder];
    let took = until("the standby holds the shard", &[standby], || async {
        standby.holds(&holders(&moto).await).len() == 1
    })
    .await;
    println!("after SIGTERM the standby held the shard {took:?} after the holder exited");
    let stuck = stuck_batch(&moto, &names).await;
    until("the standby stopped every stuck task", &[standby], || {
        all_stopped(&moto, &stuck)
    })
    .await;
    assert_eq!(standby.acted_on().len(), 2);
    each_stopped_once(&moto, &stuck).await;
}
