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

    // The shipped examples name clusters the simulator does not have: an error, exit 1.
    let out = run(bin()
        .args(["plan", "--sim", "stuck-provisioning", "--policies"])
        .arg(examples()));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("prod-web: NOT RECONCILED"));
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
        story.contains("summary: 4 stuck tasks found, 1 actions taken"),
        "{story}"
    );
    assert!(story.contains("4 tasks recovered"), "{story}");
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
        "→ version 1: 1 instances",
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
    let out = run(bin().args(["explain", "not-an-arn", "--sim", "broken-launch-template"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a task ARN"));
}
