//! The SQS adapter and the pump against moto: events published through EventBridge rules made
//! from `deploy/events/patterns.json` (PutEvents → rule → SQS target, all in moto), applied and
//! deleted; a malformed message deleted and counted; an unapplied message back after the
//! visibility timeout; the start-up errors (missing queue, AccessDenied, malformed URL), also
//! through the binary.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_sqs::types::QueueAttributeName;
use ecs_reconciler::cloud::ErrorCategory;
use ecs_reconciler::cloud::aws::AwsSettings;
use ecs_reconciler::cloud::aws::sqs::SqsQueue;
use ecs_reconciler::config::{self, EventsFlags, FlagOverrides};
use ecs_reconciler::events::pump::{Pump, PumpCounts};
use ecs_reconciler::events::{Disposition, Event, EventSink, EventSource};
use ecs_reconciler::telemetry::Telemetry;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cli::bin;
use crate::support::moto::Moto;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture_json(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("tests/fixtures/events").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn sqs(moto: &Moto) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::config::Builder::from(&moto.sdk_config())
        .endpoint_url(moto.endpoint())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A queue with this visibility timeout; its URL and ARN.
async fn create_queue(moto: &Moto, name: &str, visibility_secs: u32) -> (String, String) {
    let client = sqs(moto);
    let url = client
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_secs.to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    (url, arn)
}

/// Messages on the queue, visible or not.
async fn messages_left(moto: &Moto, url: &str) -> u64 {
    let attrs = sqs(moto)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    attrs.values().map(|v| v.parse::<u64>().unwrap()).sum()
}

/// Publishes `events` with PutEvents through rules made from deploy/events/patterns.json that
/// target the queue (tests/moto/eventbridge.py); answers the script's report.
fn publish(moto: &Moto, queue_arn: &str, events: &[Value]) -> Value {
    let python = std::env::var_os("MOTO_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    let mut child = Command::new(python)
        .arg(root().join("tests/moto/eventbridge.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python runs");
    let spec = json!({
        "endpoint": moto.endpoint(),
        "accessKey": format!("MOTOACCT{}", moto.account_id()),
        "region": crate::support::moto::REGION,
        "queueArn": queue_arn,
        "patterns": root().join("deploy/events/patterns.json"),
        "events": events,
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "eventbridge.py failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Records the events applied; answers `Applied`, or panics (a failed apply).
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

/// Counts dispositions, so a test can wait for the n-th; tells whether events are degraded.
struct Disposed(watch::Sender<u64>, Option<watch::Sender<bool>>);

impl Telemetry for Disposed {
    fn event(&self, _disposition: Disposition, _lag: Option<Duration>) {
        self.0.send_modify(|n| *n += 1);
    }

    fn events_degraded(&self, degraded: bool) {
        if let Some(tx) = &self.1 {
            tx.send_replace(degraded);
        }
    }
}

/// Runs a pump on `queue` until `n` messages are disposed of, then shuts it down (which
/// finishes the batch's deletes) and answers its counts.
async fn pump_until(queue: SqsQueue, sink: &Arc<RecordingSink>, n: u64) -> Arc<PumpCounts> {
    let (tx, mut rx) = watch::channel(0);
    let pump = Pump::new(
        queue,
        Arc::clone(sink) as Arc<dyn EventSink>,
        Arc::new(Disposed(tx, None)),
    );
    let counts = pump.counts();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(pump.run(shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|d| *d >= n))
        .await
        .unwrap_or_else(|_| panic!("{n} messages not disposed of in 60 s"))
        .unwrap();
    shutdown.cancel();
    handle.await.unwrap();
    counts
}

fn queue_of(moto: &Moto, url: &str) -> SqsQueue {
    SqsQueue::from_conf(&moto.sdk_config(), &moto.settings(), url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_through_the_rules_are_applied_and_deleted() {
    let moto = Moto::new();
    let (url, arn) = create_queue(&moto, "ecs-reconciler-events", 30).await;
    let fixtures = [
        "task-state-change-running.json",
        "task-state-change-stopped.json",
        "container-instance-state-change.json",
        "service-action-placement-failure.json",
        // INFO: the service action rule does not pass it on.
        "service-action-steady-state.json",
        "autoscaling-launch-successful.json",
        "autoscaling-launch-unsuccessful.json",
        "autoscaling-terminate-lifecycle-action.json",
    ];
    let events: Vec<Value> = fixtures.iter().map(|f| fixture_json(f)).collect();
    let report = publish(&moto, &arn, &events);
    assert_eq!(report["failed"], json!(0), "{report}");
    assert_eq!(report["rules"].as_array().unwrap().len(), 4, "{report}");
    assert_eq!(
        messages_left(&moto, &url).await,
        7,
        "the INFO event matched no rule"
    );

    let queue = queue_of(&moto, &url);
    queue.check().await.expect("the queue is readable");
    let sink = Arc::new(RecordingSink::default());
    let counts = pump_until(queue, &sink, 7).await;
    assert_eq!(counts.of(Disposition::Applied), 7);
    assert_eq!(counts.deleted(), 7);
    let applied = sink.events.lock().unwrap().clone();
    let kinds = |f: fn(&Event) -> bool| applied.iter().filter(|e| f(e)).count();
    assert_eq!(kinds(|e| matches!(e, Event::Task(_))), 2);
    assert_eq!(kinds(|e| matches!(e, Event::ContainerInstance(_))), 1);
    assert_eq!(kinds(|e| matches!(e, Event::ServiceAction { .. })), 1);
    assert_eq!(kinds(|e| matches!(e, Event::GroupActivity { .. })), 3);
    assert_eq!(
        messages_left(&moto, &url).await,
        0,
        "every message was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_deleted_and_counted() {
    let moto = Moto::new();
    let (url, _) = create_queue(&moto, "malformed", 30).await;
    let client = sqs(&moto);
    for body in ["not JSON", r#"{"detail-type": "ECS Task State Change"}"#] {
        client
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let sink = Arc::new(RecordingSink::default());
    let counts = pump_until(queue_of(&moto, &url), &sink, 2).await;
    assert_eq!(counts.of(Disposition::NotJson), 1);
    assert_eq!(counts.of(Disposition::NotEnvelope), 1);
    assert_eq!(counts.deleted(), 2);
    assert!(sink.events.lock().unwrap().is_empty());
    assert_eq!(messages_left(&moto, &url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_not_applied_stays_on_the_queue_and_comes_back_after_the_visibility_timeout() {
    let moto = Moto::new();
    let (url, _) = create_queue(&moto, "unapplied", 1).await;
    let body = fixture_json("task-state-change-running.json").to_string();
    sqs(&moto)
        .send_message()
        .queue_url(&url)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    // The sink dies while applying: the pump dies with it (the supervisor would end the
    // process) and the message is not deleted.
    let failing = Arc::new(RecordingSink {
        panic_on_apply: true,
        ..RecordingSink::default()
    });
    let pump = Pump::new(
        queue_of(&moto, &url),
        failing as Arc<dyn EventSink>,
        Arc::new(ecs_reconciler::telemetry::Silent),
    );
    let counts = pump.counts();
    let died = tokio::spawn(pump.run(CancellationToken::new())).await;
    assert!(died.is_err_and(|e| e.is_panic()));
    assert_eq!((counts.received(), counts.deleted()), (1, 0));
    assert_eq!(messages_left(&moto, &url).await, 1, "still on the queue");
    // A new pump gets it once the visibility timeout (1 s) has passed: the long poll waits.
    let sink = Arc::new(RecordingSink::default());
    let counts = pump_until(queue_of(&moto, &url), &sink, 1).await;
    assert_eq!(counts.of(Disposition::Applied), 1);
    assert_eq!(sink.events.lock().unwrap().len(), 1);
    assert_eq!(messages_left(&moto, &url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_receive_backs_off_degrades_and_loses_nothing() {
    let moto = Moto::new();
    let (url, _) = create_queue(&moto, "throttled", 30).await;
    sqs(&moto)
        .send_message()
        .queue_url(&url)
        .message_body(fixture_json("task-state-change-stopped.json").to_string())
        .send()
        .await
        .unwrap();
    moto.inject_fault("ReceiveMessage", "ThrottlingException", 400)
        .await;
    // One attempt per call: the SDK's own retries would only make the test slower.
    let settings = AwsSettings {
        max_attempts: 1,
        ..moto.settings()
    };
    let queue = SqsQueue::from_conf(&moto.sdk_config(), &settings, &url);
    let (disposed_tx, mut disposed) = watch::channel(0);
    let (degraded_tx, mut degraded) = watch::channel(false);
    let sink = Arc::new(RecordingSink::default());
    let pump = Pump::new(
        queue,
        Arc::clone(&sink) as Arc<dyn EventSink>,
        Arc::new(Disposed(disposed_tx, Some(degraded_tx))),
    );
    let counts = pump.counts();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(pump.run(shutdown.clone()));
    let within = Duration::from_secs(30);
    tokio::time::timeout(within, degraded.wait_for(|d| *d))
        .await
        .expect("degraded once the receive fails")
        .unwrap();
    assert_eq!(messages_left(&moto, &url).await, 1, "nothing lost");
    moto.harness(
        "/_harness/fault/clear",
        json!({"operation": "ReceiveMessage"}),
    )
    .await;
    tokio::time::timeout(within, disposed.wait_for(|n| *n >= 1))
        .await
        .expect("applied once the queue answers again")
        .unwrap();
    shutdown.cancel();
    handle.await.unwrap();
    assert!(counts.failed_receives() >= 1);
    assert_eq!(counts.of(Disposition::Applied), 1);
    assert_eq!(*sink.degraded.lock().unwrap(), [true, false]);
    assert_eq!(messages_left(&moto, &url).await, 0);
}

#[test]
fn the_events_section_of_the_configuration_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ecs-reconciler.toml");
    std::fs::write(
        &file,
        "[events]\nqueue_url = \"https://sqs.eu-west-1.amazonaws.com/123456789012/ev\"\nresync = \"15m\"\n",
    )
    .unwrap();
    let s = config::load_with_env_prefix(Some(&file), &FlagOverrides::default(), "EVENTS_CFG_A_")
        .unwrap();
    assert_eq!(
        s.events.queue_url.as_deref(),
        Some("https://sqs.eu-west-1.amazonaws.com/123456789012/ev")
    );
    assert_eq!(s.events.resync, Duration::from_secs(900));
    // The flag wins over the file.
    let flag = "https://sqs.eu-west-1.amazonaws.com/123456789012/other";
    let flags = FlagOverrides {
        events: Some(EventsFlags {
            queue_url: Some(flag.into()),
        }),
        ..FlagOverrides::default()
    };
    let s = config::load_with_env_prefix(Some(&file), &flags, "EVENTS_CFG_B_").unwrap();
    assert_eq!(s.events.queue_url.as_deref(), Some(flag));
    // Out of range, and a key that does not exist, each named with the file.
    std::fs::write(&file, "[events]\nresync = \"10s\"\n").unwrap();
    let err = config::load_with_env_prefix(Some(&file), &FlagOverrides::default(), "EVENTS_CFG_C_")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "invalid configuration: events.resync: must be at least 1m, got 10s (from "
        ),
        "{err}"
    );
    std::fs::write(&file, "[events]\nqueue = \"x\"\n").unwrap();
    let err = config::load_with_env_prefix(Some(&file), &FlagOverrides::default(), "EVENTS_CFG_D_")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("events.queue") && err.contains("queue_url"),
        "{err}"
    );
    // The resync's share of the budget: a fraction above 0, at most 1.
    std::fs::write(&file, "[events]\nresync_budget = 0.2\n").unwrap();
    let s = config::load_with_env_prefix(Some(&file), &FlagOverrides::default(), "EVENTS_CFG_F_")
        .unwrap();
    assert_eq!(s.events.resync_budget, 0.2);
    for bad in ["0", "1.5", "-0.1"] {
        std::fs::write(&file, format!("[events]\nresync_budget = {bad}\n")).unwrap();
        let err =
            config::load_with_env_prefix(Some(&file), &FlagOverrides::default(), "EVENTS_CFG_G_")
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with(
                "invalid configuration: events.resync_budget: must be above 0 and at most 1, got "
            ),
            "{err}"
        );
    }
    // Without [events], no queue and the ten-minute safety net within 5% of the budget.
    let s = config::load_with_env_prefix(None, &FlagOverrides::default(), "EVENTS_CFG_E_").unwrap();
    assert_eq!(s.events.queue_url, None);
    assert_eq!(s.events.resync, Duration::from_secs(600));
    assert_eq!(s.events.resync_budget, 0.05);
}

#[test]
fn the_queue_policy_lets_exactly_the_controllers_rules_send() {
    let text = std::fs::read_to_string(root().join("deploy/events/queue-policy.json")).unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert_eq!(s["Effect"], "Allow");
    assert_eq!(s["Principal"], json!({"Service": "events.amazonaws.com"}));
    assert_eq!(s["Action"], "sqs:SendMessage");
    let source = s["Condition"]["ArnLike"]["aws:SourceArn"].as_str().unwrap();
    let prefix = source.strip_suffix('*').unwrap();
    assert!(prefix.ends_with(":rule/ecs-reconciler-"), "{source}");
    // The rules tests/moto/eventbridge.py makes (and deploy/ names) fall under it.
    let patterns: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/events/patterns.json")).unwrap(),
    )
    .unwrap();
    let rules: Vec<_> = patterns
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with('_'))
        .map(|k| format!("ecs-reconciler-{k}"))
        .collect();
    assert_eq!(rules.len(), 4);
    assert!(
        rules.iter().all(|r| r.len() <= 64),
        "EventBridge rule names: 64 characters"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_batches_ten_receipts_a_call_and_returns_those_not_deleted() {
    let moto = Moto::new();
    let (url, _) = create_queue(&moto, "batches", 30).await;
    let client = sqs(&moto);
    for i in 0..13 {
        client
            .send_message()
            .queue_url(&url)
            .message_body(format!("m{i}"))
            .send()
            .await
            .unwrap();
    }
    let queue = queue_of(&moto, &url);
    let mut receipts = Vec::new();
    while receipts.len() < 13 {
        let got = queue.receive().await.unwrap();
        assert!(got.len() <= 10, "at most 10 a receive");
        receipts.extend(got.into_iter().map(|m| m.receipt));
    }
    receipts.push("not-a-receipt".to_string());
    let receives = queue.calls()["ReceiveMessage"];
    let left = queue.delete(&receipts).await.unwrap();
    assert_eq!(left, ["not-a-receipt"]);
    let calls = queue.calls();
    assert_eq!(
        calls["DeleteMessageBatch"], 2,
        "14 receipts, 10 a call: {calls:?}"
    );
    assert!(
        receives >= 2,
        "13 messages, at most 10 a receive: {calls:?}"
    );
    assert_eq!(messages_left(&moto, &url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_or_access_denied_is_one_line_naming_the_queue() {
    let moto = Moto::new();
    let missing = format!("{}/{}/no-such-queue", moto.endpoint(), moto.account_id());
    let err = queue_of(&moto, &missing).check().await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
    let line = err.to_string();
    assert!(
        line.starts_with(&format!("events queue {missing}: no such queue")),
        "{line}"
    );
    assert!(!line.contains('\n'));

    let (url, _) = create_queue(&moto, "denied", 30).await;
    moto.inject_fault("GetQueueAttributes", "AccessDenied", 403)
        .await;
    let err = queue_of(&moto, &url).check().await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Denied, "{err}");
    assert!(err.to_string().contains("access denied"), "{err}");
    assert!(err.to_string().contains("sqs:ReceiveMessage"), "{err}");
}

#[test]
fn a_malformed_queue_url_is_refused_naming_the_key_and_the_flag() {
    for url in [
        "not a url",
        "sqs://queue",
        "https://sqs.us-east-1.amazonaws.com/events",
        "https://sqs.us-east-1.amazonaws.com/12345/events",
        "https://sqs.us-east-1.amazonaws.com/123456789012/",
        "https://sqs.us-east-1.amazonaws.com/123456789012/bad name",
    ] {
        let flags = FlagOverrides {
            events: Some(EventsFlags {
                queue_url: Some(url.into()),
            }),
            ..FlagOverrides::default()
        };
        let err = config::load_with_env_prefix(None, &flags, "EVENTS_SQS_TEST_")
            .expect_err(url)
            .to_string();
        assert!(
            err.starts_with("invalid configuration: events.queue_url: must be an SQS queue URL"),
            "{err}"
        );
        assert!(err.ends_with("(from flag --events-queue)"), "{err}");
    }
    for url in [
        "https://sqs.eu-west-1.amazonaws.com/123456789012/ecs-reconciler-events",
        "https://sqs.eu-west-1.amazonaws.com/123456789012/events.fifo",
        "http://127.0.0.1:5000/123456789012/events",
    ] {
        let flags = FlagOverrides {
            events: Some(EventsFlags {
                queue_url: Some(url.into()),
            }),
            ..FlagOverrides::default()
        };
        let settings = config::load_with_env_prefix(None, &flags, "EVENTS_SQS_TEST_").unwrap();
        assert_eq!(settings.events.queue_url.as_deref(), Some(url));
    }
}

#[test]
fn the_queue_region_comes_from_an_aws_url() {
    use ecs_reconciler::cloud::aws::sqs::region_of;
    assert_eq!(
        region_of("https://sqs.eu-west-1.amazonaws.com/123456789012/q").as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(
        region_of("https://us-east-2.queue.amazonaws.com/123456789012/q").as_deref(),
        Some("us-east-2")
    );
    assert_eq!(region_of("http://127.0.0.1:5000/123456789012/q"), None);
}

fn moto_env<'a>(c: &'a mut Command, moto: &Moto) -> &'a mut Command {
    c.env("AWS_REGION", "us-east-1")
        .env(
            "AWS_ACCESS_KEY_ID",
            format!("MOTOACCT{}", moto.account_id()),
        )
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_ENDPOINT_URL", moto.endpoint())
}

#[test]
fn run_exits_1_with_one_line_for_a_bad_or_missing_queue() {
    let moto = Moto::new();
    let policies = root().join("policies");
    let missing = format!("{}/{}/no-such-queue", moto.endpoint(), moto.account_id());
    for (url, says) in [
        (
            "nope",
            "events.queue_url: must be an SQS queue URL".to_string(),
        ),
        (
            missing.as_str(),
            format!("events queue {missing}: no such queue"),
        ),
    ] {
        let out = moto_env(
            bin()
                .args(["run", "--events-queue", url, "--policies"])
                .arg(&policies),
            &moto,
        )
        .stdin(Stdio::null())
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].contains(&says), "{stderr}");
    }
}

#[test]
fn run_with_a_queue_supervises_the_event_pump_and_stops_cleanly() {
    let moto = Moto::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (url, _) = runtime.block_on(create_queue(&moto, "run-events", 30));
    let mut child = moto_env(
        bin()
            .args(["run", "--events-queue", &url, "--policies"])
            .arg(root().join("policies"))
            .args(["--audit-log", "/dev/null"]),
        &moto,
    )
    .env("ECS_RECONCILER_LOG_FORMAT", "json")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let supervising = line.contains("\"supervising\"");
        seen.push(line);
        if supervising {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    seen.extend(lines.map_while(Result::ok));
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("reading events")),
        "{seen:#?}"
    );
    let supervising = seen.iter().find(|l| l.contains("\"supervising\"")).unwrap();
    assert!(supervising.contains("event pump"), "{supervising}");
}
