//! The HTTP endpoints and `health`: liveness and readiness, scrapes during a policy reload and
//! a shutdown, and the binary end to end (`run --sim --listen` serving after the simulated
//! time, `--listen` malformed or in use, `health` exit codes).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use ecs_reconciler::cli::health::get;
use ecs_reconciler::http::{self, Health, NotReady};
use ecs_reconciler::metrics::Metrics;
use ecs_reconciler::policy::load_dir_identified;
use ecs_reconciler::reload::PolicyWatcher;
use ecs_reconciler::telemetry::Telemetry;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cli::bin;
use crate::metrics::{parse, samples};

fn health(bound: Duration) -> (Arc<Metrics>, Arc<Health>) {
    let metrics = Arc::new(Metrics::new(None));
    let health = Arc::new(Health::new(Arc::clone(&metrics), bound));
    (metrics, health)
}

fn serve(health: &Arc<Health>) -> (String, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = http::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(http::serve(listener, Arc::clone(health), shutdown.clone()));
    (url, shutdown, task)
}

#[test]
fn livez_holds_within_the_bound_after_progress_and_fails_past_it() {
    let bound = http::liveness_bound(Duration::from_secs(30), Duration::from_secs(30));
    assert_eq!(bound, Duration::from_secs(120));
    let (metrics, health) = health(bound);
    metrics.loop_progressed();
    let at = metrics.last_progress();
    assert_eq!(health.live_at(at + bound), Ok(()));
    assert_eq!(
        health.live_at(at + bound + Duration::from_secs(1)),
        Err(bound + Duration::from_secs(1))
    );
    // The simulated time ran out: the loop ended on purpose.
    health.finish();
    assert_eq!(health.live_at(at + bound * 10), Ok(()));
}

#[tokio::test]
async fn readyz_says_what_is_missing_until_policies_cloud_and_audit_trail_are_there() {
    let (metrics, health) = health(Duration::from_secs(120));
    assert_eq!(
        health.ready(),
        Err(vec![
            NotReady::NoPolicySet,
            NotReady::CloudUnresolved,
            NotReady::AuditUnavailable
        ])
    );
    let (url, shutdown, _) = serve(&health);
    let answer = get(&format!("{url}/readyz")).await.unwrap();
    assert_eq!(answer.status, 503);
    assert!(
        answer.body.contains("no valid policy set"),
        "{}",
        answer.body
    );
    metrics.set_policy_set("abc");
    health.cloud_resolved();
    let writable = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = Arc::clone(&writable);
    health.watch_audit(Box::new(move || {
        w.load(std::sync::atomic::Ordering::Relaxed)
    }));
    let answer = get(&format!("{url}/readyz")).await.unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(
        answer.body,
        "not ready: the audit trail cannot be written\n"
    );
    writable.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(get(&format!("{url}/readyz")).await.unwrap().status, 200);
    metrics.loop_progressed();
    assert_eq!(get(&format!("{url}/livez")).await.unwrap().status, 200);
    assert_eq!(get(&format!("{url}/nothing")).await.unwrap().status, 404);
    shutdown.cancel();
}

fn policy_doc(provisioning: &str) -> String {
    format!(
        "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata:\n  name: web\n\
         spec:\n  target:\n    clusters: [prod-web]\n  stuck:\n    PROVISIONING: {provisioning}\n  \
         remediate:\n    replaceTask: {{}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_during_policy_reloads_are_answered_whole() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    fs::write(&file, policy_doc("10m")).unwrap();
    let initial = load_dir_identified(dir.path()).unwrap();
    let (metrics, health) = health(Duration::from_secs(120));
    metrics.set_policy_set(&initial.fingerprint);
    let watcher = Arc::new(
        PolicyWatcher::new(dir.path(), initial)
            .with_telemetry(Arc::clone(&metrics) as Arc<dyn Telemetry>),
    );
    let (url, shutdown, _) = serve(&health);
    let reloads = {
        let watcher = Arc::clone(&watcher);
        let file = file.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                let text = match i % 3 {
                    0 => policy_doc("11m"),
                    1 => "not: [valid".to_string(),
                    _ => policy_doc("12m"),
                };
                fs::write(&file, text).unwrap();
                let _ = watcher.reload_now().await;
            }
        })
    };
    let mut scrapes = 0;
    while !reloads.is_finished() || scrapes < 5 {
        let answer = get(&format!("{url}/metrics")).await.unwrap();
        assert_eq!(answer.status, 200);
        let e = parse(&answer.body);
        assert_eq!(samples(&e, "ecs_reconciler_policy_set").len(), 1);
        scrapes += 1;
    }
    reloads.await.unwrap();
    let e = parse(&get(&format!("{url}/metrics")).await.unwrap().body);
    let total: f64 = samples(&e, "ecs_reconciler_policy_reloads")
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 20.0, "every reload counted once");
    let failed: f64 = samples(&e, "ecs_reconciler_policy_reloads")
        .iter()
        .filter(|(l, _)| l["result"] == "error")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(failed, 7.0, "the invalid documents");
    let info = &samples(&e, "ecs_reconciler_policy_set")[0].0["fingerprint"];
    assert_eq!(info, &watcher.current().fingerprint);
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_at_shutdown_are_answered_or_refused_and_none_hangs() {
    let (metrics, health) = health(Duration::from_secs(120));
    metrics.set_policy_set("abc");
    let (url, shutdown, server) = serve(&health);
    let mut scrapes = Vec::new();
    for _ in 0..16 {
        let url = url.clone();
        scrapes.push(tokio::spawn(
            async move { get(&format!("{url}/metrics")).await },
        ));
    }
    shutdown.cancel();
    let mut answered = 0;
    for scrape in scrapes {
        // `get` gives up after its own timeout: an error here is a refusal or a reset, not a hang.
        match scrape.await.unwrap() {
            Ok(answer) => {
                assert_eq!(answer.status, 200);
                parse(&answer.body);
                answered += 1;
            }
            Err(e) => assert!(!e.contains("no answer within"), "a scrape hung: {e}"),
        }
    }
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server ends after shutdown")
        .unwrap();
    let after = get(&format!("{url}/metrics")).await;
    assert!(after.is_err(), "the listener is closed: {after:?}");
    let _ = answered;
}

// ---- the binary -----------------------------------------------------------------------------

/// Reads the child's standard error on a thread, line by line (so a full pipe cannot stall it).
fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let (send, lines) = channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Waits (at most a minute) for a JSON log line whose message contains `needle`.
fn wait_for(lines: &Receiver<String>, needle: &str, seen: &mut Vec<String>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line with {needle:?}; seen: {seen:#?}"));
        seen.push(line.clone());
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle))
        {
            return v;
        }
    }
}

/// Kills the child if the test fails before it ends (a serving `run` would outlive the test).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn audit_counts(path: &std::path::Path) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for line in fs::read_to_string(path).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let outcome = r["outcome"].as_str().unwrap();
        if outcome.starts_with("skipped:") {
            continue;
        }
        *counts
            .entry(format!(
                "{} {} {outcome}",
                r["policy"].as_str().unwrap(),
                r["action"].as_str().unwrap()
            ))
            .or_default() += 1.0;
    }
    counts
}

#[test]
fn run_sim_serves_after_the_simulated_time_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let mut child = Reaped(
        bin()
            .args([
                "--log-format",
                "json",
                "run",
                "--sim",
                "broken-launch-template",
            ])
            .args(["--sim-for", "20m", "--listen", "127.0.0.1:0", "--audit-log"])
            .arg(&audit)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = stderr_lines(&mut child.0);
    let mut seen = Vec::new();
    let serving = wait_for(&lines, "serving /metrics", &mut seen);
    let address = serving["fields"]["address"].as_str().unwrap().to_string();
    wait_for(&lines, "simulated run complete", &mut seen);
    let url = format!("http://{address}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (livez, readyz, scraped) = runtime.block_on(async {
        (
            get(&format!("{url}/livez")).await.unwrap(),
            get(&format!("{url}/readyz")).await.unwrap(),
            get(&format!("{url}/metrics")).await.unwrap(),
        )
    });
    assert_eq!(livez.status, 200, "{}", livez.body);
    assert_eq!(readyz.status, 200, "{}", readyz.body);
    let e = parse(&scraped.body);
    let actions: BTreeMap<String, f64> = samples(&e, "ecs_reconciler_actions")
        .into_iter()
        .map(|(l, v)| {
            (
                format!("{} {} {}", l["policy"], l["action"], l["outcome"]),
                v,
            )
        })
        .collect();
    let trail = audit_counts(&audit);
    assert!(!trail.is_empty(), "the scenario acted");
    assert_eq!(actions, trail);
    // The container health check: `health` exits 0 against a live process, 1 on a dead URL.
    let probe = bin()
        .args(["health", "--url", &format!("{url}/livez")])
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(0), "{:?}", probe);
    sigterm(&child.0);
    let exit = child.0.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{seen:#?}");
    let dead = bin()
        .args(["health", "--url", &format!("{url}/livez")])
        .output()
        .unwrap();
    assert_eq!(dead.status.code(), Some(1));
    let err = String::from_utf8_lossy(&dead.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&address), "{err}");
}

#[test]
fn listen_in_use_is_one_line_and_exit_1_before_reconciling() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let out = bin()
        .args([
            "run",
            "--sim",
            "broken-launch-template",
            "--listen",
            &address,
            "--audit-log",
        ])
        .arg(&audit)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: listen: "), "{err}");
    assert!(err.contains(&address), "{err}");
    let trail = fs::read_to_string(&audit).unwrap_or_default();
    assert!(trail.is_empty(), "nothing was reconciled: {trail}");
}

#[test]
fn a_malformed_listen_is_one_line_naming_the_flag() {
    let out = bin()
        .args([
            "run",
            "--sim",
            "broken-launch-template",
            "--listen",
            "localhost",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("listen") && err.contains("--listen"), "{err}");
    assert!(err.contains("\"localhost\""), "{err}");
}

#[test]
fn health_refuses_a_url_it_cannot_probe_in_one_line() {
    for url in ["ftp://127.0.0.1:1/livez", "http://nohostport/livez"] {
        let out = bin().args(["health", "--url", url]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("--url"), "{err}");
    }
}

#[test]
fn health_probes_the_configured_listen_address_by_default() {
    assert_eq!(
        ecs_reconciler::cli::health::default_url("0.0.0.0:9090"),
        "http://127.0.0.1:9090/livez"
    );
    assert_eq!(
        ecs_reconciler::cli::health::default_url("[::]:9090"),
        "http://[::1]:9090/livez"
    );
    assert_eq!(
        ecs_reconciler::cli::health::default_url("10.0.0.5:9100"),
        "http://10.0.0.5:9100/livez"
    );
}
