//! The simulated account's events on tokio's paused clock: each kind of change writes its
//! EventBridge envelope (with a growing version, at the virtual time of the change), and the
//! in-process queue long-polls, redelivers what is not deleted, and delays, duplicates,
//! reorders and drops as set, the same way for the same seed.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::cloud::Cloud;
use ecs_reconciler::cloud::sim::capacity::VCPU_LIMIT_EXCEEDED;
use ecs_reconciler::cloud::sim::events::{RECEIVE_WAIT, VISIBILITY_TIMEOUT};
use ecs_reconciler::cloud::sim::{
    GroupSpec, QueueFaults, ServiceSpec, SimAccount, SimQueue, TaskBehavior, VersionBehavior,
    VersionSpec,
};
use ecs_reconciler::domain::{
    Capacity, CapacityProviderStrategyItem, RunTaskRequest, Tags, TaskOverrides, TaskStatus,
};
use ecs_reconciler::events::envelope::{
    self, ContainerInstanceDetail, Envelope, LaunchDetail, ServiceActionDetail, TaskDetail,
};
use ecs_reconciler::events::{EventSource, Message};

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

fn account() -> Arc<SimAccount> {
    let sim = Arc::new(SimAccount::new(start()));
    sim.add_cluster("c");
    sim
}

fn envelope(m: &Message) -> Envelope {
    serde_json::from_str(&m.body).expect("an EventBridge envelope")
}

fn detail<T: serde::de::DeserializeOwned>(e: &Envelope) -> T {
    serde_json::from_value(e.detail.clone()).expect("the detail of its type")
}

/// Receives until a receive comes back empty (each waits up to 20 virtual seconds), deleting
/// every delivery; the envelopes in delivery order.
async fn drain(queue: &SimQueue) -> Vec<Envelope> {
    let mut out = Vec::new();
    loop {
        let batch = queue.receive().await.unwrap();
        if batch.is_empty() {
            return out;
        }
        let receipts: Vec<String> = batch.iter().map(|m| m.receipt.clone()).collect();
        assert!(queue.delete(&receipts).await.unwrap().is_empty());
        out.extend(batch.iter().map(envelope));
    }
}

fn of_type<'a>(envelopes: &'a [Envelope], detail_type: &str) -> Vec<&'a Envelope> {
    envelopes
        .iter()
        .filter(|e| e.detail_type == detail_type)
        .collect()
}

fn run_request() -> RunTaskRequest {
    RunTaskRequest {
        task_definition: "batch:1".to_string(),
        overrides: TaskOverrides::default(),
        tags: Tags::new(),
        group: None,
        started_by: None,
        capacity: Capacity::LaunchType("FARGATE".to_string()),
        network: None,
        client_token: String::new(),
    }
}

#[tokio::test(start_paused = true)]
async fn each_task_state_change_is_told_with_a_growing_version_at_its_time() {
    let sim = account();
    let queue = sim.event_queue(QueueFaults::default());
    let arn = sim.start_task("c", &run_request(), TaskBehavior::healthy());
    let told = drain(&queue).await;
    let tasks: Vec<TaskDetail> = of_type(&told, envelope::TASK_STATE_CHANGE)
        .into_iter()
        .map(detail)
        .collect();
    let statuses: Vec<&str> = tasks.iter().map(|t| t.last_status.as_str()).collect();
    assert_eq!(
        statuses,
        ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING"]
    );
    assert!(tasks.windows(2).all(|w| w[0].version < w[1].version));
    assert!(
        tasks
            .iter()
            .all(|t| t.task_arn == arn && t.desired_status == "RUNNING")
    );
    // The envelope's time is the moment of the change: RUNNING is when startedAt says.
    let running = of_type(&told, envelope::TASK_STATE_CHANGE)[3];
    assert_eq!(running.time, tasks[3].started_at.clone().unwrap());
    assert_eq!(running.source, envelope::ECS_SOURCE);
    assert_eq!(running.resources, std::slice::from_ref(&arn));
    // DescribeTasks shows the version of the last event (no change since).
    let described = sim
        .describe_tasks("c", std::slice::from_ref(&arn))
        .await
        .unwrap();
    assert_eq!(described.tasks[0].version, tasks[3].version);

    sim.stop_task("c", &arn, "by hand").await.unwrap();
    let down: Vec<TaskDetail> = of_type(&drain(&queue).await, envelope::TASK_STATE_CHANGE)
        .into_iter()
        .map(detail)
        .collect();
    let steps: Vec<(&str, &str)> = down
        .iter()
        .map(|t| (t.desired_status.as_str(), t.last_status.as_str()))
        .collect();
    // The desired-status change is told first, then each step down.
    assert_eq!(
        steps,
        [
            ("STOPPED", "RUNNING"),
            ("STOPPED", "DEACTIVATING"),
            ("STOPPED", "STOPPING"),
            ("STOPPED", "DEPROVISIONING"),
            ("STOPPED", "STOPPED"),
        ]
    );
    assert!(down[0].version > tasks[3].version);
    assert!(down.windows(2).all(|w| w[0].version < w[1].version));
    assert_eq!(down[0].stopped_reason.as_deref(), Some("by hand"));
    assert_eq!(down[4].stop_code.as_deref(), Some("UserInitiated"));
}

#[tokio::test(start_paused = true)]
async fn a_health_change_is_not_told_but_moves_the_version() {
    let sim = account();
    let queue = sim.event_queue(QueueFaults::default());
    let behavior = TaskBehavior::turns_unhealthy_after(Duration::from_secs(60));
    let arn = sim.start_task("c", &run_request(), behavior);
    let told = drain(&queue).await;
    let last: TaskDetail = detail(of_type(&told, envelope::TASK_STATE_CHANGE).last().unwrap());
    assert_eq!(last.last_status, "RUNNING");
    tokio::time::advance(Duration::from_secs(120)).await;
    assert!(drain(&queue).await.is_empty());
    let task = sim.task(&arn).unwrap();
    assert_eq!(task.health, ecs_reconciler::domain::HealthStatus::Unhealthy);
    assert!(task.version > last.version);
}

#[tokio::test(start_paused = true)]
async fn container_instance_changes_are_told_with_a_growing_version() {
    let sim = account();
    let queue = sim.event_queue(QueueFaults::default());
    let arn = sim.add_container_instance("c", "i-0aaa");
    sim.set_agent_connected("c", &arn, false);
    sim.set_agent_connected("c", &arn, true);
    sim.drain_container_instance("c", &arn).await.unwrap();
    let told = drain(&queue).await;
    let instances: Vec<ContainerInstanceDetail> =
        of_type(&told, envelope::CONTAINER_INSTANCE_STATE_CHANGE)
            .into_iter()
            .map(detail)
            .collect();
    let seen: Vec<(bool, &str)> = instances
        .iter()
        .map(|i| (i.agent_connected, i.status.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (true, "ACTIVE"),
            (false, "ACTIVE"),
            (true, "ACTIVE"),
            (true, "DRAINING")
        ]
    );
    assert!(instances.windows(2).all(|w| w[0].version < w[1].version));
    assert!(instances.iter().all(|i| i.container_instance_arn == arn
        && i.ec2_instance_id.as_deref() == Some("i-0aaa")
        && i.cluster_arn.ends_with(":cluster/c")));
}

fn on(provider: &str) -> Capacity {
    Capacity::CapacityProviderStrategy(vec![CapacityProviderStrategyItem {
        capacity_provider: provider.to_string(),
        weight: 1,
        base: 0,
    }])
}

#[tokio::test(start_paused = true)]
async fn launches_registrations_and_placement_failures_are_told() {
    let sim = account();
    let queue = sim.event_queue(QueueFaults::default());
    let small = VersionSpec::new(VersionBehavior::good(Duration::from_secs(60)))
        .with_instance_type("t3.micro");
    let lt = sim.add_launch_template("lt", small);
    sim.add_auto_scaling_group(GroupSpec::new("asg", "c", &lt, 1).with_slots(2));
    sim.add_capacity_provider("c", "cp", Some("asg"));
    tokio::time::advance(Duration::from_secs(600)).await;
    let service = sim.add_service(
        "c",
        ServiceSpec::new("big", 1)
            .with_capacity(on("cp"))
            .with_task_size(256, 4096),
    );
    let told = drain(&queue).await;

    let launches = of_type(&told, envelope::LAUNCH_SUCCESSFUL);
    assert_eq!(launches.len(), 1);
    let launch: LaunchDetail = detail(launches[0]);
    assert_eq!(launch.auto_scaling_group_name, "asg");
    assert_eq!(launch.status_code.as_deref(), Some("Successful"));
    let instance_id = launch.ec2_instance_id.clone().expect("the instance");
    assert_eq!(launches[0].source, envelope::AUTOSCALING_SOURCE);

    let registered: Vec<ContainerInstanceDetail> =
        of_type(&told, envelope::CONTAINER_INSTANCE_STATE_CHANGE)
            .into_iter()
            .map(detail)
            .collect();
    assert_eq!(registered.len(), 1);
    assert_eq!(
        registered[0].ec2_instance_id.as_deref(),
        Some(&*instance_id)
    );
    assert!(registered[0].agent_connected && registered[0].status == "ACTIVE");

    let actions = of_type(&told, envelope::SERVICE_ACTION);
    assert_eq!(
        actions.len(),
        1,
        "told once, as the service event is written once"
    );
    let action: ServiceActionDetail = detail(actions[0]);
    assert_eq!(
        (action.event_type.as_str(), action.event_name.as_str()),
        ("WARN", "SERVICE_TASK_PLACEMENT_FAILURE")
    );
    assert_eq!(action.reasons, ["RESOURCE:MEMORY"]);
    assert_eq!(action.capacity_provider_arns.len(), 1);
    assert!(action.capacity_provider_arns[0].ends_with(":capacity-provider/cp"));
    assert_eq!(actions[0].resources, [service]);

    sim.fail_launches("asg", Some(VCPU_LIMIT_EXCEEDED));
    sim.set_desired_capacity("asg", 2).await.unwrap();
    let failed = drain(&queue).await;
    let unsuccessful = of_type(&failed, envelope::LAUNCH_UNSUCCESSFUL);
    assert!(!unsuccessful.is_empty());
    let first: LaunchDetail = detail(unsuccessful[0]);
    assert_eq!(first.status_code.as_deref(), Some("Failed"));
    assert_eq!(first.status_message.as_deref(), Some(VCPU_LIMIT_EXCEEDED));
    assert!(first.ec2_instance_id.is_none());
}

#[tokio::test(start_paused = true)]
async fn nothing_is_written_before_a_queue_listens() {
    let sim = account();
    sim.start_task("c", &run_request(), TaskBehavior::healthy());
    tokio::time::advance(Duration::from_secs(60)).await;
    let queue = sim.event_queue(QueueFaults::default());
    assert!(drain(&queue).await.is_empty());
    assert_eq!(queue.counts().emitted, 0);
}

// ---- the queue ----

#[tokio::test(start_paused = true)]
async fn a_receive_waits_twenty_virtual_seconds_then_answers_empty() {
    let sim = account();
    let queue = sim.event_queue(QueueFaults::default());
    let began = tokio::time::Instant::now();
    assert!(queue.receive().await.unwrap().is_empty());
    assert_eq!(began.elapsed(), RECEIVE_WAIT);
}

#[tokio::test(start_paused = true)]
async fn a_receive_answers_as_soon_as_a_change_is_due_or_made() {
    let sim = account();
    let queue = sim.event_queue(QueueFaults::default());
    let arn = sim.start_task(
        "c",
        &run_request(),
        TaskBehavior::hangs_in(TaskStatus::Running),
    );
    // PROVISIONING was written at once.
    let began = tokio::time::Instant::now();
    let first = queue.receive().await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(began.elapsed(), Duration::ZERO);
    // PENDING is due 3 s later (the default dwell): the receive wakes then, not at 20 s.
    let second = queue.receive().await.unwrap();
    assert_eq!(began.elapsed(), Duration::from_secs(3));
    let pending: TaskDetail = detail(&envelope(&second[0]));
    assert_eq!(pending.last_status, "PENDING");
    let receipts = [first[0].receipt.clone(), second[0].receipt.clone()];
    assert!(queue.delete(&receipts).await.unwrap().is_empty());
    drain(&queue).await;

    // A StopTask while a receive waits wakes it at once.
    let waiting = {
        let queue_sim = Arc::clone(&sim);
        let arn = arn.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            queue_sim.stop_task("c", &arn, "now").await.unwrap();
        })
    };
    let began = tokio::time::Instant::now();
    let stopped = queue.receive().await.unwrap();
    assert_eq!(began.elapsed(), Duration::from_secs(5));
    let desired: TaskDetail = detail(&envelope(&stopped[0]));
    assert_eq!(desired.desired_status, "STOPPED");
    waiting.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn at_most_ten_a_receive_and_what_is_not_deleted_comes_back() {
    let sim = account();
    let queue = sim.event_queue(QueueFaults::default());
    for _ in 0..12 {
        sim.start_task("c", &run_request(), TaskBehavior::healthy());
    }
    let first = queue.receive().await.unwrap();
    assert_eq!(first.len(), 10);
    let rest = queue.receive().await.unwrap();
    assert_eq!(rest.len(), 2);
    // Delete the first batch only; a receipt deletes once.
    let receipts: Vec<String> = first.iter().map(|m| m.receipt.clone()).collect();
    assert!(queue.delete(&receipts).await.unwrap().is_empty());
    assert_eq!(queue.delete(&receipts[..1]).await.unwrap(), receipts[..1]);
    // After the visibility timeout the two undeleted ones come back, with the same ids and
    // bodies and new receipts.
    tokio::time::advance(VISIBILITY_TIMEOUT).await;
    let mut again = Vec::new();
    let began = tokio::time::Instant::now();
    while again.len() < 2 && began.elapsed() < VISIBILITY_TIMEOUT {
        let mut others = Vec::new();
        for m in queue.receive().await.unwrap() {
            if rest.iter().any(|r| r.id == m.id) {
                again.push(m);
            } else {
                others.push(m.receipt);
            }
        }
        queue.delete(&others).await.unwrap();
    }
    assert_eq!(again.len(), 2, "both undeleted messages came back");
    for m in &again {
        let old = rest.iter().find(|r| r.id == m.id).unwrap();
        assert_eq!(old.body, m.body);
        assert_ne!(old.receipt, m.receipt);
    }
    // An old receipt no longer deletes; the new one does.
    assert_eq!(
        queue
            .delete(&[rest[0].receipt.clone()])
            .await
            .unwrap()
            .len(),
        1
    );
    let fresh: Vec<String> = again.iter().map(|m| m.receipt.clone()).collect();
    assert!(queue.delete(&fresh).await.unwrap().is_empty());
}

// ---- faults ----

/// `tasks` standalone healthy tasks started at once, then every envelope delivered until the
/// queue is quiet, as (event id, task arn, last status).
async fn deliveries(faults: QueueFaults, tasks: usize) -> (Vec<(String, String)>, SimQueueFigures) {
    let sim = account();
    let queue = sim.event_queue(faults);
    for _ in 0..tasks {
        sim.start_task("c", &run_request(), TaskBehavior::healthy());
    }
    let told = drain(&queue).await;
    let counts = queue.counts();
    let out = told
        .iter()
        .map(|e| {
            let t: TaskDetail = detail(e);
            (e.id.clone(), format!("{} {}", t.task_arn, t.last_status))
        })
        .collect();
    (
        out,
        SimQueueFigures {
            emitted: counts.emitted,
            dropped: counts.dropped,
            duplicated: counts.duplicated,
        },
    )
}

#[derive(Debug, PartialEq)]
struct SimQueueFigures {
    emitted: u64,
    dropped: u64,
    duplicated: u64,
}

#[tokio::test(start_paused = true)]
async fn without_faults_each_event_is_delivered_once_in_order() {
    let (told, figures) = deliveries(QueueFaults::default(), 5).await;
    assert_eq!(figures.emitted, 20);
    assert_eq!(told.len(), 20);
    let mut ids: Vec<&String> = told.iter().map(|(id, _)| id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 20);
}

#[tokio::test(start_paused = true)]
async fn drop_loses_about_its_share_and_duplicate_copies_about_its_share() {
    let faults = QueueFaults {
        drop: 0.3,
        seed: 7,
        ..QueueFaults::default()
    };
    let (told, figures) = deliveries(faults, 50).await;
    assert_eq!(figures.emitted, 200);
    assert!((40..=80).contains(&figures.dropped), "{figures:?}");
    assert_eq!(told.len() as u64, 200 - figures.dropped);

    let faults = QueueFaults {
        duplicate: 0.25,
        seed: 7,
        ..QueueFaults::default()
    };
    let (told, figures) = deliveries(faults, 50).await;
    assert!((30..=70).contains(&figures.duplicated), "{figures:?}");
    assert_eq!(told.len() as u64, 200 + figures.duplicated);
    // A copy is the same event (the same envelope id), delivered as another message.
    let mut ids: Vec<&String> = told.iter().map(|(id, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);

    let all = QueueFaults {
        drop: 1.0,
        ..QueueFaults::default()
    };
    assert!(deliveries(all, 3).await.0.is_empty());
}

#[tokio::test(start_paused = true)]
async fn delay_holds_each_event_back_by_its_delay() {
    let sim = account();
    let queue = sim.event_queue(QueueFaults {
        delay: Duration::from_secs(45),
        ..QueueFaults::default()
    });
    sim.start_task("c", &run_request(), TaskBehavior::healthy());
    let began = tokio::time::Instant::now();
    // The first receive waits out its 20 s; the PROVISIONING event turns visible at 45 s.
    assert!(queue.receive().await.unwrap().is_empty());
    assert!(queue.receive().await.unwrap().is_empty());
    let batch = queue.receive().await.unwrap();
    assert_eq!(began.elapsed(), Duration::from_secs(45));
    let first: TaskDetail = detail(&envelope(&batch[0]));
    assert_eq!(first.last_status, "PROVISIONING");
    // Its time is still the moment of the change.
    assert_eq!(envelope(&batch[0]).time, first.created_at.unwrap());
}

#[tokio::test(start_paused = true)]
async fn reorder_shuffles_the_window_and_keeps_every_event() {
    let faults = QueueFaults {
        reorder_window: Duration::from_secs(30),
        seed: 3,
        ..QueueFaults::default()
    };
    let (shuffled, _) = deliveries(faults, 10).await;
    let (ordered, _) = deliveries(QueueFaults::default(), 10).await;
    assert_ne!(shuffled, ordered);
    let mut a = shuffled.clone();
    let mut b = ordered.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // One task's own events come out of order too (its four changes span 9 s).
    let out_of_order = (0..shuffled.len()).any(|i| {
        let (arn, status) = shuffled[i].1.split_once(' ').unwrap();
        shuffled[i + 1..].iter().any(|(_, later)| {
            let (later_arn, later_status) = later.split_once(' ').unwrap();
            later_arn == arn && rank(later_status) < rank(status)
        })
    });
    assert!(out_of_order, "{shuffled:?}");
}

fn rank(status: &str) -> usize {
    ["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING"]
        .iter()
        .position(|s| *s == status)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_deliveries_and_another_seed_others() {
    let faults = |seed| QueueFaults {
        duplicate: 0.3,
        drop: 0.2,
        reorder_window: Duration::from_secs(20),
        seed,
        ..QueueFaults::default()
    };
    let one = deliveries(faults(11), 20).await;
    let again = deliveries(faults(11), 20).await;
    let other = deliveries(faults(12), 20).await;
    assert_eq!(one, again);
    assert_ne!(one.0, other.0);
}

#[tokio::test(start_paused = true)]
async fn the_parser_reads_every_event_the_simulator_writes() {
    use ecs_reconciler::events::Event;
    use ecs_reconciler::events::parse::parse;

    let sim = account();
    let queue = sim.event_queue(QueueFaults::default());
    let small = VersionSpec::new(VersionBehavior::good(Duration::from_secs(60)))
        .with_instance_type("t3.micro");
    let lt = sim.add_launch_template("lt", small);
    sim.add_auto_scaling_group(GroupSpec::new("asg", "c", &lt, 1).with_slots(2));
    sim.add_capacity_provider("c", "cp", Some("asg"));
    tokio::time::advance(Duration::from_secs(600)).await;
    sim.add_service(
        "c",
        ServiceSpec::new("big", 1)
            .with_capacity(on("cp"))
            .with_task_size(256, 4096),
    );
    let arn = sim.start_task("c", &run_request(), TaskBehavior::healthy());
    let mut kinds = std::collections::HashSet::new();
    loop {
        let batch = queue.receive().await.unwrap();
        if batch.is_empty() {
            break;
        }
        for m in &batch {
            let parsed = parse(&m.body).unwrap_or_else(|r| panic!("{}: {}", r.why, m.body));
            assert_eq!(parsed.event_id, envelope(m).id);
            assert!(parsed.happened_at.is_some());
            kinds.insert(std::mem::discriminant(&parsed.event));
            // A task event reads back as the task DescribeTasks shows at that version.
            if let Event::Task(change) = &parsed.event
                && change.task.arn == arn
                && change.task.last_status == TaskStatus::Running
            {
                let described = sim.task(&arn).unwrap();
                assert_eq!(change.task.version, described.version);
                assert_eq!(change.task.timestamps, described.timestamps);
                assert_eq!(change.task.desired_status, described.desired_status);
            }
        }
        let receipts: Vec<String> = batch.iter().map(|m| m.receipt.clone()).collect();
        queue.delete(&receipts).await.unwrap();
    }
    sim.fail_launches("asg", Some(VCPU_LIMIT_EXCEEDED));
    sim.set_desired_capacity("asg", 2).await.unwrap();
    for m in queue.receive().await.unwrap() {
        let parsed = parse(&m.body).unwrap_or_else(|r| panic!("{}: {}", r.why, m.body));
        kinds.insert(std::mem::discriminant(&parsed.event));
    }
    // Task, container instance, service action, group activity.
    assert_eq!(kinds.len(), 4);
}
