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
//! - a task no instance type fits, failing launches and the PROVISIONING quota are never
//!   nudged (more capacity would wait the same way): they are held with a no-remedy reason
//!   naming their cause code, and reported.
//!
//! A new cordon, a new nudge and a drain each draw on the policy's hourly budget, shared with
//! the task actions ([`Budgets`]). Completing a cordon already recorded on the group, or a
//! nudge whose tag was written, finishes an action counted when it started: it does not draw.
//! A root cause attached to a broken version never blocks its cordon: the registration
//! evidence alone justifies it.
//!
//! Every count is checked or saturating (the lint below enforces it): a nudge never plans a
//! desired capacity at or below the current one, nor above min(MaxSize, `maxDesired`),
//! whatever the policy's numbers.
#![warn(clippy::arithmetic_side_effects)]

use std::sync::Arc;
use std::time::Duration;

use super::diagnose::{CapacityFinding, Cause};
use super::tags::{self, ManagedTag};
use crate::decision::{Action, ActionKind, Budgets, HeldAction, Hold, NoRemedy, PlannedAction};
use crate::diagnose::{Evidence, Sightings, short};
use crate::domain::{AutoScalingGroup, ClusterSnapshot, GroupLaunch};
use crate::history::History;
use crate::policy::{Policy, PolicyMode, PolicySet};

/// Planned and held capacity actions.
#[derive(Debug, Default)]
pub struct CapacityPlan {
    pub actions: Vec<PlannedAction>,
    pub held: Vec<HeldAction>,
}

/// Plans the capacity remediations of one cluster. A group without the `managed` tag is
/// never written to: its cordon or nudge is held `notManaged`.
#[allow(clippy::too_many_arguments)]
pub fn plan_capacity(
    snapshot: &ClusterSnapshot,
    findings: &[CapacityFinding],
    policies: &PolicySet,
    sightings: &Sightings,
    history: &History,
    budgets: &mut Budgets,
    managed: &ManagedTag,
    dry_run: bool,
) -> CapacityPlan {
    let mut out = CapacityPlan::default();
    let mode = |p: &Policy| if dry_run { PolicyMode::Audit } else { p.mode };
    for finding in findings {
        let Some(policy) = policies.policies.iter().find(|p| p.name == finding.policy) else {
            continue;
        };
        // One map per finding, shared by its actions and their audit records.
        let evidence = Arc::clone(&finding.evidence);
        let planned = |action: Action| PlannedAction {
            policy: policy.name.clone(),
            mode: mode(policy),
            cluster: snapshot.cluster_name.clone(),
            service: None,
            action,
            condition: None,
            reason: finding.reason.clone(),
            evidence: Arc::clone(&evidence),
        };
        let held = |action: ActionKind, hold: Hold| HeldAction {
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
            evidence: Arc::clone(&evidence),
        };
        if !snapshot.is_complete() {
            out.held.push(held(
                ActionKind::Capacity,
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
                        ActionKind::CordonLaunchTemplate,
                        Hold::NotAllowed {
                            missing: "remediate.cordonLaunchTemplate",
                        },
                    ));
                    continue;
                };
                if let Some(hold) = not_managed(group, managed) {
                    out.held.push(held(ActionKind::CordonLaunchTemplate, hold));
                    continue;
                }
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
                            ActionKind::CordonLaunchTemplate,
                            Hold::NoRemedy {
                                why: NoRemedy::NoKnownGoodVersion {
                                    template_id: template_id.clone(),
                                    version: *version,
                                },
                            },
                        ));
                    }
                    continue;
                }
                let action = Action::CordonLaunchTemplate {
                    group: group.name.clone(),
                    group_arn: group.arn.clone(),
                    template_id: template_id.clone(),
                    version: *version,
                    tag,
                    pin_to,
                    terminate,
                };
                if action.draws_on_budget()
                    && let Err(hold) = budgets.of(&policy.name).draw()
                {
                    out.held.push(held(ActionKind::CordonLaunchTemplate, hold));
                    continue;
                }
                out.actions.push(planned(action));
            }
            (Cause::CapacityShort { desired, ceiling }, Some(group)) => {
                let Some(nudge) = &policy.remediate.nudge_capacity else {
                    out.held.push(held(
                        ActionKind::NudgeCapacity,
                        Hold::NotAllowed {
                            missing: "remediate.nudgeCapacity",
                        },
                    ));
                    continue;
                };
                if let Some(hold) = not_managed(group, managed) {
                    out.held.push(held(ActionKind::NudgeCapacity, hold));
                    continue;
                }
                let managed = snapshot
                    .capacity_providers
                    .iter()
                    .any(|p| p.name == finding.capacity_provider && p.managed_scaling);
                if managed {
                    out.held.push(held(
                        ActionKind::NudgeCapacity,
                        Hold::NoRemedy {
                            why: NoRemedy::ManagedScaling,
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
                        ActionKind::NudgeCapacity,
                        Hold::NoRemedy {
                            why: NoRemedy::LaunchesFromCordoned {
                                template_id: template_id.clone(),
                                version: *v,
                            },
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
                        ActionKind::NudgeCapacity,
                        Hold::Cooldown {
                            last: last.at,
                            cooldown: nudge.cooldown,
                        },
                    )),
                    _ => match nudge_target(*desired, nudge.step, ceiling)
                        .and_then(|to| budgets.of(&policy.name).draw().map(|()| to))
                    {
                        Ok(to) => out.actions.push(action(
                            to,
                            Some(tags::nudge_tag(
                                snapshot.observed_at,
                                *desired,
                                to,
                                &policy.name,
                            )),
                        )),
                        Err(hold) => out.held.push(held(ActionKind::NudgeCapacity, hold)),
                    },
                }
            }
            (Cause::CapacityExhausted { .. }, _) => {
                out.held
                    .push(held(ActionKind::NudgeCapacity, Hold::CapacityExhausted));
            }
            (Cause::GroupMissing, _) => {
                out.held.push(held(
                    ActionKind::Capacity,
                    Hold::NoRemedy {
                        why: NoRemedy::GroupMissing {
                            capacity_provider: finding.capacity_provider.clone(),
                            group_arn: finding.group_arn.clone(),
                        },
                    },
                ));
            }
            (Cause::Unsupported { why }, _) => {
                out.held.push(held(
                    ActionKind::Capacity,
                    Hold::NoRemedy {
                        why: NoRemedy::UnsupportedLaunch {
                            group: finding.group.clone().unwrap_or_default(),
                            why: why.clone(),
                        },
                    },
                ));
            }
            (
                Cause::NoInstanceFits { .. }
                | Cause::LaunchFailing { .. }
                | Cause::ProvisioningQuota { .. },
                _,
            ) => {
                // More capacity would not start these tasks: never nudged, reported.
                out.held.push(held(
                    ActionKind::NudgeCapacity,
                    Hold::NoRemedy {
                        why: NoRemedy::Cause {
                            code: finding.cause.code(),
                        },
                    },
                ));
            }
            _ => {}
        }
    }
    plan_drains(
        snapshot, policies, sightings, history, budgets, dry_run, &mut out,
    );
    out
}

/// The hold for a write to a group that did not opt in, if it did not.
fn not_managed(group: &AutoScalingGroup, managed: &ManagedTag) -> Option<Hold> {
    (!managed.is_managed(group)).then(|| Hold::NotManaged {
        group: group.name.clone(),
        tag_key: managed.key.clone(),
        tag_value: managed.value.clone(),
    })
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
            why: NoRemedy::StepZero,
        })
    } else {
        Err(Hold::CapacityExhausted)
    }
}

/// Drains container instances whose agent stayed disconnected past the policy's limit. Each
/// drain draws on the policy's budget, shared with every other action of the pass.
fn plan_drains(
    snapshot: &ClusterSnapshot,
    policies: &PolicySet,
    sightings: &Sightings,
    history: &History,
    budgets: &mut Budgets,
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
        let evidence = Arc::new(evidence);
        let hold = if snapshot.is_complete() {
            budgets.of(&policy.name).draw().err()
        } else {
            Some(Hold::IncompleteObservation {
                gaps: snapshot.gaps.clone(),
            })
        };
        if let Some(hold) = hold {
            out.held.push(HeldAction {
                policy: policy.name.clone(),
                mode,
                cluster: snapshot.cluster_name.clone(),
                service: None,
                action: ActionKind::DrainContainerInstance,
                target: ci.arn.clone(),
                reason,
                hold,
                evidence,
            });
            continue;
        }
        out.actions.push(PlannedAction {
            policy: policy.name.clone(),
            mode,
            cluster: snapshot.cluster_name.clone(),
            service: None,
            action: Action::DrainContainerInstance {
                container_instance_arn: ci.arn.clone(),
            },
            condition: None,
            reason,
            evidence,
        });
    }
}
