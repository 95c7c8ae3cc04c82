//! deploy/cloudformation/ecs-reconciler.yaml against the code: its task role grants exactly
//! the actions of `src/cloud/aws/operations.rs`, each with the resource and condition its
//! scope says; its event rules carry deploy/events/patterns.json's patterns; deploy/README.md's
//! IAM table is the list's. The template is read by cfn-lint's own loader (short-form tags),
//! through `tests/moto/cfn_stack.py template-json`, with the Python of the moto tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ecs_reconciler::capacity::tags::MANAGED_TAG_KEY;
use ecs_reconciler::cloud::aws::operations::{
    IMPLIED, OPERATIONS, Scope, granted_actions, iam_markdown,
};
use serde_json::{Value, json};

pub const TEMPLATE: &str = "deploy/cloudformation/ecs-reconciler.yaml";

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with moto, boto3 and cfn-lint (scripts/test.sh installs them into .venv).
pub fn python() -> PathBuf {
    std::env::var_os("MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

/// The template as JSON, short-form tags in their long form (`Fn::Sub`, `Ref`).
pub fn template() -> Value {
    let out = Command::new(python())
        .arg(root().join("tests/moto/cfn_stack.py"))
        .arg("template-json")
        .arg(root().join(TEMPLATE))
        .output()
        .expect("run tests/moto/cfn_stack.py (scripts/test.sh installs cfn-lint into .venv)");
    assert!(
        out.status.success(),
        "template-json failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// The task role's statements; a statement under `Fn::If` is taken with its condition's name.
fn statements(t: &Value) -> Vec<(Option<String>, Value)> {
    let list =
        t["Resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array()
            .expect("the task role's statements")
            .clone();
    list.into_iter()
        .map(|s| match s.get("Fn::If") {
            Some(branches) => (
                branches[0].as_str().map(str::to_string),
                branches[1].clone(),
            ),
            None => (None, s),
        })
        .collect()
}

fn actions(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(list) => list
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect(),
        other => panic!("Action {other}"),
    }
}

/// The statement (Sid) each scope's grants go in.
fn sid_of(scope: Scope) -> &'static str {
    match scope {
        Scope::EcsCluster => "EcsInClustersInScope",
        Scope::ClusterArn => "EcsClustersInScope",
        Scope::Ec2Instance => "BootOutputOfInstances",
        Scope::ManagedGroup => "WritesOnOptedInGroupsOnly",
        Scope::ManagedGroupOwnTags => "OwnTagsOnOptedInGroupsOnly",
        Scope::TagOnRunTask => "EcsTagsOnlyOnTasksItStarts",
        Scope::PassToTasksAndInstances => "PassRolesToEcsTasksAndInstancesOnly",
        Scope::LaunchFromTemplate => "LaunchOnlyFromLaunchTemplates",
        Scope::TagOnRunInstances => "TagsOnlyAtLaunch",
        Scope::EventsQueue => "TheEventsQueueOnly",
        Scope::Unscoped => "UnscopableReads",
    }
}

#[test]
fn the_task_role_grants_exactly_the_listed_operations_both_ways() {
    let t = template();
    let granted: Vec<String> = statements(&t)
        .iter()
        .flat_map(|(_, s)| actions(s))
        .collect();
    let unique: BTreeSet<&String> = granted.iter().collect();
    assert_eq!(
        unique.len(),
        granted.len(),
        "an action granted twice: {granted:?}"
    );
    let listed: BTreeSet<String> = granted_actions().into_iter().collect();
    let granted: BTreeSet<String> = granted.into_iter().collect();
    let uncalled: Vec<_> = granted.difference(&listed).collect();
    let ungranted: Vec<_> = listed.difference(&granted).collect();
    assert!(
        uncalled.is_empty(),
        "granted, never used by the code: {uncalled:?}"
    );
    assert!(
        ungranted.is_empty(),
        "called without a grant: {ungranted:?}"
    );
}

#[test]
fn each_grant_carries_the_resource_and_condition_of_its_scope() {
    let t = template();
    let by_sid: BTreeMap<String, (Option<String>, Value)> = statements(&t)
        .into_iter()
        .map(|(cond, s)| (s["Sid"].as_str().unwrap().to_string(), (cond, s)))
        .collect();
    let scopes = OPERATIONS
        .iter()
        .map(|o| (o.action(), o.scope))
        .chain(IMPLIED.iter().map(|i| (i.action(), i.scope)));
    for (action, scope) in scopes {
        let (_, s) = &by_sid[sid_of(scope)];
        assert!(
            actions(s).contains(&action),
            "{action} not in {}",
            sid_of(scope)
        );
    }
    let condition = |sid: &str| by_sid[sid].1["Condition"].clone();
    let ecs = condition("EcsInClustersInScope");
    assert!(
        ecs["ArnLike"]["ecs:cluster"].get("Fn::Split").is_some(),
        "{ecs}"
    );
    assert_eq!(
        ecs["StringEquals"]["aws:RequestedRegion"],
        json!({"Ref": "AWS::Region"})
    );
    let tag = format!("aws:ResourceTag/{MANAGED_TAG_KEY}");
    for sid in ["WritesOnOptedInGroupsOnly", "OwnTagsOnOptedInGroupsOnly"] {
        assert_eq!(
            condition(sid)["StringEquals"][&tag],
            json!({"Ref": "ManagedTagValue"}),
            "{sid}"
        );
        assert_eq!(by_sid[sid].1["Resource"], "*");
    }
    assert_eq!(
        condition("OwnTagsOnOptedInGroupsOnly")["ForAllValues:StringLike"]["aws:TagKeys"],
        json!(["ecs-reconciler/*"])
    );
    assert_eq!(
        condition("PassRolesToEcsTasksAndInstancesOnly")["StringEquals"]["iam:PassedToService"],
        json!(["ecs-tasks.amazonaws.com", "ec2.amazonaws.com"])
    );
    assert_eq!(
        condition("TagsOnlyAtLaunch")["StringEquals"]["ec2:CreateAction"],
        "RunInstances"
    );
    assert!(
        condition("LaunchOnlyFromLaunchTemplates")["ArnLike"]["ec2:LaunchTemplate"]["Fn::Sub"]
            .as_str()
            .is_some_and(|arn| arn.ends_with(":launch-template/*"))
    );
    assert_eq!(
        condition("EcsTagsOnlyOnTasksItStarts")["StringEquals"]["ecs:CreateAction"],
        "RunTask"
    );
    let (queue_condition, queue) = &by_sid["TheEventsQueueOnly"];
    assert_eq!(queue_condition.as_deref(), Some("EventsOn"));
    assert_eq!(
        queue["Resource"],
        json!({"Fn::GetAtt": ["EventQueue", "Arn"]})
    );
    assert!(by_sid["UnscopableReads"].1.get("Condition").is_none());
    // Nothing else is granted on "*" without a condition.
    for (sid, (_, s)) in &by_sid {
        if s["Resource"] == "*" && s.get("Condition").is_none() {
            assert_eq!(sid, "UnscopableReads");
        }
    }
}

#[test]
fn the_controller_is_told_the_tag_iam_checks() {
    let t = template();
    let env =
        t["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]
            .as_array()
            .unwrap()
            .clone();
    let value = |name: &str| {
        env.iter()
            .find(|e| e["Name"] == name)
            .map(|e| e["Value"].clone())
            .unwrap_or_else(|| panic!("{name} not set"))
    };
    assert_eq!(value("ECS_RECONCILER_MANAGED_TAG__KEY"), MANAGED_TAG_KEY);
    assert_eq!(
        value("ECS_RECONCILER_MANAGED_TAG__VALUE"),
        json!({"Ref": "ManagedTagValue"})
    );
    assert_eq!(value("ECS_RECONCILER_LOG_FORMAT"), "json");
}

#[test]
fn the_event_rules_carry_the_patterns_file_patterns() {
    let t = template();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/events/patterns.json")).unwrap(),
    )
    .unwrap();
    let mut expected: BTreeMap<String, Value> = file
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut found = BTreeMap::new();
    for (id, r) in t["Resources"].as_object().unwrap() {
        if r["Type"] == "AWS::Events::Rule" {
            assert_eq!(r["Condition"], "EventsOn", "{id}");
            let key = r["Properties"]["Description"].as_str().unwrap().to_string();
            found.insert(key, r["Properties"]["EventPattern"].clone());
        }
    }
    assert!(!expected.is_empty());
    assert_eq!(found, std::mem::take(&mut expected));
}

#[test]
fn the_readme_iam_section_is_the_operations_list() {
    let readme = std::fs::read_to_string(root().join("deploy/README.md")).unwrap();
    let table = iam_markdown();
    assert!(
        readme.contains(&table),
        "deploy/README.md's IAM table differs from operations::iam_markdown(); paste:\n{table}"
    );
}

#[test]
fn the_image_and_the_template_agree_on_paths_and_health_check() {
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let t = template();
    let container = &t["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    assert_eq!(
        container["HealthCheck"]["Command"],
        json!(["CMD", "/usr/local/bin/ecs-reconciler", "health"])
    );
    assert!(dockerfile.contains("/usr/local/bin/ecs-reconciler"));
    assert!(dockerfile.contains("/etc/ecs-reconciler/policies"));
    let enforce = &container["Command"]["Fn::If"][1];
    assert_eq!(
        enforce,
        &json!(["run", "--policies", "/etc/ecs-reconciler/policies"])
    );
}

#[test]
fn the_queue_policy_is_the_queue_policy_file_and_matches_the_rules() {
    let t = template();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/events/queue-policy.json")).unwrap(),
    )
    .unwrap();
    let resource = &t["Resources"]["EventQueuePolicy"];
    assert_eq!(resource["Condition"], "EventsOn");
    let mut statement = resource["Properties"]["PolicyDocument"]["Statement"][0].clone();
    // The file's placeholders, as the template fills them.
    assert_eq!(
        statement["Resource"],
        json!({"Fn::GetAtt": ["EventQueue", "Arn"]})
    );
    statement["Resource"] = json!("${QueueArn}");
    let source = &mut statement["Condition"]["ArnLike"]["aws:SourceArn"];
    let sub = source["Fn::Sub"].as_str().expect("a !Sub").to_string();
    *source = json!(
        sub.replace("${AWS::Partition}", "${Partition}")
            .replace("${AWS::Region}", "${Region}")
            .replace("${AWS::AccountId}", "${Account}")
    );
    assert_eq!(statement, file["Statement"][0]);
    // Every rule's name falls under the policy's rule/ecs-reconciler-* (or its events are dropped).
    for (id, r) in t["Resources"].as_object().unwrap() {
        if r["Type"] == "AWS::Events::Rule" {
            let name = r["Properties"]["Name"]["Fn::Sub"].as_str().unwrap();
            assert!(name.starts_with("ecs-reconciler-"), "{id}: {name}");
            assert_eq!(
                r["Properties"]["Targets"][0]["Arn"],
                json!({"Fn::GetAtt": ["EventQueue", "Arn"]}),
                "{id}"
            );
        }
    }
}
