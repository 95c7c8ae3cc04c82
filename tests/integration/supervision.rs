//! A dead loop is a dead process: logging that cannot block or panic, supervised tasks whose
//! death ends the process non-zero with a last line naming them, and SIGTERM honoured in every
//! state. The supervisor and the log writer in process (paused tokio time), then the binary
//! with its standard error closed, full, or fine, and with test-only faults of the simulator.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::AuditSink;
use ecs_reconciler::cloud::sim::{SimAccount, SimFault, build_scenario};
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::demo::scenario_policies;
use ecs_reconciler::logging::spawn_writer;
use ecs_reconciler::supervise::{Cause, Death, Stop, Supervisor};
use tokio_util::sync::CancellationToken;

use crate::cli::bin;

/// How long the binary may take before the test calls it hung.
const DEADLINE: Duration = Duration::from_secs(30);

// ---- the log writer ----

/// A sink whose every write fails as a pipe without a reader does.
struct BrokenPipe;

impl Write for BrokenPipe {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

/// A sink whose writes block until `release` is dropped, as a full pipe nobody reads does.
struct Stuck {
    release: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Write for Stuck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.release.lock().unwrap().recv();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn log_lines_that_cannot_be_written_are_counted_and_never_raised() {
    let writer = spawn_writer(BrokenPipe, 64);
    // The formatter as `run` builds it, but with internal-error reporting left on: even then
    // nothing reaches (or panics on) the real stderr, because the writer never fails.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        for n in 0..20 {
            tracing::info!(n, "a line nobody will read");
        }
    });
    assert!(writer.flush(DEADLINE), "the writer thread drains its queue");
    let counters = writer.counters();
    assert_eq!(counters.write_failed(), 20);
    assert_eq!(counters.queue_full(), 0);
    assert_eq!(counters.dropped(), 20);
}

#[test]
fn a_sink_that_never_returns_does_not_block_the_logger() {
    let (unblock, release) = mpsc::channel::<()>();
    let capacity = 8;
    let writer = spawn_writer(
        Stuck {
            release: Arc::new(Mutex::new(release)),
        },
        capacity,
    );
    let lines = capacity + 20;
    let (done, finished) = mpsc::channel();
    let mut logger = writer.clone();
    std::thread::spawn(move || {
        for n in 0..lines {
            let _ = logger.write_all(format!("line {n}\n").as_bytes());
        }
        let _ = done.send(());
    });
    finished
        .recv_timeout(DEADLINE)
        .expect("logging returns while the sink is stuck");
    // The writer thread holds at most one line, the queue `capacity`: the rest were dropped.
    let dropped = writer.counters().queue_full();
    assert!(
        (lines - capacity - 1..=lines - capacity).contains(&(dropped as usize)),
        "{dropped} of {lines} lines dropped"
    );
    assert!(
        !writer.flush(Duration::from_millis(200)),
        "a stuck sink cannot be flushed, and flush gives up"
    );
    drop(unblock);
}

// ---- the supervisor, in process ----

async fn until_shutdown(shutdown: CancellationToken) {
    shutdown.cancelled().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_task_ends_supervision_naming_it_and_stops_the_others() {
    let shutdown = CancellationToken::new();
    let mut tasks = Supervisor::new(shutdown.clone());
    let (stopped, saw_stop) = tokio::sync::oneshot::channel();
    let token = shutdown.clone();
    tasks.spawn("steady", async move {
        token.cancelled().await;
        let _ = stopped.send(());
    });
    tasks.spawn("faulty", async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        panic!("boom");
    });
    let (_requests, received) = tokio::sync::mpsc::unbounded_channel();
    let ending = tasks.wait(received, Duration::from_secs(20)).await;
    assert_eq!(
        ending.death,
        Some(Death {
            task: "faulty",
            cause: Cause::Panicked("boom".into()),
        })
    );
    assert_eq!(ending.stop, Stop::Complete);
    assert!(shutdown.is_cancelled());
    assert!(saw_stop.await.is_ok(), "the other task was asked to stop");
    assert_eq!(ending.exit_code(), 1);
    let line = ending.last_line().unwrap();
    assert!(line.contains("'faulty' panicked: boom"), "{line}");
}

#[tokio::test(start_paused = true)]
async fn a_task_that_returns_before_shutdown_has_died() {
    let shutdown = CancellationToken::new();
    let mut tasks = Supervisor::new(shutdown.clone());
    tasks.spawn("loop", until_shutdown(shutdown.clone()));
    tasks.spawn("watcher", async {});
    let (_requests, received) = tokio::sync::mpsc::unbounded_channel();
    let ending = tasks.wait(received, Duration::from_secs(20)).await;
    assert_eq!(
        ending.death,
        Some(Death {
            task: "watcher",
            cause: Cause::Returned,
        })
    );
    assert_eq!(ending.exit_code(), 1);
    assert!(ending.last_line().unwrap().contains("'watcher' ended"));
}

#[tokio::test(start_paused = true)]
async fn a_stop_request_stops_every_task_cleanly() {
    let shutdown = CancellationToken::new();
    let mut tasks = Supervisor::new(shutdown.clone());
    tasks.spawn("loop", until_shutdown(shutdown.clone()));
    tasks.spawn("watcher", until_shutdown(shutdown.clone()));
    let (requests, received) = tokio::sync::mpsc::unbounded_channel();
    requests.send("SIGTERM").unwrap();
    let ending = tasks.wait(received, Duration::from_secs(20)).await;
    assert!(ending.is_clean(), "{ending:?}");
    assert_eq!(ending.exit_code(), 0);
    assert_eq!(ending.last_line(), None);
    assert!(shutdown.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn a_task_that_ignores_shutdown_meets_the_deadline() {
    let shutdown = CancellationToken::new();
    let mut tasks = Supervisor::new(shutdown.clone());
    tasks.spawn("loop", until_shutdown(shutdown.clone()));
    tasks.spawn("stubborn", std::future::pending());
    let (requests, received) = tokio::sync::mpsc::unbounded_channel();
    requests.send("SIGINT").unwrap();
    let ending = tasks.wait(received, Duration::from_secs(20)).await;
    assert_eq!(ending.death, None);
    assert_eq!(
        ending.stop,
        Stop::DeadlinePassed {
            running: vec!["stubborn"]
        }
    );
    assert_eq!(ending.exit_code(), 1);
    let line = ending.last_line().unwrap();
    assert!(line.contains("deadline of 20s"), "{line}");
    assert!(line.contains("stubborn still running"), "{line}");
}

#[tokio::test(start_paused = true)]
async fn a_task_that_cancels_shutdown_and_returns_is_a_clean_stop() {
    let shutdown = CancellationToken::new();
    let mut tasks = Supervisor::new(shutdown.clone());
    tasks.spawn("loop", until_shutdown(shutdown.clone()));
    let token = shutdown.clone();
    tasks.spawn("clock", async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        token.cancel();
    });
    let (_requests, received) = tokio::sync::mpsc::unbounded_channel();
    let ending = tasks.wait(received, Duration::from_secs(20)).await;
    assert!(ending.is_clean(), "{ending:?}");
}

#[tokio::test(start_paused = true)]
async fn an_adopted_task_that_panics_is_a_death_with_its_message() {
    let shutdown = CancellationToken::new();
    let mut tasks = Supervisor::new(shutdown.clone());
    tasks.spawn("loop", until_shutdown(shutdown.clone()));
    tasks.adopt(
        "policy reload",
        tokio::spawn(async { panic!("watch lost") }),
    );
    let (_requests, received) = tokio::sync::mpsc::unbounded_channel();
    let ending = tasks.wait(received, Duration::from_secs(20)).await;
    assert_eq!(
        ending.death,
        Some(Death {
            task: "policy reload",
            cause: Cause::Panicked("watch lost".into()),
        })
    );
}

// ---- the controller ----

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

fn mixed(concurrency: usize) -> (Arc<SimAccount>, Arc<Controller<Arc<SimAccount>>>) {
    let sim = Arc::new(build_scenario("mixed", start()).expect("scenario exists").0);
    let controller = Arc::new(Controller::new(
        Arc::clone(&sim),
        scenario_policies().unwrap(),
        ControllerSettings {
            concurrency,
            dry_run: true,
            ..ControllerSettings::default()
        },
        AuditSink::memory(),
    ));
    (sim, controller)
}

#[tokio::test(start_paused = true)]
async fn a_panicking_reconcile_kills_the_loop_naming_the_cluster() {
    let (sim, controller) = mixed(4);
    sim.set_fault(Some(SimFault::PanicOnObserve));
    let shutdown = CancellationToken::new();
    // A day of virtual time: a loop that survives its panics would still be running then.
    let joined = tokio::time::timeout(
        Duration::from_secs(86_400),
        tokio::spawn(controller.run(shutdown.clone())),
    )
    .await
    .expect("the loop ends");
    let error = joined.expect_err("the loop dies");
    assert!(error.is_panic());
    let message = ecs_reconciler::supervise::panic_message(error.into_panic());
    assert!(
        message.starts_with("the reconcile of cluster "),
        "{message}"
    );
    assert!(message.contains("panic-observe"), "{message}");
    assert!(!shutdown.is_cancelled(), "it died; nobody asked it to stop");
}

#[tokio::test(start_paused = true)]
async fn a_concurrency_past_what_tokio_allows_still_reconciles() {
    let (_sim, controller) = mixed(usize::MAX);
    let report = controller.pass(&CancellationToken::new()).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(!report.clusters.is_empty());
    // The same clusters as at a small concurrency.
    let (_sim, small) = mixed(1);
    let reference = small.pass(&CancellationToken::new()).await;
    let names = |r: &ecs_reconciler::controller::PassReport| {
        r.clusters
            .iter()
            .map(|c| c.cluster.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&report), names(&reference));
}

// ---- the binary ----

/// `run` on the `mixed` scenario in dry-run mode for `sim_for` of virtual time, its audit trail
/// in `dir`.
fn sim_run(dir: &Path, sim_for: &str) -> (Command, PathBuf) {
    sim_run_of("mixed", dir, sim_for)
}

/// `run --sim SCENARIO --dry-run --sim-for …`, its audit trail in `dir`.
fn sim_run_of(scenario: &str, dir: &Path, sim_for: &str) -> (Command, PathBuf) {
    let audit = dir.join("audit.jsonl");
    let mut c = bin();
    c.args(["run", "--sim", scenario, "--dry-run", "--sim-for", sim_for])
        .arg("--audit-log")
        .arg(&audit)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    (c, audit)
}

/// Waits for the child to exit; kills it and fails the test if it is still running after
/// [`DEADLINE`].
fn exit_of(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (at most [`DEADLINE`]) until `file` contains `text`.
fn wait_for_text(file: &Path, text: &str, child: &mut Child) {
    let deadline = Instant::now() + DEADLINE;
    while !std::fs::read_to_string(file).is_ok_and(|s| s.contains(text)) {
        if Instant::now() >= deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{text:?} never appeared in {}: {}",
                file.display(),
                std::fs::read_to_string(file).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn audit_lines(audit: &Path) -> usize {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .count()
}

/// The audit trail of the same run with standard error going nowhere harmful.
fn reference_audit_lines(sim_for: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, audit) = sim_run(dir.path(), sim_for);
    let mut child = c.stderr(Stdio::null()).spawn().unwrap();
    let status = exit_of(&mut child, "the reference run");
    assert_eq!(status.code(), Some(0));
    let lines = audit_lines(&audit);
    assert!(lines > 0, "the reference run records decisions");
    lines
}

fn kill(signal: &str, child: &Child) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn last_line(file: &Path) -> String {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn stderr_closed_from_the_start_does_not_stop_reconciling() {
    let expected = reference_audit_lines("2h");
    let dir = tempfile::tempdir().unwrap();
    let (mut c, audit) = sim_run(dir.path(), "2h");
    let mut child = c.stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stderr.take());
    let status = exit_of(&mut child, "run with stderr closed");
    assert_eq!(status.code(), Some(0));
    assert_eq!(audit_lines(&audit), expected);
}

#[test]
fn stderr_whose_reader_goes_away_does_not_stop_reconciling_or_sigterm() {
    let expected = reference_audit_lines("2h");
    let dir = tempfile::tempdir().unwrap();
    let (mut c, audit) = sim_run(dir.path(), "2h");
    let mut child = c.stderr(Stdio::piped()).spawn().unwrap();
    // Read the first line (the process is logging), then go away.
    let mut stderr = child.stderr.take().unwrap();
    let mut first = [0u8; 1];
    io::Read::read_exact(&mut stderr, &mut first).unwrap();
    drop(stderr);
    let status = exit_of(&mut child, "run after its stderr reader left");
    assert_eq!(status.code(), Some(0));
    assert_eq!(audit_lines(&audit), expected);
}

#[test]
fn stderr_that_nobody_reads_does_not_block_the_run() {
    // 3 virtual hours log far more than a pipe holds (64 KiB), without colour codes too.
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe.log");
    let (mut c, audit) = sim_run(dir.path(), "3h");
    let mut child = c
        .stderr(std::fs::File::create(&probe).unwrap())
        .spawn()
        .unwrap();
    assert_eq!(exit_of(&mut child, "the probe run").code(), Some(0));
    let logged = std::fs::metadata(&probe).unwrap().len();
    assert!(logged > 2 * 65_536, "only {logged} bytes logged");
    let expected = audit_lines(&audit);

    let dir = tempfile::tempdir().unwrap();
    let (mut c, audit) = sim_run(dir.path(), "3h");
    let mut child = c.stderr(Stdio::piped()).spawn().unwrap();
    // Kept open, never read.
    let unread = child.stderr.take();
    let status = exit_of(&mut child, "run with an unread stderr");
    drop(unread);
    assert_eq!(status.code(), Some(0));
    assert_eq!(audit_lines(&audit), expected);
}

#[test]
fn a_panicking_reconcile_ends_the_process_naming_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let (mut c, _) = sim_run(dir.path(), "1h");
    let mut child = c
        .args(["--sim-fault", "panic-observe"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = exit_of(&mut child, "run with a panicking reconcile");
    assert_eq!(status.code(), Some(1));
    let last = last_line(&log);
    assert!(
        last.starts_with("ecs-reconciler: exiting with status 1"),
        "{last}"
    );
    assert!(last.contains("task 'controller loop' panicked"), "{last}");
    assert!(last.contains("the reconcile of cluster "), "{last}");
}

#[test]
fn a_loop_stuck_in_an_observation_is_stopped_cleanly_by_shutdown() {
    // An observation only reads, so shutdown drops it rather than wait for it: the run ends
    // cleanly when its virtual time is up, not at the shutdown deadline.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let (mut c, _) = sim_run(dir.path(), "1h");
    let mut child = c
        .args(["--sim-fault", "hang-observe"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = exit_of(&mut child, "run with a hung observation");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{logged}");
    assert!(logged.contains("controller stopped"), "{logged}");
    assert!(!logged.contains("deadline"), "{logged}");
}

#[test]
fn sigterm_during_a_run_is_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    // The largest scenario over the most virtual time allowed takes over a minute of real
    // time (debug build), far longer than the test waits: only the signal ends it.
    let (mut c, audit) = sim_run_of("scale", dir.path(), "24h");
    let mut child = c
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_text(&audit, "\"outcome\"", &mut child);
    kill("-TERM", &child);
    let status = exit_of(&mut child, "run after SIGTERM");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{logged}");
    assert!(logged.contains("shutdown requested"), "{logged}");
    assert!(logged.contains("controller stopped"), "{logged}");
    assert!(audit_lines(&audit) > 0);
}

#[test]
fn a_blocked_runtime_still_exits_on_a_second_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let (mut c, _) = sim_run(dir.path(), "1h");
    let mut child = c
        .args(["--sim-fault", "block-observe"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The runtime thread is blocked from this line on.
    wait_for_text(&log, "block-observe strikes", &mut child);
    kill("-TERM", &child);
    wait_for_text(&log, "shutdown requested", &mut child);
    kill("-TERM", &child);
    let status = exit_of(&mut child, "run after two SIGTERMs");
    assert_eq!(status.code(), Some(1));
    let last = last_line(&log);
    assert!(last.contains("second SIGTERM during shutdown"), "{last}");
}

#[test]
fn a_blocked_runtime_exits_when_the_shutdown_deadline_passes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let (mut c, _) = sim_run(dir.path(), "1h");
    let mut child = c
        .args(["--sim-fault", "block-observe"])
        .env("ECS_RECONCILER_SHUTDOWN_TIMEOUT", "1s")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The runtime thread is blocked from this line on.
    wait_for_text(&log, "block-observe strikes", &mut child);
    kill("-TERM", &child);
    let status = exit_of(&mut child, "run after one SIGTERM");
    assert_eq!(status.code(), Some(1));
    let last = last_line(&log);
    assert!(
        last.contains("shutdown deadline of 1s passed and the runtime did not stop"),
        "{last}"
    );
}

#[test]
fn a_concurrency_past_any_bound_never_idles() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let (mut c, audit) = sim_run(dir.path(), "20m");
    let mut child = c
        .args(["--concurrency", "9223372036854775807"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let status = exit_of(&mut child, "run with a huge concurrency");
    let logged = std::fs::read_to_string(&log).unwrap();
    if status.success() {
        // Accepted: then it reconciles like any other run.
        assert_eq!(
            audit_lines(&audit),
            reference_audit_lines("20m"),
            "{logged}"
        );
    } else {
        // Refused by the configuration: one line naming the key.
        assert_eq!(status.code(), Some(1), "{logged}");
        assert_eq!(logged.lines().count(), 1, "{logged}");
        assert!(logged.contains("concurrency"), "{logged}");
    }
}

#[test]
fn on_aws_stderr_whose_reader_goes_away_leaves_sigterm_working() {
    // The multi-threaded runtime `run` uses on AWS, against moto.
    let moto = crate::support::moto::Moto::new();
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args(["run", "--resync", "1s", "--policies"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
        .arg("--audit-log")
        .arg(dir.path().join("audit.jsonl"))
        .env("AWS_REGION", "us-east-1")
        .env(
            "AWS_ACCESS_KEY_ID",
            format!("MOTOACCT{}", moto.account_id()),
        )
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the loop has reconciled (or reported) the example clusters, then go away.
    let mut stderr = io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !(line.contains("reconciled") || line.contains("reconcile failed")) {
        line.clear();
        let read = io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(read > 0, "run ended before it reconciled");
    }
    drop(stderr);
    // Let a few passes (1 s apart) log into the closed pipe: the old code's loop and signal
    // handler died on their first line there.
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "run ended by itself");
    kill("-TERM", &child);
    let status = exit_of(&mut child, "run on moto after SIGTERM");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(start_paused = true)]
async fn a_signal_listener_that_goes_away_is_a_death() {
    let shutdown = CancellationToken::new();
    let mut tasks = Supervisor::new(shutdown.clone());
    tasks.spawn("loop", until_shutdown(shutdown.clone()));
    let (requests, received) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    drop(requests);
    let ending = tasks.wait(received, Duration::from_secs(20)).await;
    assert_eq!(
        ending.death,
        Some(Death {
            task: ecs_reconciler::supervise::SIGNAL_HANDLER,
            cause: Cause::Returned,
        })
    );
    assert_eq!(ending.stop, Stop::Complete);
    assert_eq!(ending.exit_code(), 1);
}
