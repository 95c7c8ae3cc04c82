//! Capacity remediations, planned from capacity findings under the policies. Pure.
//!
//! - a broken launch template version is cordoned: the cordon is recorded on the group (tag,
//!   first, so a crash never loses it), the group is pinned to the newest version whose
//!   instances registered, and the never-registered instances are terminated without
//!   decrementing desired capacity, so their replacements come from the good version. With no
//!   known-good version nothing is pinned or terminated: the audit trail says so.
//! - short capacity is nudged: desired capacity + `step`, never past min(MaxSize, `maxDesired`),
//!   at most once per `cooldown` (kept on the group as a tag written before the change, so a
//!   crash in between is finished, not repeated); never for a cordoned or broken version, never
//!   where ECS managed scaling owns the group.
//! - a container instance whose agent stayed disconnected past the limit is drained.
//!
//! Every count is checked or saturating (the lint below enforces it): a nudge never plans a
//! desired capacity at or below the current one, nor above min(MaxSize, `maxDesired`),
//! whatever the policy's numbers.
#![warn(clippy::arithmetic_side_effects)]

use std::time::Duration;

use super::diagnose::{CapacityFinding, Cause};
use super::tags;
use crate::diagnose::{Evidence, Sightings, short};
use crate::domain::{ClusterSnapshot, GroupLaunch};
use crate::history::History;
use crate::plan::{Action, HeldAction, Hold, PlannedAction};
use crate::policy::{Policy, PolicyMode, PolicySet};

/// Planned and held capacity actions.
#[derive(Debug, Default)]
pub struct CapacityPlan {
    pub actions: Vec<PlannedAction>,
    pub held: Vec<HeldAction>,
}

/// Plans the capacity remediations of one cluster.
pub fn plan_capacity(
    snapshot: &ClusterSnapshot,
    findings: &[CapacityFinding],
    policies: &PolicySet,
    sightings: &Sightings,
    history: &History,
    dry_run: bool,
) -> CapacityPlan {
    let mut out = CapacityPlan::default();
    let mode = |p: &Policy| if dry_run { PolicyMode::Audit } else { p.mode };
    for finding in findings {
        let Some(policy) = policies.policies.iter().find(|p| p.name == finding.policy) else {
            continue;
        };
        let planned = |action: Action| PlannedAction {
            policy: policy.name.clone(),
            mode: mode(policy),
            cluster: snapshot.cluster_name.clone(),
            service: None,
            action,
            reason: finding.reason.clone(),
            evidence: finding.evidence.clone(),
        };
        let held = |action: &'static str, hold: Hold| HeldAction {
            policy: policy.name.clone(),
            mode: mode(policy),
            cluster: snapshot.cluster_name.clone(),
            service: None,
            action,
            target: finding
                .group_arn
                .clone()
                .unwrap_or_else(|| finding.capacity_provider.clone()),
            reason: finding.reason.clone(),
            hold,
            evidence: finding.evidence.clone(),
        };
        if !snapshot.is_complete() {
            out.held.push(held(
                "capacity",
                Hold::IncompleteObservation {
                    gaps: snapshot.gaps.clone(),
                },
            ));
            continue;
        }
        let group = finding
            .group
            .as_deref()
            .and_then(|name| snapshot.auto_scaling_groups.iter().find(|g| g.name == name));
        match (&finding.cause, group) {
            (
                Cause::BrokenLaunchTemplateVersion {
                    template_id,
                    version,
                    failed_instances,
                    known_good,
                },
                Some(group),
            ) => {
                let Some(_) = &policy.remediate.cordon_launch_template else {
                    out.held.push(held(
                        "cordonLaunchTemplate",
                        Hold::NotAllowed {
                            missing: "remediate.cordonLaunchTemplate".into(),
                        },
                    ));
                    continue;
                };
                let tag = (!tags::is_cordoned(group, template_id, *version)).then(|| {
                    tags::cordon_tag(
                        template_id,
                        *version,
                        snapshot.observed_at,
                        *known_good,
                        &policy.name,
                        &finding.reason,
                    )
                });
                let configured = match &group.launch {
                    GroupLaunch::LaunchTemplate { version, .. } => version.clone(),
                    _ => String::new(),
                };
                let pin_to = known_good.filter(|good| configured != good.to_string());
                let terminate = if known_good.is_some() {
                    failed_instances.clone()
                } else {
                    Vec::new()
                };
                if tag.is_none() && pin_to.is_none() && terminate.is_empty() {
                    if known_good.is_none() {
                        out.held.push(held(
                            "cordonLaunchTemplate",
                            Hold::NoRemedy {
                                why: format!(
                                    "version {version} is cordoned, but no version of \
                                     {template_id} is known to work: nothing pinned; an \
                                     operator must publish or choose a working version"
                                ),
                            },
                        ));
                    }
                    continue;
                }
                out.actions.push(planned(Action::CordonLaunchTemplate {
                    group: group.name.clone(),
                    group_arn: group.arn.clone(),
                    template_id: template_id.clone(),
                    version: *version,
                    tag,
                    pin_to,
                    terminate,
                }));
            }
            (Cause::CapacityShort { desired, ceiling }, Some(group)) => {
                let Some(nudge) = &policy.remediate.nudge_capacity else {
                    out.held.push(held(
                        "nudgeCapacity",
                        Hold::NotAllowed {
                            missing: "remediate.nudgeCapacity".into(),
                        },
                    ));
                    continue;
                };
                let managed = snapshot
                    .capacity_providers
                    .iter()
                    .any(|p| p.name == finding.capacity_provider && p.managed_scaling);
                if managed {
                    out.held.push(held(
                        "nudgeCapacity",
                        Hold::NoRemedy {
                            why: "ECS managed scaling owns this group's desired capacity".into(),
                        },
                    ));
                    continue;
                }
                if let GroupLaunch::LaunchTemplate {
                    template_id,
                    resolved_version: Some(v),
                    ..
                } = &group.launch
                    && tags::is_cordoned(group, template_id, *v)
                {
                    out.held.push(held(
                        "nudgeCapacity",
                        Hold::NoRemedy {
                            why: format!(
                                "the group launches from cordoned version {v} of {template_id}"
                            ),
                        },
                    ));
                    continue;
                }
                // The finding's ceiling is bounded again here, so that no finding, however it
                // was made, lets a nudge past the group's MaxSize or the policy's maxDesired.
                let ceiling = (*ceiling).min(group.max_size).min(nudge.max_desired);
                let last = tags::last_nudge(group);
                let in_cooldown = last.as_ref().is_some_and(|n| {
                    snapshot
                        .observed_at
                        .duration_since(n.at)
                        .unwrap_or(Duration::ZERO)
                        < nudge.cooldown
                });
                let action = |to: u32, tag: Option<(String, String)>| {
                    planned(Action::NudgeCapacity {
                        group: group.name.clone(),
                        group_arn: group.arn.clone(),
                        from: *desired,
                        to,
                        tag,
                    })
                };
                match last {
                    Some(last) if in_cooldown && *desired < last.to.min(ceiling) => {
                        // The tag was written but the change never made (a crash): finish it.
                        out.actions.push(action(last.to.min(ceiling), None));
                    }
                    Some(last) if in_cooldown => out.held.push(held(
                        "nudgeCapacity",
                        Hold::Cooldown {
                            last: crate::diagnose::rfc3339(last.at),
                            cooldown: short(nudge.cooldown),
                        },
                    )),
                    _ => match nudge_target(*desired, nudge.step, ceiling) {
                        Ok(to) => out.actions.push(action(
                            to,
                            Some(tags::nudge_tag(
                                snapshot.observed_at,
                                *desired,
                                to,
                                &policy.name,
                            )),
                        )),
                        Err(hold) => out.held.push(held("nudgeCapacity", hold)),
                    },
                }
            }
            (Cause::CapacityExhausted { .. }, _) => {
                out.held
                    .push(held("nudgeCapacity", Hold::CapacityExhausted));
            }
            (Cause::GroupMissing, _) | (Cause::Unsupported { .. }, _) => {
                out.held.push(held(
                    "capacity",
                    Hold::NoRemedy {
                        why: finding.reason.clone(),
                    },
                ));
            }
            _ => {}
        }
    }
    plan_drains(snapshot, policies, sightings, history, dry_run, &mut out);
    out
}

/// The desired capacity a nudge of `step` from `desired` plans: `desired + step`, at most
/// `ceiling`, and always above `desired`. What cannot add capacity is held, never planned as a
/// change that keeps or lowers the desired capacity.
fn nudge_target(desired: u32, step: u32, ceiling: u32) -> Result<u32, Hold> {
    let to = desired.saturating_add(step).min(ceiling);
    if to > desired {
        Ok(to)
    } else if step == 0 {
        Err(Hold::NoRemedy {
            why: "nudgeCapacity.step is 0: a nudge would add no capacity".into(),
        })
    } else {
        Err(Hold::CapacityExhausted)
    }
}

/// Drains container instances whose agent stayed disconnected past the policy's limit.
fn plan_drains(
    snapshot: &ClusterSnapshot,
    policies: &PolicySet,
    sightings: &Sightings,
    history: &History,
    dry_run: bool,
    out: &mut CapacityPlan,
) {
    let Some((policy, drain)) = policies.for_cluster(&snapshot.cluster_name).find_map(|p| {
        p.remediate
            .drain_container_instance
            .as_ref()
            .map(|d| (p, d))
    }) else {
        return;
    };
    let mode = if dry_run {
        PolicyMode::Audit
    } else {
        policy.mode
    };
    let mut used = history.actions_in_window(&policy.name, snapshot.observed_at);
    for ci in &snapshot.container_instances {
        if ci.agent_connected || ci.status != "ACTIVE" || history.acted_on(&ci.arn) {
            continue;
        }
        let Some(since) = sightings.first_disconnected(&ci.arn) else {
            continue;
        };
        let elapsed = snapshot
            .observed_at
            .duration_since(since)
            .unwrap_or(Duration::ZERO);
        if elapsed <= drain.agent_disconnected {
            continue;
        }
        let reason = format!(
            "container agent disconnected for {}, limit {}",
            short(elapsed),
            short(drain.agent_disconnected)
        );
        let mut evidence = Evidence::new();
        evidence.insert("status".into(), ci.status.clone());
        evidence.insert("agentConnected".into(), "false".into());
        evidence.insert(
            "disconnectedSince".into(),
            format!(
                "{} (first seen by controller)",
                crate::diagnose::rfc3339(since)
            ),
        );
        if let Some(id) = &ci.ec2_instance_id {
            evidence.insert("ec2InstanceId".into(), id.clone());
        }
        if !snapshot.is_complete() || used >= policy.guardrails.max_actions_per_hour as usize {
            let hold = if snapshot.is_complete() {
                Hold::MaxActionsPerHour {
                    used,
                    limit: policy.guardrails.max_actions_per_hour,
                }
            } else {
                Hold::IncompleteObservation {
                    gaps: snapshot.gaps.clone(),
                }
            };
            out.held.push(HeldAction {
                policy: policy.name.clone(),
                mode,
                cluster: snapshot.cluster_name.clone(),
                service: None,
                action: "drainContainerInstance",
                target: ci.arn.clone(),
                reason,
                hold,
                evidence,
            });
            continue;
        }
        used = used.saturating_add(1);
        out.actions.push(PlannedAction {
            policy: policy.name.clone(),
            mode,
            cluster: snapshot.cluster_name.clone(),
            service: None,
            action: Action::DrainContainerInstance {
                container_instance_arn: ci.arn.clone(),
            },
            reason,
            evidence,
        });
    }
}
