//! The simulated account's state: clusters, services (and their scheduler's launches),
//! standalone tasks, container instances, and the capacity chain (launch templates, Auto
//! Scaling groups, capacity providers). How tasks move is in `lifecycle`; how groups, their
//! instances and task placement on them move is in `capacity`.
//!
//! Time is explicit here: every operation happens at the world's `now`, and
//! [`World::advance_to`] processes due events in time order (a binary heap, so observing a large
//! account costs O(events · log events), never O(n²)). The world knows nothing of tokio.

mod capacity;
mod lifecycle;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use super::behavior::TaskBehavior;
use super::events::Outbox;
use super::ids;
pub use super::service::ServiceSpec;
use crate::domain::{
    Capacity, ContainerInstance, DesiredStatus, InstanceTypeSize, NetworkConfig, RunTaskRequest,
    Service, ServiceEvent, Tags, Task, TaskOverrides, TaskStatus,
};

/// How long ECS keeps reporting a STOPPED task.
pub const STOPPED_RETENTION: Duration = Duration::from_secs(3600);
/// How long the service scheduler takes to launch a replacement for a stopped task.
pub const REPLACEMENT_DELAY: Duration = Duration::from_secs(5);

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
    /// Its events, newest first, at most [`SERVICE_EVENTS_KEPT`].
    events: VecDeque<ServiceEvent>,
}

/// Events DescribeServices keeps per service.
pub const SERVICE_EVENTS_KEPT: usize = 100;

/// One cluster of the simulated account.
#[derive(Debug)]
pub(crate) struct ClusterState {
    name: String,
    arn: String,
    services: BTreeMap<String, ServiceState>,
    /// Keyed by creation counter, so iteration is in launch order.
    tasks: BTreeMap<u64, SimTask>,
    by_id: HashMap<String, u64>,
    instances: Vec<SimInstance>,
    next_placement: usize,
    providers: Vec<capacity::SimProvider>,
    /// Tasks in PROVISIONING waiting for a free slot on their capacity provider's instances,
    /// by key (launch order).
    waiting: BTreeSet<u64>,
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
                    events: s.events.iter().cloned().collect(),
                }
            })
            .collect()
    }

    /// The container instances ECS reports (deregistered ones are gone).
    pub(crate) fn container_instances(&self) -> Vec<ContainerInstance> {
        self.instances.iter().map(|i| i.info.clone()).collect()
    }

    pub(crate) fn container_instance_count(&self) -> usize {
        self.instances.len()
    }
}

/// One simulated container instance: what DescribeContainerInstances shows, and its slots.
#[derive(Debug, Clone)]
pub(crate) struct SimInstance {
    info: ContainerInstance,
    /// Tasks it can hold at once; `None`: unlimited (instances added by hand).
    slots: Option<u32>,
    /// Tasks placed on it that are not yet STOPPED.
    used: u32,
    /// The Auto Scaling group whose instance it is.
    group: Option<String>,
    /// Its instance type's size; `None`: any task fits (instances added by hand, unknown
    /// types).
    size: Option<InstanceTypeSize>,
    /// ECS's `version` of the container instance: grows with every change.
    version: u64,
}

impl SimInstance {
    fn has_room(&self) -> bool {
        self.slots.is_none_or(|s| self.used < s)
    }

    /// Whether a task may be placed on it now.
    fn accepts_tasks(&self) -> bool {
        self.info.status == "ACTIVE" && self.info.agent_connected && self.has_room()
    }

    /// What the instance lacks to hold a task of `cpu` units and `memory` MiB at all, by its
    /// instance type; `None` if it fits.
    fn lacks(&self, cpu: Option<u32>, memory: Option<u32>) -> Option<&'static str> {
        let size = self.size.as_ref()?;
        if memory.is_some_and(|m| u64::from(m) > size.memory_mib) {
            Some("memory")
        } else if cpu.is_some_and(|c| c > size.vcpus.saturating_mul(1024)) {
            Some("CPU")
        } else {
            None
        }
    }
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
    /// Task-level CPU units and memory (MiB).
    cpu: Option<u32>,
    memory: Option<u32>,
}

/// The whole simulated account.
#[derive(Debug)]
pub(crate) struct World {
    now: SystemTime,
    clusters: Vec<ClusterState>,
    cluster_index: BTreeMap<String, usize>,
    events: BinaryHeap<Reverse<lifecycle::Event>>,
    next_seq: u64,
    next_id: u64,
    templates: BTreeMap<String, capacity::TemplateState>,
    groups: BTreeMap<String, capacity::GroupState>,
    /// The events of the changes, once a queue listens (`events`).
    outbox: Outbox,
    /// What the replacements of tasks failed by `fail_task_at` do, by failure.
    replacements: Vec<TaskBehavior>,
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
            templates: BTreeMap::new(),
            groups: BTreeMap::new(),
            outbox: Outbox::default(),
            replacements: Vec::new(),
        }
    }

    pub(crate) fn outbox_mut(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// When the world next changes by itself (the earliest timed event), if ever.
    pub(crate) fn next_due(&self) -> Option<SystemTime> {
        self.events.peek().map(|Reverse(e)| e.at())
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.now
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
            providers: Vec::new(),
            waiting: BTreeSet::new(),
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
        let instance = SimInstance {
            info: ContainerInstance {
                arn: arn.clone(),
                ec2_instance_id: Some(ec2),
                status: "ACTIVE".to_string(),
                agent_connected: true,
                registered_at: Some(now),
            },
            slots: None,
            used: 0,
            group: None,
            size: None,
            version: 1,
        };
        self.add_instance(ci, instance);
        arn
    }

    /// Registers `instance` with cluster `ci` (telling it), then places waiting tasks.
    fn add_instance(&mut self, ci: usize, instance: SimInstance) {
        let c = &mut self.clusters[ci];
        self.outbox
            .container_instance(&c.arn, &instance.info, instance.version, self.now);
        c.instances.push(instance);
        self.place_waiting(ci);
    }

    /// Changes the container instance with ARN `arn` in `cluster` with `f`, then places
    /// waiting tasks (the change may have made room); `false` if there is no such instance.
    pub(crate) fn change_container_instance(
        &mut self,
        cluster: &str,
        arn: &str,
        f: impl FnOnce(&mut ContainerInstance),
    ) -> bool {
        let Some(&ci) = self.cluster_index.get(cluster) else {
            return false;
        };
        let c = &mut self.clusters[ci];
        let Some(instance) = c.instances.iter_mut().find(|i| i.info.arn == arn) else {
            return false;
        };
        let before = instance.info.clone();
        f(&mut instance.info);
        if instance.info != before {
            instance.version += 1;
            self.outbox
                .container_instance(&c.arn, &instance.info, instance.version, self.now);
        }
        self.place_waiting(ci);
        true
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
                events: VecDeque::new(),
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
                self.stop(ci, key, (&reason, "ServiceSchedulerInitiated"), false);
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
            cpu: state.spec.cpu,
            memory: state.spec.memory,
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
            cpu: task_size(request.overrides.cpu.as_deref()),
            memory: task_size(request.overrides.memory.as_deref()),
        };
        let arn = self.create_task(ci, launch, behavior);
        if !request.client_token.is_empty() {
            self.clusters[ci]
                .client_tokens
                .insert(request.client_token.clone(), arn.clone());
        }
        arn
    }
}

/// A task-level size override (`"1024"`); anything else (`"1 vCPU"`) counts as unset.
fn task_size(text: Option<&str>) -> Option<u32> {
    text.and_then(|t| t.trim().parse().ok())
}
