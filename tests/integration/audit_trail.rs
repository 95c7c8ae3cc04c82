//! The write-ahead audit trail: no mutating call without its intent record written first, an
//! outcome for every intent, nothing done while the trail cannot be written (and the binary
//! says so with its exit code), whole records only, and an audit path that cannot block.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::{AuditError, AuditRecord, AuditSink, Outcome};
use ecs_reconciler::cloud::sim::{SimAccount, build_scenario};
use ecs_reconciler::cloud::{Cloud, CloudError, GroupRead, TaskReads};
use ecs_reconciler::controller::{Controller, ControllerSettings, PassReport};
use ecs_reconciler::demo::scenario_policies;
use ecs_reconciler::domain::{
    ClusterSnapshot, InstanceTypeSize, LaunchTemplateVersion, RunTaskRequest, ScalingActivity, Tags,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

fn scenario(name: &str) -> Arc<SimAccount> {
    Arc::new(build_scenario(name, start()).expect("scenario exists").0)
}

fn controller<C: Cloud>(cloud: C, audit: AuditSink) -> Arc<Controller<C>> {
    Arc::new(Controller::new(
        cloud,
        scenario_policies().unwrap(),
        ControllerSettings::default(),
        audit,
    ))
}

/// `n` passes, 30 s of virtual time apart (the first one now); every report.
async fn passes<C: Cloud>(c: &Arc<Controller<C>>, n: usize) -> Vec<PassReport> {
    let token = CancellationToken::new();
    let mut reports = Vec::new();
    for i in 0..n {
        if i > 0 {
            tokio::time::advance(Duration::from_secs(30)).await;
        }
        reports.push(c.pass(&token).await);
    }
    reports
}

/// What the test trail does with the next write.
enum Mode {
    Works,
    Fails,
    /// Fails the writes whose buffer contains this text, `times` times, then works.
    FailsWhen {
        text: String,
        times: usize,
    },
    /// Takes the first `n` bytes of the next write, then fails the one after, then works.
    Tears(usize),
    FailsOnce,
}

struct TrailState {
    bytes: Vec<u8>,
    mode: Mode,
}

/// An audit destination in memory whose writes can be made to fail; clones share it.
#[derive(Clone)]
struct TestTrail(Arc<Mutex<TrailState>>);

impl TestTrail {
    fn new(mode: Mode) -> TestTrail {
        TestTrail(Arc::new(Mutex::new(TrailState {
            bytes: Vec::new(),
            mode,
        })))
    }

    fn sink(&self) -> AuditSink {
        AuditSink::writer(Box::new(self.clone()))
    }

    fn set(&self, mode: Mode) {
        self.lock().mode = mode;
    }

    fn lock(&self) -> MutexGuard<'_, TrailState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn text(&self) -> String {
        String::from_utf8(self.lock().bytes.clone()).unwrap()
    }

    /// Every line, parsed (a line that is not JSON fails the test).
    fn records(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }
}

impl Write for TestTrail {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.lock();
        let disk_full = || Err(io::Error::other("No space left on device (test)"));
        match &mut state.mode {
            Mode::Works => {}
            Mode::Fails => return disk_full(),
            Mode::FailsOnce => {
                state.mode = Mode::Works;
                return disk_full();
            }
            Mode::FailsWhen { text, times } => {
                if *times > 0 && String::from_utf8_lossy(buf).contains(text.as_str()) {
                    *times -= 1;
                    return disk_full();
                }
            }
            Mode::Tears(n) => {
                let n = (*n).min(buf.len());
                state.mode = Mode::FailsOnce;
                state.bytes.extend_from_slice(&buf[..n]);
                return Ok(n);
            }
        }
        state.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn field<'a>(r: &'a Value, name: &str) -> &'a str {
    r[name].as_str().unwrap_or("")
}

/// Intents (`started`) with no record of the same attempt after them.
fn open_intents(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .enumerate()
        .filter(|(_, r)| field(r, "outcome") == "started")
        .filter(|(i, r)| {
            !records[i + 1..]
                .iter()
                .any(|later| later["attempt"] == r["attempt"])
        })
        .map(|(_, r)| r)
        .collect()
}

// --- the seed scenario with a trail that cannot be written ---------------------------------

#[tokio::test(start_paused = true)]
async fn nothing_is_done_while_the_trail_fails_and_everything_once_it_recovers() {
    let sim = scenario("broken-launch-template");
    let trail = TestTrail::new(Mode::Fails);
    let c = controller(Arc::clone(&sim), trail.sink());
    for report in passes(&c, 4).await {
        assert!(report.action_count() > 0, "the cordon is due every pass");
        assert_eq!(report.held_for_audit(), report.action_count());
        for cluster in &report.clusters {
            for (action, outcome, _) in &cluster.outcomes {
                assert_eq!(
                    *outcome,
                    Outcome::AuditUnavailable,
                    "{}",
                    action.action.name()
                );
                assert_eq!(outcome.to_string(), "skipped:auditUnavailable");
            }
        }
    }
    assert_eq!(sim.mutating_calls(), 0, "{:?}", sim.calls());
    assert!(!c.audit_available());
    assert!(trail.text().is_empty());

    trail.set(Mode::Works);
    let report = passes(&c, 1).await.remove(0);
    assert_eq!(report.held_for_audit(), 0);
    assert!(c.audit_available());
    assert_eq!(sim.call_count("CreateOrUpdateTags"), 1);
    assert_eq!(sim.call_count("UpdateAutoScalingGroup"), 1);
    assert_eq!(sim.call_count("TerminateInstanceInAutoScalingGroup"), 2);
    let records = trail.records();
    let cordon: Vec<_> = records
        .iter()
        .filter(|r| field(r, "action") == "cordonLaunchTemplate")
        .collect();
    assert_eq!(cordon.len(), 2, "{cordon:?}");
    assert_eq!(field(cordon[0], "outcome"), "started");
    assert_eq!(field(cordon[1], "outcome"), "done");
    assert_eq!(cordon[0]["attempt"], cordon[1]["attempt"]);
    assert!(cordon[0]["attempt"].is_string());
    // The held records the failing passes could not write are written now, once.
    let capacity_cause = records
        .iter()
        .filter(|r| field(r, "outcome") == "skipped:capacityCause")
        .count();
    assert_eq!(capacity_cause, 4);
}

#[tokio::test(start_paused = true)]
async fn a_failed_intent_alone_holds_the_action() {
    // Only the intent fails (held records are written): the gate is the intent itself.
    let sim = scenario("stuck-provisioning");
    let trail = TestTrail::new(Mode::FailsWhen {
        text: "\"outcome\":\"started\"".into(),
        times: usize::MAX,
    });
    let c = controller(Arc::clone(&sim), trail.sink());
    let report = passes(&c, 3).await.pop().unwrap();
    assert_eq!(sim.mutating_calls(), 0);
    assert!(report.held_for_audit() > 0);
    assert!(!c.audit_available());
    // Each failed intent is closed by a held record of the same attempt.
    let records = trail.records();
    let held: Vec<_> = records
        .iter()
        .filter(|r| field(r, "outcome") == "skipped:auditUnavailable")
        .collect();
    assert!(!held.is_empty(), "{records:?}");
    assert!(held.iter().all(|r| r["attempt"].is_string()));
    assert!(
        held.iter()
            .all(|r| field(r, "detail").contains("nothing was done"))
    );
}

// --- write-ahead order ---------------------------------------------------------------------

/// Checks, on every mutating call, that the trail already holds an open intent for the call's
/// target; records what it saw (a panic inside a reconcile would only be logged).
struct WriteAhead<C> {
    inner: C,
    trail: TestTrail,
    seen: Mutex<BTreeMap<&'static str, usize>>,
    violations: Mutex<Vec<String>>,
}

impl<C: Cloud> WriteAhead<C> {
    fn new(inner: C, trail: TestTrail) -> Self {
        WriteAhead {
            inner,
            trail,
            seen: Mutex::new(BTreeMap::new()),
            violations: Mutex::new(Vec::new()),
        }
    }

    fn check(&self, call: &'static str, target: &str, matches: impl Fn(&Value) -> bool) {
        *self.seen.lock().unwrap().entry(call).or_default() += 1;
        let records = self.trail.records();
        if !open_intents(&records).into_iter().any(matches) {
            self.violations
                .lock()
                .unwrap()
                .push(format!("{call} {target}: no open intent in {records:?}"));
        }
    }

    fn check_group(&self, call: &'static str, group: &str, detail: &str) {
        let suffix = format!("autoScalingGroupName/{group}");
        self.check(call, group, |r| {
            field(r, "target").ends_with(&suffix) && field(r, "detail").contains(detail)
        });
    }
}

impl<C: Cloud> Cloud for WriteAhead<C> {
    async fn list_clusters(&self) -> Result<Vec<String>, CloudError> {
        self.inner.list_clusters().await
    }

    async fn observe_cluster(&self, cluster: &str) -> Result<ClusterSnapshot, CloudError> {
        self.inner.observe_cluster(cluster).await
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        task_arns: &[String],
    ) -> Result<TaskReads, CloudError> {
        self.inner.describe_tasks(cluster, task_arns).await
    }

    async fn observe_group(&self, group: &str) -> Result<GroupRead, CloudError> {
        self.inner.observe_group(group).await
    }

    async fn console_output(&self, instance_id: &str) -> Result<Option<Vec<u8>>, CloudError> {
        self.inner.console_output(instance_id).await
    }

    async fn launch_template_version(
        &self,
        template_id: &str,
        version: u32,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        self.inner
            .launch_template_version(template_id, version)
            .await
    }

    async fn scaling_activities(&self, group: &str) -> Result<Vec<ScalingActivity>, CloudError> {
        self.inner.scaling_activities(group).await
    }

    async fn instance_type(&self, instance_type: &str) -> Result<InstanceTypeSize, CloudError> {
        self.inner.instance_type(instance_type).await
    }

    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<(), CloudError> {
        self.check("StopTask", task, |r| field(r, "target") == task);
        self.inner.stop_task(cluster, task, reason).await
    }

    async fn run_task(&self, cluster: &str, req: &RunTaskRequest) -> Result<String, CloudError> {
        let token = format!("client token {}", req.client_token);
        self.check("RunTask", &req.client_token, |r| {
            field(r, "detail").contains(&token)
        });
        self.inner.run_task(cluster, req).await
    }

    async fn set_desired_capacity(&self, group: &str, desired: u32) -> Result<(), CloudError> {
        self.check_group("SetDesiredCapacity", group, &format!("-> {desired}"));
        self.inner.set_desired_capacity(group, desired).await
    }

    async fn pin_launch_template_version(
        &self,
        group: &str,
        template_id: &str,
        version: u32,
    ) -> Result<(), CloudError> {
        let detail = format!("UpdateAutoScalingGroup to version {version}");
        self.check_group("UpdateAutoScalingGroup", group, &detail);
        self.inner
            .pin_launch_template_version(group, template_id, version)
            .await
    }

    async fn tag_group(&self, group: &str, tags: &Tags) -> Result<(), CloudError> {
        for key in tags.keys() {
            self.check_group("CreateOrUpdateTags", group, key);
        }
        self.inner.tag_group(group, tags).await
    }

    async fn terminate_instance(&self, instance_id: &str) -> Result<(), CloudError> {
        self.check("TerminateInstance", instance_id, |r| {
            field(r, "detail").contains(instance_id)
        });
        self.inner.terminate_instance(instance_id).await
    }

    async fn drain_container_instance(
        &self,
        cluster: &str,
        container_instance: &str,
    ) -> Result<(), CloudError> {
        self.check("DrainContainerInstance", container_instance, |r| {
            field(r, "target") == container_instance
        });
        self.inner
            .drain_container_instance(cluster, container_instance)
            .await
    }
}

#[tokio::test(start_paused = true)]
async fn every_mutating_call_follows_its_intent_and_every_intent_gets_its_outcome() {
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    for name in [
        "broken-launch-template",
        "capacity-short",
        "standalone",
        "agent-disconnected",
        "stuck-provisioning",
    ] {
        let sim = scenario(name);
        // One transient RunTask failure: a failed outcome is paired like a done one.
        sim.fail_next(
            "RunTask",
            ecs_reconciler::cloud::ErrorCategory::Transient,
            1,
        );
        let trail = TestTrail::new(Mode::Works);
        let cloud = Arc::new(WriteAhead::new(Arc::clone(&sim), trail.clone()));
        let c = controller(Arc::clone(&cloud), trail.sink());
        passes(&c, 40).await;
        let violations = cloud.violations.lock().unwrap().clone();
        assert!(violations.is_empty(), "{name}: {violations:#?}");
        for (call, n) in cloud.seen.lock().unwrap().iter() {
            *seen.entry(call).or_default() += n;
        }
        let records = trail.records();
        assert!(open_intents(&records).is_empty(), "{name}: {records:#?}");
        let mut attempts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in records.iter().filter(|r| r["attempt"].is_string()) {
            attempts
                .entry(field(r, "attempt").to_string())
                .or_default()
                .push(field(r, "outcome").to_string());
        }
        assert!(!attempts.is_empty(), "{name}: no action was taken");
        for (attempt, outcomes) in &attempts {
            assert_eq!(outcomes.len(), 2, "{name} {attempt}: {outcomes:?}");
            assert_eq!(outcomes[0], "started", "{name} {attempt}: {outcomes:?}");
            assert!(
                outcomes[1] == "done" || outcomes[1].starts_with("failed:"),
                "{name} {attempt}: {outcomes:?}"
            );
        }
        assert_eq!(
            sim.mutating_calls() as usize,
            cloud.seen.lock().unwrap().values().sum::<usize>(),
            "{name}: every call went through the checking decorator"
        );
    }
    let kinds: BTreeSet<_> = seen.keys().copied().collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "CreateOrUpdateTags",
            "DrainContainerInstance",
            "RunTask",
            "SetDesiredCapacity",
            "StopTask",
            "TerminateInstance",
            "UpdateAutoScalingGroup",
        ]),
        "every kind of mutating call was checked: {seen:?}"
    );
}

// --- a failure between the call and its outcome record -------------------------------------

/// Log lines captured from `tracing` on this thread (paused-time tests run on one thread).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || logs.clone())
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines(&self) -> Vec<Value> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The first `done` outcome cannot be written: the error log carries the whole record, the
/// call is not made again on the later passes, and the record reaches the trail late.
async fn lost_outcome_is_logged_and_not_repeated(name: &str, action: &str) -> Arc<SimAccount> {
    let logs = Logs::default();
    let _guard = logs.capture();
    let sim = scenario(name);
    let trail = TestTrail::new(Mode::FailsWhen {
        text: "\"outcome\":\"done\"".into(),
        times: 1,
    });
    let c = controller(Arc::clone(&sim), trail.sink());
    passes(&c, 1).await;
    assert!(sim.mutating_calls() > 0, "the call was made");
    assert!(!c.audit_available());
    let lost: Vec<Value> = logs
        .lines()
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .filter_map(|l| l["fields"]["record"].as_str().map(str::to_string))
        .map(|r| serde_json::from_str(&r).expect("the logged record is whole JSON"))
        .collect();
    assert_eq!(lost.len(), 1, "{:?}", logs.lines());
    assert_eq!(field(&lost[0], "action"), action);
    assert_eq!(field(&lost[0], "outcome"), "done");
    let records = trail.records();
    let open = open_intents(&records);
    assert_eq!(open.len(), 1, "the trail shows an intent without outcome");
    assert_eq!(open[0]["attempt"], lost[0]["attempt"]);
    assert_eq!(open[0]["target"], lost[0]["target"]);
    passes(&c, 10).await;
    assert!(c.audit_available(), "the lost record was written late");
    let records = trail.records();
    assert!(open_intents(&records).is_empty(), "{records:#?}");
    let late: Vec<_> = records
        .iter()
        .filter(|r| r["attempt"] == lost[0]["attempt"])
        .map(|r| field(r, "outcome"))
        .collect();
    assert_eq!(late, vec!["started", "done"]);
    sim
}

#[tokio::test(start_paused = true)]
async fn a_cordon_whose_outcome_is_lost_is_not_repeated() {
    let sim =
        lost_outcome_is_logged_and_not_repeated("broken-launch-template", "cordonLaunchTemplate")
            .await;
    assert_eq!(sim.call_count("CreateOrUpdateTags"), 1);
    assert_eq!(sim.call_count("UpdateAutoScalingGroup"), 1);
    assert_eq!(sim.call_count("TerminateInstanceInAutoScalingGroup"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_stop_whose_outcome_is_lost_is_not_repeated() {
    let sim = lost_outcome_is_logged_and_not_repeated("stuck-provisioning", "stopTask").await;
    // Two stuck tasks, each stopped exactly once over the eleven passes.
    assert_eq!(sim.call_count("StopTask"), 2);
    assert_eq!(sim.tasks_stopped_with("ecs-reconciler[").len(), 2);
}

// --- whole records -------------------------------------------------------------------------

fn sample(target: &str) -> AuditRecord {
    AuditRecord {
        time: AuditRecord::time_of(start()),
        mode: "enforce",
        policy_set: "test".into(),
        policy: "p".into(),
        action: "stopTask".into(),
        target: target.into(),
        cluster: "c".into(),
        account: None,
        region: None,
        service: None,
        reason: "stuck".into(),
        evidence: Default::default(),
        outcome: Outcome::Started,
        attempt: Some("t-1".into()),
        detail: Some("calls: StopTask".into()),
    }
}

#[test]
fn a_torn_write_is_not_resent_and_the_next_record_starts_on_its_own_line() {
    let (first, second) = (sample("arn:first"), sample("arn:second"));
    let trail = TestTrail::new(Mode::Tears(20));
    let sink = trail.sink();
    assert!(sink.record(&first).is_err());
    sink.record(&second).unwrap();
    let expected = format!("{}\n{}\n", &first.to_json()[..20], second.to_json());
    assert_eq!(trail.text(), expected);
}

#[test]
fn a_write_that_wrote_nothing_leaves_no_blank_line() {
    let trail = TestTrail::new(Mode::FailsOnce);
    let sink = trail.sink();
    assert!(sink.record(&sample("arn:first")).is_err());
    sink.record(&sample("arn:second")).unwrap();
    let records = trail.records();
    assert_eq!(records.len(), 1);
    assert_eq!(field(&records[0], "target"), "arn:second");
}

// --- the audit path ------------------------------------------------------------------------

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

#[test]
fn a_fifo_with_no_reader_is_refused_at_once_and_other_open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    mkfifo(&fifo);
    let (tx, rx) = std::sync::mpsc::channel();
    let path = fifo.clone();
    std::thread::spawn(move || {
        let _ = tx.send(AuditSink::file(&path).err());
    });
    let err = match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(err) => err.expect("refused"),
        Err(_) => {
            // Give the blocked open its reader, so the thread ends, then fail.
            let _ = std::fs::File::open(&fifo);
            panic!("opening a FIFO with no reader blocked");
        }
    };
    assert!(matches!(err, AuditError::FifoWithoutReader { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("audit log {} is a FIFO with no reader", fifo.display())
    );
    let missing = dir.path().join("no-such-dir").join("audit.jsonl");
    let err = AuditSink::file(&missing).err().expect("refused");
    let text = err.to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(!text.contains('\n'), "{text}");
}

// --- the binary ----------------------------------------------------------------------------

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ecs-reconciler"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    for var in ["AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "RUST_LOG"] {
        c.env_remove(var);
    }
    c.env("ECS_RECONCILER_LOG_FORMAT", "json");
    c.env("ECS_RECONCILER_LISTEN", "127.0.0.1:0");
    c.stdin(Stdio::null());
    c
}

/// Waits for the child up to `limit`, reading its stderr meanwhile (so a full pipe cannot
/// stall it); kills it and fails the test if it is still running.
fn wait_with_deadline(mut child: Child, limit: Duration) -> Output {
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reading = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        bytes
    });
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if began.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = reading.join().unwrap_or_default();
            panic!(
                "still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: Vec::new(),
        stderr: reading.join().unwrap_or_default(),
    }
}

fn run_bin(args: &[&str], audit: &Path) -> Output {
    let child = bin()
        .args(args)
        .arg("--audit-log")
        .arg(audit)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    wait_with_deadline(child, Duration::from_secs(60))
}

fn log_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The `actions` count of the last `reconciled` event of the seed scenario's cluster: the
/// controller's own reading of the account at the end (1 while the cordon is still due).
fn actions_due_at_the_end(logs: &[Value]) -> Option<u64> {
    logs.iter()
        .rev()
        .find(|l| {
            l["fields"]["message"] == "reconciled" && l["fields"]["cluster"] == "demo-capacity"
        })
        .and_then(|l| l["fields"]["actions"].as_u64())
}

/// Calls the API budget granted in a category, from the report logged at exit.
fn budget_calls(logs: &[Value], category: &str) -> u64 {
    logs.iter()
        .filter(|l| l["fields"]["message"] == "API budget")
        .filter(|l| l["fields"]["category"] == category)
        .filter_map(|l| l["fields"]["calls"].as_u64())
        .sum()
}

/// Log events of an action whose calls were made (`done` or `failed:…`).
fn performed(logs: &[Value]) -> Vec<&Value> {
    logs.iter()
        .filter(|l| l["fields"]["message"] == "action")
        .filter(|l| l["fields"]["outcome"] != "planned")
        .collect()
}

const SEED: &[&str] = &["run", "--sim", "broken-launch-template", "--sim-for", "30m"];

#[test]
fn the_seed_scenario_on_dev_full_does_nothing_and_exits_non_zero() {
    let out = run_bin(SEED, Path::new("/dev/full"));
    let logs = log_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{logs:#?}");
    assert!(performed(&logs).is_empty(), "{:#?}", performed(&logs));
    let held: Vec<_> = logs
        .iter()
        .filter(|l| l["level"] == "ERROR")
        .filter(|l| l["fields"]["outcome"] == "skipped:auditUnavailable")
        .collect();
    assert!(
        held.iter()
            .any(|l| l["fields"]["action"] == "cordonLaunchTemplate"),
        "{logs:#?}"
    );
    assert_eq!(
        actions_due_at_the_end(&logs),
        Some(1),
        "the account was never cordoned"
    );

    // The same run with a writable trail cordons: the assertions above can fail.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let out = run_bin(SEED, &file);
    assert_eq!(out.status.code(), Some(0));
    let logs = log_lines(&out);
    assert!(!performed(&logs).is_empty());
    assert_eq!(actions_due_at_the_end(&logs), Some(0), "cordoned");
    let trail = std::fs::read_to_string(&file).unwrap();
    assert!(trail.contains("\"outcome\":\"started\""), "{trail}");
}

#[test]
fn run_once_exits_non_zero_when_an_action_was_held_for_the_trail() {
    let args = ["run", "--once", "--sim", "stuck-provisioning"];
    let out = run_bin(&args, Path::new("/dev/full"));
    let logs = log_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{logs:#?}");
    assert!(performed(&logs).is_empty(), "{logs:#?}");
    assert!(
        budget_calls(&logs, "cluster-resource-read") > 0,
        "the budget report is logged: {logs:#?}"
    );
    assert_eq!(
        budget_calls(&logs, "cluster-resource-modify"),
        0,
        "no StopTask"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = run_bin(&args, &dir.path().join("audit.jsonl"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(budget_calls(&log_lines(&out), "cluster-resource-modify"), 2);
}

#[test]
fn a_fifo_audit_log_with_no_reader_fails_fast_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    mkfifo(&fifo);
    let child = bin()
        .args([
            "run",
            "--once",
            "--sim",
            "stuck-provisioning",
            "--audit-log",
        ])
        .arg(&fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_with_deadline(child, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: audit log {} is a FIFO with no reader",
            fifo.display()
        )
    );
}

#[test]
fn a_fifo_audit_log_with_a_reader_gets_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("audit.fifo");
    mkfifo(&fifo);
    // Read and write end at once: never blocks, and keeps a reader while the child runs.
    let mut reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let child = bin()
        .args([
            "run",
            "--once",
            "--sim",
            "stuck-provisioning",
            "--audit-log",
        ])
        .arg(&fifo)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_with_deadline(child, Duration::from_secs(20));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two stops: two intents, two outcomes, all already in the pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        while text.iter().filter(|b| **b == b'\n').count() < 4 {
            match reader.read(&mut buf) {
                Ok(n) if n > 0 => text.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let _ = tx.send(text);
    });
    let text = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("four lines in the FIFO");
    let text = String::from_utf8(text).unwrap();
    let outcomes: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["outcome"].to_string())
        .collect();
    assert_eq!(outcomes.len(), 4, "{text}");
    assert_eq!(outcomes.iter().filter(|o| *o == "\"done\"").count(), 2);
}

// --- evidence ------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn one_evidence_map_reaches_the_audit_trail_and_is_written_as_a_map() {
    let sim = scenario("stuck-provisioning");
    let audit = AuditSink::memory();
    let c = controller(Arc::clone(&sim), audit.clone());
    let token = CancellationToken::new();
    let mut report = None;
    for _ in 0..120 {
        let pass = c.pass(&token).await;
        if pass.action_count() > 0 {
            report = Some(pass);
            break;
        }
        tokio::time::advance(Duration::from_secs(30)).await;
    }
    let report = report.expect("the scenario's stuck tasks are acted on");
    let cluster = report
        .clusters
        .iter()
        .find(|c| !c.plan.actions.is_empty())
        .unwrap();
    let action = &cluster.plan.actions[0];
    let finding = cluster
        .plan
        .findings
        .iter()
        .find(|f| f.task_arn == action.action.target())
        .expect("the action's finding");
    // The finding, the planned action and every audit record of it hold the same map.
    assert!(Arc::ptr_eq(&finding.evidence, &action.evidence));
    let records: Vec<AuditRecord> = audit
        .records()
        .into_iter()
        .filter(|r| r.target == action.action.target())
        .collect();
    assert!(records.len() >= 2, "intent and outcome: {records:?}");
    for record in &records {
        assert!(
            Arc::ptr_eq(&record.evidence, &finding.evidence),
            "{record:?}"
        );
        let json: Value = serde_json::from_str(&record.to_json()).unwrap();
        let evidence = json["evidence"]
            .as_object()
            .expect("evidence is a JSON object");
        assert_eq!(evidence.len(), finding.evidence.len());
        assert_eq!(
            evidence["clockSource"].as_str(),
            Some(finding.evidence["clockSource"].as_str())
        );
    }
}
