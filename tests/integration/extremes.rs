//! Extreme numbers (issue 7, part 1): every integer and duration of the policy format has a
//! documented range that validation enforces, and the planner stays safe on values that
//! bypass validation: no nudge ever lowers desired capacity (or plans it unchanged), and none
//! raises it past min(MaxSize, maxDesired). Checked on the pure planner over generated Auto
//! Scaling groups, and on the real controller over every simulated scenario in virtual time.

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::AuditSink;
use ecs_reconciler::capacity::tags::ManagedTag;
use ecs_reconciler::capacity::tags::nudge_tag;
use ecs_reconciler::capacity::{CapacityFinding, Cause, plan_capacity};
use ecs_reconciler::causes::Clues;
use ecs_reconciler::cloud::sim::{SimAccount, build_scenario, scenario_names};
use ecs_reconciler::cloud::{Cloud, CloudError, GroupRead, TaskReads};
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::decision::{Action, ActionKind, Budgets};
use ecs_reconciler::demo::scenario_policies;
use ecs_reconciler::diagnose::{Sightings, diagnose};
use ecs_reconciler::domain::{
    AutoScalingGroup, ClusterSnapshot, InstanceTypeSize, LaunchTemplateVersion, RunTaskRequest,
    ScalingActivity, Tags,
};
use ecs_reconciler::history::History;
use ecs_reconciler::plan::{Plan, plan};
use ecs_reconciler::policy::{
    CordonLaunchTemplate, CountRange, DrainContainerInstance, DurationRange, NudgeCapacity,
    Percent, Policy, PolicyError, PolicySet, StuckLimits, parse_str, ranges,
};
use proptest::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::support::fixtures::*;

// ---------------------------------------------------------------------------------------------
// Validation: each range boundary, just inside and just outside.
// ---------------------------------------------------------------------------------------------

/// A policy that sets every number of the format, each on its own line as `key: {key}`.
const EVERY_NUMBER: &str = "apiVersion: ecs-reconciler/v1
kind: RemediationPolicy
metadata:
  name: edges
spec:
  target:
    clusters: [\"*\"]
  stuck:
    PROVISIONING: {PROVISIONING}
    PENDING: {PENDING}
    ACTIVATING: {ACTIVATING}
    DEACTIVATING: {DEACTIVATING}
    STOPPING: {STOPPING}
    DEPROVISIONING: {DEPROVISIONING}
    unhealthy: {unhealthy}
  remediate:
    nudgeCapacity:
      step: {step}
      maxDesired: {maxDesired}
      cooldown: {cooldown}
    cordonLaunchTemplate:
      registrationTimeout: {registrationTimeout}
      minFailedInstances: {minFailedInstances}
    drainContainerInstance:
      agentDisconnected: {agentDisconnected}
  guardrails:
    maxActionsPerHour: {maxActionsPerHour}
";

#[derive(Clone, Copy)]
enum Range {
    Count(CountRange),
    Duration(DurationRange),
}

/// Every numeric field: YAML key, dotted path, range, and how to read it back from a policy.
type Read = fn(&Policy) -> u64;
const FIELDS: &[(&str, &str, Range, Read)] = &[
    (
        "PROVISIONING",
        "spec.stuck.PROVISIONING",
        Range::Duration(ranges::STUCK_LIMIT),
        |p| secs(p.stuck.provisioning),
    ),
    (
        "PENDING",
        "spec.stuck.PENDING",
        Range::Duration(ranges::STUCK_LIMIT),
        |p| secs(p.stuck.pending),
    ),
    (
        "ACTIVATING",
        "spec.stuck.ACTIVATING",
        Range::Duration(ranges::STUCK_LIMIT),
        |p| secs(p.stuck.activating),
    ),
    (
        "DEACTIVATING",
        "spec.stuck.DEACTIVATING",
        Range::Duration(ranges::STUCK_LIMIT),
        |p| secs(p.stuck.deactivating),
    ),
    (
        "STOPPING",
        "spec.stuck.STOPPING",
        Range::Duration(ranges::STUCK_LIMIT),
        |p| secs(p.stuck.stopping),
    ),
    (
        "DEPROVISIONING",
        "spec.stuck.DEPROVISIONING",
        Range::Duration(ranges::STUCK_LIMIT),
        |p| secs(p.stuck.deprovisioning),
    ),
    (
        "unhealthy",
        "spec.stuck.unhealthy",
        Range::Duration(ranges::STUCK_LIMIT),
        |p| secs(p.stuck.unhealthy),
    ),
    (
        "step",
        "spec.remediate.nudgeCapacity.step",
        Range::Count(ranges::NUDGE_STEP),
        |p| u64::from(p.remediate.nudge_capacity.as_ref().unwrap().step),
    ),
    (
        "maxDesired",
        "spec.remediate.nudgeCapacity.maxDesired",
        Range::Count(ranges::NUDGE_MAX_DESIRED),
        |p| u64::from(p.remediate.nudge_capacity.as_ref().unwrap().max_desired),
    ),
    (
        "cooldown",
        "spec.remediate.nudgeCapacity.cooldown",
        Range::Duration(ranges::NUDGE_COOLDOWN),
        |p| secs(p.remediate.nudge_capacity.as_ref().map(|n| n.cooldown)),
    ),
    (
        "registrationTimeout",
        "spec.remediate.cordonLaunchTemplate.registrationTimeout",
        Range::Duration(ranges::REGISTRATION_TIMEOUT),
        |p| {
            secs(
                p.remediate
                    .cordon_launch_template
                    .as_ref()
                    .map(|c| c.registration_timeout),
            )
        },
    ),
    (
        "minFailedInstances",
        "spec.remediate.cordonLaunchTemplate.minFailedInstances",
        Range::Count(ranges::MIN_FAILED_INSTANCES),
        |p| {
            u64::from(
                p.remediate
                    .cordon_launch_template
                    .as_ref()
                    .unwrap()
                    .min_failed_instances,
            )
        },
    ),
    (
        "agentDisconnected",
        "spec.remediate.drainContainerInstance.agentDisconnected",
        Range::Duration(ranges::AGENT_DISCONNECTED),
        |p| {
            secs(
                p.remediate
                    .drain_container_instance
                    .as_ref()
                    .map(|d| d.agent_disconnected),
            )
        },
    ),
    (
        "maxActionsPerHour",
        "spec.guardrails.maxActionsPerHour",
        Range::Count(ranges::MAX_ACTIONS_PER_HOUR),
        |p| u64::from(p.guardrails.max_actions_per_hour),
    ),
];

fn secs(d: Option<Duration>) -> u64 {
    d.expect("the field is set").as_secs()
}

/// A valid value for the field (its minimum).
fn valid(range: Range) -> String {
    match range {
        Range::Count(r) => r.min.to_string(),
        Range::Duration(r) => format!("{}s", r.min.as_secs()),
    }
}

/// The document with every field at a valid value, except `key` at `value`.
fn document_with(key: &str, value: &str) -> String {
    let mut text = EVERY_NUMBER.to_string();
    for (k, _, range, _) in FIELDS {
        let v = if *k == key {
            value.to_string()
        } else {
            valid(*range)
        };
        text = text.replace(&format!("{{{k}}}"), &v);
    }
    text
}

/// The 1-based line and column of `key`'s value in `text`.
fn value_position(text: &str, key: &str) -> (usize, usize) {
    let needle = format!("{key}: ");
    text.lines()
        .enumerate()
        .find_map(|(i, line)| {
            let at = line.find(&needle)?;
            line[..at]
                .trim()
                .is_empty()
                .then_some((i + 1, at + needle.len() + 1))
        })
        .unwrap_or_else(|| panic!("{key} not in the document"))
}

fn only_error(text: &str, what: &str) -> PolicyError {
    match parse_str(Path::new("policies/edges.yaml"), text) {
        Ok(_) => panic!("{what}: expected an error"),
        Err(errors) => {
            assert_eq!(errors.len(), 1, "{what}: {errors}");
            errors.0[0].clone()
        }
    }
}

/// The "from A to B" the message states, as numbers of seconds or counts.
fn stated_range(message: &str) -> (u64, u64) {
    let rest = &message[message.find(" from ").expect("the message states a range") + 6..];
    let mut words = rest.split([' ', ',', ')']);
    let low = words.next().unwrap();
    assert_eq!(words.next(), Some("to"), "{message}");
    let high = words.next().unwrap();
    let number = |w: &str| {
        w.parse::<u64>()
            .ok()
            .or_else(|| humantime::parse_duration(w).ok().map(|d| d.as_secs()))
            .unwrap_or_else(|| panic!("`{w}` in `{message}` is not a number"))
    };
    (number(low), number(high))
}

fn bounds(range: Range) -> (u64, u64) {
    match range {
        Range::Count(r) => (u64::from(r.min), u64::from(r.max)),
        Range::Duration(r) => (r.min.as_secs(), r.max.as_secs()),
    }
}

#[test]
fn every_numeric_field_accepts_both_ends_of_its_range() {
    for &(key, path, range, read) in FIELDS {
        let (low, high) = bounds(range);
        for edge in [low, high] {
            let written = match range {
                Range::Count(_) => edge.to_string(),
                Range::Duration(_) => format!("{edge}s"),
            };
            let text = document_with(key, &written);
            let policies = parse_str(Path::new("policies/edges.yaml"), &text)
                .unwrap_or_else(|e| panic!("{path} = {written} is inside its range: {e}"));
            assert_eq!(read(&policies[0]), edge, "{path} = {written}");
        }
    }
}

#[test]
fn every_numeric_field_refuses_just_outside_its_range_naming_field_and_range() {
    for &(key, path, range, _) in FIELDS {
        let (low, high) = bounds(range);
        let mut outside: Vec<String> = match range {
            Range::Count(_) => vec![(high + 1).to_string()],
            Range::Duration(_) => vec![format!("{}s", low - 1), format!("{}s", high + 1)],
        };
        if let (Range::Count(_), Some(below)) = (range, low.checked_sub(1)) {
            outside.push(below.to_string());
        }
        for written in outside {
            let text = document_with(key, &written);
            let e = only_error(&text, &format!("{path} = {written}"));
            let (line, column) = value_position(&text, key);
            assert_eq!(
                (e.field.as_str(), e.line, e.column),
                (path, line, Some(column)),
                "{e}"
            );
            assert_eq!(stated_range(&e.message), (low, high), "{e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("policies/edges.yaml:{line}:{column}: {path}: "))
            );
        }
    }
}

#[test]
fn durations_are_whole_seconds() {
    for &(key, path, range, _) in FIELDS {
        let Range::Duration(r) = range else { continue };
        for written in ["1ns", "999ms", "1.5s", "1m 500ms", "90s 1us"] {
            let text = document_with(key, written);
            let e = only_error(&text, &format!("{path} = {written}"));
            assert_eq!(e.field, path, "{e}");
            assert!(e.message.contains("has a part below one second"), "{e}");
            assert_eq!(stated_range(&e.message), bounds(range), "{e}");
        }
        // Whole seconds written in other units are fine.
        let text = document_with(key, &format!("{}ms", r.min.as_millis()));
        let policies = parse_str(Path::new("policies/edges.yaml"), &text).unwrap();
        assert_eq!(policies.len(), 1);
    }
}

#[test]
fn the_wrapping_step_is_refused_with_its_range() {
    let text = document_with("step", "4294967295");
    let e = only_error(&text, "step 4294967295");
    assert_eq!(e.field, "spec.remediate.nudgeCapacity.step");
    assert!(
        e.message.starts_with("must be at most 100, got 4294967295"),
        "{e}"
    );
    // One past u32 is a type error, still at the field.
    let e = only_error(&document_with("step", "4294967296"), "step 2^32");
    assert_eq!(e.field, "spec.remediate.nudgeCapacity.step", "{e}");
}

#[test]
fn built_in_defaults_lie_inside_their_ranges() {
    let defaults = ecs_reconciler::policy::Guardrails::default();
    assert!(ranges::MAX_ACTIONS_PER_HOUR.contains(defaults.max_actions_per_hour));
    let rules = ecs_reconciler::capacity::diagnose::DEFAULT_RULES;
    assert!(ranges::REGISTRATION_TIMEOUT.contains(rules.registration_timeout));
    assert!(ranges::MIN_FAILED_INSTANCES.contains(rules.min_failed_instances));
}

/// The table in policies/README.md says the same ranges as the code.
#[test]
fn the_policy_readme_documents_every_range() {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/README.md"))
            .unwrap();
    let table = &readme[readme
        .find("## Valid ranges")
        .expect("a Valid ranges section")..];
    for &(_, path, range, _) in FIELDS {
        let row = table
            .lines()
            .find(|l| l.starts_with(&format!("| `{path}` |")))
            .unwrap_or_else(|| panic!("no row for {path} in policies/README.md"));
        let cell = row.split('|').nth(2).unwrap().trim();
        assert_eq!(
            stated_range(&format!(" from {cell}")),
            bounds(range),
            "{row}"
        );
    }
}

#[test]
fn the_json_schema_states_the_integer_ranges() {
    let schema = ecs_reconciler::policy::json_schema().to_string();
    let schema: serde_json::Value = serde_json::from_str(&schema).unwrap();
    let defs = &schema["$defs"];
    let cases = [
        ("NudgeCapacityDoc", "step", ranges::NUDGE_STEP),
        ("NudgeCapacityDoc", "maxDesired", ranges::NUDGE_MAX_DESIRED),
        (
            "CordonLaunchTemplateDoc",
            "minFailedInstances",
            ranges::MIN_FAILED_INSTANCES,
        ),
        (
            "GuardrailsDoc",
            "maxActionsPerHour",
            ranges::MAX_ACTIONS_PER_HOUR,
        ),
    ];
    for (def, field, range) in cases {
        let property = &defs[def]["properties"][field];
        assert_eq!(property["minimum"], range.min, "{def}.{field}: {property}");
        assert_eq!(property["maximum"], range.max, "{def}.{field}: {property}");
    }
}

// ---------------------------------------------------------------------------------------------
// The pure planner over extreme values that bypass validation.
// ---------------------------------------------------------------------------------------------

fn extreme_count(range: CountRange) -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(range.min),
        Just(range.max),
        Just(range.max.saturating_add(1)),
        Just(u32::MAX - 1),
        Just(u32::MAX),
        any::<u32>(),
    ]
}

fn extreme_duration(range: DurationRange) -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(999)),
        Just(range.min),
        Just(range.max),
        Just(range.max + Duration::from_secs(1)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
        (0u64..7200).prop_map(Duration::from_secs),
    ]
}

fn extreme_percent() -> impl Strategy<Value = Percent> {
    prop_oneof![Just(0.0), Just(100.0), 0.0f64..=100.0].prop_map(Percent)
}

/// The numbers of the nudge, cordon, drain and guardrail model, and the stuck limit.
#[derive(Debug, Clone)]
struct Numbers {
    step: u32,
    max_desired: u32,
    cooldown: Duration,
    registration_timeout: Duration,
    min_failed_instances: u32,
    agent_disconnected: Duration,
    max_actions_per_hour: u32,
    max_in_flight: Percent,
    pause_above: Percent,
    provisioning: Duration,
}

fn numbers() -> impl Strategy<Value = Numbers> {
    (
        (
            extreme_count(ranges::NUDGE_STEP),
            extreme_count(ranges::NUDGE_MAX_DESIRED),
            extreme_duration(ranges::NUDGE_COOLDOWN),
            extreme_duration(ranges::REGISTRATION_TIMEOUT),
            extreme_count(ranges::MIN_FAILED_INSTANCES),
        ),
        (
            extreme_duration(ranges::AGENT_DISCONNECTED),
            extreme_count(ranges::MAX_ACTIONS_PER_HOUR),
            extreme_percent(),
            extreme_percent(),
            extreme_duration(ranges::STUCK_LIMIT),
        ),
    )
        .prop_map(|((a, b, c, d, e), (f, g, h, i, j))| Numbers {
            step: a,
            max_desired: b,
            cooldown: c,
            registration_timeout: d,
            min_failed_instances: e,
            agent_disconnected: f,
            max_actions_per_hour: g,
            max_in_flight: h,
            pause_above: i,
            provisioning: j,
        })
}

/// Sets every number of every policy in the set, bypassing validation.
fn apply(set: &mut PolicySet, n: &Numbers) {
    for p in &mut set.policies {
        p.stuck = StuckLimits {
            provisioning: Some(n.provisioning),
            pending: Some(n.provisioning),
            activating: Some(n.provisioning),
            deactivating: Some(n.provisioning),
            stopping: Some(n.provisioning),
            deprovisioning: Some(n.provisioning),
            unhealthy: Some(n.provisioning),
        };
        p.remediate.nudge_capacity = Some(NudgeCapacity {
            step: n.step,
            max_desired: n.max_desired,
            cooldown: n.cooldown,
        });
        p.remediate.cordon_launch_template = Some(CordonLaunchTemplate {
            registration_timeout: n.registration_timeout,
            min_failed_instances: n.min_failed_instances,
        });
        p.remediate.drain_container_instance = Some(DrainContainerInstance {
            agent_disconnected: n.agent_disconnected,
        });
        p.guardrails.max_actions_per_hour = n.max_actions_per_hour;
        p.guardrails.max_in_flight_per_service = n.max_in_flight;
        p.guardrails.pause_when_stuck_above = n.pause_above;
    }
}

/// An Auto Scaling group at extreme sizes, with up to 6 instances of which some registered.
#[derive(Debug, Clone)]
struct GroupShape {
    desired: u32,
    min: u32,
    max: u32,
    /// (launch template version, minutes since launch, registered and connected)
    instances: Vec<(u32, u64, bool)>,
    /// A nudge recorded on the group: minutes ago, from, to.
    last_nudge: Option<(u64, u32, u32)>,
    waiting: usize,
}

fn size() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(u32::MAX - 1),
        Just(u32::MAX),
        0u32..10,
        any::<u32>(),
    ]
}

/// Any group: sizes, instances and a recorded nudge drawn independently.
fn any_group() -> impl Strategy<Value = GroupShape> {
    (
        size(),
        size(),
        size(),
        proptest::collection::vec((1u32..4, 0u64..60, proptest::bool::weighted(0.8)), 0..6),
        proptest::option::of((0u64..120, size(), size())),
        1usize..5,
    )
        .prop_map(
            |(desired, min, max, instances, last_nudge, waiting)| GroupShape {
                desired,
                min,
                max,
                instances,
                last_nudge,
                waiting,
            },
        )
}

/// A group whose every instance is registered and launched, as desired: the short-capacity
/// path, at extreme MaxSize, MinSize and recorded nudges.
fn settled_group() -> impl Strategy<Value = GroupShape> {
    (
        0usize..6,
        size(),
        size(),
        proptest::option::of((0u64..120, size(), size())),
        1usize..5,
    )
        .prop_map(|(n, min, max, last_nudge, waiting)| GroupShape {
            desired: u32::try_from(n).unwrap(),
            min,
            max,
            instances: vec![(1, 30, true); n],
            last_nudge,
            waiting,
        })
}

fn group_shape() -> impl Strategy<Value = GroupShape> {
    prop_oneof![1 => any_group(), 3 => settled_group()]
}

fn build_group(
    shape: &GroupShape,
) -> (
    AutoScalingGroup,
    Vec<ecs_reconciler::domain::ContainerInstance>,
) {
    let mut builder = GroupBuilder::new(shape.desired, shape.max, 1);
    let mut registered = Vec::new();
    for (i, (version, minutes, works)) in shape.instances.iter().enumerate() {
        let id = format!("i-{i}");
        builder = builder.instance(&id, *version, *minutes);
        if *works {
            registered.push(container_instance(&id, true));
        }
    }
    if let Some((minutes, from, to)) = shape.last_nudge {
        let (k, v) = nudge_tag(ago(minutes), from, to, "web");
        builder = builder.tag(&k, &v);
    }
    let mut group = builder.build();
    group.min_size = shape.min;
    (group, registered)
}

/// Asserts the two invariants on every planned nudge, and returns how many there were.
fn check_nudges(plan: &Plan, groups: &[AutoScalingGroup], set: &PolicySet) -> usize {
    let mut nudges = 0;
    for action in &plan.actions {
        let Action::NudgeCapacity {
            group, from, to, ..
        } = &action.action
        else {
            continue;
        };
        nudges += 1;
        let g = groups
            .iter()
            .find(|g| &g.name == group)
            .expect("a known group");
        let policy = set
            .policies
            .iter()
            .find(|p| p.name == action.policy)
            .unwrap();
        let max_desired = policy
            .remediate
            .nudge_capacity
            .as_ref()
            .unwrap()
            .max_desired;
        assert_eq!(
            *from, g.desired_capacity,
            "a nudge starts from the group's desired"
        );
        assert!(
            to > from,
            "a nudge lowered or kept desired capacity: {action:?}"
        );
        assert!(
            *to <= g.max_size && *to <= max_desired,
            "a nudge went past min(MaxSize {}, maxDesired {max_desired}): {action:?}",
            g.max_size
        );
    }
    nudges
}

fn plan_snapshot(snap: &ClusterSnapshot, set: &PolicySet) -> Plan {
    let sightings = {
        // Two sightings, the first long ago, so disconnected agents have a clock.
        let mut s = Sightings::default();
        let mut earlier = snap.clone();
        earlier.observed_at = ago(600);
        s.record(&earlier);
        s.record(snap);
        s
    };
    let diagnosis = diagnose(snap, set, &sightings);
    let history = History::rebuild(snap, &[]);
    plan(
        snap,
        diagnosis,
        set,
        &history,
        &sightings,
        &Clues::default(),
        false,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Diagnosis and planning together, on generated groups and every number at an extreme.
    #[test]
    fn no_planned_nudge_lowers_desired_or_passes_the_ceiling(
        n in numbers(),
        shape in group_shape(),
        managed in proptest::bool::weighted(0.1),
    ) {
        let mut set = capacity_policy();
        apply(&mut set, &n);
        let (group, registered) = build_group(&shape);
        let mut snap = snapshot(waiting_tasks(shape.waiting, 20), &[("web", 10)]);
        snap.capacity_providers = vec![provider(managed)];
        let mut disconnected = container_instance("i-gone", false);
        disconnected.arn.push_str("-gone");
        snap.container_instances = registered;
        snap.container_instances.push(disconnected);
        snap.auto_scaling_groups = vec![group];
        let plan = plan_snapshot(&snap, &set);
        check_nudges(&plan, &snap.auto_scaling_groups, &set);
        let drains = plan
            .actions
            .iter()
            .filter(|a| matches!(a.action, Action::DrainContainerInstance { .. }))
            .count();
        prop_assert!(drains <= n.max_actions_per_hour as usize);
    }

    /// The capacity planner alone, on findings that may not agree with the policy (a ceiling
    /// above MaxSize or maxDesired, a desired at the top of u32): it bounds the nudge itself.
    #[test]
    fn the_capacity_planner_bounds_a_nudge_whatever_the_finding_says(
        n in numbers(),
        shape in group_shape(),
        ceiling in size(),
    ) {
        let mut set = capacity_policy();
        apply(&mut set, &n);
        let (group, registered) = build_group(&shape);
        let mut snap = snapshot(Vec::new(), &[]);
        snap.capacity_providers = vec![provider(false)];
        snap.container_instances = registered;
        let finding = CapacityFinding {
            cluster: CLUSTER.into(),
            capacity_provider: PROVIDER.into(),
            group: Some(group.name.clone()),
            group_arn: Some(group.arn.clone()),
            policy: "web".into(),
            waiting_tasks: vec![task_arn("wait0")],
            cause: Cause::CapacityShort { desired: group.desired_capacity, ceiling },
            root_causes: Vec::new(),
            unread: Vec::new(),
            never_registered: Vec::new(),
            reason: "capacity short".into(),
            evidence: Default::default(),
        };
        snap.auto_scaling_groups = vec![group];
        let history = History::rebuild(&snap, &[]);
        let mut budgets = Budgets::new(&snap, &set, &history);
        let out = plan_capacity(
            &snap,
            &[finding],
            &set,
            &Sightings::default(),
            &history,
            &mut budgets,
            &ManagedTag::default(),
            false,
        );
        let plan = Plan {
            cluster: CLUSTER.into(),
            findings: Vec::new(),
            capacity: Vec::new(),
            actions: out.actions,
            held: out.held,
        };
        let planned = check_nudges(&plan, &snap.auto_scaling_groups, &set);
        // Nothing is dropped: no nudge means a held one, named.
        prop_assert!(planned == 1 || plan.held.iter().any(|h| h.action == ActionKind::NudgeCapacity));
    }
}

#[test]
fn a_step_that_would_wrap_plans_up_to_the_ceiling() {
    // capacity-short in miniature: desired 1, max 10, maxDesired 8, one registered instance.
    let mut set = capacity_policy();
    set.policies[0].remediate.nudge_capacity = Some(NudgeCapacity {
        step: u32::MAX,
        max_desired: 8,
        cooldown: mins(5),
    });
    let group = GroupBuilder::new(1, 10, 1).instance("i-1", 1, 30).build();
    let mut snap = snapshot(waiting_tasks(4, 20), &[("web", 6)]);
    snap.capacity_providers = vec![provider(false)];
    snap.container_instances = vec![container_instance("i-1", true)];
    snap.auto_scaling_groups = vec![group];
    let plan = plan_snapshot(&snap, &set);
    let nudges: Vec<(u32, u32)> = plan
        .actions
        .iter()
        .filter_map(|a| match a.action {
            Action::NudgeCapacity { from, to, .. } => Some((from, to)),
            _ => None,
        })
        .collect();
    assert_eq!(nudges, vec![(1, 8)], "{:?}", plan.actions);
}

#[test]
fn a_step_of_zero_is_held_not_planned() {
    let mut set = capacity_policy();
    set.policies[0].remediate.nudge_capacity = Some(NudgeCapacity {
        step: 0,
        max_desired: 8,
        cooldown: mins(5),
    });
    let group = GroupBuilder::new(1, 10, 1).instance("i-1", 1, 30).build();
    let mut snap = snapshot(waiting_tasks(2, 20), &[("web", 4)]);
    snap.capacity_providers = vec![provider(false)];
    snap.container_instances = vec![container_instance("i-1", true)];
    snap.auto_scaling_groups = vec![group];
    let plan = plan_snapshot(&snap, &set);
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a.action, Action::NudgeCapacity { .. })),
        "{:?}",
        plan.actions
    );
    let held = plan
        .held
        .iter()
        .find(|h| h.action == ActionKind::NudgeCapacity)
        .expect("the nudge is held, not dropped");
    assert_eq!(held.hold.name(), "noRemedy");
    assert!(
        held.hold.detail().contains("step is 0"),
        "{}",
        held.hold.detail()
    );
}

// ---------------------------------------------------------------------------------------------
// The real controller on every simulated scenario, with extreme numbers.
// ---------------------------------------------------------------------------------------------

/// One SetDesiredCapacity the account received, with the group as it was just before.
#[derive(Debug, Clone)]
struct DesiredChange {
    group: String,
    before: u32,
    max_size: u32,
    to: u32,
}

/// Passes everything to the simulated account and records every SetDesiredCapacity.
struct Recording {
    sim: Arc<SimAccount>,
    changes: Mutex<Vec<DesiredChange>>,
}

impl Cloud for Recording {
    async fn list_clusters(&self) -> Result<Vec<String>, CloudError> {
        self.sim.list_clusters().await
    }

    async fn observe_cluster(&self, cluster: &str) -> Result<ClusterSnapshot, CloudError> {
        self.sim.observe_cluster(cluster).await
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        task_arns: &[String],
    ) -> Result<TaskReads, CloudError> {
        self.sim.describe_tasks(cluster, task_arns).await
    }

    async fn observe_group(&self, group: &str) -> Result<GroupRead, CloudError> {
        self.sim.observe_group(group).await
    }

    async fn console_output(&self, instance_id: &str) -> Result<Option<Vec<u8>>, CloudError> {
        self.sim.console_output(instance_id).await
    }

    async fn launch_template_version(
        &self,
        template_id: &str,
        version: u32,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        self.sim.launch_template_version(template_id, version).await
    }

    async fn scaling_activities(&self, group: &str) -> Result<Vec<ScalingActivity>, CloudError> {
        self.sim.scaling_activities(group).await
    }

    async fn instance_type(&self, instance_type: &str) -> Result<InstanceTypeSize, CloudError> {
        self.sim.instance_type(instance_type).await
    }

    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<(), CloudError> {
        self.sim.stop_task(cluster, task, reason).await
    }

    async fn run_task(
        &self,
        cluster: &str,
        request: &RunTaskRequest,
    ) -> Result<String, CloudError> {
        self.sim.run_task(cluster, request).await
    }

    async fn set_desired_capacity(&self, group: &str, desired: u32) -> Result<(), CloudError> {
        if let Some(g) = self.sim.auto_scaling_group(group) {
            self.changes.lock().unwrap().push(DesiredChange {
                group: group.to_string(),
                before: g.desired_capacity,
                max_size: g.max_size,
                to: desired,
            });
        }
        self.sim.set_desired_capacity(group, desired).await
    }

    async fn pin_launch_template_version(
        &self,
        group: &str,
        template_id: &str,
        version: u32,
    ) -> Result<(), CloudError> {
        self.sim
            .pin_launch_template_version(group, template_id, version)
            .await
    }

    async fn tag_group(&self, group: &str, tags: &Tags) -> Result<(), CloudError> {
        self.sim.tag_group(group, tags).await
    }

    async fn terminate_instance(&self, instance_id: &str) -> Result<(), CloudError> {
        self.sim.terminate_instance(instance_id).await
    }

    async fn drain_container_instance(
        &self,
        cluster: &str,
        container_instance_arn: &str,
    ) -> Result<(), CloudError> {
        self.sim
            .drain_container_instance(cluster, container_instance_arn)
            .await
    }
}

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

/// The desired capacity of every group of the scenario's clusters.
fn desired_by_group(sim: &SimAccount, names: &[String]) -> Vec<(String, u32)> {
    names
        .iter()
        .filter_map(|n| {
            sim.auto_scaling_group(n)
                .map(|g| (n.clone(), g.desired_capacity))
        })
        .collect()
}

/// Runs the controller on `scenario` for `passes` passes 30 virtual seconds apart, with the
/// demo policies' numbers set to `n`; checks every SetDesiredCapacity and the groups' desired
/// capacity after each pass. Returns the changes the account received.
async fn run_scenario(scenario: &str, n: &Numbers, passes: usize) -> Vec<DesiredChange> {
    let (account, _) = build_scenario(scenario, start()).expect("scenario exists");
    let sim = Arc::new(account);
    let mut set = scenario_policies().unwrap();
    apply(&mut set, n);
    let max_desired = n.max_desired;
    let cloud = Arc::new(Recording {
        sim: Arc::clone(&sim),
        changes: Mutex::new(Vec::new()),
    });
    let controller = Arc::new(Controller::new(
        Arc::clone(&cloud),
        set,
        ControllerSettings::default(),
        AuditSink::memory(),
    ));
    let mut groups = Vec::new();
    for cluster in sim.cluster_names() {
        let snap = sim.observe_cluster(&cluster).await.unwrap();
        groups.extend(snap.auto_scaling_groups.into_iter().map(|g| g.name));
    }
    let token = CancellationToken::new();
    let mut last = desired_by_group(&sim, &groups);
    for _ in 0..passes {
        controller.pass(&token).await;
        let now = desired_by_group(&sim, &groups);
        for ((name, before), (_, after)) in last.iter().zip(&now) {
            assert!(
                after >= before,
                "{scenario}: {name} went from desired {before} to {after} ({n:?})"
            );
        }
        last = now;
        tokio::time::advance(Duration::from_secs(30)).await;
    }
    let changes = cloud.changes.lock().unwrap().clone();
    for c in &changes {
        assert!(
            c.to > c.before,
            "{scenario}: SetDesiredCapacity({}, {}) from {} ({n:?})",
            c.group,
            c.to,
            c.before
        );
        assert!(
            c.to <= c.max_size.min(max_desired),
            "{scenario}: SetDesiredCapacity({}, {}) past min(MaxSize {}, maxDesired \
             {max_desired}) ({n:?})",
            c.group,
            c.to,
            c.max_size
        );
    }
    for record in controller.audit().records() {
        if record.action == "nudgeCapacity" && record.outcome.to_string() == "done" {
            assert_ne!(
                record.detail.as_deref(),
                Some("desired capacity 0"),
                "{record:?}"
            );
        }
    }
    changes
}

/// Extreme profiles: everything at the top of its type, everything at zero, and the edges of
/// the documented ranges.
fn profiles() -> Vec<Numbers> {
    let top = Numbers {
        step: u32::MAX,
        max_desired: u32::MAX,
        cooldown: Duration::ZERO,
        registration_timeout: Duration::MAX,
        min_failed_instances: u32::MAX,
        agent_disconnected: Duration::MAX,
        max_actions_per_hour: u32::MAX,
        max_in_flight: Percent(100.0),
        pause_above: Percent(100.0),
        provisioning: Duration::from_secs(60),
    };
    let zero = Numbers {
        step: 0,
        max_desired: 0,
        cooldown: Duration::MAX,
        registration_timeout: Duration::ZERO,
        min_failed_instances: 0,
        agent_disconnected: Duration::ZERO,
        max_actions_per_hour: 0,
        max_in_flight: Percent(0.0),
        pause_above: Percent(0.0),
        provisioning: Duration::ZERO,
    };
    let edges = Numbers {
        step: ranges::NUDGE_STEP.max,
        max_desired: ranges::NUDGE_MAX_DESIRED.min,
        cooldown: ranges::NUDGE_COOLDOWN.min,
        registration_timeout: ranges::REGISTRATION_TIMEOUT.min,
        min_failed_instances: ranges::MIN_FAILED_INSTANCES.min,
        agent_disconnected: ranges::AGENT_DISCONNECTED.min,
        max_actions_per_hour: ranges::MAX_ACTIONS_PER_HOUR.max,
        max_in_flight: Percent(100.0),
        pause_above: Percent(100.0),
        provisioning: ranges::STUCK_LIMIT.min,
    };
    let nudgy = Numbers {
        step: u32::MAX - 1,
        max_desired: ranges::NUDGE_MAX_DESIRED.max,
        cooldown: Duration::from_nanos(1),
        min_failed_instances: 1,
        provisioning: Duration::from_millis(999),
        ..top.clone()
    };
    vec![top, zero, edges, nudgy]
}

#[tokio::test(start_paused = true)]
async fn no_scenario_sees_a_nudge_lower_desired_or_pass_the_ceiling() {
    let mut changes = 0;
    for scenario in scenario_names() {
        // The scale scenario has no Auto Scaling group and 10,000 tasks: a few passes suffice.
        let passes = if *scenario == "scale" { 2 } else { 24 };
        for n in profiles() {
            changes += run_scenario(scenario, &n, passes).await.len();
        }
    }
    assert!(changes > 0, "some profile nudged some group");
}

#[tokio::test(start_paused = true)]
async fn the_wrapping_step_on_capacity_short_raises_desired_to_the_ceiling_and_no_further() {
    let n = Numbers {
        step: u32::MAX,
        max_desired: 8,
        cooldown: Duration::from_secs(300),
        registration_timeout: Duration::from_secs(600),
        min_failed_instances: 2,
        agent_disconnected: Duration::from_secs(900),
        max_actions_per_hour: 20,
        max_in_flight: Percent(50.0),
        pause_above: Percent(50.0),
        provisioning: Duration::from_secs(600),
    };
    let changes = run_scenario("capacity-short", &n, 40).await;
    let seen: Vec<(u32, u32)> = changes.iter().map(|c| (c.before, c.to)).collect();
    // desired 1, MaxSize 10, maxDesired 8: one nudge, straight to the ceiling.
    assert_eq!(seen, vec![(1, 8)]);
}

#[test]
fn a_version_with_no_failed_instance_is_never_broken_even_at_a_zero_threshold() {
    let mut set = capacity_policy();
    set.policies[0].remediate.cordon_launch_template = Some(CordonLaunchTemplate {
        registration_timeout: mins(10),
        min_failed_instances: 0,
    });
    // Version 2 is rolling out: its instance boots inside the registration timeout.
    let group = GroupBuilder::new(2, 10, 2)
        .instance("i-good", 1, 60)
        .instance("i-new", 2, 2)
        .build();
    let mut snap = snapshot(waiting_tasks(2, 20), &[("web", 4)]);
    snap.capacity_providers = vec![provider(false)];
    snap.container_instances = vec![container_instance("i-good", true)];
    snap.auto_scaling_groups = vec![group];
    let plan = plan_snapshot(&snap, &set);
    let causes: Vec<&str> = plan.capacity.iter().map(|f| f.cause.name()).collect();
    assert_eq!(causes, vec!["capacityOnItsWay"], "{:?}", plan.capacity);
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a.action, Action::CordonLaunchTemplate { .. })),
        "{:?}",
        plan.actions
    );
}
