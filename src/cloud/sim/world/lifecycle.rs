//! The laws of motion of the simulated world: the timed events that move each task through
//! PROVISIONING → PENDING → ACTIVATING → RUNNING → DEACTIVATING → STOPPING → DEPROVISIONING →
//! STOPPED, set its DescribeTasks timestamps, stop it, and let the service scheduler replace it;
//! and the timed steps of Auto Scaling group instances (handled in `capacity`).

use std::cmp::Reverse;
use std::time::SystemTime;

use super::capacity::InstanceStep;
use super::{ClusterState, Launch, REPLACEMENT_DELAY, STOPPED_RETENTION, SimTask, World};
use crate::cloud::sim::behavior::TaskBehavior;
use crate::cloud::sim::ids;
use crate::domain::{Capacity, DesiredStatus, HealthStatus, Task, TaskStatus, TaskTimestamps};

/// Something due at a moment of virtual time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Event {
    at: SystemTime,
    /// Tie-break: events due at the same moment run in the order they were scheduled.
    seq: u64,
    kind: EventKind,
}

impl Event {
    pub(super) fn at(&self) -> SystemTime {
        self.at
    }
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
    /// A running task's essential container exits; its replacement does what
    /// `World::replacements[replacement]` says.
    Fail {
        cluster: usize,
        key: u64,
        replacement: usize,
    },
    /// An Auto Scaling group tries again launches that failed.
    Retry { group: String },
    /// A step of an Auto Scaling group instance.
    Instance {
        group: String,
        instance: String,
        step: InstanceStep,
    },
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

impl World {
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

    /// Schedules a step of a group instance.
    pub(super) fn schedule_instance(
        &mut self,
        at: SystemTime,
        group: &str,
        instance: &str,
        step: InstanceStep,
    ) {
        self.schedule(
            at,
            EventKind::Instance {
                group: group.to_string(),
                instance: instance.to_string(),
                step,
            },
        );
    }

    /// Schedules a retry of a group's failed launches.
    pub(super) fn schedule_retry(&mut self, at: SystemTime, group: &str) {
        self.schedule(
            at,
            EventKind::Retry {
                group: group.to_string(),
            },
        );
    }

    pub(super) fn create_task(
        &mut self,
        ci: usize,
        launch: Launch,
        behavior: TaskBehavior,
    ) -> String {
        let key = self.next_counter();
        let now = self.now;
        let c = &mut self.clusters[ci];
        let id = ids::hex_id(key);
        let arn = ids::task_arn(&c.name, &id);
        let task = Task {
            arn: arn.clone(),
            cluster_arn: c.arn.as_str().into(),
            task_definition_arn: launch.task_definition_arn.into(),
            group: launch.group.map(Into::into),
            started_by: launch.started_by.map(Into::into),
            last_status: TaskStatus::Provisioning,
            desired_status: DesiredStatus::Running,
            health: HealthStatus::Unknown,
            timestamps: TaskTimestamps {
                created_at: Some(now),
                ..TaskTimestamps::default()
            },
            stopped_reason: None,
            stop_code: None,
            cpu: launch.cpu,
            memory: launch.memory,
            tags: launch.tags,
            capacity: launch.capacity,
            network: launch.network,
            overrides: launch.overrides.into(),
            container_instance_arn: None,
            version: 1,
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
        self.outbox.task(&task, now);
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
    pub(super) fn enter(&mut self, ci: usize, key: u64, status: TaskStatus) {
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
                let open: Vec<usize> = (0..instances.len())
                    .filter(|&i| instances[i].accepts_tasks())
                    .collect();
                if !fargate && t.task.container_instance_arn.is_none() && !open.is_empty() {
                    let chosen = &mut instances[open[*next_placement % open.len()]];
                    chosen.used += 1;
                    t.task.container_instance_arn = Some(chosen.info.arn.clone());
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
        t.task.version += 1;
        self.outbox.task(&t.task, now);
        let held = if status == TaskStatus::Stopped {
            t.task.container_instance_arn.clone()
        } else {
            None
        };
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
            if let Some(arn) = held {
                self.release_slot(ci, &arn);
            }
        } else {
            self.schedule_next(ci, key);
        }
    }

    /// Sets a task's desired status to STOPPED with `reason` (and ECS's `stop_code`) and starts
    /// it on its way down.
    /// A task already desired STOPPED is left as it is (its first reason stands). A stopped
    /// service task is replaced by the scheduler after [`REPLACEMENT_DELAY`] unless
    /// `replace` is false (scale-in).
    pub(super) fn stop(
        &mut self,
        ci: usize,
        key: u64,
        (reason, stop_code): (&str, &str),
        replace: bool,
    ) {
        let now = self.now;
        let Some(t) = self.clusters[ci].tasks.get_mut(&key) else {
            return;
        };
        if t.task.desired_status == DesiredStatus::Stopped {
            return;
        }
        t.task.desired_status = DesiredStatus::Stopped;
        t.task.stopped_reason = Some(reason.to_string());
        t.task.stop_code = Some(stop_code.to_string());
        t.task.timestamps.stopping_at = Some(now);
        t.task.version += 1;
        self.outbox.task(&t.task, now);
        t.generation += 1;
        let current = t.task.last_status;
        let service = t.task.service_name().map(str::to_string);
        self.clusters[ci].waiting.remove(&key);
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

    /// Makes the task `id` of `cluster` fail at `at` (its essential container exits) and its
    /// replacement, launched at once by the service scheduler, behave as `replacement`;
    /// `false` if the cluster holds no such task.
    pub(crate) fn fail_task_at(
        &mut self,
        cluster: &str,
        id: &str,
        at: SystemTime,
        replacement: TaskBehavior,
    ) -> bool {
        let Some(&ci) = self.cluster_index.get(cluster) else {
            return false;
        };
        let Some(&key) = self.clusters[ci].by_id.get(id) else {
            return false;
        };
        self.replacements.push(replacement);
        let replacement = self.replacements.len() - 1;
        let kind = EventKind::Fail {
            cluster: ci,
            key,
            replacement,
        };
        self.schedule(at, kind);
        true
    }

    /// A failure planted by `fail_task_at` strikes (a task already on its way down is left
    /// alone).
    fn fail(&mut self, ci: usize, key: u64, replacement: usize) {
        let Some(t) = self.clusters[ci].tasks.get(&key) else {
            return;
        };
        if t.task.desired_status != DesiredStatus::Running {
            return;
        }
        let service = t.task.service_name().map(str::to_string);
        let reason = (
            "Essential container in task exited",
            "EssentialContainerExited",
        );
        self.stop(ci, key, reason, service.is_none());
        let Some(service) = service else {
            return;
        };
        let behavior = std::mem::take(&mut self.replacements[replacement]);
        if let Some(state) = self.clusters[ci].services.get_mut(&service) {
            state.spec.launch_behaviors.push_front(behavior);
        }
        self.launch_service_task(ci, &service);
    }

    /// StopTask on the task with id `id`; `false` if the cluster holds no such task.
    pub(crate) fn stop_task(&mut self, cluster: &str, id: &str, reason: &str) -> bool {
        let Some(&ci) = self.cluster_index.get(cluster) else {
            return false;
        };
        let Some(&key) = self.clusters[ci].by_id.get(id) else {
            return false;
        };
        self.stop(ci, key, (reason, "UserInitiated"), true);
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
                                self.leave_provisioning(cluster, key);
                                return;
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
                    // Neither is a state change, so neither is told (ECS's events carry no
                    // health), but both are changes of the task.
                    Step::PullStart => {
                        if t.task.last_status == TaskStatus::Pending
                            && t.task.timestamps.pull_started_at.is_none()
                        {
                            t.task.timestamps.pull_started_at = Some(self.now);
                            t.task.version += 1;
                        }
                    }
                    Step::Unhealthy => {
                        if t.task.last_status == TaskStatus::Running {
                            t.task.health = HealthStatus::Unhealthy;
                            t.task.version += 1;
                        }
                    }
                    Step::StopOnItsOwn => {
                        let (reason, code) = if t.task.last_status.is_way_up() {
                            let reason = t.behavior.start_failure.as_deref();
                            let reason = reason.unwrap_or("Task failed to start").to_string();
                            (reason, "TaskFailedToStart")
                        } else {
                            let reason = "Essential container in task exited".to_string();
                            (reason, "EssentialContainerExited")
                        };
                        self.stop(cluster, key, (&reason, code), true);
                    }
                }
            }
            EventKind::Launch { cluster, service } => self.launch_service_task(cluster, &service),
            EventKind::Retry { group } => self.retry_launches(&group),
            EventKind::Instance {
                group,
                instance,
                step,
            } => self.instance_step(&group, &instance, step),
            EventKind::Fail {
                cluster,
                key,
                replacement,
            } => self.fail(cluster, key, replacement),
            EventKind::Expire { cluster, key } => {
                let c = &mut self.clusters[cluster];
                if let Some(t) = c.tasks.remove(&key) {
                    c.by_id.remove(t.task.id());
                }
            }
        }
    }
}
