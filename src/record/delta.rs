//! An observation as its change from the previous one of the same cluster. Pure.
//!
//! Tasks and container instances are keyed by ARN: the delta holds those that are new or
//! changed, and the ARNs of those that are gone. The services, capacity providers and Auto
//! Scaling groups are few, and are written whole when any of them changed. Applying a delta
//! to the previous picture gives the new one exactly, order included; where it could not
//! (items reordered), [`diff`] says so and the recorder writes a full snapshot instead.
//!
//! Change is judged by 64-bit hashes of what was recorded ([`Written`]), so the recorder need
//! not keep the previous picture.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::domain::{
    AutoScalingGroup, CapacityProvider, ClusterSnapshot, ContainerInstance, Service, Task,
};

/// What changed between two observations of one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotDelta {
    pub cluster_name: String,
    pub observed_at: SystemTime,
    #[serde(default, skip_serializing_if = "Changes::is_empty")]
    pub tasks: Changes<Task>,
    #[serde(default, skip_serializing_if = "Changes::is_empty")]
    pub container_instances: Changes<ContainerInstance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<Service>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_providers: Option<Vec<CapacityProvider>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_scaling_groups: Option<Vec<AutoScalingGroup>>,
    /// Written whole (usually empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub tags_unread: BTreeSet<String>,
}

/// The new or changed items of a list keyed by ARN, and the ARNs of those removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Changes<T> {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upsert: Vec<T>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl<T> Default for Changes<T> {
    fn default() -> Self {
        Changes {
            upsert: Vec::new(),
            remove: Vec::new(),
        }
    }
}

impl<T> Changes<T> {
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.remove.is_empty()
    }
}

/// An item of a list keyed by ARN.
pub trait Keyed: Clone + std::hash::Hash {
    fn key(&self) -> &str;
}

impl Keyed for Task {
    fn key(&self) -> &str {
        &self.arn
    }
}

impl Keyed for ContainerInstance {
    fn key(&self) -> &str {
        &self.arn
    }
}

/// What the recorder keeps of the last picture it wrote of a cluster: enough to make the next
/// delta, without holding the picture (which the controller's cache would then have to copy
/// before changing it). Each task and container instance is kept as its ARN and a hash of its
/// value; the few services, providers and groups as a hash of their JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    cluster_name: String,
    cluster_arn: String,
    tasks: Vec<(String, u64)>,
    container_instances: Vec<(String, u64)>,
    services: u64,
    capacity_providers: u64,
    auto_scaling_groups: u64,
}

impl Written {
    pub fn of(snapshot: &ClusterSnapshot) -> Written {
        Written {
            cluster_name: snapshot.cluster_name.clone(),
            cluster_arn: snapshot.cluster_arn.clone(),
            tasks: keyed_hashes(&snapshot.tasks),
            container_instances: keyed_hashes(&snapshot.container_instances),
            services: hash_of(&snapshot.services),
            capacity_providers: hash_of(&snapshot.capacity_providers),
            auto_scaling_groups: hash_of(&snapshot.auto_scaling_groups),
        }
    }
}

fn keyed_hashes<T: Keyed>(items: &[T]) -> Vec<(String, u64)> {
    items
        .iter()
        .map(|t| {
            let mut h = std::hash::DefaultHasher::new();
            t.hash(&mut h);
            (t.key().to_string(), std::hash::Hasher::finish(&h))
        })
        .collect()
}

/// A hash of a value's JSON (what is recorded), computed without building the text.
fn hash_of<T: Serialize + ?Sized>(value: &T) -> u64 {
    struct Hashing(std::hash::DefaultHasher);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::hash::Hasher::write(&mut self.0, buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hashing(std::hash::DefaultHasher::new());
    // Serializing domain values cannot fail; a failure would only make a needless upsert.
    let _ = serde_json::to_writer(&mut h, value);
    std::hash::Hasher::finish(&h.0)
}

/// The delta from `prev` to `next`, or `None` when one cannot reproduce `next` from `prev`
/// (another cluster, or items that changed places): then write `next` whole.
pub fn diff(prev: &ClusterSnapshot, next: &ClusterSnapshot) -> Option<SnapshotDelta> {
    diff_from(&Written::of(prev), next, &Written::of(next))
}

/// [`diff`] from what was kept of the previous picture, and the same of the next one.
pub fn diff_from(prev: &Written, next: &ClusterSnapshot, kept: &Written) -> Option<SnapshotDelta> {
    if prev.cluster_name != next.cluster_name || prev.cluster_arn != next.cluster_arn {
        return None;
    }
    Some(SnapshotDelta {
        cluster_name: next.cluster_name.clone(),
        observed_at: next.observed_at,
        tasks: changes(&prev.tasks, &next.tasks, &kept.tasks)?,
        container_instances: changes(
            &prev.container_instances,
            &next.container_instances,
            &kept.container_instances,
        )?,
        services: (prev.services != kept.services).then(|| next.services.clone()),
        capacity_providers: (prev.capacity_providers != kept.capacity_providers)
            .then(|| next.capacity_providers.clone()),
        auto_scaling_groups: (prev.auto_scaling_groups != kept.auto_scaling_groups)
            .then(|| next.auto_scaling_groups.clone()),
        gaps: next.gaps.clone(),
        tags_unread: next.tags_unread.clone(),
    })
}

/// The changes from `prev` to `next` (`hashes`: `next`'s keys and hashes), if applying them
/// keeps the order of `next`: the items kept from `prev` in their old order, then the new ones.
fn changes<T: Keyed>(
    prev: &[(String, u64)],
    next: &[T],
    hashes: &[(String, u64)],
) -> Option<Changes<T>> {
    let old: HashMap<&str, usize> = prev
        .iter()
        .enumerate()
        .map(|(i, (key, _))| (key.as_str(), i))
        .collect();
    let mut seen = HashSet::with_capacity(next.len());
    let mut out = Changes::default();
    let mut last_kept = None;
    let mut new_began = false;
    for (item, (key, hash)) in next.iter().zip(hashes) {
        if !seen.insert(key.as_str()) {
            return None;
        }
        match old.get(key.as_str()) {
            Some(&i) => {
                if new_began || last_kept.is_some_and(|last| i < last) {
                    return None;
                }
                last_kept = Some(i);
                if prev[i].1 != *hash {
                    out.upsert.push(item.clone());
                }
            }
            None => {
                new_began = true;
                out.upsert.push(item.clone());
            }
        }
    }
    out.remove = prev
        .iter()
        .filter(|(key, _)| !seen.contains(key.as_str()))
        .map(|(key, _)| key.clone())
        .collect();
    Some(out)
}

/// Turns `snapshot` (the previous picture of the delta's cluster) into the next one.
pub fn apply(snapshot: &mut ClusterSnapshot, delta: SnapshotDelta) {
    snapshot.observed_at = delta.observed_at;
    apply_changes(&mut snapshot.tasks, delta.tasks);
    apply_changes(&mut snapshot.container_instances, delta.container_instances);
    if let Some(services) = delta.services {
        snapshot.services = services;
    }
    if let Some(providers) = delta.capacity_providers {
        snapshot.capacity_providers = providers;
    }
    if let Some(groups) = delta.auto_scaling_groups {
        snapshot.auto_scaling_groups = groups;
    }
    snapshot.gaps = delta.gaps;
    snapshot.tags_unread = delta.tags_unread;
}

fn apply_changes<T: Keyed>(items: &mut Vec<T>, changes: Changes<T>) {
    if changes.is_empty() {
        return;
    }
    let removed: HashSet<&str> = changes.remove.iter().map(String::as_str).collect();
    items.retain(|t| !removed.contains(t.key()));
    let present: HashMap<String, usize> = items
        .iter()
        .enumerate()
        .map(|(i, t)| (t.key().to_string(), i))
        .collect();
    // Changed items take their old place; new ones follow, in the order the delta lists them.
    for item in changes.upsert {
        match present.get(item.key()) {
            Some(&i) => items[i] = item,
            None => items.push(item),
        }
    }
}
