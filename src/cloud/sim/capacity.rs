//! What the simulated capacity chain is made of: launch template versions and how their
//! instances behave, Auto Scaling group specs, and the timings of EC2 and Auto Scaling.
//!
//! The chain, as on AWS: a cluster's capacity provider names an Auto Scaling group; the group
//! launches EC2 instances from a launch template version (resolved at launch time); an instance
//! goes Pending → InService, boots, and, if its version's UserData works, registers with the
//! cluster as a container instance with a fixed number of task slots. Tasks placed through
//! such a provider wait in PROVISIONING for a free slot (and never place if they are larger
//! than the instance type). What EC2 shows of a version and its instances is its
//! [`VersionSpec`]. The laws of motion are in `world::capacity`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::boot;
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

/// The status message of a launch Auto Scaling could not make because the account's vCPU
/// limit is reached (as DescribeScalingActivities words it).
pub const VCPU_LIMIT_EXCEEDED: &str = "You have requested more vCPU capacity than your current \
vCPU limit of 32 allows for the instance bucket that the specified instance type belongs to. \
Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this \
limit. Launching EC2 instance failed.";

/// How long after launch EC2 has console output for an instance (GetConsoleOutput answers
/// with none before).
pub const CONSOLE_OUTPUT_DELAY: Duration = Duration::from_secs(3 * 60);
/// How long a group waits before it tries again a launch that failed.
pub const LAUNCH_RETRY: Duration = Duration::from_secs(2 * 60);
/// The instance profile a version names by default.
pub const DEFAULT_INSTANCE_PROFILE: &str =
    "arn:aws:iam::123456789012:instance-profile/ecsInstanceRole";
/// The instance type a version launches by default.
pub const DEFAULT_INSTANCE_TYPE: &str = "m5.large";
/// The AMI a version launches by default (an ECS-optimized Amazon Linux 2023 image).
pub const DEFAULT_IMAGE_ID: &str = "ami-0c1f0b4a9e7d3c2b1";

/// A launch template version's UserData.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserData {
    /// The standard ECS bootstrap ([`boot::ecs_user_data`]) for the cluster the groups that
    /// launch from the template join; rendered when the version is read.
    Standard,
    /// No UserData at all.
    Absent,
    /// Exactly this text, as EC2 keeps it (base64, possibly of gzip or MIME multi-part).
    Base64(String),
}

/// What a launch template version is: how its instances behave, and what EC2 shows of it
/// (DescribeLaunchTemplateVersions) and of its instances (GetConsoleOutput, the instance
/// type, the scaling activity of their launch).
///
/// A [`VersionBehavior`] converts into a spec with realistic defaults: the standard UserData,
/// the `ecsInstanceRole` profile, `m5.large`, and a clean boot output ending with the ECS agent
/// started (also for [`VersionBehavior::broken`], whose instances never register for a reason
/// the default spec does not spell out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionSpec {
    pub behavior: VersionBehavior,
    pub user_data: UserData,
    pub instance_profile: Option<String>,
    pub instance_type: String,
    pub image_id: String,
    /// What its instances write to the console while booting.
    pub boot_output: Arc<[u8]>,
    /// Launches from this version fail with this status message (e.g. an invalid AMI): the
    /// group records a Failed scaling activity and gets no instance.
    pub launch_failure: Option<String>,
}

impl VersionSpec {
    /// A version behaving as `behavior`, with the default content.
    pub fn new(behavior: VersionBehavior) -> Self {
        VersionSpec {
            behavior,
            user_data: UserData::Standard,
            instance_profile: Some(DEFAULT_INSTANCE_PROFILE.to_string()),
            instance_type: DEFAULT_INSTANCE_TYPE.to_string(),
            image_id: DEFAULT_IMAGE_ID.to_string(),
            boot_output: clean_boot_output(),
            launch_failure: None,
        }
    }

    /// The seed story's version: its UserData joins `cluster` and mounts an FSx for Lustre file
    /// system the instances cannot reach; the mount times out, the script fails and the ECS
    /// agent never starts, so they never register ([`boot::fsx_timeout_boot_output`]).
    pub fn fsx_mount_timeout(cluster: &str) -> Self {
        VersionSpec::new(VersionBehavior::broken())
            .with_user_data_script(&boot::fsx_user_data(cluster))
            .with_boot_output(boot::fsx_timeout_boot_output())
    }

    /// A version whose UserData names `other` as the cluster: its instances boot cleanly but
    /// never register with the cluster of their group.
    pub fn joining_cluster(other: &str) -> Self {
        VersionSpec::new(VersionBehavior::broken())
            .with_user_data_script(&boot::ecs_user_data(Some(other)))
    }

    /// A version that names no instance profile: the agent starts but cannot register
    /// without credentials, so its instances never register.
    pub fn without_instance_profile() -> Self {
        VersionSpec::new(VersionBehavior::broken()).with_instance_profile(None)
    }

    /// UserData from a script (or any text), stored base64 as EC2 keeps it.
    pub fn with_user_data_script(mut self, script: &str) -> Self {
        self.user_data = UserData::Base64(boot::base64(script.as_bytes()));
        self
    }

    /// UserData exactly as given (base64 text; not checked, as EC2 does not check it either).
    pub fn with_user_data_base64(mut self, base64: &str) -> Self {
        self.user_data = UserData::Base64(base64.to_string());
        self
    }

    pub fn without_user_data(mut self) -> Self {
        self.user_data = UserData::Absent;
        self
    }

    pub fn with_instance_profile(mut self, profile: Option<&str>) -> Self {
        self.instance_profile = profile.map(str::to_string);
        self
    }

    pub fn with_instance_type(mut self, instance_type: &str) -> Self {
        self.instance_type = instance_type.to_string();
        self
    }

    pub fn with_boot_output(mut self, output: impl Into<Vec<u8>>) -> Self {
        self.boot_output = output.into().into();
        self
    }

    /// Launches from this version fail with `status_message`.
    pub fn failing_launches(mut self, status_message: &str) -> Self {
        self.launch_failure = Some(status_message.to_string());
        self
    }
}

/// The clean boot output, made once and shared by every version that boots with it.
fn clean_boot_output() -> Arc<[u8]> {
    static CLEAN: OnceLock<Arc<[u8]>> = OnceLock::new();
    Arc::clone(CLEAN.get_or_init(|| boot::clean_boot_output().into()))
}

impl Default for VersionSpec {
    fn default() -> Self {
        VersionSpec::new(VersionBehavior::default())
    }
}

impl From<VersionBehavior> for VersionSpec {
    fn from(behavior: VersionBehavior) -> Self {
        VersionSpec::new(behavior)
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
    /// A launch configuration. Instances are good ([`VersionSpec::default`]) and report no
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
