//! Fleet run (issue 9, item 7): the real controller over a large simulated account, resync-only
//! and event-driven side by side, paced by the API budget at its defaults (half the documented
//! rates), in paused (virtual) tokio time.
//!
//! The account: 100,000 tasks over 20 clusters, one of them holding 40,000, in services of
//! 250. 1% of the tasks fail at random moments over one hour (seeded): each one's essential
//! container exits and the replacement its service launches hangs in PROVISIONING, PENDING or
//! ACTIVATING. The controller runs long enough after the hour for every limit to pass.
//!
//! For each mode it prints: the detection delay beyond the limit (p50, p99, max; from the
//! moment the task's clock says it crossed its limit to the first audit record about it), how
//! many planted tasks were found, read calls per minute per category in the steady state (after
//! the first pass) as a share of the budget, actions taken, and the resync pass time.
//! Asserts nothing.
//!
//! ```sh
//! cargo test --bench fleet               # smoke: 2,000 tasks over 4 clusters, 15 virtual minutes
//! cargo test --bench fleet -- --full     # the full fleet, debug build
//! cargo bench --bench fleet              # the full fleet, release build
//! cargo test --bench fleet -- --full --events-only   # event mode only
//! ```
//!
//! It also prints the five largest delays with the reconciles of their cluster between the
//! deadline and the record (to explain them), and the steady-state cluster-resource reads by
//! operation (ListTasks and the container instance reads are the resyncs'; DescribeTasks
//! serves resyncs, deadlines and events).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallInstant, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::{AuditRecord, AuditSink, Outcome};
use ecs_reconciler::cloud::CloudError;
use ecs_reconciler::cloud::budget::{ApiBudget, Category, CategoryReport, PacingSettings};
use ecs_reconciler::cloud::sim::{QueueFaults, ServiceSpec, SimAccount, TaskBehavior};
use ecs_reconciler::controller::{ClusterReport, Controller, ControllerSettings};
use ecs_reconciler::domain::TaskStatus;
use ecs_reconciler::events::pump::Pump;
use ecs_reconciler::events::{Disposition, EventSink};
use ecs_reconciler::policy::{self, PolicySet};
use ecs_reconciler::telemetry::{Telemetry, Trigger};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The bench's policy: the demo's limits, and a guardrail loose enough that every stuck task
/// is acted on (the run measures detection, not the guardrail).
const POLICY: &str = r#"
apiVersion: ecs-reconciler/v1
kind: RemediationPolicy
metadata:
  name: fleet
spec:
  mode: enforce
  target:
    clusters: ["fleet-*"]
  stuck:
    PROVISIONING: 10m
    PENDING: 10m
    ACTIVATING: 5m
  remediate:
    replaceTask: {}
  guardrails:
    maxActionsPerHour: 1000
    maxInFlightPerService: 50%
    pauseWhenStuckAbove: 50%
"#;

/// The limits of [`POLICY`], by state.
fn limit(status: TaskStatus) -> Option<Duration> {
    match status {
        TaskStatus::Provisioning | TaskStatus::Pending => Some(Duration::from_secs(600)),
        TaskStatus::Activating => Some(Duration::from_secs(300)),
        _ => None,
    }
}

const HANGS: [TaskStatus; 3] = [
    TaskStatus::Provisioning,
    TaskStatus::Pending,
    TaskStatus::Activating,
];

/// The size of a fleet run.
#[derive(Debug, Clone)]
struct Fleet {
    /// Tasks per cluster.
    clusters: Vec<usize>,
    per_service: usize,
    /// Share of the tasks that fail and whose replacement hangs.
    stuck_share: f64,
    /// The failures fall at random moments within this time from the start.
    failures_over: Duration,
    /// How long the controller runs.
    run_for: Duration,
    /// Reads before this are the first pass; the steady state is after.
    warmup: Duration,
    seed: u64,
}

impl Fleet {
    fn full() -> Self {
        let mut clusters = vec![40_000];
        // 60,000 over the other 19: 3,157 or 3,158 each.
        for i in 0..19 {
            clusters.push(60_000 / 19 + usize::from(i < 60_000 % 19));
        }
        Fleet {
            clusters,
            per_service: 250,
            stuck_share: 0.01,
            failures_over: Duration::from_secs(3600),
            run_for: Duration::from_secs(3600 + 20 * 60),
            warmup: Duration::from_secs(10 * 60),
            seed: 9,
        }
    }

    fn smoke() -> Self {
        Fleet {
            clusters: vec![800, 400, 400, 400],
            per_service: 100,
            stuck_share: 0.01,
            failures_over: Duration::from_secs(5 * 60),
            run_for: Duration::from_secs(17 * 60),
            warmup: Duration::from_secs(2 * 60),
            seed: 9,
        }
    }

    fn tasks(&self) -> usize {
        self.clusters.iter().sum()
    }
}

/// Resync-only, or driven by the simulated account's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Resync,
    Events,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Resync => "resync",
            Mode::Events => "events",
        }
    }
}

/// What one mode measured.
#[derive(Debug, Clone, Default)]
struct Figures {
    planted: usize,
    /// Detection delay beyond the limit of each planted task found, sorted.
    delays: Vec<Duration>,
    /// The same, split by what was running when the deadline fell: a resync of its own
    /// cluster, of another cluster only, or no resync.
    by_overlap: [Vec<Duration>; 3],
    /// The same, in the largest cluster and in the others.
    by_cluster: [Vec<Duration>; 2],
    /// Steady-state calls per category, with the budget per second.
    steady: Vec<(Category, u64, f64)>,
    steady_minutes: f64,
    actions_done: usize,
    /// The tasks (and other targets) those actions were done to.
    targets_done: usize,
    outcomes: BTreeMap<String, usize>,
    /// Time each resync reconcile of a cluster took, and the time between two resyncs of the
    /// largest cluster (when a task there is looked at again).
    resync_took: Vec<Duration>,
    resync_interval: Vec<Duration>,
    reconciles: HashMap<Trigger, Vec<Duration>>,
    events: BTreeMap<Disposition, u64>,
    /// The largest delays: task, cluster, its status and clock source, its deadline (after
    /// the start), the delay, and its cluster's reconciles until the record (trigger, end).
    worst: Vec<Worst>,
    /// Steady-state calls per operation of the simulated account.
    steady_ops: BTreeMap<String, u64>,
    /// Steady-state resyncs per cluster, with the cluster's size.
    steady_resyncs: Vec<(usize, u64)>,
    wall: Duration,
}

#[derive(Debug, Clone)]
struct Worst {
    target: String,
    cluster: String,
    status: String,
    clock: String,
    deadline: Duration,
    delay: Duration,
    around: Vec<(Trigger, Duration)>,
}

/// Listens to the controller: the first audit record about each task, actions done, and the
/// time of every reconcile.
struct Recorder {
    /// Virtual wall-clock time at `began`.
    origin: SystemTime,
    began: Instant,
    largest: String,
    state: Mutex<Recorded>,
}

#[derive(Default)]
struct Recorded {
    /// Task ARN -> its cluster, its deadline and the delay beyond it at its first record.
    first_record: HashMap<String, (String, SystemTime, Duration)>,
    /// The status and clock source of each first record.
    first_evidence: HashMap<String, (String, String)>,
    /// Every reconcile: cluster, trigger, when it ended (virtual time).
    timeline: Vec<(String, Trigger, SystemTime)>,
    /// Every resync of a cluster: (cluster, began, ended), virtual time.
    resyncs: Vec<(String, SystemTime, SystemTime)>,
    done: usize,
    done_targets: std::collections::HashSet<String>,
    /// Records of task actions by outcome (`done`, `skipped:maxActionsPerHour`, ...).
    outcomes: BTreeMap<String, usize>,
    resync_took: Vec<Duration>,
    largest_resyncs: Vec<Instant>,
    /// How long each reconcile took, by trigger.
    reconciles: HashMap<Trigger, Vec<Duration>>,
    /// Queue messages by what became of them.
    events: BTreeMap<Disposition, u64>,
}

impl Recorder {
    fn new(largest: &str, origin: SystemTime) -> Self {
        Recorder {
            origin,
            began: Instant::now(),
            largest: largest.to_string(),
            state: Mutex::new(Recorded::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long after its limit the task of `record` is recorded, by its evidence (the clock the
/// diagnosis started, and the state), at virtual time `now`.
fn beyond_limit(record: &AuditRecord, now: SystemTime) -> Option<(SystemTime, Duration)> {
    let status = TaskStatus::parse(record.evidence.get("lastStatus")?)?;
    let since = humantime::parse_rfc3339(record.evidence.get("clockStartedAt")?).ok()?;
    let deadline = since + limit(status)?;
    Some((
        deadline,
        now.duration_since(deadline).unwrap_or(Duration::ZERO),
    ))
}

impl Telemetry for Recorder {
    fn reconciled(
        &self,
        cluster: &str,
        trigger: Trigger,
        _result: Result<&ClusterReport, &CloudError>,
        took: Duration,
    ) {
        let mut state = self.lock();
        state.reconciles.entry(trigger).or_default().push(took);
        let ended = self.origin + self.began.elapsed();
        state.timeline.push((cluster.to_string(), trigger, ended));
        if trigger == Trigger::Resync {
            let ended = self.origin + self.began.elapsed();
            state
                .resyncs
                .push((cluster.to_string(), ended - took, ended));
            state.resync_took.push(took);
            if cluster == self.largest {
                state.largest_resyncs.push(Instant::now());
            }
        }
    }

    fn event(&self, disposition: Disposition, _lag: Option<Duration>) {
        *self.lock().events.entry(disposition).or_default() += 1;
    }

    fn recorded(&self, record: &AuditRecord) {
        let now = self.origin + self.began.elapsed();
        let mut state = self.lock();
        if record.outcome == Outcome::Done {
            state.done += 1;
            state.done_targets.insert(record.target.clone());
        }
        if record.outcome != Outcome::Started {
            *state
                .outcomes
                .entry(record.outcome.to_string())
                .or_default() += 1;
        }
        if !state.first_record.contains_key(&record.target)
            && let Some((deadline, delay)) = beyond_limit(record, now)
        {
            let found = (record.cluster.clone(), deadline, delay);
            state.first_record.insert(record.target.clone(), found);
            let evidence = |k: &str| record.evidence.get(k).cloned().unwrap_or_default();
            state.first_evidence.insert(
                record.target.clone(),
                (evidence("lastStatus"), evidence("clockSource")),
            );
        }
    }
}

/// How long the account runs before the controller starts.
const SETTLE: Duration = Duration::from_secs(30);

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

/// SplitMix64, for the planted failures.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn cluster_name(i: usize) -> String {
    format!("fleet-{i:02}")
}

/// The account: its clusters, container instances and services, every task launched now.
fn build(fleet: &Fleet) -> Arc<SimAccount> {
    let sim = Arc::new(SimAccount::new(start()));
    for (c, &tasks) in fleet.clusters.iter().enumerate() {
        let cluster = cluster_name(c);
        sim.add_cluster(&cluster);
        for i in 0..10 {
            sim.add_container_instance(&cluster, &format!("i-{c:02}{i:015x}"));
        }
        for s in 0..tasks.div_ceil(fleet.per_service) {
            let count = fleet.per_service.min(tasks - s * fleet.per_service);
            sim.add_service(
                &cluster,
                ServiceSpec::new(&format!("svc-{s:03}"), count as u32),
            );
        }
    }
    sim
}

/// Plants the failures, at random moments from now; how many.
fn plant(sim: &SimAccount, fleet: &Fleet) -> usize {
    let mut rng = Seeded(fleet.seed);
    let mut arns: Vec<String> = fleet
        .clusters
        .iter()
        .enumerate()
        .flat_map(|(c, _)| sim.tasks(&cluster_name(c)).into_iter().map(|t| t.arn))
        .collect();
    let stuck = (fleet.tasks() as f64 * fleet.stuck_share).round() as usize;
    let over = fleet.failures_over.as_millis() as u64;
    for n in 0..stuck {
        // A partial Fisher-Yates draw: distinct tasks.
        let pick = n + rng.below((arns.len() - n) as u64) as usize;
        arns.swap(n, pick);
        let after = Duration::from_millis(rng.below(over));
        let hang = HANGS[rng.below(HANGS.len() as u64) as usize];
        sim.fail_task_after(&arns[n], after, TaskBehavior::hangs_in(hang));
    }
    stuck
}

fn policies() -> PolicySet {
    let policies = policy::parse_str(std::path::Path::new("<fleet bench policy>"), POLICY)
        .expect("the bench policy is valid");
    PolicySet {
        policies,
        fingerprint: "fleet-bench".into(),
    }
}

/// Runs one mode over a fresh account in its own paused runtime.
fn run_mode(fleet: &Fleet, mode: Mode) -> Option<Figures> {
    let wall = WallInstant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let mut figures = runtime.block_on(run_controller(fleet.clone(), mode))?;
    figures.wall = wall.elapsed();
    Some(figures)
}

async fn run_controller(fleet: Fleet, mode: Mode) -> Option<Figures> {
    let sim = build(&fleet);
    // Every task is RUNNING before the controller starts (and before a queue listens).
    tokio::time::sleep(SETTLE).await;
    let planted = plant(&sim, &fleet);
    let budget = Arc::new(ApiBudget::new(&PacingSettings::default()).expect("defaults"));
    sim.set_budget(Some(Arc::clone(&budget)));
    let recorder = Arc::new(Recorder::new(&cluster_name(0), sim.now()));
    // The defaults: resync every 30 s without events (10 min with), 4 clusters at once.
    let settings = ControllerSettings::default();
    let controller = Controller::new(Arc::clone(&sim), policies(), settings, AuditSink::memory())
        .with_telemetry(Arc::clone(&recorder) as Arc<dyn Telemetry>);
    let controller = Arc::new(controller);
    let token = CancellationToken::new();
    let mut running = vec![tokio::spawn(Arc::clone(&controller).run(token.clone()))];
    if mode == Mode::Events {
        let queue = sim.event_queue(QueueFaults::default());
        let sink = Arc::clone(&controller) as Arc<dyn EventSink>;
        let pump = Pump::new(queue, sink, Arc::clone(&recorder) as Arc<dyn Telemetry>);
        running.push(tokio::spawn(pump.run(token.clone())));
    }
    tokio::time::sleep(fleet.warmup).await;
    let first_pass = budget.report();
    let ops_before = sim.calls();
    let resyncs_before = recorder.lock().timeline.len();
    tokio::time::sleep(fleet.run_for - fleet.warmup).await;
    let end = budget.report();
    let steady_ops = sim
        .calls()
        .into_iter()
        .map(|(op, n)| {
            let earlier = ops_before.get(&op).copied().unwrap_or(0);
            (op, n - earlier)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    token.cancel();
    for task in running {
        let _ = task.await;
    }

    let recorded = recorder.lock();
    let mut delays: Vec<Duration> = recorded.first_record.values().map(|f| f.2).collect();
    delays.sort();
    let mut by_overlap: [Vec<Duration>; 3] = Default::default();
    for (cluster, deadline, delay) in recorded.first_record.values() {
        let running = |own: bool| {
            recorded.resyncs.iter().any(|(c, began, ended)| {
                (c == cluster) == own && began <= deadline && deadline <= ended
            })
        };
        let bucket = if running(true) {
            0
        } else if running(false) {
            1
        } else {
            2
        };
        by_overlap[bucket].push(*delay);
    }
    for part in &mut by_overlap {
        part.sort();
    }
    let mut by_cluster: [Vec<Duration>; 2] = Default::default();
    for (cluster, _, delay) in recorded.first_record.values() {
        by_cluster[usize::from(*cluster != recorder.largest)].push(*delay);
    }
    for part in &mut by_cluster {
        part.sort();
    }
    let steady = steady_calls(&first_pass, &end);
    let mut steady_resyncs: Vec<(usize, u64)> = fleet.clusters.iter().map(|&n| (n, 0)).collect();
    for (cluster, trigger, _) in &recorded.timeline[resyncs_before..] {
        if *trigger == Trigger::Resync
            && let Some(i) = (0..fleet.clusters.len()).find(|&i| cluster_name(i) == *cluster)
        {
            steady_resyncs[i].1 += 1;
        }
    }
    let worst = worst_delays(&recorded, sim.now() - fleet.run_for);
    let resync_interval = recorded
        .largest_resyncs
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    Some(Figures {
        planted,
        delays,
        by_overlap,
        by_cluster,
        steady,
        steady_minutes: (fleet.run_for - fleet.warmup).as_secs_f64() / 60.0,
        actions_done: recorded.done,
        targets_done: recorded.done_targets.len(),
        outcomes: recorded.outcomes.clone(),
        resync_took: recorded.resync_took.clone(),
        resync_interval,
        reconciles: recorded.reconciles.clone(),
        events: recorded.events.clone(),
        worst,
        steady_ops,
        steady_resyncs,
        wall: Duration::ZERO,
    })
}

/// The five largest delays, each with its cluster's reconciles from its deadline to its
/// record; times after `start` (when the controller started).
fn worst_delays(recorded: &Recorded, start: SystemTime) -> Vec<Worst> {
    let mut all: Vec<(&String, &(String, SystemTime, Duration))> =
        recorded.first_record.iter().collect();
    all.sort_by_key(|(_, f)| std::cmp::Reverse(f.2));
    let after = |t: SystemTime| t.duration_since(start).unwrap_or(Duration::ZERO);
    all.into_iter()
        .take(5)
        .map(|(target, (cluster, deadline, delay))| {
            let (status, clock) = recorded
                .first_evidence
                .get(target)
                .cloned()
                .unwrap_or_default();
            let around = recorded
                .timeline
                .iter()
                .filter(|(c, _, at)| c == cluster && *at >= *deadline && *at <= *deadline + *delay)
                .map(|(_, t, at)| (*t, after(*at)))
                .collect();
            Worst {
                target: target.rsplit('/').next().unwrap_or(target).to_string(),
                cluster: cluster.clone(),
                status,
                clock,
                deadline: after(*deadline),
                delay: *delay,
                around,
            }
        })
        .collect()
}

/// Calls per category between the two reports, with the budget per second at the end.
fn steady_calls(before: &[CategoryReport], after: &[CategoryReport]) -> Vec<(Category, u64, f64)> {
    after
        .iter()
        .map(|a| {
            let earlier = before
                .iter()
                .find(|b| b.category == a.category)
                .map_or(0, |b| b.calls);
            (a.category, a.calls - earlier, a.budget_per_sec)
        })
        .filter(|(_, calls, _)| *calls > 0)
        .collect()
}

fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    let last = sorted.len().checked_sub(1)?;
    Some(sorted[last * p / 100])
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| format!("{:.1}s", d.as_secs_f64()))
}

fn table(fleet: &Fleet, modes: &[(Mode, Option<Figures>)]) -> String {
    let mut out = format!(
        "fleet run: {} tasks over {} clusters (largest {}), {:.0}% failing over {:?} with \
         hanging replacements; controller for {:?} of virtual time, default half budget\n",
        fleet.tasks(),
        fleet.clusters.len(),
        fleet.clusters.iter().max().unwrap_or(&0),
        fleet.stuck_share * 100.0,
        fleet.failures_over,
        fleet.run_for,
    );
    for (mode, figures) in modes {
        let Some(f) = figures else {
            out.push_str(&format!("\n[{}] not run\n", mode.name()));
            continue;
        };
        out.push_str(&format!(
            "\n[{}] detection beyond the limit: p50 {}  p99 {}  max {}  ({} of {} planted found)\n",
            mode.name(),
            secs(percentile(&f.delays, 50)),
            secs(percentile(&f.delays, 99)),
            secs(f.delays.last().copied()),
            f.delays.len(),
            f.planted,
        ));
        let names = [
            "deadline with its cluster's resync running",
            "deadline with another cluster's resync only",
            "deadline with no resync running",
            "in the largest cluster",
            "in the other clusters",
        ];
        for (name, part) in names.iter().zip(f.by_overlap.iter().chain(&f.by_cluster)) {
            out.push_str(&format!(
                "    {name:<44} {:>5} tasks: p50 {}  p99 {}  max {}\n",
                part.len(),
                secs(percentile(part, 50)),
                secs(percentile(part, 99)),
                secs(part.last().copied()),
            ));
        }
        let outcomes: Vec<String> = f.outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
        out.push_str(&format!(
            "  actions done: {} to {} targets (records: {}); reconciles: {}\n",
            f.actions_done,
            f.targets_done,
            outcomes.join(", "),
            reconciles(f)
        ));
        if !f.events.is_empty() {
            let events: Vec<String> = f.events.iter().map(|(d, n)| format!("{d} {n}")).collect();
            out.push_str(&format!("  queue messages: {}\n", events.join(", ")));
        }
        if !f.resync_took.is_empty() {
            let mut took = f.resync_took.clone();
            took.sort();
            let mut interval = f.resync_interval.clone();
            interval.sort();
            out.push_str(&format!(
                "  resync pass: a cluster's reconcile p50 {}, max {}; the largest cluster \
                 looked at again every {} (max {})\n",
                secs(percentile(&took, 50)),
                secs(took.last().copied()),
                secs(percentile(&interval, 50)),
                secs(interval.last().copied()),
            ));
        }
        out.push_str(&format!(
            "  steady state ({:.0} min) {:<24} {:>10} {:>10} {:>10}\n",
            f.steady_minutes, "category", "calls/min", "budget/min", "share"
        ));
        for (category, calls, per_sec) in &f.steady {
            let per_min = *calls as f64 / f.steady_minutes.max(1.0 / 60.0);
            let budget_min = per_sec * 60.0;
            out.push_str(&format!(
                "  {:<39} {:>10.1} {:>10.0} {:>9.1}%\n",
                category.key(),
                per_min,
                budget_min,
                100.0 * per_min / budget_min.max(f64::MIN_POSITIVE),
            ));
        }
        out.push_str(&read_split(f));
        for w in &f.worst {
            let around: Vec<String> = w
                .around
                .iter()
                .map(|(t, at)| format!("{}@{:.0}s", t.as_str(), at.as_secs_f64()))
                .collect();
            out.push_str(&format!(
                "  worst: {} in {} ({}, clock {}): deadline at {:.1}s, {} late; its reconciles \
                 meanwhile: {}\n",
                w.target,
                w.cluster,
                w.status,
                w.clock,
                w.deadline.as_secs_f64(),
                secs(Some(w.delay)),
                if around.is_empty() {
                    "none".to_string()
                } else {
                    around.join(" ")
                },
            ));
        }
        out.push_str(&format!("  wall-clock {:.2?}\n", f.wall));
    }
    out
}

/// The steady-state cluster-resource reads by operation, as shares of the budget: ListTasks
/// and the container instance reads are the resyncs' alone; DescribeTasks serves the resyncs
/// (what their lists found that the picture did not know, or every task without events), the
/// deadlines, the events' unknown standalone tasks and the health reads.
fn read_split(f: &Figures) -> String {
    let Some((_, _, per_sec)) = f
        .steady
        .iter()
        .find(|(c, _, _)| c.key() == "cluster-resource-read")
    else {
        return String::new();
    };
    let budget = per_sec * 60.0 * f.steady_minutes;
    let op = |name: &str| f.steady_ops.get(name).copied().unwrap_or(0);
    let share = |calls: u64| 100.0 * calls as f64 / budget.max(1.0);
    let instances = op("ListContainerInstances") + op("DescribeContainerInstances");
    format!(
        "  cluster-resource-read by operation: ListTasks {} ({:.1}%), DescribeTasks {} ({:.1}%), \
         container instance reads {} ({:.1}%); resyncs per cluster {:?}\n",
        op("ListTasks"),
        share(op("ListTasks")),
        op("DescribeTasks"),
        share(op("DescribeTasks")),
        instances,
        share(instances),
        f.steady_resyncs.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
    )
}

fn reconciles(f: &Figures) -> String {
    let mut parts: Vec<String> = Trigger::ALL
        .iter()
        .filter_map(|t| {
            let mut took = f.reconciles.get(t)?.clone();
            took.sort();
            let (p50, max) = (percentile(&took, 50), took.last().copied());
            Some(format!(
                "{} {} (took p50 {}, max {})",
                t.as_str(),
                took.len(),
                secs(p50),
                secs(max)
            ))
        })
        .collect();
    if parts.is_empty() {
        parts.push("none".to_string());
    }
    parts.join(", ")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: a smoke run.
    let full = args.iter().any(|a| a == "--full" || a == "--bench");
    let fleet = if full { Fleet::full() } else { Fleet::smoke() };
    let events_only = args.iter().any(|a| a == "--events-only");
    let modes: Vec<(Mode, Option<Figures>)> = [Mode::Resync, Mode::Events]
        .into_iter()
        .filter(|m| !events_only || *m == Mode::Events)
        .map(|mode| (mode, run_mode(&fleet, mode)))
        .collect();
    print!("{}", table(&fleet, &modes));
}
