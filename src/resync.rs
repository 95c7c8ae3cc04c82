//! The safety-net resync's cost, and the cadence that keeps it within its share of the API
//! budget while events keep the cached pictures current.
//!
//! In event mode a resync lists every task (ListTasks, 100 a page, per desired status) and
//! describes only what the picture does not know, so its cost is about ceil(N/100) reads per
//! cluster of N tasks, plus its container instances. At 100,000 tasks that is over 1,000 reads:
//! every 10 minutes, 17% of the half budget of cluster-resource reads (10 calls/s) on its own.
//! So the period is stretched until the resyncs of every cluster together use at most
//! `events.resync_budget` of that budget (5% by default: at 100,000 tasks, about every 35
//! minutes). A lost event is repaired that much later; a task's deadline, its health reads and
//! the events themselves do not wait for it.

use std::time::Duration;

use crate::cloud::budget::{Category, PacingSettings};
use crate::domain::{ClusterSnapshot, DesiredStatus};

/// `events.resync_budget` by default: the share of the cluster-resource-read budget the
/// resyncs may use while events arrive.
pub const DEFAULT_RESYNC_BUDGET: f64 = 0.05;

/// The cluster-resource reads per second the resyncs may use under the default pacing and
/// [`DEFAULT_RESYNC_BUDGET`].
pub fn default_resync_read_rate() -> f64 {
    resync_read_rate(&PacingSettings::default(), DEFAULT_RESYNC_BUDGET)
}

/// The cluster-resource reads per second a `share` of the budget of `pacing` allows.
pub fn resync_read_rate(pacing: &PacingSettings, share: f64) -> f64 {
    pacing.budget(Category::ClusterResourceRead).per_second * share
}

/// What a list-and-diff resync of this picture costs in cluster-resource reads: each
/// ListTasks (one page at least per desired status), DescribeTasks of the tasks known from
/// events only, ListContainerInstances (one page at least) and DescribeContainerInstances
/// (none without instances). Tasks new since
/// the picture are not counted: nobody knows them yet.
pub fn resync_reads(snapshot: &ClusterSnapshot) -> u64 {
    let tasks = &snapshot.tasks;
    let running = tasks
        .iter()
        .filter(|t| t.desired_status == DesiredStatus::Running)
        .count();
    let pages = |n: usize| n.div_ceil(100).max(1) as u64;
    let batches = |n: usize| n.div_ceil(100) as u64;
    let instances = snapshot.container_instances.len();
    let list_tasks = pages(running) + pages(tasks.len() - running);
    list_tasks + batches(snapshot.tags_unread.len()) + pages(instances) + batches(instances)
}

/// How often each cluster is resynced when one resync of every cluster costs `reads` in all:
/// `base`, or longer if `reads` every `base` would exceed `rate` reads per second on average.
pub fn resync_period(base: Duration, reads: u64, rate: Option<f64>) -> Duration {
    let Some(rate) = rate.filter(|r| *r > 0.0) else {
        return base;
    };
    let needed = Duration::try_from_secs_f64(reads as f64 / rate).unwrap_or(Duration::MAX);
    base.max(needed)
}
