//! The binary end to end: exit codes, error lines, and the commands on the simulated account.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub(crate) fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ecs-reconciler"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    // No AWS from the developer's machine, no config file, no log noise.
    for var in [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    c.env_remove("AWS_CONFIG_FILE");
    c.env_remove("AWS_SHARED_CREDENTIALS_FILE");
    c.env("HOME", empty_home());
    c.env("AWS_EC2_METADATA_DISABLED", "true");
    // Tests run in parallel: each `run` serves its endpoints on a free port.
    c.env("ECS_RECONCILER_LISTEN", "127.0.0.1:0");
    c
}

/// A home directory with no ~/.aws in it.
fn empty_home() -> &'static Path {
    static HOME: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fn run(c: &mut Command) -> Output {
    c.stdin(Stdio::null()).output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

#[test]
fn validate_accepts_the_shipped_examples_and_lists_every_error_of_a_bad_set() {
    let out = run(bin().arg("validate").arg(examples()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {name: a}\nspec:\n  \
         target: {clusters: []}\n  stuck: {PROVISIONING: 10}\n",
    )
    .unwrap();
    let out = run(bin().arg("validate").arg(dir.path()));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("bad.yaml:5:"), "{err}");
    assert!(err.contains("spec.target.clusters"), "{err}");
    assert!(err.contains("bad.yaml:6:"), "{err}");
    assert!(err.contains("spec.stuck.PROVISIONING"), "{err}");
}

#[test]
fn schema_is_json_schema_of_the_format() {
    let out = run(bin().arg("schema"));
    assert_eq!(out.status.code(), Some(0));
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = schema.to_string();
    assert!(text.contains("maxInFlightPerService") && text.contains("PROVISIONING"));
}

#[test]
fn plan_exits_2_when_actions_are_planned_and_0_when_none() {
    let out = run(bin().args(["plan", "--sim", "stuck-provisioning"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("stuck in PROVISIONING for 15m, limit 10m"),
        "{table}"
    );
    assert!(table.contains("| stopTask"), "{table}");

    let out = run(bin().args(["plan", "--sim", "stuck-provisioning", "--output", "json"]));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["clusters"][0]["actions"].as_array().unwrap().len(), 2);

    // A policy over other services: nothing to do.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("other.yaml"),
        "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {name: other}\nspec:\n  \
         target: {clusters: [demo-web], services: [api]}\n  stuck: {PROVISIONING: 10m}\n  \
         remediate: {replaceTask: {}}\n",
    )
    .unwrap();
    let out = run(bin()
        .args(["plan", "--sim", "stuck-provisioning", "--policies"])
        .arg(dir.path()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("no stuck tasks"));

    // The shipped examples select none of the scenario's clusters: one line naming both
    // sides, exit 1 (tests/integration/first_hour.rs has the details).
    let out = run(bin()
        .args(["plan", "--sim", "stuck-provisioning", "--policies"])
        .arg(examples()));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("prod-web") && err.contains("demo-web"),
        "{err}"
    );
}

#[test]
fn no_region_is_one_line_and_exit_1() {
    let out = run(bin().args(["run", "--once", "--policies"]).arg(examples()));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.to_lowercase().contains("region"), "{err}");
}

#[test]
fn a_config_file_that_does_not_parse_is_exit_1() {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), "concurrency = [\n").unwrap();
    let out = run(bin().arg("--config").arg(file.path()).arg("schema"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid configuration"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn environment_overrides_the_file_and_flags_override_the_environment() {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), "policies = \"/from/file\"\n").unwrap();
    let out = run(bin().arg("--config").arg(file.path()).arg("validate"));
    assert!(
        text(&out.stderr).contains("/from/file"),
        "{}",
        text(&out.stderr)
    );
    let out = run(bin()
        .arg("--config")
        .arg(file.path())
        .env("ECS_RECONCILER_POLICIES", examples())
        .arg("validate"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(bin()
        .arg("--config")
        .arg(file.path())
        .env("ECS_RECONCILER_POLICIES", examples())
        .args(["validate", "--policies", "/from/flag"]));
    assert!(
        text(&out.stderr).contains("/from/flag"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_once_on_the_simulator_writes_the_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let out = run(bin()
        .args([
            "run",
            "--once",
            "--sim",
            "stuck-provisioning",
            "--audit-log",
        ])
        .arg(&audit));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Two stops, each an intent (`started`) written ahead of the call, then its outcome.
    assert_eq!(lines.len(), 4);
    let outcomes: Vec<_> = lines.iter().map(|l| l["outcome"].clone()).collect();
    assert_eq!(outcomes, ["started", "done", "started", "done"]);
    assert_eq!(lines[0]["attempt"], lines[1]["attempt"]);
    assert_eq!(lines[2]["attempt"], lines[3]["attempt"]);
    assert_ne!(lines[0]["attempt"], lines[2]["attempt"]);
    for line in &lines {
        assert_eq!(line["mode"], "enforce");
        assert_eq!(line["action"], "stopTask");
        for field in [
            "time",
            "policy",
            "policySet",
            "target",
            "cluster",
            "reason",
            "evidence",
        ] {
            assert!(!line[field].is_null(), "{field} missing in {line}");
        }
    }
}

#[test]
fn the_loop_on_the_simulator_ends_by_itself_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let out = run(bin()
        .args([
            "run",
            "--sim",
            "mixed",
            "--sim-for",
            "20m",
            "--dry-run",
            "--audit-log",
        ])
        .arg(&audit));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let trail = std::fs::read_to_string(&audit).unwrap();
    assert!(trail.lines().count() >= 5, "{trail}");
    assert!(trail.lines().all(|l| l.contains("\"mode\":\"dry-run\"")));
    assert!(!trail.contains("\"outcome\":\"done\""));
}

#[test]
fn demo_narrates_and_summarises() {
    let out = run(bin().arg("demo"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let story = text(&out.stdout);
    // The default scenario is the seed story: a broken launch template version.
    assert!(story.contains("version 2 is broken"), "{story}");
    assert!(
        story.contains("cordonLaunchTemplate demo-asg → done"),
        "{story}"
    );
    assert!(
        story.contains("summary: 4 stuck tasks found, 1 action taken"),
        "{story}"
    );
    assert!(story.contains("all 4 recovered"), "{story}");
    assert!(story.contains("without the controller"), "{story}");
    let out = run(bin().args(["demo", "--list"]));
    assert!(text(&out.stdout).contains("outage"));
}

#[test]
fn sigterm_ends_a_run_cleanly() {
    let moto = crate::support::moto::Moto::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut child = bin()
        .args(["run", "--resync", "1s", "--policies"])
        .arg(examples())
        .arg("--audit-log")
        .arg(&audit)
        .env("AWS_REGION", "us-east-1")
        .env(
            "AWS_ACCESS_KEY_ID",
            format!("MOTOACCT{}", moto.account_id()),
        )
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("ECS_RECONCILER_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the loop has reconciled (or reported) the example clusters at least once.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.contains("reconcile failed") || line.contains("reconciled") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("controller stopped")),
        "{rest:?}"
    );
    assert!(audit.exists());
}

#[test]
fn explain_follows_a_stuck_task_to_the_broken_launch_template_version() {
    let out = run(bin().args([
        "plan",
        "--sim",
        "broken-launch-template",
        "--output",
        "json",
    ]));
    assert_eq!(out.status.code(), Some(2));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let task = json["clusters"][0]["findings"][0]["task"]
        .as_str()
        .unwrap()
        .to_string();
    let out = run(bin().args(["explain", &task, "--sim", "broken-launch-template"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let chain = text(&out.stdout);
    let expected_in_order = [
        "stuck in PROVISIONING for 15m, limit 10m",
        "→ capacity provider demo-cp",
        "→ Auto Scaling group demo-asg: desired 3, min 0, max 10",
        "→ version 1: 1 instance",
        "registered, agent connected",
        "→ version 2: 2 instances",
        "never registered",
        "diagnosis: launch template",
        "version 2 is broken",
        "the policies would: cordonLaunchTemplate demo-asg [dry-run",
        "held back: stopTask",
    ];
    let mut from = 0;
    for piece in expected_in_order {
        let at = chain[from..]
            .find(piece)
            .unwrap_or_else(|| panic!("{piece:?} missing after byte {from}:\n{chain}"));
        from += at + piece.len();
    }
    let out = run(bin().args([
        "explain",
        "arn:aws:ecs:us-east-1:123456789012:service/demo-capacity/app",
        "--sim",
        "broken-launch-template",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("is not a task"), "{err}");
    assert!(
        err.contains("(arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID), task/CLUSTER/ID as plan"),
        "one line, words single-spaced: {err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// The first stuck task of the seed scenario as `plan --output json` names it.
fn seed_task() -> String {
    let out = run(bin().args([
        "plan",
        "--sim",
        "broken-launch-template",
        "--output",
        "json",
    ]));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["clusters"][0]["findings"][0]["task"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn explain_takes_the_long_arn_the_short_form_plan_prints_or_a_bare_id() {
    let arn = seed_task();
    let short = arn[arn.find(":task/").unwrap() + 1..].to_string();
    let id = arn.rsplit('/').next().unwrap().to_string();
    assert!(short.starts_with("task/demo-capacity/"), "{short}");
    let mut chains = Vec::new();
    for name in [&arn, &short, &id] {
        let out = run(bin().args(["explain", name, "--sim", "broken-launch-template"]));
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let chain = text(&out.stdout);
        assert!(
            chain.starts_with(&format!("task {arn}\n")),
            "{name}:\n{chain}"
        );
        assert!(chain.contains("version 2 is broken"), "{name}:\n{chain}");
        chains.push(chain);
    }
    assert_eq!(chains[0], chains[1]);
    assert_eq!(chains[0], chains[2]);

    let out = run(bin().args(["explain", "0123abcd", "--sim", "broken-launch-template"]));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("task 0123abcd: not found in the clusters in scope (demo-capacity)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_dry_run_on_the_simulator_runs_on_the_read_only_cloud() {
    let dir = tempfile::tempdir().unwrap();
    // The fields of the `starting` log line.
    let starting = |dry_run: bool| -> Value {
        let mut c = bin();
        c.args(["--log-format", "json", "run", "--sim", "mixed", "--once"])
            .arg("--audit-log")
            .arg(dir.path().join("audit.jsonl"));
        if dry_run {
            c.arg("--dry-run");
        }
        let out = run(&mut c);
        let err = text(&out.stderr);
        err.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|l| l["fields"]["message"] == "starting")
            .unwrap_or_else(|| panic!("no starting line: {err}"))["fields"]
            .clone()
    };
    let dry = starting(true);
    assert_eq!(dry["mode"], "dry-run", "{dry}");
    assert_eq!(dry["refuses_writes"], true, "{dry}");
    let enforce = starting(false);
    assert_eq!(enforce["mode"], "enforce", "{enforce}");
    assert_eq!(enforce["refuses_writes"], false, "{enforce}");
}

/// A reconcile of `cluster` with one task of id `id`, for `explain`'s search.
fn report_with_task(cluster: &str, id: &str) -> ecs_reconciler::controller::ClusterReport {
    use crate::support::fixtures::{TaskBuilder, snapshot};
    let mut task = TaskBuilder::service("web", id).build();
    task.arn = format!("arn:aws:ecs:us-east-1:123456789012:task/{cluster}/{id}");
    let mut snap = snapshot(vec![task], &[("web", 1)]);
    snap.cluster_name = cluster.to_string();
    ecs_reconciler::controller::ClusterReport {
        cluster: cluster.to_string(),
        policy_set: String::new(),
        snapshot: snap.into(),
        plan: ecs_reconciler::plan::Plan {
            cluster: cluster.to_string(),
            findings: Vec::new(),
            capacity: Vec::new(),
            actions: Vec::new(),
            held: Vec::new(),
        },
        clues: Default::default(),
        outcomes: Vec::new(),
    }
}

#[test]
fn a_bare_task_id_found_in_two_clusters_is_ambiguous() {
    use ecs_reconciler::cli::explain::{TaskName, cluster_holding, parse_task_name};
    assert_eq!(
        parse_task_name("arn:aws:ecs:us-east-1:1:task/prod/abc123"),
        Ok(TaskName::InCluster {
            cluster: "prod".into(),
            id: "abc123".into()
        })
    );
    assert_eq!(
        parse_task_name("task/prod/abc123"),
        Ok(TaskName::InCluster {
            cluster: "prod".into(),
            id: "abc123".into()
        })
    );
    assert_eq!(
        parse_task_name("abc123"),
        Ok(TaskName::Bare {
            id: "abc123".into()
        })
    );
    for bad in [
        "",
        "task/",
        "task/prod/",
        "task/prod/a/b",
        "a b",
        "arn:aws:ecs:x",
    ] {
        assert!(parse_task_name(bad).is_err(), "{bad:?}");
    }
    let reports = [
        report_with_task("blue", "abc123"),
        report_with_task("green", "abc123"),
        report_with_task("red", "other"),
    ];
    let err = cluster_holding(&reports, "abc123").unwrap_err();
    assert!(err.contains("ambiguous"), "{err}");
    assert!(err.contains("blue, green"), "{err}");
    assert!(!err.contains('\n'));
    assert_eq!(cluster_holding(&reports, "other").unwrap().cluster, "red");
    assert!(cluster_holding(&reports, "none").is_err());
}

// Needs the causes and sim branches (the seed scenario's boot output and UserData).
#[test]
fn explain_and_plan_show_the_root_cause_of_the_seed_story() {
    let task = seed_task();
    let out = run(bin().args(["explain", &task, "--sim", "broken-launch-template"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let chain = text(&out.stdout);
    let version_2 = chain.find("→ version 2:").expect("version 2 shown");
    let cause = chain[version_2..]
        .find("root cause [bootMountFailed]")
        .unwrap_or_else(|| panic!("no boot mount cause under version 2:\n{chain}"));
    let after = &chain[version_2 + cause..];
    assert!(
        after.lines().nth(1).is_some_and(|l| l.contains(" | ")),
        "the quoted boot line follows, with its instance id:\n{chain}"
    );
    assert!(chain.contains("UserData: "), "{chain}");

    let out = run(bin().args(["plan", "--sim", "broken-launch-template"]));
    let table = text(&out.stdout);
    let row = table
        .lines()
        .find(|l| l.contains("cordonLaunchTemplate"))
        .unwrap_or_else(|| panic!("{table}"));
    let last = row.trim_end_matches('|').rsplit('|').next().unwrap().trim();
    assert!(last != "-" && !last.is_empty(), "root cause column: {row}");
}

// Needs the causes and sim branches (the seed scenario's boot output).
#[test]
fn the_demo_why_of_the_seed_story_ends_with_the_fsx_mount_line() {
    let out = run(bin().args(["demo", "--dry-run"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let story = text(&out.stdout);
    let lines: Vec<&str> = story.lines().collect();
    let why = lines
        .iter()
        .position(|l| l.contains("why: ") && l.contains("version 2 is broken"))
        .unwrap_or_else(|| panic!("no why line:\n{story}"));
    let cause = lines[why + 1..]
        .iter()
        .position(|l| l.contains("root cause [bootMountFailed]"))
        .map(|i| why + 1 + i)
        .unwrap_or_else(|| panic!("no boot mount cause after the why:\n{story}"));
    let quote = lines[cause + 1];
    assert!(
        quote.contains(" | "),
        "the quoted line, with its instance: {quote}"
    );
    assert!(
        quote.to_lowercase().contains("lustre") || quote.to_lowercase().contains("fsx"),
        "{quote}"
    );
}
