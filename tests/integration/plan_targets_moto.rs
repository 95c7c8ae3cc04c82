//! `plan` and `plan --base` under `[[targets]]`, on moto's STS: every account-Region is planned
//! under its own policies (`target.accounts`), read-only, and each cluster of the output names
//! its account and Region, so two accounts' clusters `web` are told apart. A target whose role
//! cannot be assumed makes the plan incomplete: exit 1 and one line naming it, after the plans
//! of the others. The accounts are told apart by the credentials each role gives (moto keeps
//! one backend per account).

use std::fs;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::moto::{Moto, REGION};

/// A role in `account`'s IAM that AssumeRole accepts.
async fn role(account: &Moto) -> String {
    let answer = account
        .harness(
            "/_harness/iam/role",
            json!({"name": "ecs-reconciler", "externalId": null}),
        )
        .await;
    answer["arn"].as_str().unwrap().to_string()
}

/// A cluster `web` in `account` with one service task stuck in PROVISIONING for 20 minutes;
/// the task's ARN.
async fn stuck_web(account: &Moto) -> String {
    let ecs = account.ecs();
    ecs.create_cluster()
        .cluster_name("web")
        .send()
        .await
        .unwrap();
    account.register_web().await;
    ecs.create_service()
        .cluster("web")
        .service_name("web")
        .task_definition("web")
        .desired_count(1)
        .send()
        .await
        .unwrap();
    account
        .stuck_web_task("web", Duration::from_secs(20 * 60))
        .await
}

/// A policy `name` replacing tasks of cluster `web` stuck in PROVISIONING for 10 minutes, in
/// `mode`, in the accounts `accounts` selects (every account when `None`).
fn policy(name: &str, mode: &str, accounts: Option<&str>) -> String {
    let accounts = accounts.map_or_else(String::new, |a| format!(", accounts: [{a}]"));
    format!(
        "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {{name: {name}}}\n\
         spec:\n  mode: {mode}\n  target: {{clusters: [web]{accounts}}}\n  stuck: \
         {{PROVISIONING: 10m}}\n  remediate: {{replaceTask: {{}}}}\n"
    )
}

fn write_policies(dir: &Path, files: &[(&str, String)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        fs::write(dir.join(format!("{name}.yaml")), text).unwrap();
    }
}

/// Two accounts, `team-a` and `team-b`, each with a stuck task in a cluster `web`, and the
/// controller's own account they are reached from.
struct Fleet {
    controller: Moto,
    a: Moto,
    b: Moto,
    role_a: String,
    role_b: String,
    stuck_a: String,
    stuck_b: String,
}

impl Fleet {
    async fn new() -> Fleet {
        let (controller, a, b) = (Moto::new(), Moto::new(), Moto::new());
        let (role_a, role_b) = (role(&a).await, role(&b).await);
        let (stuck_a, stuck_b) = (stuck_web(&a).await, stuck_web(&b).await);
        Fleet {
            controller,
            a,
            b,
            role_a,
            role_b,
            stuck_a,
            stuck_b,
        }
    }

    /// The configuration naming both accounts as targets, and `extra` targets after them.
    fn config(&self, dir: &Path, extra: &str) -> std::path::PathBuf {
        let config = dir.join("config.toml");
        fs::write(
            &config,
            format!(
                "[[targets]]\nname = \"team-a\"\nrole_arn = \"{}\"\nregions = [\"{REGION}\"]\n\
                 [[targets]]\nname = \"team-b\"\nrole_arn = \"{}\"\nregions = [\"{REGION}\"]\n\
                 {extra}",
                self.role_a, self.role_b
            ),
        )
        .unwrap();
        config
    }

    fn plan(&self, config: &Path, policies: &Path, args: &[&str]) -> Output {
        plan_as(&self.controller, config, policies, args)
    }

    /// No StopTask in either account: `plan` never writes.
    async fn assert_nothing_stopped(&self) {
        for account in [&self.a, &self.b] {
            let calls = account.harness("/_harness/calls", json!({})).await;
            assert_eq!(calls["StopTask"], json!({}), "{calls}");
        }
    }
}

/// `plan` with the configuration, the policy directory and `args`, on moto with `ambient`'s
/// credentials (the controller's own account).
fn plan_as(ambient: &Moto, config: &Path, policies: &Path, args: &[&str]) -> Output {
    crate::cli::bin()
        .arg("--config")
        .arg(config)
        .args(["plan", "--policies"])
        .arg(policies)
        .args(args)
        .env("AWS_REGION", REGION)
        .env(
            "AWS_ACCESS_KEY_ID",
            format!("MOTOACCT{}", ambient.account_id()),
        )
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", ambient.endpoint())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\nstderr: {}", text(&out.stdout), text(&out.stderr)))
}

/// Each cluster of a plan document as (cluster, account, region, the tasks found stuck).
fn clusters(doc: &Value) -> Vec<(String, String, String, Vec<String>)> {
    let mut out: Vec<_> = doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let tasks = c["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["task"].as_str().unwrap().to_string())
                .collect();
            let field = |k: &str| c[k].as_str().unwrap_or("(absent)").to_string();
            (field("cluster"), field("account"), field("region"), tasks)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn plan_names_each_cluster_web_with_its_own_account_and_region() {
    let fleet = Fleet::new().await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    write_policies(
        &policies,
        &[("everyone", policy("everyone", "enforce", None))],
    );
    let config = fleet.config(dir.path(), "");

    let out = fleet.plan(&config, &policies, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let doc = json_of(&out);
    let mut expected = vec![
        (
            "web".to_string(),
            fleet.a.account_id().to_string(),
            REGION.to_string(),
            vec![fleet.stuck_a.clone()],
        ),
        (
            "web".to_string(),
            fleet.b.account_id().to_string(),
            REGION.to_string(),
            vec![fleet.stuck_b.clone()],
        ),
    ];
    expected.sort();
    assert_eq!(clusters(&doc), expected, "{doc:#}");
    assert!(doc.get("skipped").is_none(), "nothing skipped: {doc:#}");

    let out = fleet.plan(&config, &policies, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for (name, account) in [
        ("team-a", fleet.a.account_id()),
        ("team-b", fleet.b.account_id()),
    ] {
        let heading = format!("cluster web in {name} ({account}) {REGION} — observed");
        assert!(table.contains(&heading), "{heading:?} in:\n{table}");
    }
    assert!(
        table.contains("2 places, 2 clusters, 2 stuck tasks, 2 actions planned"),
        "{table}"
    );
    fleet.assert_nothing_stopped().await;
}

#[tokio::test]
async fn a_policy_for_one_account_plans_only_that_account() {
    let fleet = Fleet::new().await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    write_policies(
        &policies,
        &[("b-only", policy("b-only", "enforce", Some("team-b")))],
    );
    let config = fleet.config(dir.path(), "");

    let out = fleet.plan(&config, &policies, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let doc = json_of(&out);
    assert_eq!(
        clusters(&doc),
        [(
            "web".to_string(),
            fleet.b.account_id().to_string(),
            REGION.to_string(),
            vec![fleet.stuck_b.clone()],
        )],
        "{doc:#}"
    );
    let action = &doc["clusters"][0]["actions"][0];
    assert_eq!(action["policy"], "b-only", "{doc:#}");
}

#[tokio::test]
async fn a_target_that_cannot_be_assumed_fails_the_plan_after_the_others_are_printed() {
    let fleet = Fleet::new().await;
    let missing = format!(
        "arn:aws:iam::{}:role/never-created",
        Moto::new().account_id()
    );
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    write_policies(
        &policies,
        &[("everyone", policy("everyone", "enforce", None))],
    );
    let config = fleet.config(
        dir.path(),
        &format!("[[targets]]\nrole_arn = \"{missing}\"\nregions = [\"{REGION}\"]\n"),
    );

    for output in ["json", "table"] {
        let out = fleet.plan(&config, &policies, &["--output", output]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{output}: {err}");
        let skipped: Vec<&str> = err.lines().filter(|l| l.contains("skipped")).collect();
        assert_eq!(skipped.len(), 1, "{output}: {err}");
        assert!(
            skipped[0].starts_with("error: target skipped")
                && skipped[0].contains("targets[2]")
                && skipped[0].contains(&missing),
            "{output}: {err}"
        );
        if output == "json" {
            let doc = json_of(&out);
            let accounts: Vec<String> = clusters(&doc).into_iter().map(|c| c.1).collect();
            let mut expected = [fleet.a.account_id(), fleet.b.account_id()];
            expected.sort();
            assert_eq!(accounts, expected, "the others are planned: {doc:#}");
            let listed = doc["skipped"].as_array().expect("skipped is listed");
            assert_eq!(listed.len(), 1, "{doc:#}");
            assert!(
                listed[0].as_str().unwrap().contains("targets[2]"),
                "{doc:#}"
            );
        } else {
            let table = text(&out.stdout);
            assert!(table.contains("cluster web in team-a ("), "{table}");
            assert!(table.contains("cluster web in team-b ("), "{table}");
            assert!(table.contains("target SKIPPED: targets[2]"), "{table}");
            assert!(table.trim_end().ends_with(", 1 target skipped"), "{table}");
        }
    }
}

#[tokio::test]
async fn the_plan_diff_keys_clusters_by_place() {
    let fleet = Fleet::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (base, head) = (dir.path().join("base"), dir.path().join("head"));
    write_policies(
        &base,
        &[
            ("a", policy("a", "enforce", Some("team-a"))),
            ("b", policy("b", "enforce", Some("team-b"))),
        ],
    );
    // The change: team-a's policy to audit mode; team-b's is untouched.
    write_policies(
        &head,
        &[
            ("a", policy("a", "audit", Some("team-a"))),
            ("b", policy("b", "enforce", Some("team-b"))),
        ],
    );
    let config = fleet.config(dir.path(), "");
    let base_arg = base.to_str().unwrap();

    let out = fleet.plan(&config, &head, &["--base", base_arg, "--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let diff = json_of(&out);
    let changes = diff["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "only team-a's decision changes: {diff:#}");
    let change = &changes[0];
    assert_eq!(change["cluster"], "web");
    assert_eq!(change["account"], fleet.a.account_id(), "{diff:#}");
    assert_eq!(change["region"], REGION, "{diff:#}");
    assert_eq!(change["target"], fleet.stuck_a.as_str(), "{diff:#}");
    assert_eq!(change["base"][0]["mode"], "enforce");
    assert_eq!(change["head"][0]["mode"], "dry-run");

    let out = fleet.plan(&config, &head, &["--base", base_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let markdown = text(&out.stdout);
    assert!(
        markdown.contains("| place | cluster | target |"),
        "{markdown}"
    );
    let rows: Vec<&str> = markdown
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains("| web |"))
        .collect();
    assert_eq!(rows.len(), 1, "{markdown}");
    let place = format!("| team-a ({}) {REGION} | web |", fleet.a.account_id());
    assert!(rows[0].starts_with(&place), "{place:?} in {markdown}");
    assert!(markdown.contains("1 target differs."), "{markdown}");

    // The same sets both sides: no difference in either account.
    let out = fleet.plan(&config, &head, &["--base", head.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    fleet.assert_nothing_stopped().await;
}

#[tokio::test]
async fn without_targets_the_plan_names_the_ambient_account_in_json_only() {
    // No role: the ambient credentials are the account's own, one place.
    let account = Moto::new();
    let stuck = stuck_web(&account).await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    write_policies(
        &policies,
        &[("everyone", policy("everyone", "enforce", None))],
    );
    let config = dir.path().join("config.toml");
    fs::write(&config, "").unwrap();

    let out = plan_as(&account, &config, &policies, &["--output", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        clusters(&json_of(&out)),
        [(
            "web".to_string(),
            account.account_id().to_string(),
            REGION.to_string(),
            vec![stuck],
        )]
    );
    // The table is as it was before `[[targets]]`: no place named, no place count.
    let out = plan_as(&account, &config, &policies, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("cluster web — observed"), "{table}");
    assert!(
        table.contains("\n1 cluster, 1 stuck task, 1 action planned"),
        "{table}"
    );
}
