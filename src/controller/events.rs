//! Events applied to the cached pictures ([`EventSink`] for the controller): synchronous and
//! quick, a cache update and maybe a requeue, never a read.
//!
//! - A task event newer than the cache (by ECS's `version`) replaces the task's picture,
//!   keeping its tags, health and security groups (events carry none), and moves its deadline.
//!   Older or equal is `Stale`. A task the cache never held is `UnknownTask`. A service
//!   task joins the picture as the event shows it, its tags unread
//!   (`ClusterSnapshot::tags_unread`): nothing is done to it before a read reports them (an
//!   exemption tag may be among them), and its deadline or the next resync describes it:
//!   a read per task that gets stuck, not one per task started. A
//!   standalone task is described at once: it may be a replacement the controller started,
//!   which the history knows by its tag.
//! - A container instance event newer than the last one applied updates the instance and asks
//!   for a fresh diagnosis (an agent that went away is judged there).
//! - A service action, or a group activity of a group a cluster's capacity provider uses,
//!   requeues the cluster with a read of its capacity chain.
//! - Anything about a cluster (or group) no policy selects is `OutOfScope`.
//!
//! The controller is in event mode from `set_degraded(false)` (the event source calls it once
//! its queue answers) until `set_degraded(true)`; the resync cadence follows.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::time::Instant;
use tracing::{info, warn};

use super::Controller;
use crate::cache::{ClusterCache, Merge};
use crate::cloud::Cloud;
use crate::deadline::{governing, task_deadline};
use crate::domain::Task;
use crate::events::{Disposition, Event, EventSink, InstanceChange};
use crate::policy::Policy;

impl<C: Cloud> EventSink for Controller<C> {
    fn apply(&self, event: Event, received_at: SystemTime) -> Disposition {
        let disposition = match event {
            Event::Task(change) => self.apply_task(*change.task, received_at),
            Event::ContainerInstance(change) => self.apply_instance(&change),
            Event::ServiceAction { cluster_arn, .. } => {
                let cache = self.lock_cache();
                let name = self.cluster_of_arn(&cache, &cluster_arn);
                drop(cache);
                match name {
                    None => Disposition::OutOfScope,
                    Some(Ok(name) | Err(name)) => self.requeue_capacity(&name),
                }
            }
            Event::GroupActivity { group_name, .. } => {
                let cache = self.lock_cache();
                let name = cache
                    .iter()
                    .find(|(_, c)| c.uses_group(&group_name))
                    .map(|(name, _)| name.clone());
                drop(cache);
                match name {
                    None => Disposition::OutOfScope,
                    Some(name) => self.requeue_capacity(&name),
                }
            }
        };
        if disposition != Disposition::Stale {
            self.wake.notify_one();
        }
        disposition
    }

    fn set_degraded(&self, degraded: bool) {
        let was_healthy = self.events_healthy.swap(!degraded, Ordering::Relaxed);
        if was_healthy != degraded {
            return;
        }
        if degraded {
            warn!(resync = ?self.settings.resync, "events degraded: resyncing at the event-less cadence");
        } else {
            info!(resync = ?self.settings.event_resync, "events healthy: resyncing at the event cadence");
        }
        self.telemetry.events_degraded(degraded);
        let now = Instant::now();
        let clusters: Vec<String> = {
            let mut cache = self.lock_cache();
            let cadence = self.resync_cadence_of(&cache);
            for entry in cache.values_mut() {
                entry.next_resync = entry.last_resync + cadence;
                if !degraded {
                    entry.next_health = now + self.settings.health_interval;
                }
            }
            cache.keys().cloned().collect()
        };
        for cluster in clusters {
            if let Some(at) = self.next_run(&cluster) {
                self.lock_queue().schedule(&cluster, at);
            }
        }
        self.wake.notify_one();
    }
}

impl<C: Cloud> Controller<C> {
    /// The cached cluster an ARN names; or, for a cluster in scope not observed yet, `Err(name)`
    /// (its first observation is queued); `None` when no policy selects it.
    fn cluster_of_arn(
        &self,
        cache: &HashMap<String, ClusterCache>,
        cluster_arn: &str,
    ) -> Option<Result<String, String>> {
        if let Some((name, _)) = cache.iter().find(|(_, c)| c.cluster_arn() == cluster_arn) {
            return Some(Ok(name.clone()));
        }
        let name = cluster_name(cluster_arn);
        let in_scope = self.policies().for_cluster(name).next().is_some();
        in_scope.then(|| Err(name.to_string()))
    }

    fn apply_task(&self, task: Task, received_at: SystemTime) -> Disposition {
        let now = Instant::now();
        let policies = self.policies();
        let mut cache = self.lock_cache();
        let name = match self.cluster_of_arn(&cache, &task.cluster_arn) {
            None => return Disposition::OutOfScope,
            Some(Err(name)) => {
                // Under the cache's lock, so the first observation's arrival cannot miss it.
                self.lock_before_first()
                    .entry(name.clone())
                    .or_default()
                    .insert(task.arn.clone());
                drop(cache);
                self.lock_queue().schedule(&name, now);
                return Disposition::UnknownTask;
            }
            Some(Ok(name)) => name,
        };
        let Some(entry) = cache.get_mut(&name) else {
            return Disposition::OutOfScope;
        };
        let arn = task.arn.clone();
        let before = entry.deadlines().get(&arn).copied();
        let unknown_service_task = entry.task(&arn).is_none() && task.service_name().is_some();
        let disposition = if unknown_service_task {
            entry.insert_unread(task);
            Disposition::UnknownTask
        } else {
            match entry.apply_task(task) {
                Merge::Stale => return Disposition::Stale,
                Merge::Unknown => {
                    entry.to_describe.insert(arn);
                    drop(cache);
                    self.lock_queue().schedule(&name, now);
                    return Disposition::UnknownTask;
                }
                Merge::Applied => Disposition::Applied,
            }
        };
        let in_cluster: Vec<&Policy> = policies.for_cluster(&name).collect();
        let deadline = entry.task(&arn).and_then(|task| {
            let policy = governing(&in_cluster, task)?;
            task_deadline(task, policy, |condition| {
                let same = before.filter(|d| d.condition == condition);
                Some(same.map_or(received_at, |d| d.since))
            })
        });
        if let Some(d) = deadline.filter(|d| before.map(|b| b.condition) != Some(d.condition)) {
            entry.sighted.push((arn.clone(), d.condition, received_at));
        }
        let clock = entry.clock(now);
        entry.deadlines_mut().set(&arn, deadline, clock);
        let wake = deadline.map(|_| {
            entry
                .deadlines()
                .next_wake()
                .map_or(now, |t| entry.instant_of(t))
        });
        drop(cache);
        if let Some(at) = wake {
            self.lock_queue().schedule(&name, at);
        }
        disposition
    }

    fn apply_instance(&self, change: &InstanceChange) -> Disposition {
        let now = Instant::now();
        let mut cache = self.lock_cache();
        let name = match self.cluster_of_arn(&cache, &change.cluster_arn) {
            None => return Disposition::OutOfScope,
            Some(Err(name)) => name,
            Some(Ok(name)) => {
                let Some(entry) = cache.get_mut(&name) else {
                    return Disposition::OutOfScope;
                };
                if entry.apply_instance(change) == Merge::Stale {
                    return Disposition::Stale;
                }
                entry.rediagnose = true;
                name
            }
        };
        drop(cache);
        self.lock_queue().schedule(&name, now);
        Disposition::Applied
    }

    /// Requeues a cluster in scope with a read of its capacity chain (a cluster not observed
    /// yet gets its first observation).
    fn requeue_capacity(&self, cluster: &str) -> Disposition {
        if let Some(entry) = self.lock_cache().get_mut(cluster) {
            entry.refresh_groups = true;
        }
        self.lock_queue().schedule(cluster, Instant::now());
        Disposition::Applied
    }
}

/// The cluster name in a cluster ARN (`arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`), or the
/// string itself when it is a name.
fn cluster_name(cluster_arn: &str) -> &str {
    cluster_arn
        .rsplit_once(":cluster/")
        .map_or(cluster_arn, |(_, name)| name)
}
