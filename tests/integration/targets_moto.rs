//! `[[targets]]` on moto's STS: two accounts reached by assuming a role in each, told apart by
//! the credentials the role gives (moto keeps one backend per account). Each place has its own
//! clients and its own API budget, so one account's calls spend none of the other's. A role
//! that cannot be assumed (missing, or a wrong external id: the launcher makes AssumeRole check
//! both) is reported and skipped, and the other targets run.

use std::fs;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ecs_reconciler::cloud::Cloud;
use ecs_reconciler::cloud::aws::targets::connect_from;
use ecs_reconciler::cloud::budget::{ApiBudget, PacingSettings};
use ecs_reconciler::targets::{TargetSettings, places};
use serde_json::{Value, json};

use crate::support::moto::{Moto, REGION};

/// A role in `account`'s IAM that AssumeRole accepts (only with `external_id`, when given).
async fn role(account: &Moto, name: &str, external_id: Option<&str>) -> String {
    let answer = account
        .harness(
            "/_harness/iam/role",
            json!({"name": name, "externalId": external_id}),
        )
        .await;
    answer["arn"].as_str().unwrap().to_string()
}

async fn clusters(account: &Moto, names: &[&str]) {
    for name in names {
        account
            .ecs()
            .create_cluster()
            .cluster_name(*name)
            .send()
            .await
            .unwrap();
    }
}

fn target(role_arn: &str, external_id: Option<&str>) -> TargetSettings {
    TargetSettings {
        role_arn: Some(role_arn.to_string()),
        external_id: external_id.map(str::to_string),
        regions: vec![REGION.to_string()],
        ..Default::default()
    }
}

/// The controller's own ambient configuration, as the default chain loads it (with a clock, a
/// sleep and an HTTP client, which the assume-role provider needs), with its credentials.
async fn ambient(controller: &Moto) -> aws_config::SdkConfig {
    let own = controller.sdk_config();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(own.credentials_provider().unwrap())
        .load()
        .await
}

/// The calls a budget granted, all categories together.
fn granted(budget: &ApiBudget) -> u64 {
    budget.report().iter().map(|c| c.calls).sum()
}

#[tokio::test]
async fn each_assumed_account_has_its_own_clients_and_budget() {
    let controller = Moto::new();
    let (a, b) = (Moto::new(), Moto::new());
    let role_a = role(&a, "ecs-reconciler", None).await;
    let role_b = role(&b, "ecs-reconciler", Some("fleet-7")).await;
    clusters(&a, &["a-web", "a-batch"]).await;
    clusters(&b, &["b-web"]).await;
    let planned = places(&[target(&role_a, None), target(&role_b, Some("fleet-7"))]);
    let mut connected = Vec::new();
    for p in &planned {
        let budget = Arc::new(ApiBudget::new(&PacingSettings::default()).unwrap());
        let c = connect_from(
            ambient(&controller).await,
            p,
            &controller.settings(),
            Arc::clone(&budget),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        connected.push((c, budget));
    }
    let [(in_a, budget_a), (in_b, budget_b)] = &connected[..] else {
        unreachable!()
    };
    assert_eq!(in_a.place.account, a.account_id());
    assert_eq!(in_b.place.account, b.account_id());
    assert_eq!(in_a.place.region, REGION);
    // The role's credentials reach the role's account, not the controller's.
    let mut seen_a = in_a.cloud.list_clusters().await.unwrap();
    seen_a.sort();
    assert_eq!(seen_a, ["a-batch", "a-web"]);
    assert_eq!(in_b.cloud.list_clusters().await.unwrap(), ["b-web"]);
    // Account A's burst of calls is paced by A's budget alone.
    for _ in 0..5 {
        in_a.cloud.list_clusters().await.unwrap();
    }
    assert_eq!(granted(budget_a), 6);
    assert_eq!(granted(budget_b), 1);
}

#[tokio::test]
async fn a_role_that_cannot_be_assumed_is_an_error_naming_the_target_and_role() {
    let controller = Moto::new();
    let other = Moto::new();
    let guarded = role(&other, "guarded", Some("right-id")).await;
    let missing = format!("arn:aws:iam::{}:role/never-created", other.account_id());
    let planned = places(&[target(&guarded, Some("wrong-id")), target(&missing, None)]);
    for (p, role_arn) in planned.iter().zip([&guarded, &missing]) {
        let budget = Arc::new(ApiBudget::new(&PacingSettings::default()).unwrap());
        let e = connect_from(
            ambient(&controller).await,
            p,
            &controller.settings(),
            budget,
        )
        .await
        .err()
        .expect("refused");
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(e.contains(&format!("cannot assume {role_arn}")), "{e}");
        assert!(e.starts_with("targets["), "names the target: {e}");
    }
}

const POLICY: &str = "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {name: \
                      team-a}\nspec:\n  target: {clusters: [web], accounts: [team-a]}\n  stuck: \
                      {PROVISIONING: 10m}\n  remediate: {replaceTask: {}}\n";

/// A cluster `web` in `account` with one service task stuck in PROVISIONING for 20 minutes.
async fn stuck_web(account: &Moto) -> String {
    clusters(account, &["web"]).await;
    account.register_web().await;
    account
        .ecs()
        .create_service()
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

async fn stop_calls(account: &Moto) -> Value {
    account.harness("/_harness/calls", json!({})).await["StopTask"].clone()
}

#[tokio::test]
async fn run_skips_the_target_it_cannot_assume_and_acts_only_where_the_policy_selects() {
    let controller = Moto::new();
    let (a, b) = (Moto::new(), Moto::new());
    let role_a = role(&a, "ecs-reconciler", None).await;
    let role_b = role(&b, "ecs-reconciler", None).await;
    let missing = format!(
        "arn:aws:iam::{}:role/never-created",
        Moto::new().account_id()
    );
    let (stuck_a, stuck_b) = (stuck_web(&a).await, stuck_web(&b).await);
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("policies")).unwrap();
    fs::write(dir.path().join("policies/team-a.yaml"), POLICY).unwrap();
    let config = dir.path().join("config.toml");
    fs::write(
        &config,
        format!(
            "[[targets]]\nname = \"team-a\"\nrole_arn = \"{role_a}\"\nregions = [\"{REGION}\"]\n\
             [[targets]]\nrole_arn = \"{missing}\"\n\
             [[targets]]\nrole_arn = \"{role_b}\"\nregions = [\"{REGION}\"]\n"
        ),
    )
    .unwrap();
    let audit = dir.path().join("audit.jsonl");
    let out = crate::cli::bin()
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json", "run", "--once", "--policies"])
        .arg(dir.path().join("policies"))
        .arg("--audit-log")
        .arg(&audit)
        .env("AWS_REGION", REGION)
        .env(
            "AWS_ACCESS_KEY_ID",
            format!("MOTOACCT{}", controller.account_id()),
        )
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", controller.endpoint())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let skipped: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("target skipped"))
        .collect();
    assert_eq!(skipped.len(), 1, "{log}");
    assert!(
        skipped[0].contains("targets[1]") && skipped[0].contains(&missing),
        "{log}"
    );
    // The policy selects team-a: its task is stopped, B's is left alone.
    assert_eq!(stop_calls(&a).await, json!({ stuck_a: 1 }));
    assert_eq!(stop_calls(&b).await, json!({}), "{stuck_b} left alone");
    let records: Vec<Value> = fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done: Vec<&Value> = records.iter().filter(|r| r["outcome"] == "done").collect();
    assert_eq!(done.len(), 1, "{records:?}");
    assert_eq!(done[0]["account"], a.account_id());
    assert_eq!(done[0]["region"], REGION);
    assert!(
        records.iter().all(|r| r["account"] == a.account_id()),
        "only team-a's cluster has a policy: {records:?}"
    );
}
