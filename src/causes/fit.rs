//! Whether a waiting task fits the instance types its group launches. Pure.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use super::RootCause;
use crate::domain::{InstanceTypeSize, Task};

/// ECS counts 1024 CPU units to a vCPU.
pub const CPU_UNITS_PER_VCPU: u32 = 1024;

/// Whether a task of this size could be placed on an empty instance of `size`. Measured
/// against the instance type's full size, though the agent registers a little less memory:
/// the controller only says "does not fit" when that is certain.
pub fn fits(task_cpu: Option<u32>, task_memory: Option<u32>, size: &InstanceTypeSize) -> bool {
    let cpu_ok = task_cpu.is_none_or(|c| c <= size.vcpus.saturating_mul(CPU_UNITS_PER_VCPU));
    let memory_ok = task_memory.is_none_or(|m| u64::from(m) <= size.memory_mib);
    cpu_ok && memory_ok
}

/// The tasks that fit none of `sizes` (the group's instance types), with the root cause for
/// the first of them, measured against the largest type. Nothing when `sizes` is empty: an
/// unknown instance type proves nothing.
pub fn too_large<'a>(
    tasks: &[&'a Task],
    sizes: &[InstanceTypeSize],
) -> (Vec<&'a Task>, Option<RootCause>) {
    let Some(largest) = sizes
        .iter()
        .max_by_key(|s| (s.memory_mib, s.vcpus, s.instance_type.clone()))
    else {
        return (Vec::new(), None);
    };
    let misfits: Vec<&Task> = tasks
        .iter()
        .copied()
        .filter(|t| !sizes.iter().any(|s| fits(t.cpu, t.memory, s)))
        .collect();
    let cause = misfits.first().map(|t| RootCause::NoInstanceFits {
        instance_type: largest.instance_type.clone(),
        instance_vcpus: largest.vcpus,
        instance_memory_mib: largest.memory_mib,
        task_cpu: t.cpu,
        task_memory: t.memory,
    });
    (misfits, cause)
}
