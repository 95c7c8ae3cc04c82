//! The simulated capacity chain on tokio's paused clock: launch templates, Auto Scaling groups
//! converging on desired, registration (or not) of their instances, tasks waiting in
//! PROVISIONING for a slot, the capacity calls and their accounting, and the capacity scenarios
//! (with what their instances boot with, their scaling activities and their service events).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use ecs_reconciler::cloud::sim::capacity::{
    INSTANCE_START, INSTANCE_STOP, LAUNCH_RETRY, VCPU_LIMIT_EXCEEDED,
};
use ecs_reconciler::cloud::sim::{
    GroupSpec, LaunchSpec, ServiceSpec, SimAccount, TemplateVersion, VersionBehavior,
    build_scenario, scenario::SCENARIO_HISTORY,
};
use ecs_reconciler::cloud::{Cloud, ErrorCategory};
use ecs_reconciler::domain::{
    AutoScalingGroup, Capacity, CapacityProviderStrategyItem, ClusterSnapshot, DesiredStatus,
    GroupLaunch, LaunchTemplateVersion, Tags, Task, TaskStatus,
};

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_736_900_000)
}

async fn advance(seconds: u64) {
    tokio::time::advance(Duration::from_secs(seconds)).await;
}

const BOOT: Duration = Duration::from_secs(60);

fn on(provider: &str) -> Capacity {
    Capacity::CapacityProviderStrategy(vec![CapacityProviderStrategyItem {
        capacity_provider: provider.to_string(),
        weight: 1,
        base: 0,
    }])
}

/// Cluster `c` with template `lt` (version 1 good, boot 60 s), group `asg` (min 0, max 10,
/// `desired`, 2 slots, `$Latest`) behind provider `cp`; returns the account and template id.
fn capacity_account(desired: u32) -> (SimAccount, String) {
    let sim = SimAccount::new(start());
    sim.add_cluster("c");
    let lt = sim.add_launch_template("lt", VersionBehavior::good(BOOT));
    sim.add_auto_scaling_group(GroupSpec::new("asg", "c", &lt, desired).with_slots(2));
    sim.add_capacity_provider("c", "cp", Some("asg"));
    (sim, lt)
}

fn group(sim: &SimAccount, name: &str) -> AutoScalingGroup {
    sim.auto_scaling_group(name).expect("group exists")
}

fn lifecycles(g: &AutoScalingGroup) -> Vec<&str> {
    g.instances
        .iter()
        .map(|i| i.lifecycle_state.as_str())
        .collect()
}

fn versions(g: &AutoScalingGroup) -> Vec<Option<u32>> {
    g.instances
        .iter()
        .map(|i| i.launch_template_version)
        .collect()
}

fn in_state(tasks: &[Task], status: TaskStatus) -> Vec<&Task> {
    tasks
        .iter()
        .filter(|t| t.desired_status == DesiredStatus::Running && t.last_status == status)
        .collect()
}

fn app_tasks(sim: &SimAccount, cluster: &str, status: TaskStatus) -> usize {
    sim.count_desired_running(cluster, status)
}

#[tokio::test(start_paused = true)]
async fn group_converges_on_desired_and_instances_report_their_version() {
    let (sim, lt) = capacity_account(0);
    assert!(group(&sim, "asg").instances.is_empty());

    sim.set_desired_capacity("asg", 3).await.unwrap();
    let g = group(&sim, "asg");
    assert_eq!(g.desired_capacity, 3);
    assert_eq!(lifecycles(&g), ["Pending"; 3]);
    assert_eq!(versions(&g), [Some(1); 3]);
    assert!(g.instances.iter().all(|i| i.launched_at == Some(start())));
    assert_eq!(
        g.launch,
        GroupLaunch::LaunchTemplate {
            template_id: lt.clone(),
            template_name: "lt".to_string(),
            version: "$Latest".to_string(),
            resolved_version: Some(1),
        }
    );
    assert!(
        g.arn
            .starts_with("arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:")
            && g.arn.ends_with(":autoScalingGroupName/asg"),
        "{}",
        g.arn
    );
    assert!(lt.starts_with("lt-") && lt.len() == 20, "{lt}");

    tokio::time::advance(INSTANCE_START).await;
    assert_eq!(lifecycles(&group(&sim, "asg")), ["InService"; 3]);
    assert!(sim.container_instances("c").is_empty(), "still booting");
    tokio::time::advance(BOOT).await;
    let registered = sim.container_instances("c");
    assert_eq!(registered.len(), 3);
    let ids: Vec<String> = group(&sim, "asg")
        .instances
        .iter()
        .map(|i| i.instance_id.clone())
        .collect();
    for ci in &registered {
        assert_eq!(ci.status, "ACTIVE");
        assert!(ci.agent_connected);
        assert_eq!(ci.registered_at, Some(start() + INSTANCE_START + BOOT));
        assert!(ids.contains(ci.ec2_instance_id.as_ref().unwrap()));
    }

    // A new latest version: the next launch comes from it, the running ones keep theirs.
    let v2 = sim.publish_launch_template_version(&lt, VersionBehavior::good(BOOT), false);
    assert_eq!(v2, 2);
    sim.set_desired_capacity("asg", 4).await.unwrap();
    assert_eq!(
        versions(&group(&sim, "asg")),
        [Some(1), Some(1), Some(1), Some(2)]
    );
    advance(200).await;
    assert_eq!(sim.container_instances("c").len(), 4);

    // Scale in: the newest go first.
    sim.set_desired_capacity("asg", 2).await.unwrap();
    let g = group(&sim, "asg");
    assert_eq!(
        lifecycles(&g),
        ["InService", "InService", "Terminating", "Terminating"]
    );
    tokio::time::advance(INSTANCE_STOP).await;
    let g = group(&sim, "asg");
    assert_eq!(versions(&g), [Some(1), Some(1)]);
    assert_eq!(sim.container_instances("c").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn broken_version_boots_but_never_registers() {
    let (sim, lt) = capacity_account(0);
    let broken = sim.publish_launch_template_version(&lt, VersionBehavior::broken(), true);
    sim.add_auto_scaling_group(GroupSpec::new("bad", "c", &lt, 2).with_launch(
        LaunchSpec::Template {
            template_id: lt.clone(),
            version: TemplateVersion::Default,
        },
    ));
    advance(2 * 3600).await;
    let g = group(&sim, "bad");
    assert_eq!(lifecycles(&g), ["InService"; 2]);
    assert_eq!(versions(&g), [Some(broken); 2]);
    assert!(sim.container_instances("c").is_empty());
}

#[tokio::test(start_paused = true)]
async fn tasks_wait_in_provisioning_for_a_slot_and_place_when_an_instance_registers() {
    let (sim, _) = capacity_account(0);
    sim.add_service("c", ServiceSpec::new("app", 3).with_capacity(on("cp")));
    // Fargate, and a provider the cluster does not model, are not held back.
    let mut fargate = ServiceSpec::new("api", 1);
    fargate.capacity = Capacity::LaunchType("FARGATE".to_string());
    sim.add_service("c", fargate);
    sim.add_service(
        "c",
        ServiceSpec::new("other", 1).with_capacity(on("elsewhere")),
    );
    advance(600).await;
    let tasks = sim.tasks("c");
    let waiting = in_state(&tasks, TaskStatus::Provisioning);
    assert_eq!(waiting.len(), 3);
    assert!(waiting.iter().all(|t| t.service_name() == Some("app")
        && t.container_instance_arn.is_none()
        && t.timestamps.connectivity_at.is_none()));
    assert_eq!(in_state(&tasks, TaskStatus::Running).len(), 2);

    sim.set_desired_capacity("asg", 2).await.unwrap();
    tokio::time::advance(INSTANCE_START + BOOT - Duration::from_secs(1)).await;
    assert_eq!(app_tasks(&sim, "c", TaskStatus::Provisioning), 3);
    advance(30).await;
    assert_eq!(app_tasks(&sim, "c", TaskStatus::Running), 5);
    let instances: Vec<String> = sim
        .container_instances("c")
        .into_iter()
        .map(|i| i.arn)
        .collect();
    let app: Vec<Task> = sim
        .tasks("c")
        .into_iter()
        .filter(|t| t.service_name() == Some("app"))
        .collect();
    let mut per_instance: BTreeMap<String, usize> = BTreeMap::new();
    for t in &app {
        let arn = t.container_instance_arn.clone().expect("placed");
        assert!(instances.contains(&arn));
        *per_instance.entry(arn).or_default() += 1;
    }
    let mut spread: Vec<usize> = per_instance.values().copied().collect();
    spread.sort_unstable();
    assert_eq!(spread, [1, 2]);

    // 4 slots: a fifth task waits; a stopped task frees its slot once STOPPED.
    sim.set_desired_count("c", "app", 5);
    advance(30).await;
    assert_eq!(app_tasks(&sim, "c", TaskStatus::Provisioning), 1);
    let waiting = in_state(&sim.tasks("c"), TaskStatus::Provisioning)[0]
        .arn
        .clone();
    let victim = app[0].arn.clone();
    sim.stop_task("c", &victim, "make room").await.unwrap();
    advance(60).await;
    assert_eq!(sim.task(&victim).unwrap().last_status, TaskStatus::Stopped);
    assert_eq!(sim.task(&waiting).unwrap().last_status, TaskStatus::Running);
    assert_eq!(sim.service("c", "app").unwrap().running_count, 4);
    assert_eq!(
        app_tasks(&sim, "c", TaskStatus::Provisioning),
        1,
        "the replacement waits"
    );
}

#[tokio::test(start_paused = true)]
async fn drained_or_disconnected_instances_take_no_new_tasks() {
    let (sim, _) = capacity_account(2);
    advance(120).await;
    let instances = sim.container_instances("c");
    assert_eq!(instances.len(), 2);
    sim.drain_container_instance("c", &instances[0].arn)
        .await
        .unwrap();
    sim.set_agent_connected("c", &instances[1].arn, false);
    sim.add_service("c", ServiceSpec::new("app", 2).with_capacity(on("cp")));
    advance(600).await;
    assert_eq!(app_tasks(&sim, "c", TaskStatus::Provisioning), 2);
    let snapshot = sim.observe_cluster("c").await.unwrap();
    assert_eq!(snapshot.container_instances[0].status, "DRAINING");

    sim.set_agent_connected("c", &instances[1].arn, true);
    advance(30).await;
    assert_eq!(app_tasks(&sim, "c", TaskStatus::Running), 2);
    assert!(
        sim.tasks("c")
            .iter()
            .all(|t| t.container_instance_arn.as_deref() == Some(instances[1].arn.as_str()))
    );
    let err = sim
        .drain_container_instance(
            "c",
            "arn:aws:ecs:us-east-1:123456789012:container-instance/c/x",
        )
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
    let err = sim
        .drain_container_instance("nope", &instances[1].arn)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
}

#[tokio::test(start_paused = true)]
async fn pin_and_terminate_replace_from_the_pinned_version() {
    let (sim, lt) = capacity_account(0);
    sim.publish_launch_template_version(&lt, VersionBehavior::broken(), false);
    sim.set_desired_capacity("asg", 2).await.unwrap();
    sim.add_service("c", ServiceSpec::new("app", 4).with_capacity(on("cp")));
    advance(600).await;
    assert!(sim.container_instances("c").is_empty());
    let broken: Vec<String> = group(&sim, "asg")
        .instances
        .iter()
        .map(|i| i.instance_id.clone())
        .collect();

    sim.pin_launch_template_version("asg", &lt, 1)
        .await
        .unwrap();
    let g = group(&sim, "asg");
    assert_eq!(
        g.launch,
        GroupLaunch::LaunchTemplate {
            template_id: lt.clone(),
            template_name: "lt".to_string(),
            version: "1".to_string(),
            resolved_version: Some(1),
        }
    );
    assert_eq!(versions(&g), [Some(2); 2], "pinning replaces nothing");

    for id in &broken {
        sim.terminate_instance(id).await.unwrap();
    }
    sim.terminate_instance(&broken[0]).await.unwrap();
    let g = group(&sim, "asg");
    assert_eq!(g.desired_capacity, 2, "desired is never decremented");
    assert_eq!(
        lifecycles(&g),
        ["Terminating", "Terminating", "Pending", "Pending"]
    );
    assert_eq!(versions(&g)[2..], [Some(1); 2]);
    tokio::time::advance(INSTANCE_STOP).await;
    assert_eq!(group(&sim, "asg").instances.len(), 2);
    tokio::time::advance(BOOT + Duration::from_secs(30)).await;
    assert_eq!(sim.container_instances("c").len(), 2);
    assert_eq!(app_tasks(&sim, "c", TaskStatus::Running), 4);

    // Terminating a registered instance deregisters it and stops its tasks.
    let victim = group(&sim, "asg").instances[0].instance_id.clone();
    sim.terminate_instance(&victim).await.unwrap();
    tokio::time::advance(INSTANCE_STOP).await;
    assert!(
        sim.container_instances("c")
            .iter()
            .all(|i| i.ec2_instance_id.as_deref() != Some(victim.as_str()))
    );
    let reason = format!("Host EC2 (instance {victim}) terminated.");
    let stopped: Vec<Task> = sim
        .tasks("c")
        .into_iter()
        .filter(|t| t.stopped_reason.as_deref() == Some(reason.as_str()))
        .collect();
    assert_eq!(stopped.len(), 2);
    assert!(stopped.iter().all(|t| t.last_status == TaskStatus::Stopped));
    advance(300).await;
    assert_eq!(app_tasks(&sim, "c", TaskStatus::Running), 4, "all back");
}

#[tokio::test(start_paused = true)]
async fn capacity_calls_refuse_what_aws_refuses() {
    let (sim, lt) = capacity_account(1);
    let other = sim.add_launch_template("other", VersionBehavior::default());
    sim.add_auto_scaling_group(GroupSpec::new("bounded", "c", &lt, 2).with_bounds(1, 3));

    for desired in [0, 4] {
        let err = sim
            .set_desired_capacity("bounded", desired)
            .await
            .unwrap_err();
        assert_eq!(err.category, ErrorCategory::Invalid, "{err}");
        assert_eq!(err.operation, "SetDesiredCapacity");
        assert!(err.message.starts_with("ValidationError"), "{err}");
    }
    assert_eq!(group(&sim, "bounded").desired_capacity, 2);
    sim.set_desired_capacity("bounded", 3).await.unwrap();

    let err = sim.set_desired_capacity("nope", 1).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
    let err = sim
        .pin_launch_template_version("nope", &lt, 1)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
    let err = sim
        .pin_launch_template_version("asg", &other, 1)
        .await
        .unwrap_err();
    assert_eq!(
        err.category,
        ErrorCategory::Invalid,
        "not the group's template"
    );
    let err = sim
        .pin_launch_template_version("asg", &lt, 7)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::Invalid, "no such version");
    let err = sim
        .terminate_instance("i-0000000000000000f")
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
    let tags = Tags::from([("k".to_string(), "v".to_string())]);
    let err = sim.tag_group("nope", &tags).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
    // No tags, as on AWS through the adapter: nothing sent, nothing refused.
    sim.tag_group("nope", &Tags::new()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn tags_are_upserted_and_show_in_the_snapshot() {
    let (sim, _) = capacity_account(1);
    let first = Tags::from([
        ("ecs-reconciler/cordon".to_string(), "2".to_string()),
        ("team".to_string(), "a".to_string()),
    ]);
    sim.tag_group("asg", &first).await.unwrap();
    let second = Tags::from([("team".to_string(), "b".to_string())]);
    sim.tag_group("asg", &second).await.unwrap();
    let snapshot = sim.observe_cluster("c").await.unwrap();
    let tags = &snapshot.auto_scaling_groups[0].tags;
    assert_eq!(
        tags.get("ecs-reconciler/cordon").map(|v| v.as_str()),
        Some("2")
    );
    assert_eq!(tags.get("team").map(|v| v.as_str()), Some("b"));
    assert_eq!(tags.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn other_launch_kinds_and_deleted_groups_are_observable() {
    let (sim, lt) = capacity_account(0);
    sim.add_auto_scaling_group(GroupSpec::new("mixed", "c", &lt, 1).with_launch(
        LaunchSpec::MixedInstancesPolicy {
            template_id: Some(lt.clone()),
        },
    ));
    sim.add_auto_scaling_group(GroupSpec::new("legacy", "c", &lt, 1).with_launch(
        LaunchSpec::LaunchConfiguration {
            name: "legacy-lc".to_string(),
        },
    ));
    sim.add_auto_scaling_group(GroupSpec::new("doomed", "c", &lt, 1));
    sim.add_capacity_provider("c", "mixed-cp", Some("mixed"));
    sim.add_capacity_provider("c", "legacy-cp", Some("legacy"));
    sim.add_capacity_provider("c", "doomed-cp", Some("doomed"));
    sim.add_capacity_provider("c", "FARGATE", None);
    advance(120).await;
    assert_eq!(
        sim.container_instances("c").len(),
        3,
        "mixed, legacy, doomed"
    );
    let doomed_arn = group(&sim, "doomed").arn;
    sim.delete_auto_scaling_group("doomed");
    assert_eq!(sim.container_instances("c").len(), 2);

    sim.reset_calls();
    let snapshot = sim.observe_cluster("c").await.unwrap();
    assert!(snapshot.is_complete());
    let providers: Vec<(&str, Option<&str>)> = snapshot
        .capacity_providers
        .iter()
        .map(|p| (p.name.as_str(), p.auto_scaling_group_arn.as_deref()))
        .collect();
    assert_eq!(providers.len(), 5);
    assert_eq!(providers[3], ("doomed-cp", Some(doomed_arn.as_str())));
    assert_eq!(providers[4], ("FARGATE", None));
    assert!(
        snapshot
            .capacity_providers
            .iter()
            .all(|p| !p.managed_scaling)
    );
    let names: Vec<&str> = snapshot
        .auto_scaling_groups
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(names, ["asg", "mixed", "legacy"], "no group for doomed-cp");
    let mixed = &snapshot.auto_scaling_groups[1];
    assert_eq!(
        mixed.launch,
        GroupLaunch::MixedInstancesPolicy {
            template_id: Some(lt.clone())
        }
    );
    assert_eq!(versions(mixed), [Some(1)]);
    let legacy = &snapshot.auto_scaling_groups[2];
    assert_eq!(
        legacy.launch,
        GroupLaunch::LaunchConfiguration {
            name: "legacy-lc".to_string()
        }
    );
    assert_eq!(versions(legacy), [None]);
    assert_eq!(sim.call_count("DescribeAutoScalingGroups"), 1, "4 names");

    for group in ["mixed", "legacy"] {
        let err = sim
            .pin_launch_template_version(group, &lt, 1)
            .await
            .unwrap_err();
        assert_eq!(err.category, ErrorCategory::Invalid, "{group}");
    }
    let err = sim.set_desired_capacity("doomed", 1).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
}

#[tokio::test(start_paused = true)]
async fn capacity_calls_are_counted_and_can_fail() {
    let sim = SimAccount::new(start());
    sim.add_cluster("plain");
    sim.observe_cluster("plain").await.unwrap();
    let calls = sim.calls();
    assert!(!calls.contains_key("DescribeCapacityProviders"));
    assert!(!calls.contains_key("DescribeAutoScalingGroups"));

    sim.add_cluster("c");
    let lt = sim.add_launch_template("lt", VersionBehavior::default());
    for i in 0..51 {
        let name = format!("asg-{i:02}");
        sim.add_auto_scaling_group(GroupSpec::new(&name, "c", &lt, 0));
        sim.add_capacity_provider("c", &format!("cp-{i:02}"), Some(&name));
    }
    sim.reset_calls();
    let snapshot = sim.observe_cluster("c").await.unwrap();
    assert_eq!(snapshot.auto_scaling_groups.len(), 51);
    let calls = sim.calls();
    assert_eq!(calls["DescribeCapacityProviders"], 6, "10 a call");
    assert_eq!(calls["DescribeAutoScalingGroups"], 1, "100 names a call");
    assert_eq!(calls["DescribeLaunchTemplates"], 1);
    assert_eq!(sim.mutating_calls(), 0);

    sim.reset_calls();
    sim.set_desired_capacity("asg-00", 1).await.unwrap();
    sim.pin_launch_template_version("asg-00", &lt, 1)
        .await
        .unwrap();
    sim.tag_group("asg-00", &Tags::from([("k".to_string(), "v".to_string())]))
        .await
        .unwrap();
    let instance = group(&sim, "asg-00").instances[0].instance_id.clone();
    advance(120).await;
    let ci = sim.container_instances("c")[0].arn.clone();
    sim.drain_container_instance("c", &ci).await.unwrap();
    sim.terminate_instance(&instance).await.unwrap();
    for op in [
        "SetDesiredCapacity",
        "UpdateAutoScalingGroup",
        "CreateOrUpdateTags",
        "UpdateContainerInstancesState",
        "TerminateInstanceInAutoScalingGroup",
    ] {
        assert_eq!(sim.call_count(op), 1, "{op}");
    }
    assert_eq!(sim.mutating_calls(), 5);

    // Faults: no effect.
    sim.fail_next("SetDesiredCapacity", ErrorCategory::Throttled, 1);
    let err = sim.set_desired_capacity("asg-01", 2).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Throttled);
    assert_eq!(group(&sim, "asg-01").desired_capacity, 0);
    sim.deny("TerminateInstanceInAutoScalingGroup");
    let replacement = group(&sim, "asg-00")
        .instances
        .iter()
        .find(|i| i.lifecycle_state != "Terminating")
        .map(|i| i.instance_id.clone())
        .unwrap();
    let err = sim.terminate_instance(&replacement).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Denied);
    assert!(
        group(&sim, "asg-00")
            .instances
            .iter()
            .any(|i| i.instance_id == replacement && i.lifecycle_state != "Terminating")
    );
    sim.fail_next("CreateOrUpdateTags", ErrorCategory::Transient, 1);
    let tags = Tags::from([("k".to_string(), "w".to_string())]);
    assert!(sim.tag_group("asg-00", &tags).await.is_err());
    assert_eq!(group(&sim, "asg-00").tags["k"], "v");
    sim.deny("UpdateAutoScalingGroup");
    assert!(
        sim.pin_launch_template_version("asg-01", &lt, 1)
            .await
            .is_err()
    );
    assert_eq!(
        group(&sim, "asg-01").launch,
        GroupLaunch::LaunchTemplate {
            template_id: lt.clone(),
            template_name: "lt".to_string(),
            version: "$Latest".to_string(),
            resolved_version: Some(1),
        }
    );
    sim.fail_next("UpdateContainerInstancesState", ErrorCategory::Throttled, 1);
    let other_ci = sim.container_instances("c").last().unwrap().arn.clone();
    assert!(sim.drain_container_instance("c", &other_ci).await.is_err());

    // A failing capacity read leaves a gap, not a failed observation.
    sim.fail_next("DescribeAutoScalingGroups", ErrorCategory::Throttled, 1);
    let snapshot = sim.observe_cluster("c").await.unwrap();
    assert!(!snapshot.is_complete());
    assert!(
        snapshot.gaps[0].starts_with("51 Auto Scaling groups not described: "),
        "{:?}",
        snapshot.gaps
    );
    assert!(snapshot.auto_scaling_groups.is_empty());
    assert_eq!(snapshot.capacity_providers.len(), 51);
    sim.fail_next("DescribeLaunchTemplates", ErrorCategory::Transient, 1);
    let snapshot = sim.observe_cluster("c").await.unwrap();
    assert!(
        snapshot.gaps[0].starts_with("launch template versions of 1 templates not resolved: "),
        "{:?}",
        snapshot.gaps
    );
    assert!(matches!(
        snapshot.auto_scaling_groups[1].launch,
        GroupLaunch::LaunchTemplate {
            resolved_version: None,
            ..
        }
    ));
    sim.deny("DescribeCapacityProviders");
    let snapshot = sim.observe_cluster("c").await.unwrap();
    assert!(snapshot.capacity_providers.is_empty() && snapshot.auto_scaling_groups.is_empty());
    assert!(snapshot.gaps[0].starts_with("10 capacity providers not described: "));
}

// ---- scenarios ----

fn snapshot_group(snapshot: &ClusterSnapshot) -> &AutoScalingGroup {
    assert_eq!(snapshot.auto_scaling_groups.len(), 1);
    &snapshot.auto_scaling_groups[0]
}

async fn scenario(name: &str) -> (SimAccount, ClusterSnapshot) {
    let (sim, scenario) = build_scenario(name, start()).expect("scenario exists");
    assert_eq!(scenario.clusters, ["demo-capacity"]);
    let snapshot = sim.observe_cluster("demo-capacity").await.unwrap();
    assert!(snapshot.is_complete());
    assert_eq!(snapshot.capacity_providers.len(), 1);
    assert_eq!(snapshot.capacity_providers[0].name, "demo-cp");
    assert_eq!(
        snapshot.capacity_providers[0]
            .auto_scaling_group_arn
            .as_deref(),
        Some(snapshot_group(&snapshot).arn.as_str())
    );
    (sim, snapshot)
}

fn count(snapshot: &ClusterSnapshot, status: TaskStatus) -> usize {
    in_state(&snapshot.tasks, status).len()
}

#[tokio::test(start_paused = true)]
async fn broken_launch_template_shows_the_seed_story_and_never_recovers_alone() {
    let (sim, snapshot) = scenario("broken-launch-template").await;
    let g = snapshot_group(&snapshot);
    assert_eq!((g.min_size, g.max_size, g.desired_capacity), (0, 10, 3));
    let GroupLaunch::LaunchTemplate {
        template_id,
        template_name,
        version,
        resolved_version,
    } = &g.launch
    else {
        panic!("{:?}", g.launch)
    };
    assert_eq!(
        (template_name.as_str(), version.as_str(), *resolved_version),
        ("demo-lt", "$Latest", Some(2))
    );
    assert_eq!(versions(g), [Some(1), Some(2), Some(2)]);
    assert_eq!(lifecycles(g), ["InService"; 3]);
    let v2_launched = start() - SCENARIO_HISTORY - Duration::from_secs(60);
    assert!(
        g.instances[1..]
            .iter()
            .all(|i| i.launched_at == Some(v2_launched))
    );
    assert_eq!(snapshot.container_instances.len(), 1);
    assert_eq!(
        snapshot.container_instances[0].ec2_instance_id.as_deref(),
        Some(g.instances[0].instance_id.as_str())
    );
    assert_eq!(count(&snapshot, TaskStatus::Running), 2);
    let stuck = in_state(&snapshot.tasks, TaskStatus::Provisioning);
    assert_eq!(stuck.len(), 4);
    assert!(
        stuck
            .iter()
            .all(|t| t.timestamps.created_at == Some(start() - SCENARIO_HISTORY))
    );
    let broken: Vec<String> = g.instances[1..]
        .iter()
        .map(|i| i.instance_id.clone())
        .collect();
    let template_id = template_id.clone();

    // Alone: nothing changes in two hours.
    advance(2 * 3600).await;
    let later = sim.observe_cluster("demo-capacity").await.unwrap();
    assert_eq!(count(&later, TaskStatus::Provisioning), 4);
    assert_eq!(count(&later, TaskStatus::Running), 2);
    assert_eq!(later.container_instances.len(), 1);

    // By hand: pin version 1, terminate the version-2 instances.
    sim.pin_launch_template_version("demo-asg", &template_id, 1)
        .await
        .unwrap();
    for id in &broken {
        sim.terminate_instance(id).await.unwrap();
    }
    advance(150).await;
    let fixed = sim.observe_cluster("demo-capacity").await.unwrap();
    assert_eq!(count(&fixed, TaskStatus::Running), 6);
    assert_eq!(fixed.container_instances.len(), 3);
    assert_eq!(versions(snapshot_group(&fixed)), [Some(1); 3]);
}

#[tokio::test(start_paused = true)]
async fn capacity_short_waits_until_desired_is_raised() {
    let (sim, snapshot) = scenario("capacity-short").await;
    let g = snapshot_group(&snapshot);
    assert_eq!((g.desired_capacity, g.max_size), (1, 10));
    assert_eq!(snapshot.container_instances.len(), 1);
    assert_eq!(count(&snapshot, TaskStatus::Running), 2);
    assert_eq!(count(&snapshot, TaskStatus::Provisioning), 4);
    advance(3600).await;
    assert_eq!(
        app_tasks(&sim, "demo-capacity", TaskStatus::Provisioning),
        4
    );
    sim.set_desired_capacity("demo-asg", 3).await.unwrap();
    advance(150).await;
    assert_eq!(app_tasks(&sim, "demo-capacity", TaskStatus::Running), 6);
}

#[tokio::test(start_paused = true)]
async fn capacity_exhausted_is_at_its_maximum() {
    let (sim, snapshot) = scenario("capacity-exhausted").await;
    let g = snapshot_group(&snapshot);
    assert_eq!((g.desired_capacity, g.max_size), (2, 2));
    assert_eq!(snapshot.container_instances.len(), 2);
    assert_eq!(count(&snapshot, TaskStatus::Running), 4);
    assert_eq!(count(&snapshot, TaskStatus::Provisioning), 2);
    let err = sim.set_desired_capacity("demo-asg", 3).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Invalid);
}

#[tokio::test(start_paused = true)]
async fn healthy_rollout_places_its_tasks_once_the_new_instances_register() {
    let (sim, snapshot) = scenario("healthy-rollout").await;
    let g = snapshot_group(&snapshot);
    assert_eq!(g.desired_capacity, 3);
    assert_eq!(versions(g), [Some(1), Some(2), Some(2)]);
    assert_eq!(lifecycles(g), ["InService"; 3]);
    let rolled = start() - Duration::from_secs(120);
    assert!(
        g.instances[1..]
            .iter()
            .all(|i| i.launched_at == Some(rolled))
    );
    assert!(matches!(
        g.launch,
        GroupLaunch::LaunchTemplate {
            resolved_version: Some(2),
            ..
        }
    ));
    assert_eq!(snapshot.container_instances.len(), 1);
    let waiting = in_state(&snapshot.tasks, TaskStatus::Provisioning);
    assert_eq!(waiting.len(), 4);
    assert!(
        waiting
            .iter()
            .all(|t| t.timestamps.created_at == Some(rolled))
    );
    assert_eq!(count(&snapshot, TaskStatus::Running), 2);

    advance(89).await;
    assert_eq!(
        app_tasks(&sim, "demo-capacity", TaskStatus::Provisioning),
        4
    );
    advance(30).await;
    assert_eq!(app_tasks(&sim, "demo-capacity", TaskStatus::Running), 6);
    assert_eq!(sim.container_instances("demo-capacity").len(), 3);
}

#[tokio::test(start_paused = true)]
async fn agent_disconnected_strands_a_task_in_stopping() {
    let (sim, snapshot) = scenario("agent-disconnected").await;
    let instances = &snapshot.container_instances;
    assert_eq!(instances.len(), 2);
    assert!(instances[0].agent_connected && !instances[1].agent_connected);
    let hanging: Vec<&Task> = snapshot
        .tasks
        .iter()
        .filter(|t| t.last_status == TaskStatus::Stopping)
        .collect();
    assert_eq!(hanging.len(), 1);
    let task = hanging[0];
    assert_eq!(task.service_name(), Some("app"));
    assert_eq!(task.desired_status, DesiredStatus::Stopped);
    assert_eq!(
        task.container_instance_arn.as_deref(),
        Some(instances[1].arn.as_str())
    );
    let stopping_at = task.timestamps.stopping_at.unwrap();
    assert_eq!(
        stopping_at,
        start() - SCENARIO_HISTORY + Duration::from_secs(120)
    );
    assert_eq!(count(&snapshot, TaskStatus::Running), 4);
    assert_eq!(snapshot.service("app").unwrap().running_count, 4);
    advance(3600).await;
    assert_eq!(
        sim.task(&task.arn).unwrap().last_status,
        TaskStatus::Stopping
    );
}

fn decoded_user_data(v: &LaunchTemplateVersion) -> String {
    let text = v.user_data.as_deref().expect("the version has UserData");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("UserData is base64");
    String::from_utf8(bytes).expect("a UTF-8 script")
}

async fn boot_text(sim: &SimAccount, instance: &str) -> String {
    let bytes = sim.console_output(instance).await.unwrap();
    String::from_utf8_lossy(&bytes.expect("boot output available")).into_owned()
}

#[tokio::test(start_paused = true)]
async fn broken_launch_template_instances_boot_into_the_fsx_mount_timeout() {
    let (sim, snapshot) = scenario("broken-launch-template").await;
    let g = snapshot_group(&snapshot);
    let GroupLaunch::LaunchTemplate { template_id, .. } = &g.launch else {
        panic!("{:?}", g.launch)
    };
    let v2 = sim.launch_template_version(template_id, 2).await.unwrap();
    let script = decoded_user_data(&v2);
    assert!(script.contains("ECS_CLUSTER=demo-capacity"), "{script}");
    let mount = script
        .lines()
        .find(|l| l.starts_with("mount -t lustre"))
        .expect("a Lustre mount");
    assert!(
        mount.ends_with("fs-0a1b2c3d4e5f67890.fsx.us-east-1.amazonaws.com@tcp:/abcdefgh /fsx"),
        "{mount}"
    );
    assert!(v2.instance_profile.is_some());
    let v1 = sim.launch_template_version(template_id, 1).await.unwrap();
    assert!(!decoded_user_data(&v1).contains("mount"));

    let failed_mount = "mount.lustre: mount fs-0a1b2c3d4e5f67890.fsx.us-east-1.amazonaws.com\
                        @tcp:/abcdefgh at /fsx failed: Connection timed out";
    let script_failed = "cc_scripts_user.py[WARNING]: Failed to run module scripts-user \
                         (scripts in /var/lib/cloud/instance/scripts)";
    for i in &g.instances[1..] {
        let text = boot_text(&sim, &i.instance_id).await;
        assert!(text.lines().any(|l| l.ends_with(failed_mount)), "{text}");
        assert!(text.lines().any(|l| l.ends_with(script_failed)), "{text}");
        assert!(!text.contains("Started ecs.service"), "{text}");
    }
    let good = boot_text(&sim, &g.instances[0].instance_id).await;
    assert!(good.contains("Started ecs.service") && !good.contains("failed"));
    let activities = sim.scaling_activities("demo-asg").await.unwrap();
    let codes: Vec<&str> = activities.iter().map(|a| a.status_code.as_str()).collect();
    assert_eq!(codes, ["Successful"; 3]);
}

#[tokio::test(start_paused = true)]
async fn task_too_large_never_places_and_its_service_says_why() {
    let (sim, snapshot) = scenario("task-too-large").await;
    let g = snapshot_group(&snapshot);
    assert_eq!(snapshot.container_instances.len(), 2);
    let instance_type = g.instances[0].instance_type.clone().expect("a type");
    assert!(
        g.instances
            .iter()
            .all(|i| i.instance_type.as_deref() == Some(&instance_type))
    );
    let size = sim.instance_type(&instance_type).await.unwrap();
    let waiting = in_state(&snapshot.tasks, TaskStatus::Provisioning);
    assert_eq!(waiting.len(), 2);
    assert!(waiting.iter().all(|t| {
        t.memory.is_some_and(|m| u64::from(m) > size.memory_mib)
            && t.timestamps.created_at == Some(start() - SCENARIO_HISTORY)
    }));
    let app = snapshot.service("app").unwrap();
    assert_eq!((app.running_count, app.pending_count), (0, 2));
    let newest = &app.events.first().expect("a service event").message;
    assert!(
        newest.starts_with("(service app) was unable to place a task because no container instance met all of its requirements."),
        "{newest}"
    );
    assert!(
        newest.contains("has insufficient memory available"),
        "{newest}"
    );

    advance(3600).await;
    assert_eq!(
        app_tasks(&sim, "demo-capacity", TaskStatus::Provisioning),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn launch_failing_records_failed_launches_and_stays_short() {
    let (sim, snapshot) = scenario("launch-failing").await;
    let g = snapshot_group(&snapshot);
    assert_eq!((g.desired_capacity, g.instances.len()), (3, 1));
    assert_eq!(snapshot.container_instances.len(), 1);
    assert_eq!(count(&snapshot, TaskStatus::Running), 2);
    assert_eq!(count(&snapshot, TaskStatus::Provisioning), 4);
    let activities = sim.scaling_activities("demo-asg").await.unwrap();
    assert_eq!(activities[0].status_code, "Failed");
    assert_eq!(
        activities[0].status_message.as_deref(),
        Some(VCPU_LIMIT_EXCEEDED)
    );
    assert!(activities[0].start_time > Some(start() - LAUNCH_RETRY));
    let failed = activities
        .iter()
        .filter(|a| a.status_code == "Failed")
        .count();
    assert!(failed >= 2, "{activities:#?}");
    assert_eq!(activities.last().unwrap().status_code, "Successful");

    advance(3600).await;
    assert_eq!(
        sim.auto_scaling_group("demo-asg").unwrap().instances.len(),
        1
    );
    assert_eq!(
        app_tasks(&sim, "demo-capacity", TaskStatus::Provisioning),
        4
    );
}
