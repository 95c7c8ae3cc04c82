//! The event pump on an in-memory queue, in paused time: what is applied and deleted, what is
//! counted, duplicates, backoff and the degraded state, shutdown with a batch in hand, and a
//! sink that dies before the delete.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ecs_reconciler::cloud::{CloudError, ErrorCategory};
use ecs_reconciler::events::pump::{Pump, PumpCounts};
use ecs_reconciler::events::{Disposition, Event, EventSink, EventSource, Message};
use ecs_reconciler::telemetry::Telemetry;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/events")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn message(id: &str, body: &str) -> Message {
    Message {
        id: id.into(),
        receipt: format!("receipt-{id}"),
        body: body.into(),
    }
}

/// A queue that answers scripted receives, then waits forever; it records its deletes and
/// when each receive was made.
#[derive(Default)]
struct ScriptedQueue {
    answers: Mutex<VecDeque<Result<Vec<Message>, CloudError>>>,
    receives: Mutex<Vec<Instant>>,
    deleted: Mutex<Vec<String>>,
    /// Receipts whose delete fails.
    undeletable: Vec<String>,
    /// Cancelled as the first answer is returned (a shutdown that arrives during a poll).
    cancel_on_first: Option<CancellationToken>,
    /// How long each answer after the first takes to come.
    gap: Duration,
}

impl ScriptedQueue {
    fn new(answers: Vec<Result<Vec<Message>, CloudError>>) -> Arc<ScriptedQueue> {
        Arc::new(ScriptedQueue {
            answers: Mutex::new(answers.into()),
            ..ScriptedQueue::default()
        })
    }

    fn deleted(&self) -> Vec<String> {
        self.deleted.lock().unwrap().clone()
    }

    fn receive_times(&self) -> Vec<Instant> {
        self.receives.lock().unwrap().clone()
    }
}

/// The pump takes its source by value; tests keep a handle.
struct Shared(Arc<ScriptedQueue>);

impl EventSource for Shared {
    async fn receive(&self) -> Result<Vec<Message>, CloudError> {
        let q = &self.0;
        let first = q.receives.lock().unwrap().is_empty();
        q.receives.lock().unwrap().push(Instant::now());
        if !first {
            tokio::time::sleep(q.gap).await;
        }
        let next = q.answers.lock().unwrap().pop_front();
        match next {
            Some(answer) => {
                if let Some(token) = &q.cancel_on_first {
                    token.cancel();
                }
                answer
            }
            None => std::future::pending().await,
        }
    }

    async fn delete(&self, receipts: &[String]) -> Result<Vec<String>, CloudError> {
        let q = &self.0;
        let (left, gone): (Vec<String>, Vec<String>) = receipts
            .iter()
            .cloned()
            .partition(|r| q.undeletable.contains(r));
        q.deleted.lock().unwrap().extend(gone);
        Ok(left)
    }
}

/// Records what it is given; answers `Applied` (or panics, to stand for a failed apply).
#[derive(Default)]
struct RecordingSink {
    events: Mutex<Vec<Event>>,
    degraded: Mutex<Vec<bool>>,
    panic_on_apply: bool,
}

impl EventSink for RecordingSink {
    fn apply(&self, event: Event, _received_at: SystemTime) -> Disposition {
        assert!(!self.panic_on_apply, "the cache is broken");
        self.events.lock().unwrap().push(event);
        Disposition::Applied
    }

    fn set_degraded(&self, degraded: bool) {
        self.degraded.lock().unwrap().push(degraded);
    }
}

#[derive(Default)]
struct RecordingTelemetry {
    events: Mutex<Vec<(Disposition, Option<Duration>)>>,
    degraded: Mutex<Vec<bool>>,
}

impl Telemetry for RecordingTelemetry {
    fn event(&self, disposition: Disposition, lag: Option<Duration>) {
        self.events.lock().unwrap().push((disposition, lag));
    }

    fn events_degraded(&self, degraded: bool) {
        self.degraded.lock().unwrap().push(degraded);
    }
}

struct Running {
    counts: Arc<PumpCounts>,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

fn start(
    queue: &Arc<ScriptedQueue>,
    sink: &Arc<RecordingSink>,
    telemetry: &Arc<RecordingTelemetry>,
    shutdown: CancellationToken,
) -> Running {
    let pump = Pump::new(
        Shared(Arc::clone(queue)),
        Arc::clone(sink) as Arc<dyn EventSink>,
        Arc::clone(telemetry) as Arc<dyn Telemetry>,
    );
    let counts = pump.counts();
    let handle = tokio::spawn(pump.run(shutdown.clone()));
    Running {
        counts,
        shutdown,
        handle,
    }
}

/// Lets the pump run until everything waits (paused time: no real time passes).
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn every_message_is_disposed_of_once_counted_by_kind_and_deleted() {
    let queue = ScriptedQueue::new(vec![Ok(vec![
        message("m1", &fixture("task-state-change-running.json")),
        message("m2", "this is not JSON"),
        message("m3", r#"{"not": "an envelope"}"#),
        message("m4", &fixture("service-action-steady-state.json")),
        message("m5", &fixture("autoscaling-launch-unsuccessful.json")),
    ])]);
    let sink = Arc::new(RecordingSink::default());
    let telemetry = Arc::new(RecordingTelemetry::default());
    let run = start(&queue, &sink, &telemetry, CancellationToken::new());
    settle().await;
    let c = &run.counts;
    assert_eq!(c.received(), 5);
    assert_eq!(c.of(Disposition::Applied), 2);
    assert_eq!(c.of(Disposition::NotJson), 1);
    assert_eq!(c.of(Disposition::NotEnvelope), 1);
    assert_eq!(c.of(Disposition::UnknownType), 1);
    assert_eq!(c.disposed(), 5);
    assert_eq!(c.deleted(), 5);
    assert_eq!(
        queue.deleted(),
        [
            "receipt-m1",
            "receipt-m2",
            "receipt-m3",
            "receipt-m4",
            "receipt-m5"
        ]
    );
    assert_eq!(sink.events.lock().unwrap().len(), 2);
    let told = telemetry.events.lock().unwrap().clone();
    assert_eq!(
        told.len(),
        5,
        "the telemetry hears of every message: {told:?}"
    );
    // The envelope of 2020 is years old: its lag is known and large; a body with no
    // envelope has none.
    assert!(
        told[0]
            .1
            .is_some_and(|lag| lag > Duration::from_secs(86_400))
    );
    assert_eq!(told[1], (Disposition::NotJson, None));
    run.shutdown.cancel();
    run.handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_redelivered_event_is_applied_once_and_its_copies_deleted() {
    let body = fixture("task-state-change-running.json");
    let queue = ScriptedQueue::new(vec![
        Ok(vec![message("m1", &body)]),
        // The same event again, as another message (EventBridge retried) and as the same
        // message (its delete was lost).
        Ok(vec![message("m2", &body), message("m1", &body)]),
    ]);
    let sink = Arc::new(RecordingSink::default());
    let telemetry = Arc::new(RecordingTelemetry::default());
    let run = start(&queue, &sink, &telemetry, CancellationToken::new());
    settle().await;
    assert_eq!(sink.events.lock().unwrap().len(), 1);
    assert_eq!(run.counts.of(Disposition::Applied), 1);
    assert_eq!(run.counts.of(Disposition::Stale), 2);
    assert_eq!(run.counts.deleted(), 3);
    run.shutdown.cancel();
    run.handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_receives_back_off_from_1s_to_30s_degrade_once_and_recover() {
    let throttled = || {
        Err(CloudError::new(
            ErrorCategory::Throttled,
            "ReceiveMessage",
            "ThrottlingException: slow down",
        ))
    };
    let mut answers: Vec<_> = (0..7).map(|_| throttled()).collect();
    answers.push(Ok(vec![message(
        "m1",
        &fixture("task-state-change-running.json"),
    )]));
    let queue = ScriptedQueue::new(answers);
    let sink = Arc::new(RecordingSink::default());
    let telemetry = Arc::new(RecordingTelemetry::default());
    let began = Instant::now();
    let run = start(&queue, &sink, &telemetry, CancellationToken::new());
    // 1 + 2 + 4 + 8 + 16 + 30 + 30 s of backoff, then the answer.
    tokio::time::sleep(Duration::from_secs(200)).await;
    let gaps: Vec<u64> = queue
        .receive_times()
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs())
        .collect();
    assert_eq!(gaps, [1, 2, 4, 8, 16, 30, 30, 0][..gaps.len()].to_vec());
    assert_eq!(
        gaps.len(),
        8,
        "7 failures, the answer, then a receive that waits"
    );
    assert!(queue.receive_times()[0] - began < Duration::from_millis(1));
    assert_eq!(run.counts.failed_receives(), 7);
    // Degraded once at the first failure, restored at the first answer.
    assert_eq!(*sink.degraded.lock().unwrap(), [true, false]);
    assert_eq!(*telemetry.degraded.lock().unwrap(), [true, false]);
    // Nothing was lost: the message that waited on the queue was applied.
    assert_eq!(run.counts.of(Disposition::Applied), 1);
    run.shutdown.cancel();
    run.handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_a_receive_still_applies_and_deletes_the_batch_received() {
    let shutdown = CancellationToken::new();
    let queue = Arc::new(ScriptedQueue {
        answers: Mutex::new(
            vec![
                Ok(vec![
                    message("m1", &fixture("task-state-change-stopped.json")),
                    message("m2", &fixture("container-instance-state-change.json")),
                ]),
                Ok(vec![message(
                    "m3",
                    &fixture("task-state-change-running.json"),
                )]),
            ]
            .into(),
        ),
        cancel_on_first: Some(shutdown.clone()),
        ..ScriptedQueue::default()
    });
    let sink = Arc::new(RecordingSink::default());
    let telemetry = Arc::new(RecordingTelemetry::default());
    let run = start(&queue, &sink, &telemetry, shutdown);
    tokio::time::timeout(Duration::from_secs(5), run.handle)
        .await
        .expect("the pump stops at shutdown")
        .unwrap();
    assert_eq!(sink.events.lock().unwrap().len(), 2);
    assert_eq!(queue.deleted(), ["receipt-m1", "receipt-m2"]);
    assert_eq!(queue.receive_times().len(), 1, "no receive after shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_sink_that_dies_before_the_delete_leaves_the_message_on_the_queue() {
    let queue = ScriptedQueue::new(vec![Ok(vec![message(
        "m1",
        &fixture("task-state-change-running.json"),
    )])]);
    let sink = Arc::new(RecordingSink {
        panic_on_apply: true,
        ..RecordingSink::default()
    });
    let telemetry = Arc::new(RecordingTelemetry::default());
    let run = start(&queue, &sink, &telemetry, CancellationToken::new());
    let ended = run.handle.await;
    assert!(
        ended.is_err_and(|e| e.is_panic()),
        "the pump dies with its sink"
    );
    assert!(queue.deleted().is_empty(), "nothing was deleted");
    assert_eq!(run.counts.deleted(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_delete_that_fails_is_counted_and_the_redelivery_is_harmless() {
    let body = fixture("task-state-change-running.json");
    let queue = Arc::new(ScriptedQueue {
        answers: Mutex::new(
            vec![
                Ok(vec![message("m1", &body), message("m2", "{}")]),
                Ok(vec![message("m1", &body)]),
            ]
            .into(),
        ),
        undeletable: vec!["receipt-m1".to_string()],
        ..ScriptedQueue::default()
    });
    let sink = Arc::new(RecordingSink::default());
    let telemetry = Arc::new(RecordingTelemetry::default());
    let run = start(&queue, &sink, &telemetry, CancellationToken::new());
    settle().await;
    assert_eq!(run.counts.deleted(), 1);
    assert_eq!(run.counts.not_deleted(), 2, "m1 twice");
    assert_eq!(sink.events.lock().unwrap().len(), 1, "applied once");
    assert_eq!(run.counts.of(Disposition::Stale), 1);
    run.shutdown.cancel();
    run.handle.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_event_id_is_remembered_for_ten_minutes_then_applied_again() {
    // Past the window, the cache's versions (not the pump's memory) keep a redelivery
    // harmless.
    for (gap, applied) in [(Duration::from_secs(540), 1), (Duration::from_secs(660), 2)] {
        let body = fixture("container-instance-state-change.json");
        let queue = Arc::new(ScriptedQueue {
            answers: Mutex::new(
                vec![
                    Ok(vec![message("m1", &body)]),
                    Ok(vec![message("m1", &body)]),
                ]
                .into(),
            ),
            gap,
            ..ScriptedQueue::default()
        });
        let sink = Arc::new(RecordingSink::default());
        let telemetry = Arc::new(RecordingTelemetry::default());
        let run = start(&queue, &sink, &telemetry, CancellationToken::new());
        tokio::time::sleep(gap + Duration::from_secs(1)).await;
        assert_eq!(sink.events.lock().unwrap().len(), applied, "after {gap:?}");
        assert_eq!(run.counts.deleted(), 2);
        run.shutdown.cancel();
        run.handle.await.unwrap();
    }
}

/// A source that answers "nothing" at once, every time (no long poll).
struct Impatient(Mutex<u32>);

impl EventSource for Impatient {
    async fn receive(&self) -> Result<Vec<Message>, CloudError> {
        *self.0.lock().unwrap() += 1;
        Ok(Vec::new())
    }

    async fn delete(&self, _receipts: &[String]) -> Result<Vec<String>, CloudError> {
        panic!("nothing to delete")
    }
}

#[tokio::test(start_paused = true)]
async fn a_source_that_answers_empty_at_once_does_not_make_the_pump_spin() {
    let source = Arc::new(Impatient(Mutex::new(0)));
    struct Handle(Arc<Impatient>);
    impl EventSource for Handle {
        async fn receive(&self) -> Result<Vec<Message>, CloudError> {
            self.0.receive().await
        }
        async fn delete(&self, r: &[String]) -> Result<Vec<String>, CloudError> {
            self.0.delete(r).await
        }
    }
    let shutdown = CancellationToken::new();
    let pump = Pump::new(
        Handle(Arc::clone(&source)),
        Arc::new(RecordingSink::default()),
        Arc::new(RecordingTelemetry::default()),
    );
    let handle = tokio::spawn(pump.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    shutdown.cancel();
    handle.await.unwrap();
    // One receive a second at most: at 0, 1, ... 10 s.
    assert_eq!(*source.0.lock().unwrap(), 11);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const BODIES: [&str; 6] = [
        "task-state-change-running.json",
        "task-state-change-stopped.json",
        "container-instance-state-change.json",
        "autoscaling-launch-unsuccessful.json",
        "service-action-steady-state.json",
        "not a fixture: garbage",
    ];

    fn body(i: usize) -> String {
        match BODIES[i] {
            name if name.ends_with(".json") => fixture(name),
            garbage => garbage.to_string(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the deliveries (duplicates, garbage, unused types, in any order and
        /// batching): every delivery is disposed of and deleted exactly once, and each usable
        /// event is applied exactly once.
        #[test]
        fn every_delivery_is_deleted_once_and_every_event_applied_once(
            batches in prop::collection::vec(prop::collection::vec(0usize..BODIES.len(), 0..10), 1..8)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            let mut n = 0;
            let answers: Vec<_> = batches
                .iter()
                .map(|batch| {
                    Ok(batch
                        .iter()
                        .map(|&i| {
                            n += 1;
                            message(&format!("m{n}"), &body(i))
                        })
                        .collect())
                })
                .collect();
            let deliveries = n;
            let usable: std::collections::BTreeSet<usize> = batches
                .iter()
                .flatten()
                .copied()
                .filter(|&i| i < 4)
                .collect();
            let queue = ScriptedQueue::new(answers);
            let sink = Arc::new(RecordingSink::default());
            let telemetry = Arc::new(RecordingTelemetry::default());
            let counts = rt.block_on(async {
                let run = start(&queue, &sink, &telemetry, CancellationToken::new());
                tokio::time::sleep(Duration::from_secs(60)).await;
                run.shutdown.cancel();
                run.handle.await.unwrap();
                run.counts
            });
            let mut deleted = queue.deleted();
            prop_assert_eq!(deleted.len(), deliveries);
            deleted.sort();
            deleted.dedup();
            prop_assert_eq!(deleted.len(), deliveries, "a delivery deleted twice");
            prop_assert_eq!(counts.disposed(), deliveries as u64);
            prop_assert_eq!(sink.events.lock().unwrap().len(), usable.len());
            prop_assert_eq!(counts.of(Disposition::Applied), usable.len() as u64);
        }
    }
}
