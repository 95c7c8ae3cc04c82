//! The event parser on envelopes shaped like AWS's documented examples
//! (`tests/fixtures/events/`), on every kind of bad input, on arbitrary bytes, and the rule
//! patterns of `deploy/events/patterns.json` against the same fixtures.

use std::path::Path;
use std::time::{Duration, SystemTime};

use ecs_reconciler::domain::{Capacity, DesiredStatus, HealthStatus, TaskStatus};
use ecs_reconciler::events::envelope::{self, Envelope, TaskDetail};
use ecs_reconciler::events::parse::{Parsed, parse};
use ecs_reconciler::events::{Disposition, Event, GroupActivityKind};
use proptest::prelude::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/events")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).expect("fixture is JSON")
}

fn parsed(body: &str) -> Parsed {
    parse(body).unwrap_or_else(|r| panic!("rejected as {}: {}", r.disposition, r.why))
}

fn rejected(body: &str) -> Disposition {
    match parse(body) {
        Ok(p) => panic!("accepted: {:?}", p.event),
        Err(r) => r.disposition,
    }
}

fn at(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).unwrap()
}

/// `name`'s fixture with `edit` applied to its JSON.
fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut v = fixture_json(name);
    edit(&mut v);
    v.to_string()
}

#[test]
fn a_running_fargate_task_reads_as_a_task_with_its_timestamps_and_version() {
    let p = parsed(&fixture("task-state-change-running.json"));
    assert_eq!(p.event_id, "3317b2af-7005-947d-b652-f55e762e571a");
    assert_eq!(p.happened_at, Some(at("2020-01-23T17:57:58Z")));
    let Event::Task(change) = p.event else {
        panic!("not a task event: {:?}", p.event)
    };
    let t = change.task;
    assert_eq!(
        t.arn,
        "arn:aws:ecs:us-west-2:111122223333:task/FargateCluster/c13b4cb40f1f4fe4a2971f76ae5a47ad"
    );
    assert_eq!(
        t.cluster_arn,
        "arn:aws:ecs:us-west-2:111122223333:cluster/FargateCluster"
    );
    assert_eq!(t.last_status, TaskStatus::Running);
    assert_eq!(t.desired_status, DesiredStatus::Running);
    assert_eq!(
        t.health,
        HealthStatus::Unknown,
        "health is not in the events"
    );
    assert!(t.tags.is_empty());
    assert_eq!(t.capacity, Capacity::LaunchType("FARGATE".into()));
    assert_eq!((t.cpu, t.memory), (Some(256), Some(512)));
    assert_eq!(t.group.as_deref(), Some("family:sample-fargate"));
    assert_eq!(t.version, 4);
    assert_eq!(
        t.timestamps.created_at,
        Some(at("2020-01-23T17:57:34.402Z"))
    );
    assert_eq!(
        t.timestamps.connectivity_at,
        Some(at("2020-01-23T17:57:38.453Z"))
    );
    assert_eq!(
        t.timestamps.pull_started_at,
        Some(at("2020-01-23T17:57:52.103Z"))
    );
    assert_eq!(
        t.timestamps.pull_stopped_at,
        Some(at("2020-01-23T17:57:55.103Z"))
    );
    assert_eq!(
        t.timestamps.started_at,
        Some(at("2020-01-23T17:57:58.103Z"))
    );
    assert_eq!(t.timestamps.stopped_at, None);
    assert_eq!(t.container_instance_arn, None);
}

#[test]
fn a_stopped_task_keeps_its_stop_reason_code_provider_and_container_instance() {
    let Event::Task(change) = parsed(&fixture("task-state-change-stopped.json")).event else {
        panic!("not a task event")
    };
    let t = change.task;
    assert_eq!(t.last_status, TaskStatus::Stopped);
    assert_eq!(t.desired_status, DesiredStatus::Stopped);
    assert_eq!(
        t.stopped_reason.as_deref(),
        Some("Essential container in task exited")
    );
    assert_eq!(t.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(t.service_name(), Some("web"));
    assert_eq!(t.started_by.as_deref(), Some("ecs-svc/9223370556150183303"));
    // As DescribeTasks is read: the provider the task was placed with wins over launchType.
    assert_eq!(t.capacity_providers(), vec!["web-capacity"]);
    assert_eq!(
        t.container_instance_arn.as_deref(),
        Some(
            "arn:aws:ecs:us-east-1:111122223333:container-instance/default/b54a2a04-046f-4331-9d74-3f6d7f6ca315"
        )
    );
    assert_eq!(
        t.timestamps.stopping_at,
        Some(at("2016-12-06T16:41:06.102Z"))
    );
    assert_eq!(
        t.timestamps.execution_stopped_at,
        Some(at("2016-12-06T16:41:06.201Z"))
    );
    assert_eq!(
        t.timestamps.stopped_at,
        Some(at("2016-12-06T16:41:06.400Z"))
    );
    assert_eq!(t.version, 3);
}

#[test]
fn a_container_instance_change_reads_with_its_agent_status_and_version() {
    let Event::ContainerInstance(c) =
        parsed(&fixture("container-instance-state-change.json")).event
    else {
        panic!("not a container instance event")
    };
    assert_eq!(
        c.cluster_arn,
        "arn:aws:ecs:us-east-1:111122223333:cluster/default"
    );
    assert!(
        c.container_instance_arn
            .ends_with("b54a2a04-046f-4331-9d74-3f6d7f6ca315")
    );
    assert_eq!(c.ec2_instance_id.as_deref(), Some("i-f3a8506b"));
    assert!(c.agent_connected);
    assert_eq!(c.status, "ACTIVE");
    assert_eq!(c.version, 14801);
}

#[test]
fn a_placement_failure_names_its_cluster_service_and_reasons() {
    let p = parsed(&fixture("service-action-placement-failure.json"));
    assert_eq!(
        p.event,
        Event::ServiceAction {
            cluster_arn: "arn:aws:ecs:us-west-2:111122223333:cluster/default".into(),
            service_arn: "arn:aws:ecs:us-west-2:111122223333:service/default/servicetest".into(),
            event_name: "SERVICE_TASK_PLACEMENT_FAILURE".into(),
            reason: Some("RESOURCE:MEMORY".into()),
        }
    );
}

#[test]
fn an_info_service_action_is_not_used() {
    assert_eq!(
        rejected(&fixture("service-action-steady-state.json")),
        Disposition::UnknownType
    );
}

#[test]
fn the_auto_scaling_events_name_their_group() {
    let cases = [
        (
            "autoscaling-launch-successful.json",
            "sampleLuanchSucASG",
            GroupActivityKind::LaunchSuccessful,
            "At 2015-11-11T21:31:10Z a user request",
        ),
        (
            "autoscaling-launch-unsuccessful.json",
            "sampleTermSucASG",
            GroupActivityKind::LaunchUnsuccessful,
            "The image id 'ami-00000000' does not exist",
        ),
        (
            "autoscaling-terminate-lifecycle-action.json",
            "sampleASG",
            GroupActivityKind::TerminateLifecycleAction,
            "instance i-12345678 is terminating",
        ),
    ];
    for (file, group, want_kind, message_start) in cases {
        let Event::GroupActivity {
            group_name,
            kind,
            message,
        } = parsed(&fixture(file)).event
        else {
            panic!("{file}: not a group activity")
        };
        assert_eq!((group_name.as_str(), kind), (group, want_kind), "{file}");
        let message = message.unwrap_or_default();
        assert!(message.starts_with(message_start), "{file}: {message}");
    }
}

#[test]
fn bodies_that_are_not_events_get_their_own_dispositions() {
    assert_eq!(rejected(""), Disposition::NotJson);
    assert_eq!(rejected("not json at all"), Disposition::NotJson);
    assert_eq!(rejected("{\"id\": "), Disposition::NotJson);
    assert_eq!(rejected("[]"), Disposition::NotEnvelope);
    assert_eq!(rejected("42"), Disposition::NotEnvelope);
    assert_eq!(rejected(r#"{"hello": "world"}"#), Disposition::NotEnvelope);
    let no_detail = edited("task-state-change-running.json", |v| {
        v.as_object_mut().unwrap().remove("detail");
    });
    assert_eq!(rejected(&no_detail), Disposition::NotEnvelope);
    let unknown = edited("task-state-change-running.json", |v| {
        v["detail-type"] = json!("ECS Deployment State Change");
    });
    assert_eq!(rejected(&unknown), Disposition::UnknownType);
    let other_source = edited("task-state-change-running.json", |v| {
        v["source"] = json!("my.app");
    });
    assert_eq!(rejected(&other_source), Disposition::UnknownType);
}

#[test]
fn a_known_event_with_a_missing_or_bad_field_is_malformed_and_says_which() {
    type Edit = fn(&mut Value);
    let task_edits: [(&str, Edit); 9] = [
        ("version", |v| {
            v["detail"].as_object_mut().unwrap().remove("version");
        }),
        ("version", |v| v["detail"]["version"] = json!(-1)),
        ("lastStatus", |v| {
            v["detail"]["lastStatus"] = json!("ASLEEP")
        }),
        ("desiredStatus", |v| {
            v["detail"]["desiredStatus"] = json!("PAUSED")
        }),
        ("createdAt", |v| {
            v["detail"]["createdAt"] = json!("yesterday")
        }),
        ("startedAt", |v| {
            v["detail"]["startedAt"] = json!("2020-13-45T99:00:00Z")
        }),
        ("cpu", |v| v["detail"]["cpu"] = json!("a lot")),
        ("launchType", |v| {
            v["detail"].as_object_mut().unwrap().remove("launchType");
        }),
        ("taskArn", |v| v["detail"]["taskArn"] = json!("")),
    ];
    for (field, edit) in task_edits {
        let body = edited("task-state-change-running.json", edit);
        let r = parse(&body).expect_err(field);
        assert_eq!(r.disposition, Disposition::Malformed, "{field}: {}", r.why);
        assert!(
            r.why.contains(field) || r.why.contains("capacityProviderName"),
            "{field} not named in {:?}",
            r.why
        );
    }
    let detail_not_object = edited("container-instance-state-change.json", |v| {
        v["detail"] = json!("ACTIVE")
    });
    assert_eq!(rejected(&detail_not_object), Disposition::Malformed);
    let no_service = edited("service-action-placement-failure.json", |v| {
        v["resources"] = json!([])
    });
    assert_eq!(rejected(&no_service), Disposition::Malformed);
    let odd_type = edited("service-action-placement-failure.json", |v| {
        v["detail"]["eventType"] = json!("PANIC")
    });
    assert_eq!(rejected(&odd_type), Disposition::Malformed);
    let no_group = edited("autoscaling-launch-successful.json", |v| {
        v["detail"]
            .as_object_mut()
            .unwrap()
            .remove("AutoScalingGroupName");
    });
    assert_eq!(rejected(&no_group), Disposition::Malformed);
    let no_instance = edited("autoscaling-terminate-lifecycle-action.json", |v| {
        v["detail"]["EC2InstanceId"] = json!("")
    });
    assert_eq!(rejected(&no_instance), Disposition::Malformed);
}

#[test]
fn an_envelope_time_that_cannot_be_read_only_loses_the_lag() {
    let body = edited("task-state-change-running.json", |v| {
        v["time"] = json!("soon")
    });
    assert_eq!(parsed(&body).happened_at, None);
    let offset = edited("task-state-change-running.json", |v| {
        v["time"] = json!("2020-01-23T17:57:58+00:00")
    });
    assert_eq!(
        parsed(&offset).happened_at,
        Some(at("2020-01-23T17:57:58Z"))
    );
}

/// What the simulated account writes with the envelope types reads back as the same task.
#[test]
fn an_envelope_written_with_the_shared_types_reads_back() {
    let detail = TaskDetail {
        cluster_arn: "arn:aws:ecs:us-east-1:123456789012:cluster/demo".into(),
        task_arn: "arn:aws:ecs:us-east-1:123456789012:task/demo/abc".into(),
        task_definition_arn: "arn:aws:ecs:us-east-1:123456789012:task-definition/web:3".into(),
        last_status: "PROVISIONING".into(),
        desired_status: "RUNNING".into(),
        capacity_provider_name: Some("demo-cp".into()),
        created_at: Some("2026-01-01T00:00:00.250Z".into()),
        version: 1,
        ..TaskDetail::default()
    };
    let env = Envelope {
        version: "0".into(),
        id: "sim-1".into(),
        detail_type: envelope::TASK_STATE_CHANGE.into(),
        source: envelope::ECS_SOURCE.into(),
        account: "123456789012".into(),
        time: "2026-01-01T00:00:01Z".into(),
        region: "us-east-1".into(),
        resources: vec![detail.task_arn.clone()],
        detail: serde_json::to_value(&detail).unwrap(),
    };
    let p = parsed(&serde_json::to_string(&env).unwrap());
    let Event::Task(change) = p.event else {
        panic!("not a task")
    };
    assert_eq!(change.task.last_status, TaskStatus::Provisioning);
    assert_eq!(change.task.capacity_providers(), vec!["demo-cp"]);
    assert_eq!(
        change.task.timestamps.created_at,
        Some(at("2026-01-01T00:00:00Z") + Duration::from_millis(250))
    );
}

// --- The rule patterns of deploy/events/ against the fixtures ---------------------------------

fn patterns() -> serde_json::Map<String, Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/events/patterns.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// EventBridge's matching for the pattern forms deploy/ uses: every key of the pattern is in
/// the event, a list matches when the event's value is one of it, an object recurses.
fn matches(pattern: &Value, event: &Value) -> bool {
    let (Some(pattern), Some(event)) = (pattern.as_object(), event.as_object()) else {
        return false;
    };
    pattern
        .iter()
        .all(|(key, want)| match (want, event.get(key)) {
            (Value::Array(values), Some(got)) => values.contains(got),
            (Value::Object(_), Some(got)) => matches(want, got),
            _ => false,
        })
}

#[test]
fn every_used_fixture_matches_exactly_one_rule_and_info_matches_none() {
    let rules = patterns();
    assert_eq!(
        rules.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "autoscaling-launch-and-terminate",
            "ecs-container-instance-state-change",
            "ecs-service-action",
            "ecs-task-state-change"
        ],
        "the rule keys are the deploy helper's too: rename them in both places"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 8);
    for file in files {
        let event = fixture_json(&file);
        let matching: Vec<_> = rules
            .iter()
            .filter(|(_, p)| matches(p, &event))
            .map(|(k, _)| k.as_str())
            .collect();
        let used = parse(&event.to_string()).is_ok();
        let want = if used { 1 } else { 0 };
        assert_eq!(matching.len(), want, "{file}: rules {matching:?}");
    }
}

// --- Nothing panics --------------------------------------------------------------------------

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("detail".to_string()),
                    Just("detail-type".to_string()),
                    Just("source".to_string()),
                    Just("id".to_string()),
                    Just("version".to_string()),
                    ".{0,6}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let body = String::from_utf8_lossy(&bytes);
        let _ = parse(&body);
    }

    #[test]
    fn arbitrary_json_never_panics_and_is_never_applied_by_accident(v in arbitrary_json()) {
        // Without the source and type of a used event, nothing reads as an event.
        if let Ok(p) = parse(&v.to_string()) {
            prop_assert!(v["source"] == json!("aws.ecs") || v["source"] == json!("aws.autoscaling"),
                "accepted {:?}", p.event);
        }
    }

    /// A fixture's detail with one key given an arbitrary value: read or refused, never a
    /// panic; and a task that reads keeps the fixture's identity.
    #[test]
    fn a_fixture_with_one_field_replaced_never_panics(
        file in prop::sample::select(vec![
            "task-state-change-running.json",
            "task-state-change-stopped.json",
            "container-instance-state-change.json",
            "service-action-placement-failure.json",
            "autoscaling-launch-unsuccessful.json",
            "autoscaling-terminate-lifecycle-action.json",
        ]),
        index in 0usize..40,
        value in arbitrary_json(),
    ) {
        let mut v = fixture_json(file);
        let detail = v["detail"].as_object_mut().unwrap();
        let key = detail.keys().nth(index % detail.len()).unwrap().clone();
        detail.insert(key, value);
        if let Ok(Parsed { event: Event::Task(change), .. }) = parse(&v.to_string()) {
            prop_assert!(!change.task.arn.is_empty());
        }
    }
}
