//! The controller driven by the simulated account's events, end to end on tokio's paused
//! clock (issue 9, item 4): the loop and the event pump over the in-process queue, with the
//! resync every 10 minutes as in event mode.
//!
//! - a task that crosses its limit is acted on at its deadline, not at the next resync;
//! - a dropped event is repaired by the next resync;
//! - duplicated and reordered events never move a task backwards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::{AuditRecord, AuditSink, Outcome};
use ecs_reconciler::cloud::sim::{QueueFaults, ServiceSpec, SimAccount, TaskBehavior};
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::domain::{DesiredStatus, Task, TaskStatus};
use ecs_reconciler::events::pump::{Pump, PumpCounts};
use ecs_reconciler::events::{Disposition, EventSink};
use ecs_reconciler::telemetry::Silent;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::fixtures::policies;

const CLUSTER: &str = "demo-events";
const LIMIT: Duration = Duration::from_secs(120);
const EVENT_RESYNC: Duration = Duration::from_secs(600);

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

/// One cluster with a service of six healthy tasks on two container instances.
fn account() -> Arc<SimAccount> {
    let sim = Arc::new(SimAccount::new(start()));
    sim.add_cluster(CLUSTER);
    sim.add_container_instance(CLUSTER, "i-0aaa");
    sim.add_container_instance(CLUSTER, "i-0bbb");
    sim.add_service(CLUSTER, ServiceSpec::new("web", 6));
    sim
}

fn policy() -> ecs_reconciler::policy::PolicySet {
    policies(
        "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata:\n  name: web\nspec:\n  \
         target:\n    clusters: [\"demo-*\"]\n  stuck: {PROVISIONING: 2m, PENDING: 2m, \
         ACTIVATING: 2m}\n  remediate: {replaceTask: {}}\n  guardrails: {maxActionsPerHour: \
         100, maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}\n",
    )
}

/// The controller's loop and the pump over the account's queue, running.
struct Running {
    controller: Arc<Controller<Arc<SimAccount>>>,
    counts: Arc<PumpCounts>,
    token: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    fn start(sim: &Arc<SimAccount>, faults: QueueFaults) -> Running {
        let queue = sim.event_queue(faults);
        let settings = ControllerSettings {
            event_resync: EVENT_RESYNC,
            ..ControllerSettings::default()
        };
        let controller = Arc::new(Controller::new(
            Arc::clone(sim),
            policy(),
            settings,
            AuditSink::memory(),
        ));
        let sink = Arc::clone(&controller) as Arc<dyn EventSink>;
        let pump = Pump::new(queue, sink, Arc::new(Silent));
        let counts = pump.counts();
        let token = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(Arc::clone(&controller).run(token.clone())),
            tokio::spawn(pump.run(token.clone())),
        ];
        Running {
            controller,
            counts,
            token,
            tasks,
        }
    }

    async fn stop(self) {
        self.token.cancel();
        for task in self.tasks {
            task.await.expect("the loop and the pump end cleanly");
        }
    }

    /// The records about `target`, intents left out, with their times.
    fn records_about(&self, target: &str) -> Vec<(SystemTime, AuditRecord)> {
        self.controller
            .audit()
            .records()
            .into_iter()
            .filter(|r| r.target == target && r.outcome != Outcome::Started)
            .map(|r| (humantime::parse_rfc3339(&r.time).expect("RFC 3339"), r))
            .collect()
    }
}

/// Makes one running task of `web` fail now, its replacement hanging in PROVISIONING; returns
/// the replacement once it exists.
async fn plant_stuck(sim: &SimAccount) -> Task {
    let victim = sim
        .tasks(CLUSTER)
        .into_iter()
        .find(|t| t.last_status == TaskStatus::Running)
        .expect("a running task");
    let hang = TaskBehavior::hangs_in(TaskStatus::Provisioning);
    sim.fail_task_after(&victim.arn, Duration::ZERO, hang);
    tokio::time::sleep(Duration::from_secs(1)).await;
    sim.tasks(CLUSTER)
        .into_iter()
        .find(|t| {
            t.desired_status == DesiredStatus::Running && t.last_status == TaskStatus::Provisioning
        })
        .expect("the hanging replacement")
}

#[tokio::test(start_paused = true)]
async fn a_task_crossing_its_limit_is_acted_on_at_its_deadline_not_at_the_next_resync() {
    let sim = account();
    let running = Running::start(&sim, QueueFaults::default());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(running.controller.events_healthy());
    let stuck = plant_stuck(&sim).await;
    let deadline = stuck.timestamps.created_at.unwrap() + LIMIT;

    tokio::time::sleep(LIMIT + Duration::from_secs(30)).await;
    let records = running.records_about(&stuck.arn);
    let (at, first) = records.first().expect("the stuck task was acted on");
    assert!(*at >= deadline, "never before its limit: {first:?}");
    assert!(
        *at <= deadline + Duration::from_secs(5),
        "at its deadline: {:?} after it",
        at.duration_since(deadline)
    );
    assert!(*at < start() + EVENT_RESYNC);
    assert_eq!(first.outcome, Outcome::Done);
    assert!(sim.task(&stuck.arn).unwrap().desired_status == DesiredStatus::Stopped);
    running.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_dropped_event_is_repaired_by_the_next_resync() {
    let sim = account();
    let every_event_lost = QueueFaults {
        drop: 1.0,
        ..QueueFaults::default()
    };
    let running = Running::start(&sim, every_event_lost);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(running.controller.events_healthy(), "the queue answers");
    let stuck = plant_stuck(&sim).await;
    let deadline = stuck.timestamps.created_at.unwrap() + LIMIT;

    // Its deadline passes unseen: the controller never heard of the task.
    tokio::time::sleep(LIMIT + Duration::from_secs(60)).await;
    assert!(sim.now() > deadline + Duration::from_secs(30));
    assert!(running.records_about(&stuck.arn).is_empty());
    assert!(
        running
            .controller
            .cached(CLUSTER)
            .is_some_and(|c| !c.tasks.iter().any(|t| t.arn == stuck.arn))
    );

    // The resync at 10 minutes finds it and acts.
    let resync = start() + EVENT_RESYNC;
    tokio::time::sleep(resync.duration_since(sim.now()).unwrap() + Duration::from_secs(60)).await;
    let records = running.records_about(&stuck.arn);
    let (at, first) = records.first().expect("the resync repaired the lost event");
    assert!(*at >= resync, "{first:?}");
    assert_eq!(first.outcome, Outcome::Done);
    assert_eq!(running.counts.received(), 0, "every event was dropped");
    running.stop().await;
}

/// Where a task is in its life, for "never backwards": desired status first (RUNNING, then
/// STOPPED), then lastStatus in lifecycle order.
fn progress(task: &Task) -> (u8, usize, u64) {
    let desired = match task.desired_status {
        DesiredStatus::Running => 0,
        DesiredStatus::Stopped => 1,
    };
    let status = TaskStatus::ALL
        .iter()
        .position(|s| *s == task.last_status)
        .unwrap_or(0);
    (desired, status, task.version)
}

#[tokio::test(start_paused = true)]
async fn duplicated_and_reordered_events_never_move_a_task_backwards() {
    let sim = account();
    let faults = QueueFaults {
        duplicate: 0.5,
        reorder_window: Duration::from_secs(30),
        seed: 5,
        ..QueueFaults::default()
    };
    let running = Running::start(&sim, faults);
    tokio::time::sleep(Duration::from_secs(60)).await;
    // Three tasks fail and are replaced (healthy), and the service grows by four: about fifty
    // state changes, delivered shuffled within 30 s and half of them twice.
    for task in sim.tasks(CLUSTER).iter().take(3) {
        sim.fail_task_after(&task.arn, Duration::ZERO, TaskBehavior::healthy());
    }
    sim.set_desired_count(CLUSTER, "web", 10);

    let mut seen: HashMap<String, (u8, usize, u64)> = HashMap::new();
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cached = running.controller.cached(CLUSTER).expect("observed");
        for task in &cached.tasks {
            let now = progress(task);
            if let Some(before) = seen.insert(task.arn.clone(), now) {
                assert!(
                    now >= before,
                    "{} moved from {before:?} to {now:?}",
                    task.arn
                );
            }
        }
    }
    // Out-of-order events were refused, and the picture agrees with the account.
    assert!(running.counts.of(Disposition::Stale) > 0);
    let cached = running.controller.cached(CLUSTER).unwrap();
    let live = sim.tasks(CLUSTER);
    let live = live
        .iter()
        .filter(|t| t.desired_status == DesiredStatus::Running);
    for task in live {
        let mine = cached.tasks.iter().find(|t| t.arn == task.arn);
        let mine = mine.unwrap_or_else(|| panic!("{} is in the cache", task.arn));
        assert_eq!(progress(mine), progress(task), "{}", task.arn);
    }
    // Nothing was stuck, so nothing was done.
    assert!(running.controller.audit().records().is_empty());
    running.stop().await;
}
