//! The work queue keyed by cluster: its own rules (earlier time kept, no key run twice at once,
//! backoff per key), and the loop on the simulated account in paused time, where a cluster
//! whose observation takes ten minutes holds up no other.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::AuditSink;
use ecs_reconciler::cloud::sim::{ServiceSpec, SimAccount};
use ecs_reconciler::cloud::{Cloud, CloudError, ErrorCategory, GroupRead, TaskReads};
use ecs_reconciler::controller::{ClusterReport, Controller, ControllerSettings};
use ecs_reconciler::domain::{
    Capacity, ClusterSnapshot, InstanceTypeSize, LaunchTemplateVersion, RunTaskRequest,
    ScalingActivity, Tags,
};
use ecs_reconciler::policy::PolicySet;
use ecs_reconciler::queue::WorkQueue;
use ecs_reconciler::telemetry::{Telemetry, Trigger};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::support::fixtures::policy;

pub(crate) fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

/// PROVISIONING limit 2 minutes (and unhealthy 5 minutes) over clusters `prod-*`.
pub(crate) fn two_minute_policy() -> PolicySet {
    policy(
        "{PROVISIONING: 2m, unhealthy: 5m}",
        "{replaceTask: {standalone: true}}",
        "{maxActionsPerHour: 100, maxInFlightPerService: 100%, pauseWhenStuckAbove: 100%}",
    )
}

/// A Fargate service of `count` healthy tasks.
pub(crate) fn service(name: &str, count: u32) -> ServiceSpec {
    ServiceSpec::new(name, count).with_capacity(Capacity::LaunchType("FARGATE".into()))
}

/// Every reconcile the loop reports, in order.
#[derive(Default)]
pub(crate) struct Reconciles(Mutex<Vec<(String, Trigger, bool)>>);

impl Telemetry for Reconciles {
    fn reconciled(
        &self,
        cluster: &str,
        trigger: Trigger,
        result: Result<&ClusterReport, &CloudError>,
        _took: Duration,
    ) {
        self.0
            .lock()
            .unwrap()
            .push((cluster.to_string(), trigger, result.is_ok()));
    }
}

impl Reconciles {
    /// Successful reconciles per cluster.
    pub(crate) fn per_cluster(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (cluster, _, ok) in self.0.lock().unwrap().iter() {
            if *ok {
                *counts.entry(cluster.clone()).or_default() += 1;
            }
        }
        counts
    }

    pub(crate) fn count(&self, trigger: Trigger) -> usize {
        let all = self.0.lock().unwrap();
        all.iter().filter(|(_, t, ok)| *t == trigger && *ok).count()
    }
}

pub(crate) fn controller<C: Cloud>(
    cloud: C,
    set: PolicySet,
    settings: ControllerSettings,
    telemetry: Arc<Reconciles>,
) -> Arc<Controller<C>> {
    Arc::new(Controller::new(cloud, set, settings, AuditSink::memory()).with_telemetry(telemetry))
}

/// Runs the loop for `window` of virtual time, then stops it and waits for it to end.
pub(crate) async fn run_for<C: Cloud>(c: &Arc<Controller<C>>, window: Duration) {
    let token = CancellationToken::new();
    let handle = tokio::spawn(Arc::clone(c).run(token.clone()));
    tokio::time::sleep(window).await;
    token.cancel();
    handle.await.expect("the loop ends cleanly");
}

#[tokio::test(start_paused = true)]
async fn scheduling_a_pending_key_keeps_the_earlier_time() {
    let mut q = WorkQueue::new();
    let now = Instant::now();
    q.schedule("a", now + Duration::from_secs(30));
    q.schedule("a", now + Duration::from_secs(60));
    assert_eq!(q.due_at("a"), Some(now + Duration::from_secs(30)));
    q.schedule("a", now + Duration::from_secs(5));
    assert_eq!(q.due_at("a"), Some(now + Duration::from_secs(5)));
    q.schedule("b", now + Duration::from_secs(10));
    assert_eq!(q.next_due(), Some(now + Duration::from_secs(5)));
    assert!(q.take_due(now).is_empty(), "nothing is due yet");
    assert_eq!(q.take_due(now + Duration::from_secs(10)), vec!["a", "b"]);
    assert_eq!(q.next_due(), None);
}

#[tokio::test(start_paused = true)]
async fn a_running_key_is_not_handed_out_twice_and_keeps_what_was_scheduled_meanwhile() {
    let mut q = WorkQueue::new();
    let now = Instant::now();
    q.schedule("a", now);
    assert_eq!(q.take_due(now), vec!["a"]);
    q.schedule("a", now);
    assert!(q.take_due(now).is_empty(), "a is running");
    assert_eq!(
        q.next_due(),
        None,
        "the loop does not wake for a running key"
    );
    q.schedule("a", now + Duration::from_secs(3));
    q.finish("a");
    assert_eq!(
        q.due_at("a"),
        Some(now),
        "the earliest schedule made during the run"
    );
    assert_eq!(q.take_due(now), vec!["a"]);
    q.finish("a");
    assert_eq!(
        q.due_at("a"),
        None,
        "nothing scheduled during the second run"
    );
}

#[tokio::test(start_paused = true)]
async fn each_key_backs_off_on_its_own_and_a_success_resets_it() {
    let mut q = WorkQueue::new();
    let max = Duration::from_secs(30);
    let first = q.backoff("a", max);
    assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2));
    let mut last = first;
    for _ in 0..8 {
        last = q.backoff("a", max);
    }
    assert!(last >= Duration::from_secs(15), "a doubled: {last:?}");
    assert!(last <= max, "never past the maximum: {last:?}");
    let b = q.backoff("b", max);
    assert!(
        b <= Duration::from_secs(2),
        "b starts from the beginning: {b:?}"
    );
    q.succeeded("a");
    assert!(!q.is_backing_off("a"));
    assert!(q.backoff("a", max) <= Duration::from_secs(2));
}

/// The simulator, with one cluster whose observation takes ten virtual minutes (or, with
/// `fails`, always fails).
pub(crate) struct SlowCluster {
    pub(crate) sim: Arc<SimAccount>,
    pub(crate) slow: &'static str,
    pub(crate) fails: bool,
    /// When set, the slow cluster's first observation is quick and every later one takes this
    /// long, its picture being of the moment it began (as a real list and describe's first
    /// pages are).
    pub(crate) later_take: Option<Duration>,
    /// The first observation that takes `later_take` (0: every one; default 1).
    pub(crate) slow_from: usize,
    pub(crate) observed: std::sync::atomic::AtomicUsize,
}

impl SlowCluster {
    pub(crate) fn new(sim: &Arc<SimAccount>, slow: &'static str) -> Self {
        SlowCluster {
            sim: Arc::clone(sim),
            slow,
            fails: false,
            later_take: None,
            slow_from: 1,
            observed: Default::default(),
        }
    }
}

const SLOW: Duration = Duration::from_secs(600);

impl Cloud for SlowCluster {
    fn list_clusters(&self) -> impl Future<Output = Result<Vec<String>, CloudError>> + Send {
        self.sim.list_clusters()
    }

    async fn observe_cluster(&self, cluster: &str) -> Result<ClusterSnapshot, CloudError> {
        if cluster == self.slow && self.fails {
            return Err(CloudError::new(
                ErrorCategory::Transient,
                "DescribeClusters",
                "connection reset",
            ));
        }
        if cluster == self.slow
            && let Some(take) = self.later_take
        {
            let n = self
                .observed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let picture = self.sim.observe_cluster(cluster).await;
            if n >= self.slow_from {
                tokio::time::sleep(take).await;
            }
            return picture;
        }
        if cluster == self.slow {
            tokio::time::sleep(SLOW).await;
        }
        self.sim.observe_cluster(cluster).await
    }

    fn describe_tasks(
        &self,
        cluster: &str,
        task_arns: &[String],
    ) -> impl Future<Output = Result<TaskReads, CloudError>> + Send {
        self.sim.describe_tasks(cluster, task_arns)
    }

    fn observe_group(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<GroupRead, CloudError>> + Send {
        self.sim.observe_group(group)
    }

    fn console_output(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, CloudError>> + Send {
        self.sim.console_output(instance_id)
    }

    fn launch_template_version(
        &self,
        template_id: &str,
        version: u32,
    ) -> impl Future<Output = Result<LaunchTemplateVersion, CloudError>> + Send {
        self.sim.launch_template_version(template_id, version)
    }

    fn scaling_activities(
        &self,
        group: &str,
    ) -> impl Future<Output = Result<Vec<ScalingActivity>, CloudError>> + Send {
        self.sim.scaling_activities(group)
    }

    fn instance_type(
        &self,
        instance_type: &str,
    ) -> impl Future<Output = Result<InstanceTypeSize, CloudError>> + Send {
        self.sim.instance_type(instance_type)
    }

    fn stop_task(
        &self,
        cluster: &str,
        task_arn: &str,
        reason: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.sim.stop_task(cluster, task_arn, reason)
    }

    fn run_task(
        &self,
        cluster: &str,
        request: &RunTaskRequest,
    ) -> impl Future<Output = Result<String, CloudError>> + Send {
        self.sim.run_task(cluster, request)
    }

    fn set_desired_capacity(
        &self,
        group: &str,
        desired: u32,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.sim.set_desired_capacity(group, desired)
    }

    fn pin_launch_template_version(
        &self,
        group: &str,
        template_id: &str,
        version: u32,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.sim
            .pin_launch_template_version(group, template_id, version)
    }

    fn tag_group(
        &self,
        group: &str,
        tags: &Tags,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.sim.tag_group(group, tags)
    }

    fn terminate_instance(
        &self,
        instance_id: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.sim.terminate_instance(instance_id)
    }

    fn drain_container_instance(
        &self,
        cluster: &str,
        container_instance_arn: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send {
        self.sim
            .drain_container_instance(cluster, container_instance_arn)
    }
}

#[tokio::test(start_paused = true)]
async fn a_cluster_whose_observation_takes_ten_minutes_holds_up_no_other() {
    let sim = Arc::new(SimAccount::new(start()));
    for cluster in ["prod-a", "prod-b", "prod-c", "prod-slow"] {
        sim.add_cluster(cluster);
        sim.add_service(cluster, service("web", 3));
    }
    let reconciles = Arc::new(Reconciles::default());
    let settings = ControllerSettings {
        concurrency: 2,
        ..ControllerSettings::default()
    };
    let c = controller(
        SlowCluster::new(&sim, "prod-slow"),
        two_minute_policy(),
        settings,
        Arc::clone(&reconciles),
    );
    // Just short of the slow observation: it holds a permit the whole window.
    run_for(&c, SLOW - Duration::from_secs(1)).await;
    let counts = reconciles.per_cluster();
    for fast in ["prod-a", "prod-b", "prod-c"] {
        // Every 30 s from the start over 599 s: 20 reconciles, the first at 0 s.
        assert_eq!(counts.get(fast), Some(&20), "{fast}: {counts:?}");
    }
    assert_eq!(counts.get("prod-slow"), None, "{counts:?}");
    assert_eq!(reconciles.count(Trigger::Resync), 60);
}

#[tokio::test(start_paused = true)]
async fn a_failing_cluster_backs_off_on_its_own_while_the_others_keep_their_cadence() {
    let sim = Arc::new(SimAccount::new(start()));
    for cluster in ["prod-a", "prod-b", "prod-failing"] {
        sim.add_cluster(cluster);
        sim.add_service(cluster, service("web", 1));
    }
    let reconciles = Arc::new(Reconciles::default());
    let c = controller(
        SlowCluster {
            fails: true,
            ..SlowCluster::new(&sim, "prod-failing")
        },
        two_minute_policy(),
        ControllerSettings::default(),
        Arc::clone(&reconciles),
    );
    run_for(&c, Duration::from_secs(299)).await;
    let all = reconciles.0.lock().unwrap().clone();
    let failing: Vec<&(String, Trigger, bool)> =
        all.iter().filter(|(c, _, _)| c == "prod-failing").collect();
    assert!(failing.iter().all(|(_, _, ok)| !ok));
    assert_eq!(failing[0].1, Trigger::Resync, "the first attempt");
    assert!(failing[1..].iter().all(|(_, t, _)| *t == Trigger::Retry));
    // 1 s doubling (with jitter) up to the 30 s resync: more tries than the 10 resyncs, fewer
    // than one a second.
    assert!(
        failing.len() > 10 && failing.len() < 40,
        "{} tries",
        failing.len()
    );
    let counts = reconciles.per_cluster();
    assert_eq!(counts.get("prod-a"), Some(&10), "{counts:?}");
    assert_eq!(counts.get("prod-b"), Some(&10), "{counts:?}");
}
