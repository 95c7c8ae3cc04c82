//! Least privilege from the controller's side: it never writes to an Auto Scaling group without
//! the opt-in tag (a `notManaged` hold instead, in the plan and the audit trail), and the one
//! list of operations (`src/cloud/aws/operations.rs`) names every operation the adapter calls,
//! in the throttle category the pacing table gives it. The opt-in is checked on the planner
//! alone, on the simulator, through `plan --sim`, and on the AWS adapter against moto.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ecs_reconciler::audit::{AuditSink, Outcome};
use ecs_reconciler::capacity::diagnose_capacity;
use ecs_reconciler::capacity::tags::{MANAGED_TAG_KEY, ManagedTag};
use ecs_reconciler::causes::Clues;
use ecs_reconciler::cloud::aws::operations::{OPERATIONS, Service, find};
use ecs_reconciler::cloud::budget::category_of;
use ecs_reconciler::cloud::sim::build_scenario;
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::decision::{Action, ActionKind, Hold};
use ecs_reconciler::demo::scenario_policies;
use ecs_reconciler::diagnose::{Sightings, diagnose};
use ecs_reconciler::domain::ClusterSnapshot;
use ecs_reconciler::history::History;
use ecs_reconciler::plan::{Plan, plan_with_capacity};
use ecs_reconciler::policy::PolicySet;
use tokio_util::sync::CancellationToken;

use crate::support::fixtures::*;

fn plan_under(snap: &ClusterSnapshot, set: &PolicySet, managed: &ManagedTag) -> Plan {
    let sightings = Sightings::default();
    let diagnosis = diagnose(snap, set, &sightings);
    let capacity = diagnose_capacity(snap, &diagnosis, set, &Clues::default());
    let history = History::rebuild(snap, &[]);
    plan_with_capacity(
        snap, diagnosis, capacity, set, &history, &sightings, managed, false,
    )
}

/// Capacity short: every instance registered, desired 2 of max 10, three tasks waiting.
fn short(group: GroupBuilder) -> ClusterSnapshot {
    let mut snap = snapshot(waiting_tasks(3, 20), &[("web", 10)]);
    snap.capacity_providers = vec![provider(false)];
    snap.auto_scaling_groups = vec![group.instance("i-1", 1, 60).instance("i-2", 1, 60).build()];
    snap.container_instances = vec![
        container_instance("i-1", true),
        container_instance("i-2", true),
    ];
    snap
}

/// The seed story: version 2's instances never registered, version 1 works.
fn broken(group: GroupBuilder) -> ClusterSnapshot {
    let mut snap = snapshot(waiting_tasks(3, 20), &[("web", 10)]);
    snap.capacity_providers = vec![provider(false)];
    snap.auto_scaling_groups = vec![
        group
            .instance("i-good", 1, 60)
            .instance("i-bad1", 2, 15)
            .instance("i-bad2", 2, 14)
            .build(),
    ];
    snap.container_instances = vec![container_instance("i-good", true)];
    snap
}

fn not_managed(plan: &Plan) -> Vec<(ActionKind, &Hold)> {
    plan.held
        .iter()
        .filter(|h| h.hold.name() == "notManaged")
        .map(|h| (h.action, &h.hold))
        .collect()
}

fn group_writes(plan: &Plan) -> usize {
    plan.actions
        .iter()
        .filter(|a| {
            matches!(
                a.action,
                Action::NudgeCapacity { .. } | Action::CordonLaunchTemplate { .. }
            )
        })
        .count()
}

#[test]
fn a_group_without_the_opt_in_tag_is_held_not_managed_never_written() {
    let set = capacity_policy();
    let default = ManagedTag::default();
    assert_eq!(default.key, MANAGED_TAG_KEY);
    // Control: with the tag, the nudge and the cordon are planned.
    assert_eq!(
        group_writes(&plan_under(
            &short(GroupBuilder::new(2, 10, 1)),
            &set,
            &default
        )),
        1
    );
    assert_eq!(
        group_writes(&plan_under(
            &broken(GroupBuilder::new(3, 10, 2)),
            &set,
            &default
        )),
        1
    );

    let nudge = plan_under(
        &short(GroupBuilder::new(2, 10, 1).unmanaged()),
        &set,
        &default,
    );
    assert_eq!(group_writes(&nudge), 0, "{:?}", nudge.actions);
    let expected = Hold::NotManaged {
        group: GROUP.into(),
        tag_key: "ecs-reconciler:managed".into(),
        tag_value: "true".into(),
    };
    assert_eq!(
        not_managed(&nudge),
        vec![(ActionKind::NudgeCapacity, &expected)]
    );
    assert!(
        expected.detail().contains("ecs-reconciler:managed=true"),
        "{}",
        expected.detail()
    );

    let cordon = plan_under(
        &broken(GroupBuilder::new(3, 10, 2).unmanaged()),
        &set,
        &default,
    );
    assert_eq!(group_writes(&cordon), 0, "{:?}", cordon.actions);
    assert_eq!(
        not_managed(&cordon),
        vec![(ActionKind::CordonLaunchTemplate, &expected)]
    );
    // The waiting tasks are still not replaced: the cause is capacity either way.
    assert!(
        cordon
            .actions
            .iter()
            .all(|a| !matches!(a.action, Action::StopServiceTask { .. }))
    );
}

#[test]
fn the_opt_in_tag_is_the_configured_one_with_its_exact_value() {
    let set = capacity_policy();
    let team = ManagedTag {
        key: "team:ecs-managed".into(),
        value: "yes".into(),
    };
    let tagged = short(GroupBuilder::new(2, 10, 1).tag("team:ecs-managed", "yes"));
    assert_eq!(group_writes(&plan_under(&tagged, &set, &team)), 1);
    // The default tag alone does not opt in under another configured tag.
    let default_only = short(GroupBuilder::new(2, 10, 1));
    assert_eq!(group_writes(&plan_under(&default_only, &set, &team)), 0);
    // Nor does the right key with another value.
    let wrong_value = short(GroupBuilder::new(2, 10, 1).tag("team:ecs-managed", "no"));
    let plan = plan_under(&wrong_value, &set, &team);
    assert_eq!(group_writes(&plan), 0);
    assert_eq!(not_managed(&plan).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn on_the_simulator_an_unmanaged_group_is_recorded_held_and_left_alone() {
    let start = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let sim = Arc::new(build_scenario("capacity-short", start).unwrap().0);
    let desired = sim.auto_scaling_group("demo-asg").unwrap().desired_capacity;
    // The scenario's group carries ecs-reconciler:managed=true; this controller wants another tag.
    let c = Arc::new(Controller::new(
        Arc::clone(&sim),
        scenario_policies().unwrap(),
        ControllerSettings {
            managed_tag: ManagedTag {
                key: "other:managed".into(),
                value: "true".into(),
            },
            ..ControllerSettings::default()
        },
        AuditSink::memory(),
    ));
    let token = CancellationToken::new();
    for _ in 0..4 {
        c.pass(&token).await;
        tokio::time::advance(Duration::from_secs(30)).await;
    }
    for op in [
        "SetDesiredCapacity",
        "CreateOrUpdateTags",
        "UpdateAutoScalingGroup",
    ] {
        assert_eq!(sim.call_count(op), 0, "{op} on an unmanaged group");
    }
    assert_eq!(
        sim.auto_scaling_group("demo-asg").unwrap().desired_capacity,
        desired
    );
    let held: Vec<_> = c
        .audit()
        .records()
        .into_iter()
        .filter(|r| r.outcome == Outcome::Skipped("notManaged"))
        .collect();
    assert_eq!(held.len(), 1, "written once, not every pass: {held:?}");
    assert_eq!(held[0].action, "nudgeCapacity");
    assert!(
        held[0]
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("other:managed=true")
    );
}

/// Operation names the adapter's source calls: the first argument of `.call(`, `.pages(`,
/// `autoscaling_write(` (through the pacer) and of `from_sdk(` and `from_sdk_naming(` (every
/// SDK error is named by its operation, the unpaced DynamoDB and SQS calls included), a
/// string literal or a `const NAME: &str` declared above it (the adapter declares them in the
/// function that calls).
fn operations_in_source() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cloud/aws");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("operations.rs") {
            continue;
        }
        let mut consts = BTreeMap::new();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("const ")
                && let Some((name, value)) = rest.split_once(": &str = \"")
            {
                consts.insert(
                    name.to_string(),
                    value.split('"').next().unwrap().to_string(),
                );
            }
            for call in [
                ".call(",
                ".pages(",
                "autoscaling_write(",
                "from_sdk(",
                "from_sdk_naming(",
            ] {
                let Some((_, rest)) = line.split_once(call) else {
                    continue;
                };
                let arg = rest.split([',', ')']).next().unwrap().trim();
                let name = match arg.strip_prefix('"') {
                    Some(literal) => Some(literal.trim_end_matches('"').to_string()),
                    None => consts.get(arg).cloned(),
                };
                found.extend(name);
            }
        }
    }
    found
}

/// Listed operations our source does not call itself: (operation, what the adapter's source
/// builds that calls it).
const CALLED_FOR_US: &[(&str, &str)] = &[
    // aws-config's credentials provider, for each [[targets]] role_arn.
    ("AssumeRole", "AssumeRoleProvider::builder("),
];

fn adapter_source() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cloud/aws");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn the_operations_list_is_what_the_adapter_source_calls_both_ways() {
    let called = operations_in_source();
    assert!(
        called.len() >= 20,
        "the scan finds the adapter's operations: {called:?}"
    );
    // The lease table's calls are found through `from_sdk(`.
    for name in ["DescribeTable", "Scan", "PutItem", "CreateTable"] {
        assert!(called.contains(name), "{name} not found: {called:?}");
    }
    let source = adapter_source();
    for (name, by) in CALLED_FOR_US {
        assert!(find(name).is_some(), "{name} ({by}) is not listed");
        assert!(
            source.contains(by),
            "nothing builds {by}: is {name} still called?"
        );
        assert!(
            !called.contains(*name),
            "{name} is called by our source now, not only through {by}: drop the exemption"
        );
    }
    let missing: Vec<_> = called.iter().filter(|n| find(n).is_none()).collect();
    assert!(
        missing.is_empty(),
        "called but not in operations.rs: {missing:?}"
    );
    // Every listed operation is called somewhere.
    let stale: Vec<_> = OPERATIONS
        .iter()
        .filter(|o| !called.contains(o.name))
        .filter(|o| CALLED_FOR_US.iter().all(|(name, _)| *name != o.name))
        .map(|o| o.name)
        .collect();
    assert!(stale.is_empty(), "listed but never called: {stale:?}");
}

#[test]
fn each_listed_operation_is_paced_in_its_listed_category() {
    for o in OPERATIONS {
        assert_eq!(category_of(&o.action()), o.category, "{o}");
        if matches!(
            o.service,
            Service::Ecs | Service::Ec2 | Service::AutoScaling
        ) {
            // Unqualified, as the adapter names them to the pacer (SQS, DynamoDB and STS
            // calls are not paced).
            assert_eq!(category_of(o.name), o.category, "{}", o.name);
        }
    }
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn the_opt_in_tag_is_configured_in_managed_tag_and_checked_with_one_line() {
    use ecs_reconciler::config::{FlagOverrides, load_with_env_prefix};
    const NO_ENV: &str = "ECS_RECONCILER_LEAST_PRIVILEGE_TEST_UNSET_";
    let defaults = load_with_env_prefix(None, &FlagOverrides::default(), NO_ENV).unwrap();
    assert_eq!(defaults.managed_tag, ManagedTag::default());

    let file = config_file("[managed_tag]\nkey = \"team:ecs-managed\"\nvalue = \"yes\"\n");
    let s = load_with_env_prefix(Some(file.path()), &FlagOverrides::default(), NO_ENV).unwrap();
    assert_eq!(
        s.managed_tag,
        ManagedTag {
            key: "team:ecs-managed".into(),
            value: "yes".into()
        }
    );

    let refused = |text: &str| {
        let file = config_file(text);
        let e = load_with_env_prefix(Some(file.path()), &FlagOverrides::default(), NO_ENV)
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(e.contains(&file.path().display().to_string()), "{e}");
        e
    };
    let e = refused("[managed_tag]\nkey = \"aws:managed\"\n");
    assert!(
        e.starts_with("invalid configuration: managed_tag.key: must not start with aws:"),
        "{e}"
    );
    let e = refused("[managed_tag]\nkey = \"\"\n");
    assert!(
        e.starts_with("invalid configuration: managed_tag.key: must not be empty"),
        "{e}"
    );
    let e = refused(&format!("[managed_tag]\nvalue = \"{}\"\n", "v".repeat(257)));
    assert!(
        e.starts_with(
            "invalid configuration: managed_tag.value: must be at most 256 characters, got 257"
        ),
        "{e}"
    );
}

#[test]
fn plan_shows_the_hold_when_the_configured_tag_is_not_on_the_group() {
    let plan = |key: Option<&str>| {
        let mut c = crate::cli::bin();
        c.args(["plan", "--sim", "capacity-short", "--output", "json"]);
        if let Some(key) = key {
            c.env("ECS_RECONCILER_MANAGED_TAG__KEY", key);
        }
        let out = c.stdin(std::process::Stdio::null()).output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        json
    };
    // (action, guardrail) of every held action in the JSON plan.
    let holds = |plan: &serde_json::Value| -> Vec<(String, String)> {
        plan["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["held"].as_array().unwrap().clone())
            .filter(|h| h["guardrail"] == "notManaged")
            .map(|h| {
                (
                    h["action"].as_str().unwrap().into(),
                    h["detail"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let planned = |plan: &serde_json::Value| -> Vec<String> {
        plan["clusters"][0]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["action"]["kind"].as_str().unwrap().to_string())
            .collect()
    };
    // The scenario's group opted in with the default tag: nudged, nothing held notManaged.
    let default = plan(None);
    assert!(holds(&default).is_empty(), "{default}");
    assert_eq!(planned(&default), ["nudgeCapacity"], "{default}");
    // Under another configured tag the same group is held, and nothing is planned for it.
    let other = plan(Some("team:ecs-managed"));
    let held = holds(&other);
    assert_eq!(held.len(), 1, "{other}");
    assert_eq!(held[0].0, "nudgeCapacity");
    assert!(held[0].1.contains("team:ecs-managed=true"), "{}", held[0].1);
    assert!(planned(&other).is_empty(), "{other}");
}

// ---- the same on the AWS adapter and moto ----

mod on_moto {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag as AsgTag};
    use aws_sdk_ec2::types::RequestLaunchTemplateData;
    use aws_sdk_ecs::types::{
        AutoScalingGroupProvider, CapacityProviderStrategyItem, ContainerDefinition,
        ManagedScaling, ManagedScalingStatus,
    };
    use ecs_reconciler::audit::{AuditSink, Outcome};
    use ecs_reconciler::capacity::tags::{MANAGED_TAG_KEY, MANAGED_TAG_VALUE};
    use ecs_reconciler::cloud::aws::AwsCloud;
    use ecs_reconciler::cloud::aws::operations::find;
    use ecs_reconciler::controller::{Controller, ControllerSettings};
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    use crate::support::fixtures::policies;
    use crate::support::moto::Moto;

    const CLUSTER: &str = "lp-web";
    const POLICY: &str = "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: \
                          {name: lp}\nspec:\n  target: {clusters: [lp-*]}\n  stuck: \
                          {PROVISIONING: 10m}\n  remediate:\n    replaceTask: {}\n    \
                          nudgeCapacity: {step: 1, maxDesired: 4, cooldown: 5m}\n  \
                          guardrails: {maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}\n";

    fn epoch_secs(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    /// Capacity short on moto: group `lp-asg` (desired 1 of 10, its instance registered and
    /// connected, launched an hour ago) behind provider `lp-cp`, and two tasks on `lp-cp`
    /// stuck in PROVISIONING for 20 minutes. The group carries the opt-in tag when `tagged`.
    async fn capacity_short(moto: &Moto, tagged: bool) {
        let data = RequestLaunchTemplateData::builder()
            .image_id("ami-12c6146b")
            .instance_type("m5.large".into())
            .build();
        let template = moto
            .ec2()
            .create_launch_template()
            .launch_template_name("lp-lt")
            .launch_template_data(data)
            .send()
            .await
            .unwrap()
            .launch_template()
            .unwrap()
            .launch_template_id()
            .unwrap()
            .to_string();
        let mut group = moto
            .autoscaling()
            .create_auto_scaling_group()
            .auto_scaling_group_name("lp-asg")
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&template)
                    .version("1")
                    .build(),
            )
            .min_size(0)
            .max_size(10)
            .desired_capacity(1)
            .availability_zones("us-east-1a");
        if tagged {
            group = group.tags(
                AsgTag::builder()
                    .key(MANAGED_TAG_KEY)
                    .value(MANAGED_TAG_VALUE)
                    .propagate_at_launch(false)
                    .build(),
            );
        }
        group.send().await.unwrap();
        let described = moto
            .autoscaling()
            .describe_auto_scaling_groups()
            .auto_scaling_group_names("lp-asg")
            .send()
            .await
            .unwrap();
        let group = &described.auto_scaling_groups()[0];
        let group_arn = group.auto_scaling_group_arn().unwrap().to_string();
        let instance = group.instances()[0].instance_id().unwrap().to_string();
        let hour_ago = epoch_secs(SystemTime::now() - Duration::from_secs(3600));
        moto.set_launch_time(&instance, hour_ago).await;

        let ecs = moto.ecs();
        ecs.create_capacity_provider()
            .name("lp-cp")
            .auto_scaling_group_provider(
                AutoScalingGroupProvider::builder()
                    .auto_scaling_group_arn(group_arn)
                    .managed_scaling(
                        ManagedScaling::builder()
                            .status(ManagedScalingStatus::Disabled)
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        ecs.create_cluster()
            .cluster_name(CLUSTER)
            .capacity_providers("lp-cp")
            .send()
            .await
            .unwrap();
        ecs.register_container_instance()
            .cluster(CLUSTER)
            .instance_identity_document(json!({"instanceId": instance}).to_string())
            .send()
            .await
            .unwrap();
        ecs.register_task_definition()
            .family("web")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("web")
                    .image("public.ecr.aws/nginx/nginx:latest")
                    .memory(128)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        ecs.create_service()
            .cluster(CLUSTER)
            .service_name("web")
            .task_definition("web")
            .desired_count(2)
            .send()
            .await
            .unwrap();
        let twenty_minutes_ago = epoch_secs(SystemTime::now() - Duration::from_secs(20 * 60));
        for _ in 0..2 {
            let run = ecs
                .run_task()
                .cluster(CLUSTER)
                .task_definition("web")
                .group("service:web")
                .capacity_provider_strategy(
                    CapacityProviderStrategyItem::builder()
                        .capacity_provider("lp-cp")
                        .weight(1)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
            let task = run.tasks()[0].task_arn().unwrap().to_string();
            moto.set_task_state(
                CLUSTER,
                &task,
                json!({"lastStatus": "PROVISIONING", "createdAt": twenty_minutes_ago}),
            )
            .await;
        }
    }

    async fn one_pass(moto: &Moto) -> Arc<Controller<AwsCloud>> {
        let c = Arc::new(Controller::new(
            moto.cloud().await,
            policies(POLICY),
            ControllerSettings::default(),
            AuditSink::memory(),
        ));
        let report = c.pass(&CancellationToken::new()).await;
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.clusters.len(), 1);
        // Every operation the pass sent, writes included, is in the one list.
        for operation in c.cloud().calls().keys() {
            assert!(
                find(operation).is_some(),
                "{operation} is not in operations.rs"
            );
        }
        c
    }

    fn writes_to_groups(c: &Controller<AwsCloud>) -> u64 {
        let calls = c.cloud().calls();
        [
            "SetDesiredCapacity",
            "CreateOrUpdateTags",
            "UpdateAutoScalingGroup",
            "TerminateInstanceInAutoScalingGroup",
        ]
        .iter()
        .map(|op| calls.get(*op).copied().unwrap_or(0))
        .sum()
    }

    #[tokio::test]
    async fn the_adapter_nudges_an_opted_in_group_and_holds_one_without_the_tag() {
        let tagged = Moto::new();
        capacity_short(&tagged, true).await;
        let c = one_pass(&tagged).await;
        let records = c.audit().records();
        let nudged = records
            .iter()
            .find(|r| r.action == "nudgeCapacity" && r.outcome == Outcome::Done);
        assert!(
            nudged.is_some(),
            "control: the tagged group is nudged: {records:?}"
        );
        assert_eq!(c.cloud().calls().get("SetDesiredCapacity"), Some(&1));

        let untagged = Moto::new();
        capacity_short(&untagged, false).await;
        let c = one_pass(&untagged).await;
        assert_eq!(writes_to_groups(&c), 0, "{:?}", c.cloud().calls());
        let records = c.audit().records();
        let held: Vec<_> = records
            .iter()
            .filter(|r| r.outcome == Outcome::Skipped("notManaged"))
            .collect();
        assert_eq!(held.len(), 1, "{records:?}");
        assert_eq!(held[0].action, "nudgeCapacity");
        let desired = untagged
            .autoscaling()
            .describe_auto_scaling_groups()
            .auto_scaling_group_names("lp-asg")
            .send()
            .await
            .unwrap()
            .auto_scaling_groups()[0]
            .desired_capacity();
        assert_eq!(desired, Some(1));
    }
}
