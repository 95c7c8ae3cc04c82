//! Which clusters this replica may reconcile and act on: the seam between the controller and
//! the leases that share the work between replicas. [`Everything`] is one replica alone;
//! [`keeper::Leases`] answers from the DynamoDB leases [`keeper::Keeper`] holds, by the rules of
//! [`rules`], in a table behind [`store::LeaseStore`].
//!
//! The controller asks [`Ownership`] twice: which clusters in scope are its own (the others are
//! not even read), and, just before the intent record of every mutating action, whether it
//! may still act on that cluster. A replica that cannot answer yes holds the action as
//! `skipped:leaseNotHeld` and makes no call.

pub mod keeper;
pub mod rules;
pub mod store;

/// The guardrail that holds an action back while this replica does not hold the lease of the
/// cluster's shard (or holds it with too little time left).
pub const LEASE_NOT_HELD: &str = "leaseNotHeld";

/// What this replica owns. Implementations must answer quickly and never block: they are
/// asked on the reconcile's task.
pub trait Ownership: Send + Sync + 'static {
    /// Whether `cluster` is this replica's to reconcile (its shard's lease is held, or being
    /// taken).
    fn owns(&self, cluster: &str) -> bool;

    /// Whether a mutating action on `cluster` may start now: the lease is held with more time
    /// left than the longest mutating call can take.
    fn may_act(&self, cluster: &str) -> bool;

    /// The longest one action may take once started; it is abandoned then. `None`: no limit.
    fn action_limit(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Everything: one replica, no leases (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct Everything;

impl Ownership for Everything {
    fn owns(&self, _cluster: &str) -> bool {
        true
    }

    fn may_act(&self, _cluster: &str) -> bool {
        true
    }
}

/// What one account-Region's controller owns (`[[targets]]`): the clusters of its target's
/// cluster scope whose shard, keyed by its account and Region, this replica holds.
pub struct PlaceScope {
    pub leases: Option<std::sync::Arc<keeper::Leases>>,
    pub account: String,
    pub region: String,
    /// The target's cluster globs; `None`: every cluster.
    pub clusters: Option<globset::GlobSet>,
}

impl PlaceScope {
    fn in_scope(&self, cluster: &str) -> bool {
        self.clusters.as_ref().is_none_or(|c| c.is_match(cluster))
    }
}

impl Ownership for PlaceScope {
    fn owns(&self, cluster: &str) -> bool {
        self.in_scope(cluster)
            && self
                .leases
                .as_ref()
                .is_none_or(|l| l.owns_at(&self.account, &self.region, cluster))
    }

    fn may_act(&self, cluster: &str) -> bool {
        self.in_scope(cluster)
            && self
                .leases
                .as_ref()
                .is_none_or(|l| l.may_act_at(&self.account, &self.region, cluster))
    }

    fn action_limit(&self) -> Option<std::time::Duration> {
        self.leases.as_ref().and_then(|l| l.action_limit())
    }
}

/// This replica's name in the lease table: host, process id and a random part, so that a
/// restarted process never inherits its predecessor's leases by name.
pub fn replica_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!(
        "{}-{}-{:04x}",
        host_name(),
        std::process::id(),
        h.finish() as u16
    )
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}
