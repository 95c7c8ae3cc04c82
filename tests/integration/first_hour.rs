//! What a new user meets in the first hour (issue 13): one-line AWS setup errors that say what
//! is missing and that `--sim` needs no AWS, `explain` of a missing task exiting 1, `--sim`
//! with policies for other clusters naming both sides, one mode vocabulary, the `target`
//! column, plurals, log colour only on a terminal, rates to two decimals, and help texts.

use std::ffi::OsStr;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use ecs_reconciler::cloud::aws::{AwsCloud, AwsSettings};
use ecs_reconciler::cloud::sim::scenario_names;
use ecs_reconciler::logging::{filter_directives, use_colour};
use serde_json::Value;

use crate::cli_output::{bin, examples, text};

fn run(c: &mut Command) -> Output {
    c.output().expect("the binary runs")
}

/// The one line on standard error of a failed command (asserting there is exactly one).
fn one_error_line(out: &Output) -> String {
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {err}");
    lines[0].to_string()
}

/// Words of the SDK's debug output and warnings that must not reach a newcomer.
fn assert_no_sdk_noise(line: &str) {
    for noise in [
        "WARN",
        "IMDS",
        "FailedToLoadToken",
        "ProviderError",
        "CredentialsNotLoaded",
        "StatusCode",
        "SdkBody",
        "{",
        "\u{1b}[",
    ] {
        assert!(!line.contains(noise), "{noise:?} in: {line}");
    }
}

#[test]
fn without_a_region_plan_run_and_explain_say_so_in_one_line_with_the_sim_hint() {
    let commands: [&[&str]; 3] = [&["plan"], &["run", "--once"], &["explain", "0123abcd"]];
    for args in commands {
        let out = run(bin().args(args).arg("--policies").arg(examples()));
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let line = one_error_line(&out);
        assert!(
            line.starts_with("error: no AWS Region configured"),
            "{line}"
        );
        assert!(
            line.contains("AWS_REGION") && line.contains("AWS_PROFILE"),
            "{line}"
        );
        assert!(line.contains("--sim SCENARIO"), "{line}");
        assert_no_sdk_noise(&line);
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
}

#[test]
fn with_a_region_but_no_credentials_the_line_names_credentials_and_how_to_set_them() {
    for args in [&["run", "--once"][..], &["plan"], &["explain", "0123abcd"]] {
        let out = run(bin()
            .args(args)
            .arg("--policies")
            .arg(examples())
            .env("AWS_REGION", "us-east-1"));
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let line = one_error_line(&out);
        assert!(
            line.starts_with("error: no usable AWS credentials (none found)"),
            "{line}"
        );
        for how in [
            "AWS_PROFILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "--sim",
        ] {
            assert!(line.contains(how), "{how} missing: {line}");
        }
        assert_no_sdk_noise(&line);
    }
}

#[test]
fn rust_log_still_shows_the_sdk_when_asked() {
    let out = run(bin()
        .args(["plan", "--policies"])
        .arg(examples())
        .env("RUST_LOG", "aws_config=debug"));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.lines().count() > 1, "{err}");
    assert!(err.contains("aws_config"), "{err}");
}

#[test]
fn the_default_filter_quiets_the_sdk_unless_the_level_names_it() {
    let quiet = filter_directives("info");
    assert!(quiet.starts_with("info,"), "{quiet}");
    for target in ["aws_config=error", "aws_smithy=error", "aws_sdk=error"] {
        assert!(quiet.split(',').any(|d| d == target), "{target}: {quiet}");
    }
    let asked = filter_directives("warn,aws_config=debug");
    assert!(!asked.contains("aws_config=error"), "{asked}");
    assert!(asked.contains("aws_smithy=error"), "{asked}");
}

#[test]
fn explain_of_a_task_that_does_not_exist_exits_1_in_every_form() {
    for task in [
        "0123abcd",
        "task/demo-web/0123abcd",
        "arn:aws:ecs:us-east-1:123456789012:task/demo-web/0123abcd",
    ] {
        let out = run(bin().args(["explain", task, "--sim", "stuck-provisioning"]));
        assert_eq!(out.status.code(), Some(1), "{task}: {}", text(&out.stdout));
        let line = one_error_line(&out);
        assert!(
            line.starts_with("error: task 0123abcd: not found"),
            "{task}: {line}"
        );
        assert!(line.contains("demo-web"), "{task}: {line}");
        assert!(out.stdout.is_empty(), "{task}: {}", text(&out.stdout));
    }
}

#[test]
fn sim_with_policies_for_other_clusters_names_the_scenarios_and_the_policies_clusters() {
    let commands: [&[&str]; 3] = [
        &["plan", "--sim", "broken-launch-template"],
        &["run", "--once", "--sim", "broken-launch-template"],
        &["explain", "0123abcd", "--sim", "broken-launch-template"],
    ];
    for args in commands {
        let out = run(bin().args(args).arg("--policies").arg(examples()));
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stdout)
        );
        let line = one_error_line(&out);
        // The scenario's cluster, and what the shipped policies select.
        for name in [
            "scenario broken-launch-template has cluster demo-capacity",
            "prod-web",
            "prod-internal",
            "staging-*",
            "the scenario's own policy",
        ] {
            assert!(line.contains(name), "{name}: {line}");
        }
        assert!(!line.contains("ClusterNotFoundException"), "{line}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
}

/// A policy directory with one policy over the stuck-provisioning scenario's service, in
/// `mode` (the earlier spelling `audit` included), at most one action an hour.
fn web_policy(mode: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("web.yaml"),
        format!(
            "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {{name: web}}\n\
             spec:\n  mode: {mode}\n  target: {{clusters: [demo-web], services: [web]}}\n  \
             stuck: {{PROVISIONING: 10m}}\n  remediate: {{replaceTask: {{}}}}\n  \
             guardrails: {{maxActionsPerHour: 1}}\n"
        ),
    )
    .unwrap();
    dir
}

/// The cells of each row of the table under `title` in `plan`'s output, the header first.
fn table_rows(out: &str, title: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .filter(|l| !l.starts_with("|-"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The `mode` of each record of an audit trail file.
fn audit_modes(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["mode"].to_string())
        .collect()
}

#[test]
fn the_table_the_json_and_the_audit_trail_use_the_same_mode_word() {
    // The built-in policy enforces; a dry run and a policy in dry-run mode (either spelling)
    // do not. The plan of a read-only command is always a dry run.
    let dry_run_policy = web_policy("dry-run");
    let audit_policy = web_policy("audit");
    let cases: [(Option<&Path>, bool, &str); 4] = [
        (None, false, "enforce"),
        (None, true, "dry-run"),
        (Some(dry_run_policy.path()), false, "dry-run"),
        (Some(audit_policy.path()), false, "dry-run"),
    ];
    for (policies, dry_run, word) in cases {
        let trail = tempfile::tempdir().unwrap();
        let audit = trail.path().join("audit.jsonl");
        let mut c = bin();
        c.args([
            "run",
            "--once",
            "--sim",
            "stuck-provisioning",
            "--audit-log",
        ])
        .arg(&audit);
        if let Some(dir) = policies {
            c.arg("--policies").arg(dir);
        }
        if dry_run {
            c.arg("--dry-run");
        }
        let out = run(&mut c);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let modes = audit_modes(&audit);
        assert!(!modes.is_empty(), "{policies:?}: no audit records");
        assert!(
            modes.iter().all(|m| *m == format!("\"{word}\"")),
            "{policies:?} dry_run={dry_run}: {modes:?}"
        );
    }
    // `plan` of the same scenario and policy: the table's mode column and the JSON's.
    for policy in [&dry_run_policy, &audit_policy] {
        let table = run(bin()
            .args(["plan", "--sim", "stuck-provisioning", "--policies"])
            .arg(policy.path()));
        let rows = table_rows(&text(&table.stdout), "planned actions");
        let mode_column = rows[0].iter().position(|c| c == "mode").unwrap();
        assert!(rows.len() > 1, "{}", text(&table.stdout));
        assert!(
            rows[1..].iter().all(|r| r[mode_column] == "dry-run"),
            "{rows:?}"
        );
        let json = run(bin()
            .args(["plan", "--sim", "stuck-provisioning", "--output", "json"])
            .arg("--policies")
            .arg(policy.path()));
        let json: Value = serde_json::from_slice(&json.stdout).unwrap();
        let actions = json["clusters"][0]["actions"].as_array().unwrap();
        assert!(!actions.is_empty());
        assert!(
            actions.iter().all(|a| a["mode"] == "dry-run"),
            "{actions:?}"
        );
    }
}

#[test]
fn the_action_and_hold_tables_call_their_column_target_and_counts_agree_in_number() {
    let policy = web_policy("enforce");
    let out = run(bin()
        .args(["plan", "--sim", "stuck-provisioning", "--policies"])
        .arg(policy.path()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let actions = table_rows(&table, "planned actions");
    let held = table_rows(&table, "held back");
    assert_eq!(actions[0][..2], ["action", "target"], "{table}");
    assert_eq!(held[0][..2], ["action", "target"], "{table}");
    // One action planned and one held: singular where the count is one.
    assert_eq!((actions.len(), held.len()), (2, 2), "{table}");
    assert!(
        table.ends_with("1 cluster, 2 stuck tasks, 1 action planned, 1 held back, 0 errors\n"),
        "{table}"
    );
    assert!(
        held[1]
            .iter()
            .any(|c| c.starts_with("1 task of the service")),
        "{held:?}"
    );
    let out = run(bin().args(["plan", "--sim", "stuck-provisioning"]));
    assert!(
        text(&out.stdout)
            .ends_with("1 cluster, 2 stuck tasks, 2 actions planned, 0 held back, 0 errors\n"),
        "{}",
        text(&out.stdout)
    );
    let out = run(bin().arg("validate").arg(policy.path()));
    assert!(
        text(&out.stdout).contains(": 1 policy valid"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn logs_written_to_a_file_carry_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.txt");
    let out = bin()
        .args([
            "run",
            "--once",
            "--sim",
            "stuck-provisioning",
            "--audit-log",
        ])
        .arg(dir.path().join("audit.jsonl"))
        .stderr(Stdio::from(File::create(&log).unwrap()))
        .status()
        .unwrap();
    assert_eq!(out.code(), Some(0));
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.contains("starting"), "{written}");
    assert!(!written.contains('\u{1b}'), "{written:?}");
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    assert!(use_colour(true, None));
    assert!(!use_colour(false, None));
    for value in ["", "1", "false"] {
        assert!(
            !use_colour(true, Some(OsStr::new(value))),
            "NO_COLOR={value:?}"
        );
    }
}

#[test]
fn api_budget_rates_are_logged_to_two_decimals() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(bin()
        .args([
            "--log-format",
            "json",
            "run",
            "--sim",
            "mixed",
            "--sim-for",
            "3m",
        ])
        .arg("--audit-log")
        .arg(dir.path().join("audit.jsonl")));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    let rates: Vec<String> = err
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "API budget")
        .flat_map(|l| ["budget_per_sec", "observed_per_sec"].map(|k| l["fields"][k].to_string()))
        .collect();
    assert!(!rates.is_empty(), "no API budget line: {err}");
    for rate in &rates {
        let decimals = rate.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 2, "{rate} in {rates:?}");
    }
}

#[test]
fn help_describes_output_and_lists_the_scenarios_for_sim() {
    let out = run(bin().args(["plan", "--help"]));
    let help = text(&out.stdout);
    let output = help.split("--output <OUTPUT>").nth(1).unwrap_or_default();
    let first = output.lines().nth(1).unwrap_or_default().trim();
    assert!(first.starts_with("How to print"), "{help}");
    for command in ["run", "plan", "explain"] {
        let out = run(bin().args([command, "--help"]));
        let help = text(&out.stdout);
        for name in scenario_names() {
            assert!(help.contains(name), "{command} --help lacks {name}: {help}");
        }
    }
    // An unknown scenario is a usage error naming the flag.
    let out = run(bin().args(["plan", "--sim", "nope"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.lines().next().unwrap_or_default().contains("--sim"),
        "{err}"
    );
}

/// How a test's credentials provider fails.
type Failure = fn() -> CredentialsError;

/// A credentials provider that fails so, or never answers (`None`).
#[derive(Debug)]
struct Answers(Option<Failure>);

impl ProvideCredentials for Answers {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        match self.0 {
            Some(answer) => future::ProvideCredentials::ready(Err(answer())),
            None => future::ProvideCredentials::new(std::future::pending()),
        }
    }
}

#[tokio::test]
async fn each_kind_of_credentials_failure_is_one_line_in_its_own_words() {
    fn not_loaded() -> CredentialsError {
        CredentialsError::not_loaded("no profile")
    }
    fn invalid() -> CredentialsError {
        CredentialsError::invalid_configuration("profile `p` has no\nsource")
    }
    fn failed() -> CredentialsError {
        CredentialsError::provider_error(std::io::Error::other("STS answered\n503"))
    }
    let settings = AwsSettings {
        credentials_timeout: Duration::from_millis(200),
        ..AwsSettings::default()
    };
    let cases: [(Option<Failure>, &[&str]); 4] = [
        (Some(not_loaded), &["(none found)"]),
        (
            Some(invalid),
            &["(invalid AWS configuration: profile `p` has no source)"],
        ),
        (Some(failed), &["(a provider failed: ", "STS answered 503)"]),
        (None, &["(no provider answered within 200ms)"]),
    ];
    for (answer, words) in cases {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(Answers(answer)))
            .build();
        let cloud = AwsCloud::from_conf(&config, &settings).unwrap();
        let line = cloud.check_credentials().await.unwrap_err().to_string();
        assert!(line.starts_with("no usable AWS credentials ("), "{line}");
        for word in words {
            assert!(line.contains(word), "{word}: {line}");
        }
        assert!(line.contains("AWS_PROFILE"), "{line}");
        assert!(!line.contains('\n'), "one line: {line}");
        assert_no_sdk_noise(&line);
    }
}

#[test]
fn the_json_of_a_mode_is_its_audit_trail_name() {
    use ecs_reconciler::audit::mode_name;
    use ecs_reconciler::policy::PolicyMode;
    for mode in [PolicyMode::Enforce, PolicyMode::Audit] {
        assert_eq!(serde_json::to_value(mode).unwrap(), mode_name(mode));
    }
}
