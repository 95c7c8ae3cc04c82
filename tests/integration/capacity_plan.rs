//! Capacity diagnosis and planning, pure: the cause behind tasks stuck in PROVISIONING and the
//! remediation each cause gets.

use ecs_reconciler::capacity::tags::{ManagedTag, cordon_tag, cordons, last_nudge, nudge_tag};
use ecs_reconciler::capacity::{CapacityFinding, Cause, diagnose_capacity};
use ecs_reconciler::causes::{CauseCode, Clues, FileSystem, LaunchFailure, RootCause};
use ecs_reconciler::decision::{Action, ActionKind, Hold, NoRemedy};
use ecs_reconciler::diagnose::{Sightings, diagnose};
use ecs_reconciler::domain::{ClusterSnapshot, GroupLaunch, TaskStatus};
use ecs_reconciler::history::History;
use ecs_reconciler::plan::{Plan, plan, plan_with_capacity};
use ecs_reconciler::policy::PolicySet;

use crate::support::fixtures::*;

fn capacity_snapshot(
    group: Option<GroupBuilder>,
    instances: Vec<ecs_reconciler::domain::ContainerInstance>,
    waiting: usize,
) -> ClusterSnapshot {
    let mut snap = snapshot(waiting_tasks(waiting, 20), &[("web", 10)]);
    snap.capacity_providers = vec![provider(false)];
    snap.auto_scaling_groups = group.into_iter().map(GroupBuilder::build).collect();
    snap.container_instances = instances;
    snap
}

fn run(snap: &ClusterSnapshot, set: &PolicySet) -> Plan {
    run_seen(snap, set, &Sightings::default())
}

fn run_seen(snap: &ClusterSnapshot, set: &PolicySet, sightings: &Sightings) -> Plan {
    let diagnosis = diagnose(snap, set, sightings);
    let history = History::rebuild(snap, &[]);
    plan(
        snap,
        diagnosis,
        set,
        &history,
        sightings,
        &Clues::default(),
        false,
    )
}

/// The seed story: version 2 rolled out, its instances never registered; version 1 works.
fn seed_story() -> ClusterSnapshot {
    capacity_snapshot(
        Some(
            GroupBuilder::new(3, 10, 2)
                .instance("i-good", 1, 60)
                .instance("i-bad1", 2, 15)
                .instance("i-bad2", 2, 14),
        ),
        vec![container_instance("i-good", true)],
        3,
    )
}

#[test]
fn a_broken_version_is_cordoned_pinned_and_its_instances_replaced() {
    let plan = run(&seed_story(), &capacity_policy());
    let [finding] = plan.capacity.as_slice() else {
        panic!("one capacity finding: {:?}", plan.capacity)
    };
    assert_eq!(
        finding.cause,
        Cause::BrokenLaunchTemplateVersion {
            template_id: TEMPLATE.into(),
            version: 2,
            failed_instances: vec!["i-bad1".into(), "i-bad2".into()],
            known_good: Some(1),
        }
    );
    assert_eq!(
        finding.reason,
        "launch template lt-0web version 2 is broken: 2 instances launched from it have been in \
         service over 10m without registering with the cluster; version 1 registered"
    );
    assert_eq!(finding.waiting_tasks.len(), 3);
    let [action] = plan.actions.as_slice() else {
        panic!("one action: {:?}", plan.actions)
    };
    match &action.action {
        Action::CordonLaunchTemplate {
            group,
            version,
            tag,
            pin_to,
            terminate,
            ..
        } => {
            assert_eq!(group, GROUP);
            assert_eq!(*version, 2);
            let (key, value) = tag.clone().expect("the cordon is recorded");
            assert_eq!(key, "ecs-reconciler/cordon/lt-0web/2");
            assert!(value.contains("pinned 1 [policy web]"), "{value}");
            assert!(value.len() <= 256);
            assert_eq!(*pin_to, Some(1));
            assert_eq!(terminate, &vec!["i-bad1".to_string(), "i-bad2".to_string()]);
        }
        other => panic!("expected a cordon, got {other:?}"),
    }
    // The stuck tasks are not replaced: that would only make more stuck tasks.
    assert_eq!(plan.held.len(), 3);
    assert!(plan.held.iter().all(|h| h.hold.name() == "capacityCause"));
}

#[test]
fn after_a_restart_only_what_is_missing_of_a_cordon_is_done() {
    let mut snap = seed_story();
    let (k, v) = cordon_tag(TEMPLATE, 2, ago(1), Some(1), "web", "broken");
    let group = &mut snap.auto_scaling_groups[0];
    group.tags.insert(k, v);
    // Tagged, not yet pinned: pin and terminate, no second tag.
    let plan = run(&snap, &capacity_policy());
    let Action::CordonLaunchTemplate {
        tag,
        pin_to,
        terminate,
        ..
    } = &plan.actions[0].action
    else {
        panic!("{:?}", plan.actions)
    };
    assert_eq!((tag, *pin_to, terminate.len()), (&None, Some(1), 2));
    // Tagged and pinned: the never-registered instances still go.
    let g = std::mem::replace(
        &mut snap.auto_scaling_groups[0],
        GroupBuilder::new(0, 0, 0).build(),
    );
    snap.auto_scaling_groups[0] = GroupBuilder(g).pinned(1).build();
    let plan = run(&snap, &capacity_policy());
    let Action::CordonLaunchTemplate {
        tag,
        pin_to,
        terminate,
        ..
    } = &plan.actions[0].action
    else {
        panic!("{:?}", plan.actions)
    };
    assert_eq!((tag, *pin_to, terminate.len()), (&None, None, 2));
    assert_eq!(cordons(&snap.auto_scaling_groups[0])[0].pinned, Some(1));
}

#[test]
fn instances_still_booting_inside_the_timeout_are_never_failures() {
    let snap = capacity_snapshot(
        Some(
            GroupBuilder::new(3, 10, 2)
                .instance("i-good", 1, 60)
                .instance("i-new1", 2, 3)
                .instance("i-new2", 2, 2),
        ),
        vec![container_instance("i-good", true)],
        2,
    );
    let plan = run(&snap, &capacity_policy());
    assert!(matches!(
        plan.capacity[0].cause,
        Cause::CapacityOnItsWay { .. }
    ));
    assert!(
        plan.actions.is_empty(),
        "no cordon, no replacement: {:?}",
        plan.actions
    );
}

#[test]
fn fewer_failures_than_the_minimum_fall_back_to_task_rules() {
    let snap = capacity_snapshot(
        Some(
            GroupBuilder::new(2, 10, 2)
                .instance("i-good", 1, 60)
                .instance("i-bad1", 2, 15),
        ),
        vec![container_instance("i-good", true)],
        1,
    );
    let plan = run(&snap, &capacity_policy());
    assert_eq!(plan.capacity[0].cause, Cause::Unknown);
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].action.name(), "stopTask");
}

#[test]
fn with_no_known_good_version_nothing_is_pinned_or_terminated() {
    let snap = capacity_snapshot(
        Some(
            GroupBuilder::new(2, 10, 1)
                .instance("i-bad1", 1, 15)
                .instance("i-bad2", 1, 15),
        ),
        vec![],
        2,
    );
    let plan = run(&snap, &capacity_policy());
    let Action::CordonLaunchTemplate {
        tag,
        pin_to,
        terminate,
        ..
    } = &plan.actions[0].action
    else {
        panic!("{:?}", plan.actions)
    };
    assert!(tag.as_ref().unwrap().1.contains("pinned none"));
    assert_eq!((*pin_to, terminate.is_empty()), (None, true));
    assert!(
        plan.capacity[0]
            .reason
            .ends_with("no version's instances registered")
    );

    // Once recorded, the cordon is not repeated; the audit trail says no remedy remains.
    let mut snap = snap;
    let (k, v) = tag.clone().unwrap();
    snap.auto_scaling_groups[0].tags.insert(k, v);
    let plan = run(&snap, &capacity_policy());
    assert!(plan.actions.is_empty());
    assert!(plan.held.iter().any(|h| h.hold.name() == "noRemedy"));
}

#[test]
fn short_capacity_is_nudged_within_bounds_and_cooldown() {
    let registered = || {
        capacity_snapshot(
            Some(
                GroupBuilder::new(2, 10, 1)
                    .instance("i-1", 1, 60)
                    .instance("i-2", 1, 60),
            ),
            vec![
                container_instance("i-1", true),
                container_instance("i-2", true),
            ],
            3,
        )
    };
    let plan = run(&registered(), &capacity_policy());
    assert_eq!(
        plan.capacity[0].cause,
        Cause::CapacityShort {
            desired: 2,
            ceiling: 8
        }
    );
    let Action::NudgeCapacity { from, to, tag, .. } = &plan.actions[0].action else {
        panic!("{:?}", plan.actions)
    };
    assert_eq!((*from, *to), (2, 3));
    let tag = tag.clone().unwrap();
    assert_eq!(tag, nudge_tag(now(), 2, 3, "web"));

    // Nudged 2 minutes ago, change made and its instance registered: inside the 5m cooldown,
    // nothing more.
    let (k, v) = nudge_tag(ago(2), 2, 3, "web");
    let snap = capacity_snapshot(
        Some(
            GroupBuilder::new(3, 10, 1)
                .instance("i-1", 1, 60)
                .instance("i-2", 1, 60)
                .instance("i-3", 1, 1)
                .tag(&k, &v),
        ),
        ["i-1", "i-2", "i-3"]
            .map(|i| container_instance(i, true))
            .to_vec(),
        3,
    );
    let plan = run(&snap, &capacity_policy());
    assert!(plan.actions.is_empty());
    assert!(plan.held.iter().any(|h| h.hold.name() == "cooldown"));

    // Tag written, change lost in a crash: finished, not repeated, no second tag.
    let mut snap = registered();
    let (k, v) = nudge_tag(ago(1), 2, 3, "web");
    snap.auto_scaling_groups[0].tags.insert(k, v);
    assert_eq!(last_nudge(&snap.auto_scaling_groups[0]).unwrap().to, 3);
    let plan = run(&snap, &capacity_policy());
    let Action::NudgeCapacity { to, tag, .. } = &plan.actions[0].action else {
        panic!("{:?}", plan.actions)
    };
    assert_eq!((*to, tag), (3, &None));

    // After the cooldown, the next step.
    let mut snap = registered();
    snap.auto_scaling_groups[0].desired_capacity = 3;
    let (k, v) = nudge_tag(ago(6), 2, 3, "web");
    snap.auto_scaling_groups[0].tags.insert(k, v);
    snap.auto_scaling_groups[0].instances.push(
        GroupBuilder::new(0, 0, 0)
            .instance("i-3", 1, 30)
            .build()
            .instances
            .remove(0),
    );
    snap.container_instances
        .push(container_instance("i-3", true));
    let plan = run(&snap, &capacity_policy());
    let Action::NudgeCapacity { from, to, .. } = &plan.actions[0].action else {
        panic!("{:?}", plan.actions)
    };
    assert_eq!((*from, *to), (3, 4));
}

#[test]
fn exhausted_capacity_is_recorded_not_acted_on() {
    let snap = capacity_snapshot(
        Some(
            GroupBuilder::new(2, 2, 1)
                .instance("i-1", 1, 60)
                .instance("i-2", 1, 60),
        ),
        vec![
            container_instance("i-1", true),
            container_instance("i-2", true),
        ],
        3,
    );
    let plan = run(&snap, &capacity_policy());
    assert!(matches!(
        plan.capacity[0].cause,
        Cause::CapacityExhausted { .. }
    ));
    assert!(plan.capacity[0].reason.starts_with("capacity exhausted"));
    assert!(plan.actions.is_empty());
    assert!(
        plan.held
            .iter()
            .any(|h| h.hold.name() == "capacityExhausted")
    );
}

#[test]
fn managed_scaling_groups_and_cordoned_launches_are_never_nudged() {
    let mut snap = capacity_snapshot(
        Some(
            GroupBuilder::new(2, 10, 1)
                .instance("i-1", 1, 60)
                .instance("i-2", 1, 60),
        ),
        vec![
            container_instance("i-1", true),
            container_instance("i-2", true),
        ],
        3,
    );
    snap.capacity_providers = vec![provider(true)];
    let plan = run(&snap, &capacity_policy());
    assert!(plan.actions.is_empty());
    assert!(
        plan.held
            .iter()
            .any(|h| h.hold.detail().contains("managed scaling"))
    );

    let mut snap = capacity_snapshot(
        Some(
            GroupBuilder::new(2, 10, 1)
                .instance("i-1", 1, 60)
                .instance("i-2", 1, 60),
        ),
        vec![
            container_instance("i-1", true),
            container_instance("i-2", true),
        ],
        3,
    );
    let (k, v) = cordon_tag(TEMPLATE, 1, ago(5), None, "web", "x");
    snap.auto_scaling_groups[0].tags.insert(k, v);
    let plan = run(&snap, &capacity_policy());
    assert!(plan.actions.is_empty());
    assert!(
        plan.held
            .iter()
            .any(|h| h.hold.detail().contains("cordoned version 1"))
    );
}

#[test]
fn a_deleted_group_or_an_unsupported_launch_is_reported_never_touched() {
    let plan = run(&capacity_snapshot(None, vec![], 2), &capacity_policy());
    assert_eq!(plan.capacity[0].cause, Cause::GroupMissing);
    assert!(plan.actions.is_empty());
    assert!(plan.held.iter().any(|h| h.hold.name() == "noRemedy"));

    for launch in [
        GroupLaunch::MixedInstancesPolicy {
            template_id: Some(TEMPLATE.into()),
        },
        GroupLaunch::LaunchConfiguration { name: "old".into() },
    ] {
        let snap = capacity_snapshot(
            Some(
                GroupBuilder::new(2, 10, 1)
                    .instance("i-bad1", 1, 15)
                    .instance("i-bad2", 1, 15)
                    .launch(launch),
            ),
            vec![],
            2,
        );
        let plan = run(&snap, &capacity_policy());
        assert!(matches!(plan.capacity[0].cause, Cause::Unsupported { .. }));
        assert!(plan.actions.is_empty());
    }
}

#[test]
fn cordoning_needs_the_policy_and_a_complete_picture() {
    let set = policy(
        "{PROVISIONING: 10m}",
        "{replaceTask: {}}",
        "{maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}",
    );
    let plan = run(&seed_story(), &set);
    assert!(plan.actions.is_empty());
    assert!(
        plan.held
            .iter()
            .any(|h| h.action == ActionKind::CordonLaunchTemplate && h.hold.name() == "notAllowed")
    );

    let mut snap = seed_story();
    snap.gaps.push("container instances: throttled".into());
    let plan = run(&snap, &capacity_policy());
    assert!(plan.actions.is_empty());
    assert!(
        plan.held
            .iter()
            .any(|h| h.hold.name() == "incompleteObservation")
    );
}

#[test]
fn an_instance_whose_agent_stays_disconnected_is_drained() {
    let mut snap = snapshot(vec![], &[]);
    snap.container_instances = vec![
        container_instance("i-1", false),
        container_instance("i-2", true),
    ];
    let mut earlier = snap.clone();
    earlier.observed_at = ago(16);
    let mut sightings = Sightings::default();
    sightings.record(&earlier);
    sightings.record(&snap);
    let plan = run_seen(&snap, &capacity_policy(), &sightings);
    let [action] = plan.actions.as_slice() else {
        panic!("{:?}", plan.actions)
    };
    assert_eq!(action.action.target(), container_instance("i-1", false).arn);
    assert_eq!(
        action.reason,
        "container agent disconnected for 16m, limit 15m"
    );
    // Disconnected for less than the limit: nothing (a disconnect alone is normal).
    let mut recent = Sightings::default();
    let mut earlier = snap.clone();
    earlier.observed_at = ago(10);
    recent.record(&earlier);
    assert!(
        run_seen(&snap, &capacity_policy(), &recent)
            .actions
            .is_empty()
    );
}

// ---- causes no capacity action remedies, and root causes, from hand-made findings ----

fn plan_findings(snap: &ClusterSnapshot, set: &PolicySet, capacity: Vec<CapacityFinding>) -> Plan {
    let diagnosis = diagnose(snap, set, &Sightings::default());
    let history = History::rebuild(snap, &[]);
    plan_with_capacity(
        snap,
        diagnosis,
        capacity,
        set,
        &history,
        &Sightings::default(),
        &ManagedTag::default(),
        false,
    )
}

/// The finding diagnosis makes for `snap`, with its cause replaced by `cause`.
fn finding_with(snap: &ClusterSnapshot, set: &PolicySet, cause: Cause) -> CapacityFinding {
    let diagnosis = diagnose(snap, set, &Sightings::default());
    let mut findings = diagnose_capacity(snap, &diagnosis, set, &Clues::default());
    assert_eq!(findings.len(), 1, "{findings:?}");
    let mut finding = findings.remove(0);
    finding.cause = cause;
    finding
}

/// All 4 instances registered and connected, desired 4 of 10: capacity short, nudged.
fn short_capacity() -> ClusterSnapshot {
    let ids = ["i-1", "i-2", "i-3", "i-4"];
    let group = ids
        .iter()
        .fold(GroupBuilder::new(4, 10, 1), |g, id| g.instance(id, 1, 60));
    let instances = ids.iter().map(|id| container_instance(id, true)).collect();
    capacity_snapshot(Some(group), instances, 3)
}

#[test]
fn causes_a_nudge_cannot_remedy_are_held_with_their_code_and_their_tasks_wait() {
    let set = capacity_policy();
    let snap = short_capacity();
    // Control: as diagnosed (capacity short), the group is nudged.
    let control = plan_findings(&snap, &set, {
        let diagnosis = diagnose(&snap, &set, &Sightings::default());
        diagnose_capacity(&snap, &diagnosis, &set, &Clues::default())
    });
    assert!(
        matches!(control.actions.as_slice(), [a] if a.action.kind() == ActionKind::NudgeCapacity),
        "{:?}",
        control.actions
    );
    let cases = [
        (
            Cause::NoInstanceFits {
                instance_type: "t3.small".into(),
            },
            CauseCode::NoInstanceFits,
        ),
        (
            Cause::LaunchFailing {
                failure: LaunchFailure::VcpuLimit,
            },
            CauseCode::LaunchFailed,
        ),
        (
            Cause::ProvisioningQuota { provisioning: 500 },
            CauseCode::ProvisioningQuota,
        ),
    ];
    for (cause, code) in cases {
        let finding = finding_with(&snap, &set, cause.clone());
        let waiting = finding.waiting_tasks.clone();
        let plan = plan_findings(&snap, &set, vec![finding]);
        assert!(plan.actions.is_empty(), "{cause:?}: {:?}", plan.actions);
        let nudge: Vec<_> = plan
            .held
            .iter()
            .filter(|h| h.action == ActionKind::NudgeCapacity)
            .collect();
        assert_eq!(nudge.len(), 1, "{cause:?}: {:?}", plan.held);
        assert_eq!(
            nudge[0].hold,
            Hold::NoRemedy {
                why: NoRemedy::Cause { code }
            }
        );
        assert!(nudge[0].hold.detail().contains(code.as_str()));
        // The waiting tasks are not replaced: a replacement would wait the same way.
        for task in &waiting {
            let held = plan
                .held
                .iter()
                .find(|h| &h.target == task)
                .unwrap_or_else(|| panic!("{cause:?}: {task} not held"));
            assert!(
                matches!(&held.hold, Hold::CapacityCause { cause, .. } if *cause == code),
                "{:?}",
                held.hold
            );
        }
    }
}

#[test]
fn a_broken_version_is_cordoned_whatever_root_causes_are_attached() {
    let set = capacity_policy();
    let snap = seed_story();
    let bare = plan(
        &snap,
        diagnose(&snap, &set, &Sightings::default()),
        &set,
        &History::rebuild(&snap, &[]),
        &Sightings::default(),
        &Clues::default(),
        false,
    );
    let cordon = |plan: &Plan| {
        plan.actions
            .iter()
            .find(|a| a.action.kind() == ActionKind::CordonLaunchTemplate)
            .map(|a| a.action.clone())
    };
    let expected = cordon(&bare).expect("the seed story is cordoned");
    let diagnosis = diagnose(&snap, &set, &Sightings::default());
    let mut findings = diagnose_capacity(&snap, &diagnosis, &set, &Clues::default());
    let finding = &mut findings[0];
    assert!(matches!(
        finding.cause,
        Cause::BrokenLaunchTemplateVersion { .. }
    ));
    finding.root_causes = vec![
        RootCause::BootMountFailed {
            instance_id: "i-bad1".into(),
            file_system: FileSystem::FsxLustre,
            timed_out: true,
            quote: vec![
                "mount.lustre: mount fs-0abc@tcp:/fsx at /mnt/fsx failed: Connection \
                         timed out"
                    .into(),
            ],
        },
        RootCause::UserDataOtherCluster {
            template_id: TEMPLATE.into(),
            version: 2,
            cluster: "staging-web".into(),
        },
        RootCause::NoInstanceProfile {
            template_id: TEMPLATE.into(),
            version: 2,
        },
        RootCause::LaunchFailed {
            group: GROUP.into(),
            failure: LaunchFailure::InvalidImage,
            message: "The image id '[ami-0bad]' does not exist".into(),
        },
    ];
    finding.unread = vec!["GetConsoleOutput i-bad2: denied".into()];
    let with_causes = plan_findings(&snap, &set, findings);
    assert_eq!(cordon(&with_causes), Some(expected));
}

#[test]
fn a_cordon_and_a_nudge_recorded_on_groups_count_against_the_budget() {
    // Budget 2: a cordon tag (10 minutes ago) and a nudge tag (20 minutes ago), both by this
    // policy, leave none for stopping tasks; tags older than the hour leave it whole.
    let set = policy(
        "{PENDING: 10m}",
        "{replaceTask: {}}",
        "{maxActionsPerHour: 2, maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}",
    );
    let tasks = || {
        (0..2)
            .map(|i| {
                TaskBuilder::service("web", &format!("s{i}"))
                    .stuck_in(TaskStatus::Pending, 20)
                    .build()
            })
            .collect::<Vec<_>>()
    };
    let with_tags = |minutes: u64| {
        let (cordon_key, cordon_value) = cordon_tag(
            TEMPLATE,
            2,
            ago(minutes),
            Some(1),
            "web",
            "never registered",
        );
        let (nudge_key, nudge_value) = nudge_tag(ago(minutes + 10), 3, 4, "web");
        let group = GroupBuilder::new(4, 10, 1)
            .tag(&cordon_key, &cordon_value)
            .tag(&nudge_key, &nudge_value);
        let mut snap = snapshot(tasks(), &[("web", 10)]);
        snap.auto_scaling_groups = vec![group.build()];
        snap
    };
    let recent = run(&with_tags(10), &set);
    assert!(recent.actions.is_empty(), "{:?}", recent.actions);
    assert_eq!(recent.held.len(), 2);
    assert!(
        recent
            .held
            .iter()
            .all(|h| h.hold == Hold::MaxActionsPerHour { used: 2, limit: 2 }),
        "{:?}",
        recent.held
    );
    let old = run(&with_tags(70), &set);
    assert_eq!(old.actions.len(), 2, "{:?}", old.held);
}

#[test]
fn a_capacity_action_shares_its_findings_evidence() {
    let plan = run(&seed_story(), &capacity_policy());
    let [finding] = plan.capacity.as_slice() else {
        panic!("one capacity finding: {:?}", plan.capacity)
    };
    let cordon = plan
        .actions
        .iter()
        .find(|a| matches!(a.action, Action::CordonLaunchTemplate { .. }))
        .expect("the cordon is planned");
    assert!(
        std::sync::Arc::ptr_eq(&cordon.evidence, &finding.evidence),
        "one evidence map, not a copy"
    );
}

#[test]
fn a_reason_counting_one_instance_or_task_says_it_in_the_singular() {
    let snap = capacity_snapshot(
        Some(
            GroupBuilder::new(2, 10, 2)
                .instance("i-good", 1, 60)
                .instance("i-new1", 2, 3),
        ),
        vec![container_instance("i-good", true)],
        1,
    );
    let plan = run(&snap, &capacity_policy());
    let reason = &plan.capacity[0].reason;
    assert!(
        reason.contains("1 instance of group web-asg still booting"),
        "{reason}"
    );
    let one = capacity_snapshot(
        Some(GroupBuilder::new(1, 10, 1).instance("i-1", 1, 60)),
        vec![container_instance("i-1", true)],
        1,
    );
    let short = run(&one, &capacity_policy());
    let reason = &short.capacity[0].reason;
    assert!(
        reason
            .contains("1 task waits on web-asg-cp; the 1 instance of group web-asg is registered"),
        "{reason}"
    );
}
