//! The templates under cfn-lint and on moto's CloudFormation: lint-clean; a `Clusters` value
//! that names no cluster is refused by the template's own constraints (moto does not check
//! parameter constraints: tests/moto/launcher.py's `_load_parameters_checked` makes it, as
//! CloudFormation does); the stack creates, its task role holds exactly the listed grants for
//! the parameters given, its lease table passes the controller's own check, its environment is
//! a valid configuration, and the controller makes a pass over what the stack created; the
//! target role grants the per-account operations to the controller's role. moto's
//! CloudFormation has no `AWS::Logs::MetricFilter`, `AWS::CloudWatch::Alarm` or
//! `AWS::SQS::QueuePolicy`: it skips them (with a warning), so those are checked by cfn-lint
//! and deploy_template.rs only.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;

use ecs_reconciler::audit::AuditSink;
use ecs_reconciler::cloud::aws::operations::{
    IMPLIED, OPERATIONS, Scope, find, granted_actions, target_role_actions,
};
use ecs_reconciler::controller::{Controller, ControllerSettings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::deploy_template::{TARGET_ROLE_TEMPLATE, TEMPLATE, python, root};
use crate::support::fixtures::policies;
use crate::support::moto::Moto;

#[test]
fn cfn_lint_reports_nothing_on_the_templates() {
    let cfn_lint = python().with_file_name("cfn-lint");
    for template in [TEMPLATE, TARGET_ROLE_TEMPLATE] {
        let out = Command::new(&cfn_lint)
            .arg(root().join(template))
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "run {} (scripts/test.sh installs it): {e}",
                    cfn_lint.display()
                )
            });
        assert!(
            out.status.success() && out.stdout.is_empty(),
            "cfn-lint {template}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Creates the stack in this test's moto account; what `cfn_stack.py create` prints.
fn create_stack(moto: &Moto, stack: &str, parameters: Value) -> Value {
    create_stack_of(moto, TEMPLATE, stack, parameters)
}

fn create_stack_of(moto: &Moto, template: &str, stack: &str, parameters: Value) -> Value {
    let out = Command::new(python())
        .arg(root().join("tests/moto/cfn_stack.py"))
        .args(["create", &moto.endpoint(), moto.account_id()])
        .arg(root().join(template))
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

/// The statements of a role's inline policy as IAM holds it, by Sid.
fn statements_by_sid(policy: &Value) -> BTreeMap<String, Value> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        // Gap: moto keeps an `AWS::NoValue` in a list as null; CloudFormation drops it.
        .filter(|s| !s.is_null())
        .map(|s| (s["Sid"].as_str().unwrap().to_string(), s.clone()))
        .collect()
}

fn granted_by(policy: &Value) -> BTreeSet<String> {
    statements_by_sid(policy)
        .values()
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list.iter().map(|a| a.as_str().unwrap().into()).collect(),
            other => panic!("Action {other}"),
        })
        .collect()
}

/// The listed actions (implied ones included) whose scope `keep` keeps.
fn listed_where(keep: impl Fn(Scope) -> bool) -> BTreeSet<String> {
    OPERATIONS
        .iter()
        .filter(|o| keep(o.scope))
        .map(|o| o.action())
        .chain(IMPLIED.iter().filter(|i| keep(i.scope)).map(|i| i.action()))
        .collect()
}

/// The container's environment in the stack's task definition.
fn task_environment(stack: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(stack["taskEnvironment"].clone()).expect("taskEnvironment")
}

/// `plan --sim capacity-short` under the stack's environment: it is a valid configuration,
/// and the controller takes the scenario's group, which carries `ecs-reconciler:managed=true`
/// (the stacks' default `ManagedTagValue`), as opted in, as IAM does: nudged, not held.
fn assert_the_controller_takes(env: &BTreeMap<String, String>) {
    let out = crate::cli::bin()
        .args(["plan", "--sim", "capacity-short", "--output", "json"])
        .envs(env)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    // 2: actions planned (1 would be an error, a refused configuration among them).
    assert_eq!(
        out.status.code(),
        Some(2),
        "{env:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cluster = &plan["clusters"][0];
    let kinds: Vec<&Value> = cluster["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["action"]["kind"])
        .collect();
    assert_eq!(kinds, [&json!("nudgeCapacity")], "{plan}");
    assert!(
        cluster["held"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["guardrail"] != "notManaged"),
        "{plan}"
    );
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
    for (i, table) in ["ab", "my leases"].into_iter().enumerate() {
        let mut p = parameters("web", &subnet, &sg);
        p["LeaseTable"] = json!(table);
        let answer = create_stack(&moto, &format!("lease{i}"), p);
        assert_eq!(answer["status"], "REFUSED", "{table:?}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("Parameter 'LeaseTable'"), "{error}");
    }
}

#[tokio::test]
async fn the_stack_creates_on_moto_and_the_controller_runs_against_it() {
    let moto = Moto::new();
    let (subnet, sg) = moto.default_network().await;
    let targets = [
        "arn:aws:iam::111111111111:role/ecs-reconciler-target",
        "arn:aws:iam::222222222222:role/ecs-reconciler-target",
    ];
    let mut p = parameters("ctl-controller,work-*", &subnet, &sg);
    p["LeaseTable"] = json!("ctl-leases");
    p["TargetRoleArns"] = json!(targets.join(","));
    let stack = create_stack(&moto, "ctl", p);
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
        "Lease",
    ] {
        assert!(created.contains(id), "{id} not created: {created:?}");
    }
    // The stack's table is one the controller accepts at start.
    moto.lease_store("ctl-leases").check(false).await.unwrap();

    // The role IAM holds grants what the code calls, no more: all of it, but CreateTable
    // (the stack creates the table).
    let policy = &stack["taskRolePolicy"];
    let expected: BTreeSet<String> = granted_actions()
        .into_iter()
        .filter(|a| !listed_where(|s| s == Scope::LeaseTableCreate).contains(a))
        .collect();
    assert_eq!(granted_by(policy), expected);
    let by_sid = statements_by_sid(policy);
    assert_eq!(
        by_sid["TheLeaseTableOnly"]["Resource"],
        format!(
            "arn:aws:dynamodb:us-east-1:{}:table/ctl-leases",
            moto.account_id()
        )
    );
    assert_eq!(
        by_sid["AssumeTheTargetRolesOnly"]["Resource"],
        json!(targets)
    );
    let env = task_environment(&stack);
    assert_eq!(
        env.get("ECS_RECONCILER_LEASE__TABLE").map(String::as_str),
        Some("ctl-leases")
    );
    assert!(!env.contains_key("ECS_RECONCILER_LEASE__CREATE_TABLE"));
    assert_the_controller_takes(&env);

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

#[tokio::test]
async fn with_the_controller_creating_the_lease_table_only_its_role_may_create_it() {
    let moto = Moto::new();
    let (subnet, sg) = moto.default_network().await;
    let mut p = parameters("web", &subnet, &sg);
    p["EventsQueue"] = json!("off");
    p["LeaseTable"] = json!("b-leases");
    p["CreateLeaseTable"] = json!("controller");
    p["DesiredCount"] = json!("2");
    let stack = create_stack(&moto, "b", p);
    assert_eq!(stack["status"], "CREATE_COMPLETE", "{stack}");
    let created = stack["resources"].as_object().unwrap();
    for id in ["Lease", "EventQueue"] {
        assert!(!created.contains_key(id), "{id} created: {created:?}");
    }
    // No queue, no targets: the per-account grants and the lease table's, CreateTable included.
    assert_eq!(
        granted_by(&stack["taskRolePolicy"]),
        listed_where(|s| {
            s.in_each_account() || matches!(s, Scope::LeaseTable | Scope::LeaseTableCreate)
        })
    );
    let env = task_environment(&stack);
    assert_eq!(
        env.get("ECS_RECONCILER_LEASE__TABLE").map(String::as_str),
        Some("b-leases")
    );
    assert_eq!(
        env.get("ECS_RECONCILER_LEASE__CREATE_TABLE")
            .map(String::as_str),
        Some("true")
    );
    assert_the_controller_takes(&env);
}

#[tokio::test]
async fn the_target_role_stack_grants_the_per_account_operations_to_the_controller_role() {
    let moto = Moto::new();
    let controller = "arn:aws:iam::123456789012:role/ctl-TaskRole-0A1B2C3D";
    let params = |external_id: Option<&str>, role: &str| {
        let mut p = json!({
            "ControllerRoleArn": controller,
            "RoleName": role,
            "Clusters": "prod-*,web",
            "Regions": "us-east-1,eu-west-1",
        });
        if let Some(id) = external_id {
            p["ExternalId"] = json!(id);
        }
        p
    };
    for (stack, external_id, role) in [
        ("with-id", Some("team-42"), "ecs-reconciler-target"),
        ("without-id", None, "ecs-reconciler-target-2"),
    ] {
        let answer = create_stack_of(
            &moto,
            TARGET_ROLE_TEMPLATE,
            stack,
            params(external_id, role),
        );
        assert_eq!(answer["status"], "CREATE_COMPLETE", "{answer}");
        assert_eq!(
            answer["outputs"]["RoleArn"],
            format!("arn:aws:iam::{}:role/{role}", moto.account_id())
        );
        let policy = &answer["rolePolicies"]["TargetRole"];
        assert_eq!(
            granted_by(policy),
            target_role_actions().into_iter().collect()
        );
        let ecs = &statements_by_sid(policy)["EcsInClustersInScope"]["Condition"];
        assert_eq!(
            ecs["StringEquals"]["aws:RequestedRegion"],
            json!(["us-east-1", "eu-west-1"])
        );
        let trust = &answer["roleTrust"]["TargetRole"]["Statement"];
        assert_eq!(trust[0]["Principal"], json!({"AWS": controller}));
        assert_eq!(trust[0]["Action"], "sts:AssumeRole");
        match external_id {
            Some(id) => assert_eq!(
                trust[0]["Condition"],
                json!({"StringEquals": {"sts:ExternalId": id}})
            ),
            None => assert!(trust[0].get("Condition").is_none(), "{trust}"),
        }
    }
    // The same constraints as the controller's stack.
    for (i, (key, value)) in [
        ("Clusters", "web,,api"),
        ("ControllerRoleArn", "ctl-TaskRole"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut p = params(None, &format!("refused-{i}"));
        p[key] = json!(value);
        let answer = create_stack_of(&moto, TARGET_ROLE_TEMPLATE, &format!("bad{i}"), p);
        assert_eq!(answer["status"], "REFUSED", "{key}={value:?}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(&format!("Parameter '{key}'")), "{error}");
    }
}
