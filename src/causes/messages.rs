//! What ECS says in words about tasks it cannot place or start: service events and the stop
//! reasons of tasks ECS stopped itself. Pure.
//!
//! ECS gives no code for these (beyond `stopCode: TaskFailedToStart`), so matching its message
//! text is unavoidable. Every pattern lives in [`MESSAGES`] and nowhere else. The messages
//! become evidence, and one of them decides: a [`EcsMessage::ProvisioningLimit`] since the
//! wait began is by itself enough for the PROVISIONING quota to count as reached, which turns
//! a `capacityExhausted` or `unknown` finding into `provisioningQuota` (docs/causes.md). No
//! other message changes a cause.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use serde::Serialize;

/// One thing ECS says about placement or start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EcsMessage {
    /// "was unable to place a task because no container instance met all of its requirements"
    NoInstanceMetRequirements,
    /// "... has insufficient memory available"
    InsufficientMemory,
    /// "... has insufficient CPU units available"
    InsufficientCpu,
    /// "... EMPTY CAPACITY PROVIDER"
    EmptyCapacityProvider,
    /// "tasks provisioning capacity limit was exceeded"
    ProvisioningLimit,
    /// "Timeout waiting for network interface provisioning to complete"
    NetworkInterfaceTimeout,
}

/// ECS's message texts, lower-cased substrings, tried in order; a message may match several.
const MESSAGES: &[(&str, EcsMessage)] = &[
    (
        "no container instance met all of its requirements",
        EcsMessage::NoInstanceMetRequirements,
    ),
    ("insufficient memory", EcsMessage::InsufficientMemory),
    ("insufficient cpu", EcsMessage::InsufficientCpu),
    ("empty capacity provider", EcsMessage::EmptyCapacityProvider),
    ("provisioning capacity limit", EcsMessage::ProvisioningLimit),
    ("capacity limit was exceeded", EcsMessage::ProvisioningLimit),
    (
        "waiting for network interface provisioning",
        EcsMessage::NetworkInterfaceTimeout,
    ),
];

/// What a service event or stop reason says, in table order, without repeats.
pub fn classify(message: &str) -> Vec<EcsMessage> {
    let lower = message.to_ascii_lowercase();
    let mut out = Vec::new();
    for (needle, said) in MESSAGES {
        if lower.contains(needle) && !out.contains(said) {
            out.push(*said);
        }
    }
    out
}

/// The stop code ECS gives a task it could not start.
pub const TASK_FAILED_TO_START: &str = "TaskFailedToStart";
