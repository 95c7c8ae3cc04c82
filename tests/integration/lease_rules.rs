//! The lease rules (`src/lease/rules.rs`): a holder whose renewals fail, are slow, or are
//! applied without it hearing back, and a contender polling the record with slow reads, never
//! act on one shard at the same time; the timing checks name their key; shards are stable.

use std::time::Duration;

use ecs_reconciler::lease::rules::{Held, LeaseTiming, Watched, fair_share, shard_of};
use proptest::prelude::*;
use tokio::time::Instant;

const STEP: u64 = 50;

/// One renewal attempt of the holder: whether the write reaches the table, how long it takes,
/// and whether the holder hears that it succeeded.
#[derive(Debug, Clone)]
struct Renewal {
    applied: bool,
    latency_ms: u64,
    ack_lost: bool,
}

fn renewal() -> impl Strategy<Value = Renewal> {
    (
        prop::bool::weighted(0.7),
        0u64..3000,
        prop::bool::weighted(0.2),
    )
        .prop_map(|(applied, latency_ms, ack_lost)| Renewal {
            applied,
            latency_ms,
            ack_lost,
        })
}

/// The table's record of the lease.
struct Record {
    holder: &'static str,
    version: u64,
}

proptest! {
    #[test]
    fn a_holder_and_a_contender_never_act_on_one_shard_at_once(
        renewals in prop::collection::vec(renewal(), 40),
        poll_ms in 500u64..6000,
        read_latency_ms in 0u64..3000,
        take_latency_ms in 0u64..3000,
    ) {
        let timing = LeaseTiming::with_defaults(Duration::from_secs(4));
        let base = Instant::now();
        let at = |ms: u64| base + Duration::from_millis(ms);
        let mut record = Record { holder: "a", version: 1 };
        let mut held = Some(Held { version: 1, renew_sent_at: at(0) });
        // Writes in flight: (applies at, is a renewal, version it is conditional on, sent at).
        let mut pending: Vec<(u64, bool, u64, u64, bool)> = Vec::new();
        let mut watched: Option<Watched> = None;
        let mut read_in_flight: Option<(u64, &'static str, u64)> = None;
        let mut taken_at: Option<u64> = None;
        let mut last_call_end = 0u64;
        let renew_ms = timing.renew_every.as_millis() as u64;
        for step in 0..(200_000 / STEP) {
            let now = step * STEP;
            // The holder renews on its cadence, conditional on the version it knows.
            if now.is_multiple_of(renew_ms) && now > 0 {
                let r = &renewals[((now / renew_ms) as usize) % renewals.len()];
                if let Some(h) = held.filter(|_| r.applied) {
                    pending.push((now + r.latency_ms, true, h.version, now, r.ack_lost));
                }
            }
            // Writes reach the table.
            pending.sort_by_key(|p| p.0);
            while pending.first().is_some_and(|p| p.0 <= now) {
                let (_, renewal, on_version, sent, ack_lost) = pending.remove(0);
                if record.version != on_version {
                    continue;
                }
                record.version += 1;
                if renewal {
                    if !ack_lost && let Some(h) = held.as_mut() {
                        h.renewed(record.version, at(sent));
                    }
                } else {
                    record.holder = "b";
                    taken_at = Some(now);
                }
            }
            if taken_at.is_some() {
                held = None;
            }
            // The holder starts a mutating call whenever the rules let it.
            if held.is_some_and(|h| h.may_act(&timing, at(now))) {
                last_call_end = last_call_end.max(now + timing.longest_call.as_millis() as u64);
            }
            if let Some(taken) = taken_at {
                prop_assert!(
                    last_call_end <= taken,
                    "a call of the holder runs until {last_call_end} ms, the lease was taken at {taken} ms"
                );
            }
            // The contender reads the record (the answer arrives later) and takes when allowed.
            if let Some((arrives, holder, version)) = read_in_flight.filter(|r| r.0 <= now) {
                match watched.as_mut() {
                    Some(w) => w.observe(holder, version, at(arrives)),
                    None => watched = Some(Watched::new(holder, version, at(arrives))),
                }
                read_in_flight = None;
            }
            if read_in_flight.is_none() && now % poll_ms < STEP && taken_at.is_none() {
                read_in_flight = Some((now + read_latency_ms, record.holder, record.version));
            }
            let taking = pending.iter().any(|p| !p.1);
            if let Some(w) = watched.as_ref().filter(|w| w.may_take(&timing, at(now)))
                && !taking
                && taken_at.is_none()
            {
                pending.push((now + take_latency_ms, false, w.version, now, false));
            }
        }
    }
}

#[test]
fn a_lease_not_longer_than_its_renewal_or_a_call_is_refused_naming_the_key() {
    let mut t = LeaseTiming::with_defaults(Duration::from_secs(4));
    assert_eq!(t.problem(), None);
    t.duration = t.renew_every;
    let problem = t.problem().unwrap();
    assert!(
        problem.starts_with("lease.duration: must be longer than lease.renew_every"),
        "{problem}"
    );
    let mut t = LeaseTiming::with_defaults(Duration::from_secs(20));
    let problem = t.problem().unwrap();
    assert!(problem.contains("aws.operation_timeout"), "{problem}");
    t.longest_call = Duration::from_secs(1);
    assert_eq!(t.problem(), None);
}

#[test]
fn a_holder_stops_starting_calls_a_call_before_its_lease_ends() {
    let timing = LeaseTiming::with_defaults(Duration::from_secs(4));
    let sent = Instant::now();
    let held = Held {
        version: 3,
        renew_sent_at: sent,
    };
    assert!(held.may_act(&timing, sent + Duration::from_millis(10_999)));
    assert!(!held.may_act(&timing, sent + Duration::from_secs(11)));
    assert!(!held.expired(&timing, sent + Duration::from_millis(14_999)));
    assert!(held.expired(&timing, sent + Duration::from_secs(15)));
}

#[test]
fn a_contender_counts_again_from_each_new_version_it_sees() {
    let timing = LeaseTiming::with_defaults(Duration::from_secs(4));
    let t0 = Instant::now();
    let mut w = Watched::new("a", 7, t0);
    w.observe("a", 7, t0 + Duration::from_secs(10));
    assert!(!w.may_take(&timing, t0 + Duration::from_secs(14)));
    w.observe("a", 8, t0 + Duration::from_secs(14));
    assert!(!w.may_take(&timing, t0 + Duration::from_secs(20)));
    assert!(w.may_take(&timing, t0 + Duration::from_secs(29)));
}

#[test]
fn shards_are_stable_spread_and_shared_fairly() {
    // The same key gives the same shard in every build: a replica upgraded mid-rollout agrees.
    assert_eq!(
        shard_of("111122223333", "us-east-1", "prod-web", 6),
        shard_of("111122223333", "us-east-1", "prod-web", 6)
    );
    assert_eq!(shard_of("111122223333", "us-east-1", "prod-web", 1), 0);
    assert_eq!(shard_of("a", "b", "c", 0), 0, "no shard count below one");
    let mut counts = [0usize; 6];
    for account in 0..10 {
        for region in ["us-east-1", "eu-west-1"] {
            for cluster in 0..10 {
                let key = (format!("{account:012}"), format!("cluster-{cluster}"));
                counts[shard_of(&key.0, region, &key.1, 6) as usize] += 1;
            }
        }
    }
    assert!(counts.iter().all(|&c| (15..=55).contains(&c)), "{counts:?}");
    // "ab"+"c" and "a"+"bc" are different work.
    assert_ne!(
        shard_of("ab", "c", "x", 1 << 20),
        shard_of("a", "bc", "x", 1 << 20)
    );
    assert_eq!(fair_share(6, 3), 2);
    assert_eq!(fair_share(6, 4), 2);
    assert_eq!(fair_share(1, 2), 1);
    assert_eq!(fair_share(6, 0), 6);
}
