//! The template under cfn-lint and on moto's CloudFormation: lint-clean; a `Clusters` value that
//! names no cluster is refused by the template's own constraints (moto does not check parameter
//! constraints: tests/moto/launcher.py's `_load_parameters_checked` makes it, as CloudFormation
//! does); and the stack creates, its task role holds exactly the listed grants, and the
//! controller makes a pass over what the stack created. moto's CloudFormation has no
//! `AWS::Logs::MetricFilter`, `AWS::CloudWatch::Alarm` or `AWS::SQS::QueuePolicy`: it skips
//! them (with a warning), so those are checked by cfn-lint and deploy_template.rs only.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use ecs_reconciler::audit::AuditSink;
use ecs_reconciler::cloud::aws::operations::{find, granted_actions};
use ecs_reconciler::controller::{Controller, ControllerSettings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::deploy_template::{TEMPLATE, python, root};
use crate::support::fixtures::policies;
use crate::support::moto::Moto;

#[test]
fn cfn_lint_reports_nothing_on_the_template() {
    let cfn_lint = python().with_file_name("cfn-lint");
    let out = Command::new(&cfn_lint)
        .arg(root().join(TEMPLATE))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "run {} (scripts/test.sh installs it): {e}",
                cfn_lint.display()
            )
        });
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "cfn-lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates the stack in this test's moto account; what `cfn_stack.py create` prints.
fn create_stack(moto: &Moto, stack: &str, parameters: Value) -> Value {
    let out = Command::new(python())
        .arg(root().join("tests/moto/cfn_stack.py"))
        .args(["create", &moto.endpoint(), moto.account_id()])
        .arg(root().join(TEMPLATE))
        .arg(stack)
        .arg(parameters.to_string())
        .output()
        .expect("run tests/moto/cfn_stack.py");
    assert!(
        out.status.success(),
        "cfn_stack.py create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn parameters(clusters: &str, subnet: &str, security_group: &str) -> Value {
    json!({
        "Clusters": clusters,
        "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ecs-reconciler:git-3f1c0a9",
        "Subnets": subnet,
        "SecurityGroups": security_group,
        "EventsQueue": "on",
    })
}

#[tokio::test]
async fn a_clusters_parameter_naming_no_cluster_is_refused_by_the_template() {
    let moto = Moto::new();
    let (subnet, sg) = moto.default_network().await;
    for (i, clusters) in ["", ",", "web,,api", "web,", "prod web"]
        .into_iter()
        .enumerate()
    {
        let answer = create_stack(
            &moto,
            &format!("bad{i}"),
            parameters(clusters, &subnet, &sg),
        );
        assert_eq!(answer["status"], "REFUSED", "{clusters:?}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("Parameter 'Clusters'"), "{error}");
        assert!(error.contains("must name at least one cluster"), "{error}");
    }
}

#[tokio::test]
async fn the_stack_creates_on_moto_and_the_controller_runs_against_it() {
    let moto = Moto::new();
    let (subnet, sg) = moto.default_network().await;
    let stack = create_stack(
        &moto,
        "ctl",
        parameters("ctl-controller,work-*", &subnet, &sg),
    );
    assert_eq!(stack["status"], "CREATE_COMPLETE", "{stack}");
    let created: BTreeSet<&str> = stack["resources"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for id in [
        "ControllerCluster",
        "LogGroup",
        "ExecutionRole",
        "TaskRole",
        "TaskDefinition",
        "Service",
        "EventQueue",
        "TaskStateChangeRule",
        "ContainerInstanceStateChangeRule",
        "ServiceActionRule",
        "AutoScalingRule",
    ] {
        assert!(created.contains(id), "{id} not created: {created:?}");
    }
    assert!(!created.contains("Lease"), "LeaseTable is off by default");

    // The role IAM holds grants what the code calls, no more.
    let granted: BTreeSet<String> = stack["taskRolePolicy"]["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list.iter().map(|a| a.as_str().unwrap().into()).collect(),
            other => panic!("Action {other}"),
        })
        .collect();
    assert_eq!(granted, granted_actions().into_iter().collect());

    // A pass over the cluster the stack made: its service is observed, nothing fails.
    let cloud = moto.cloud().await;
    let policy = "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {name: ctl}\n\
                  spec:\n  target: {clusters: [ctl-controller]}\n  stuck: {PROVISIONING: 10m}\n  \
                  remediate: {replaceTask: {}}\n";
    let controller = Arc::new(Controller::new(
        cloud,
        policies(policy),
        ControllerSettings {
            dry_run: true,
            ..ControllerSettings::default()
        },
        AuditSink::memory(),
    ));
    let report = controller.pass(&CancellationToken::new()).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let [cluster] = report.clusters.as_slice() else {
        panic!("one cluster in scope: {:?}", report.clusters.len())
    };
    assert_eq!(cluster.cluster, "ctl-controller");
    let service = cluster
        .snapshot
        .services
        .iter()
        .find(|s| s.name == "ecs-reconciler")
        .expect("the stack's service is observed");
    assert_eq!(service.desired_count, 1);
    assert!(
        cluster.snapshot.gaps.is_empty(),
        "{:?}",
        cluster.snapshot.gaps
    );
    // Every operation the pass sent is in the list (and so granted).
    for operation in controller.cloud().calls().keys() {
        assert!(
            find(operation).is_some(),
            "{operation} is not in operations.rs"
        );
    }
}
