//! Recording and backtest (issue 12, item 5): the size of a day's recording of a 5,000-task
//! cluster, and the time to backtest it.
//!
//! The real controller reconciles a simulated cluster of 5,000 tasks (100 services of 50, on
//! ten container instances) every 30 s of virtual time for 24 hours, with `run --record`'s
//! recorder attached (default limits: 1 GiB, 7 days). 1% of the tasks fail each hour, at
//! seeded random moments, and their services replace them: 1,200 replacements a day, each a
//! new task through PROVISIONING, PENDING and RUNNING and an old one through the way down.
//! Then `backtest` replays the whole recording (2,880 observations) under the same policy on
//! this one thread, timed by wall clock and by the process's CPU time.
//!
//! Targets: at most 50 MB a day; the backtest at most 60 s on one core. Prints figures,
//! asserts nothing.
//!
//! ```sh
//! cargo bench --bench record          # 5,000 tasks, 24 hours, release build
//! cargo test --bench record           # smoke: 500 tasks, 2 hours, debug build
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::AuditSink;
use ecs_reconciler::backtest::{Window, backtest};
use ecs_reconciler::capacity::tags::ManagedTag;
use ecs_reconciler::cloud::sim::{ServiceSpec, SimAccount, TaskBehavior};
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::policy::{self, PolicySet};
use ecs_reconciler::record::recorder::Recorder;
use ecs_reconciler::record::segments::Limits;
use ecs_reconciler::telemetry::{Silent, Telemetry};
use tokio_util::sync::CancellationToken;

const CLUSTER: &str = "rec-bench";
const PER_SERVICE: usize = 50;
const RESYNC: Duration = Duration::from_secs(30);
const CHURN_PER_HOUR: f64 = 0.01;

const POLICY: &str = r#"
apiVersion: ecs-reconciler/v1
kind: RemediationPolicy
metadata:
  name: bench
spec:
  mode: enforce
  target:
    clusters: ["rec-*"]
  stuck:
    PROVISIONING: 10m
    PENDING: 10m
    ACTIVATING: 5m
    unhealthy: 3m
  remediate:
    replaceTask: {}
  guardrails:
    maxActionsPerHour: 20
    maxInFlightPerService: 50%
    pauseWhenStuckAbove: 50%
"#;

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

/// A small seeded generator (xorshift), so every run plants the same failures.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn policies() -> PolicySet {
    PolicySet {
        policies: policy::parse_str(Path::new("<record bench policy>"), POLICY)
            .expect("the bench policy is valid"),
        fingerprint: "record-bench".into(),
    }
}

fn account(tasks: usize) -> Arc<SimAccount> {
    let sim = Arc::new(SimAccount::new(start()));
    sim.add_cluster(CLUSTER);
    for i in 0..10 {
        sim.add_container_instance(CLUSTER, &format!("i-{i:017x}"));
    }
    for s in 0..tasks.div_ceil(PER_SERVICE) {
        let count = PER_SERVICE.min(tasks - s * PER_SERVICE);
        sim.add_service(
            CLUSTER,
            ServiceSpec::new(&format!("svc-{s:03}"), count as u32),
        );
    }
    sim
}

/// Plants `CHURN_PER_HOUR` of the tasks failing each hour over `hours`; how many.
fn churn(sim: &SimAccount, hours: u64) -> usize {
    let mut rng = Seeded(0x5eed_cafe);
    let mut arns: Vec<String> = sim.tasks(CLUSTER).into_iter().map(|t| t.arn).collect();
    let n = ((arns.len() as f64 * CHURN_PER_HOUR) * hours as f64).round() as usize;
    let n = n.min(arns.len());
    let over = hours * 3600 * 1000;
    for i in 0..n {
        let pick = i + rng.below((arns.len() - i) as u64) as usize;
        arns.swap(i, pick);
        let after = Duration::from_millis(rng.below(over));
        sim.fail_task_after(&arns[i], after, TaskBehavior::healthy());
    }
    n
}

/// Records `hours` of the controller over `tasks` tasks into `dir`; the observations made.
async fn record(dir: &Path, tasks: usize, hours: u64) -> (usize, usize, Duration) {
    let sim = account(tasks);
    tokio::time::sleep(Duration::from_secs(120)).await;
    let failures = churn(&sim, hours);
    let limits = Limits {
        max_bytes: 1 << 30,
        max_age: Duration::from_secs(7 * 24 * 3600),
    };
    let recorder = Arc::new(Recorder::start(dir, limits, Arc::new(Silent)).expect("recorder"));
    let controller = Controller::new(
        sim,
        policies(),
        ControllerSettings::default(),
        AuditSink::memory(),
    )
    .with_telemetry(Arc::clone(&recorder) as Arc<dyn Telemetry>);
    let controller = Arc::new(controller);
    let token = CancellationToken::new();
    let passes = (hours * 3600 / RESYNC.as_secs()) as usize;
    let mut writing = Duration::ZERO;
    for _ in 0..passes {
        controller.pass(&token).await;
        // Virtual time runs faster than the writer: give it the 30 s it has in real life.
        let waited = Instant::now();
        recorder.sync();
        writing += waited.elapsed();
        tokio::time::advance(RESYNC).await;
    }
    recorder.finish();
    let stats = recorder.stats();
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 0, "the bench must record every observation");
    (passes, failures, writing)
}

fn dir_bytes(dir: &Path) -> (u64, usize) {
    let mut total = 0;
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("the recording") {
        total += entry.expect("an entry").metadata().expect("metadata").len();
        files += 1;
    }
    (total, files)
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes the usage of this process into the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: a smoke run.
    let full = std::env::args().any(|a| a == "--bench" || a == "--full");
    let (tasks, hours) = if full { (5_000, 24) } else { (500, 2) };
    let dir = tempfile::tempdir().expect("a scratch directory");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a tokio runtime");
    let wall = Instant::now();
    let (observations, failures, writing) = runtime.block_on(record(dir.path(), tasks, hours));
    let recorded_in = wall.elapsed();
    let (bytes, segments) = dir_bytes(dir.path());
    let per_day = bytes as f64 * 24.0 / hours as f64;
    println!(
        "recording: {tasks} tasks, {hours} h at a {}s resync, {failures} tasks replaced: \
         {observations} observations in {segments} segments, {:.2} MB ({:.2} MB per day; \
         target 50 MB), {:.0} B per observation; recorded in {:.1} s, of which {:.1} s \
         waiting for the writer after the passes",
        RESYNC.as_secs(),
        bytes as f64 / 1e6,
        per_day / 1e6,
        bytes as f64 / observations as f64,
        recorded_in.as_secs_f64(),
        writing.as_secs_f64()
    );
    let set = policies();
    let cpu = cpu_seconds();
    let wall = Instant::now();
    let result = backtest(
        dir.path(),
        &set,
        None,
        Window::default(),
        &ManagedTag::default(),
    )
    .expect("the recording replays");
    let took = wall.elapsed();
    let cpu = cpu_seconds() - cpu;
    println!(
        "backtest: {} observations replayed in {:.1} s wall, {:.1} s CPU on one thread \
         ({:.1} ms per observation; target 60 s for 2,880)",
        result.observations,
        took.as_secs_f64(),
        cpu,
        took.as_secs_f64() * 1e3 / result.observations as f64
    );
}
