//! `backtest`: a recording of the controller on the simulated account, replayed under the set
//! it ran with, reproduces what it did; under another set, the differences; and the bad
//! inputs of the issue (torn tail, unknown version, empty or inverted window).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ecs_reconciler::audit::{AuditSink, Outcome};
use ecs_reconciler::backtest::{Window, backtest};
use ecs_reconciler::capacity::tags::ManagedTag;
use ecs_reconciler::cloud::sim::build_scenario;
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::demo::{SCENARIO_POLICY, scenario_policies};
use ecs_reconciler::record::recorder::Recorder;
use ecs_reconciler::record::segments::Limits;
use ecs_reconciler::telemetry::{Silent, Telemetry};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cli::bin;

const LIMITS: Limits = Limits {
    max_bytes: 1 << 30,
    max_age: Duration::from_secs(7 * 24 * 3600),
};

/// An hour of the controller on `scenario` (a pass every 30 s), recorded into `dir`; the
/// actions it performed, by kind.
async fn recorded_hour(scenario: &str, dir: &Path) -> BTreeMap<String, usize> {
    let start = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    let sim = Arc::new(build_scenario(scenario, start).unwrap().0);
    let recorder = Arc::new(Recorder::start(dir, LIMITS, Arc::new(Silent)).unwrap());
    let audit = AuditSink::memory();
    let controller = Arc::new(
        Controller::new(
            sim,
            scenario_policies().unwrap(),
            ControllerSettings::default(),
            audit.clone(),
        )
        .with_telemetry(Arc::clone(&recorder) as Arc<dyn Telemetry>),
    );
    let token = CancellationToken::new();
    for _ in 0..120 {
        controller.pass(&token).await;
        tokio::time::advance(Duration::from_secs(30)).await;
    }
    recorder.finish();
    let mut done = BTreeMap::new();
    for r in audit
        .records()
        .iter()
        .filter(|r| r.outcome == Outcome::Done)
    {
        *done.entry(r.action.clone()).or_default() += 1;
    }
    done
}

#[tokio::test(start_paused = true)]
async fn replaying_the_set_a_controller_ran_with_takes_the_actions_it_took_when_it_took_them() {
    for scenario in [
        "stuck-provisioning",
        "mixed",
        "standalone",
        "broken-launch-template",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let done = recorded_hour(scenario, dir.path()).await;
        assert!(!done.is_empty(), "{scenario}: the controller acted");
        let set = scenario_policies().unwrap();
        let result = backtest(
            dir.path(),
            &set,
            None,
            Window::default(),
            &ManagedTag::default(),
        )
        .unwrap();
        assert_eq!(
            result.observations,
            120 * result.clusters.len(),
            "{scenario}"
        );
        let policy = &result.head.policies["demo-stuck-tasks"];
        assert_eq!(
            policy.actions, done,
            "{scenario}: the same actions, by kind"
        );
        for stuck in &policy.stuck {
            if let Some(recorded) = &stuck.recorded {
                assert_eq!(
                    stuck.action.as_ref(),
                    Some(recorded),
                    "{scenario}: {} acted on as recorded, at the same delay",
                    stuck.task
                );
            }
        }
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = bin()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Half an hour of `run --sim stuck-provisioning --record DIR`, and the demo policy in
/// `dir/base` and a change of it (a limit of 20 minutes, one action an hour) in `dir/head`.
fn recorded_run(dir: &Path) -> String {
    let recording = dir.join("rec");
    let (code, _, stderr) = run(&[
        "run",
        "--sim",
        "stuck-provisioning",
        "--sim-for",
        "30m",
        "--record",
        recording.to_str().unwrap(),
        "--audit-log",
        dir.join("audit.jsonl").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    for (name, text) in [
        ("base", SCENARIO_POLICY.to_string()),
        (
            "head",
            SCENARIO_POLICY
                .replace("PROVISIONING: 10m", "PROVISIONING: 20m")
                .replace("maxActionsPerHour: 20", "maxActionsPerHour: 1"),
        ),
    ] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("demo.yaml"), text).unwrap();
    }
    recording.to_str().unwrap().to_string()
}

#[test]
fn a_backtest_of_a_simulated_run_reports_per_policy_and_against_a_base() {
    let dir = tempfile::tempdir().unwrap();
    let recording = recorded_run(dir.path());
    let base = dir.path().join("base");
    let head = dir.path().join("head");
    let (code, stdout, stderr) = run(&[
        "backtest",
        "--recording",
        &recording,
        "--policies",
        base.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("### ecs-reconciler backtest"),
        "{stdout}"
    );
    assert!(stdout.contains("A replay cannot know how the account would have reacted"));
    assert!(
        stdout.contains("| demo-stuck-tasks | enforce | 2 | stopTask 2 | — |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| stopTask | 5m | stopTask | 5m |"),
        "delays beside the recorded controller's: {stdout}"
    );

    let with_base = [
        "backtest",
        "--recording",
        &recording,
        "--policies",
        head.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = run(&with_base);
    assert_eq!(code, 2, "differences: {stdout}{stderr}");
    assert!(
        stdout.contains("| demo-stuck-tasks | 2 → 0 | stopTask 2 → — |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("#### Differences from the base set"),
        "{stdout}"
    );
    assert!(stdout.contains("2 targets differ."), "{stdout}");

    let (code, stdout, _) = run(&[&with_base[..], &["--output", "json"]].concat());
    assert_eq!(code, 2);
    let doc: Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(doc["changes"].as_array().unwrap().len(), 2, "{doc:#}");
    let base_stuck = &doc["base"]["policies"]["demo-stuck-tasks"]["stuck"];
    assert_eq!(base_stuck.as_array().unwrap().len(), 2);
    assert_eq!(base_stuck[0]["action"]["delaySeconds"], 300);
    assert_eq!(base_stuck[0]["recorded"]["action"], "stopTask");
}

#[test]
fn a_bad_window_a_torn_tail_and_an_unknown_version_are_each_told_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let recording = recorded_run(dir.path());
    let base = dir.path().join("base");
    let backtest = |extra: &[&str]| {
        let mut args = vec![
            "backtest",
            "--recording",
            &recording,
            "--policies",
            base.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let one_error_line = |stderr: &str, needle: &str| {
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(needle), "{stderr}");
    };

    let (code, _, stderr) = backtest(&[
        "--from",
        "2030-01-02T00:00:00Z",
        "--to",
        "2030-01-01T00:00:00Z",
    ]);
    assert_eq!(code, 1);
    one_error_line(&stderr, "--from 2030-01-02T00:00:00Z is after --to");

    let (code, _, stderr) = backtest(&[
        "--from",
        "2001-01-01T00:00:00Z",
        "--to",
        "2001-01-02T00:00:00Z",
    ]);
    assert_eq!(code, 1);
    one_error_line(
        &stderr,
        "no observations between 2001-01-01T00:00:00Z and 2001-01-02T00:00:00Z: the recording spans ",
    );

    // The controller was killed while writing: the segment loses its last bytes.
    let segment = std::fs::read_dir(&recording)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&segment).unwrap();
    std::fs::write(&segment, &bytes[..bytes.len() - 40]).unwrap();
    let (code, stdout, stderr) = backtest(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("warning: ") && l.contains(".jsonl.gz:")),
        "{stderr}"
    );
    assert!(
        stdout.contains("| demo-stuck-tasks | enforce | 2 | stopTask 2 |"),
        "{stdout}"
    );

    std::fs::write(&segment, gzip(b"{\"kind\":\"header\",\"format\":\"ecs-reconciler-recording\",\"version\":2,\"started\":{\"secs_since_epoch\":1,\"nanos_since_epoch\":0}}\n")).unwrap();
    let (code, _, stderr) = backtest(&[]);
    assert_eq!(code, 1);
    one_error_line(&stderr, "format version 2 is not known to this build");

    let (code, _, stderr) = run(&[
        "backtest",
        "--recording",
        dir.path().join("nowhere").to_str().unwrap(),
        "--policies",
        base.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    one_error_line(&stderr, "nowhere");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}
