//! The Prometheus metrics of `run` (OpenMetrics text, `prometheus-client`): a registry of typed
//! label sets, filled by the [`Telemetry`] notifications of the loop, the event pump and the
//! policy reload, and at scrape time from the API budget and the log.
//!
//! Names follow controller-runtime and Karpenter: the prefix `ecs_reconciler_`, base units
//! (seconds), `_total` on counters. Labels are bounded by the clusters and policies in scope:
//! never a task, an instance or an ARN (the audit trail names those).
//!
//! The action counters are counted from [`Telemetry::recorded`], that is from the audit records
//! written, so they equal what the trail says: a `skipped:GUARDRAIL` record counts as a held
//! action (by guardrail), every other record as an action by its outcome (`planned`, `started`,
//! `done`, `failed:CATEGORY`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::audit::{AuditRecord, Outcome};
use crate::cloud::CloudError;
use crate::cloud::budget::{AnswerCount, ApiBudget};
use crate::controller::ClusterReport;
use crate::diagnose::Condition;
use crate::events::Disposition;
use crate::targets::Place;
use crate::telemetry::{RecordingEvent, Telemetry, Trigger};

/// The prefix of every metric name.
pub const PREFIX: &str = "ecs_reconciler";

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    result: &'static str,
    trigger: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: &'static str,
}

/// The account and Region of a cluster or a budget: empty when not known (one ambient account
/// whose id could not be read), which Prometheus treats as no label.
#[derive(Debug, Clone, Default, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PlaceLabels {
    account: String,
    region: String,
}

impl PlaceLabels {
    pub fn of(place: &Place) -> PlaceLabels {
        PlaceLabels {
            account: place.account.clone(),
            region: place.region.clone(),
        }
    }

    fn of_record(record: &AuditRecord) -> PlaceLabels {
        PlaceLabels {
            account: record.account.clone().unwrap_or_default(),
            region: record.region.clone().unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StuckLabels {
    #[prometheus(flatten)]
    place: PlaceLabels,
    cluster: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    #[prometheus(flatten)]
    place: PlaceLabels,
    cluster: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    #[prometheus(flatten)]
    place: PlaceLabels,
    policy: String,
    action: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HeldLabels {
    #[prometheus(flatten)]
    place: PlaceLabels,
    policy: String,
    action: String,
    guardrail: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DispositionLabels {
    disposition: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CategoryLabels {
    #[prometheus(flatten)]
    place: PlaceLabels,
    category: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    #[prometheus(flatten)]
    place: PlaceLabels,
    category: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicySetLabels {
    fingerprint: String,
}

/// The families the notifications fill.
struct Families {
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: Family<TriggerLabels, Histogram>,
    stuck_tasks: Family<StuckLabels, Gauge>,
    last_success: Family<ClusterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    actions: Family<ActionLabels, Counter>,
    held_actions: Family<HeldLabels, Counter>,
    policy_reloads: Family<ResultLabels, Counter>,
    events: Family<DispositionLabels, Counter>,
    event_lag: Histogram,
    events_degraded: Gauge,
    recording_dropped: Counter,
    recording_write_failures: Counter,
    recording_paused: Gauge,
    leases_held: Gauge,
}

/// What the scrape-time collector reads: the API budget, the policy set in force.
#[derive(Default)]
struct Shared {
    /// Each account-Region's budget (one per place under `[[targets]]`).
    budgets: Mutex<Vec<(PlaceLabels, Arc<ApiBudget>)>>,
    policy_set: Mutex<Option<String>>,
}

/// The metrics of one process; implements [`Telemetry`].
pub struct Metrics {
    registry: Registry,
    families: Families,
    shared: Arc<Shared>,
    /// The stuck states last reported per cluster, so a state that emptied goes back to 0.
    stuck_states: Mutex<BTreeMap<(PlaceLabels, String), BTreeSet<&'static str>>>,
    /// When the loop last made progress (the wall clock: `/livez` compares it with now).
    progress: Mutex<Instant>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Reconcile durations: 10 ms to about 80 s.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.01, 2.0, 14)
}

impl Metrics {
    /// A registry with every family; `budget` is read at each scrape for the API figures.
    pub fn new(budget: Option<Arc<ApiBudget>>) -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let families = Families {
            reconciles: Family::default(),
            reconcile_duration: Family::new_with_constructor(|| Histogram::new(duration_buckets())),
            stuck_tasks: Family::default(),
            last_success: Family::default(),
            actions: Family::default(),
            held_actions: Family::default(),
            policy_reloads: Family::default(),
            events: Family::default(),
            event_lag: Histogram::new(duration_buckets()),
            events_degraded: Gauge::default(),
            recording_dropped: Counter::default(),
            recording_write_failures: Counter::default(),
            recording_paused: Gauge::default(),
            leases_held: Gauge::default(),
        };
        let f = &families;
        registry.register(
            "reconciles",
            "Cluster reconciles by result and trigger",
            f.reconciles.clone(),
        );
        // Histograms carry the unit in their name only: OpenMetrics parsers differ on a UNIT
        // line for them.
        registry.register(
            "reconcile_duration_seconds",
            "Time one cluster's reconcile took, observe to audit",
            f.reconcile_duration.clone(),
        );
        registry.register(
            "stuck_tasks",
            "Tasks found stuck in the last reconcile, by cluster and state",
            f.stuck_tasks.clone(),
        );
        registry.register_with_unit(
            "cluster_last_reconcile_success_timestamp",
            "When the last successful reconcile of the cluster observed it (Unix time)",
            Unit::Seconds,
            f.last_success.clone(),
        );
        registry.register(
            "actions",
            "Actions by policy, action and outcome, as written to the audit trail",
            f.actions.clone(),
        );
        registry.register(
            "held_actions",
            "Actions held by a guardrail, by policy, action and guardrail, as written to the audit trail",
            f.held_actions.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads by result",
            f.policy_reloads.clone(),
        );
        registry.register(
            "events",
            "Event queue messages received and deleted, by disposition (all but applied are ignored)",
            f.events.clone(),
        );
        registry.register(
            "event_lag_seconds",
            "Time from an event to its application",
            f.event_lag.clone(),
        );
        registry.register(
            "events_degraded",
            "1 while the event queue fails and the loop falls back to the resync cadence",
            f.events_degraded.clone(),
        );
        registry.register(
            "recording_dropped",
            "Recording entries not written (run --record): the hand-over queue was full, or recording was paused",
            f.recording_dropped.clone(),
        );
        registry.register(
            "recording_write_failures",
            "Recording writes that failed and paused recording (run --record)",
            f.recording_write_failures.clone(),
        );
        registry.register(
            "recording_paused",
            "1 while recording is paused after a failed write",
            f.recording_paused.clone(),
        );
        registry.register(
            "leases_held",
            "Shard leases this replica holds ([lease] table; 0 while it waits as a standby)",
            f.leases_held.clone(),
        );
        let budgets = budget.map(|b| (PlaceLabels::default(), b));
        let shared = Arc::new(Shared {
            budgets: Mutex::new(budgets.into_iter().collect()),
            policy_set: Mutex::new(None),
        });
        registry.register_collector(Box::new(ScrapeTime(Arc::clone(&shared))));
        Metrics {
            registry,
            families,
            shared,
            stuck_states: Mutex::new(BTreeMap::new()),
            progress: Mutex::new(Instant::now()),
        }
    }

    /// The exposition, OpenMetrics text ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; a collector's error would leave a partial text.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// When the loop last made progress.
    pub fn last_progress(&self) -> Instant {
        *lock(&self.progress)
    }

    /// The fingerprint of the policy set in force, once one is.
    pub fn policy_set(&self) -> Option<String> {
        lock(&self.shared.policy_set).clone()
    }

    /// Reads `budget` at each scrape too, labelled with its account and Region (the budget of
    /// `new` is unlabelled).
    pub fn add_budget(&self, place: &Place, budget: Arc<ApiBudget>) {
        lock(&self.shared.budgets).push((PlaceLabels::of(place), budget));
    }

    /// What the controller of `place` tells: these metrics, with its account and Region on
    /// every per-cluster series.
    pub fn for_place(self: &Arc<Self>, place: &Place) -> Arc<dyn Telemetry> {
        Arc::new(Placed {
            metrics: Arc::clone(self),
            place: PlaceLabels::of(place),
        })
    }

    /// How many shard leases this replica holds now.
    pub fn set_leases_held(&self, held: usize) {
        self.families
            .leases_held
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// Names the policy set in force (at start, before any reload).
    pub fn set_policy_set(&self, fingerprint: &str) {
        *lock(&self.shared.policy_set) = Some(fingerprint.to_string());
    }

    fn stuck(&self, place: &PlaceLabels, report: &ClusterReport) {
        let mut counts: BTreeMap<&'static str, i64> = BTreeMap::new();
        for finding in &report.plan.findings {
            *counts.entry(state_name(finding.condition)).or_default() += 1;
        }
        let mut known = lock(&self.stuck_states);
        let states = known
            .entry((place.clone(), report.cluster.clone()))
            .or_default();
        states.extend(counts.keys().copied());
        for state in states.iter() {
            let labels = StuckLabels {
                place: place.clone(),
                cluster: report.cluster.clone(),
                state,
            };
            let count = counts.get(state).copied().unwrap_or(0);
            self.families.stuck_tasks.get_or_create(&labels).set(count);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `state` label of a stuck task: its lifecycle state, or `UNHEALTHY`.
fn state_name(condition: Condition) -> &'static str {
    match condition {
        Condition::InState(status) => status.as_str(),
        Condition::Unhealthy => "UNHEALTHY",
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

impl Metrics {
    fn reconciled_at(
        &self,
        place: &PlaceLabels,
        cluster: &str,
        trigger: Trigger,
        result: Result<&ClusterReport, &CloudError>,
        took: Duration,
    ) {
        let f = &self.families;
        let outcome = if result.is_ok() { "success" } else { "error" };
        f.reconciles
            .get_or_create(&ReconcileLabels {
                result: outcome,
                trigger: trigger.as_str(),
            })
            .inc();
        f.reconcile_duration
            .get_or_create(&TriggerLabels {
                trigger: trigger.as_str(),
            })
            .observe(took.as_secs_f64());
        if let Ok(report) = result {
            self.stuck(place, report);
            f.last_success
                .get_or_create(&ClusterLabels {
                    place: place.clone(),
                    cluster: cluster.to_string(),
                })
                .set(unix_seconds(report.snapshot.observed_at));
        }
    }
}

/// The metrics as one place's controller tells them ([`Metrics::for_place`]).
struct Placed {
    metrics: Arc<Metrics>,
    place: PlaceLabels,
}

impl Telemetry for Placed {
    fn reconciled(
        &self,
        cluster: &str,
        trigger: Trigger,
        result: Result<&ClusterReport, &CloudError>,
        took: Duration,
    ) {
        self.metrics
            .reconciled_at(&self.place, cluster, trigger, result, took);
    }

    fn loop_progressed(&self) {
        self.metrics.loop_progressed();
    }

    fn recorded(&self, record: &AuditRecord) {
        self.metrics.recorded(record);
    }

    fn event(&self, disposition: Disposition, lag: Option<Duration>) {
        self.metrics.event(disposition, lag);
    }

    fn events_degraded(&self, degraded: bool) {
        self.metrics.events_degraded(degraded);
    }

    fn recording(&self, event: RecordingEvent) {
        self.metrics.recording(event);
    }

    fn policies_reloaded(&self, result: Result<&str, &str>) {
        self.metrics.policies_reloaded(result);
    }
}

impl Telemetry for Metrics {
    /// Unlabelled by place: the controller of the one ambient account, when its id is not
    /// known.
    fn reconciled(
        &self,
        cluster: &str,
        trigger: Trigger,
        result: Result<&ClusterReport, &CloudError>,
        took: Duration,
    ) {
        self.reconciled_at(&PlaceLabels::default(), cluster, trigger, result, took);
    }

    fn loop_progressed(&self) {
        *lock(&self.progress) = Instant::now();
    }

    fn recorded(&self, record: &AuditRecord) {
        let f = &self.families;
        let guardrail = match &record.outcome {
            Outcome::Skipped(g) => Some(*g),
            Outcome::AuditUnavailable => Some(crate::audit::AUDIT_UNAVAILABLE),
            _ => None,
        };
        match guardrail {
            Some(guardrail) => f
                .held_actions
                .get_or_create(&HeldLabels {
                    place: PlaceLabels::of_record(record),
                    policy: record.policy.clone(),
                    action: record.action.clone(),
                    guardrail: guardrail.to_string(),
                })
                .inc(),
            None => f
                .actions
                .get_or_create(&ActionLabels {
                    place: PlaceLabels::of_record(record),
                    policy: record.policy.clone(),
                    action: record.action.clone(),
                    outcome: record.outcome.to_string(),
                })
                .inc(),
        };
    }

    fn event(&self, disposition: Disposition, lag: Option<Duration>) {
        self.families
            .events
            .get_or_create(&DispositionLabels {
                disposition: disposition.as_str(),
            })
            .inc();
        if let Some(lag) = lag {
            self.families.event_lag.observe(lag.as_secs_f64());
        }
    }

    fn events_degraded(&self, degraded: bool) {
        self.families.events_degraded.set(i64::from(degraded));
    }

    fn recording(&self, event: RecordingEvent) {
        let f = &self.families;
        match event {
            RecordingEvent::Dropped => {
                f.recording_dropped.inc();
            }
            RecordingEvent::WriteFailed => {
                f.recording_write_failures.inc();
                f.recording_paused.set(1);
            }
            RecordingEvent::Resumed => {
                f.recording_paused.set(0);
            }
        }
    }

    fn policies_reloaded(&self, result: Result<&str, &str>) {
        let outcome = match result {
            Ok(fingerprint) => {
                self.set_policy_set(fingerprint);
                "success"
            }
            Err(_) => "error",
        };
        self.families
            .policy_reloads
            .get_or_create(&ResultLabels { result: outcome })
            .inc();
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The figures read when scraped: the API budget's calls, throttling answers and tokens, the
/// policy set in force, and the log lines lost.
#[derive(Debug)]
struct ScrapeTime(Arc<Shared>);

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(fingerprint) = lock(&self.0.policy_set).clone() {
            let mut info = encoder.encode_descriptor(
                "policy_set",
                "The policy set in force, by fingerprint",
                None,
                MetricType::Info,
            )?;
            info.encode_info(&PolicySetLabels { fingerprint })?;
        }
        let dropped = ConstCounter::new(crate::logging::dropped_lines());
        dropped.encode(encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines lost because standard error was full or failed",
            None,
            dropped.metric_type(),
        )?)?;
        let budgets = lock(&self.0.budgets).clone();
        if !budgets.is_empty() {
            encode_budgets(&budgets, &mut encoder)?;
        }
        Ok(())
    }
}

fn encode_budgets(
    budgets: &[(PlaceLabels, Arc<ApiBudget>)],
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let answers: Vec<(&PlaceLabels, AnswerCount)> = budgets
        .iter()
        .flat_map(|(place, b)| b.answers().into_iter().map(move |a| (place, a)))
        .filter(|(_, a)| a.calls > 0)
        .collect();
    // A family with no sample yet is left out, as the registry's own families are.
    if !answers.is_empty() {
        encode_answers(&answers, encoder)?;
    }
    let mut throttled = encoder.encode_descriptor(
        "api_throttles",
        "Throttling answers from AWS, by throttle category (each halves the category's pace)",
        None,
        MetricType::Counter,
    )?;
    for (place, budget) in budgets {
        for (category, count) in &budget.throttles() {
            let labels = CategoryLabels {
                place: place.clone(),
                category: category.key(),
            };
            ConstCounter::new(*count).encode(throttled.encode_family(&labels)?)?;
        }
    }
    let mut left = encoder.encode_descriptor(
        "api_budget_tokens",
        "Tokens left now in the client-side bucket of each throttle category",
        None,
        MetricType::Gauge,
    )?;
    for (place, budget) in budgets {
        for (category, tokens) in &budget.tokens_left() {
            let labels = CategoryLabels {
                place: place.clone(),
                category: category.key(),
            };
            ConstGauge::new(*tokens).encode(left.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

fn encode_answers(
    answers: &[(&PlaceLabels, AnswerCount)],
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let mut calls = encoder.encode_descriptor(
        "api_calls",
        "AWS API calls by throttle category and result (after the SDK's retries)",
        None,
        MetricType::Counter,
    )?;
    for (place, a) in answers {
        let labels = CallLabels {
            place: (*place).clone(),
            category: a.category.key(),
            result: a.result,
        };
        ConstCounter::new(a.calls).encode(calls.encode_family(&labels)?)?;
    }
    Ok(())
}
