//! The AWS adapter's root-cause reads against moto, beyond the shared contract
//! (`contract_reads`): GetConsoleOutput's `Latest` fallback, no output yet, output that is not
//! base64, denied and throttled reads; error categories confirmed by a read rather than taken
//! from message text; and what `observe` reports that the diagnosis of causes reads (service
//! events, stop codes, task sizes; group instances' types are checked in `aws_capacity`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::cloud::aws::{AwsCloud, AwsSettings, decode_console_output};
use ecs_reconciler::cloud::budget::{Category, PacingSettings};
use ecs_reconciler::cloud::{Cloud, ErrorCategory};

use crate::contract_reads::moto::MotoAccount;
use crate::contract_reads::{BOOT_OUTPUT, ReadsAccount, seed};
use crate::support::moto::Moto;

fn count(cloud: &AwsCloud, operation: &str) -> u64 {
    cloud.calls().get(operation).copied().unwrap_or(0)
}

/// The adapter without the SDK's retries, so a scripted throttle is answered at once.
async fn no_retries(moto: &Moto) -> AwsCloud {
    moto.cloud_with(AwsSettings {
        max_attempts: 1,
        ..AwsSettings::default()
    })
    .await
}

#[tokio::test]
async fn console_output_asks_for_the_latest_and_falls_back_where_unsupported() {
    let account = MotoAccount::new().await;
    let nitro = account.seed(&seed()).await;
    let xen = account.seed(&seed()).await;
    account
        .moto()
        .set_console_output(&xen.instance_id, Some(b"older buffered output\n"), false)
        .await;
    let cloud = account.cloud();

    let output = cloud.console_output(&nitro.instance_id).await.unwrap();
    assert_eq!(output.as_deref(), Some(BOOT_OUTPUT));
    assert_eq!(
        count(cloud, "GetConsoleOutput"),
        1,
        "Latest=true was supported"
    );

    // Latest=true is refused (UnsupportedOperation): asked again without it.
    let output = cloud.console_output(&xen.instance_id).await.unwrap();
    assert_eq!(output.as_deref(), Some(&b"older buffered output\n"[..]));
    assert_eq!(count(cloud, "GetConsoleOutput"), 3);
}

#[tokio::test]
async fn console_output_not_there_yet_is_none_and_garbage_is_invalid() {
    let account = MotoAccount::new().await;
    let booting = account.seed(&seed()).await;
    let garbled = account.seed(&seed()).await;
    let moto = account.moto();
    moto.set_console_output(&booting.instance_id, None, true)
        .await;
    moto.set_console_output_text(&garbled.instance_id, Some("%%% not base64 %%%"), true)
        .await;
    let cloud = account.cloud();

    assert_eq!(
        cloud.console_output(&booting.instance_id).await.unwrap(),
        None
    );
    let err = cloud
        .console_output(&garbled.instance_id)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::Invalid, "{err}");
    assert!(err.message.contains(&garbled.instance_id), "{err}");
}

#[test]
fn console_output_is_decoded_across_line_breaks() {
    // "boot\n" and a byte that is not UTF-8, wrapped as EC2's older answers are.
    let decoded = decode_console_output("i-1", Some("Ym9v\ndAr/")).unwrap();
    assert_eq!(decoded, Some(b"boot\n\xff".to_vec()));
    assert_eq!(decode_console_output("i-1", None).unwrap(), None);
    assert_eq!(decode_console_output("i-1", Some(" \r\n")).unwrap(), None);
    // Cut in the middle of a base64 quantum: not base64.
    let err = decode_console_output("i-0abc", Some("Ym9vd")).unwrap_err();
    assert_eq!(err.category, ErrorCategory::Invalid);
    assert!(err.message.contains("i-0abc"), "{err}");
}

#[tokio::test]
async fn denied_or_throttled_reads_say_so() {
    let account = MotoAccount::new().await;
    let seeded = account.seed(&seed()).await;
    let moto = account.moto();
    moto.inject_fault("GetConsoleOutput", "UnauthorizedOperation", 403)
        .await;
    moto.inject_fault("DescribeScalingActivities", "Throttling", 400)
        .await;
    moto.inject_fault(
        "DescribeLaunchTemplateVersions",
        "RequestLimitExceeded",
        503,
    )
    .await;
    let cloud = no_retries(moto).await;

    let err = cloud.console_output(&seeded.instance_id).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Denied, "{err}");
    assert_eq!(err.operation, "GetConsoleOutput");
    // Denied is not "Latest unsupported": asked once, not twice.
    assert_eq!(count(&cloud, "GetConsoleOutput"), 1);

    let err = cloud.scaling_activities(&seeded.group).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Throttled, "{err}");
    assert_eq!(err.operation, "DescribeScalingActivities");
    // The throttle slows Auto Scaling's budget down.
    let auto_scaling = cloud
        .budget()
        .report()
        .into_iter()
        .find(|r| r.category == Category::AutoScaling)
        .unwrap();
    let configured = PacingSettings::default().budget(Category::AutoScaling);
    assert!(
        auto_scaling.budget_per_sec < configured.per_second,
        "{auto_scaling:?}"
    );

    let err = cloud
        .launch_template_version(&seeded.template_id, 1)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::Throttled, "{err}");
    // No confirmation read after a throttle or a denial.
    assert_eq!(count(&cloud, "DescribeAutoScalingGroups"), 0);
}

#[tokio::test]
async fn not_found_is_confirmed_by_a_read_and_a_validation_error_stays_invalid() {
    let account = MotoAccount::new().await;
    let seeded = account.seed(&seed()).await;
    let cloud = account.cloud();

    let err = cloud
        .set_desired_capacity("no-such-group", 1)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
    assert_eq!(err.operation, "SetDesiredCapacity");
    assert_eq!(
        count(cloud, "DescribeAutoScalingGroups"),
        1,
        "one confirmation"
    );

    let err = cloud
        .pin_launch_template_version("no-such-group", &seeded.template_id, 1)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");

    let err = cloud
        .terminate_instance("i-0123456789abcdef0")
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
    assert_eq!(count(cloud, "DescribeAutoScalingInstances"), 1);

    // The group exists; the desired capacity is above its MaxSize (2): a ValidationError that
    // the confirming read does not turn into NotFound.
    let err = cloud
        .set_desired_capacity(&seeded.group, 3)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::Invalid, "{err}");
    assert_eq!(count(cloud, "DescribeAutoScalingGroups"), 3);
}

#[tokio::test]
async fn a_failed_confirmation_leaves_the_error_as_it_was() {
    let moto = Moto::new();
    moto.inject_fault("DescribeAutoScalingGroups", "AccessDenied", 403)
        .await;
    let cloud = moto.cloud().await;
    let err = cloud
        .set_desired_capacity("no-such-group", 1)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::Invalid, "not confirmed: {err}");
    assert_eq!(count(&cloud, "DescribeAutoScalingGroups"), 1);
}

const CLUSTER: &str = "causes";

fn epoch(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[tokio::test]
async fn observe_reports_service_events_stop_codes_task_sizes_and_instance_types() {
    let account = MotoAccount::new().await;
    let moto = account.moto();
    let ecs = moto.ecs();
    ecs.create_cluster()
        .cluster_name(CLUSTER)
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("sized")
        .cpu("1024")
        .memory("4096")
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("app")
                .image("app:1")
                .memory(512)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (subnet, group) = moto.default_network().await;
    let network = aws_sdk_ecs::types::NetworkConfiguration::builder()
        .awsvpc_configuration(
            aws_sdk_ecs::types::AwsVpcConfiguration::builder()
                .subnets(subnet)
                .security_groups(group)
                .build()
                .unwrap(),
        )
        .build();
    ecs.create_service()
        .cluster(CLUSTER)
        .service_name("web")
        .task_definition("sized")
        .desired_count(1)
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(network.clone())
        .send()
        .await
        .unwrap();
    let placement = "(service web) was unable to place a task because no container instance \
                     met all of its requirements.";
    moto.add_service_event(
        CLUSTER,
        "web",
        "(service web) has started 1 tasks.",
        1_900_000_000,
    )
    .await;
    moto.add_service_event(CLUSTER, "web", placement, 1_900_000_060)
        .await;
    let run = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("sized")
        .launch_type(aws_sdk_ecs::types::LaunchType::Fargate)
        .network_configuration(network)
        .send()
        .await
        .unwrap();
    let task_arn = run.tasks()[0].task_arn().unwrap().to_string();
    let reason = "Timeout waiting for network interface provisioning to complete.";
    moto.set_task_state(
        CLUSTER,
        &task_arn,
        serde_json::json!({"lastStatus": "STOPPED", "desiredStatus": "STOPPED",
                           "stoppedReason": reason, "stopCode": "TaskFailedToStart",
                           "stoppedAt": 1_900_000_100}),
    )
    .await;

    let cloud = account.cloud();
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    let web = snapshot.services.iter().find(|s| s.name == "web").unwrap();
    let messages: Vec<&str> = web.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, [placement, "(service web) has started 1 tasks."]);
    assert_eq!(web.events[0].at, Some(epoch(1_900_000_060)));
    let task = snapshot.tasks.iter().find(|t| t.arn == task_arn).unwrap();
    assert_eq!(task.stop_code.as_deref(), Some("TaskFailedToStart"));
    assert_eq!(task.stopped_reason.as_deref(), Some(reason));
    assert_eq!((task.cpu, task.memory), (Some(1024), Some(4096)));
}
