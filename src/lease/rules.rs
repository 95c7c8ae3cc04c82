//! The lease rules (issue 11), pure: when a holder may act, when a contender may take a lease
//! over, and which shard a cluster falls in. No clock is read here: every function is told
//! `now` on the caller's monotonic clock. The DynamoDB adapter that will make the conditional
//! writes is not built yet.
//!
//! The rules are those of the Amazon DynamoDB Lock Client, which tolerate skew between hosts'
//! clocks because no host ever compares its clock with another's:
//!
//! - A holder counts its lease from the moment it *sent* the conditional write that renewed it
//!   (a successful write cannot have been applied before it was sent). It may start a mutating
//!   call only while the lease has more than the longest such call left, so every call it
//!   starts has ended before the lease runs out.
//! - A contender counts from the moment it *first saw* the record's current version (which is
//!   after that version was written), and may take the lease, by a conditional write on that
//!   version, only once the version stayed unchanged for a full lease duration.
//!
//! So with the holder's last renewal sent at S and seen by the contender at F ≥ S, the holder
//! stops starting calls at S + lease − longest call and the contender takes at F + lease or
//! later: never both at once. Only the rates of the two clocks must agree, not their readings.

use std::time::Duration;

use tokio::time::Instant;

/// How long a lease lasts, how often it is renewed, and the longest mutating call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub duration: Duration,
    pub renew_every: Duration,
    /// The longest a mutating call can take (the SDK's operation timeout): no call is started
    /// with less than this left on the lease.
    pub longest_call: Duration,
}

impl LeaseTiming {
    /// client-go's and the defaults: a 15 s lease renewed every 5 s, with calls of at
    /// most `longest_call`.
    pub fn with_defaults(longest_call: Duration) -> Self {
        LeaseTiming {
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            longest_call,
        }
    }

    /// Why these timings cannot work, naming the key; `None` when they can.
    pub fn problem(&self) -> Option<String> {
        if self.renew_every >= self.duration {
            return Some(format!(
                "lease.duration: must be longer than lease.renew_every ({:?}), got {:?}",
                self.renew_every, self.duration
            ));
        }
        if self.longest_call >= self.duration {
            return Some(format!(
                "lease.duration: must be longer than the longest mutating call \
                 (aws.operation_timeout, {:?}), got {:?}",
                self.longest_call, self.duration
            ));
        }
        None
    }
}

/// A lease this replica holds: the record version it wrote and when it sent that write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub version: u64,
    pub renew_sent_at: Instant,
}

impl Held {
    /// Whether a mutating call may start now: it would end before the lease runs out.
    pub fn may_act(&self, timing: &LeaseTiming, now: Instant) -> bool {
        now + timing.longest_call < self.renew_sent_at + timing.duration
    }

    /// Whether the lease has run out (every action on the shard must have stopped).
    pub fn expired(&self, timing: &LeaseTiming, now: Instant) -> bool {
        now >= self.renew_sent_at + timing.duration
    }

    /// A renewal whose write was sent at `sent_at` succeeded with `version`.
    pub fn renewed(&mut self, version: u64, sent_at: Instant) {
        self.version = version;
        self.renew_sent_at = self.renew_sent_at.max(sent_at);
    }
}

/// Another replica's lease as this one watches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub holder: String,
    pub version: u64,
    /// When this replica first saw `version`.
    pub seen_since: Instant,
}

impl Watched {
    pub fn new(holder: &str, version: u64, now: Instant) -> Self {
        Watched {
            holder: holder.to_string(),
            version,
            seen_since: now,
        }
    }

    /// A read of the record at `now`: a new version (or holder) starts the count again.
    pub fn observe(&mut self, holder: &str, version: u64, now: Instant) {
        if version != self.version || holder != self.holder {
            *self = Watched::new(holder, version, now);
        }
    }

    /// Whether the version stayed unchanged for a full lease: then a conditional write on it
    /// may take the lease.
    pub fn may_take(&self, timing: &LeaseTiming, now: Instant) -> bool {
        now >= self.seen_since + timing.duration
    }
}

/// The shard of a piece of work (account, Region, cluster), the same on every replica and
/// every build: 64-bit FNV-1a of the key, modulo the shard count (at least 1).
pub fn shard_of(account: &str, region: &str, cluster: &str, shards: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for part in [account, region, cluster] {
        for byte in part.bytes().chain([0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    u32::try_from(hash % u64::from(shards.max(1))).unwrap_or(0)
}

/// How many shards one of `replicas` live replicas should hold: its fair share, rounded up
/// so that every shard can be held.
pub fn fair_share(shards: u32, replicas: usize) -> u32 {
    let replicas = u32::try_from(replicas.max(1)).unwrap_or(u32::MAX);
    shards.div_ceil(replicas)
}
