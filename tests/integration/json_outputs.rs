//! The JSON outputs are an interface: what `plan --output json` writes and every audit record
//! validate against the schemas `ecs-reconciler schema --of plan|audit` prints, and records
//! that break the contract (a field of the wrong type, a missing or unknown field) do not.

use std::path::Path;

use serde_json::Value;

use crate::cli_output::{bin, text};

/// The schema `schema --of which` prints, compiled.
fn validator(which: &str) -> jsonschema::Validator {
    let out = bin().args(["schema", "--of", which]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let schema: Value = serde_json::from_slice(&out.stdout).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema compiles")
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\nin {doc:#}");
}

/// The audit records `run --once --sim broken-launch-template` writes, with `extra` flags.
fn audit_records(extra: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let out = bin()
        .args(["run", "--once", "--sim", "broken-launch-template"])
        .args(extra)
        .arg("--audit-log")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    records_in(&file)
}

fn records_in(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect()
}

fn outcomes(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .filter_map(|r| r["outcome"].as_str())
        .collect()
}

#[test]
fn plan_json_validates_against_the_plan_schema() {
    let out = bin()
        .args([
            "plan",
            "--sim",
            "broken-launch-template",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions = &doc["clusters"][0]["actions"];
    assert!(
        actions.as_array().is_some_and(|a| !a.is_empty()),
        "the plan has actions to check: {doc:#}"
    );
    assert_valid(&validator("plan"), &doc);
}

#[test]
fn the_plan_json_of_every_scenario_validates() {
    let v = validator("plan");
    for scenario in ecs_reconciler::cloud::sim::scenario_names() {
        let out = bin()
            .args(["plan", "--sim", scenario, "--output", "json"])
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "{scenario}: {}",
            text(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_valid(&v, &doc);
    }
}

#[test]
fn a_broken_plan_document_does_not_validate() {
    let v = validator("plan");
    let out = bin()
        .args([
            "plan",
            "--sim",
            "broken-launch-template",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut wrong_type = doc.clone();
    wrong_type["clusters"][0]["tasks"] = "many".into();
    assert!(!v.is_valid(&wrong_type), "tasks must be a number");
    let mut wrong_mode = doc.clone();
    wrong_mode["clusters"][0]["actions"][0]["mode"] = "audit".into();
    assert!(!v.is_valid(&wrong_mode), "mode is dry-run or enforce");
    let mut wrong_cause = doc.clone();
    let cause = &mut wrong_cause["clusters"][0]["capacity"][0]["cause"]["kind"];
    assert!(
        cause.is_string(),
        "the seed story has a capacity cause: {doc}"
    );
    *cause = "gremlins".into();
    assert!(
        !v.is_valid(&wrong_cause),
        "a capacity cause is one of the known kinds"
    );
    let mut wrong_root = doc.clone();
    let code = &mut wrong_root["clusters"][0]["capacity"][0]["rootCauses"][0]["code"];
    assert!(code.is_string(), "the seed story has a root cause: {doc}");
    *code = "bootGremlins".into();
    assert!(
        !v.is_valid(&wrong_root),
        "a root cause code is one of the catalogue's"
    );
    let mut missing = doc;
    missing.as_object_mut().unwrap().remove("errors");
    assert!(!v.is_valid(&missing), "errors is required");
}

#[test]
fn every_audit_record_of_a_run_validates_against_the_audit_schema() {
    let v = validator("audit");
    let records = audit_records(&[]);
    let seen = outcomes(&records);
    assert!(
        seen.contains(&"started") && seen.contains(&"done"),
        "{seen:?}"
    );
    for record in &records {
        assert_valid(&v, record);
    }
}

#[test]
fn every_audit_record_of_a_dry_run_validates_against_the_audit_schema() {
    let v = validator("audit");
    let records = audit_records(&["--dry-run"]);
    let seen = outcomes(&records);
    assert!(seen.contains(&"planned"), "{seen:?}");
    for record in &records {
        assert_eq!(record["mode"], "dry-run", "{record}");
        assert_valid(&v, record);
    }
}

/// A way to break a record, in place.
type Breaks = fn(&mut serde_json::Map<String, Value>);

#[test]
fn a_broken_audit_record_does_not_validate() {
    let v = validator("audit");
    let record = audit_records(&["--dry-run"]).remove(0);
    assert_valid(&v, &record);
    let broken: [(&str, Breaks); 5] = [
        ("time is a string", |r| {
            r.insert("time".into(), 1_700_000_000.into());
        }),
        ("outcome is required", |r| {
            r.remove("outcome");
        }),
        ("outcome is one of the known forms", |r| {
            r.insert("outcome".into(), "maybe".into());
        }),
        ("evidence values are strings", |r| {
            r.insert("evidence".into(), serde_json::json!({"waited": 14}));
        }),
        ("no unknown fields", |r| {
            r.insert("outcomes".into(), "done".into());
        }),
    ];
    for (rule, breaks) in broken {
        let mut bad = record.clone();
        breaks(bad.as_object_mut().unwrap());
        assert!(!v.is_valid(&bad), "{rule}: {bad}");
    }
}

#[test]
fn schema_prints_the_policy_schema_by_default() {
    let default = bin().arg("schema").output().unwrap();
    let policy = bin().args(["schema", "--of", "policy"]).output().unwrap();
    assert_eq!(default.status.code(), Some(0));
    assert_eq!(default.stdout, policy.stdout);
    let schema: Value = serde_json::from_slice(&default.stdout).unwrap();
    assert_eq!(schema["title"], "RemediationPolicy");
}

#[test]
fn schema_of_an_unknown_output_names_the_valid_ones() {
    let out = bin().args(["schema", "--of", "plans"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.contains("--of"), "{stderr}");
    assert!(
        stderr.contains("[possible values: policy, plan, audit]"),
        "{stderr}"
    );
}
