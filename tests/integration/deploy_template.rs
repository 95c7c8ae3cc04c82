//! deploy/cloudformation/ecs-reconciler.yaml against the code: its task role grants exactly
//! the actions of `src/cloud/aws/operations.rs`, each with the resource and condition its
//! scope says; its event rules carry deploy/events/patterns.json's patterns; its lease table
//! has the key the lease store checks; deploy/README.md's IAM table is the list's. And
//! deploy/cloudformation/target-role.yaml: the task role's per-account statements, for the
//! Regions of its account, trusted by the task role only. The templates are read by
//! cfn-lint's own loader (short-form tags), through `tests/moto/cfn_stack.py template-json`,
//! with the Python of the moto tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ecs_reconciler::capacity::tags::MANAGED_TAG_KEY;
use ecs_reconciler::cloud::aws::leases;
use ecs_reconciler::cloud::aws::operations::{
    IMPLIED, OPERATIONS, Scope, granted_actions, iam_markdown, target_role_actions,
};
use serde_json::{Value, json};

pub const TEMPLATE: &str = "deploy/cloudformation/ecs-reconciler.yaml";
pub const TARGET_ROLE_TEMPLATE: &str = "deploy/cloudformation/target-role.yaml";

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with moto, boto3 and cfn-lint (scripts/test.sh installs them into .venv).
pub fn python() -> PathBuf {
    std::env::var_os("MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

/// The controller's template as JSON, short-form tags in their long form (`Fn::Sub`, `Ref`).
pub fn template() -> Value {
    template_at(TEMPLATE)
}

/// A template of `deploy/cloudformation/` as JSON.
pub fn template_at(path: &str) -> Value {
    let out = Command::new(python())
        .arg(root().join("tests/moto/cfn_stack.py"))
        .arg("template-json")
        .arg(root().join(path))
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
    role_statements(t, "TaskRole")
}

/// The statements of the role `role`'s inline policy.
fn role_statements(t: &Value, role: &str) -> Vec<(Option<String>, Value)> {
    let list = t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap_or_else(|| panic!("the statements of {role}"))
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
        Scope::LeaseTable => "TheLeaseTableOnly",
        Scope::LeaseTableCreate => "CreateTheLeaseTableOnly",
        Scope::TargetRoles => "AssumeTheTargetRolesOnly",
        Scope::Unscoped => "UnscopableReads",
    }
}

/// Each listed action with its scope, the implied ones included.
fn scoped_actions() -> Vec<(String, Scope)> {
    OPERATIONS
        .iter()
        .map(|o| (o.action(), o.scope))
        .chain(IMPLIED.iter().map(|i| (i.action(), i.scope)))
        .collect()
}

/// The environment variables the container gets: (condition, name, value).
fn environment(t: &Value) -> Vec<(Option<String>, String, Value)> {
    t["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e.get("Fn::If") {
            Some(branches) => (
                branches[0].as_str().map(str::to_string),
                branches[1]["Name"].as_str().unwrap().to_string(),
                branches[1]["Value"].clone(),
            ),
            None => (
                None,
                e["Name"].as_str().unwrap().to_string(),
                e["Value"].clone(),
            ),
        })
        .collect()
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
    for (action, scope) in scoped_actions() {
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
    // The lease table's grants: on its ARN, CreateTable only when the controller creates it.
    let table_arn = json!({
        "Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${LeaseTable}"
    });
    for (sid, when) in [
        ("TheLeaseTableOnly", "LeaseOn"),
        ("CreateTheLeaseTableOnly", "ControllerCreatesLease"),
    ] {
        let (condition, s) = &by_sid[sid];
        assert_eq!(condition.as_deref(), Some(when), "{sid}");
        assert_eq!(s["Resource"], table_arn, "{sid}");
    }
    let (targets_condition, targets) = &by_sid["AssumeTheTargetRolesOnly"];
    assert_eq!(targets_condition.as_deref(), Some("HasTargets"));
    assert_eq!(targets["Resource"], json!({"Ref": "TargetRoleArns"}));
    let conditions = &t["Conditions"];
    assert_eq!(
        conditions["ControllerCreatesLease"]["Fn::And"][0],
        json!({"Condition": "LeaseOn"})
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
    // Quoted, so that the environment's parser keeps `true` a string.
    assert_eq!(
        value("ECS_RECONCILER_MANAGED_TAG__VALUE"),
        json!({"Fn::Sub": "\"${ManagedTagValue}\""})
    );
    assert_eq!(value("ECS_RECONCILER_LOG_FORMAT"), "json");
}

#[test]
fn the_controller_is_told_the_lease_table_its_role_may_use() {
    let t = template();
    let env = environment(&t);
    let told = |name: &str| {
        env.iter()
            .find(|(_, n, _)| n == name)
            .map(|(condition, _, value)| (condition.clone(), value.clone()))
            .unwrap_or_else(|| panic!("{name} not set"))
    };
    let grant_condition = |sid: &str| {
        statements(&t)
            .into_iter()
            .find(|(_, s)| s["Sid"] == sid)
            .and_then(|(condition, _)| condition)
            .unwrap()
    };
    // lease.table exactly when the role may use the table; the stack's own table by its Ref,
    // so that the task waits for it.
    let (condition, value) = told("ECS_RECONCILER_LEASE__TABLE");
    assert_eq!(condition, Some(grant_condition("TheLeaseTableOnly")));
    assert_eq!(
        value,
        json!({"Fn::If": ["StackCreatesLease", {"Ref": "Lease"}, {"Ref": "LeaseTable"}]})
    );
    // lease.create_table exactly when the role may create it.
    let (condition, value) = told("ECS_RECONCILER_LEASE__CREATE_TABLE");
    assert_eq!(condition, Some(grant_condition("CreateTheLeaseTableOnly")));
    assert_eq!(value, "true");

    // The stack's table has the key the lease store checks.
    let lease = &t["Resources"]["Lease"];
    assert_eq!(lease["Type"], "AWS::DynamoDB::Table");
    assert_eq!(lease["Condition"], "StackCreatesLease");
    assert_eq!(lease["DeletionPolicy"], "Retain");
    let p = &lease["Properties"];
    assert_eq!(p["TableName"], json!({"Ref": "LeaseTable"}));
    assert_eq!(p["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        p["KeySchema"],
        json!([{"AttributeName": leases::KEY, "KeyType": "HASH"}])
    );
    assert_eq!(
        p["AttributeDefinitions"],
        json!([{"AttributeName": leases::KEY, "AttributeType": "S"}])
    );
    // More than one task only with a lease table: the rule asks what LeaseOn asks.
    let rule = &t["Rules"]["ReplicasNeedALease"]["Assertions"][0]["Assert"];
    assert!(
        rule["Fn::Or"]
            .as_array()
            .unwrap()
            .contains(&t["Conditions"]["LeaseOn"]),
        "{rule}"
    );
}

/// `statement` of target-role.yaml as the task role has it: the stack's Region for the
/// account's Regions.
fn as_in_the_task_role(statement: &Value) -> Value {
    let text = statement
        .to_string()
        .replace(r#"{"Ref":"Regions"}"#, r#"{"Ref":"AWS::Region"}"#)
        .replace(
            ":ec2:*:${AWS::AccountId}:",
            ":ec2:${AWS::Region}:${AWS::AccountId}:",
        );
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_target_role_grants_the_per_account_operations_as_the_task_role_does() {
    let target = role_statements(&template_at(TARGET_ROLE_TEMPLATE), "TargetRole");
    let granted: Vec<String> = target.iter().flat_map(|(_, s)| actions(s)).collect();
    let unique: BTreeSet<&String> = granted.iter().collect();
    assert_eq!(unique.len(), granted.len(), "granted twice: {granted:?}");
    assert_eq!(
        unique.into_iter().cloned().collect::<Vec<_>>(),
        target_role_actions()
    );
    // Not the queue, the lease table or assuming roles: those are the controller's account's.
    assert!(
        granted.iter().all(|a| ["sqs:", "dynamodb:", "sts:"]
            .iter()
            .all(|p| !a.starts_with(p))),
        "{granted:?}"
    );
    let task: BTreeMap<String, Value> = statements(&template())
        .into_iter()
        .map(|(_, s)| (s["Sid"].as_str().unwrap().to_string(), s))
        .collect();
    for (condition, s) in &target {
        assert_eq!(condition, &None, "{s}");
        let sid = s["Sid"].as_str().unwrap();
        assert_eq!(as_in_the_task_role(s), task[sid], "{sid}");
    }
    for (action, scope) in scoped_actions() {
        if scope.in_each_account() {
            let (_, s) = target
                .iter()
                .find(|(_, s)| s["Sid"] == sid_of(scope))
                .unwrap_or_else(|| panic!("no {}", sid_of(scope)));
            assert!(actions(s).contains(&action), "{action}");
        }
    }
}

#[test]
fn the_target_role_trusts_the_controller_s_role_with_the_external_id_if_any() {
    let t = template_at(TARGET_ROLE_TEMPLATE);
    let role = &t["Resources"]["TargetRole"]["Properties"];
    let trust = role["AssumeRolePolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    let [statement] = trust.as_slice() else {
        panic!("one trust statement: {trust:?}")
    };
    assert_eq!(
        statement["Principal"],
        json!({"AWS": {"Ref": "ControllerRoleArn"}})
    );
    assert_eq!(statement["Action"], "sts:AssumeRole");
    assert_eq!(
        statement["Condition"],
        json!({"Fn::If": [
            "HasExternalId",
            {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}},
            {"Ref": "AWS::NoValue"}
        ]})
    );
    assert_eq!(
        t["Conditions"]["HasExternalId"],
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "ExternalId"}, ""]}]})
    );
    // The same opt-in tag parameter and cluster constraint as the controller's stack.
    let main = template();
    for parameter in ["Clusters", "ManagedTagValue"] {
        let mut ours = t["Parameters"][parameter].clone();
        let mut theirs = main["Parameters"][parameter].clone();
        for p in [&mut ours, &mut theirs] {
            p.as_object_mut().unwrap().remove("Description");
        }
        assert_eq!(ours, theirs, "{parameter}");
    }
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
