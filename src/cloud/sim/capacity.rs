//! What the simulated capacity chain is made of: launch template versions and how their
//! instances behave, Auto Scaling group specs, and the timings of EC2 and Auto Scaling.
//!
//! The chain, as on AWS: a cluster's capacity provider names an Auto Scaling group; the group
//! launches EC2 instances from a launch template version (resolved at launch time); an instance
//! goes Pending → InService, boots, and, if its version's UserData works, registers with the
//! cluster as a container instance with a fixed number of task slots. Tasks placed through
//! such a provider wait in PROVISIONING for a free slot. The laws of motion are in
//! `world::capacity`.

use std::time::Duration;

use crate::domain::Tags;

/// How long an instance stays Pending before it is InService.
pub const INSTANCE_START: Duration = Duration::from_secs(30);
/// How long an instance stays Terminating before it is gone.
pub const INSTANCE_STOP: Duration = Duration::from_secs(30);
/// Task slots of a container instance when the group spec does not say.
pub const DEFAULT_TASK_SLOTS: u32 = 4;

/// What the instances launched from one launch template version do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionBehavior {
    /// Whether the instance registers with its cluster. A broken UserData (an FSx mount that
    /// hangs, an agent that never starts) means `false`: the instance boots and stays
    /// InService in its group but never becomes a container instance.
    pub registers: bool,
    /// How long after InService the instance registers.
    pub boot: Duration,
}

impl VersionBehavior {
    /// A version whose instances register `boot` after they are InService.
    pub fn good(boot: Duration) -> Self {
        VersionBehavior {
            registers: true,
            boot,
        }
    }

    /// A version whose instances never register.
    pub fn broken() -> Self {
        VersionBehavior {
            registers: false,
            boot: Duration::from_secs(60),
        }
    }
}

impl Default for VersionBehavior {
    /// A good version whose instances register a minute after they are InService.
    fn default() -> Self {
        VersionBehavior::good(Duration::from_secs(60))
    }
}

/// The launch template version a group is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateVersion {
    /// `$Latest`: resolved when each instance launches.
    Latest,
    /// `$Default`: resolved when each instance launches.
    Default,
    /// A numbered version.
    Number(u32),
}

impl TemplateVersion {
    /// As Auto Scaling reports it: `$Latest`, `$Default` or the number.
    pub fn as_string(self) -> String {
        match self {
            TemplateVersion::Latest => "$Latest".to_string(),
            TemplateVersion::Default => "$Default".to_string(),
            TemplateVersion::Number(n) => n.to_string(),
        }
    }
}

/// How a group launches instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchSpec {
    /// A launch template (by id) at a version.
    Template {
        template_id: String,
        version: TemplateVersion,
    },
    /// A mixed instances policy. Instances launch from the template's default version (or as
    /// a good default version without a template) and report that version.
    MixedInstancesPolicy { template_id: Option<String> },
    /// A launch configuration. Instances are good ([`VersionBehavior::default`]) and report no
    /// template version.
    LaunchConfiguration { name: String },
}

/// An instance a group already has when it is added (scenario history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExistingInstance {
    /// The numbered template version it was launched from (`None` for a launch configuration).
    pub version: Option<u32>,
    /// How long ago it was launched. An instance of a good version old enough to have booted
    /// is already registered (registeredAt in the past).
    pub age: Duration,
}

/// What an Auto Scaling group is made of, for [`super::SimAccount::add_auto_scaling_group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    pub name: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    pub launch: LaunchSpec,
    pub tags: Tags,
    /// The cluster its instances join (`ECS_CLUSTER` in the UserData); `None`: they join none.
    pub cluster: Option<String>,
    /// Tasks a container instance of this group can hold at once.
    pub task_slots: u32,
    /// Instances the group already has; the group then converges on its desired capacity.
    pub existing: Vec<ExistingInstance>,
}

impl GroupSpec {
    /// A group launching from `template_id` at `$Latest`, joining `cluster`, min 0, max 10,
    /// [`DEFAULT_TASK_SLOTS`] slots per instance, no existing instances.
    pub fn new(name: &str, cluster: &str, template_id: &str, desired: u32) -> Self {
        GroupSpec {
            name: name.to_string(),
            min_size: 0,
            max_size: 10,
            desired_capacity: desired,
            launch: LaunchSpec::Template {
                template_id: template_id.to_string(),
                version: TemplateVersion::Latest,
            },
            tags: Tags::new(),
            cluster: Some(cluster.to_string()),
            task_slots: DEFAULT_TASK_SLOTS,
            existing: Vec::new(),
        }
    }

    pub fn with_bounds(mut self, min: u32, max: u32) -> Self {
        self.min_size = min;
        self.max_size = max;
        self
    }

    pub fn with_launch(mut self, launch: LaunchSpec) -> Self {
        self.launch = launch;
        self
    }

    pub fn with_slots(mut self, slots: u32) -> Self {
        self.task_slots = slots;
        self
    }

    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_string(), value.to_string());
        self
    }

    /// Adds `count` existing instances of `version`, launched `age` ago.
    pub fn with_existing(mut self, count: usize, version: Option<u32>, age: Duration) -> Self {
        self.existing.extend(std::iter::repeat_n(
            ExistingInstance { version, age },
            count,
        ));
        self
    }
}
