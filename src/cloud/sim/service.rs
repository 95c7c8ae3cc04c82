//! What a simulated service is made of: the spec a scenario hands to the service scheduler.

use std::collections::VecDeque;

use super::behavior::TaskBehavior;
use crate::domain::{Capacity, NetworkConfig, Tags};

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
    /// Task-level CPU units and memory (MiB) of its task definition; `None`: set only on the
    /// containers. A task larger than every instance type its capacity provider's group
    /// launches never places.
    pub cpu: Option<u32>,
    pub memory: Option<u32>,
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
            cpu: None,
            memory: None,
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

    /// Task-level CPU units and memory (MiB).
    pub fn with_task_size(mut self, cpu: u32, memory: u32) -> Self {
        self.cpu = Some(cpu);
        self.memory = Some(memory);
        self
    }

    pub fn with_task_definition(mut self, task_definition: &str) -> Self {
        self.task_definition = task_definition.to_string();
        self
    }
}
