//! The read-only decorator refuses every mutating call before it reaches the account, and lets
//! reads through: a decorator that passed a write through fails here.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ecs_reconciler::cloud::read_only::ReadOnly;
use ecs_reconciler::cloud::sim::build_scenario;
use ecs_reconciler::cloud::{Cloud, CloudError, ErrorCategory};
use ecs_reconciler::domain::{Capacity, DesiredStatus, RunTaskRequest, Tags, TaskOverrides};

const CLUSTER: &str = "demo-capacity";
const GROUP: &str = "demo-asg";

#[tokio::test(start_paused = true)]
async fn every_mutating_call_is_refused_and_never_reaches_the_account() {
    let start = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let sim = Arc::new(
        build_scenario("broken-launch-template", start)
            .expect("scenario exists")
            .0,
    );
    let cloud = ReadOnly::new(Arc::clone(&sim));
    assert!(cloud.refuses_writes());
    assert!(!sim.refuses_writes());

    // Reads pass through, and give real targets for the writes.
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    let task = snapshot
        .tasks
        .iter()
        .find(|t| t.desired_status == DesiredStatus::Running)
        .expect("a running task")
        .arn
        .clone();
    let group = sim.auto_scaling_group(GROUP).expect("the group");
    let instance = group.instances[0].instance_id.clone();
    let container_instance = snapshot.container_instances[0].arn.clone();
    let before = sim.auto_scaling_group(GROUP);
    sim.reset_calls();

    let run = RunTaskRequest {
        task_definition: "app:5".into(),
        overrides: TaskOverrides::default(),
        tags: Tags::new(),
        group: None,
        started_by: None,
        capacity: Capacity::LaunchType("EC2".into()),
        network: None,
        client_token: "read-only-test".into(),
    };
    let tags = Tags::from([("ecs-reconciler/test".to_string(), "x".to_string())]);
    let results: Vec<(&str, Result<(), CloudError>)> = vec![
        ("StopTask", cloud.stop_task(CLUSTER, &task, "test").await),
        ("RunTask", cloud.run_task(CLUSTER, &run).await.map(|_| ())),
        (
            "SetDesiredCapacity",
            cloud.set_desired_capacity(GROUP, 7).await,
        ),
        (
            "UpdateAutoScalingGroup",
            cloud.pin_launch_template_version(GROUP, "lt-any", 1).await,
        ),
        ("CreateOrUpdateTags", cloud.tag_group(GROUP, &tags).await),
        (
            "TerminateInstanceInAutoScalingGroup",
            cloud.terminate_instance(&instance).await,
        ),
        (
            "UpdateContainerInstancesState",
            cloud
                .drain_container_instance(CLUSTER, &container_instance)
                .await,
        ),
    ];
    for (operation, result) in &results {
        let e = result.as_ref().expect_err(operation);
        assert_eq!(e.operation, *operation);
        assert_eq!(e.category, ErrorCategory::Invalid);
        assert!(e.message.contains("dry-run"), "{e}");
    }
    assert_eq!(cloud.refused_writes(), results.len() as u64);
    assert_eq!(sim.mutating_calls(), 0, "{:?}", sim.calls());
    assert!(sim.calls().is_empty(), "{:?}", sim.calls());
    // Nothing changed: the task still runs, the group is as it was.
    assert_eq!(
        sim.task(&task).map(|t| t.desired_status),
        Some(DesiredStatus::Running)
    );
    assert_eq!(sim.auto_scaling_group(GROUP), before);
}
