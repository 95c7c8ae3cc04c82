//! The whole controller against the real AWS SDK adapter and moto: enforce acts, dry run
//! makes no mutating call (counted on the wire), a denied stop is recorded and the pass goes on,
//! and a standalone replacement happens once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ecs::types::{ContainerDefinition, LaunchType};
use ecs_reconciler::audit::{AuditRecord, AuditSink, Outcome};
use ecs_reconciler::cloud::Cloud;
use ecs_reconciler::cloud::aws::AwsCloud;
use ecs_reconciler::cloud::read_only::ReadOnly;
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::domain::DesiredStatus;
use ecs_reconciler::history::REPLACES_TAG;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support::fixtures::policies;
use crate::support::moto::Moto;

const CLUSTER: &str = "ctl-web";

const POLICY: &str = "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {name: \
                      ctl}\nspec:\n  target: {clusters: [ctl-*], standalone: true}\n  stuck: \
                      {PROVISIONING: 10m}\n  remediate: {replaceTask: {standalone: true}}\n  \
                      guardrails: {maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}\n";

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A cluster with service `web` (desired 3) and three FARGATE tasks in its group, one of them
/// stuck in PROVISIONING for 20 minutes; plus, with `standalone`, a stuck standalone task.
/// Returns (stuck service task, stuck standalone task).
async fn arrange(moto: &Moto, standalone: bool) -> (String, Option<String>) {
    let ecs = moto.ecs();
    ecs.create_cluster()
        .cluster_name(CLUSTER)
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
        .desired_count(3)
        .send()
        .await
        .unwrap();
    let run = |group: &'static str| {
        let ecs = ecs.clone();
        async move {
            ecs.run_task()
                .cluster(CLUSTER)
                .task_definition("web")
                .launch_type(LaunchType::Fargate)
                .group(group)
                .send()
                .await
                .unwrap()
                .tasks()[0]
                .task_arn()
                .unwrap()
                .to_string()
        }
    };
    let stuck = run("service:web").await;
    run("service:web").await;
    run("service:web").await;
    let twenty_minutes_ago = epoch_secs(SystemTime::now() - Duration::from_secs(20 * 60));
    moto.set_task_state(
        CLUSTER,
        &stuck,
        json!({"lastStatus": "PROVISIONING", "createdAt": twenty_minutes_ago}),
    )
    .await;
    let job = if standalone {
        let job = run("batch:nightly").await;
        moto.set_task_state(
            CLUSTER,
            &job,
            json!({"lastStatus": "PROVISIONING", "createdAt": twenty_minutes_ago}),
        )
        .await;
        Some(job)
    } else {
        None
    };
    (stuck, job)
}

fn controller<C: Cloud>(cloud: C, dry_run: bool) -> Arc<Controller<C>> {
    Arc::new(Controller::new(
        cloud,
        policies(POLICY),
        ControllerSettings {
            dry_run,
            ..ControllerSettings::default()
        },
        AuditSink::memory(),
    ))
}

/// The records but the intents (`started`, written before the calls; audit_trail.rs checks
/// that each is paired with its outcome).
fn outcome_records(c: &Controller<impl Cloud>) -> Vec<AuditRecord> {
    let mut records = c.audit().records();
    records.retain(|r| r.outcome != Outcome::Started);
    records
}

fn mutating(cloud: &AwsCloud) -> u64 {
    cloud
        .calls()
        .iter()
        .filter(|(op, _)| {
            !op.starts_with("Describe") && !op.starts_with("List") && !op.starts_with("Get")
        })
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test]
async fn enforce_stops_the_stuck_service_task_once() {
    let moto = Moto::new();
    let (stuck, _) = arrange(&moto, false).await;
    let c = controller(moto.cloud().await, false);
    let token = CancellationToken::new();
    let report = c.pass(&token).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    c.pass(&token).await;
    assert_eq!(c.cloud().calls().get("StopTask"), Some(&1));
    let records = outcome_records(&c);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome.to_string(), "done");
    assert_eq!(records[0].target, stuck);
    let described = moto
        .ecs()
        .describe_tasks()
        .cluster(CLUSTER)
        .tasks(&stuck)
        .send()
        .await
        .unwrap();
    let t = &described.tasks()[0];
    assert_eq!(t.desired_status(), Some("STOPPED"));
    assert!(
        t.stopped_reason().unwrap().starts_with(
            "ecs-reconciler[stuck:PROVISIONING policy=ctl]: stuck in PROVISIONING for 20m"
        ),
        "{:?}",
        t.stopped_reason()
    );
}

#[tokio::test]
async fn dry_run_sends_no_mutating_call() {
    let moto = Moto::new();
    let (stuck, job) = arrange(&moto, true).await;
    let read_only = Arc::new(ReadOnly::new(moto.cloud().await));
    let c = controller(Arc::clone(&read_only), true);
    let token = CancellationToken::new();
    let report = c.pass(&token).await;
    c.pass(&token).await;
    assert_eq!(report.action_count(), 2);
    assert_eq!(
        mutating(read_only.inner()),
        0,
        "{:?}",
        read_only.inner().calls()
    );
    assert_eq!(read_only.refused_writes(), 0);
    let records = c.audit().records();
    let planned: Vec<_> = records
        .iter()
        .map(|r| (r.target.clone(), r.outcome.to_string(), r.mode))
        .collect();
    assert_eq!(planned.len(), 2, "each plan recorded once: {planned:?}");
    assert!(planned.contains(&(stuck, "planned".into(), "dry-run")));
    assert!(planned.contains(&(job.unwrap(), "planned".into(), "dry-run")));
}

#[tokio::test]
async fn a_denied_stop_is_recorded_and_the_pass_goes_on() {
    let moto = Moto::new();
    let (_, job) = arrange(&moto, true).await;
    moto.inject_fault("StopTask", "AccessDeniedException", 400)
        .await;
    let c = controller(moto.cloud().await, false);
    let report = c.pass(&CancellationToken::new()).await;
    assert!(report.errors.is_empty());
    let records = outcome_records(&c);
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records
            .iter()
            .all(|r| r.outcome.to_string() == "failed:denied")
    );
    let standalone = records
        .iter()
        .find(|r| Some(&r.target) == job.as_ref())
        .unwrap();
    assert!(
        standalone
            .detail
            .as_deref()
            .unwrap()
            .contains("nothing was started"),
        "{:?}",
        standalone.detail
    );
    assert_eq!(
        c.cloud().calls().get("RunTask"),
        None,
        "no RunTask after a failed stop"
    );
}

#[tokio::test]
async fn a_standalone_task_is_replaced_once_across_passes_and_restarts() {
    let moto = Moto::new();
    let (_, job) = arrange(&moto, true).await;
    let job = job.unwrap();
    let first = controller(moto.cloud().await, false);
    let token = CancellationToken::new();
    first.pass(&token).await;
    first.pass(&token).await;
    assert_eq!(first.cloud().calls().get("RunTask"), Some(&1));
    // A fresh process finds the replacement by its tag and does nothing.
    let second = controller(moto.cloud().await, false);
    second.pass(&token).await;
    assert_eq!(second.cloud().calls().get("RunTask"), None);
    assert_eq!(second.cloud().calls().get("StopTask"), None);
    let snapshot = second.cloud().observe_cluster(CLUSTER).await.unwrap();
    let job_id = job.rsplit('/').next().unwrap();
    let replacements: Vec<_> = snapshot
        .tasks
        .iter()
        .filter(|t| t.tags.get(REPLACES_TAG).map(|v| v.as_str()) == Some(job_id))
        .collect();
    assert_eq!(replacements.len(), 1);
    assert_eq!(replacements[0].group.as_deref(), Some("batch:nightly"));
    assert_eq!(replacements[0].desired_status, DesiredStatus::Running);
}
