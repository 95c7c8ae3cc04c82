//! Which root-cause reads would explain the capacity findings: the launch template version and
//! the boot output of a few instances that never registered, the scaling activities and
//! instance types of a group whose tasks wait for capacity. Pure. Never anything for a healthy
//! version or a group with no waiting task.
//!
//! It lives with the capacity diagnosis, whose findings it reads: `causes` knows nothing of
//! capacity findings, so the dependency runs one way (capacity → causes).

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use super::CapacityFinding;
use crate::causes::{CauseCode, Clues, Inquiry, Reading};
use crate::domain::{ClusterSnapshot, GroupLaunch};

/// Boot outputs read per launch template version: its oldest instances that never registered.
pub const BOOT_READS_PER_VERSION: usize = 2;

/// The reads that would explain the capacity findings and are not in `clues` yet (or are worth
/// asking again: not available yet, skipped, throttled). Scaling activities change, so they are
/// asked on every pass. Deterministic: findings in order, each finding's reads in a fixed
/// order, no repeats.
pub fn inquiries(
    snapshot: &ClusterSnapshot,
    findings: &[CapacityFinding],
    clues: &Clues,
) -> Vec<Inquiry> {
    let mut out: Vec<Inquiry> = Vec::new();
    let mut ask = |inquiry: Inquiry| {
        if !out.contains(&inquiry) {
            out.push(inquiry);
        }
    };
    for finding in findings.iter().filter(|f| !f.waiting_tasks.is_empty()) {
        for unregistered in finding
            .never_registered
            .iter()
            .filter(|u| !u.instances.is_empty())
        {
            if let (Some(template_id), Some(version)) =
                (&unregistered.template_id, unregistered.version)
                && unread(clues.versions.get(&(template_id.clone(), version)))
            {
                ask(Inquiry::LaunchTemplateVersion {
                    template_id: template_id.clone(),
                    version,
                });
            }
            for instance_id in unregistered.instances.iter().take(BOOT_READS_PER_VERSION) {
                if unread(clues.boot.get(instance_id)) {
                    ask(Inquiry::BootOutput {
                        instance_id: instance_id.clone(),
                    });
                }
            }
        }
        if !waits_for_capacity(finding.cause.code()) {
            continue;
        }
        let Some(group) = finding
            .group
            .as_deref()
            .and_then(|name| snapshot.auto_scaling_groups.iter().find(|g| g.name == name))
        else {
            continue;
        };
        ask(Inquiry::ScalingActivities {
            group: group.name.clone(),
        });
        let types = clues.group_instance_types(group);
        if types.is_empty()
            && let GroupLaunch::LaunchTemplate {
                template_id,
                resolved_version: Some(version),
                ..
            } = &group.launch
            && unread(clues.versions.get(&(template_id.clone(), *version)))
        {
            ask(Inquiry::LaunchTemplateVersion {
                template_id: template_id.clone(),
                version: *version,
            });
        }
        for instance_type in types {
            if unread(clues.instance_types.get(&instance_type)) {
                ask(Inquiry::InstanceType { instance_type });
            }
        }
    }
    out
}

/// The causes under which tasks wait for capacity the group should be giving them.
fn waits_for_capacity(code: CauseCode) -> bool {
    matches!(
        code,
        CauseCode::CapacityShort
            | CauseCode::CapacityOnItsWay
            | CauseCode::CapacityExhausted
            | CauseCode::LaunchFailed
            | CauseCode::NoInstanceFits
            | CauseCode::ProvisioningQuota
    )
}

fn unread<T>(reading: Option<&Reading<T>>) -> bool {
    reading.is_none_or(Reading::worth_asking_again)
}
