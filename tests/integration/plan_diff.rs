//! `plan --base DIR | --base-ref REF`: one observation planned under two policy sets, the
//! differences as Markdown or JSON, exit 0 (none), 2 (some) or 1 (error); and the memo that
//! lets both passes see one observation.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, UNIX_EPOCH};

use ecs_reconciler::cloud::Cloud;
use ecs_reconciler::cloud::memo::Memo;
use ecs_reconciler::cloud::sim::build_scenario;
use ecs_reconciler::demo::SCENARIO_POLICY;
use serde_json::Value;

use crate::cli::bin;

/// The demo policy, and a change of it: audit mode, and one action an hour.
fn change_of_demo_policy() -> String {
    SCENARIO_POLICY
        .replace("mode: enforce", "mode: audit")
        .replace("maxActionsPerHour: 20", "maxActionsPerHour: 1")
}

fn write_policy(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("demo.yaml"), text).unwrap();
}

fn plan_diff(head: &Path, base_args: &[&str], output: &str) -> (i32, String, String) {
    let out = bin()
        .args(["plan", "--sim", "stuck-provisioning", "--sim-after", "20m"])
        .arg("--policies")
        .arg(head)
        .args(base_args)
        .args(["--output", output])
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_same_set_as_its_base_differs_in_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_policy(&dir.path().join("p"), SCENARIO_POLICY);
    let base = dir.path().join("p");
    let (code, stdout, stderr) = plan_diff(&base, &["--base", base.to_str().unwrap()], "table");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("No difference"), "{stdout}");
}

#[test]
fn a_changed_set_shows_each_target_it_decides_differently() {
    let dir = tempfile::tempdir().unwrap();
    let (base, head) = (dir.path().join("base"), dir.path().join("head"));
    write_policy(&base, SCENARIO_POLICY);
    write_policy(&head, &change_of_demo_policy());
    let (code, stdout, stderr) = plan_diff(&head, &["--base", base.to_str().unwrap()], "table");
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stdout.starts_with("### ecs-reconciler plan diff"),
        "{stdout}"
    );
    assert!(stdout.contains("| demo-web | `task/demo-web/"), "{stdout}");
    assert!(stdout.contains("held by maxActionsPerHour"), "{stdout}");
    assert!(stdout.contains("2 targets differ."), "{stdout}");

    let (code, stdout, _) = plan_diff(&head, &["--base", base.to_str().unwrap()], "json");
    assert_eq!(code, 2);
    let diff: Value = serde_json::from_str(&stdout).expect("one JSON document");
    let changes = diff["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{diff:#}");
    for change in changes {
        assert_eq!(change["kind"], "changed");
        assert_eq!(change["base"][0]["mode"], "enforce");
        assert_eq!(change["head"][0]["mode"], "dry-run");
        assert_eq!(change["base"][0]["outcome"], "planned");
    }
    let held: Vec<&Value> = changes
        .iter()
        .map(|c| &c["head"][0]["outcome"])
        .filter(|o| *o == "maxActionsPerHour")
        .collect();
    assert_eq!(
        held.len(),
        1,
        "one of the two stops is over the new hourly budget"
    );
    assert_ne!(diff["basePolicySet"], diff["headPolicySet"]);
}

/// Runs git in `dir` with a local identity; panics when it fails.
fn git(dir: &Path, args: &[&str]) {
    crate::reload::git(dir, args);
}

#[test]
fn the_base_is_read_from_a_git_commit_without_a_checkout() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    git(root, &["init", "-q"]);
    std::fs::write(root.join("README"), "policies\n").unwrap();
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "before the policies"]);
    let policies = root.join("policies");
    write_policy(&policies, SCENARIO_POLICY);
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "the policies"]);
    // The change under review, not committed.
    write_policy(&policies, &change_of_demo_policy());

    let (code, stdout, stderr) = plan_diff(&policies, &["--base-ref", "HEAD"], "table");
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.contains("2 targets differ."), "{stdout}");
    let on_disk = std::fs::read_to_string(policies.join("demo.yaml")).unwrap();
    assert!(
        on_disk.contains("mode: audit"),
        "the working copy is untouched"
    );

    let (code, _, stderr) = plan_diff(&policies, &["--base-ref", "no-such-ref"], "table");
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("no commit no-such-ref"), "{stderr}");

    let (code, _, stderr) = plan_diff(&policies, &["--base-ref", "HEAD~1"], "table");
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("policies was not in git at HEAD~1"),
        "{stderr}"
    );
}

#[test]
fn a_bad_policy_at_the_base_commit_is_named_by_commit_and_path() {
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    git(root, &["init", "-q"]);
    let policies = root.join("policies");
    write_policy(
        &policies,
        &SCENARIO_POLICY.replace("PENDING: 10m", "PENDING: soon"),
    );
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "a bad policy"]);
    write_policy(&policies, SCENARIO_POLICY);
    let (code, _, stderr) = plan_diff(&policies, &["--base-ref", "HEAD"], "table");
    assert_eq!(code, 1);
    assert!(stderr.contains("HEAD:policies/demo.yaml"), "{stderr}");
    assert!(
        !stderr.contains("ecs-reconciler-base-"),
        "no scratch path: {stderr}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_memo_reads_each_thing_once_until_told_to_forget() {
    let (sim, _) = build_scenario(
        "stuck-provisioning",
        UNIX_EPOCH + Duration::from_secs(1_900_000_000),
    )
    .expect("a scenario");
    let sim = std::sync::Arc::new(sim);
    let memo = Memo::new(std::sync::Arc::clone(&sim));
    let first = memo.observe_cluster("demo-web").await.unwrap();
    tokio::time::advance(Duration::from_secs(60)).await;
    let second = memo.observe_cluster("demo-web").await.unwrap();
    assert_eq!(first, second, "one observation");
    assert_eq!(sim.call_count("DescribeClusters"), 1);
    memo.forget();
    let third = memo.observe_cluster("demo-web").await.unwrap();
    assert_eq!(sim.call_count("DescribeClusters"), 2);
    assert!(third.observed_at > first.observed_at);
    let task = &first.tasks[0].arn;
    assert!(memo.stop_task("demo-web", task, "no").await.is_err());
    assert_eq!(memo.refused_writes(), 1);
    assert_eq!(sim.call_count("StopTask"), 0);
}
