//! The cached picture of each cluster (informer-style): the last full observation, kept up to
//! date by events and by targeted reads, with the deadlines of its watched tasks.
//!
//! Reconciles read the picture through an `Arc`: while one holds it, an event's change is kept
//! aside and merged as soon as the picture is free again, so applying an event never copies a
//! large cluster. An older `version` of a task or container instance never replaces a newer
//! one, whichever way it arrives (event, describe, resync).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::cloud::{GroupRead, KnownTasks, Resync, TaskReads};
use crate::deadline::Deadline;
use crate::diagnose::Condition;
use crate::domain::{AutoScalingGroup, ClusterSnapshot, ContainerInstance, Task};
use crate::events::InstanceChange;

/// How long past a deadline the cluster is woken: diagnosis finds a task stuck once its time in
/// the condition is *past* the limit.
pub const DEADLINE_SLACK: Duration = Duration::from_millis(1);

/// What became of an event's change to a task or container instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Newer than the picture: applied (or kept aside until the picture is free).
    Applied,
    /// Older than (or as old as) the picture: ignored.
    Stale,
    /// Not in the picture.
    Unknown,
}

/// One cluster's cached picture.
#[derive(Debug)]
pub struct ClusterCache {
    snapshot: Arc<ClusterSnapshot>,
    /// The account's time at `origin.1`, from the last full observation: maps the runtime's
    /// clock onto the account's. Taken when the observation *ended*, so the mapped clock runs
    /// late, never early (docs/design.md §2).
    origin: (SystemTime, Instant),
    /// Task ARN → position in `snapshot.tasks`.
    index: TaskIndex,
    /// Changes made while a reconcile held the snapshot, merged when it is free.
    aside: HashMap<String, Task>,
    /// Of those, the tasks known from events only (see `ClusterSnapshot::tags_unread`).
    aside_unread: Vec<String>,
    aside_instances: Vec<InstanceChange>,
    /// The gaps of the last full observation (targeted reads add theirs for one reconcile).
    resync_gaps: Vec<String>,
    /// The version of each container instance's last applied event.
    instance_versions: HashMap<String, u64>,
    deadlines: Deadlines,
    /// Healthy RUNNING tasks whose policy has an `unhealthy` limit: re-read on the health
    /// cadence in event mode.
    pub health_watched: Vec<String>,
    /// Tasks an event named that the picture did not hold: described before anything is
    /// decided on them.
    pub to_describe: BTreeSet<String>,
    /// Sightings made by events (a task entering a condition that has no timestamp), for the
    /// controller's record of first sightings.
    pub sighted: Vec<(String, Condition, SystemTime)>,
    /// An event asked for a look at the capacity chain (a service action, a group activity).
    pub refresh_groups: bool,
    /// An event changed the picture in a way only diagnosis can judge (an agent went away).
    pub rediagnose: bool,
    /// The earliest future moment a disconnected agent reaches the drain limit (plus the
    /// slack): a fresh diagnosis is due then.
    pub next_drain: Option<SystemTime>,
    /// When the next full observation is due.
    pub next_resync: Instant,
    /// When the health-watched tasks are read next (event mode only).
    pub next_health: Instant,
    /// When the last full observation ended.
    pub last_resync: Instant,
    /// When the full observation in flight began (it runs without holding the cluster's key).
    pub observing: Option<Instant>,
    /// A full observation was merged and awaits its diagnosis and plan; when it began.
    pub resync_ready: Option<Instant>,
    /// Tasks a targeted read found missing, and tasks it described, while the observation was
    /// in flight: the observation's older picture neither resurrects nor forgets them.
    gone_during: HashSet<String>,
    read_during: HashSet<String>,
    /// Tasks known from events only that joined the picture while the observation was in
    /// flight: an observation that did not list them yet does not forget them.
    unread_during: HashSet<String>,
}

impl ClusterCache {
    /// The picture of a full observation that ended at `read_at`.
    pub fn new(mut snapshot: ClusterSnapshot, read_at: Instant, next_resync: Instant) -> Self {
        snapshot.tasks.shrink_to_fit();
        let mut cache = ClusterCache {
            origin: (snapshot.observed_at, read_at),
            index: TaskIndex::default(),
            aside: HashMap::new(),
            aside_unread: Vec::new(),
            aside_instances: Vec::new(),
            resync_gaps: snapshot.gaps.clone(),
            instance_versions: HashMap::new(),
            snapshot: Arc::new(snapshot),
            deadlines: Deadlines::default(),
            health_watched: Vec::new(),
            to_describe: BTreeSet::new(),
            sighted: Vec::new(),
            refresh_groups: false,
            rediagnose: false,
            next_drain: None,
            next_resync,
            next_health: next_resync,
            last_resync: read_at,
            observing: None,
            resync_ready: None,
            gone_during: HashSet::new(),
            read_during: HashSet::new(),
            unread_during: HashSet::new(),
        };
        cache.reindex();
        cache
    }

    pub fn snapshot(&self) -> &Arc<ClusterSnapshot> {
        &self.snapshot
    }

    pub fn cluster_arn(&self) -> &str {
        &self.snapshot.cluster_arn
    }

    /// The account's time at `now` (runtime clock), as far as the last observation tells.
    pub fn clock(&self, now: Instant) -> SystemTime {
        self.origin.0 + now.saturating_duration_since(self.origin.1)
    }

    /// The runtime instant at which the account's clock reads `t` (now, if `t` is past).
    pub fn instant_of(&self, t: SystemTime) -> Instant {
        self.origin.1 + t.duration_since(self.origin.0).unwrap_or(Duration::ZERO)
    }

    /// Replaces the picture by a full observation that ended at `read_at`; a task (or the
    /// change kept aside for it) whose version is newer than the observation's is kept.
    /// Tasks a targeted read found missing after the observation began are left out; tasks it
    /// described that the observation did not list are kept.
    pub fn replace(&mut self, mut snapshot: ClusterSnapshot, read_at: Instant) {
        self.merge_aside();
        let gone = std::mem::take(&mut self.gone_during);
        let mut read = std::mem::take(&mut self.read_during);
        let mut unread = std::mem::take(&mut self.unread_during);
        self.observing = None;
        snapshot.tasks.retain(|t| !gone.contains(&t.arn));
        for task in &mut snapshot.tasks {
            read.remove(&task.arn);
            unread.remove(&task.arn);
            if let Some(i) = self.index.get(&self.snapshot.tasks, &task.arn) {
                let cached = &self.snapshot.tasks[i];
                if cached.version > task.version {
                    let mut newer = cached.clone();
                    take_read_parts(&mut newer, task);
                    *task = newer;
                }
            }
        }
        for arn in read.iter().filter(|a| !gone.contains(*a)) {
            if let Some(i) = self.index.get(&self.snapshot.tasks, arn) {
                snapshot.tasks.push(self.snapshot.tasks[i].clone());
            }
        }
        for arn in unread.iter().filter(|a| !gone.contains(*a)) {
            if let Some(i) = self.index.get(&self.snapshot.tasks, arn) {
                snapshot.tasks.push(self.snapshot.tasks[i].clone());
                snapshot.tags_unread.insert(arn.clone());
            }
        }
        // The picture is held until the next resync: no growth slack.
        snapshot.tasks.shrink_to_fit();
        self.origin = (snapshot.observed_at, read_at);
        self.resync_gaps = snapshot.gaps.clone();
        self.snapshot = Arc::new(snapshot);
        self.last_resync = read_at;
        self.refresh_groups = false;
        self.rediagnose = false;
        self.reindex();
        let (index, tasks) = (&self.index, &self.snapshot.tasks);
        self.to_describe
            .retain(|arn| index.get(tasks, arn).is_none());
    }

    /// A full observation begins at `began`; until [`ClusterCache::replace`] takes its result,
    /// targeted reads are remembered so the older picture does not undo them.
    pub fn begin_observation(&mut self, began: Instant) {
        self.observing = Some(began);
        self.gone_during.clear();
        self.read_during.clear();
        self.unread_during.clear();
    }

    /// The observation in flight failed or was dropped: nothing of it is merged.
    pub fn abandon_observation(&mut self) {
        self.observing = None;
        self.gone_during.clear();
        self.read_during.clear();
        self.unread_during.clear();
    }

    /// Replaces the picture by a list-and-diff observation ([`crate::cloud::Cloud::resync_cluster`]
    /// given [`ClusterCache::known`]): the tasks it kept undescribed keep their cached picture.
    pub fn replace_diff(&mut self, resync: Resync, read_at: Instant) {
        self.merge_aside();
        let Resync { mut snapshot, kept } = resync;
        snapshot.tasks.reserve_exact(kept.len());
        for arn in &kept {
            if let Some(i) = self.index.get(&self.snapshot.tasks, arn) {
                snapshot.tasks.push(self.snapshot.tasks[i].clone());
            }
        }
        self.replace(snapshot, read_at);
    }

    /// The tasks a list-and-diff observation need not describe: every task of the picture
    /// with its desired status, except those known from events only.
    pub fn known(&self) -> KnownTasks {
        let unread = &self.snapshot.tags_unread;
        let aside = self.aside.values();
        self.snapshot
            .tasks
            .iter()
            .filter(|t| !self.aside.contains_key(&t.arn))
            .chain(aside)
            .filter(|t| !unread.contains(&t.arn) && !self.aside_unread.contains(&t.arn))
            .map(|t| (t.arn.clone(), t.desired_status))
            .collect()
    }

    /// What a list-and-diff resync of this picture costs ([`crate::resync::resync_reads`]).
    pub fn resync_reads(&self) -> u64 {
        crate::resync::resync_reads(&self.snapshot)
    }

    /// Merges a targeted read into the picture: described tasks replace older pictures of
    /// themselves (or join it), missing ones are removed; `gaps` hold for this picture only.
    /// The picture's `observed_at` becomes `now` (the account's clock).
    pub fn merge_reads(
        &mut self,
        reads: TaskReads,
        groups: Vec<GroupRead>,
        now: SystemTime,
        gaps: Vec<String>,
    ) {
        self.merge_aside();
        let observing = self.observing.is_some();
        for arn in reads.tasks.iter().map(|t| &t.arn) {
            self.to_describe.remove(arn);
            if observing {
                self.read_during.insert(arn.clone());
            }
        }
        if observing {
            self.gone_during.extend(reads.missing.iter().cloned());
        }
        let snapshot = Arc::make_mut(&mut self.snapshot);
        for task in reads.tasks {
            snapshot.tags_unread.remove(&task.arn);
            upsert_described(snapshot, &mut self.index, task);
        }
        if !reads.missing.is_empty() {
            let gone: std::collections::HashSet<&String> = reads.missing.iter().collect();
            snapshot.tasks.retain(|t| !gone.contains(&t.arn));
            for arn in &reads.missing {
                snapshot.tags_unread.remove(arn);
                self.to_describe.remove(arn);
                self.deadlines.set(arn, None, now);
            }
        }
        for read in groups {
            if let Some(group) = read.group {
                replace_group(&mut snapshot.auto_scaling_groups, group);
            }
            snapshot.gaps.extend(read.gaps);
        }
        snapshot.observed_at = now;
        snapshot.gaps = self
            .resync_gaps
            .iter()
            .cloned()
            .chain(reads.gaps)
            .chain(gaps)
            .collect();
        if !reads.missing.is_empty() {
            self.reindex();
        }
    }

    /// Applies an event's picture of a known task if it is newer: the cached tags, health and
    /// security groups are kept (events carry none).
    pub fn apply_task(&mut self, mut task: Task) -> Merge {
        let Some(cached) = self.task(&task.arn) else {
            return Merge::Unknown;
        };
        if task.version <= cached.version {
            return Merge::Stale;
        }
        task.tags = cached.tags.clone();
        task.health = cached.health;
        if let (Some(net), Some(old)) = (task.network.as_mut(), cached.network.as_ref()) {
            net.security_groups = old.security_groups.clone();
        } else if task.network.is_none() {
            task.network = cached.network.clone();
        }
        if Arc::get_mut(&mut self.snapshot).is_some() {
            self.merge_aside();
            let snapshot = Arc::make_mut(&mut self.snapshot);
            upsert(snapshot, &mut self.index, task);
        } else {
            self.aside.insert(task.arn.clone(), task);
        }
        Merge::Applied
    }

    /// Adds a task an event named that the picture did not hold, as the event shows it: known
    /// from events only until a read reports its tags ([`ClusterSnapshot::tags_unread`]).
    pub fn insert_unread(&mut self, task: Task) {
        if self.observing.is_some() {
            self.unread_during.insert(task.arn.clone());
        }
        if Arc::get_mut(&mut self.snapshot).is_some() {
            self.merge_aside();
            let snapshot = Arc::make_mut(&mut self.snapshot);
            snapshot.tags_unread.insert(task.arn.clone());
            upsert(snapshot, &mut self.index, task);
        } else {
            self.aside_unread.push(task.arn.clone());
            self.aside.insert(task.arn.clone(), task);
        }
    }

    /// Applies a container instance event if it is newer than the last one applied: its
    /// agent connection and status (an instance not in the picture joins it).
    pub fn apply_instance(&mut self, change: &InstanceChange) -> Merge {
        let arn = &change.container_instance_arn;
        if self
            .instance_versions
            .get(arn)
            .is_some_and(|v| change.version <= *v)
        {
            return Merge::Stale;
        }
        self.instance_versions.insert(arn.clone(), change.version);
        self.aside_instances.push(change.clone());
        if Arc::get_mut(&mut self.snapshot).is_some() {
            self.merge_aside();
        }
        Merge::Applied
    }

    /// The tasks whose newest picture is a change kept aside.
    pub fn aside_arns(&self) -> impl Iterator<Item = &String> {
        self.aside.keys()
    }

    /// The newest picture of a task: a change kept aside, or the snapshot's.
    pub fn task(&self, arn: &str) -> Option<&Task> {
        self.aside.get(arn).or_else(|| {
            let i = self.index.get(&self.snapshot.tasks, arn)?;
            Some(&self.snapshot.tasks[i])
        })
    }

    /// Whether one of the cluster's capacity providers uses the Auto Scaling group `name`.
    pub fn uses_group(&self, name: &str) -> bool {
        let suffix = format!("autoScalingGroupName/{name}");
        self.snapshot
            .auto_scaling_groups
            .iter()
            .any(|g| g.name == name)
            || self.snapshot.capacity_providers.iter().any(|p| {
                p.auto_scaling_group_arn
                    .as_deref()
                    .is_some_and(|a| a == name || a.ends_with(&suffix))
            })
    }

    /// The names of the cluster's Auto Scaling groups.
    pub fn group_names(&self) -> Vec<String> {
        self.snapshot
            .auto_scaling_groups
            .iter()
            .map(|g| g.name.clone())
            .collect()
    }

    /// Merges the changes kept aside (copies the picture only if a reconcile still holds it).
    pub fn merge_aside(&mut self) {
        if self.aside.is_empty() && self.aside_instances.is_empty() {
            return;
        }
        let snapshot = Arc::make_mut(&mut self.snapshot);
        for arn in self.aside_unread.drain(..) {
            if self.index.get(&snapshot.tasks, &arn).is_none() {
                snapshot.tags_unread.insert(arn);
            }
        }
        for change in self.aside_instances.drain(..) {
            merge_instance(&mut snapshot.container_instances, change);
        }
        for (_, task) in self.aside.drain() {
            let newer = self
                .index
                .get(&snapshot.tasks, &task.arn)
                .is_none_or(|i| snapshot.tasks[i].version < task.version);
            if newer {
                upsert(snapshot, &mut self.index, task);
            }
        }
    }

    fn reindex(&mut self) {
        self.index = TaskIndex::of(&self.snapshot.tasks);
    }

    pub fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    pub fn deadlines_mut(&mut self) -> &mut Deadlines {
        &mut self.deadlines
    }
}

/// Task ARN → position in the snapshot's tasks, without a second copy of each ARN: keyed by
/// the ARN's hash, each position checked against the ARN of the task it names. An ARN whose
/// hash another ARN of the cluster already has (a 64-bit collision) is kept by name.
/// `S` hashes the ARNs (a fixed one lets a test make every ARN collide).
#[derive(Debug, Default)]
pub struct TaskIndex<S = RandomState> {
    hasher: S,
    by_hash: HashMap<u64, usize, BuildHasherDefault<HashIsKey>>,
    collided: HashMap<String, usize>,
}

impl<S: BuildHasher + Default> TaskIndex<S> {
    /// The index of every task of `tasks` (of the last, if an ARN is there twice).
    pub fn of(tasks: &[Task]) -> Self {
        let mut index = TaskIndex::default();
        index.by_hash.reserve(tasks.len());
        for (i, task) in tasks.iter().enumerate() {
            index.insert(tasks, &task.arn, i);
        }
        index
    }

    /// Where the task `arn` is in `tasks` (the slice this index was built for).
    pub fn get(&self, tasks: &[Task], arn: &str) -> Option<usize> {
        if let Some(&i) = self.collided.get(arn) {
            return Some(i);
        }
        let &i = self.by_hash.get(&self.hasher.hash_one(arn))?;
        (tasks.get(i)?.arn == arn).then_some(i)
    }

    /// Records that the task `arn` is at `i` (`tasks[i]` may not be there yet).
    pub fn insert(&mut self, tasks: &[Task], arn: &str, i: usize) {
        use std::collections::hash_map::Entry;
        match self.by_hash.entry(self.hasher.hash_one(arn)) {
            Entry::Vacant(slot) => {
                slot.insert(i);
            }
            Entry::Occupied(mut slot) => {
                if tasks.get(*slot.get()).is_none_or(|t| t.arn == arn) {
                    slot.insert(i);
                } else {
                    self.collided.insert(arn.to_string(), i);
                }
            }
        }
    }
}

/// The hasher of a map whose keys are hashes already: the key is its own hash.
#[derive(Debug, Default)]
struct HashIsKey(u64);

impl Hasher for HashIsKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Puts `task` in the snapshot in place of its older picture, or adds it.
fn upsert(snapshot: &mut ClusterSnapshot, index: &mut TaskIndex, task: Task) {
    match index.get(&snapshot.tasks, &task.arn) {
        Some(i) => {
            if snapshot.tasks[i].version <= task.version {
                snapshot.tasks[i] = task;
            }
        }
        None => {
            let i = snapshot.tasks.len();
            index.insert(&snapshot.tasks, &task.arn, i);
            snapshot.tasks.push(task);
        }
    }
}

/// [`upsert`] of a task a read described: when the picture holds a newer one (an event), that
/// one stays, with the parts only a read reports.
fn upsert_described(snapshot: &mut ClusterSnapshot, index: &mut TaskIndex, task: Task) {
    match index.get(&snapshot.tasks, &task.arn) {
        Some(i) if snapshot.tasks[i].version > task.version => {
            take_read_parts(&mut snapshot.tasks[i], &task);
        }
        _ => upsert(snapshot, index, task),
    }
}

/// Gives an event's newer picture of a task the parts events carry none of (tags, health,
/// security groups), from a read of it.
fn take_read_parts(newer: &mut Task, described: &Task) {
    newer.tags = described.tags.clone();
    newer.health = described.health;
    if let (Some(net), Some(read)) = (newer.network.as_mut(), described.network.as_ref()) {
        net.security_groups = read.security_groups.clone();
    }
}

/// Applies a container instance change to the picture (an instance not in it joins it).
fn merge_instance(instances: &mut Vec<ContainerInstance>, change: InstanceChange) {
    match instances
        .iter_mut()
        .find(|ci| ci.arn == change.container_instance_arn)
    {
        Some(ci) => {
            ci.agent_connected = change.agent_connected;
            ci.status = change.status;
            if ci.ec2_instance_id.is_none() {
                ci.ec2_instance_id = change.ec2_instance_id;
            }
        }
        None => instances.push(ContainerInstance {
            arn: change.container_instance_arn,
            ec2_instance_id: change.ec2_instance_id,
            status: change.status,
            agent_connected: change.agent_connected,
            registered_at: None,
        }),
    }
}

fn replace_group(groups: &mut Vec<AutoScalingGroup>, group: AutoScalingGroup) {
    match groups.iter_mut().find(|g| g.name == group.name) {
        Some(g) => *g = group,
        None => groups.push(group),
    }
}

/// The deadlines of a cluster's watched tasks, and when each task is looked at next: at its
/// deadline, or (once past it, stuck and handled or held) again after a retry interval.
#[derive(Debug, Default)]
pub struct Deadlines {
    by_task: HashMap<String, (Deadline, SystemTime)>,
    by_wake: BTreeSet<(SystemTime, String)>,
}

impl Deadlines {
    /// Sets (or with `None` clears) the deadline of a task. One already past at `now` is
    /// looked at again at `retry` instead.
    pub fn set_with_retry(
        &mut self,
        arn: &str,
        deadline: Option<Deadline>,
        now: SystemTime,
        retry: Duration,
    ) {
        if let Some((_, wake)) = self.by_task.remove(arn) {
            self.by_wake.remove(&(wake, arn.to_string()));
        }
        let Some(deadline) = deadline else {
            return;
        };
        let at = deadline.at() + DEADLINE_SLACK;
        let wake = if at > now { at } else { now + retry };
        self.by_task.insert(arn.to_string(), (deadline, wake));
        self.by_wake.insert((wake, arn.to_string()));
    }

    /// Sets (or clears) a deadline; one already past is due right away.
    pub fn set(&mut self, arn: &str, deadline: Option<Deadline>, now: SystemTime) {
        self.set_with_retry(arn, deadline, now, Duration::ZERO);
    }

    pub fn get(&self, arn: &str) -> Option<&Deadline> {
        self.by_task.get(arn).map(|(d, _)| d)
    }

    /// The tasks due by `now`, and the latest of their deadlines (plus the slack).
    pub fn due(&self, now: SystemTime) -> (Vec<String>, Option<SystemTime>) {
        let mut latest = None;
        let arns = self
            .by_wake
            .iter()
            .take_while(|(wake, _)| *wake <= now)
            .map(|(_, arn)| {
                if let Some((d, _)) = self.by_task.get(arn) {
                    let at = d.at() + DEADLINE_SLACK;
                    latest = Some(latest.map_or(at, |l: SystemTime| l.max(at)));
                }
                arn.clone()
            })
            .collect();
        (arns, latest)
    }

    /// When the next task is due.
    pub fn next_wake(&self) -> Option<SystemTime> {
        self.by_wake.first().map(|(wake, _)| *wake)
    }

    /// Replaces every deadline.
    pub fn rebuild<'a>(
        &mut self,
        all: impl IntoIterator<Item = (&'a str, Deadline)>,
        now: SystemTime,
        retry: Duration,
    ) {
        self.by_task.clear();
        self.by_wake.clear();
        for (arn, deadline) in all {
            self.set_with_retry(arn, Some(deadline), now, retry);
        }
    }

    pub fn len(&self) -> usize {
        self.by_task.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_task.is_empty()
    }
}
