//! The controller's root-cause read step: between diagnosis and planning, make the reads
//! that `capacity::inquiries` asks for (boot output, launch template version, scaling
//! activities, instance type) through the `Cloud` trait, and keep what they found in the
//! cluster's [`Clues`] (`docs/causes.md` says what each reading can show).
//!
//! The pure parts ([`prepare`], [`select`], [`store`]) run with the controller's memory
//! locked; [`read`] runs with it released, because it awaits the cloud.
//!
//! - A boot output, a launch template version and an instance type are kept while their
//!   subject is in the snapshot (a stuck instance's boot output does not change); scaling
//!   activities are read afresh each pass they are asked for. A reading that asking again could
//!   improve (not yet available, skipped, throttled) is asked again next pass, never twice in
//!   one; a denied read is not asked again while its subject is observed.
//! - At most [`MAX_READS_PER_PASS`] reads per cluster per pass; the rest are `Skipped` this
//!   pass. The adapter's API budget paces each call.
//! - A failed read is `Reading::Unreadable` (logged at warn with its subject); the plan is
//!   made all the same.
//! - With the configuration's `root_cause_reads = false`, or a policy's
//!   `spec.diagnose.rootCauseReads: false` (for that policy's findings), every inquiry is
//!   `Reading::Skipped` and no call is made.

use std::collections::BTreeSet;

use tracing::warn;

use crate::capacity::CapacityFinding;
use crate::causes::{Clues, Inquiry, Reading};
use crate::cloud::{Cloud, CloudError};
use crate::domain::ClusterSnapshot;
use crate::policy::PolicySet;

/// The most root-cause reads made for one cluster in one pass. A broken rollout of a hundred
/// instances must not spend the account's shared API budget on reading them all: a few boot
/// outputs per version already say why it fails, and what is left is read in later passes.
pub const MAX_READS_PER_PASS: usize = 8;

/// This pass's inquiries: those to read now, and those recorded as `Skipped` (switched off,
/// or beyond [`MAX_READS_PER_PASS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub to_read: Vec<Inquiry>,
    pub skipped: Vec<Inquiry>,
}

/// Forgets what must be read again this pass: readings whose subject has left the snapshot
/// and the scaling activities (read afresh each pass), as [`Clues::prune`] does, and every
/// reading that asking again could improve (not yet available, skipped, throttled). A denied
/// read is kept, so a missing permission costs one call per subject, not one per pass.
pub fn prepare(clues: &mut Clues, snapshot: &ClusterSnapshot) {
    clues.prune(snapshot);
    clues.boot.retain(|_, r| !r.worth_asking_again());
    clues.versions.retain(|_, r| !r.worth_asking_again());
    clues.instance_types.retain(|_, r| !r.worth_asking_again());
}

/// The inquiries of this pass's capacity findings, each once, in the order diagnosis asks
/// them: read when reads are on (`enabled`, the configuration's switch) and the finding's
/// policy allows them, up to [`MAX_READS_PER_PASS`]; skipped otherwise.
pub fn select(
    snapshot: &ClusterSnapshot,
    findings: &[CapacityFinding],
    policies: &PolicySet,
    clues: &Clues,
    enabled: bool,
) -> Selection {
    let mut asked = Vec::new();
    for finding in findings {
        let reads_on = enabled
            && policies
                .policies
                .iter()
                .find(|p| p.name == finding.policy)
                .is_none_or(|p| p.diagnose.root_cause_reads);
        asked.extend(
            crate::capacity::inquiries(snapshot, std::slice::from_ref(finding), clues)
                .into_iter()
                .map(|inquiry| (inquiry, reads_on)),
        );
    }
    choose(asked)
}

/// Splits inquiries, each with whether reads are allowed for it, into this pass's reads (the
/// allowed ones, each once, in order, up to [`MAX_READS_PER_PASS`]) and the skipped rest. An
/// inquiry allowed for one finding and not for another is read.
pub fn choose(asked: impl IntoIterator<Item = (Inquiry, bool)>) -> Selection {
    let asked: Vec<(Inquiry, bool)> = asked.into_iter().collect();
    let mut seen = BTreeSet::new();
    let mut selection = Selection::default();
    for (inquiry, _) in asked.iter().filter(|(_, allowed)| *allowed) {
        if !seen.insert(inquiry) {
            continue;
        }
        if selection.to_read.len() < MAX_READS_PER_PASS {
            selection.to_read.push(inquiry.clone());
        } else {
            selection.skipped.push(inquiry.clone());
        }
    }
    for (inquiry, _) in asked.iter().filter(|(_, allowed)| !*allowed) {
        if seen.insert(inquiry) {
            selection.skipped.push(inquiry.clone());
        }
    }
    selection
}

/// Makes each read once, in order, and returns what they found. A failed read is
/// `Unreadable` and logged; it does not stop the others.
pub async fn read<C: Cloud>(cloud: &C, inquiries: &[Inquiry]) -> Clues {
    let mut found = Clues::default();
    for inquiry in inquiries {
        match inquiry {
            Inquiry::BootOutput { instance_id } => {
                let result = cloud.console_output(instance_id).await;
                if let Err(e) = &result {
                    warn_unread(e, instance_id);
                }
                found.record_boot_output(instance_id, result);
            }
            Inquiry::LaunchTemplateVersion {
                template_id,
                version,
            } => {
                let reading = as_reading(
                    cloud.launch_template_version(template_id, *version).await,
                    &format!("{template_id} version {version}"),
                );
                found
                    .versions
                    .insert((template_id.clone(), *version), reading);
            }
            Inquiry::ScalingActivities { group } => {
                let reading = as_reading(cloud.scaling_activities(group).await, group);
                found.activities.insert(group.clone(), reading);
            }
            Inquiry::InstanceType { instance_type } => {
                let reading = as_reading(cloud.instance_type(instance_type).await, instance_type);
                found.instance_types.insert(instance_type.clone(), reading);
            }
        }
    }
    found
}

fn as_reading<T>(result: Result<T, CloudError>, subject: &str) -> Reading<T> {
    if let Err(e) = &result {
        warn_unread(e, subject);
    }
    Reading::from_result(result)
}

fn warn_unread(e: &CloudError, subject: &str) {
    warn!(subject = %subject, error = %e, "a root-cause read failed; the diagnosis stands without it");
}

/// Keeps what was found, and marks the skipped inquiries `Skipped` (unless already read).
pub fn store(clues: &mut Clues, found: Clues, skipped: &[Inquiry]) {
    clues.boot.extend(found.boot);
    clues.versions.extend(found.versions);
    clues.activities.extend(found.activities);
    clues.instance_types.extend(found.instance_types);
    for inquiry in skipped {
        match inquiry {
            Inquiry::BootOutput { instance_id } => {
                clues
                    .boot
                    .entry(instance_id.clone())
                    .or_insert(Reading::Skipped);
            }
            Inquiry::LaunchTemplateVersion {
                template_id,
                version,
            } => {
                clues
                    .versions
                    .entry((template_id.clone(), *version))
                    .or_insert(Reading::Skipped);
            }
            Inquiry::ScalingActivities { group } => {
                clues
                    .activities
                    .entry(group.clone())
                    .or_insert(Reading::Skipped);
            }
            Inquiry::InstanceType { instance_type } => {
                clues
                    .instance_types
                    .entry(instance_type.clone())
                    .or_insert(Reading::Skipped);
            }
        }
    }
}
