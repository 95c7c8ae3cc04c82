//! The AWS adapter against moto (see `support::moto`): domain conversion, observation cost,
//! failures, mutations, idempotency, error mapping and setup errors.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ecs::config::{Credentials, Region, SharedCredentialsProvider};
use aws_sdk_ecs::types::{
    AwsVpcConfiguration, ContainerDefinition, ContainerOverride as EcsContainerOverride,
    KeyValuePair, LaunchType, NetworkConfiguration, NetworkMode, Tag, TaskOverride,
};
use ecs_reconciler::cloud::aws::{AwsCloud, AwsSettings, AwsSetupError, error_category};
use ecs_reconciler::cloud::{Cloud, ErrorCategory};
use ecs_reconciler::domain::{
    Capacity, CapacityProviderStrategyItem, ContainerOverride, DesiredStatus, EnvVar, HealthStatus,
    NetworkConfig, RunTaskRequest, Tags, Task, TaskOverrides, TaskStatus,
};
use serde_json::json;

use crate::support::moto::Moto;

const CLUSTER: &str = "prod";

fn epoch(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A cluster with a bridge-mode task definition `web` and an awsvpc one `batch`.
async fn cluster_with_task_definitions(moto: &Moto) -> aws_sdk_ecs::Client {
    let ecs = moto.ecs();
    ecs.create_cluster()
        .cluster_name(CLUSTER)
        .send()
        .await
        .unwrap();
    let container = |name: &str| {
        ContainerDefinition::builder()
            .name(name)
            .image("public.ecr.aws/nginx/nginx:latest")
            .memory(128)
            .cpu(64)
            .build()
    };
    ecs.register_task_definition()
        .family("web")
        .container_definitions(container("web"))
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("batch")
        .network_mode(NetworkMode::Awsvpc)
        .container_definitions(container("worker"))
        .send()
        .await
        .unwrap();
    ecs
}

/// Starts `count` FARGATE tasks of `web` (moto needs no instances for them).
async fn run_fargate(ecs: &aws_sdk_ecs::Client, count: i32) -> Vec<String> {
    let output = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("web")
        .launch_type(LaunchType::Fargate)
        .count(count)
        .send()
        .await
        .unwrap();
    output
        .tasks()
        .iter()
        .map(|t| t.task_arn().unwrap().to_string())
        .collect()
}

fn task<'a>(tasks: &'a [Task], arn: &str) -> &'a Task {
    tasks
        .iter()
        .find(|t| t.arn == arn)
        .unwrap_or_else(|| panic!("task {arn} not observed"))
}

fn standalone_request(client_token: &str) -> RunTaskRequest {
    RunTaskRequest {
        task_definition: "web".into(),
        overrides: TaskOverrides::default(),
        tags: Tags::new(),
        group: None,
        started_by: None,
        capacity: Capacity::LaunchType("FARGATE".into()),
        network: None,
        client_token: client_token.into(),
    }
}

#[tokio::test]
async fn observe_converts_services_tasks_and_instances() {
    let moto = Moto::new();
    let ecs = cluster_with_task_definitions(&moto).await;
    let cloud = moto.cloud().await;

    // A container instance, registered from a real (moto) EC2 instance.
    let instance_id = moto.launch_ec2_instance().await;
    let identity = json!({"instanceId": instance_id}).to_string();
    let registered = ecs
        .register_container_instance()
        .cluster(CLUSTER)
        .instance_identity_document(identity)
        .send()
        .await
        .unwrap();
    let instance_arn = registered
        .container_instance()
        .unwrap()
        .container_instance_arn()
        .unwrap()
        .to_string();

    // A service, and a task of it on the instance (moto's services start no tasks).
    ecs.create_service()
        .cluster(CLUSTER)
        .service_name("web")
        .task_definition("web")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    let service_task = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("web")
        .launch_type(LaunchType::Ec2)
        .group("service:web")
        .started_by("ecs-svc/1234567890")
        .tags(Tag::builder().key("team").value("payments").build())
        .overrides(
            TaskOverride::builder()
                .container_overrides(
                    EcsContainerOverride::builder()
                        .name("web")
                        .command("serve")
                        .command("--port=80")
                        .environment(KeyValuePair::builder().name("MODE").value("blue").build())
                        .cpu(32)
                        .memory(96)
                        .memory_reservation(64)
                        .build(),
                )
                .task_role_arn("arn:aws:iam::123456789012:role/web")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .tasks()[0]
        .task_arn()
        .unwrap()
        .to_string();

    // A standalone awsvpc task on a capacity provider, started through the adapter.
    let (subnet, security_group) = moto.default_network().await;
    let standalone_group = security_group.clone();
    let standalone = cloud
        .run_task(
            CLUSTER,
            &RunTaskRequest {
                task_definition: "batch".into(),
                overrides: TaskOverrides {
                    cpu: Some("256".into()),
                    memory: Some("512".into()),
                    ..TaskOverrides::default()
                },
                tags: Tags::from([("job".to_string(), "nightly".to_string())]),
                group: Some("batch-jobs".into()),
                started_by: Some("scheduler".into()),
                capacity: Capacity::CapacityProviderStrategy(vec![CapacityProviderStrategyItem {
                    capacity_provider: "FARGATE".into(),
                    weight: 1,
                    base: 0,
                }]),
                network: Some(NetworkConfig {
                    subnets: vec![subnet.clone()],
                    security_groups: vec![security_group],
                    assign_public_ip: Some(false),
                }),
                client_token: "standalone-1".into(),
            },
        )
        .await
        .unwrap();

    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert_eq!(snapshot.cluster_name, CLUSTER);
    assert_eq!(
        snapshot.cluster_arn,
        format!(
            "arn:aws:ecs:us-east-1:{}:cluster/{CLUSTER}",
            moto.account_id()
        )
    );
    assert!(snapshot.gaps.is_empty(), "gaps: {:?}", snapshot.gaps);
    let now = SystemTime::now();
    assert!(snapshot.observed_at <= now);

    assert_eq!(snapshot.services.len(), 1);
    let service = &snapshot.services[0];
    assert_eq!(service.name, "web");
    assert!(service.arn.ends_with(&format!("service/{CLUSTER}/web")));
    assert_eq!(
        (
            service.desired_count,
            service.running_count,
            service.pending_count
        ),
        (2, 0, 2)
    );

    assert_eq!(snapshot.container_instances.len(), 1);
    let instance = &snapshot.container_instances[0];
    assert_eq!(instance.arn, instance_arn);
    assert_eq!(
        instance.ec2_instance_id.as_deref(),
        Some(instance_id.as_str())
    );
    assert_eq!(instance.status, "ACTIVE");
    assert!(instance.agent_connected);
    assert!(instance.registered_at.is_some_and(|t| t <= now));

    assert_eq!(snapshot.tasks.len(), 2);
    let t = task(&snapshot.tasks, &service_task);
    assert_eq!(t.cluster_arn, snapshot.cluster_arn);
    assert!(t.task_definition_arn.ends_with(":task-definition/web:1"));
    assert_eq!(t.group.as_deref(), Some("service:web"));
    assert_eq!(t.service_name(), Some("web"));
    assert_eq!(t.started_by.as_deref(), Some("ecs-svc/1234567890"));
    assert_eq!(t.last_status, TaskStatus::Running);
    assert_eq!(t.desired_status, DesiredStatus::Running);
    assert_eq!(t.health, HealthStatus::Unknown);
    let ts = &t.timestamps;
    assert!(ts.created_at.is_some() && ts.started_at.is_some() && ts.pull_started_at.is_some());
    assert!(ts.stopping_at.is_none() && ts.stopped_at.is_none());
    assert_eq!(t.stopped_reason, None);
    assert_eq!(
        t.tags,
        Tags::from([("team".to_string(), "payments".to_string())])
    );
    assert_eq!(t.capacity, Capacity::LaunchType("EC2".into()));
    assert_eq!(t.network, None);
    assert_eq!(
        t.container_instance_arn.as_deref(),
        Some(instance_arn.as_str())
    );
    assert_eq!(
        *t.overrides,
        TaskOverrides {
            containers: vec![ContainerOverride {
                name: "web".into(),
                command: Some(vec!["serve".into(), "--port=80".into()]),
                environment: vec![EnvVar {
                    name: "MODE".into(),
                    value: "blue".into()
                }],
                cpu: Some(32),
                memory: Some(96),
                memory_reservation: Some(64),
            }],
            cpu: None,
            memory: None,
            task_role_arn: Some("arn:aws:iam::123456789012:role/web".into()),
            execution_role_arn: None,
        }
    );

    let s = task(&snapshot.tasks, &standalone);
    assert!(s.task_definition_arn.ends_with(":task-definition/batch:1"));
    assert_eq!(s.group.as_deref(), Some("batch-jobs"));
    assert_eq!(s.service_name(), None);
    assert_eq!(s.started_by.as_deref(), Some("scheduler"));
    assert_eq!(s.capacity_providers(), vec!["FARGATE"]);
    // The subnet from DescribeTasks, the security groups from the interface (EC2); whether a
    // public IP was asked for is reported by neither.
    assert_eq!(
        s.network,
        Some(NetworkConfig {
            subnets: vec![subnet],
            security_groups: vec![standalone_group],
            assign_public_ip: None,
        })
    );
    assert_eq!(s.overrides.cpu.as_deref(), Some("256"));
    assert_eq!(s.overrides.memory.as_deref(), Some("512"));
    assert_eq!(
        s.tags,
        Tags::from([("job".to_string(), "nightly".to_string())])
    );
    assert_eq!(s.container_instance_arn, None);
}

#[tokio::test]
async fn provisioning_task_shows_its_state_and_creation_time() {
    let moto = Moto::new();
    let ecs = cluster_with_task_definitions(&moto).await;
    let arn = run_fargate(&ecs, 1).await.remove(0);
    moto.set_task_state(
        CLUSTER,
        &arn,
        json!({"lastStatus": "PROVISIONING", "createdAt": 1_700_000_000}),
    )
    .await;
    let cloud = moto.cloud().await;

    // Observed twice: looking at a task must not move it along (moto's default would).
    for _ in 0..2 {
        let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
        let t = task(&snapshot.tasks, &arn);
        assert_eq!(t.last_status, TaskStatus::Provisioning);
        assert_eq!(t.desired_status, DesiredStatus::Running);
        assert_eq!(t.timestamps.created_at, Some(epoch(1_700_000_000)));
        assert_eq!(t.timestamps.started_at, None);
        assert_eq!(t.timestamps.pull_started_at, None);
    }

    moto.set_task_state(
        CLUSTER,
        &arn,
        json!({"lastStatus": "RUNNING", "healthStatus": "UNHEALTHY", "startedAt": 1_700_000_600}),
    )
    .await;
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    let t = task(&snapshot.tasks, &arn);
    assert_eq!(t.last_status, TaskStatus::Running);
    assert_eq!(t.health, HealthStatus::Unhealthy);
    assert_eq!(t.timestamps.started_at, Some(epoch(1_700_000_600)));
}

#[tokio::test]
async fn observe_cost_is_one_call_per_page_and_batch() {
    let moto = Moto::new();
    let ecs = cluster_with_task_definitions(&moto).await;
    for _ in 0..25 {
        run_fargate(&ecs, 10).await;
    }
    let cloud = moto.cloud().await;

    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert_eq!(snapshot.tasks.len(), 250);
    assert!(snapshot.gaps.is_empty(), "gaps: {:?}", snapshot.gaps);
    let expected: BTreeMap<String, u64> = [
        ("DescribeClusters", 1),
        // 3 pages of desired RUNNING + 1 (empty) of desired STOPPED.
        ("ListTasks", 4),
        ("DescribeTasks", 3),
        ("ListServices", 1),
        ("ListContainerInstances", 1),
    ]
    .into_iter()
    .map(|(op, n)| (op.to_string(), n))
    .collect();
    assert_eq!(cloud.calls(), expected);
}

/// The default VPC's first subnet, and new security groups named `names` in its VPC.
async fn subnet_and_security_groups(moto: &Moto, names: &[&str]) -> (String, Vec<String>) {
    let (subnet, _) = moto.default_network().await;
    let ec2 = moto.ec2();
    let vpc = ec2
        .describe_subnets()
        .subnet_ids(&subnet)
        .send()
        .await
        .unwrap()
        .subnets()[0]
        .vpc_id()
        .unwrap()
        .to_string();
    let mut groups = Vec::new();
    for name in names {
        let group = ec2
            .create_security_group()
            .group_name(*name)
            .description(*name)
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap();
        groups.push(group.group_id().unwrap().to_string());
    }
    (subnet, groups)
}

/// Starts `count` FARGATE tasks of the awsvpc `batch` in `subnet` with `groups` (in that
/// order), standalone or of a service (`group`).
async fn run_awsvpc(
    ecs: &aws_sdk_ecs::Client,
    count: i32,
    group: &str,
    subnet: &str,
    groups: &[&String],
) -> Vec<String> {
    let vpc = AwsVpcConfiguration::builder()
        .subnets(subnet)
        .set_security_groups(Some(groups.iter().map(|g| g.to_string()).collect()))
        .build()
        .unwrap();
    let output = ecs
        .run_task()
        .cluster(CLUSTER)
        .task_definition("batch")
        .launch_type(LaunchType::Fargate)
        .group(group)
        .network_configuration(
            NetworkConfiguration::builder()
                .awsvpc_configuration(vpc)
                .build(),
        )
        .count(count)
        .send()
        .await
        .unwrap();
    output
        .tasks()
        .iter()
        .map(|t| t.task_arn().unwrap().to_string())
        .collect()
}

fn security_groups<'a>(tasks: &'a [Task], arn: &str) -> &'a [String] {
    &task(tasks, arn)
        .network
        .as_ref()
        .unwrap_or_else(|| panic!("task {arn} has no network"))
        .security_groups
}

fn interface_lookups(cloud: &AwsCloud) -> u64 {
    cloud
        .calls()
        .get("DescribeNetworkInterfaces")
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn standalone_awsvpc_tasks_get_security_groups_in_one_lookup() {
    let moto = Moto::new();
    let ecs = cluster_with_task_definitions(&moto).await;
    let (subnet, sg) = subnet_and_security_groups(&moto, &["web", "db", "admin"]).await;
    let cloud = moto.cloud().await;

    // Only tasks that need no lookup: a service's awsvpc task, and a standalone one whose
    // interface ECS has not created yet.
    let service_task = run_awsvpc(&ecs, 1, "service:api", &subnet, &[&sg[0]])
        .await
        .remove(0);
    let provisioning = run_awsvpc(&ecs, 1, "batch-jobs", &subnet, &[&sg[0]])
        .await
        .remove(0);
    moto.set_task_state(
        CLUSTER,
        &provisioning,
        json!({"lastStatus": "PROVISIONING"}),
    )
    .await;
    moto.set_eni_attachment(CLUSTER, &provisioning, "PRECREATED")
        .await;
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert!(snapshot.gaps.is_empty(), "gaps: {:?}", snapshot.gaps);
    assert_eq!(interface_lookups(&cloud), 0, "calls: {:?}", cloud.calls());
    for arn in [&service_task, &provisioning] {
        let network = task(&snapshot.tasks, arn).network.as_ref().unwrap();
        assert_eq!(network.subnets, [subnet.as_str()]);
        assert!(network.security_groups.is_empty(), "{arn}: {network:?}");
    }

    // Several standalone tasks with interfaces: one lookup for all of them.
    let two_groups = run_awsvpc(&ecs, 3, "batch-jobs", &subnet, &[&sg[1], &sg[0]]).await;
    let one_group = run_awsvpc(&ecs, 2, "reports", &subnet, &[&sg[2]]).await;
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert!(snapshot.gaps.is_empty(), "gaps: {:?}", snapshot.gaps);
    assert_eq!(interface_lookups(&cloud), 1, "calls: {:?}", cloud.calls());
    let mut sorted = vec![sg[0].clone(), sg[1].clone()];
    sorted.sort();
    for arn in &two_groups {
        assert_eq!(security_groups(&snapshot.tasks, arn), sorted.as_slice());
        let network = task(&snapshot.tasks, arn).network.as_ref().unwrap();
        assert_eq!(network.subnets, [subnet.as_str()]);
    }
    for arn in &one_group {
        assert_eq!(security_groups(&snapshot.tasks, arn), [sg[2].clone()]);
    }
    assert!(security_groups(&snapshot.tasks, &service_task).is_empty());
    assert!(security_groups(&snapshot.tasks, &provisioning).is_empty());

    // Once its interface exists, the formerly provisioning task is looked up too.
    moto.set_eni_attachment(CLUSTER, &provisioning, "ATTACHED")
        .await;
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert_eq!(interface_lookups(&cloud), 2, "calls: {:?}", cloud.calls());
    assert_eq!(
        security_groups(&snapshot.tasks, &provisioning),
        [sg[0].clone()]
    );
}

#[tokio::test]
async fn task_whose_interface_is_gone_keeps_no_security_groups_and_no_gap() {
    let moto = Moto::new();
    let ecs = cluster_with_task_definitions(&moto).await;
    let (subnet, sg) = subnet_and_security_groups(&moto, &["web"]).await;
    let arns = run_awsvpc(&ecs, 2, "batch-jobs", &subnet, &[&sg[0]]).await;
    // The first task's interface is deleted between DescribeTasks and the lookup.
    let described = ecs
        .describe_tasks()
        .cluster(CLUSTER)
        .tasks(&arns[0])
        .send()
        .await
        .unwrap();
    let eni = described.tasks()[0].attachments()[0]
        .details()
        .iter()
        .find(|d| d.name() == Some("networkInterfaceId"))
        .and_then(|d| d.value())
        .unwrap()
        .to_string();
    moto.ec2()
        .delete_network_interface()
        .network_interface_id(eni)
        .send()
        .await
        .unwrap();
    let cloud = moto.cloud().await;

    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert!(snapshot.gaps.is_empty(), "gaps: {:?}", snapshot.gaps);
    assert_eq!(interface_lookups(&cloud), 1, "calls: {:?}", cloud.calls());
    assert!(security_groups(&snapshot.tasks, &arns[0]).is_empty());
    // The interface that still exists, looked up in the same call, is unaffected.
    assert_eq!(security_groups(&snapshot.tasks, &arns[1]), [sg[0].clone()]);
}

#[tokio::test]
async fn failed_interface_lookup_is_a_gap_not_a_failed_snapshot() {
    let moto = Moto::new();
    let ecs = cluster_with_task_definitions(&moto).await;
    let (subnet, sg) = subnet_and_security_groups(&moto, &["web"]).await;
    let arns = run_awsvpc(&ecs, 2, "batch-jobs", &subnet, &[&sg[0]]).await;
    let cloud = moto
        .cloud_with(AwsSettings {
            max_attempts: 1,
            ..AwsSettings::default()
        })
        .await;

    // Denied (which would fail the snapshot for an ECS read), then throttled.
    for (code, status, category) in [
        ("UnauthorizedOperation", 403, "denied"),
        ("RequestLimitExceeded", 503, "throttled"),
    ] {
        moto.inject_fault("DescribeNetworkInterfaces", code, status)
            .await;
        let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
        assert_eq!(snapshot.tasks.len(), 2);
        assert_eq!(snapshot.gaps.len(), 1, "gaps: {:?}", snapshot.gaps);
        let gap = &snapshot.gaps[0];
        assert!(
            gap.contains("DescribeNetworkInterfaces") && gap.contains(code),
            "{gap}"
        );
        assert!(gap.contains(&format!("({category})")), "{gap}");
        assert!(!snapshot.is_complete());
        for arn in &arns {
            let network = task(&snapshot.tasks, arn).network.as_ref().unwrap();
            assert_eq!(network.subnets, [subnet.as_str()]);
            assert!(network.security_groups.is_empty());
        }
    }
    assert_eq!(interface_lookups(&cloud), 2, "calls: {:?}", cloud.calls());
}

#[tokio::test]
async fn missing_or_deleted_cluster_is_not_found() {
    let moto = Moto::new();
    let ecs = cluster_with_task_definitions(&moto).await;
    let cloud = moto.cloud().await;

    let err = cloud.observe_cluster("nope").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
    assert_eq!(err.operation, "DescribeClusters");

    ecs.delete_cluster().cluster(CLUSTER).send().await.unwrap();
    let err = cloud.observe_cluster(CLUSTER).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
}

#[tokio::test]
async fn task_that_vanished_between_list_and_describe_is_ignored() {
    let moto = Moto::new();
    let ecs = cluster_with_task_definitions(&moto).await;
    let arns = run_fargate(&ecs, 2).await;
    let ghost = format!(
        "arn:aws:ecs:us-east-1:{}:task/{CLUSTER}/0123456789abcdef0123456789abcdef",
        moto.account_id()
    );
    moto.add_ghost_task(CLUSTER, &ghost).await;
    let cloud = moto.cloud().await;

    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    let mut observed: Vec<_> = snapshot.tasks.iter().map(|t| t.arn.clone()).collect();
    observed.sort();
    let mut expected = arns;
    expected.sort();
    assert_eq!(observed, expected);
    assert!(snapshot.gaps.is_empty(), "gaps: {:?}", snapshot.gaps);
}

#[tokio::test]
async fn unreadable_task_becomes_a_gap_not_a_panic() {
    let moto = Moto::new();
    let ecs = cluster_with_task_definitions(&moto).await;
    let arns = run_fargate(&ecs, 2).await;
    moto.set_task_state(CLUSTER, &arns[0], json!({"lastStatus": "HIBERNATING"}))
        .await;
    let cloud = moto.cloud().await;

    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert_eq!(snapshot.tasks.len(), 1);
    assert_eq!(snapshot.tasks[0].arn, arns[1]);
    assert_eq!(snapshot.gaps.len(), 1);
    assert!(snapshot.gaps[0].contains(&arns[0]) && snapshot.gaps[0].contains("HIBERNATING"));
}

#[tokio::test]
async fn stop_task_sets_desired_stopped_and_keeps_the_reason() {
    let moto = Moto::new();
    let ecs = cluster_with_task_definitions(&moto).await;
    let arn = run_fargate(&ecs, 1).await.remove(0);
    let cloud = moto.cloud().await;

    let reason = format!("ecs-reconciler: stuck in PROVISIONING {}", "é".repeat(300));
    cloud.stop_task(CLUSTER, &arn, &reason).await.unwrap();

    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    let t = task(&snapshot.tasks, &arn);
    assert_eq!(t.desired_status, DesiredStatus::Stopped);
    let kept = t.stopped_reason.as_deref().unwrap();
    assert_eq!(kept.chars().count(), 255);
    assert!(reason.starts_with(kept));
    assert!(t.timestamps.stopping_at.is_some());

    // Another id: the last hex digit changed (to one it is not).
    let last = if arn.ends_with('0') { '1' } else { '0' };
    let unknown = format!("{}{last}", &arn[..arn.len() - 1]);
    let err = cloud.stop_task(CLUSTER, &unknown, "x").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
}

#[tokio::test]
async fn run_task_with_the_same_client_token_starts_one_task() {
    let moto = Moto::new();
    cluster_with_task_definitions(&moto).await;
    let cloud = moto.cloud().await;

    let request = standalone_request("replace-0123456789abcdef");
    let first = cloud.run_task(CLUSTER, &request).await.unwrap();
    let second = cloud.run_task(CLUSTER, &request).await.unwrap();
    assert_eq!(first, second);

    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert_eq!(snapshot.tasks.len(), 1);
    assert_eq!(snapshot.tasks[0].arn, first);
    assert_eq!(cloud.calls().get("RunTask"), Some(&2));
}

#[tokio::test]
async fn run_task_refuses_a_network_without_security_groups_before_calling() {
    let moto = Moto::new();
    cluster_with_task_definitions(&moto).await;
    let cloud = moto.cloud().await;

    let mut request = standalone_request("t");
    request.task_definition = "batch".into();
    request.network = Some(NetworkConfig {
        subnets: vec!["subnet-1".into()],
        security_groups: vec![],
        assign_public_ip: None,
    });
    let err = cloud.run_task(CLUSTER, &request).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Invalid);
    assert!(cloud.calls().is_empty(), "calls: {:?}", cloud.calls());
}

#[tokio::test]
async fn access_denied_on_stop_task_is_denied() {
    let moto = Moto::new();
    let ecs = cluster_with_task_definitions(&moto).await;
    let arn = run_fargate(&ecs, 1).await.remove(0);
    moto.inject_fault("StopTask", "AccessDeniedException", 400)
        .await;
    let cloud = moto.cloud().await;

    let err = cloud.stop_task(CLUSTER, &arn, "x").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Denied);
    assert_eq!(err.operation, "StopTask");
    assert!(err.message.starts_with("AccessDeniedException"), "{err}");
}

#[tokio::test]
async fn throttled_part_becomes_a_gap_but_throttled_list_tasks_fails() {
    let moto = Moto::new();
    let ecs = cluster_with_task_definitions(&moto).await;
    run_fargate(&ecs, 1).await;
    let cloud = moto
        .cloud_with(AwsSettings {
            max_attempts: 1,
            ..AwsSettings::default()
        })
        .await;

    moto.inject_fault("ListContainerInstances", "ThrottlingException", 400)
        .await;
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert_eq!(snapshot.tasks.len(), 1);
    assert_eq!(snapshot.gaps.len(), 1, "gaps: {:?}", snapshot.gaps);
    assert!(snapshot.gaps[0].contains("ListContainerInstances"));
    assert!(!snapshot.is_complete());

    moto.inject_fault("ListTasks", "ServerException", 500).await;
    let err = cloud.observe_cluster(CLUSTER).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Transient);
    assert_eq!(err.operation, "ListTasks");
}

#[tokio::test]
async fn list_clusters_returns_names() {
    let moto = Moto::new();
    let ecs = moto.ecs();
    for name in ["alpha", "beta"] {
        ecs.create_cluster()
            .cluster_name(name)
            .send()
            .await
            .unwrap();
    }
    let cloud = moto.cloud().await;
    let mut names = cloud.list_clusters().await.unwrap();
    names.sort();
    assert_eq!(names, ["alpha", "beta"]);
}

#[test]
fn error_codes_and_statuses_map_to_categories() {
    use ErrorCategory::*;
    let cases = [
        (Some("AccessDeniedException"), Some(400), Denied),
        (Some("AccessDenied"), Some(403), Denied),
        (Some("UnauthorizedOperation"), Some(403), Denied),
        (Some("ThrottlingException"), Some(400), Throttled),
        (Some("Throttling"), Some(400), Throttled),
        (Some("RequestLimitExceeded"), Some(503), Throttled),
        (Some("TooManyRequests"), Some(429), Throttled),
        (Some("ClusterNotFoundException"), Some(400), NotFound),
        (Some("ServiceNotFoundException"), Some(400), NotFound),
        (Some("ResourceNotFound"), Some(400), NotFound),
        (
            Some("InvalidNetworkInterfaceID.NotFound"),
            Some(400),
            NotFound,
        ),
        (Some("InvalidParameterValue"), Some(400), Invalid),
        (Some("Unavailable"), Some(503), Transient),
        (Some("InvalidParameterException"), Some(400), Invalid),
        (Some("ClientException"), Some(400), Invalid),
        (Some("ServerException"), Some(500), Transient),
        // Auto Scaling.
        (Some("ResourceContention"), Some(500), Transient),
        (Some("ScalingActivityInProgress"), Some(400), Transient),
        (Some("ResourceInUse"), Some(400), Invalid),
        (Some("ValidationError"), Some(400), Invalid),
        // The root-cause reads (EC2).
        (Some("InvalidInstanceID.NotFound"), Some(400), NotFound),
        (
            Some("InvalidLaunchTemplateId.NotFound"),
            Some(400),
            NotFound,
        ),
        (
            Some("InvalidLaunchTemplateId.VersionNotFound"),
            Some(400),
            NotFound,
        ),
        (
            Some("InvalidLaunchTemplateName.NotFoundException"),
            Some(400),
            NotFound,
        ),
        (Some("InvalidInstanceID.Malformed"), Some(400), Invalid),
        (Some("UnsupportedOperation"), Some(400), Invalid),
        // Unknown in DescribeInstanceTypes only: that read names it NotFound itself.
        (Some("InvalidInstanceType"), Some(400), Invalid),
        (Some("AuthFailure"), Some(401), Denied),
        (Some("SomethingNew"), Some(503), Transient),
        (Some("SomethingNew"), Some(400), Invalid),
        (None, Some(429), Throttled),
        (None, Some(502), Transient),
        (None, None, Transient),
    ];
    for (code, status, expected) in cases {
        assert_eq!(
            error_category(code, status),
            expected,
            "{code:?} {status:?}"
        );
    }
}

#[derive(Debug)]
struct BrokenCredentials {
    hang: bool,
}

impl aws_sdk_ecs::config::ProvideCredentials for BrokenCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        if self.hang {
            aws_credential_types::provider::future::ProvideCredentials::new(std::future::pending())
        } else {
            aws_credential_types::provider::future::ProvideCredentials::ready(Err(
                aws_credential_types::provider::error::CredentialsError::not_loaded(
                    "no profile, no environment, no instance role",
                ),
            ))
        }
    }
}

#[tokio::test]
async fn setup_fails_clearly_without_region_or_credentials() {
    let settings = AwsSettings {
        credentials_timeout: Duration::from_millis(200),
        ..AwsSettings::default()
    };
    let bare = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .build();
    assert_eq!(
        AwsCloud::from_conf(&bare, &settings).unwrap_err(),
        AwsSetupError::NoRegion
    );
    let no_credentials = bare.to_builder().region(Region::new("eu-west-1")).build();
    assert!(matches!(
        AwsCloud::from_conf(&no_credentials, &settings),
        Err(AwsSetupError::NoCredentials(_))
    ));

    for hang in [false, true] {
        let config = no_credentials
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(BrokenCredentials { hang }))
            .build();
        let cloud = AwsCloud::from_conf(&config, &settings).unwrap();
        let err = cloud.check_credentials().await.unwrap_err();
        assert!(matches!(err, AwsSetupError::NoCredentials(_)), "{err}");
        assert!(!err.to_string().contains('\n'), "one line: {err}");
    }

    let good = no_credentials
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        )))
        .build();
    let cloud = AwsCloud::from_conf(&good, &settings).unwrap();
    cloud.check_credentials().await.unwrap();
    assert!(cloud.calls().is_empty());
}
