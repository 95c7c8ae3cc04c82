//! Diagnosis and planning: table-driven cases from fixture builders, and property tests for the
//! invariants (exempt tasks untouched, guardrails never exceeded, one plan per snapshot, dry
//! runs plan nothing mutating).

use std::collections::BTreeMap;

use ecs_reconciler::causes::Clues;
use ecs_reconciler::decision::{Action, ActionKind, Hold};
use ecs_reconciler::diagnose::{Condition, Diagnosis, Sightings, diagnose};
use ecs_reconciler::domain::{ClusterSnapshot, DesiredStatus, HealthStatus, TaskStatus};
use ecs_reconciler::history::{History, PastAction, REPLACES_TAG, read_stop_reason, stop_reason};
use ecs_reconciler::plan::{Plan, client_token, plan};
use ecs_reconciler::policy::{PolicyMode, PolicySet};
use proptest::prelude::*;

use crate::support::fixtures::*;

fn run(snap: &ClusterSnapshot, set: &PolicySet) -> (Diagnosis, Plan) {
    run_with(snap, set, &Sightings::default(), &[], false)
}

fn run_with(
    snap: &ClusterSnapshot,
    set: &PolicySet,
    sightings: &Sightings,
    ledger: &[PastAction],
    dry_run: bool,
) -> (Diagnosis, Plan) {
    let diagnosis = diagnose(snap, set, sightings);
    let history = History::rebuild(snap, ledger);
    let plan = plan(
        snap,
        diagnosis.clone(),
        set,
        &history,
        sightings,
        &Clues::default(),
        dry_run,
    );
    (diagnosis, plan)
}

/// A sightings record in which every task of `earlier` was seen at its observed_at.
fn sighted(earlier: &ClusterSnapshot) -> Sightings {
    let mut s = Sightings::default();
    s.record(earlier);
    s
}

#[test]
fn diagnosis_table() {
    use TaskStatus::*;
    struct Case {
        name: &'static str,
        task: TaskBuilder,
        expect: Option<&'static str>,
    }
    let web = |id| TaskBuilder::service("web", id);
    let cases = vec![
        Case {
            name: "provisioning past the limit, from createdAt",
            task: web("a").stuck_in(Provisioning, 14),
            expect: Some("stuck in PROVISIONING for 14m, limit 10m"),
        },
        Case {
            name: "provisioning inside the limit",
            task: web("a").stuck_in(Provisioning, 9),
            expect: None,
        },
        Case {
            name: "exactly at the limit is not past it",
            task: web("a").stuck_in(Provisioning, 10),
            expect: None,
        },
        Case {
            name: "pending from the latest timestamp before it",
            task: web("a").stuck_in(Pending, 12),
            expect: Some("stuck in PENDING for 12m, limit 10m"),
        },
        Case {
            name: "activating from pullStoppedAt",
            task: web("a").stuck_in(Activating, 6),
            expect: Some("stuck in ACTIVATING for 6m, limit 5m"),
        },
        Case {
            name: "pending without any timestamp and never seen before: not judged",
            task: web("a")
                .status(Pending)
                .timestamps(|t| *t = Default::default()),
            expect: None,
        },
        Case {
            name: "healthy running task",
            task: web("a"),
            expect: None,
        },
        Case {
            name: "unhealthy but not seen before: the clock starts now",
            task: web("a").health(HealthStatus::Unhealthy),
            expect: None,
        },
        Case {
            name: "hanging in STOPPING past the limit, from stoppingAt",
            task: web("a").stopped(Stopping, 25, "Scaling activity"),
            expect: Some("hanging on the way down in STOPPING for 25m, limit 20m"),
        },
        Case {
            name: "stopped task is not stuck",
            task: web("a").stopped(Stopped, 90, "Essential container exited"),
            expect: None,
        },
        Case {
            name: "clock skew: createdAt in the future",
            task: web("a").stuck_in(Provisioning, 0).timestamps(|t| {
                t.created_at = Some(now() + mins(5));
            }),
            expect: None,
        },
        Case {
            name: "DEPROVISIONING has no limit in the policy",
            task: web("a").stopped(Deprovisioning, 90, "x"),
            expect: None,
        },
    ];
    let set = usual_policy();
    for case in cases {
        let snap = snapshot(vec![case.task.build()], &[("web", 4)]);
        let (diagnosis, _) = run(&snap, &set);
        let reasons: Vec<&str> = diagnosis
            .findings
            .iter()
            .map(|f| f.reason.as_str())
            .collect();
        assert_eq!(
            reasons,
            case.expect.into_iter().collect::<Vec<_>>(),
            "{}",
            case.name
        );
    }
}

#[test]
fn first_sighting_starts_the_clock_where_ecs_gives_no_timestamp() {
    let task = TaskBuilder::service("web", "a")
        .status(TaskStatus::Pending)
        .timestamps(|t| *t = Default::default());
    let mut earlier = snapshot(vec![task.clone().build()], &[("web", 4)]);
    earlier.observed_at = ago(11);
    let snap = snapshot(vec![task.build()], &[("web", 4)]);
    let (diagnosis, _) = run_with(&snap, &usual_policy(), &sighted(&earlier), &[], false);
    assert_eq!(diagnosis.findings.len(), 1);
    let f = &diagnosis.findings[0];
    assert_eq!(f.condition, Condition::InState(TaskStatus::Pending));
    assert_eq!(f.evidence["clockSource"], "firstSeenByController");
    assert_eq!(f.reason, "stuck in PENDING for 11m, limit 10m");
}

#[test]
fn unhealthy_counts_from_the_first_unhealthy_sighting() {
    let task = TaskBuilder::service("web", "a").health(HealthStatus::Unhealthy);
    let mut earlier = snapshot(vec![task.clone().build()], &[("web", 4)]);
    earlier.observed_at = ago(6);
    let snap = snapshot(vec![task.build()], &[("web", 4)]);
    let (diagnosis, plan) = run_with(&snap, &usual_policy(), &sighted(&earlier), &[], false);
    assert_eq!(diagnosis.findings[0].condition, Condition::Unhealthy);
    assert_eq!(
        diagnosis.findings[0].reason,
        "UNHEALTHY while RUNNING for 6m, limit 5m"
    );
    assert_eq!(plan.actions.len(), 1);
}

#[test]
fn sightings_forget_a_task_that_left_the_condition() {
    let unhealthy = TaskBuilder::service("web", "a").health(HealthStatus::Unhealthy);
    let mut s = Sightings::default();
    let mut first = snapshot(vec![unhealthy.clone().build()], &[]);
    first.observed_at = ago(30);
    s.record(&first);
    let mut healthy = snapshot(
        vec![unhealthy.clone().health(HealthStatus::Healthy).build()],
        &[],
    );
    healthy.observed_at = ago(20);
    s.record(&healthy);
    assert_eq!(s.first_seen(&task_arn("a"), Condition::Unhealthy), None);
    let mut again = snapshot(vec![unhealthy.build()], &[]);
    again.observed_at = ago(2);
    s.record(&again);
    assert_eq!(
        s.first_seen(&task_arn("a"), Condition::Unhealthy),
        Some(ago(2))
    );
}

#[test]
fn sightings_restart_the_clock_in_a_new_state_and_keep_instances_apart() {
    let mut s = Sightings::default();
    let pending = TaskBuilder::service("web", "a").status(TaskStatus::Pending);
    let mut first = snapshot(vec![pending.clone().build()], &[]);
    first
        .container_instances
        .push(container_instance("i-1", false));
    first.observed_at = ago(30);
    s.record(&first);
    let mut later = snapshot(vec![pending.status(TaskStatus::Activating).build()], &[]);
    later.container_instances = first.container_instances.clone();
    later.observed_at = ago(10);
    s.record(&later);
    let pending_in = Condition::InState(TaskStatus::Pending);
    let activating = Condition::InState(TaskStatus::Activating);
    assert_eq!(s.first_seen(&task_arn("a"), pending_in), None);
    assert_eq!(s.first_seen(&task_arn("a"), activating), Some(ago(10)));
    let instance = &later.container_instances[0].arn;
    assert_eq!(s.first_disconnected(instance), Some(ago(30)));
    assert_eq!(s.first_seen(instance, activating), None);
}

#[test]
fn unselected_tasks_and_clusters_are_not_diagnosed() {
    let set = policy("{PROVISIONING: 10m}", "{replaceTask: {}}", "{}");
    let mut only_api = set.clone();
    only_api.policies[0].target.services = Some(
        globset::GlobSetBuilder::new()
            .add(globset::Glob::new("api-*").unwrap())
            .build()
            .unwrap(),
    );
    let stuck = TaskBuilder::service("web", "a").stuck_in(TaskStatus::Provisioning, 30);
    let snap = snapshot(vec![stuck.build()], &[("web", 4)]);
    assert_eq!(
        run(&snap, &only_api).0.findings.len(),
        0,
        "service not selected"
    );
    let mut other_cluster = snap.clone();
    other_cluster.cluster_name = "staging-web".into();
    assert_eq!(
        run(&other_cluster, &set).0.findings.len(),
        0,
        "cluster not selected"
    );
    assert_eq!(run(&snap, &set).0.findings.len(), 1);
}

#[test]
fn a_stuck_service_task_is_stopped_with_a_reason_naming_the_policy() {
    let snap = snapshot(
        vec![
            TaskBuilder::service("web", "a")
                .stuck_in(TaskStatus::Provisioning, 14)
                .build(),
        ],
        &[("web", 4)],
    );
    let (_, plan) = run(&snap, &usual_policy());
    assert!(plan.held.is_empty());
    let [action] = plan.actions.as_slice() else {
        panic!("one action expected, got {:?}", plan.actions)
    };
    assert_eq!(action.mode, PolicyMode::Enforce);
    assert_eq!(action.service.as_deref(), Some("web"));
    match &action.action {
        Action::StopServiceTask {
            task_arn,
            stop_reason,
        } => {
            assert_eq!(task_arn, &task_arn_of("a"));
            assert_eq!(
                stop_reason,
                "ecs-reconciler[stuck:PROVISIONING policy=web]: stuck in PROVISIONING for 14m, \
                 limit 10m"
            );
        }
        other => panic!("expected StopServiceTask, got {other:?}"),
    }
}

fn task_arn_of(id: &str) -> String {
    task_arn(id)
}

#[test]
fn a_standalone_task_is_rerun_with_the_same_settings_and_a_derived_token() {
    let task = TaskBuilder::standalone("job1")
        .stuck_in(TaskStatus::Pending, 30)
        .build();
    let snap = snapshot(vec![task.clone()], &[]);
    let (_, plan) = run(&snap, &usual_policy());
    let Action::ReplaceStandaloneTask {
        run, stop_reason, ..
    } = &plan.actions[0].action
    else {
        panic!("expected a replacement, got {:?}", plan.actions)
    };
    assert!(stop_reason.starts_with("ecs-reconciler[stuck:PENDING policy=web]: stuck in PENDING"));
    assert_eq!(run.task_definition, task.task_definition_arn);
    assert_eq!(run.overrides, *task.overrides);
    assert_eq!(run.group.as_deref(), task.group.as_deref());
    assert_eq!(run.started_by.as_deref(), task.started_by.as_deref());
    assert_eq!(run.capacity, task.capacity);
    assert_eq!(run.network, task.network);
    assert_eq!(run.tags.get("team").map(|v| v.as_str()), Some("data"));
    assert_eq!(run.tags.get(REPLACES_TAG).map(|v| v.as_str()), Some("job1"));
    assert!(
        !run.tags.contains_key("aws:ecs:clusterName"),
        "aws: tags are reserved"
    );
    assert_eq!(run.client_token, client_token(&task.arn));
    assert!(run.client_token.len() <= 64 && run.client_token.is_ascii());
    assert_ne!(client_token(&task.arn), client_token(&task_arn("job2")));
}

#[test]
fn standalone_replacement_needs_the_opt_in() {
    let set = policy("{PENDING: 10m}", "{replaceTask: {}}", "{}");
    let snap = snapshot(
        vec![
            TaskBuilder::standalone("job1")
                .stuck_in(TaskStatus::Pending, 30)
                .build(),
        ],
        &[],
    );
    let (_, plan) = run(&snap, &set);
    assert!(plan.actions.is_empty());
    assert_eq!(
        plan.held[0].hold,
        Hold::NotAllowed {
            missing: "remediate.replaceTask.standalone"
        }
    );
    let none = policy("{PENDING: 10m}", "{}", "{}");
    let (_, plan) = run(&snap, &none);
    assert_eq!(plan.held[0].hold.name(), "notAllowed");
}

#[test]
fn exempt_and_excluded_tasks_are_held_back() {
    let set = policies(
        "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {name: web}\nspec:\n  \
         target: {clusters: [prod-web], exclude: {tags: {canary: \"yes\"}}}\n  stuck: \
         {PROVISIONING: 10m}\n  remediate: {replaceTask: {}}\n",
    );
    let snap = snapshot(
        vec![
            TaskBuilder::service("web", "a")
                .stuck_in(TaskStatus::Provisioning, 30)
                .tag("ecs-reconciler/exempt", "true")
                .build(),
            TaskBuilder::service("web", "b")
                .stuck_in(TaskStatus::Provisioning, 30)
                .tag("canary", "yes")
                .build(),
            TaskBuilder::service("web", "c")
                .stuck_in(TaskStatus::Provisioning, 30)
                .tag("ecs-reconciler/exempt", "false")
                .build(),
        ],
        &[("web", 10)],
    );
    let (_, plan) = run(&snap, &set);
    let held: BTreeMap<&str, String> = plan
        .held
        .iter()
        .map(|h| (h.target.rsplit('/').next().unwrap(), h.hold.detail()))
        .collect();
    assert_eq!(
        held["a"],
        "task carries exclusion tag ecs-reconciler/exempt=true"
    );
    assert_eq!(held["b"], "task carries exclusion tag canary=yes");
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].action.target(), task_arn("c"));
}

#[test]
fn max_actions_per_hour_counts_past_stops_found_on_the_tasks() {
    let set = policy(
        "{PROVISIONING: 10m}",
        "{replaceTask: {}}",
        "{maxActionsPerHour: 3, maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}",
    );
    // Stopped for another cause, so the anti-churn rule does not apply here.
    let reason = stop_reason(
        "web",
        Condition::InState(TaskStatus::Pending),
        "stuck in PENDING for 11m, limit 10m",
    );
    let mut tasks: Vec<_> = (0..4)
        .map(|i| {
            TaskBuilder::service("web", &format!("s{i}"))
                .stuck_in(TaskStatus::Provisioning, 20 + i)
                .build()
        })
        .collect();
    tasks.push(
        TaskBuilder::service("web", "old1")
            .stopped(TaskStatus::Stopped, 30, &reason)
            .build(),
    );
    // Outside the hour: does not count.
    tasks.push(
        TaskBuilder::service("web", "old2")
            .stopped(TaskStatus::Stopped, 61, &reason)
            .build(),
    );
    // Stopped by someone else: does not count.
    tasks.push(
        TaskBuilder::service("web", "old3")
            .stopped(
                TaskStatus::Stopped,
                5,
                "Scaling activity initiated by deployment",
            )
            .build(),
    );
    let snap = snapshot(tasks, &[("web", 40)]);
    let (_, plan) = run(&snap, &set);
    assert_eq!(plan.actions.len(), 2, "3 per hour, 1 already used");
    // Longest stuck first.
    assert_eq!(plan.actions[0].action.target(), task_arn("s3"));
    assert_eq!(plan.actions[1].action.target(), task_arn("s2"));
    assert_eq!(plan.held.len(), 2);
    assert!(
        plan.held
            .iter()
            .all(|h| h.hold == Hold::MaxActionsPerHour { used: 3, limit: 3 })
    );
}

#[test]
fn max_in_flight_per_service_counts_tasks_still_on_their_way_down() {
    let set = policy(
        "{PROVISIONING: 10m}",
        "{replaceTask: {}}",
        "{maxActionsPerHour: 100, maxInFlightPerService: 25%, pauseWhenStuckAbove: 100%}",
    );
    let reason = stop_reason("web", Condition::InState(TaskStatus::Provisioning), "stuck");
    let mut tasks: Vec<_> = (0..3)
        .map(|i| {
            TaskBuilder::service("web", &format!("s{i}"))
                .stuck_in(TaskStatus::Provisioning, 20)
                .build()
        })
        .collect();
    tasks.extend((0..6).map(|i| TaskBuilder::service("web", &format!("ok{i}")).build()));
    let snap = snapshot(tasks.clone(), &[("web", 8)]);
    let (_, plan) = run(&snap, &set);
    assert_eq!(plan.actions.len(), 2, "25% of 8");
    assert_eq!(
        plan.held[0].hold,
        Hold::MaxInFlightPerService {
            in_flight: 2,
            limit: 2
        }
    );

    tasks.push(
        TaskBuilder::service("web", "going")
            .stopped(TaskStatus::Deprovisioning, 1, &reason)
            .build(),
    );
    let snap = snapshot(tasks.clone(), &[("web", 8)]);
    let (_, plan) = run(&snap, &set);
    assert_eq!(plan.actions.len(), 1, "one already in flight");

    // A service of one task may still have its one task replaced.
    let snap = snapshot(
        vec![
            TaskBuilder::service("solo", "x")
                .stuck_in(TaskStatus::Provisioning, 20)
                .build(),
        ],
        &[("solo", 1)],
    );
    assert_eq!(run(&snap, &set).1.actions.len(), 1);
}

#[test]
fn too_many_stuck_at_once_pauses_the_policy() {
    let set = policy(
        "{PROVISIONING: 10m}",
        "{replaceTask: {}}",
        "{maxActionsPerHour: 100, maxInFlightPerService: 100%, pauseWhenStuckAbove: 50%}",
    );
    let mut tasks: Vec<_> = (0..6)
        .map(|i| {
            TaskBuilder::service("web", &format!("s{i}"))
                .stuck_in(TaskStatus::Provisioning, 20)
                .build()
        })
        .collect();
    tasks.extend((0..4).map(|i| TaskBuilder::service("web", &format!("ok{i}")).build()));
    let snap = snapshot(tasks.clone(), &[("web", 10)]);
    let (_, plan) = run(&snap, &set);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.held.len(), 6);
    assert!(plan.held.iter().all(|h| h.hold
        == Hold::PauseWhenStuckAbove {
            stuck: 6,
            governed: 10,
            threshold: 50.0
        }));
    // Exactly half is not above half.
    let mut half = tasks[1..].to_vec();
    half.push(TaskBuilder::service("web", "ok4").build());
    let snap = snapshot(half, &[("web", 10)]);
    let (_, plan) = run(&snap, &set);
    assert_eq!(plan.actions.len(), 5);
    // A lone stuck task is never a wider outage.
    let snap = snapshot(tasks[..1].to_vec(), &[("web", 1)]);
    assert_eq!(run(&snap, &set).1.actions.len(), 1);
}

#[test]
fn an_incomplete_observation_holds_every_replacement() {
    let mut snap = snapshot(
        vec![
            TaskBuilder::service("web", "a")
                .stuck_in(TaskStatus::Provisioning, 20)
                .build(),
        ],
        &[("web", 4)],
    );
    snap.gaps
        .push("DescribeTasks: 1 task not described (throttled)".into());
    let (diagnosis, plan) = run(&snap, &usual_policy());
    assert_eq!(diagnosis.findings.len(), 1, "diagnosis still reports it");
    assert!(plan.actions.is_empty());
    assert_eq!(plan.held[0].hold.name(), "incompleteObservation");
}

#[test]
fn audit_mode_and_dry_run_plan_audit_actions_only() {
    let snap = snapshot(
        vec![
            TaskBuilder::service("web", "a")
                .stuck_in(TaskStatus::Provisioning, 20)
                .build(),
        ],
        &[("web", 4)],
    );
    let mut audit = usual_policy();
    audit.policies[0].mode = PolicyMode::Audit;
    let (_, plan) = run(&snap, &audit);
    assert_eq!(plan.actions[0].mode, PolicyMode::Audit);
    let (_, plan) = run_with(&snap, &usual_policy(), &Sightings::default(), &[], true);
    assert_eq!(plan.actions[0].mode, PolicyMode::Audit);
}

#[test]
fn a_task_already_acted_on_is_not_acted_on_again_despite_a_stale_read() {
    let snap = snapshot(
        vec![
            TaskBuilder::service("web", "a")
                .stuck_in(TaskStatus::Provisioning, 20)
                .build(),
        ],
        &[("web", 4)],
    );
    let ledger = [PastAction {
        at: ago(0),
        policy: "web".into(),
        kind: ActionKind::StopTask,
        service: Some("web".into()),
        target: task_arn("a"),
        condition: Some(Condition::InState(TaskStatus::Provisioning)),
    }];
    let (diagnosis, plan) = run_with(
        &snap,
        &usual_policy(),
        &Sightings::default(),
        &ledger,
        false,
    );
    assert_eq!(diagnosis.findings.len(), 1);
    assert!(plan.actions.is_empty() && plan.held.is_empty());
}

#[test]
fn a_replacement_interrupted_after_stop_task_is_finished_with_the_same_token() {
    let original = TaskBuilder::standalone("job1").stuck_in(TaskStatus::Pending, 30);
    let first = snapshot(vec![original.clone().build()], &[]);
    let (_, plan) = run(&first, &usual_policy());
    let Action::ReplaceStandaloneTask {
        run: planned,
        stop_reason,
        ..
    } = &plan.actions[0].action
    else {
        panic!("expected a replacement")
    };
    // The process died after StopTask: the task is stopping with our reason, no replacement.
    let stopped = original.stopped(TaskStatus::Stopped, 1, stop_reason);
    let after_crash = snapshot(vec![stopped.clone().build()], &[]);
    let (_, plan) = run(&after_crash, &usual_policy());
    let [action] = plan.actions.as_slice() else {
        panic!("one action expected, got {:?}", plan.actions)
    };
    let Action::FinishReplacement { run: finish, .. } = &action.action else {
        panic!("expected FinishReplacement, got {:?}", action.action)
    };
    assert_eq!(finish.client_token, planned.client_token);
    assert_eq!(**finish, **planned);
    // Once a replacement exists, nothing more is planned.
    let replacement = TaskBuilder::standalone("job1-new")
        .tag(REPLACES_TAG, "job1")
        .build();
    let done = snapshot(vec![stopped.build(), replacement], &[]);
    let (_, plan) = run(&done, &usual_policy());
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
}

#[test]
fn a_task_hanging_on_the_way_down_is_reported_not_replaced() {
    let snap = snapshot(
        vec![
            TaskBuilder::service("web", "a")
                .stopped(TaskStatus::Stopping, 40, "Scaling")
                .build(),
        ],
        &[("web", 4)],
    );
    let (diagnosis, plan) = run(&snap, &usual_policy());
    assert_eq!(diagnosis.findings.len(), 1);
    assert!(plan.actions.is_empty());
    assert_eq!(plan.held[0].hold.name(), "noRemedy");
}

#[test]
fn stop_reasons_carry_a_token_and_fit_ecs_limit_whatever_the_policy_and_prose() {
    let policy_name = format!("web-{}", "p".repeat(59)); // 63 characters, RFC 1123's limit
    let condition = Condition::InState(TaskStatus::Provisioning);
    // Multi-byte characters: the cut must land on a character boundary.
    let long = format!(
        "stuck in PROVISIONING for 14m, limit 10m {}",
        "é".repeat(300)
    );
    let reason = stop_reason(&policy_name, condition, &long);
    assert!(reason.len() <= 255, "{} bytes", reason.len());
    assert!(reason.chars().count() <= 255);
    let token = format!("ecs-reconciler[stuck:PROVISIONING policy={policy_name}]: ");
    assert!(reason.starts_with(&token), "{reason}");
    let mark = read_stop_reason(&reason).expect("the controller's own reason is recognised");
    assert_eq!(mark.policy, policy_name);
    assert_eq!(mark.condition, Some(condition));
    // Short prose is kept whole.
    let short = stop_reason(
        "web",
        Condition::Unhealthy,
        "UNHEALTHY while RUNNING for 6m",
    );
    assert_eq!(
        short,
        "ecs-reconciler[unhealthy policy=web]: UNHEALTHY while RUNNING for 6m"
    );
    assert_eq!(read_stop_reason("Task stopped by user"), None);
    assert_eq!(read_stop_reason("ecs-reconciler[bogus]: x"), None);
}

#[test]
fn stop_reasons_of_the_older_format_are_still_recognised() {
    let old = "ecs-reconciler: stuck in PROVISIONING for 14m, limit 10m [policy web]";
    let mark = read_stop_reason(old).unwrap();
    assert_eq!(mark.policy, "web");
    assert_eq!(
        mark.condition,
        Some(Condition::InState(TaskStatus::Provisioning))
    );
    let unhealthy = "ecs-reconciler: UNHEALTHY while RUNNING for 6m, limit 5m [policy api]";
    let mark = read_stop_reason(unhealthy).unwrap();
    assert_eq!(
        (mark.policy, mark.condition),
        ("api", Some(Condition::Unhealthy))
    );
    let down =
        "ecs-reconciler: hanging on the way down in STOPPING for 30m, limit 20m [policy web]";
    assert_eq!(
        read_stop_reason(down).unwrap().condition,
        Some(Condition::InState(TaskStatus::Stopping))
    );
}

#[test]
fn every_condition_has_a_token_that_reads_back() {
    let conditions = TaskStatus::ALL
        .into_iter()
        .map(Condition::InState)
        .chain([Condition::Unhealthy]);
    for condition in conditions {
        let reason = stop_reason("web", condition, "anything");
        assert_eq!(
            read_stop_reason(&reason).and_then(|m| m.condition),
            Some(condition),
            "{reason}"
        );
    }
}

#[test]
fn a_reworded_stop_reason_is_still_recognised_by_its_token() {
    // A later release words the prose differently: history reads the token, not the prose.
    let earlier = "ecs-reconciler[stuck:PROVISIONING policy=web]: waited 11 minutes for capacity";
    let snap = snapshot(
        vec![
            TaskBuilder::service("web", "old")
                .stopped(TaskStatus::Stopped, 30, earlier)
                .build(),
            TaskBuilder::service("web", "new")
                .stuck_in(TaskStatus::Provisioning, 20)
                .build(),
        ],
        &[("web", 10)],
    );
    let (_, plan) = run(&snap, &usual_policy());
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert_eq!(plan.held[0].hold.name(), "notCured");
    assert_eq!(
        plan.held[0].hold,
        Hold::NotCured {
            condition: Condition::InState(TaskStatus::Provisioning),
            replaced_at: ago(30),
        }
    );
}

#[test]
fn a_stop_in_the_older_format_still_counts_against_the_budget() {
    let set = policy(
        "{PROVISIONING: 10m}",
        "{replaceTask: {}}",
        "{maxActionsPerHour: 2, maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}",
    );
    let old = "ecs-reconciler: stuck in PENDING for 11m, limit 10m [policy web]";
    let mut tasks: Vec<_> = (0..3)
        .map(|i| {
            TaskBuilder::service("web", &format!("s{i}"))
                .stuck_in(TaskStatus::Provisioning, 20 + i)
                .build()
        })
        .collect();
    tasks.push(
        TaskBuilder::service("web", "old1")
            .stopped(TaskStatus::Stopped, 30, old)
            .build(),
    );
    let (_, plan) = run(&snapshot(tasks, &[("web", 40)]), &set);
    assert_eq!(plan.actions.len(), 1, "2 per hour, 1 already used");
}

// ---- properties ----

#[derive(Debug, Clone)]
struct TaskSpec {
    service: Option<u8>,
    status: u8,
    minutes: u64,
    unhealthy: bool,
    exempt: bool,
    stopped_by_us: Option<u64>,
}

fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (
        prop::option::weighted(0.8, 0u8..3),
        0u8..8,
        0u64..40,
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::option::weighted(0.15, 0u64..90),
    )
        .prop_map(
            |(service, status, minutes, unhealthy, exempt, stopped_by_us)| TaskSpec {
                service,
                status,
                minutes,
                unhealthy,
                exempt,
                stopped_by_us,
            },
        )
}

fn build(specs: &[TaskSpec], desired: &[u32; 3]) -> ClusterSnapshot {
    let tasks = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let id = format!("t{i}");
            let mut b = match s.service {
                Some(n) => TaskBuilder::service(&format!("svc{n}"), &id),
                None => TaskBuilder::standalone(&id),
            };
            let status = TaskStatus::ALL[s.status as usize];
            b = match status {
                TaskStatus::Provisioning | TaskStatus::Pending | TaskStatus::Activating => {
                    b.stuck_in(status, s.minutes)
                }
                other => b.status(other),
            };
            if let Some(m) = s.stopped_by_us {
                b = b.stopped(
                    status,
                    m,
                    &stop_reason("web", Condition::InState(TaskStatus::Provisioning), "stuck"),
                );
            } else if status.is_way_down() || status == TaskStatus::Stopped {
                b = b.stopped(status, s.minutes, "Scaling activity");
            }
            if s.unhealthy {
                b = b.health(HealthStatus::Unhealthy);
            }
            if s.exempt {
                b = b.tag("ecs-reconciler/exempt", "true");
            }
            b.build()
        })
        .collect();
    snapshot(
        tasks,
        &[
            ("svc0", desired[0]),
            ("svc1", desired[1]),
            ("svc2", desired[2]),
        ],
    )
}

fn guarded_policy(per_hour: u32, in_flight: u32, pause: u32) -> PolicySet {
    let mut set = policy(
        "{PROVISIONING: 10m, PENDING: 5m, ACTIVATING: 5m, STOPPING: 10m, unhealthy: 1m}",
        "{replaceTask: {standalone: true}}",
        &format!(
            "{{maxActionsPerHour: 1, maxInFlightPerService: {in_flight}%, \
             pauseWhenStuckAbove: {pause}%}}"
        ),
    );
    // Set directly: 0 is below the validated range but the planner must still honour it.
    set.policies[0].guardrails.max_actions_per_hour = per_hour;
    set
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn guardrails_hold_and_plans_are_deterministic(
        specs in prop::collection::vec(task_spec(), 0..40),
        desired in [1u32..12, 1u32..12, 1u32..12],
        per_hour in 0u32..8,
        in_flight in 0u32..=100,
        pause in 0u32..=100,
        dry_run in any::<bool>(),
        unhealthy_seen_minutes in 0u64..10,
    ) {
        let snap = build(&specs, &desired);
        let set = guarded_policy(per_hour, in_flight, pause);
        let mut earlier = snap.clone();
        earlier.observed_at = ago(unhealthy_seen_minutes);
        let sightings = sighted(&earlier);
        let (diagnosis, plan1) = run_with(&snap, &set, &sightings, &[], dry_run);
        let (_, plan2) = run_with(&snap, &set, &sightings, &[], dry_run);
        prop_assert_eq!(&plan1, &plan2, "planning twice gives one plan");

        let by_arn: BTreeMap<&str, _> = snap.tasks.iter().map(|t| (t.arn.as_str(), t)).collect();
        let history = History::rebuild(&snap, &[]);
        let mut per_service: BTreeMap<String, usize> = BTreeMap::new();
        let mut new_actions = 0usize;
        for action in &plan1.actions {
            let task = by_arn[action.action.target()];
            prop_assert!(
                task.tags.get("ecs-reconciler/exempt").map(|v| v.as_str()) != Some("true"),
                "an exempt task is never touched"
            );
            if dry_run {
                prop_assert_eq!(action.mode, PolicyMode::Audit, "dry run plans nothing mutating");
            }
            if !matches!(action.action, Action::FinishReplacement { .. }) {
                new_actions += 1;
                prop_assert_eq!(task.desired_status, DesiredStatus::Running);
                if let Some(s) = task.service_name() {
                    *per_service.entry(s.to_string()).or_default() += 1;
                }
            }
        }
        let used = history.actions_in_window("web", snap.observed_at);
        prop_assert!(new_actions + used <= per_hour as usize || new_actions == 0);
        for (service, planned) in &per_service {
            let desired = snap.service(service).unwrap().desired_count;
            let limit = ((in_flight as f64 / 100.0 * desired as f64).floor() as usize).max(1);
            prop_assert!(history.in_flight(service) + planned <= limit,
                "service {} in flight {} + planned {} over limit {}",
                service, history.in_flight(service), planned, limit);
        }
        let stuck = diagnosis.findings.iter()
            .filter(|f| by_arn[f.task_arn.as_str()].desired_status == DesiredStatus::Running)
            .filter(|f| !by_arn[f.task_arn.as_str()].tags.contains_key("ecs-reconciler/exempt"))
            .count();
        let governed = diagnosis.governed_running.get("web").copied().unwrap_or(0);
        if stuck >= 2 && stuck as f64 > pause as f64 / 100.0 * governed as f64 {
            prop_assert_eq!(new_actions, 0, "paused: nothing new is planned");
        }
        // Every finding ends as exactly one action or hold, unless already acted on.
        for f in &diagnosis.findings {
            let acted = plan1.actions.iter().filter(|a| a.action.target() == f.task_arn).count();
            let held = plan1.held.iter().filter(|h| h.target == f.task_arn).count();
            prop_assert!(acted + held == 1 || history.acted_on(&f.task_arn));
        }
    }
}

#[test]
fn an_awsvpc_standalone_task_whose_security_groups_are_unknown_is_not_stopped() {
    let mut task = TaskBuilder::standalone("job1")
        .stuck_in(TaskStatus::Provisioning, 30)
        .build();
    task.network.as_mut().unwrap().security_groups.clear();
    let snap = snapshot(vec![task], &[]);
    let (_, plan) = run(&snap, &usual_policy());
    assert!(plan.actions.is_empty());
    assert_eq!(plan.held[0].hold.name(), "cannotReplicate");
    assert!(
        plan.held[0]
            .hold
            .detail()
            .contains("security groups are unknown")
    );
}

#[test]
fn a_replacement_stuck_again_for_the_same_cause_is_not_replaced_again() {
    let earlier = stop_reason(
        "web",
        Condition::InState(TaskStatus::Provisioning),
        "stuck in PROVISIONING for 11m, limit 10m",
    );
    let snap = snapshot(
        vec![
            TaskBuilder::service("web", "old")
                .stopped(TaskStatus::Stopped, 30, &earlier)
                .build(),
            // Created after the stop: the replacement, stuck the same way.
            TaskBuilder::service("web", "new")
                .stuck_in(TaskStatus::Provisioning, 20)
                .build(),
            // Created before the stop: not a replacement; replaced as usual.
            TaskBuilder::service("web", "older")
                .stuck_in(TaskStatus::Provisioning, 40)
                .build(),
        ],
        &[("web", 10)],
    );
    let (_, plan) = run(&snap, &usual_policy());
    assert_eq!(plan.actions.len(), 1);
    assert_eq!(plan.actions[0].action.target(), task_arn("older"));
    assert_eq!(plan.held.len(), 1);
    assert_eq!(plan.held[0].target, task_arn("new"));
    assert_eq!(plan.held[0].hold.name(), "notCured");
    // Stuck for another cause: replaced.
    let snap = snapshot(
        vec![
            TaskBuilder::service("web", "old")
                .stopped(TaskStatus::Stopped, 30, &earlier)
                .build(),
            TaskBuilder::service("web", "new")
                .stuck_in(TaskStatus::Pending, 20)
                .build(),
        ],
        &[("web", 10)],
    );
    assert_eq!(run(&snap, &usual_policy()).1.actions.len(), 1);
}

#[test]
fn a_held_action_shares_its_finding_evidence() {
    let set = policy(
        "{PROVISIONING: 10m}",
        "{replaceTask: {}}",
        "{maxActionsPerHour: 1, maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}",
    );
    let tasks = (0..2)
        .map(|i| {
            TaskBuilder::service("web", &format!("s{i}"))
                .stuck_in(TaskStatus::Provisioning, 20 + i)
                .build()
        })
        .collect();
    let (_, plan) = run(&snapshot(tasks, &[("web", 40)]), &set);
    let evidence_of = |arn: &str| {
        let f = plan.findings.iter().find(|f| f.task_arn == arn).unwrap();
        std::sync::Arc::clone(&f.evidence)
    };
    let [action] = plan.actions.as_slice() else {
        panic!("{:?}", plan.actions)
    };
    let [held] = plan.held.as_slice() else {
        panic!("{:?}", plan.held)
    };
    assert!(std::sync::Arc::ptr_eq(
        &action.evidence,
        &evidence_of(action.action.target())
    ));
    assert!(std::sync::Arc::ptr_eq(
        &held.evidence,
        &evidence_of(&held.target)
    ));
}

#[test]
fn a_replacement_whose_original_ecs_forgot_still_counts_against_the_budget() {
    let set = policy(
        "{PENDING: 10m}",
        "{replaceTask: {standalone: true}}",
        "{maxActionsPerHour: 1, maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}",
    );
    let with_replacement_made = |minutes: u64| {
        let replacement = TaskBuilder::standalone("job-new")
            .tag(REPLACES_TAG, "job-gone")
            .timestamps(|t| t.created_at = Some(ago(minutes)))
            .build();
        let stuck = TaskBuilder::standalone("job2")
            .stuck_in(TaskStatus::Pending, 20)
            .build();
        snapshot(vec![replacement, stuck], &[])
    };
    let (_, recent) = run(&with_replacement_made(10), &set);
    assert!(recent.actions.is_empty(), "{:?}", recent.actions);
    assert_eq!(
        recent.held[0].hold,
        Hold::MaxActionsPerHour { used: 1, limit: 1 }
    );
    let (_, old) = run(&with_replacement_made(70), &set);
    assert_eq!(old.actions.len(), 1, "{:?}", old.held);
}
