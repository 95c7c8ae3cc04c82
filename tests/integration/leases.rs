//! The lease keeper (`src/lease/keeper.rs`) with several replicas on one in-process table, in
//! paused time: the shards are shared fairly, a dead or cut-off replica is taken over, and at
//! no sampled instant may two replicas act on one shard.

use std::sync::Arc;
use std::time::Duration;

use ecs_reconciler::lease::Ownership;
use ecs_reconciler::lease::keeper::{Keeper, LeaseConfig, Leases, LeasesLost};
use ecs_reconciler::lease::rules::LeaseTiming;
use ecs_reconciler::lease::store::{Link, MemoryStore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const STEP: Duration = Duration::from_millis(100);

fn timing() -> LeaseTiming {
    LeaseTiming {
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
        longest_call: Duration::from_secs(5),
    }
}

fn config(shards: u32) -> LeaseConfig {
    LeaseConfig {
        shards,
        timing: timing(),
        account: "111122223333".into(),
        region: "eu-west-1".into(),
    }
}

struct Replica {
    leases: Arc<Leases>,
    link: Arc<Link<MemoryStore>>,
    keeper: Option<JoinHandle<Result<(), LeasesLost>>>,
    /// A graceful shutdown: the keeper stops cycling...
    shutdown: CancellationToken,
    /// ... and, once this is cancelled too (no action in flight), gives its leases back.
    stopped: CancellationToken,
}

impl Replica {
    fn start(table: &Arc<MemoryStore>, name: &str, shards: u32) -> Replica {
        let link = Arc::new(Link::new(Arc::clone(table)));
        let leases = Leases::new(name, config(shards));
        let mut replica = Replica {
            leases,
            link,
            keeper: None,
            shutdown: CancellationToken::new(),
            stopped: CancellationToken::new(),
        };
        replica.resume();
        replica
    }

    /// Runs a keeper on this replica's leases (again, after [`Replica::stop`]).
    fn resume(&mut self) {
        let keeper = Keeper::new(Arc::clone(&self.link), Arc::clone(&self.leases))
            .release_when(self.stopped.clone());
        self.keeper = Some(tokio::spawn(keeper.run(self.shutdown.clone())));
    }

    /// The keeper stops as a killed or paused process's would: no more renewals.
    fn stop(&mut self) {
        if let Some(k) = self.keeper.take() {
            k.abort();
        }
    }

    fn exited(&self) -> bool {
        self.keeper.as_ref().is_some_and(|k| k.is_finished())
    }
}

/// A cluster name in each shard.
fn clusters(leases: &Leases, shards: u32) -> Vec<String> {
    let mut found = vec![None; shards as usize];
    for i in 0.. {
        let name = format!("cluster-{i}");
        let slot = &mut found[leases.shard(&name) as usize];
        if slot.is_none() {
            *slot = Some(name);
        }
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    found.into_iter().map(Option::unwrap).collect()
}

/// What the sampling saw.
#[derive(Default)]
struct Seen {
    /// Per replica, the first and last instants it might act on any shard.
    first_act: Vec<Option<Instant>>,
    last_act: Vec<Option<Instant>>,
}

/// Advances time by `total` in steps, checking after each that no shard has two replicas that
/// may act on it.
async fn run_for(replicas: &[Replica], clusters: &[String], total: Duration, seen: &mut Seen) {
    seen.first_act.resize(replicas.len(), None);
    seen.last_act.resize(replicas.len(), None);
    let end = Instant::now() + total;
    while Instant::now() < end {
        tokio::time::advance(STEP).await;
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        let now = Instant::now();
        for cluster in clusters {
            let acting: Vec<usize> = (0..replicas.len())
                .filter(|&i| replicas[i].leases.may_act(cluster))
                .collect();
            assert!(
                acting.len() <= 1,
                "replicas {acting:?} may both act on {cluster} at {now:?}"
            );
            for i in acting {
                seen.first_act[i].get_or_insert(now);
                seen.last_act[i] = Some(now);
            }
        }
    }
}

fn held(replicas: &[Replica]) -> Vec<usize> {
    replicas.iter().map(|r| r.leases.held().len()).collect()
}

#[tokio::test(start_paused = true)]
async fn two_replicas_and_one_shard_exactly_one_acts() {
    let table = Arc::new(MemoryStore::new());
    let replicas = [
        Replica::start(&table, "a", 1),
        Replica::start(&table, "b", 1),
    ];
    let cs = clusters(&replicas[0].leases, 1);
    let mut seen = Seen::default();
    run_for(&replicas, &cs, Duration::from_secs(120), &mut seen).await;
    let mut counts = held(&replicas);
    counts.sort_unstable();
    assert_eq!(counts, [0, 1]);
    let acted: Vec<bool> = seen.first_act.iter().map(Option::is_some).collect();
    assert_eq!(acted.iter().filter(|a| **a).count(), 1, "{acted:?}");
}

#[tokio::test(start_paused = true)]
async fn three_replicas_and_six_shards_hold_two_each() {
    let table = Arc::new(MemoryStore::new());
    let mut replicas = vec![Replica::start(&table, "a", 6)];
    let cs = clusters(&replicas[0].leases, 6);
    let mut seen = Seen::default();
    run_for(&replicas, &cs, Duration::from_secs(3), &mut seen).await;
    assert_eq!(held(&replicas), [6], "alone, a replica holds every shard");
    replicas.push(Replica::start(&table, "b", 6));
    run_for(&replicas, &cs, Duration::from_secs(2), &mut seen).await;
    replicas.push(Replica::start(&table, "c", 6));
    run_for(&replicas, &cs, Duration::from_secs(120), &mut seen).await;
    assert_eq!(held(&replicas), [2, 2, 2]);
    let mut all: Vec<u32> = replicas.iter().flat_map(|r| r.leases.held()).collect();
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2, 3, 4, 5]);
}

/// Two replicas on one shard, 30 s after they started: (replicas, a cluster, the holder, the
/// standby). Exactly one of them holds the shard.
async fn a_holder_and_a_standby() -> (Vec<Replica>, Vec<String>, usize, usize) {
    let table = Arc::new(MemoryStore::new());
    let replicas = vec![
        Replica::start(&table, "a", 1),
        Replica::start(&table, "b", 1),
    ];
    let cs = clusters(&replicas[0].leases, 1);
    run_for(
        &replicas,
        &cs,
        Duration::from_secs(30),
        &mut Seen::default(),
    )
    .await;
    let holder = match held(&replicas).as_slice() {
        [1, 0] => 0,
        [0, 1] => 1,
        other => panic!("exactly one holder expected, held {other:?}"),
    };
    (replicas, cs, holder, 1 - holder)
}

#[tokio::test(start_paused = true)]
async fn a_killed_replica_is_taken_over_within_a_lease_and_a_renewal() {
    let (mut replicas, cs, holder, other) = a_holder_and_a_standby().await;
    replicas[holder].stop();
    let killed = Instant::now();
    let mut after = Seen::default();
    run_for(&replicas, &cs, Duration::from_secs(60), &mut after).await;
    let took = after.first_act[other].expect("the other replica took over");
    let t = timing();
    assert!(
        took - killed <= t.duration + t.renew_every + STEP,
        "took over {:?} after the kill",
        took - killed
    );
    let stopped = after.last_act[holder].unwrap_or(killed);
    assert!(
        stopped < took,
        "the dead replica's last moment {stopped:?}, takeover {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_replica_cut_off_from_the_table_stops_before_its_lease_can_be_taken_and_exits() {
    let (mut replicas, cs, holder, other) = a_holder_and_a_standby().await;
    replicas[holder].link.set_cut(true);
    let cut = Instant::now();
    let mut after = Seen::default();
    run_for(&replicas, &cs, Duration::from_secs(60), &mut after).await;
    let stopped = after.last_act[holder].expect("it held the lease when cut");
    let took = after.first_act[other].expect("the other replica took over");
    assert!(stopped < took);
    assert!(
        stopped - cut < timing().duration,
        "acted {:?} after the cut",
        stopped - cut
    );
    assert!(
        replicas[holder].exited(),
        "a replica that lost every lease exits"
    );
    let ended = replicas[holder].keeper.take().unwrap().await.unwrap();
    assert!(
        matches!(ended, Err(LeasesLost { ref shards, .. }) if shards == &[0]),
        "{ended:?}"
    );
    assert!(!replicas[other].exited());
}

#[tokio::test(start_paused = true)]
async fn slow_answers_never_let_two_replicas_act_at_once() {
    let table = Arc::new(MemoryStore::new());
    let replicas = vec![
        Replica::start(&table, "a", 2),
        Replica::start(&table, "b", 2),
        Replica::start(&table, "c", 2),
    ];
    let cs = clusters(&replicas[0].leases, 2);
    let mut seen = Seen::default();
    run_for(&replicas, &cs, Duration::from_secs(30), &mut seen).await;
    // Answers arrive late, longer than a renewal period: renewals land after their send time.
    for (i, r) in replicas.iter().enumerate() {
        r.link
            .set_delay(Duration::from_millis(2_000 + 1_700 * i as u64));
    }
    run_for(&replicas, &cs, Duration::from_secs(120), &mut seen).await;
    for r in &replicas {
        r.link.set_delay(Duration::ZERO);
    }
    run_for(&replicas, &cs, Duration::from_secs(60), &mut seen).await;
    let all: usize = held(&replicas).iter().sum();
    assert_eq!(all, 2, "every shard is held again: {:?}", held(&replicas));
}

#[tokio::test(start_paused = true)]
async fn a_replica_paused_past_its_lease_does_not_act_when_it_resumes() {
    let (mut replicas, cs, holder, other) = a_holder_and_a_standby().await;
    let mut seen = Seen::default();
    // SIGSTOP: nothing of the process runs, not even its keeper.
    replicas[holder].stop();
    run_for(&replicas, &cs, Duration::from_secs(40), &mut seen).await;
    assert_eq!(
        held(&replicas)[other],
        1,
        "the other replica took over meanwhile"
    );
    // SIGCONT: before its keeper has run again, the paused replica already may not act.
    assert!(!replicas[holder].leases.may_act(&cs[0]));
    assert!(!replicas[holder].leases.owns(&cs[0]));
    replicas[holder].resume();
    run_for(&replicas, &cs, Duration::from_secs(20), &mut seen).await;
    assert!(
        replicas[holder].exited(),
        "its renewal lost: it held nothing, so it exits"
    );
    assert_eq!(held(&replicas)[other], 1);
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_shuts_down_gives_its_lease_back_once_its_actions_have_ended() {
    let (replicas, cs, holder, other) = a_holder_and_a_standby().await;
    replicas[holder].shutdown.cancel();
    // Its controllers are still finishing: nothing is given back, nothing is taken.
    let mut finishing = Seen::default();
    run_for(&replicas, &cs, Duration::from_secs(4), &mut finishing).await;
    assert!(finishing.first_act[other].is_none(), "the standby waited");
    replicas[holder].stopped.cancel();
    let stopped = Instant::now();
    let mut after = Seen::default();
    run_for(&replicas, &cs, Duration::from_secs(30), &mut after).await;
    assert!(
        replicas[holder].exited(),
        "the keeper ended after the release"
    );
    assert!(after.last_act[holder].is_none(), "the holder acts no more");
    let took = after.first_act[other].expect("the standby took the lease");
    let t = timing();
    // Within a renewal, not after a full lease as after a death.
    assert!(
        took - stopped <= t.renew_every + STEP,
        "took {:?} after the release",
        took - stopped
    );
    assert_eq!(held(&replicas)[other], 1);
}
