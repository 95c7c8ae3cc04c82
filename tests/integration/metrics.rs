//! The Prometheus metrics: scraped from `/metrics` while the controller reconciles the simulated
//! account (in-process, paused time), parsed with an OpenMetrics parser, and compared with the
//! audit trail; the label values checked for cardinality; the API counters and the reload
//! figures.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::{AuditRecord, AuditSink, Outcome};
use ecs_reconciler::cli::health::get;
use ecs_reconciler::cloud::ErrorCategory;
use ecs_reconciler::cloud::budget::ApiBudget;
use ecs_reconciler::cloud::sim::{SimAccount, build_scenario};
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::demo::scenario_policies;
use ecs_reconciler::http::{self, Health};
use ecs_reconciler::metrics::Metrics;
use ecs_reconciler::telemetry::Telemetry;
use openmetrics_parser::{MetricsExposition, OpenMetricsType, OpenMetricsValue};
use tokio_util::sync::CancellationToken;

pub(crate) type Exposition = MetricsExposition<OpenMetricsType, OpenMetricsValue>;

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

/// Parses an exposition with the OpenMetrics parser: a text it refuses fails the test.
pub(crate) fn parse(text: &str) -> Exposition {
    openmetrics_parser::openmetrics::parse_openmetrics(text)
        .unwrap_or_else(|e| panic!("not OpenMetrics text: {e:?}\n{text}"))
}

/// Every sample of a family: its labels and value (a counter's total, a gauge's value, 1 for
/// an info).
pub(crate) fn samples(
    exposition: &Exposition,
    family: &str,
) -> Vec<(BTreeMap<String, String>, f64)> {
    let Some(family) = exposition.families.get(family) else {
        return Vec::new();
    };
    family
        .iter_samples()
        .map(|sample| {
            let labels = sample
                .get_labelset()
                .expect("labels match the family's names")
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let value = match &sample.value {
                OpenMetricsValue::Counter(c) => c.value.as_f64(),
                OpenMetricsValue::Gauge(g) | OpenMetricsValue::Unknown(g) => g.as_f64(),
                OpenMetricsValue::Info => 1.0,
                OpenMetricsValue::Histogram(h) => h.count.unwrap_or_default() as f64,
                other => panic!("unexpected value {other:?}"),
            };
            (labels, value)
        })
        .collect()
}

/// The label sets and values of a family, keyed by the given labels joined with spaces.
fn by(exposition: &Exposition, family: &str, keys: &[&str]) -> BTreeMap<String, f64> {
    samples(exposition, family)
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(labels, v)| {
            let key: Vec<&str> = keys.iter().map(|k| labels[*k].as_str()).collect();
            (key.join(" "), v)
        })
        .collect()
}

/// What the audit trail says, counted the way the metrics count it.
fn trail_counts(records: &[AuditRecord]) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let mut actions = BTreeMap::new();
    let mut held = BTreeMap::new();
    for r in records {
        match &r.outcome {
            Outcome::Skipped(g) => {
                *held
                    .entry(format!("{} {} {g}", r.policy, r.action))
                    .or_default() += 1.0
            }
            Outcome::AuditUnavailable => {
                *held
                    .entry(format!("{} {} auditUnavailable", r.policy, r.action))
                    .or_default() += 1.0
            }
            outcome => {
                *actions
                    .entry(format!("{} {} {outcome}", r.policy, r.action))
                    .or_default() += 1.0
            }
        }
    }
    (actions, held)
}

struct Running {
    controller: Arc<Controller<Arc<SimAccount>>>,
    metrics: Arc<Metrics>,
    url: String,
    shutdown: CancellationToken,
}

/// The controller over `scenario`, telling fresh metrics, with the endpoints served on a free
/// port of the loopback.
fn serve_scenario(scenario: &str) -> Running {
    let (account, _) = build_scenario(scenario, start()).expect("scenario exists");
    let budget = Arc::new(ApiBudget::default());
    account.set_budget(Some(Arc::clone(&budget)));
    let metrics = Arc::new(Metrics::new(Some(budget)));
    let policies = scenario_policies().unwrap();
    metrics.set_policy_set(&policies.fingerprint);
    let controller = Arc::new(
        Controller::new(
            Arc::new(account),
            policies,
            ControllerSettings::default(),
            AuditSink::memory(),
        )
        .with_telemetry(Arc::clone(&metrics) as Arc<dyn Telemetry>),
    );
    let health = Arc::new(Health::new(Arc::clone(&metrics), Duration::from_secs(120)));
    health.cloud_resolved();
    let c = Arc::clone(&controller);
    health.watch_audit(Box::new(move || c.audit_available()));
    let listener = http::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(http::serve(listener, health, shutdown.clone()));
    Running {
        controller,
        metrics,
        url,
        shutdown,
    }
}

async fn scrape(url: &str) -> Exposition {
    let answer = get(&format!("{url}/metrics")).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    parse(&answer.body)
}

/// `n` passes 30 s of virtual time apart.
async fn passes(r: &Running, n: usize) {
    let token = CancellationToken::new();
    for i in 0..n {
        if i > 0 {
            tokio::time::advance(Duration::from_secs(30)).await;
        }
        let _ = r.controller.pass(&token).await;
    }
}

#[tokio::test(start_paused = true)]
async fn scraped_action_counters_equal_what_the_audit_trail_recorded() {
    let r = serve_scenario("mixed");
    passes(&r, 12).await;
    let mid = scrape(&r.url).await;
    passes(&r, 30).await;
    let end = scrape(&r.url).await;
    let records = r.controller.audit().records();
    let (actions, held) = trail_counts(&records);
    assert!(
        actions.keys().any(|k| k.ends_with(" done")),
        "the scenario performs actions: {actions:?}"
    );
    assert_eq!(
        by(
            &end,
            "ecs_reconciler_actions",
            &["policy", "action", "outcome"]
        ),
        actions
    );
    assert_eq!(
        by(
            &end,
            "ecs_reconciler_held_actions",
            &["policy", "action", "guardrail"]
        ),
        held
    );
    // The counters only grow between scrapes.
    for (key, before) in by(
        &mid,
        "ecs_reconciler_actions",
        &["policy", "action", "outcome"],
    ) {
        let after = actions.get(&key).copied().unwrap_or_default();
        assert!(after >= before, "{key}: {before} then {after}");
    }
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn reconciles_stuck_tasks_api_calls_and_the_policy_set_are_exposed() {
    let r = serve_scenario("stuck-provisioning");
    // Pass by pass until the scenario's tasks are past their limit and seen stuck.
    let mut stuck = BTreeMap::new();
    let mut e = scrape(&r.url).await;
    for _ in 0..60 {
        passes(&r, 1).await;
        e = scrape(&r.url).await;
        stuck = by(&e, "ecs_reconciler_stuck_tasks", &["cluster", "state"]);
        if !stuck.is_empty() {
            break;
        }
        tokio::time::advance(Duration::from_secs(30)).await;
    }
    assert!(
        stuck.keys().any(|k| k.starts_with("demo-web ")),
        "stuck tasks of the scenario's cluster: {stuck:?}"
    );
    let reconciles = by(&e, "ecs_reconciler_reconciles", &["result", "trigger"]);
    assert!(reconciles["success resync"] >= 1.0, "{reconciles:?}");
    let durations = samples(&e, "ecs_reconciler_reconcile_duration_seconds");
    assert!(!durations.is_empty(), "the duration histogram is exposed");
    let last = by(
        &e,
        "ecs_reconciler_cluster_last_reconcile_success_timestamp_seconds",
        &["cluster"],
    );
    let observed = last["demo-web"];
    assert!(
        (1_900_000_000.0..1_900_000_000.0 + 3600.0).contains(&observed),
        "the time of the observation on the account's clock: {observed}"
    );
    let calls = by(&e, "ecs_reconciler_api_calls", &["category", "result"]);
    assert!(calls["cluster-resource-read success"] > 0.0, "{calls:?}");
    let tokens = by(&e, "ecs_reconciler_api_budget_tokens", &["category"]);
    assert!(tokens.contains_key("service-modify"), "{tokens:?}");
    let policy_set = samples(&e, "ecs_reconciler_policy_set");
    assert_eq!(policy_set.len(), 1);
    assert_eq!(
        policy_set[0].0["fingerprint"],
        r.metrics.policy_set().unwrap()
    );
    r.shutdown.cancel();
}

/// A label value that names one resource rather than a bounded set: an ARN, a task or instance
/// id, a hex id of 32 digits.
fn looks_like_a_resource(value: &str) -> bool {
    let hex32 = value.len() == 32 && value.chars().all(|c| c.is_ascii_hexdigit());
    value.starts_with("arn:") || value.contains("task/") || value.starts_with("i-") || hex32
}

#[tokio::test(start_paused = true)]
async fn no_label_value_names_a_task_an_instance_or_an_arn() {
    let r = serve_scenario("mixed");
    passes(&r, 20).await;
    let e = scrape(&r.url).await;
    let records = r.controller.audit().records();
    assert!(!records.is_empty());
    let targets: Vec<&str> = records.iter().map(|r| r.target.as_str()).collect();
    let mut checked = 0;
    for family in e.families.keys() {
        for (labels, _) in samples(&e, family) {
            for (name, value) in labels {
                checked += 1;
                assert!(
                    !looks_like_a_resource(&value) && !targets.contains(&value.as_str()),
                    "{family}{{{name}={value:?}}} names a resource"
                );
            }
        }
    }
    assert!(checked > 20, "label values were checked: {checked}");
    r.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn api_answers_are_counted_by_category_and_result_and_throttles_apart() {
    let budget = Arc::new(ApiBudget::default());
    let metrics = Metrics::new(Some(Arc::clone(&budget)));
    budget.answered("DescribeTasks", None);
    budget.answered("DescribeTasks", None);
    budget.answered("StopTask", Some(ErrorCategory::Throttled));
    budget.throttled("StopTask");
    budget.answered(
        "autoscaling:SetDesiredCapacity",
        Some(ErrorCategory::Denied),
    );
    let e = parse(&metrics.encode());
    let calls = by(&e, "ecs_reconciler_api_calls", &["category", "result"]);
    let expected: BTreeMap<String, f64> = [
        ("cluster-resource-read success", 2.0),
        ("cluster-resource-modify throttled", 1.0),
        ("auto-scaling denied", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(calls, expected);
    let throttles = by(&e, "ecs_reconciler_api_throttles", &["category"]);
    assert_eq!(
        throttles.into_iter().collect::<Vec<_>>(),
        vec![("cluster-resource-modify".to_string(), 1.0)]
    );
    // A throttle empties the bucket: no token left in that category.
    let tokens = by(&e, "ecs_reconciler_api_budget_tokens", &["category"]);
    assert!(
        !tokens.contains_key("cluster-resource-modify"),
        "{tokens:?}"
    );
    assert!(tokens["cluster-resource-read"] > 0.0, "{tokens:?}");
}

#[test]
fn policy_reloads_are_counted_by_result_and_the_info_names_the_set_in_force() {
    let metrics = Metrics::new(None);
    metrics.set_policy_set("aaaa");
    metrics.policies_reloaded(Ok("bbbb"));
    metrics.policies_reloaded(Err("web.yaml:3:1: stuck: unknown field"));
    let e = parse(&metrics.encode());
    let reloads = by(&e, "ecs_reconciler_policy_reloads", &["result"]);
    assert_eq!(reloads["success"], 1.0);
    assert_eq!(reloads["error"], 1.0);
    let info = samples(&e, "ecs_reconciler_policy_set");
    assert_eq!(info.len(), 1, "one set in force");
    assert_eq!(
        info[0].0["fingerprint"], "bbbb",
        "a failed reload keeps the last good set"
    );
}

#[test]
fn events_are_counted_by_disposition_with_their_lag() {
    use ecs_reconciler::events::Disposition;
    let metrics = Metrics::new(None);
    metrics.event(Disposition::Applied, Some(Duration::from_millis(1500)));
    metrics.event(Disposition::Applied, None);
    metrics.event(Disposition::Stale, Some(Duration::from_secs(2)));
    metrics.events_degraded(true);
    let e = parse(&metrics.encode());
    let events = by(&e, "ecs_reconciler_events", &["disposition"]);
    assert_eq!(events["applied"], 2.0);
    assert_eq!(events["stale"], 1.0);
    let lag = samples(&e, "ecs_reconciler_event_lag_seconds");
    assert_eq!(lag.len(), 1);
    assert_eq!(lag[0].1, 2.0, "two events said when they happened");
    assert_eq!(samples(&e, "ecs_reconciler_events_degraded")[0].1, 1.0);
    metrics.events_degraded(false);
    let e = parse(&metrics.encode());
    assert_eq!(samples(&e, "ecs_reconciler_events_degraded")[0].1, 0.0);
}

// ---- logs -----------------------------------------------------------------------------------

/// A sink the test reads back.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A global subscriber that enables nothing but never lets a callsite cache "never": without
/// it, a callsite first hit on another test's thread (no subscriber there) while this test's
/// scoped subscriber was being registered could stay disabled for the whole binary.
fn ask_every_time() {
    use tracing::span::{Attributes, Id, Record};
    use tracing::subscriber::Interest;
    use tracing::{Event, Metadata};
    struct AskEveryTime;
    impl tracing::Subscriber for AskEveryTime {
        fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
            Interest::sometimes()
        }
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
    let _ = tracing::subscriber::set_global_default(AskEveryTime);
    tracing::callsite::rebuild_interest_cache();
}

#[test]
fn json_log_lines_of_a_reconcile_carry_its_cluster_from_the_span() {
    use ecs_reconciler::logging::{json_subscriber, spawn_writer};
    ask_every_time();
    let sink = Captured::default();
    let writer = spawn_writer(sink.clone(), 1024);
    let subscriber = json_subscriber(
        writer.clone(),
        tracing_subscriber::EnvFilter::new("ecs_reconciler=debug"),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let r = serve_scenario("mixed");
            passes(&r, 20).await;
            r.shutdown.cancel();
        })
    });
    assert!(writer.flush(Duration::from_secs(5)));
    let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let in_reconcile: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|s| s["name"] == "reconcile"))
        })
        .collect();
    assert!(
        in_reconcile.len() >= 5,
        "lines logged inside reconciles: {}\n{text}",
        in_reconcile.len()
    );
    for line in in_reconcile {
        let spans = line["spans"].as_array().unwrap();
        let reconcile = spans.iter().find(|s| s["name"] == "reconcile").unwrap();
        let cluster = reconcile["cluster"].as_str().unwrap_or_default();
        assert!(!cluster.is_empty(), "{line}");
        assert!(
            line["span"].is_object(),
            "the current span is on the line: {line}"
        );
    }
}

#[test]
fn the_recorder_tells_its_drops_failures_and_pause() {
    use ecs_reconciler::telemetry::RecordingEvent;
    let m = Metrics::new(None);
    let value = |m: &Metrics, family: &str| {
        samples(&parse(&m.encode()), family)
            .first()
            .map(|(_, v)| *v)
            .unwrap_or(-1.0)
    };
    assert_eq!(value(&m, "ecs_reconciler_recording_paused"), 0.0);
    m.recording(RecordingEvent::Dropped);
    m.recording(RecordingEvent::WriteFailed);
    m.recording(RecordingEvent::Dropped);
    assert_eq!(value(&m, "ecs_reconciler_recording_dropped"), 2.0);
    assert_eq!(value(&m, "ecs_reconciler_recording_write_failures"), 1.0);
    assert_eq!(value(&m, "ecs_reconciler_recording_paused"), 1.0);
    m.recording(RecordingEvent::Resumed);
    assert_eq!(value(&m, "ecs_reconciler_recording_paused"), 0.0);
}

#[test]
fn the_leases_held_are_a_gauge() {
    let m = Metrics::new(None);
    let held = |m: &Metrics| {
        samples(&parse(&m.encode()), "ecs_reconciler_leases_held")
            .first()
            .map(|(_, v)| *v)
    };
    assert_eq!(held(&m), Some(0.0));
    m.set_leases_held(2);
    assert_eq!(held(&m), Some(2.0));
    m.set_leases_held(0);
    assert_eq!(held(&m), Some(0.0));
}

/// Two places (`[[targets]]`) whose clusters have the same names: each place's series carry its
/// account and Region, and each budget's API figures are its own.
#[tokio::test(start_paused = true)]
async fn each_place_has_its_own_series_and_budget_figures() {
    use ecs_reconciler::targets::Place;
    let metrics = Arc::new(Metrics::new(None));
    let place = |account: &str| Place {
        account: account.into(),
        account_name: None,
        region: "eu-west-1".into(),
    };
    let places = [place("111111111111"), place("222222222222")];
    let mut controllers = Vec::new();
    for p in &places {
        let (account, _) = build_scenario("stuck-provisioning", start()).unwrap();
        let budget = Arc::new(ApiBudget::default());
        account.set_budget(Some(Arc::clone(&budget)));
        metrics.add_budget(p, budget);
        controllers.push(Arc::new(
            Controller::new(
                Arc::new(account),
                scenario_policies().unwrap(),
                ControllerSettings::default(),
                AuditSink::memory(),
            )
            .with_telemetry(metrics.for_place(p))
            .with_place(p.clone()),
        ));
    }
    let shutdown = CancellationToken::new();
    // Only the first place is reconciled until its tasks are seen stuck.
    let mut e = parse(&metrics.encode());
    for _ in 0..60 {
        controllers[0].pass(&shutdown).await;
        e = parse(&metrics.encode());
        if !by(&e, "ecs_reconciler_stuck_tasks", &["account"]).is_empty() {
            break;
        }
        tokio::time::advance(Duration::from_secs(30)).await;
    }
    let stuck = by(&e, "ecs_reconciler_stuck_tasks", &["account", "region"]);
    assert_eq!(
        stuck.keys().collect::<Vec<_>>(),
        ["111111111111 eu-west-1"],
        "{stuck:?}"
    );
    let calls = by(&e, "ecs_reconciler_api_calls", &["account"]);
    assert_eq!(
        calls.keys().collect::<Vec<_>>(),
        ["111111111111"],
        "{calls:?}"
    );
    // The second place's clusters have the same names, and their own series.
    controllers[1].pass(&shutdown).await;
    let e = parse(&metrics.encode());
    let last = by(
        &e,
        "ecs_reconciler_cluster_last_reconcile_success_timestamp_seconds",
        &["account", "cluster"],
    );
    let accounts: std::collections::BTreeSet<&str> =
        last.keys().map(|k| k.split(' ').next().unwrap()).collect();
    assert_eq!(accounts.len(), 2, "{last:?}");
    let clusters_of = |a: &str| -> Vec<String> {
        last.keys()
            .filter(|k| k.starts_with(a))
            .map(|k| k.split(' ').nth(1).unwrap().to_string())
            .collect()
    };
    assert_eq!(clusters_of("111111111111"), clusters_of("222222222222"));
    let records = controllers[0].audit().records();
    assert!(
        records
            .iter()
            .all(|r| r.account.as_deref() == Some("111111111111")
                && r.region.as_deref() == Some("eu-west-1")),
        "every record names the place: {records:?}"
    );
    assert!(!records.is_empty());
    let actions = by(&e, "ecs_reconciler_actions", &["account"]);
    assert!(actions.contains_key("111111111111"), "{actions:?}");
}
