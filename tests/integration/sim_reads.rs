//! The simulated account's root-cause reads on tokio's paused clock: what a launch template
//! version boots with, the console output its instances write (and when EC2 has it), the
//! groups' scaling activities and failing launches, instance types, tasks too large for their
//! instances and the service events that say so, and the stop codes of stopped tasks.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use ecs_reconciler::cloud::budget::{ApiBudget, Category, PacingSettings};
use ecs_reconciler::cloud::sim::capacity::{
    CONSOLE_OUTPUT_DELAY, DEFAULT_INSTANCE_PROFILE, INSTANCE_START, LAUNCH_RETRY,
    VCPU_LIMIT_EXCEEDED,
};
use ecs_reconciler::cloud::sim::{
    GroupSpec, ServiceSpec, SimAccount, TaskBehavior, VersionBehavior, VersionSpec, boot,
};
use ecs_reconciler::cloud::{Cloud, CloudError, ErrorCategory};
use ecs_reconciler::domain::{
    Capacity, CapacityProviderStrategyItem, DesiredStatus, ScalingActivity, TaskStatus,
};

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_736_900_000)
}

async fn advance(d: Duration) {
    tokio::time::advance(d).await;
}

const BOOT: Duration = Duration::from_secs(60);

fn on(provider: &str) -> Capacity {
    Capacity::CapacityProviderStrategy(vec![CapacityProviderStrategyItem {
        capacity_provider: provider.to_string(),
        weight: 1,
        base: 0,
    }])
}

/// Cluster `c`, template `lt` with version 1 `first`, group `asg` (`desired`, 2 slots) behind
/// provider `cp`; returns the account and the template id.
fn account(first: impl Into<VersionSpec>, desired: u32) -> (SimAccount, String) {
    let sim = SimAccount::new(start());
    sim.add_cluster("c");
    let lt = sim.add_launch_template("lt", first);
    sim.add_auto_scaling_group(GroupSpec::new("asg", "c", &lt, desired).with_slots(2));
    sim.add_capacity_provider("c", "cp", Some("asg"));
    (sim, lt)
}

fn instance_ids(sim: &SimAccount) -> Vec<String> {
    let g = sim.auto_scaling_group("asg").expect("group exists");
    g.instances.into_iter().map(|i| i.instance_id).collect()
}

fn decode(user_data: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(user_data)
        .expect("base64");
    String::from_utf8(bytes).expect("UTF-8 script")
}

fn category_of(result: Result<impl std::fmt::Debug, CloudError>) -> ErrorCategory {
    result.expect_err("the call fails").category
}

// ---- what a version boots with ----

#[tokio::test(start_paused = true)]
async fn a_good_version_joins_its_groups_cluster_and_boots_cleanly() {
    let (sim, lt) = account(VersionBehavior::good(BOOT), 1);
    let v = sim.launch_template_version(&lt, 1).await.unwrap();
    let script = decode(v.user_data.as_deref().expect("UserData"));
    assert!(script.starts_with("#!/bin/bash\n"), "{script}");
    assert!(script.contains("/etc/ecs/ecs.config"), "{script}");
    assert!(script.lines().any(|l| l == "ECS_CLUSTER=c"), "{script}");
    assert_eq!(
        v.instance_profile.as_deref(),
        Some(DEFAULT_INSTANCE_PROFILE)
    );
    assert_eq!(v.instance_type.as_deref(), Some("m5.large"));
    assert!(v.image_id.is_some_and(|i| i.starts_with("ami-")));

    let g = sim.auto_scaling_group("asg").unwrap();
    assert_eq!(g.instances[0].instance_type.as_deref(), Some("m5.large"));
    advance(CONSOLE_OUTPUT_DELAY).await;
    let output = sim.console_output(&instance_ids(&sim)[0]).await.unwrap();
    let text = String::from_utf8(output.expect("output available")).unwrap();
    let last_lines: Vec<&str> = text.lines().rev().take(8).collect();
    assert!(
        last_lines.iter().any(|l| l.contains("Started ecs.service")),
        "{text}"
    );
    assert!(
        !text.contains("FAILED") && !text.contains("WARNING"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_version_reports_exactly_what_it_was_given() {
    let script = "#!/bin/bash\necho ECS_CLUSTER=elsewhere >> /etc/ecs/ecs.config\n";
    let output: &[u8] = b"cloud-init: \xff\xfe not UTF-8\nmount error(110): Connection tim";
    let spec = VersionSpec::new(VersionBehavior::broken())
        .with_user_data_script(script)
        .with_instance_profile(None)
        .with_instance_type("c5.xlarge")
        .with_boot_output(output);
    let (sim, lt) = account(VersionBehavior::good(BOOT), 0);
    let v2 = sim.publish_launch_template_version(&lt, spec, true);
    sim.publish_launch_template_version(&lt, VersionSpec::default().without_user_data(), false);
    let raw = "H4sIAAAAAAAA/not-valid-base64!";
    sim.publish_launch_template_version(
        &lt,
        VersionSpec::default().with_user_data_base64(raw),
        false,
    );

    let v = sim.launch_template_version(&lt, v2).await.unwrap();
    assert_eq!(decode(v.user_data.as_deref().unwrap()), script);
    assert_eq!((v.template_id.as_str(), v.version), (lt.as_str(), v2));
    assert_eq!(v.instance_profile, None);
    assert_eq!(v.instance_type.as_deref(), Some("c5.xlarge"));
    let v3 = sim.launch_template_version(&lt, 3).await.unwrap();
    assert_eq!(v3.user_data, None);
    let v4 = sim.launch_template_version(&lt, 4).await.unwrap();
    assert_eq!(v4.user_data.as_deref(), Some(raw));

    // Version 2 is the default and $Latest is 4: pin 2 so the group launches from it.
    sim.pin_launch_template_version("asg", &lt, v2)
        .await
        .unwrap();
    sim.set_desired_capacity("asg", 1).await.unwrap();
    let id = instance_ids(&sim).remove(0);
    let g = sim.auto_scaling_group("asg").unwrap();
    assert_eq!(g.instances[0].instance_type.as_deref(), Some("c5.xlarge"));
    assert_eq!(sim.console_output(&id).await.unwrap(), None);
    advance(CONSOLE_OUTPUT_DELAY - Duration::from_secs(1)).await;
    assert_eq!(sim.console_output(&id).await.unwrap(), None);
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        sim.console_output(&id).await.unwrap(),
        Some(output.to_vec())
    );
}

#[tokio::test(start_paused = true)]
async fn console_output_is_the_latest_64_kib() {
    let long: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (sim, _) = account(VersionSpec::default().with_boot_output(long.clone()), 1);
    advance(CONSOLE_OUTPUT_DELAY).await;
    let output = sim
        .console_output(&instance_ids(&sim)[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.len(), 64 * 1024);
    assert!(long.ends_with(&output));
}

#[tokio::test(start_paused = true)]
async fn standard_user_data_follows_the_group_that_launches_from_the_template() {
    let sim = SimAccount::new(start());
    sim.add_cluster("c");
    let lt = sim.add_launch_template("lt", VersionBehavior::default());
    let alone = sim.launch_template_version(&lt, 1).await.unwrap();
    let script = decode(alone.user_data.as_deref().unwrap());
    // No group joins a cluster through it: the agent would join `default`.
    assert!(!script.contains("ECS_CLUSTER"), "{script}");
    sim.add_auto_scaling_group(GroupSpec::new("asg", "c", &lt, 0));
    let joined = sim.launch_template_version(&lt, 1).await.unwrap();
    assert!(decode(joined.user_data.as_deref().unwrap()).contains("ECS_CLUSTER=c\n"));
}

// ---- scaling activities ----

fn codes(activities: &[ScalingActivity]) -> Vec<&str> {
    activities.iter().map(|a| a.status_code.as_str()).collect()
}

fn assert_newest_first(activities: &[ScalingActivity]) {
    let times: Vec<SystemTime> = activities.iter().map(|a| a.start_time.unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{activities:#?}");
}

#[tokio::test(start_paused = true)]
async fn every_launch_is_a_successful_activity_newest_first() {
    let (sim, _) = account(VersionBehavior::good(BOOT), 1);
    advance(Duration::from_secs(10)).await;
    sim.set_desired_capacity("asg", 3).await.unwrap();
    let activities = sim.scaling_activities("asg").await.unwrap();
    assert_eq!(codes(&activities), ["Successful"; 3]);
    assert_newest_first(&activities);
    assert!(activities[0].start_time > activities[2].start_time);
    let ids = instance_ids(&sim);
    let oldest = activities[2].description.as_deref().unwrap();
    assert_eq!(oldest, format!("Launching a new EC2 instance: {}", ids[0]));
    let newest_cause = activities[0].cause.as_deref().unwrap();
    assert!(
        newest_cause.contains("increasing the capacity from 2 to 3"),
        "{newest_cause}"
    );
    let ids_seen: Vec<&str> = activities.iter().map(|a| a.activity_id.as_str()).collect();
    assert!(ids_seen.iter().all(|id| id.len() == 36));
    assert_ne!(ids_seen[0], ids_seen[1]);
}

#[tokio::test(start_paused = true)]
async fn failing_launches_are_failed_activities_retried_until_they_succeed() {
    let (sim, _) = account(VersionBehavior::good(BOOT), 1);
    advance(Duration::from_secs(10)).await;
    sim.fail_launches("asg", Some(VCPU_LIMIT_EXCEEDED));
    sim.set_desired_capacity("asg", 2).await.unwrap();
    assert_eq!(instance_ids(&sim).len(), 1);
    let activities = sim.scaling_activities("asg").await.unwrap();
    assert_eq!(codes(&activities), ["Failed", "Successful"]);
    assert_eq!(
        activities[0].status_message.as_deref(),
        Some(VCPU_LIMIT_EXCEEDED)
    );
    assert!(
        activities[0]
            .description
            .as_deref()
            .is_some_and(|d| d.ends_with(VCPU_LIMIT_EXCEEDED))
    );

    advance(LAUNCH_RETRY).await;
    assert_eq!(instance_ids(&sim).len(), 1);
    let activities = sim.scaling_activities("asg").await.unwrap();
    assert_eq!(codes(&activities), ["Failed", "Failed", "Successful"]);
    assert_newest_first(&activities);

    sim.fail_launches("asg", None);
    assert_eq!(instance_ids(&sim).len(), 2);
    assert_eq!(
        codes(&sim.scaling_activities("asg").await.unwrap())[0],
        "Successful"
    );
}

#[tokio::test(start_paused = true)]
async fn a_version_can_fail_its_launches_while_others_launch() {
    let (sim, lt) = account(VersionBehavior::good(BOOT), 1);
    let bad_ami = "The image id '[ami-0123456789abcdef0]' does not exist. Launching EC2 \
                   instance failed.";
    sim.publish_launch_template_version(
        &lt,
        VersionSpec::default().failing_launches(bad_ami),
        false,
    );
    sim.set_desired_capacity("asg", 2).await.unwrap();
    let activities = sim.scaling_activities("asg").await.unwrap();
    assert_eq!(codes(&activities), ["Failed", "Successful"]);
    assert_eq!(activities[0].status_message.as_deref(), Some(bad_ami));
    sim.pin_launch_template_version("asg", &lt, 1)
        .await
        .unwrap();
    advance(LAUNCH_RETRY).await;
    assert_eq!(instance_ids(&sim).len(), 2);
}

// ---- instance types ----

#[tokio::test(start_paused = true)]
async fn instance_types_have_their_real_sizes() {
    let sim = SimAccount::new(start());
    for (name, vcpus, memory) in [
        ("t3.micro", 2, 1024),
        ("m5.large", 2, 8192),
        ("m5.xlarge", 4, 16384),
        ("c5.large", 2, 4096),
        ("r5.large", 2, 16384),
    ] {
        let size = sim.instance_type(name).await.unwrap();
        assert_eq!(
            (size.instance_type.as_str(), size.vcpus, size.memory_mib),
            (name, vcpus, memory)
        );
    }
    assert_eq!(
        category_of(sim.instance_type("m5.mega").await),
        ErrorCategory::NotFound
    );
}

// ---- accounting, faults, pacing ----

#[tokio::test(start_paused = true)]
async fn unknown_things_are_not_found_as_aws_says() {
    let (sim, lt) = account(VersionBehavior::good(BOOT), 1);
    let console = sim.console_output("i-0123456789abcdef0").await;
    assert_eq!(category_of(console), ErrorCategory::NotFound);
    let version = sim.launch_template_version(&lt, 2).await;
    assert_eq!(category_of(version), ErrorCategory::NotFound);
    let version = sim.launch_template_version(&lt, 0).await;
    assert_eq!(category_of(version), ErrorCategory::NotFound);
    let template = sim.launch_template_version("lt-0000000000000000f", 1).await;
    assert_eq!(category_of(template), ErrorCategory::NotFound);
    let group = sim.scaling_activities("no-such-group").await;
    assert_eq!(category_of(group), ErrorCategory::NotFound);
}

#[tokio::test(start_paused = true)]
async fn the_reads_are_counted_and_fail_when_told() {
    let (sim, lt) = account(VersionBehavior::good(BOOT), 1);
    let id = instance_ids(&sim).remove(0);
    sim.reset_calls();
    sim.console_output(&id).await.unwrap();
    sim.launch_template_version(&lt, 1).await.unwrap();
    sim.scaling_activities("asg").await.unwrap();
    sim.instance_type("m5.large").await.unwrap();
    for op in [
        "GetConsoleOutput",
        "DescribeLaunchTemplateVersions",
        "DescribeScalingActivities",
        "DescribeInstanceTypes",
    ] {
        assert_eq!(sim.call_count(op), 1, "{op}");
    }
    assert_eq!(sim.mutating_calls(), 0);

    sim.fail_next("GetConsoleOutput", ErrorCategory::Throttled, 1);
    assert_eq!(
        category_of(sim.console_output(&id).await),
        ErrorCategory::Throttled
    );
    assert!(sim.console_output(&id).await.is_ok());
    sim.fail_next("DescribeInstanceTypes", ErrorCategory::Transient, 1);
    assert_eq!(
        category_of(sim.instance_type("m5.large").await),
        ErrorCategory::Transient
    );
    sim.deny("DescribeScalingActivities");
    let denied = sim.scaling_activities("asg").await.unwrap_err();
    assert_eq!(denied.category, ErrorCategory::Denied);
    assert!(
        denied
            .message
            .contains("autoscaling:DescribeScalingActivities")
    );
    sim.deny("DescribeLaunchTemplateVersions");
    let denied = sim.launch_template_version(&lt, 1).await.unwrap_err();
    assert!(
        denied
            .message
            .contains("ec2:DescribeLaunchTemplateVersions")
    );
    assert_eq!(sim.call_count("GetConsoleOutput"), 3);
}

fn granted(budget: &ApiBudget, category: Category) -> u64 {
    budget
        .report()
        .into_iter()
        .find(|r| r.category == category)
        .map_or(0, |r| r.calls)
}

#[tokio::test(start_paused = true)]
async fn the_reads_take_their_tokens_from_the_budget() {
    let budget = Arc::new(ApiBudget::new(&PacingSettings::default()).unwrap());
    let (sim, lt) = account(VersionBehavior::good(BOOT), 1);
    let sim = sim.with_budget(Arc::clone(&budget));
    let id = instance_ids(&sim).remove(0);
    let total = |b: &ApiBudget| b.report().iter().map(|r| r.calls).sum::<u64>();
    let before = total(&budget);
    let asg = granted(&budget, Category::AutoScaling);
    sim.launch_template_version(&lt, 1).await.unwrap();
    sim.instance_type("c5.large").await.unwrap();
    sim.scaling_activities("asg").await.unwrap();
    sim.console_output(&id).await.unwrap();
    assert_eq!(total(&budget), before + 4);
    assert_eq!(granted(&budget, Category::AutoScaling), asg + 1);
}

// ---- tasks that do not fit, and stop codes ----

#[tokio::test(start_paused = true)]
async fn a_task_larger_than_its_instance_type_never_places_and_its_service_says_why() {
    let (sim, lt) = account(VersionSpec::default().with_instance_type("c5.large"), 2);
    advance(INSTANCE_START + BOOT + Duration::from_secs(1)).await;
    assert_eq!(sim.container_instances("c").len(), 2);
    sim.add_service(
        "c",
        ServiceSpec::new("big", 1)
            .with_capacity(on("cp"))
            .with_task_size(1024, 6144),
    );
    sim.add_service(
        "c",
        ServiceSpec::new("wide", 1)
            .with_capacity(on("cp"))
            .with_task_size(4096, 2048),
    );
    sim.add_service(
        "c",
        ServiceSpec::new("small", 2)
            .with_capacity(on("cp"))
            .with_task_size(1024, 3072),
    );
    advance(Duration::from_secs(600)).await;
    for t in sim.tasks("c") {
        let expected = match t.service_name() {
            Some("small") => TaskStatus::Running,
            _ => TaskStatus::Provisioning,
        };
        assert_eq!(t.last_status, expected, "{:?}", t.service_name());
    }
    let big = sim.service("c", "big").unwrap();
    assert_eq!(big.events.len(), 1, "{:#?}", big.events);
    let message = &big.events[0].message;
    assert!(
        message.starts_with("(service big) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance "),
        "{message}"
    );
    assert!(
        message.contains("has insufficient memory available"),
        "{message}"
    );
    let wide = sim.service("c", "wide").unwrap();
    assert!(
        wide.events[0]
            .message
            .contains("has insufficient CPU available")
    );
    assert!(sim.service("c", "small").unwrap().events.is_empty());
    let big_task = sim
        .tasks("c")
        .into_iter()
        .find(|t| t.service_name() == Some("big"));
    let big_task = big_task.unwrap();
    assert_eq!((big_task.cpu, big_task.memory), (Some(1024), Some(6144)));

    let snapshot = sim.observe_cluster("c").await.unwrap();
    let observed = snapshot.services.iter().find(|s| s.name == "big").unwrap();
    assert_eq!(observed.events, big.events);

    // An instance with room for its memory places it; the CPU-hungry one still waits.
    let r5 = VersionSpec::default().with_instance_type("r5.large");
    sim.publish_launch_template_version(&lt, r5, true);
    sim.set_desired_capacity("asg", 3).await.unwrap();
    advance(INSTANCE_START + BOOT + Duration::from_secs(30)).await;
    let status_of = |service: &str| {
        let tasks = sim.tasks("c");
        let t = tasks.iter().find(|t| t.service_name() == Some(service));
        t.map(|t| t.last_status)
    };
    assert_eq!(status_of("big"), Some(TaskStatus::Running));
    assert_eq!(status_of("wide"), Some(TaskStatus::Provisioning));
}

#[tokio::test(start_paused = true)]
async fn service_events_stay_newest_first_and_at_most_100() {
    let sim = SimAccount::new(start());
    sim.add_cluster("c");
    let lt = sim.add_launch_template("lt", VersionSpec::default().with_instance_type("t3.micro"));
    sim.add_auto_scaling_group(GroupSpec::new("asg", "c", &lt, 1).with_bounds(0, 200));
    sim.add_capacity_provider("c", "cp", Some("asg"));
    advance(INSTANCE_START + BOOT + Duration::from_secs(1)).await;
    sim.add_service(
        "c",
        ServiceSpec::new("big", 1)
            .with_capacity(on("cp"))
            .with_task_size(256, 2048),
    );
    advance(Duration::from_secs(10)).await;
    // Each new instance is another closest match: another event.
    for desired in 2..=120 {
        sim.set_desired_capacity("asg", desired).await.unwrap();
        advance(Duration::from_secs(1)).await;
    }
    advance(INSTANCE_START + BOOT).await;
    assert_eq!(sim.container_instances("c").len(), 120);
    let events = sim.service("c", "big").unwrap().events;
    assert_eq!(events.len(), 100);
    let times: Vec<SystemTime> = events.iter().map(|e| e.at.unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]));
}

#[tokio::test(start_paused = true)]
async fn stopped_tasks_carry_the_stop_code_ecs_gives() {
    let sim = SimAccount::new(start());
    sim.add_cluster("c");
    sim.add_container_instance("c", "i-0aaaaaaaaaaaaaaa1");
    let timeout = "Timeout waiting for network interface provisioning to complete.";
    let spec = ServiceSpec::new("web", 4)
        .then_launch(1, TaskBehavior::healthy())
        .then_launch(
            1,
            TaskBehavior::stops_on_its_own_after(Duration::from_secs(60)),
        )
        .then_launch(
            1,
            TaskBehavior::fails_to_start_after(Duration::from_secs(60), timeout),
        )
        .then_launch(
            1,
            TaskBehavior::hangs_in(TaskStatus::Pending)
                .with_dwell(TaskStatus::Provisioning, Duration::from_secs(1)),
        );
    sim.add_service("c", spec);
    advance(Duration::from_secs(30)).await;
    let tasks = sim.tasks("c");
    assert!(tasks.iter().all(|t| t.stop_code.is_none()));
    sim.stop_task("c", &tasks[0].arn, "by hand").await.unwrap();
    advance(Duration::from_secs(40)).await;
    let code = |arn: &str| sim.task(arn).and_then(|t| t.stop_code);
    let reason = |arn: &str| sim.task(arn).and_then(|t| t.stopped_reason);
    assert_eq!(code(&tasks[0].arn).as_deref(), Some("UserInitiated"));
    assert_eq!(
        code(&tasks[1].arn).as_deref(),
        Some("EssentialContainerExited")
    );
    assert_eq!(code(&tasks[2].arn).as_deref(), Some("TaskFailedToStart"));
    assert_eq!(reason(&tasks[2].arn).as_deref(), Some(timeout));
    assert_eq!(code(&tasks[3].arn), None);
    sim.set_desired_count("c", "web", 0);
    let scaled_in = sim.task(&tasks[3].arn).unwrap();
    assert_eq!(scaled_in.desired_status, DesiredStatus::Stopped);
    assert_eq!(
        scaled_in.stop_code.as_deref(),
        Some("ServiceSchedulerInitiated")
    );
}

#[tokio::test(start_paused = true)]
async fn versions_naming_another_cluster_or_no_profile_never_register() {
    for (spec, other_cluster) in [
        (VersionSpec::joining_cluster("other"), true),
        (VersionSpec::without_instance_profile(), false),
    ] {
        let (sim, lt) = account(VersionBehavior::good(BOOT), 0);
        let v2 = sim.publish_launch_template_version(&lt, spec, true);
        sim.set_desired_capacity("asg", 2).await.unwrap();
        advance(Duration::from_secs(3600)).await;
        let g = sim.auto_scaling_group("asg").unwrap();
        assert_eq!(g.instances.len(), 2);
        assert!(g.instances.iter().all(|i| i.lifecycle_state == "InService"));
        assert!(sim.container_instances("c").is_empty());
        let v = sim.launch_template_version(&lt, v2).await.unwrap();
        let script = decode(v.user_data.as_deref().unwrap());
        assert_eq!(
            script.contains("ECS_CLUSTER=other\n"),
            other_cluster,
            "{script}"
        );
        assert_eq!(
            script.contains("ECS_CLUSTER=c\n"),
            !other_cluster,
            "{script}"
        );
        assert_eq!(v.instance_profile.is_some(), other_cluster);
    }
}

#[tokio::test(start_paused = true)]
async fn user_data_can_be_gzip_or_cloud_init_multi_part() {
    let script = boot::fsx_user_data("c");
    let mime = boot::mime_multipart("packages:\n  - lustre-client", &script);
    let spec = VersionSpec::new(VersionBehavior::broken()).with_user_data_script(&mime);
    let (sim, lt) = account(spec, 0);
    let gz = boot::gzip_base64(script.as_bytes());
    sim.publish_launch_template_version(
        &lt,
        VersionSpec::default().with_user_data_base64(&gz),
        false,
    );

    let v1 = sim.launch_template_version(&lt, 1).await.unwrap();
    let text = decode(v1.user_data.as_deref().unwrap());
    let parsed = mailparse::parse_mail(text.as_bytes()).expect("valid MIME");
    assert_eq!(parsed.ctype.mimetype, "multipart/mixed");
    let types: Vec<&str> = parsed
        .subparts
        .iter()
        .map(|p| p.ctype.mimetype.as_str())
        .collect();
    assert_eq!(types, ["text/cloud-config", "text/x-shellscript"]);
    let body = parsed.subparts[1].get_body().unwrap();
    assert_eq!(body.trim_end(), script.trim_end());

    let v2 = sim.launch_template_version(&lt, 2).await.unwrap();
    let zipped = base64::engine::general_purpose::STANDARD
        .decode(v2.user_data.unwrap())
        .unwrap();
    assert_eq!(&zipped[..2], [0x1f, 0x8b]);
    let mut unzipped = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(&zipped[..]),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(unzipped, script);
}
