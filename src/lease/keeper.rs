//! The lease keeper: the task that holds this replica's shards. Every `lease.renew_every` it
//! renews the leases it holds, beats its heartbeat, reads the table, and takes or sheds shards
//! so that it holds its fair share among the live replicas ([`rules`](super::rules) says when
//! each is allowed). [`Leases`] is what the controller asks (it is the [`Ownership`]).
//!
//! A lease that is not renewed stops every action on its shard by itself: [`Leases::may_act`]
//! compares the last renewal's send time with the clock, whether or not the keeper runs. When
//! every lease this replica held is lost, [`Keeper::run`] returns [`LeasesLost`]: the process
//! exits non-zero and its orchestrator starts it again, as controller-runtime does.
//!
//! Shedding (rebalancing to a replica that joined) only stops renewing: the shard is dropped
//! from [`Leases`] at once, and the newcomer takes it after a full lease, by the same rule as
//! after a death. No release write is needed, so none can race an action in flight.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::Ownership;
use super::rules::{Held, LeaseTiming, Watched, fair_share, shard_of};
use super::store::{Claim, LeaseRecord, LeaseStore};
use crate::cloud::CloudError;

/// How the work is split and leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub shards: u32,
    pub timing: LeaseTiming,
    /// The account and Region [`Ownership`] on [`Leases`] itself answers for (part of the
    /// shard key); a place of `[[targets]]` asks through [`super::PlaceScope`].
    pub account: String,
    pub region: String,
}

/// The key of shard `n`'s lease record.
pub fn shard_key(n: u32) -> String {
    format!("shard#{n}")
}

/// The key of a replica's heartbeat record.
pub fn replica_key(replica: &str) -> String {
    format!("replica#{replica}")
}

/// This replica's leases, as the controller sees them.
#[derive(Debug)]
pub struct Leases {
    replica: String,
    config: LeaseConfig,
    held: Mutex<BTreeMap<u32, Held>>,
}

impl Leases {
    pub fn new(replica: &str, config: LeaseConfig) -> Arc<Self> {
        Arc::new(Leases {
            replica: replica.to_string(),
            config,
            held: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// The shards held now, whose leases have not run out.
    pub fn held(&self) -> Vec<u32> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(_, h)| !h.expired(&self.config.timing, now))
            .map(|(n, _)| *n)
            .collect()
    }

    /// The shard of one of this account-Region's clusters.
    pub fn shard(&self, cluster: &str) -> u32 {
        let c = &self.config;
        self.shard_at(&c.account, &c.region, cluster)
    }

    /// The shard of a cluster of any account and Region (`[[targets]]`).
    pub fn shard_at(&self, account: &str, region: &str, cluster: &str) -> u32 {
        shard_of(account, region, cluster, self.config.shards)
    }

    /// Whether the cluster's shard is held ([`Ownership::owns`] for any account-Region).
    pub fn owns_at(&self, account: &str, region: &str, cluster: &str) -> bool {
        let shard = self.shard_at(account, region, cluster);
        self.lock()
            .get(&shard)
            .is_some_and(|h| !h.expired(&self.config.timing, Instant::now()))
    }

    /// Whether an action on the cluster may start ([`Ownership::may_act`] for any
    /// account-Region).
    pub fn may_act_at(&self, account: &str, region: &str, cluster: &str) -> bool {
        let shard = self.shard_at(account, region, cluster);
        self.lock()
            .get(&shard)
            .is_some_and(|h| h.may_act(&self.config.timing, Instant::now()))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u32, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Ownership for Leases {
    fn owns(&self, cluster: &str) -> bool {
        self.owns_at(&self.config.account, &self.config.region, cluster)
    }

    fn may_act(&self, cluster: &str) -> bool {
        self.may_act_at(&self.config.account, &self.config.region, cluster)
    }

    fn action_limit(&self) -> Option<std::time::Duration> {
        Some(self.config.timing.longest_call)
    }
}

/// Every lease this replica held was lost: it must stop and be started again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lost every lease it held (shards {shards:?}): {why}; exiting so that it is restarted")]
pub struct LeasesLost {
    pub shards: Vec<u32>,
    pub why: String,
}

/// What one cycle did, for tests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cycle {
    pub taken: Vec<u32>,
    pub lost: Vec<u32>,
    pub shed: Vec<u32>,
    /// Live replicas as this one counts them, itself included (when the table was read).
    pub live: Option<usize>,
}

/// Holds this replica's shards until shutdown.
pub struct Keeper<S> {
    store: Arc<S>,
    leases: Arc<Leases>,
    /// Every other record, as this replica has watched it.
    watched: BTreeMap<String, Watched>,
    /// The version of this replica's heartbeat record, once written.
    heartbeat: Option<u64>,
    on_change: Option<Arc<dyn Fn() + Send + Sync>>,
    /// With [`Keeper::release_when`]: cancelled once no action can be in flight.
    stopped: Option<CancellationToken>,
}

impl<S: LeaseStore> Keeper<S> {
    pub fn new(store: Arc<S>, leases: Arc<Leases>) -> Self {
        Keeper {
            store,
            leases,
            watched: BTreeMap::new(),
            heartbeat: None,
            on_change: None,
            stopped: None,
        }
    }

    /// At shutdown, once `stopped` is cancelled (every controller has ended, so no action is in
    /// flight), gives back the leases held so that another replica takes them at once rather
    /// than after a full lease. Without it (or if the process dies first), they run out.
    pub fn release_when(mut self, stopped: CancellationToken) -> Self {
        self.stopped = Some(stopped);
        self
    }

    /// Calls `f` whenever the shards held change (the controller then lists its scope again).
    pub fn on_change(mut self, f: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.on_change = Some(f);
        self
    }

    /// Cycles every `renew_every` until shutdown; an error when every lease was lost.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), LeasesLost> {
        let mut tick = tokio::time::interval(self.leases.config.timing.renew_every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            self.cycle().await?;
        }
        if let Some(stopped) = self.stopped.clone() {
            stopped.cancelled().await;
            self.release().await;
        }
        Ok(())
    }

    /// Gives back every lease held and the heartbeat: each record is written with no holder
    /// (conditional on the version this replica wrote, so a lease already taken is left
    /// alone), which a contender takes at once. The shards are dropped from [`Leases`] first:
    /// no action may start on them from here on. Returns the shards given back.
    pub async fn release(&mut self) -> Vec<u32> {
        let held: Vec<(u32, u64)> = {
            let mut map = self.leases.lock();
            let held = map.iter().map(|(n, h)| (*n, h.version)).collect();
            map.clear();
            held
        };
        let mut writes = JoinSet::new();
        for (shard, version) in held {
            let store = Arc::clone(&self.store);
            writes.spawn(async move {
                let result = store
                    .write(&shard_key(shard), "", version + 1, Some(version))
                    .await;
                (shard, result)
            });
        }
        let mut released = Vec::new();
        while let Some(joined) = writes.join_next().await {
            match joined {
                Ok((shard, Ok(Claim::Won))) => released.push(shard),
                Ok((shard, Ok(Claim::Lost))) => info!(shard, "lease already taken; not released"),
                Ok((shard, Err(e))) => {
                    warn!(shard, error = %e, "cannot release the lease; it runs out by itself")
                }
                Err(e) => error!(error = %e, "a lease release panicked"),
            }
        }
        if let Some(version) = self.heartbeat {
            let key = replica_key(&self.leases.replica);
            let _ = self.store.write(&key, "", version + 1, Some(version)).await;
        }
        released.sort_unstable();
        info!(released = ?released, "leases released for the other replicas");
        released
    }

    /// One round: renew, beat, read the table, take or shed.
    pub async fn cycle(&mut self) -> Result<Cycle, LeasesLost> {
        let mut cycle = Cycle::default();
        let (lost, why) = self.renew().await;
        cycle.lost = lost;
        self.beat().await;
        match self.store.scan().await {
            Ok(records) => {
                let now = Instant::now();
                self.watch(&records, now);
                let live = self.live_replicas(now);
                cycle.live = Some(live);
                self.balance(&records, live, now, &mut cycle).await;
            }
            Err(e) => warn!(error = %e, "cannot read the lease table; holding what is held"),
        }
        if !cycle.taken.is_empty() || !cycle.lost.is_empty() || !cycle.shed.is_empty() {
            info!(
                held = ?self.leases.held(),
                taken = ?cycle.taken,
                lost = ?cycle.lost,
                shed = ?cycle.shed,
                live_replicas = ?cycle.live,
                "leases changed"
            );
            if let Some(f) = &self.on_change {
                f();
            }
        }
        if !cycle.lost.is_empty() && self.leases.lock().is_empty() {
            return Err(LeasesLost {
                shards: cycle.lost,
                why,
            });
        }
        Ok(cycle)
    }

    /// Renews every held lease at once; drops those taken over or run out. Returns the shards
    /// lost and why.
    async fn renew(&mut self) -> (Vec<u32>, String) {
        let held: Vec<(u32, u64)> = self
            .leases
            .lock()
            .iter()
            .map(|(n, h)| (*n, h.version))
            .collect();
        let mut writes = JoinSet::new();
        for (shard, version) in held {
            let store = Arc::clone(&self.store);
            let me = self.leases.replica.clone();
            writes.spawn(async move {
                let sent = Instant::now();
                let result = store
                    .write(&shard_key(shard), &me, version + 1, Some(version))
                    .await;
                (shard, version + 1, sent, result)
            });
        }
        let mut lost = Vec::new();
        let mut why = String::new();
        while let Some(joined) = writes.join_next().await {
            let (shard, version, sent, result) = match joined {
                Ok(done) => done,
                // The lease it was renewing runs out by itself below.
                Err(e) => {
                    error!(error = %e, "a lease renewal panicked");
                    continue;
                }
            };
            let mut held = self.leases.lock();
            match result {
                Ok(Claim::Won) => {
                    if let Some(h) = held.get_mut(&shard) {
                        h.renewed(version, sent);
                    }
                }
                Ok(Claim::Lost) => {
                    held.remove(&shard);
                    error!(
                        shard,
                        "lease taken by another replica; no further action on its clusters"
                    );
                    why = format!("shard {shard}'s lease was taken by another replica");
                    lost.push(shard);
                }
                Err(e) => {
                    warn!(shard, error = %e, "cannot renew the lease; retrying next cycle");
                    why = format!("renewals failed ({e})");
                }
            }
        }
        let now = Instant::now();
        let timing = self.leases.config.timing;
        let mut held = self.leases.lock();
        let expired: Vec<u32> = held
            .iter()
            .filter(|(_, h)| h.expired(&timing, now))
            .map(|(n, _)| *n)
            .collect();
        for shard in expired {
            held.remove(&shard);
            error!(
                shard,
                "lease ran out before it could be renewed; no further action on its clusters"
            );
            lost.push(shard);
        }
        lost.sort_unstable();
        (lost, why)
    }

    /// Writes this replica's heartbeat record, by which the others count it as live.
    async fn beat(&mut self) {
        let key = replica_key(&self.leases.replica);
        let next = self.heartbeat.map_or(1, |v| v + 1);
        match self
            .store
            .write(&key, &self.leases.replica, next, self.heartbeat)
            .await
        {
            Ok(Claim::Won) => self.heartbeat = Some(next),
            // Someone wrote our record (a lost answer to our own write): catch up on the read.
            Ok(Claim::Lost) => self.heartbeat = None,
            Err(e) => warn!(error = %e, "cannot write the heartbeat; retrying next cycle"),
        }
    }

    fn watch(&mut self, records: &[LeaseRecord], now: Instant) {
        let mine = replica_key(&self.leases.replica);
        for record in records {
            if record.key == mine {
                if self.heartbeat.is_none() {
                    self.heartbeat = Some(record.version);
                }
                continue;
            }
            match self.watched.get_mut(&record.key) {
                Some(w) => w.observe(&record.holder, record.version, now),
                None => {
                    let w = Watched::new(&record.holder, record.version, now);
                    self.watched.insert(record.key.clone(), w);
                }
            }
        }
    }

    /// This replica and every other whose heartbeat moved within a lease.
    fn live_replicas(&self, now: Instant) -> usize {
        let timing = &self.leases.config.timing;
        1 + self
            .watched
            .iter()
            // A released heartbeat (no holder) is a replica that stopped.
            .filter(|(k, w)| {
                k.starts_with("replica#") && !w.holder.is_empty() && !w.may_take(timing, now)
            })
            .count()
    }

    async fn balance(
        &mut self,
        records: &[LeaseRecord],
        live: usize,
        now: Instant,
        cycle: &mut Cycle,
    ) {
        let shards = self.leases.config.shards;
        let target = fair_share(shards, live) as usize;
        let held = self.leases.lock().len();
        if held > target {
            let mut map = self.leases.lock();
            while map.len() > target {
                let Some((shard, _)) = map.pop_last() else {
                    break;
                };
                cycle.shed.push(shard);
            }
            return;
        }
        let by_key: BTreeMap<&str, &LeaseRecord> =
            records.iter().map(|r| (r.key.as_str(), r)).collect();
        let start = super::rules::shard_of(&self.leases.replica, "", "", shards);
        for offset in 0..shards {
            if self.leases.lock().len() >= target {
                break;
            }
            let shard = (start + offset) % shards;
            if self.leases.lock().contains_key(&shard) {
                continue;
            }
            let key = shard_key(shard);
            let expected = match by_key.get(key.as_str()) {
                None => None,
                Some(r) if r.holder.is_empty() || r.holder == self.leases.replica => {
                    Some(r.version)
                }
                Some(r) => match self.watched.get(&key) {
                    Some(w)
                        if w.version == r.version
                            && w.may_take(&self.leases.config.timing, now) =>
                    {
                        Some(r.version)
                    }
                    _ => continue,
                },
            };
            if self.take(shard, expected).await.is_ok_and(|won| won) {
                cycle.taken.push(shard);
            }
        }
    }

    /// A conditional write taking `shard` from the record at `expected` (or creating it).
    async fn take(&mut self, shard: u32, expected: Option<u64>) -> Result<bool, CloudError> {
        let version = expected.map_or(1, |v| v + 1);
        let sent = Instant::now();
        let key = shard_key(shard);
        match self
            .store
            .write(&key, &self.leases.replica, version, expected)
            .await
        {
            Ok(Claim::Won) => {
                let held = Held {
                    version,
                    renew_sent_at: sent,
                };
                self.leases.lock().insert(shard, held);
                Ok(true)
            }
            Ok(Claim::Lost) => Ok(false),
            Err(e) => {
                warn!(shard, error = %e, "cannot take the lease; trying again next cycle");
                Err(e)
            }
        }
    }
}
