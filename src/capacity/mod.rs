//! Capacity remediation: why tasks wait in PROVISIONING (the capacity provider's Auto Scaling
//! group, its launch template versions, their instances' registration) and what to do about
//! it. Pure, like the rest of diagnosis and planning.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

pub mod diagnose;
pub mod inquire;
pub mod plan;
pub mod tags;

pub use diagnose::{CapacityFinding, Cause, diagnose_capacity};
pub use inquire::{BOOT_READS_PER_VERSION, inquiries};
pub use plan::plan_capacity;
