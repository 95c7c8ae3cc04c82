//! Standard output that cannot be written: on /dev/full a command ends with one line on
//! standard error and exit 1; into a pipe whose reader is gone it ends quietly with the exit
//! code it would otherwise have had. Never a panic. Also: bad flags get clap's or the
//! configuration's one-line error, never a source path or a Rust type name.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The binary with a clean environment (see [`crate::cli::bin`]) and no standard input.
pub(crate) fn bin() -> Command {
    let mut c = crate::cli::bin();
    c.stdin(Stdio::null());
    c
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

fn dev_full() -> Stdio {
    File::options()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full opens")
        .into()
}

/// A pipe whose read end is closed before the child starts: its first write gets EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

fn run_with_stdout(args: &[&str], stdout: Stdio) -> Output {
    bin()
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("the binary runs")
}

/// Each command with the exit code it has when its output is read.
fn commands(task: &str) -> Vec<(Vec<String>, i32)> {
    let examples = examples().display().to_string();
    let cases: [(&[&str], i32); 7] = [
        (&["schema"], 0),
        (&["validate", &examples], 0),
        (&["plan", "--sim", "stuck-provisioning"], 2),
        (
            &["plan", "--sim", "stuck-provisioning", "--output", "json"],
            2,
        ),
        (&["explain", task, "--sim", "broken-launch-template"], 0),
        (&["demo", "--list"], 0),
        (&["demo", "stuck-provisioning"], 0),
    ];
    cases
        .iter()
        .map(|(args, code)| (args.iter().map(|a| a.to_string()).collect(), *code))
        .collect()
}

/// A stuck task of the seed scenario, for `explain`.
fn a_stuck_task() -> String {
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
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["clusters"][0]["findings"][0]["task"]
        .as_str()
        .expect("the seed scenario has a stuck task")
        .to_string()
}

#[test]
fn each_command_reads_normally_with_the_expected_exit_code() {
    // The baseline the two failure modes are measured against.
    let task = a_stuck_task();
    for (args, code) in commands(&task) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_with_stdout(&args, Stdio::piped());
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{args:?} printed nothing");
    }
}

#[test]
fn a_full_device_ends_each_command_with_one_line_and_exit_1() {
    let task = a_stuck_task();
    for (args, _) in commands(&task) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_with_stdout(&args, dev_full());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            err, "error: cannot write to standard output: No space left on device (os error 28)\n",
            "{args:?}"
        );
    }
}

#[test]
fn a_reader_that_went_away_ends_each_command_quietly_with_its_own_exit_code() {
    let task = a_stuck_task();
    for (args, code) in commands(&task) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_with_stdout(&args, closed_pipe());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}");
    }
}

/// The lines of standard error that are errors (clap adds a usage hint after its error).
fn error_lines(err: &str) -> Vec<&str> {
    err.lines().filter(|l| l.starts_with("error:")).collect()
}

fn assert_no_internals(err: &str) {
    for internal in [
        "src/",
        ".rs:",
        "ecs_reconciler::",
        "FlagOverrides",
        "default.",
    ] {
        assert!(!err.contains(internal), "{internal:?} in {err}");
    }
}

#[test]
fn a_bad_duration_flag_gets_clap_s_error_naming_the_flag() {
    for (args, flag) in [
        (vec!["run", "--resync", "abc"], "--resync"),
        (
            vec!["plan", "--sim", "stuck-provisioning", "--sim-after", "soon"],
            "--sim-after",
        ),
        (
            vec!["run", "--sim", "stuck-provisioning", "--sim-for", "1x"],
            "--sim-for",
        ),
        // Ten years of virtual time would keep the simulator busy for hours.
        (
            vec![
                "plan",
                "--sim",
                "stuck-provisioning",
                "--sim-after",
                "3650d",
            ],
            "--sim-after",
        ),
        (
            vec!["run", "--sim", "stuck-provisioning", "--sim-for", "25h"],
            "--sim-for",
        ),
    ] {
        let out = bin().args(&args).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let errors = error_lines(&err);
        assert_eq!(errors.len(), 1, "{err}");
        assert!(errors[0].contains(flag), "{err}");
        assert_no_internals(&err);
    }
}

#[test]
fn flags_outside_their_range_are_refused_in_one_line_naming_the_flag() {
    for (args, expected) in [
        (
            vec!["run", "--concurrency", "0"],
            "error: invalid configuration: concurrency: must be at least 1, got 0 (from flag \
             --concurrency)",
        ),
        (
            vec!["run", "--concurrency", "9223372036854775807"],
            "error: invalid configuration: concurrency: must be at most 256, got \
             9223372036854775807 (from flag --concurrency)",
        ),
        (
            vec!["run", "--resync", "0s"],
            "error: invalid configuration: resync: must be at least 1s, got 0s (from flag \
             --resync)",
        ),
        (
            vec!["run", "--resync", "25h"],
            "error: invalid configuration: resync: must be at most 1day, got 1day 1h (from \
             flag --resync)",
        ),
    ] {
        let out = bin().args(&args).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err, format!("{expected}\n"), "{args:?}");
    }
    // Just inside the ranges, the configuration is accepted (the run then stops at the
    // missing AWS region, which is not a configuration error).
    for args in [
        vec!["run", "--once", "--concurrency", "1", "--resync", "1s"],
        vec!["run", "--once", "--concurrency", "256", "--resync", "24h"],
    ] {
        let out = bin()
            .args(&args)
            .arg("--policies")
            .arg(examples())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("invalid configuration"), "{args:?}: {err}");
        assert!(err.to_lowercase().contains("region"), "{args:?}: {err}");
    }
}

/// `explain` judges registration by the diagnosis' own rule: a container instance ECS reports
/// INACTIVE (deregistered) does not make its EC2 instance registered.
#[test]
fn explain_and_the_diagnosis_agree_on_a_deregistered_instance() {
    use ecs_reconciler::causes::Clues;
    use ecs_reconciler::controller::ClusterReport;
    use ecs_reconciler::diagnose::{Sightings, diagnose};
    use ecs_reconciler::history::History;
    use ecs_reconciler::plan::plan;

    use crate::support::fixtures::*;

    let mut snap = snapshot(waiting_tasks(4, 15), &[("web", 6)]);
    snap.capacity_providers = vec![provider(false)];
    snap.auto_scaling_groups = vec![
        GroupBuilder::new(3, 10, 2)
            .instance("i-old", 1, 3000)
            .instance("i-new-a", 2, 20)
            .instance("i-new-b", 2, 20)
            .build(),
    ];
    let mut gone = container_instance("i-new-a", false);
    gone.status = "INACTIVE".into();
    snap.container_instances = vec![container_instance("i-old", true), gone];
    let policies = capacity_policy();
    let sightings = Sightings::default();
    let diagnosis = diagnose(&snap, &policies, &sightings);
    let history = History::rebuild(&snap, &[]);
    let plan = plan(
        &snap,
        diagnosis,
        &policies,
        &history,
        &sightings,
        &Clues::default(),
        true,
    );
    let finding = &plan.capacity[0];
    assert_eq!(
        finding.evidence["version 2"],
        "0 registered, 2 never registered past 10m, 0 booting"
    );
    let task = finding.waiting_tasks[0]
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let report = ClusterReport {
        cluster: snap.cluster_name.clone(),
        policy_set: String::new(),
        snapshot: snap.into(),
        plan,
        clues: Default::default(),
        outcomes: Vec::new(),
    };
    let chain = ecs_reconciler::cli::explain::explain(&task, &report);
    let line = chain
        .lines()
        .find(|l| l.contains("i-new-a"))
        .unwrap_or_else(|| panic!("{chain}"));
    assert!(line.ends_with("never registered"), "{line}");
    assert!(chain.contains("[brokenLaunchTemplateVersion]"), "{chain}");
}
