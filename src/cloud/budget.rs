//! Client-side API pacing: one token bucket per AWS throttle category, shared by everything in
//! the process, so the controller stays well under the account's own buckets (which it shares
//! with everyone else in the account and Region).
//!
//! - [`Category`]: the ECS throttle categories of docs/design.md §2, plus Auto Scaling (all its
//!   APIs share one bucket), EC2 describe calls, and [`Category::Other`] for anything else.
//!   [`category_of`] maps an operation name (`DescribeTasks`, or qualified:
//!   `autoscaling:DescribeTags`) to its category.
//! - [`ApiBudget`]: `acquire(operation)` waits (on tokio's clock, so paused time works) until the
//!   category has a token; `throttled(operation)` halves the category's rate when AWS answers
//!   with a throttling error; `report()` gives calls, budget, observed calls per second and
//!   the busiest second.
//! - [`PacingSettings`]: the `[pacing]` configuration table.
//!
//! # Defaults
//!
//! The budget of a category is `scale` (default 0.5) times the account's bucket: half the
//! documented refill rate and half the burst. Auto Scaling publishes no rates: we assume an
//! account bucket of 10/s with a burst of 20 (so 5/s, burst 10 by default). For EC2 describe
//! calls we assume 20/s with a burst of 50 (10/s, burst 25), below EC2's documented
//! non-mutating bucket. Other operations: assumed 5/s, burst 20 (2.5/s, burst 10).
//!
//! # Throttling
//!
//! [`ApiBudget::throttled`] halves the category's current rate (never below 1/16 of its budget)
//! and empties its bucket; the rate stays there for `throttle_hold` (default 60 s), then climbs
//! back linearly to the full budget over another `throttle_hold`. A throttle during that time
//! halves it again from where it is.
//!
//! # Fairness
//!
//! A caller reserves its token when it asks (the bucket may go below zero) and then sleeps until
//! the token would have been there, so waiting callers are served in the order they asked. A
//! caller that gives up while waiting (its future dropped) still used its token.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::cloud::ErrorCategory;

/// An AWS throttle category: calls in one category share one token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// DescribeTasks, ListTasks, DescribeContainerInstances, ListContainerInstances.
    ClusterResourceRead,
    /// RunTask, StopTask, UpdateContainerInstancesState.
    ClusterResourceModify,
    /// DescribeServices, ListServices.
    ServiceRead,
    /// UpdateService.
    ServiceModify,
    /// DescribeClusters, ListClusters.
    ClusterRead,
    /// DescribeCapacityProviders.
    CapacityProviderRead,
    /// Every Auto Scaling API (one shared bucket; rates unpublished).
    AutoScaling,
    /// EC2 Describe* calls and GetConsoleOutput (EC2's bucket for non-mutating actions).
    Ec2Describe,
    /// Anything not listed above.
    Other,
}

impl Category {
    /// Every category, in report order.
    pub const ALL: [Category; 9] = [
        Category::ClusterResourceRead,
        Category::ClusterResourceModify,
        Category::ServiceRead,
        Category::ServiceModify,
        Category::ClusterRead,
        Category::CapacityProviderRead,
        Category::AutoScaling,
        Category::Ec2Describe,
        Category::Other,
    ];

    /// The name used in configuration (`service-modify`).
    pub fn key(self) -> &'static str {
        match self {
            Category::ClusterResourceRead => "cluster-resource-read",
            Category::ClusterResourceModify => "cluster-resource-modify",
            Category::ServiceRead => "service-read",
            Category::ServiceModify => "service-modify",
            Category::ClusterRead => "cluster-read",
            Category::CapacityProviderRead => "capacity-provider-read",
            Category::AutoScaling => "auto-scaling",
            Category::Ec2Describe => "ec2-describe",
            Category::Other => "other",
        }
    }

    /// The account's bucket for this category: documented for the ECS categories (docs/design.md
    /// section 2), assumed for the others (see the [module](self) documentation).
    pub fn account_limit(self) -> Rate {
        let (burst, per_second) = match self {
            Category::ClusterResourceRead => (100, 20.0),
            Category::ClusterResourceModify => (100, 40.0),
            Category::ServiceRead => (100, 20.0),
            Category::ServiceModify => (50, 5.0),
            Category::ClusterRead => (50, 20.0),
            Category::CapacityProviderRead => (50, 20.0),
            Category::AutoScaling => (20, 10.0),
            Category::Ec2Describe => (50, 20.0),
            Category::Other => (20, 5.0),
        };
        Rate { per_second, burst }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A token bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Bucket size: calls that may go at once after a quiet time.
    pub burst: u32,
}

impl Rate {
    /// This rate times `scale` (burst rounded down, at least 1).
    pub fn scaled(self, scale: f64) -> Rate {
        Rate {
            per_second: self.per_second * scale,
            burst: ((f64::from(self.burst) * scale).floor() as u32).max(1),
        }
    }
}

/// The `[pacing]` configuration table.
///
/// ```toml
/// [pacing]
/// scale = 0.5                 # share of the account's buckets this process uses
/// throttle_hold = "60s"       # how long a throttling answer halves the rate
/// window = "60s"              # over which observed calls per second are measured
/// [pacing.overrides.service-modify]
/// per_second = 1.0            # absolute, not scaled
/// burst = 5
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PacingSettings {
    /// Share of each account bucket (rate and burst) this process allows itself, in (0, 1].
    pub scale: f64,
    /// How long the rate stays halved after a throttling answer (and then how long it takes to
    /// recover).
    #[serde(with = "humantime_serde")]
    pub throttle_hold: Duration,
    /// The window over which [`CategoryReport::observed_per_sec`] is measured.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Budgets that replace the scaled default of a category.
    pub overrides: BTreeMap<Category, Rate>,
}

impl Default for PacingSettings {
    fn default() -> Self {
        PacingSettings {
            scale: 0.5,
            throttle_hold: Duration::from_secs(60),
            window: Duration::from_secs(60),
            overrides: BTreeMap::new(),
        }
    }
}

impl PacingSettings {
    /// The budget of `category` under these settings.
    pub fn budget(&self, category: Category) -> Rate {
        self.overrides
            .get(&category)
            .copied()
            .unwrap_or_else(|| category.account_limit().scaled(self.scale))
    }

    /// Checks the values: scale in (0, 1], positive rates and bursts, non-zero durations.
    pub fn validate(&self) -> Result<(), BudgetError> {
        if !(self.scale > 0.0 && self.scale <= 1.0) {
            return Err(BudgetError(format!(
                "pacing.scale = {}; valid: a share of the account's buckets above 0 and at most 1",
                self.scale
            )));
        }
        if self.throttle_hold.is_zero() || self.window.is_zero() {
            return Err(BudgetError(
                "pacing.throttle_hold and pacing.window must be longer than zero".into(),
            ));
        }
        for (category, rate) in &self.overrides {
            if !(rate.per_second.is_finite() && rate.per_second > 0.0) || rate.burst == 0 {
                return Err(BudgetError(format!(
                    "pacing.overrides.{category}: per_second = {}, burst = {}; valid: per_second above 0, burst at least 1",
                    rate.per_second, rate.burst
                )));
            }
        }
        Ok(())
    }
}

/// Invalid pacing settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pacing settings: {0}")]
pub struct BudgetError(pub String);

/// The throttle category of an API operation.
///
/// `operation` is the API's action name (`DescribeTasks`), optionally qualified by the service
/// (`ecs:`, `autoscaling:`, `ec2:`). Qualify names both Auto Scaling and EC2 use
/// (`DescribeTags`, `DeleteTags`): unqualified, they count as Auto Scaling, the smaller bucket.
pub fn category_of(operation: &str) -> Category {
    let (service, name) = match operation.split_once(':') {
        Some((service, name)) => (Some(service.to_ascii_lowercase()), name),
        None => (None, operation),
    };
    match service.as_deref() {
        Some("autoscaling" | "auto-scaling") => Category::AutoScaling,
        Some("ec2") if name.starts_with("Describe") || name == "GetConsoleOutput" => {
            Category::Ec2Describe
        }
        Some("ec2") => Category::Other,
        Some("ecs") => ecs_category(name).unwrap_or(Category::Other),
        Some(_) => Category::Other,
        None => ecs_category(name)
            .or_else(|| is_auto_scaling(name).then_some(Category::AutoScaling))
            .or_else(|| is_ec2_describe(name).then_some(Category::Ec2Describe))
            .unwrap_or(Category::Other),
    }
}

fn ecs_category(name: &str) -> Option<Category> {
    Some(match name {
        "DescribeTasks" | "ListTasks" | "DescribeContainerInstances" | "ListContainerInstances" => {
            Category::ClusterResourceRead
        }
        "RunTask" | "StopTask" | "UpdateContainerInstancesState" => Category::ClusterResourceModify,
        "DescribeServices" | "ListServices" => Category::ServiceRead,
        "UpdateService" => Category::ServiceModify,
        "DescribeClusters" | "ListClusters" => Category::ClusterRead,
        "DescribeCapacityProviders" => Category::CapacityProviderRead,
        _ => return None,
    })
}

fn is_auto_scaling(name: &str) -> bool {
    name.contains("AutoScaling")
        || matches!(
            name,
            "SetDesiredCapacity"
                | "DescribeScalingActivities"
                | "CreateOrUpdateTags"
                | "DescribeTags"
                | "DeleteTags"
                | "SetInstanceProtection"
                | "SetInstanceHealth"
                | "DescribeLaunchConfigurations"
                | "SuspendProcesses"
                | "ResumeProcesses"
                | "DescribeInstanceRefreshes"
                | "StartInstanceRefresh"
                | "CancelInstanceRefresh"
                | "DescribeWarmPool"
                | "AttachInstances"
                | "DetachInstances"
                | "EnterStandby"
                | "ExitStandby"
                | "DescribeLifecycleHooks"
                | "CompleteLifecycleAction"
                | "DescribePolicies"
                | "DescribeScheduledActions"
        )
}

fn is_ec2_describe(name: &str) -> bool {
    const PREFIXES: [&str; 10] = [
        "DescribeInstance",
        "DescribeLaunchTemplate",
        "DescribeNetworkInterface",
        "DescribeSecurityGroup",
        "DescribeSubnet",
        "DescribeVpc",
        "DescribeImage",
        "DescribeAvailabilityZone",
        "DescribeSpotInstance",
        "GetConsoleOutput",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// One category's figures, from [`ApiBudget::report`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryReport {
    pub category: Category,
    /// Calls granted since the budget was made.
    pub calls: u64,
    /// The rate allowed now (lower than configured while throttled).
    pub budget_per_sec: f64,
    /// Calls per second granted over the last window (or since start, when shorter).
    pub observed_per_sec: f64,
    /// The most calls granted within any one second since the budget was made (a full bucket
    /// allows its burst plus one second of refill).
    pub peak_per_sec: u64,
}

/// The lowest share of its budget a category is slowed to by repeated throttling.
const MIN_FACTOR: f64 = 1.0 / 16.0;

struct Bucket {
    budget: Rate,
    /// May be negative: tokens reserved by callers still waiting.
    tokens: f64,
    refilled_at: Instant,
    /// The share of the budget right after the last throttle, and when it came.
    throttle: Option<(f64, Instant)>,
    calls: u64,
    /// When recent calls were granted, oldest first (within the report window).
    recent: VecDeque<Instant>,
    /// When the calls of the last second were granted, oldest first.
    last_second: VecDeque<Instant>,
    /// The most calls granted within one second.
    peak_per_sec: u64,
    /// Throttling answers reported.
    throttles: u64,
    /// Answers reported, by result (`success` or an error category).
    answers: BTreeMap<&'static str, u64>,
}

impl Bucket {
    fn new(budget: Rate, now: Instant) -> Self {
        Bucket {
            budget,
            tokens: f64::from(budget.burst),
            refilled_at: now,
            throttle: None,
            calls: 0,
            recent: VecDeque::new(),
            last_second: VecDeque::new(),
            peak_per_sec: 0,
            throttles: 0,
            answers: BTreeMap::new(),
        }
    }

    /// The share of the budget allowed at `now`.
    fn factor(&self, now: Instant, hold: Duration) -> f64 {
        let Some((floor, at)) = self.throttle else {
            return 1.0;
        };
        let since = now.saturating_duration_since(at);
        if since <= hold {
            floor
        } else {
            let recovered = ((since - hold).as_secs_f64() / hold.as_secs_f64()).min(1.0);
            floor + (1.0 - floor) * recovered
        }
    }

    fn capacity(&self, factor: f64) -> f64 {
        (f64::from(self.budget.burst) * factor).max(1.0)
    }

    /// The tokens [`refill`](Self::refill) would leave at `now`, without refilling (reading
    /// the bucket for the metrics must not change how it paces).
    fn tokens_at(&self, now: Instant, hold: Duration) -> f64 {
        let factor = self
            .factor(self.refilled_at, hold)
            .min(self.factor(now, hold));
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        (self.tokens + elapsed * self.budget.per_second * factor)
            .min(self.capacity(self.factor(now, hold)))
    }

    /// Adds the tokens earned since the last refill (at the lower of the two rates, so a
    /// recovering category never earns more than it is allowed).
    fn refill(&mut self, now: Instant, hold: Duration) -> f64 {
        let factor = self
            .factor(self.refilled_at, hold)
            .min(self.factor(now, hold));
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        let rate = self.budget.per_second * factor;
        self.tokens = (self.tokens + elapsed * rate).min(self.capacity(self.factor(now, hold)));
        self.refilled_at = now;
        if self.throttle.is_some() && self.factor(now, hold) >= 1.0 {
            self.throttle = None;
        }
        rate
    }
}

/// Client-side token buckets, one per [`Category`]; share one in an `Arc` across the process.
pub struct ApiBudget {
    buckets: BTreeMap<Category, Mutex<Bucket>>,
    throttle_hold: Duration,
    window: Duration,
    started: Instant,
}

impl Default for ApiBudget {
    fn default() -> Self {
        ApiBudget::new(&PacingSettings::default()).expect("the default pacing settings are valid")
    }
}

impl ApiBudget {
    /// Buckets with the budgets of `settings`, each full.
    pub fn new(settings: &PacingSettings) -> Result<Self, BudgetError> {
        settings.validate()?;
        let now = Instant::now();
        Ok(ApiBudget {
            buckets: Category::ALL
                .iter()
                .map(|&c| (c, Mutex::new(Bucket::new(settings.budget(c), now))))
                .collect(),
            throttle_hold: settings.throttle_hold,
            window: settings.window,
            started: now,
        })
    }

    fn bucket(&self, category: Category) -> std::sync::MutexGuard<'_, Bucket> {
        self.buckets[&category]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The configured budget of a category (not lowered by throttling).
    pub fn budget(&self, category: Category) -> Rate {
        self.bucket(category).budget
    }

    /// Waits until `operation`'s category has a token for it, and takes it.
    pub async fn acquire(&self, operation: &str) {
        self.acquire_category(category_of(operation)).await
    }

    /// [`acquire`](Self::acquire) by category.
    pub async fn acquire_category(&self, category: Category) {
        let wait = {
            let mut bucket = self.bucket(category);
            let now = Instant::now();
            let rate = bucket.refill(now, self.throttle_hold);
            bucket.tokens -= 1.0;
            if bucket.tokens >= 0.0 {
                Duration::ZERO
            } else {
                // Round up, so a caller never goes before its token is there.
                Duration::from_nanos((-bucket.tokens / rate * 1e9).ceil() as u64)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let now = Instant::now();
        let mut bucket = self.bucket(category);
        bucket.calls += 1;
        bucket.recent.push_back(now);
        prune(&mut bucket.recent, now, self.window);
        // Calls in the half-open second (now - 1 s, now].
        bucket.last_second.push_back(now);
        while bucket
            .last_second
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            bucket.last_second.pop_front();
        }
        bucket.peak_per_sec = bucket.peak_per_sec.max(bucket.last_second.len() as u64);
    }

    /// AWS answered a call of `operation` with a throttling error: slow its category down.
    pub fn throttled(&self, operation: &str) {
        self.throttled_category(category_of(operation))
    }

    /// [`throttled`](Self::throttled) by category.
    pub fn throttled_category(&self, category: Category) {
        let mut bucket = self.bucket(category);
        let now = Instant::now();
        bucket.refill(now, self.throttle_hold);
        bucket.throttles += 1;
        let factor = (bucket.factor(now, self.throttle_hold) / 2.0).max(MIN_FACTOR);
        bucket.throttle = Some((factor, now));
        bucket.tokens = bucket.tokens.min(0.0);
        tracing::debug!(
            %category,
            per_second = bucket.budget.per_second * factor,
            "throttled: slowing down"
        );
    }

    /// Calls, budget and observed rate per category, in [`Category::ALL`] order.
    pub fn report(&self) -> Vec<CategoryReport> {
        let now = Instant::now();
        let span = now
            .saturating_duration_since(self.started)
            .min(self.window)
            .max(Duration::from_secs(1))
            .as_secs_f64();
        Category::ALL
            .iter()
            .map(|&category| {
                let mut bucket = self.bucket(category);
                prune(&mut bucket.recent, now, self.window);
                CategoryReport {
                    category,
                    calls: bucket.calls,
                    budget_per_sec: bucket.budget.per_second
                        * bucket.factor(now, self.throttle_hold),
                    observed_per_sec: bucket.recent.len() as f64 / span,
                    peak_per_sec: bucket.peak_per_sec,
                }
            })
            .collect()
    }
}

/// The answers of one throttle category with one result, from [`ApiBudget::answers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnswerCount {
    pub category: Category,
    /// `success`, or the error category's name (`throttled`, `denied`, ...).
    pub result: &'static str,
    pub calls: u64,
}

impl ApiBudget {
    /// AWS answered a call of `operation` (after the SDK's retries): `None` for success, else
    /// the error's category. Counted for the metrics; pacing is told by [`throttled`].
    ///
    /// [`throttled`]: Self::throttled
    pub fn answered(&self, operation: &str, error: Option<ErrorCategory>) {
        let result = error.map_or("success", ErrorCategory::as_str);
        *self
            .bucket(category_of(operation))
            .answers
            .entry(result)
            .or_default() += 1;
    }

    /// Answers reported so far, by category (in [`Category::ALL`] order) and result.
    pub fn answers(&self) -> Vec<AnswerCount> {
        Category::ALL
            .iter()
            .flat_map(|&category| {
                let bucket = self.bucket(category);
                bucket
                    .answers
                    .iter()
                    .map(|(&result, &calls)| AnswerCount {
                        category,
                        result,
                        calls,
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Throttling answers reported so far, per category.
    pub fn throttles(&self) -> Vec<(Category, u64)> {
        Category::ALL
            .iter()
            .map(|&c| (c, self.bucket(c).throttles))
            .collect()
    }

    /// Tokens in each category's bucket now (refilled to now; 0 while callers wait for
    /// tokens they reserved).
    pub fn tokens_left(&self) -> Vec<(Category, f64)> {
        let now = Instant::now();
        Category::ALL
            .iter()
            .map(|&c| {
                let bucket = self.bucket(c);
                (c, bucket.tokens_at(now, self.throttle_hold).max(0.0))
            })
            .collect()
    }
}

/// Drops the calls older than `window`.
fn prune(recent: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while recent
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) > window)
    {
        recent.pop_front();
    }
}
