//! One hourly budget per policy and cluster, shared by every kind of action: a property test
//! over passes in time. Each pass runs the pure core (`diagnose` + `plan`) on the cluster as it
//! stands, then "does" every planned action to the cluster the way ECS and Auto Scaling would
//! (stopped tasks keep the stop reason, the scheduler starts a new task, groups keep the
//! cordon and nudge tags, drained instances turn DRAINING) and keeps the ledger the controller
//! keeps. The invariant, for every policy: the actions done in any rolling hour never exceed
//! `maxActionsPerHour`. Finishing a replacement, or a cordon or nudge already recorded on its
//! group, completes an action already done and is not a new one.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ecs_reconciler::causes::Clues;
use ecs_reconciler::decision::{Action, ActionKind};
use ecs_reconciler::diagnose::{Sightings, diagnose};
use ecs_reconciler::domain::{
    ClusterSnapshot, ContainerInstance, DesiredStatus, GroupInstance, GroupLaunch, Task, TaskStatus,
};
use ecs_reconciler::history::{History, PastAction, cordon_key, nudge_key};
use ecs_reconciler::plan::plan;
use ecs_reconciler::policy::PolicySet;
use proptest::prelude::*;

use crate::support::fixtures::*;

const HOUR: Duration = Duration::from_secs(3600);

/// Two policies in one cluster, each with every remediation and its own hourly limit: `web`
/// (services `web*` and standalone tasks; the capacity provider's waiting tasks are its) and
/// `api` (services `api*`).
fn two_policies(web_limit: u32, api_limit: u32) -> PolicySet {
    let doc = |name: &str, services: &str, standalone: bool, limit: u32| {
        format!(
            "---\napiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {{name: \
             {name}}}\nspec:\n  target: {{clusters: [\"prod-*\"], services: [\"{services}\"], \
             standalone: {standalone}}}\n  stuck: {{PROVISIONING: 10m, PENDING: 10m}}\n  \
             remediate: {{replaceTask: {{standalone: true}}, nudgeCapacity: {{step: 1, \
             maxDesired: 20, cooldown: 5m}}, cordonLaunchTemplate: {{registrationTimeout: 10m, \
             minFailedInstances: 2}}, drainContainerInstance: {{agentDisconnected: 15m}}}}\n  \
             guardrails: {{maxActionsPerHour: {limit}, maxInFlightPerService: 100%, \
             pauseWhenStuckAbove: 100%}}\n"
        )
    };
    policies(&format!(
        "{}{}",
        doc("web", "web*", true, web_limit),
        doc("api", "api*", false, api_limit)
    ))
}

#[derive(Debug, Clone)]
struct Scenario {
    web_limit: u32,
    api_limit: u32,
    /// Stuck PENDING tasks per service.
    web_stuck: usize,
    api_stuck: usize,
    standalone_stuck: usize,
    /// Tasks of `web` waiting in PROVISIONING on the capacity provider.
    waiting: usize,
    /// 0: no group; 1: a broken version 2 beside a working version 1; 2: short capacity.
    group: u8,
    broken_instances: usize,
    disconnected: usize,
    /// Minutes between passes.
    steps: Vec<u64>,
}

fn scenarios() -> impl Strategy<Value = Scenario> {
    (
        (1u32..=4, 1u32..=4),
        (0usize..=6, 0usize..=6, 0usize..=3, 0usize..=4),
        (0u8..=2, 2usize..=4, 0usize..=5),
        prop::collection::vec(3u64..=25, 3..=10),
    )
        .prop_map(
            |(
                (web_limit, api_limit),
                (web_stuck, api_stuck, standalone_stuck, waiting),
                (group, broken_instances, disconnected),
                steps,
            )| Scenario {
                web_limit,
                api_limit,
                web_stuck,
                api_stuck,
                standalone_stuck,
                waiting,
                group,
                broken_instances,
                disconnected,
                steps,
            },
        )
}

fn pending_since(mut task: Task, at: SystemTime) -> Task {
    task.last_status = TaskStatus::Pending;
    task.desired_status = DesiredStatus::Running;
    task.timestamps = Default::default();
    task.timestamps.created_at = Some(at);
    task.timestamps.connectivity_at = Some(at);
    task
}

fn instance(id: &str, version: u32, at: SystemTime) -> GroupInstance {
    GroupInstance {
        instance_id: id.into(),
        lifecycle_state: "InService".into(),
        health_status: "Healthy".into(),
        launch_template_version: Some(version),
        launched_at: Some(at),
        instance_type: None,
    }
}

/// The cluster at the start, observed at `now()`.
fn initial(s: &Scenario) -> ClusterSnapshot {
    let mut tasks = Vec::new();
    for (service, n) in [("web-a", s.web_stuck), ("api-a", s.api_stuck)] {
        for i in 0..n {
            let task = TaskBuilder::service(service, &format!("{service}-{i}"))
                .stuck_in(TaskStatus::Pending, 15 + i as u64)
                .build();
            tasks.push(task);
        }
    }
    for i in 0..s.standalone_stuck {
        let task = TaskBuilder::standalone(&format!("job-{i}"))
            .stuck_in(TaskStatus::Pending, 20)
            .build();
        tasks.push(task);
    }
    tasks.extend(waiting_tasks(s.waiting, 20).into_iter().map(|mut t| {
        t.group = Some("service:web-b".into());
        t
    }));
    let mut snap = snapshot(tasks, &[("web-a", 20), ("api-a", 20), ("web-b", 20)]);
    let mut group = GroupBuilder::new(1, 10, 1).instance("i-good", 1, 90);
    let mut instances = vec![container_instance("i-good", true)];
    match s.group {
        1 => {
            group =
                GroupBuilder::new(1 + s.broken_instances as u32, 10, 2).instance("i-good", 1, 90);
            for i in 0..s.broken_instances {
                group = group.instance(&format!("i-bad{i}"), 2, 20);
            }
        }
        2 => {
            for i in 0..3 {
                let id = format!("i-ok{i}");
                group = group.instance(&id, 1, 60);
                instances.push(container_instance(&id, true));
            }
            group.0.desired_capacity = 4;
        }
        _ => {}
    }
    if s.group != 0 {
        snap.capacity_providers = vec![provider(false)];
        snap.auto_scaling_groups = vec![group.build()];
    }
    for i in 0..s.disconnected {
        instances.push(container_instance(&format!("i-lost{i}"), false));
    }
    snap.container_instances = instances;
    snap
}

/// The cluster as it stands after each pass, the ledger, and the log of actions done.
struct World {
    snap: ClusterSnapshot,
    sightings: Sightings,
    ledger: Vec<PastAction>,
    /// Policy → when each of its actions was done.
    done: BTreeMap<String, Vec<SystemTime>>,
    /// The kind of every action done, in order.
    kinds: Vec<(ActionKind, String)>,
    /// Every action held back: its kind and guardrail.
    held: Vec<(ActionKind, &'static str)>,
    next_id: usize,
}

impl World {
    fn pass(&mut self, set: &PolicySet) {
        let now = self.snap.observed_at;
        self.sightings.record(&self.snap);
        self.ledger
            .retain(|a| now.duration_since(a.at).unwrap_or_default() < HOUR);
        let diagnosis = diagnose(&self.snap, set, &self.sightings);
        let history = History::rebuild(&self.snap, &self.ledger);
        let plan = plan(
            &self.snap,
            diagnosis,
            set,
            &history,
            &self.sightings,
            &Clues::default(),
            false,
        );
        self.held
            .extend(plan.held.iter().map(|h| (h.action, h.hold.name())));
        for planned in &plan.actions {
            self.kinds
                .push((planned.action.kind(), planned.action.target().to_string()));
            if is_new_action(&planned.action) {
                self.done
                    .entry(planned.policy.clone())
                    .or_default()
                    .push(now);
            }
            let entry = PastAction {
                at: now,
                policy: planned.policy.clone(),
                kind: planned.action.kind(),
                service: planned.service.clone(),
                target: planned.action.target().to_string(),
                condition: planned.condition,
            };
            self.apply(&planned.action, entry);
        }
    }

    /// What ECS and Auto Scaling would make of the action, and the controller's ledger entry.
    fn apply(&mut self, action: &Action, entry: PastAction) {
        let now = self.snap.observed_at;
        match action {
            Action::StopServiceTask {
                task_arn: stopped,
                stop_reason,
            }
            | Action::ReplaceStandaloneTask {
                task_arn: stopped,
                stop_reason,
                ..
            } => {
                let Some(task) = self.snap.tasks.iter_mut().find(|t| &t.arn == stopped) else {
                    return;
                };
                task.desired_status = DesiredStatus::Stopped;
                task.last_status = TaskStatus::Stopped;
                task.timestamps.stopping_at = Some(now);
                task.stopped_reason = Some(stop_reason.clone());
                let mut started = pending_since(task.clone(), now);
                started.stopped_reason = None;
                self.next_id += 1;
                started.arn = task_arn(&format!("new-{}", self.next_id));
                if let Action::ReplaceStandaloneTask { run, .. } = action {
                    started.tags = run.tags.clone();
                }
                self.snap.tasks.push(started);
                self.ledger.push(entry);
            }
            Action::FinishReplacement {
                task_arn: stopped,
                run,
            } => {
                let Some(task) = self.snap.tasks.iter().find(|t| &t.arn == stopped) else {
                    return;
                };
                let mut started = pending_since(task.clone(), now);
                started.stopped_reason = None;
                started.tags = run.tags.clone();
                self.next_id += 1;
                started.arn = task_arn(&format!("new-{}", self.next_id));
                self.snap.tasks.push(started);
            }
            Action::CordonLaunchTemplate {
                group_arn,
                template_id,
                version,
                tag,
                pin_to,
                terminate,
                ..
            } => {
                let next_id = &mut self.next_id;
                let Some(group) = self
                    .snap
                    .auto_scaling_groups
                    .iter_mut()
                    .find(|g| &g.arn == group_arn)
                else {
                    return;
                };
                if let Some((k, v)) = tag {
                    group.tags.insert(k.clone(), v.clone());
                    self.ledger.push(PastAction {
                        target: cordon_key(group_arn, template_id, *version),
                        ..entry
                    });
                }
                if let Some(good) = pin_to
                    && let GroupLaunch::LaunchTemplate {
                        version,
                        resolved_version,
                        ..
                    } = &mut group.launch
                {
                    *version = good.to_string();
                    *resolved_version = Some(*good);
                }
                group
                    .instances
                    .retain(|i| !terminate.contains(&i.instance_id));
                // Auto Scaling replaces them from the pinned version; they register.
                for _ in terminate {
                    *next_id += 1;
                    let id = format!("i-new{next_id}");
                    group
                        .instances
                        .push(instance(&id, pin_to.unwrap_or(1), now));
                    self.snap
                        .container_instances
                        .push(container_instance(&id, true));
                }
            }
            Action::NudgeCapacity {
                group_arn, to, tag, ..
            } => {
                let Some(group) = self
                    .snap
                    .auto_scaling_groups
                    .iter_mut()
                    .find(|g| &g.arn == group_arn)
                else {
                    return;
                };
                if let Some((k, v)) = tag {
                    group.tags.insert(k.clone(), v.clone());
                    self.ledger.push(PastAction {
                        target: nudge_key(group_arn, now),
                        ..entry
                    });
                }
                group.desired_capacity = *to;
                // The new instance registers: capacity may be short again after the cooldown.
                while group.instances.len() < *to as usize {
                    self.next_id += 1;
                    let id = format!("i-new{}", self.next_id);
                    group.instances.push(instance(&id, 1, now));
                    let ci: ContainerInstance = container_instance(&id, true);
                    self.snap.container_instances.push(ci);
                }
            }
            Action::DrainContainerInstance {
                container_instance_arn,
            } => {
                if let Some(ci) = self
                    .snap
                    .container_instances
                    .iter_mut()
                    .find(|c| &c.arn == container_instance_arn)
                {
                    ci.status = "DRAINING".into();
                }
                self.ledger.push(entry);
            }
        }
    }
}

/// Whether the action is a new one rather than the completion of one already done. This is the
/// test's own statement of what counts as one action (written out here, not taken from
/// `Action::draws_on_budget`, so that a change there cannot quietly change the invariant):
/// finishing a replacement, a cordon already recorded on its group, or a nudge whose tag was
/// written continues an action that was counted when it started.
fn is_new_action(action: &Action) -> bool {
    !matches!(
        action,
        Action::FinishReplacement { .. }
            | Action::CordonLaunchTemplate { tag: None, .. }
            | Action::NudgeCapacity { tag: None, .. }
    )
}

/// The most actions of one policy within any rolling hour.
fn busiest_hour(times: &[SystemTime]) -> usize {
    times
        .iter()
        .map(|end| {
            times
                .iter()
                .filter(|t| *t <= end && end.duration_since(**t).unwrap_or_default() < HOUR)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn run_scenario(s: &Scenario) -> World {
    let set = two_policies(s.web_limit, s.api_limit);
    let mut world = World {
        snap: initial(s),
        sightings: Sightings::default(),
        ledger: Vec::new(),
        done: BTreeMap::new(),
        held: Vec::new(),
        kinds: Vec::new(),
        next_id: 0,
    };
    // A first look 16 minutes earlier, so disconnected agents are past their limit soon.
    let mut earlier = world.snap.clone();
    earlier.observed_at = ago(16);
    world.sightings.record(&earlier);
    world.pass(&set);
    for step in &s.steps {
        world.snap.observed_at += mins(*step);
        world.pass(&set);
    }
    world
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_actions_of_a_policy_in_any_hour_never_exceed_its_budget(s in scenarios()) {
        let world = run_scenario(&s);
        for (policy, limit) in [("web", s.web_limit), ("api", s.api_limit)] {
            let times = world.done.get(policy).map(Vec::as_slice).unwrap_or_default();
            let busiest = busiest_hour(times);
            prop_assert!(
                busiest <= limit as usize,
                "policy {policy}: {busiest} actions in one hour, limit {limit} ({s:?})"
            );
        }
    }
}

#[test]
fn stops_spend_the_budget_that_drains_and_a_cordon_would_draw_on() {
    // Budget 3 for web: 4 stuck tasks, a broken version and 3 lost agents all want it.
    let s = Scenario {
        web_limit: 3,
        api_limit: 1,
        web_stuck: 4,
        api_stuck: 0,
        standalone_stuck: 0,
        waiting: 2,
        group: 1,
        broken_instances: 2,
        disconnected: 3,
        steps: vec![5],
    };
    let world = run_scenario(&s);
    let web = &world.done["web"];
    assert_eq!(web.len(), 3, "{web:?}");
    assert!(web.iter().all(|t| *t == now()), "all in the first pass");
    for kind in [
        ActionKind::StopTask,
        ActionKind::CordonLaunchTemplate,
        ActionKind::DrainContainerInstance,
    ] {
        assert!(
            world.held.contains(&(kind, "maxActionsPerHour")),
            "{kind} not held by the budget: {:?}",
            world.held
        );
    }
}

#[test]
fn with_room_in_the_budget_every_kind_of_action_is_taken() {
    let s = Scenario {
        web_limit: 20,
        api_limit: 20,
        web_stuck: 1,
        api_stuck: 1,
        standalone_stuck: 1,
        waiting: 2,
        group: 1,
        broken_instances: 2,
        disconnected: 1,
        steps: vec![5],
    };
    let world = run_scenario(&s);
    // For web: a replacement, a stop, the cordon and a drain in the first pass; in the second,
    // the cordon's new instances have registered and the tasks still wait: a nudge.
    let kinds: Vec<ActionKind> = world.kinds.iter().map(|(k, _)| *k).collect();
    for kind in [
        ActionKind::ReplaceTask,
        ActionKind::StopTask,
        ActionKind::CordonLaunchTemplate,
        ActionKind::DrainContainerInstance,
        ActionKind::NudgeCapacity,
    ] {
        assert!(kinds.contains(&kind), "{kind} missing: {:?}", world.kinds);
    }
    assert_eq!(world.done["web"].len(), 5, "{:?}", world.kinds);
    assert_eq!(world.done["api"].len(), 1);
}

/// A scenario through the controller and the simulated account for 50 virtual minutes under
/// the demo policy with `limit` actions an hour: the new actions done, per cluster.
async fn scenario_actions(name: &str, limit: u32) -> BTreeMap<String, Vec<ActionKind>> {
    use ecs_reconciler::audit::{AuditSink, Outcome};
    use ecs_reconciler::cloud::sim::build_scenario;
    use ecs_reconciler::controller::{Controller, ControllerSettings};
    use ecs_reconciler::demo::SCENARIO_POLICY;
    use std::sync::Arc;
    use tokio_util::sync::CancellationToken;

    let start = std::time::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let sim = Arc::new(build_scenario(name, start).unwrap().0);
    let yaml = SCENARIO_POLICY.replace(
        "maxActionsPerHour: 20",
        &format!("maxActionsPerHour: {limit}"),
    );
    assert!(
        SCENARIO_POLICY.contains("maxActionsPerHour: 20"),
        "the demo policy sets maxActionsPerHour"
    );
    let c = Arc::new(Controller::new(
        Arc::clone(&sim),
        policies(&yaml),
        ControllerSettings::default(),
        AuditSink::memory(),
    ));
    let token = CancellationToken::new();
    let mut done: BTreeMap<String, Vec<ActionKind>> = BTreeMap::new();
    for _ in 0..100 {
        for cluster in c.pass(&token).await.clusters {
            for (planned, outcome, _) in cluster.outcomes {
                if outcome == Outcome::Done && is_new_action(&planned.action) {
                    let kinds = done.entry(cluster.cluster.clone()).or_default();
                    kinds.push(planned.action.kind());
                }
            }
        }
        tokio::time::advance(Duration::from_secs(30)).await;
    }
    done
}

#[tokio::test(start_paused = true)]
async fn through_the_controller_no_cluster_exceeds_the_budget_whatever_the_action() {
    // Over 50 minutes these scenarios want two nudges (capacity short again after the
    // cooldown) and several stops in one cluster; with one action an hour, one is done.
    let nudges = scenario_actions("capacity-short", 20).await;
    assert!(
        nudges
            .values()
            .any(|k| k.len() > 1 && k.contains(&ActionKind::NudgeCapacity)),
        "{nudges:?}"
    );
    let stops = scenario_actions("mixed", 20).await;
    assert!(stops.values().any(|k| k.len() > 1), "{stops:?}");
    for name in [
        "capacity-short",
        "mixed",
        "broken-launch-template",
        "agent-disconnected",
    ] {
        let one = scenario_actions(name, 1).await;
        assert!(!one.is_empty(), "{name}: something is done");
        for (cluster, kinds) in &one {
            assert_eq!(kinds.len(), 1, "{name}, cluster {cluster}: {kinds:?}");
        }
    }
}
