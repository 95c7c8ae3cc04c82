//! The simulated account's state and its laws: clusters, services, tasks and container
//! instances, and a queue of timed events that moves tasks through the ECS lifecycle and lets
//! the service scheduler replace stopped tasks.
//!
//! Time is explicit here: every operation happens at the world's `now`, and
//! [`World::advance_to`] processes due events in time order (a binary heap, so observing a large
//! account costs O(events · log events), never O(n²)). The world knows nothing of tokio.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use super::behavior::TaskBehavior;
use super::ids;
use crate::domain::{
    Capacity, ContainerInstance, DesiredStatus, HealthStatus, NetworkConfig, RunTaskRequest,
    Service, Tags, Task, TaskOverrides, TaskStatus, TaskTimestamps,
};

/// How long ECS keeps reporting a STOPPED task.
pub const STOPPED_RETENTION: Duration = Duration::from_secs(3600);
/// How long the service scheduler takes to launch a replacement for a stopped task.
pub const REPLACEMENT_DELAY: Duration = Duration::from_secs(5);

/// What a service is made of, for [`super::SimAccount::add_service`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    pub desired_count: u32,
    /// `family`, `family:revision` or a task definition ARN.
    pub task_definition: String,
    /// What the next launches do, in order; after that, `default_behavior`.
    pub launch_behaviors: VecDeque<TaskBehavior>,
    pub default_behavior: TaskBehavior,
    pub tags: Tags,
    /// Copy the service's tags onto its tasks (`propagateTags: SERVICE`).
    pub propagate_tags: bool,
    pub capacity: Capacity,
    pub network: Option<NetworkConfig>,
}

impl ServiceSpec {
    /// A service of healthy EC2 tasks from task definition `NAME:1`.
    pub fn new(name: &str, desired_count: u32) -> Self {
        ServiceSpec {
            name: name.to_string(),
            desired_count,
            task_definition: format!("{name}:1"),
            launch_behaviors: VecDeque::new(),
            default_behavior: TaskBehavior::healthy(),
            tags: Tags::new(),
            propagate_tags: true,
            capacity: Capacity::LaunchType("EC2".to_string()),
            network: None,
        }
    }

    /// Queues `behavior` for the next `count` launches.
    pub fn then_launch(mut self, count: usize, behavior: TaskBehavior) -> Self {
        self.launch_behaviors
            .extend(std::iter::repeat_n(behavior, count));
        self
    }

    pub fn with_default_behavior(mut self, behavior: TaskBehavior) -> Self {
        self.default_behavior = behavior;
        self
    }

    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_string(), value.to_string());
        self
    }

    pub fn with_capacity(mut self, capacity: Capacity) -> Self {
        self.capacity = capacity;
        self
    }

    pub fn with_network(mut self, network: NetworkConfig) -> Self {
        self.network = Some(network);
        self
    }

    pub fn with_task_definition(mut self, task_definition: &str) -> Self {
        self.task_definition = task_definition.to_string();
        self
    }
}

/// One simulated task: what DescribeTasks shows, and what it will do next.
#[derive(Debug, Clone)]
struct SimTask {
    task: Task,
    behavior: TaskBehavior,
    /// Bumped when the task is stopped, so events scheduled for its way up are ignored.
    generation: u64,
}

#[derive(Debug)]
struct ServiceState {
    spec: ServiceSpec,
    arn: String,
    started_by: String,
    /// Tasks of this service with desiredStatus RUNNING.
    active: u32,
}

#[derive(Debug)]
pub(crate) struct ClusterState {
    name: String,
    arn: String,
    services: BTreeMap<String, ServiceState>,
    /// Keyed by creation counter, so iteration is in launch order.
    tasks: BTreeMap<u64, SimTask>,
    by_id: HashMap<String, u64>,
    instances: Vec<ContainerInstance>,
    next_placement: usize,
    standalone_launches: VecDeque<TaskBehavior>,
    standalone_default: TaskBehavior,
    client_tokens: HashMap<String, String>,
}

impl ClusterState {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn arn(&self) -> &str {
        &self.arn
    }

    /// Every task ECS still reports, in launch order.
    pub(crate) fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values().map(|t| &t.task)
    }

    pub(crate) fn task_count(&self) -> usize {
        self.tasks.len()
    }

    pub(crate) fn task_by_id(&self, id: &str) -> Option<&Task> {
        self.by_id
            .get(id)
            .and_then(|key| self.tasks.get(key))
            .map(|t| &t.task)
    }

    pub(crate) fn service_count(&self) -> usize {
        self.services.len()
    }

    /// The services with their running and pending counts (pending = on the way up).
    pub(crate) fn services(&self) -> Vec<Service> {
        let mut counts: HashMap<&str, (u32, u32)> = HashMap::new();
        for task in self.tasks() {
            if task.desired_status != DesiredStatus::Running {
                continue;
            }
            if let Some(name) = task.service_name() {
                let entry = counts.entry(name).or_default();
                if task.last_status == TaskStatus::Running {
                    entry.0 += 1;
                } else if task.last_status.is_way_up() {
                    entry.1 += 1;
                }
            }
        }
        self.services
            .values()
            .map(|s| {
                let (running, pending) = counts
                    .get(s.spec.name.as_str())
                    .copied()
                    .unwrap_or_default();
                Service {
                    name: s.spec.name.clone(),
                    arn: s.arn.clone(),
                    desired_count: s.spec.desired_count,
                    running_count: running,
                    pending_count: pending,
                }
            })
            .collect()
    }

    pub(crate) fn container_instances(&self) -> &[ContainerInstance] {
        &self.instances
    }
}

/// Something due at a moment of virtual time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: SystemTime,
    /// Tie-break: events due at the same moment run in the order they were scheduled.
    seq: u64,
    kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    /// A step of one task, valid only while the task's generation is unchanged.
    Task {
        cluster: usize,
        key: u64,
        generation: u64,
        step: Step,
    },
    /// The service scheduler checks whether the service is short of tasks and launches one.
    Launch { cluster: usize, service: String },
    /// A STOPPED task is forgotten.
    Expire { cluster: usize, key: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// Leave the current state for the next one.
    Advance,
    /// The image pull starts (during PENDING).
    PullStart,
    /// healthStatus turns UNHEALTHY.
    Unhealthy,
    /// The task stops by itself.
    StopOnItsOwn,
}

/// What a task is launched with.
struct Launch {
    task_definition_arn: String,
    group: Option<String>,
    started_by: Option<String>,
    tags: Tags,
    capacity: Capacity,
    network: Option<NetworkConfig>,
    overrides: TaskOverrides,
}

/// The whole simulated account.
#[derive(Debug)]
pub(crate) struct World {
    now: SystemTime,
    clusters: Vec<ClusterState>,
    cluster_index: BTreeMap<String, usize>,
    events: BinaryHeap<Reverse<Event>>,
    next_seq: u64,
    next_id: u64,
}

impl World {
    pub(crate) fn new(now: SystemTime) -> Self {
        World {
            now,
            clusters: Vec::new(),
            cluster_index: BTreeMap::new(),
            events: BinaryHeap::new(),
            next_seq: 0,
            next_id: 0,
        }
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.now
    }

    /// Processes every event due up to `t`, in time order, and moves the world's time to `t`
    /// (never backwards).
    pub(crate) fn advance_to(&mut self, t: SystemTime) {
        while self.events.peek().is_some_and(|Reverse(e)| e.at <= t) {
            let Some(Reverse(event)) = self.events.pop() else {
                break;
            };
            self.now = self.now.max(event.at);
            self.handle(event.kind);
        }
        self.now = self.now.max(t);
    }

    fn schedule(&mut self, at: SystemTime, kind: EventKind) {
        self.next_seq += 1;
        self.events.push(Reverse(Event {
            at,
            seq: self.next_seq,
            kind,
        }));
    }

    fn next_counter(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    // ---- clusters ----

    pub(crate) fn cluster_names(&self) -> Vec<String> {
        self.cluster_index.keys().cloned().collect()
    }

    pub(crate) fn cluster(&self, name: &str) -> Option<&ClusterState> {
        self.cluster_index.get(name).map(|&i| &self.clusters[i])
    }

    pub(crate) fn clusters(&self) -> impl Iterator<Item = &ClusterState> {
        self.clusters.iter()
    }

    fn index(&self, cluster: &str) -> usize {
        *self
            .cluster_index
            .get(cluster)
            .unwrap_or_else(|| panic!("simulated account has no cluster {cluster:?}"))
    }

    pub(crate) fn has_cluster(&self, name: &str) -> bool {
        self.cluster_index.contains_key(name)
    }

    /// Creates a cluster (or returns the existing one's ARN).
    pub(crate) fn add_cluster(&mut self, name: &str) -> String {
        if let Some(c) = self.cluster(name) {
            return c.arn.clone();
        }
        let arn = ids::cluster_arn(name);
        self.cluster_index
            .insert(name.to_string(), self.clusters.len());
        self.clusters.push(ClusterState {
            name: name.to_string(),
            arn: arn.clone(),
            services: BTreeMap::new(),
            tasks: BTreeMap::new(),
            by_id: HashMap::new(),
            instances: Vec::new(),
            next_placement: 0,
            standalone_launches: VecDeque::new(),
            standalone_default: TaskBehavior::healthy(),
            client_tokens: HashMap::new(),
        });
        arn
    }

    // ---- container instances ----

    /// Registers an ACTIVE container instance with a connected agent; `None` makes up an EC2
    /// instance id.
    pub(crate) fn add_container_instance(&mut self, cluster: &str, ec2: Option<&str>) -> String {
        let ci = self.index(cluster);
        let counter = self.next_counter();
        let ec2 = ec2.map_or_else(|| ids::ec2_instance_id(counter), str::to_string);
        let arn = ids::container_instance_arn(cluster, &ids::hex_id(counter));
        let now = self.now;
        self.clusters[ci].instances.push(ContainerInstance {
            arn: arn.clone(),
            ec2_instance_id: Some(ec2),
            status: "ACTIVE".to_string(),
            agent_connected: true,
            registered_at: Some(now),
        });
        arn
    }

    /// The container instance with ARN `arn` in `cluster`, to change it.
    pub(crate) fn container_instance_mut(
        &mut self,
        cluster: &str,
        arn: &str,
    ) -> Option<&mut ContainerInstance> {
        let ci = *self.cluster_index.get(cluster)?;
        self.clusters[ci]
            .instances
            .iter_mut()
            .find(|i| i.arn == arn)
    }

    // ---- services ----

    /// Creates a service and launches its desired count of tasks now.
    pub(crate) fn add_service(&mut self, cluster: &str, spec: ServiceSpec) -> String {
        let ci = self.index(cluster);
        assert!(
            !self.clusters[ci].services.contains_key(&spec.name),
            "service {:?} already exists in cluster {cluster:?}",
            spec.name
        );
        let arn = ids::service_arn(cluster, &spec.name);
        let counter = self.next_counter();
        let name = spec.name.clone();
        let desired = spec.desired_count;
        self.clusters[ci].services.insert(
            name.clone(),
            ServiceState {
                spec,
                arn: arn.clone(),
                started_by: format!("ecs-svc/{}", ids::deployment_number(counter)),
                active: 0,
            },
        );
        for _ in 0..desired {
            self.launch_service_task(ci, &name);
        }
        arn
    }

    fn service_mut(&mut self, cluster: &str, service: &str) -> (usize, &mut ServiceState) {
        let ci = self.index(cluster);
        let state = self.clusters[ci]
            .services
            .get_mut(service)
            .unwrap_or_else(|| panic!("cluster {cluster:?} has no service {service:?}"));
        (ci, state)
    }

    pub(crate) fn push_service_launch(
        &mut self,
        cluster: &str,
        service: &str,
        behavior: TaskBehavior,
    ) {
        self.service_mut(cluster, service)
            .1
            .spec
            .launch_behaviors
            .push_back(behavior);
    }

    pub(crate) fn set_service_default(
        &mut self,
        cluster: &str,
        service: &str,
        behavior: TaskBehavior,
    ) {
        self.service_mut(cluster, service).1.spec.default_behavior = behavior;
    }

    /// Changes a service's desired count: the scheduler launches the missing tasks now, or
    /// stops the newest surplus ones.
    pub(crate) fn set_desired_count(&mut self, cluster: &str, service: &str, desired: u32) {
        let (ci, state) = self.service_mut(cluster, service);
        state.spec.desired_count = desired;
        let active = state.active;
        let reason = format!(
            "Scaling activity initiated by (deployment {})",
            state.started_by
        );
        if active < desired {
            for _ in active..desired {
                self.launch_service_task(ci, service);
            }
        } else if active > desired {
            let surplus: Vec<u64> = self.clusters[ci]
                .tasks
                .iter()
                .rev()
                .filter(|(_, t)| {
                    t.task.desired_status == DesiredStatus::Running
                        && t.task.service_name() == Some(service)
                })
                .map(|(&key, _)| key)
                .take((active - desired) as usize)
                .collect();
            for key in surplus {
                self.stop(ci, key, &reason, false);
            }
        }
    }

    fn launch_service_task(&mut self, ci: usize, service: &str) {
        let Some(state) = self.clusters[ci].services.get_mut(service) else {
            return;
        };
        if state.active >= state.spec.desired_count {
            return;
        }
        state.active += 1;
        let behavior = state
            .spec
            .launch_behaviors
            .pop_front()
            .unwrap_or_else(|| state.spec.default_behavior.clone());
        let launch = Launch {
            task_definition_arn: ids::task_definition_arn(&state.spec.task_definition),
            group: Some(format!("service:{service}")),
            started_by: Some(state.started_by.clone()),
            tags: if state.spec.propagate_tags {
                state.spec.tags.clone()
            } else {
                Tags::new()
            },
            capacity: state.spec.capacity.clone(),
            network: state.spec.network.clone(),
            overrides: TaskOverrides::default(),
        };
        self.create_task(ci, launch, behavior);
    }

    // ---- standalone tasks ----

    pub(crate) fn push_standalone_launch(&mut self, cluster: &str, behavior: TaskBehavior) {
        let ci = self.index(cluster);
        self.clusters[ci].standalone_launches.push_back(behavior);
    }

    pub(crate) fn set_standalone_default(&mut self, cluster: &str, behavior: TaskBehavior) {
        let ci = self.index(cluster);
        self.clusters[ci].standalone_default = behavior;
    }

    /// RunTask: starts a standalone task, or returns the task an earlier request with the same
    /// non-empty client token started. `behavior` `None` takes the cluster's next queued
    /// standalone behavior, or its default.
    pub(crate) fn run_task(
        &mut self,
        cluster: &str,
        request: &RunTaskRequest,
        behavior: Option<TaskBehavior>,
    ) -> String {
        let ci = self.index(cluster);
        let c = &mut self.clusters[ci];
        if !request.client_token.is_empty()
            && let Some(arn) = c.client_tokens.get(&request.client_token)
        {
            return arn.clone();
        }
        let behavior = behavior.unwrap_or_else(|| {
            c.standalone_launches
                .pop_front()
                .unwrap_or_else(|| c.standalone_default.clone())
        });
        let task_definition_arn = ids::task_definition_arn(&request.task_definition);
        let group = request.group.clone().unwrap_or_else(|| {
            format!(
                "family:{}",
                ids::task_definition_family(&task_definition_arn)
            )
        });
        let launch = Launch {
            task_definition_arn,
            group: Some(group),
            started_by: request.started_by.clone(),
            tags: request.tags.clone(),
            capacity: request.capacity.clone(),
            network: request.network.clone(),
            overrides: request.overrides.clone(),
        };
        let arn = self.create_task(ci, launch, behavior);
        if !request.client_token.is_empty() {
            self.clusters[ci]
                .client_tokens
                .insert(request.client_token.clone(), arn.clone());
        }
        arn
    }

    // ---- the lifecycle ----

    fn create_task(&mut self, ci: usize, launch: Launch, behavior: TaskBehavior) -> String {
        let key = self.next_counter();
        let now = self.now;
        let c = &mut self.clusters[ci];
        let id = ids::hex_id(key);
        let arn = ids::task_arn(&c.name, &id);
        let task = Task {
            arn: arn.clone(),
            cluster_arn: c.arn.clone(),
            task_definition_arn: launch.task_definition_arn,
            group: launch.group,
            started_by: launch.started_by,
            last_status: TaskStatus::Provisioning,
            desired_status: DesiredStatus::Running,
            health: HealthStatus::Unknown,
            timestamps: TaskTimestamps {
                created_at: Some(now),
                ..TaskTimestamps::default()
            },
            stopped_reason: None,
            tags: launch.tags,
            capacity: launch.capacity,
            network: launch.network,
            overrides: launch.overrides,
            container_instance_arn: None,
        };
        if let Some(after) = behavior.stop_on_its_own_after {
            self.schedule(
                now + after,
                EventKind::Task {
                    cluster: ci,
                    key,
                    generation: 0,
                    step: Step::StopOnItsOwn,
                },
            );
        }
        let c = &mut self.clusters[ci];
        c.by_id.insert(id, key);
        c.tasks.insert(
            key,
            SimTask {
                task,
                behavior,
                generation: 0,
            },
        );
        self.schedule_next(ci, key);
        arn
    }

    /// Schedules the move out of the task's current state, unless it stays there.
    fn schedule_next(&mut self, ci: usize, key: u64) {
        let Some(t) = self.clusters[ci].tasks.get(&key) else {
            return;
        };
        let status = t.task.last_status;
        if t.behavior.hangs_at(status) {
            return;
        }
        if let Some(dwell) = t.behavior.dwell.of(status) {
            let generation = t.generation;
            self.schedule(
                self.now + dwell,
                EventKind::Task {
                    cluster: ci,
                    key,
                    generation,
                    step: Step::Advance,
                },
            );
        }
    }

    /// Moves a task into `status` now, setting the timestamps that moment sets.
    fn enter(&mut self, ci: usize, key: u64, status: TaskStatus) {
        let now = self.now;
        let ClusterState {
            tasks,
            instances,
            next_placement,
            ..
        } = &mut self.clusters[ci];
        let Some(t) = tasks.get_mut(&key) else {
            return;
        };
        let generation = t.generation;
        let mut follow_up = None;
        let ts = &mut t.task.timestamps;
        match status {
            TaskStatus::Pending => {
                ts.connectivity_at = Some(now);
                let fargate = t.task.capacity == Capacity::LaunchType("FARGATE".to_string());
                let active: Vec<&ContainerInstance> =
                    instances.iter().filter(|i| i.status == "ACTIVE").collect();
                if !fargate && !active.is_empty() {
                    let chosen = active[*next_placement % active.len()];
                    t.task.container_instance_arn = Some(chosen.arn.clone());
                    *next_placement += 1;
                }
                let pull_after = t.behavior.dwell.pending / 4;
                follow_up = Some((now + pull_after, Step::PullStart));
            }
            TaskStatus::Activating => {
                ts.pull_started_at.get_or_insert(now);
                ts.pull_stopped_at = Some(now);
            }
            TaskStatus::Running => {
                ts.started_at = Some(now);
                t.task.health = HealthStatus::Healthy;
                if let Some(after) = t.behavior.unhealthy_after {
                    follow_up = Some((now + after, Step::Unhealthy));
                }
            }
            TaskStatus::Deprovisioning => {
                if ts.pull_started_at.is_some() {
                    ts.execution_stopped_at.get_or_insert(now);
                }
            }
            TaskStatus::Stopped => {
                ts.stopped_at = Some(now);
            }
            TaskStatus::Provisioning | TaskStatus::Deactivating | TaskStatus::Stopping => {}
        }
        t.task.last_status = status;
        if let Some((at, step)) = follow_up {
            self.schedule(
                at,
                EventKind::Task {
                    cluster: ci,
                    key,
                    generation,
                    step,
                },
            );
        }
        if status == TaskStatus::Stopped {
            self.schedule(
                now + STOPPED_RETENTION,
                EventKind::Expire { cluster: ci, key },
            );
        } else {
            self.schedule_next(ci, key);
        }
    }

    /// Sets a task's desired status to STOPPED with `reason` and starts it on its way down.
    /// A task already desired STOPPED is left as it is (its first reason stands). A stopped
    /// service task is replaced by the scheduler after [`REPLACEMENT_DELAY`] unless
    /// `replace` is false (scale-in).
    fn stop(&mut self, ci: usize, key: u64, reason: &str, replace: bool) {
        let now = self.now;
        let Some(t) = self.clusters[ci].tasks.get_mut(&key) else {
            return;
        };
        if t.task.desired_status == DesiredStatus::Stopped {
            return;
        }
        t.task.desired_status = DesiredStatus::Stopped;
        t.task.stopped_reason = Some(reason.to_string());
        t.task.timestamps.stopping_at = Some(now);
        t.generation += 1;
        let current = t.task.last_status;
        let service = t.task.service_name().map(str::to_string);
        let next = if current.is_way_up() {
            Some(TaskStatus::Deprovisioning)
        } else if current == TaskStatus::Running {
            Some(TaskStatus::Deactivating)
        } else {
            None
        };
        if let Some(next) = next {
            self.enter(ci, key, next);
        }
        if let Some(service) = service
            && let Some(state) = self.clusters[ci].services.get_mut(&service)
        {
            state.active = state.active.saturating_sub(1);
            if replace {
                self.schedule(
                    now + REPLACEMENT_DELAY,
                    EventKind::Launch {
                        cluster: ci,
                        service,
                    },
                );
            }
        }
    }

    /// StopTask on the task with id `id`; `false` if the cluster holds no such task.
    pub(crate) fn stop_task(&mut self, cluster: &str, id: &str, reason: &str) -> bool {
        let Some(&ci) = self.cluster_index.get(cluster) else {
            return false;
        };
        let Some(&key) = self.clusters[ci].by_id.get(id) else {
            return false;
        };
        self.stop(ci, key, reason, true);
        true
    }

    fn handle(&mut self, kind: EventKind) {
        match kind {
            EventKind::Task {
                cluster,
                key,
                generation,
                step,
            } => {
                let Some(t) = self.clusters[cluster].tasks.get_mut(&key) else {
                    return;
                };
                if t.generation != generation {
                    return;
                }
                match step {
                    Step::Advance => {
                        let next = match (t.task.desired_status, t.task.last_status) {
                            (DesiredStatus::Running, TaskStatus::Provisioning) => {
                                TaskStatus::Pending
                            }
                            (DesiredStatus::Running, TaskStatus::Pending) => TaskStatus::Activating,
                            (DesiredStatus::Running, TaskStatus::Activating) => TaskStatus::Running,
                            (_, TaskStatus::Deactivating) => TaskStatus::Stopping,
                            (_, TaskStatus::Stopping) => TaskStatus::Deprovisioning,
                            (_, TaskStatus::Deprovisioning) => TaskStatus::Stopped,
                            _ => return,
                        };
                        self.enter(cluster, key, next);
                    }
                    Step::PullStart => {
                        if t.task.last_status == TaskStatus::Pending {
                            t.task.timestamps.pull_started_at.get_or_insert(self.now);
                        }
                    }
                    Step::Unhealthy => {
                        if t.task.last_status == TaskStatus::Running {
                            t.task.health = HealthStatus::Unhealthy;
                        }
                    }
                    Step::StopOnItsOwn => {
                        let reason = if t.task.last_status.is_way_up() {
                            "Task failed to start"
                        } else {
                            "Essential container in task exited"
                        };
                        self.stop(cluster, key, reason, true);
                    }
                }
            }
            EventKind::Launch { cluster, service } => self.launch_service_task(cluster, &service),
            EventKind::Expire { cluster, key } => {
                let c = &mut self.clusters[cluster];
                if let Some(t) = c.tasks.remove(&key) {
                    c.by_id.remove(t.task.id());
                }
            }
        }
    }
}
