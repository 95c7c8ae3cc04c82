//! Which clusters this replica may reconcile and act on: the seam between the controller and
//! the leases that will share the work between replicas (not built yet; `Everything` is the
//! only implementation). [`rules`] holds the lease rules the DynamoDB leases will follow.
//!
//! The controller asks [`Ownership`] twice: which clusters in scope are its own (the others are
//! not even read), and, just before the intent record of every mutating action, whether it
//! may still act on that cluster. A replica that cannot answer yes holds the action as
//! `skipped:leaseNotHeld` and makes no call.

pub mod rules;

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
