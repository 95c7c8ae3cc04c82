//! Root causes: why the instances of a launch template version never registered, and why a
//! task does not fit. The raw readings (boot output, UserData, scaling activities, instance
//! types) are fetched by the controller through the `Cloud` trait, only for what
//! `capacity::inquiries` asks for (as [`Inquiry`] values); everything that turns them into
//! causes is pure. This module knows nothing of the capacity diagnosis: that one reads it.
//!
//! Every cause has a stable code ([`CauseCode`]), documented in `docs/causes.md`; the design is
//! in docs/design.md §6.
//!
//! - [`boot`]: a boot output (GetConsoleOutput) → the failing lines;
//! - [`userdata`]: a version's UserData → the cluster it joins, what it mounts;
//! - [`activities`]: scaling activities → whether launches fail, and why;
//! - [`fit`]: task size against instance type sizes;
//! - [`messages`]: ECS's service events and stop reasons;
//! - [`explain`]: the readings in [`Clues`] → root causes, evidence, what was not read.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

pub mod activities;
pub mod boot;
pub mod explain;
pub mod fit;
pub mod messages;
pub mod userdata;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cloud::{CloudError, ErrorCategory};
use crate::domain::{
    AutoScalingGroup, ClusterSnapshot, GroupLaunch, InstanceTypeSize, LaunchTemplateVersion,
    ScalingActivity,
};

/// The cluster's quota of tasks in PROVISIONING (docs/design.md §6).
pub const PROVISIONING_QUOTA: usize = 500;

/// The stable code of every cause the controller can name: the capacity chain's causes and
/// the root causes behind them. Codes never change once released; `docs/causes.md` has an
/// entry for each.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum CauseCode {
    // The capacity chain (capacity::Cause).
    GroupMissing,
    BrokenLaunchTemplateVersion,
    CapacityOnItsWay,
    CapacityShort,
    CapacityExhausted,
    Unsupported,
    Unknown,
    // Why instances never registered.
    BootMountFailed,
    BootScriptFailed,
    BootAgentFailed,
    UserDataOtherCluster,
    UserDataDefaultCluster,
    NoInstanceProfile,
    LaunchFailed,
    // Why a task does not fit.
    NoInstanceFits,
    ProvisioningQuota,
}

impl CauseCode {
    /// Every code, in catalogue order.
    pub const ALL: [CauseCode; 16] = [
        CauseCode::GroupMissing,
        CauseCode::BrokenLaunchTemplateVersion,
        CauseCode::CapacityOnItsWay,
        CauseCode::CapacityShort,
        CauseCode::CapacityExhausted,
        CauseCode::Unsupported,
        CauseCode::Unknown,
        CauseCode::BootMountFailed,
        CauseCode::BootScriptFailed,
        CauseCode::BootAgentFailed,
        CauseCode::UserDataOtherCluster,
        CauseCode::UserDataDefaultCluster,
        CauseCode::NoInstanceProfile,
        CauseCode::LaunchFailed,
        CauseCode::NoInstanceFits,
        CauseCode::ProvisioningQuota,
    ];

    /// The code as the audit trail, `explain` and `docs/causes.md` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            CauseCode::GroupMissing => "groupMissing",
            CauseCode::BrokenLaunchTemplateVersion => "brokenLaunchTemplateVersion",
            CauseCode::CapacityOnItsWay => "capacityOnItsWay",
            CauseCode::CapacityShort => "capacityShort",
            CauseCode::CapacityExhausted => "capacityExhausted",
            CauseCode::Unsupported => "unsupported",
            CauseCode::Unknown => "unknown",
            CauseCode::BootMountFailed => "bootMountFailed",
            CauseCode::BootScriptFailed => "bootScriptFailed",
            CauseCode::BootAgentFailed => "bootAgentFailed",
            CauseCode::UserDataOtherCluster => "userDataOtherCluster",
            CauseCode::UserDataDefaultCluster => "userDataDefaultCluster",
            CauseCode::NoInstanceProfile => "noInstanceProfile",
            CauseCode::LaunchFailed => "launchFailed",
            CauseCode::NoInstanceFits => "noInstanceFits",
            CauseCode::ProvisioningQuota => "provisioningQuota",
        }
    }
}

/// A kind of file system a UserData mounts or a boot output shows failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FileSystem {
    FsxLustre,
    Efs,
    Nfs,
    Smb,
    /// A mount whose kind the text does not say.
    Other,
}

impl FileSystem {
    /// The name people use for it.
    pub fn label(self) -> &'static str {
        match self {
            FileSystem::FsxLustre => "FSx for Lustre",
            FileSystem::Efs => "EFS",
            FileSystem::Nfs => "NFS",
            FileSystem::Smb => "SMB",
            FileSystem::Other => "file system",
        }
    }

    fn short_label(self) -> &'static str {
        match self {
            FileSystem::FsxLustre => "FSx",
            other => other.label(),
        }
    }
}

/// What a failed launch in the scaling activities says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LaunchFailure {
    /// The account's vCPU limit for the instance family.
    VcpuLimit,
    /// No capacity for the instance type in the Availability Zone.
    InsufficientCapacity,
    /// The AMI does not exist or may not be used.
    InvalidImage,
    Other,
}

/// A root cause, with the facts it rests on. Prose for people is made from these fields
/// ([`RootCause::phrase`]); nothing parses it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", tag = "code")]
pub enum RootCause {
    /// The boot output shows a file system mount that failed or timed out.
    #[serde(rename = "bootMountFailed", rename_all = "camelCase")]
    BootMountFailed {
        instance_id: String,
        file_system: FileSystem,
        /// The boot output says the mount timed out (rather than failed outright).
        timed_out: bool,
        /// At most a few lines of the boot output, trimmed.
        quote: Vec<String>,
    },
    /// The boot output shows the UserData (or a cloud-init stage) failing.
    #[serde(rename = "bootScriptFailed", rename_all = "camelCase")]
    BootScriptFailed {
        instance_id: String,
        quote: Vec<String>,
    },
    /// The boot output shows the ECS agent failing to start or to reach its endpoint.
    #[serde(rename = "bootAgentFailed", rename_all = "camelCase")]
    BootAgentFailed {
        instance_id: String,
        /// The boot output says the agent's connection to ECS timed out.
        timed_out: bool,
        quote: Vec<String>,
    },
    /// The version's UserData registers its instances with another cluster.
    #[serde(rename = "userDataOtherCluster", rename_all = "camelCase")]
    UserDataOtherCluster {
        template_id: String,
        version: u32,
        cluster: String,
    },
    /// The version's UserData sets no `ECS_CLUSTER`: the agent registers with `default`.
    #[serde(rename = "userDataDefaultCluster", rename_all = "camelCase")]
    UserDataDefaultCluster { template_id: String, version: u32 },
    /// The version names no instance profile: the agent cannot register without one.
    #[serde(rename = "noInstanceProfile", rename_all = "camelCase")]
    NoInstanceProfile { template_id: String, version: u32 },
    /// The group's recent scaling activities show launches failing.
    #[serde(rename = "launchFailed", rename_all = "camelCase")]
    LaunchFailed {
        group: String,
        failure: LaunchFailure,
        /// Auto Scaling's status message, trimmed.
        message: String,
    },
    /// The waiting tasks are larger than the group's instance type: no new instance would fit
    /// them either.
    #[serde(rename = "noInstanceFits", rename_all = "camelCase")]
    NoInstanceFits {
        instance_type: String,
        instance_vcpus: u32,
        instance_memory_mib: u64,
        task_cpu: Option<u32>,
        task_memory: Option<u32>,
    },
    /// The cluster's quota of tasks in PROVISIONING is reached.
    #[serde(rename = "provisioningQuota", rename_all = "camelCase")]
    ProvisioningQuota { provisioning: usize },
}

impl RootCause {
    pub fn code(&self) -> CauseCode {
        match self {
            RootCause::BootMountFailed { .. } => CauseCode::BootMountFailed,
            RootCause::BootScriptFailed { .. } => CauseCode::BootScriptFailed,
            RootCause::BootAgentFailed { .. } => CauseCode::BootAgentFailed,
            RootCause::UserDataOtherCluster { .. } => CauseCode::UserDataOtherCluster,
            RootCause::UserDataDefaultCluster { .. } => CauseCode::UserDataDefaultCluster,
            RootCause::NoInstanceProfile { .. } => CauseCode::NoInstanceProfile,
            RootCause::LaunchFailed { .. } => CauseCode::LaunchFailed,
            RootCause::NoInstanceFits { .. } => CauseCode::NoInstanceFits,
            RootCause::ProvisioningQuota { .. } => CauseCode::ProvisioningQuota,
        }
    }

    /// A short phrase for the `plan` table, e.g. "FSx mount timed out".
    pub fn phrase(&self) -> String {
        match self {
            RootCause::BootMountFailed {
                file_system,
                timed_out,
                ..
            } => {
                let how = if *timed_out { "timed out" } else { "failed" };
                format!("{} mount {how}", file_system.short_label())
            }
            RootCause::BootScriptFailed { .. } => "UserData script failed".into(),
            RootCause::BootAgentFailed { timed_out, .. } => {
                if *timed_out {
                    "ECS agent cannot reach ECS".into()
                } else {
                    "ECS agent failed".into()
                }
            }
            RootCause::UserDataOtherCluster { cluster, .. } => {
                format!("UserData joins cluster {cluster}")
            }
            RootCause::UserDataDefaultCluster { .. } => "UserData joins cluster default".into(),
            RootCause::NoInstanceProfile { .. } => "no instance profile".into(),
            RootCause::LaunchFailed { failure, .. } => match failure {
                LaunchFailure::VcpuLimit => "vCPU limit reached".into(),
                LaunchFailure::InsufficientCapacity => "no EC2 capacity in the AZ".into(),
                LaunchFailure::InvalidImage => "invalid AMI".into(),
                LaunchFailure::Other => "instance launches fail".into(),
            },
            RootCause::NoInstanceFits { instance_type, .. } => {
                format!("task larger than {instance_type}")
            }
            RootCause::ProvisioningQuota { .. } => "PROVISIONING quota reached".into(),
        }
    }

    /// One sentence for a finding's reason: what was seen and where.
    pub fn why(&self) -> String {
        match self {
            RootCause::BootMountFailed {
                instance_id, quote, ..
            }
            | RootCause::BootScriptFailed { instance_id, quote }
            | RootCause::BootAgentFailed {
                instance_id, quote, ..
            } => match quote.first() {
                Some(line) => format!("{instance_id}: {line}"),
                None => format!("{instance_id}: {}", self.phrase()),
            },
            RootCause::UserDataOtherCluster {
                version, cluster, ..
            } => format!(
                "version {version}'s UserData sets ECS_CLUSTER={cluster}: its instances join \
                 cluster {cluster}"
            ),
            RootCause::UserDataDefaultCluster { version, .. } => format!(
                "version {version}'s UserData sets no ECS_CLUSTER: its instances join the \
                 default cluster"
            ),
            RootCause::NoInstanceProfile { version, .. } => format!(
                "version {version} names no instance profile: the ECS agent cannot register \
                 without one"
            ),
            RootCause::LaunchFailed { group, message, .. } => {
                format!("group {group}'s launches fail: {message}")
            }
            RootCause::NoInstanceFits {
                instance_type,
                instance_vcpus,
                instance_memory_mib,
                task_cpu,
                task_memory,
            } => format!(
                "a waiting task needs {} CPU units and {} MiB; the largest instance type, \
                 {instance_type}, has {} CPU units and {instance_memory_mib} MiB",
                task_cpu.map_or("?".to_string(), |c| c.to_string()),
                task_memory.map_or("?".to_string(), |m| m.to_string()),
                instance_vcpus.saturating_mul(fit::CPU_UNITS_PER_VCPU)
            ),
            RootCause::ProvisioningQuota { provisioning } => format!(
                "{provisioning} tasks are in PROVISIONING: the cluster's quota is \
                 {PROVISIONING_QUOTA}, or ECS refused tasks for reaching it"
            ),
        }
    }

    /// Most telling first: what the boot output shows failing, then what the launch template
    /// version gets wrong, then the capacity facts.
    pub fn rank(&self) -> u8 {
        match self {
            RootCause::BootMountFailed { .. } => 0,
            RootCause::UserDataOtherCluster { .. } => 1,
            RootCause::NoInstanceProfile { .. } => 2,
            RootCause::BootAgentFailed { .. } => 3,
            RootCause::UserDataDefaultCluster { .. } => 4,
            RootCause::BootScriptFailed { .. } => 5,
            RootCause::LaunchFailed { .. } => 6,
            RootCause::NoInstanceFits { .. } => 7,
            RootCause::ProvisioningQuota { .. } => 8,
        }
    }

    /// The instance whose boot output shows the cause, for the boot causes.
    pub fn instance_id(&self) -> Option<&str> {
        match self {
            RootCause::BootMountFailed { instance_id, .. }
            | RootCause::BootScriptFailed { instance_id, .. }
            | RootCause::BootAgentFailed { instance_id, .. } => Some(instance_id),
            _ => None,
        }
    }

    /// The lines of boot output quoted as evidence, if any.
    pub fn quote(&self) -> &[String] {
        match self {
            RootCause::BootMountFailed { quote, .. }
            | RootCause::BootScriptFailed { quote, .. }
            | RootCause::BootAgentFailed { quote, .. } => quote,
            _ => &[],
        }
    }
}

/// One reading of a root-cause source, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "reading")]
pub enum Reading<T> {
    Read {
        value: T,
    },
    /// EC2 has nothing yet (a console output not yet available).
    NotYet,
    /// The call failed: the cause stays unknown and the rest of the diagnosis stands.
    Unreadable {
        operation: String,
        category: ErrorCategory,
    },
    /// Not read: switched off by configuration or policy, or not afforded this pass.
    Skipped,
}

impl<T> Reading<T> {
    /// A call's outcome as a reading: its value, or the operation and category it failed
    /// with.
    pub fn from_result(result: Result<T, CloudError>) -> Self {
        match result {
            Ok(value) => Reading::Read { value },
            Err(e) => Reading::Unreadable {
                operation: e.operation,
                category: e.category,
            },
        }
    }

    /// Whether asking again could tell more: not yet available, skipped, or failed in a way a
    /// later attempt may not (throttled, transient).
    pub fn worth_asking_again(&self) -> bool {
        match self {
            Reading::Read { .. } => false,
            Reading::NotYet | Reading::Skipped => true,
            Reading::Unreadable { category, .. } => category.is_retryable(),
        }
    }
}

/// What has been read of the root-cause sources of one cluster, by subject. The controller
/// keeps it between passes (a stuck instance's boot output does not change) and passes it to
/// diagnosis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Clues {
    /// By EC2 instance id: the boot output, already read into a report.
    pub boot: BTreeMap<String, Reading<boot::BootReport>>,
    /// By (launch template id, version).
    pub versions: BTreeMap<(String, u32), Reading<LaunchTemplateVersion>>,
    /// By Auto Scaling group name: this pass's reading.
    pub activities: BTreeMap<String, Reading<Vec<ScalingActivity>>>,
    /// By instance type.
    pub instance_types: BTreeMap<String, Reading<InstanceTypeSize>>,
}

impl Clues {
    /// Records a GetConsoleOutput outcome: the output read into a report, `NotYet` when EC2
    /// has none yet, or why it could not be read.
    pub fn record_boot_output(
        &mut self,
        instance_id: &str,
        result: Result<Option<Vec<u8>>, CloudError>,
    ) {
        let reading = match result {
            Ok(Some(bytes)) => Reading::Read {
                value: boot::read(&bytes),
            },
            Ok(None) => Reading::NotYet,
            Err(e) => Reading::from_result(Err(e)),
        };
        self.boot.insert(instance_id.to_string(), reading);
    }

    /// Forgets what no longer matters, so the cache stays the size of the trouble: boot
    /// outputs of instances no group of the cluster has any more, versions no instance of the
    /// cluster's groups was launched from (nor any group launches from), and the scaling
    /// activities, which are read afresh every pass. Instance types are kept: they do not
    /// change.
    pub fn prune(&mut self, snapshot: &ClusterSnapshot) {
        let groups = &snapshot.auto_scaling_groups;
        self.boot.retain(|id, _| {
            groups
                .iter()
                .any(|g| g.instances.iter().any(|i| &i.instance_id == id))
        });
        self.versions.retain(|(template, version), _| {
            groups.iter().any(|g| {
                let launches = matches!(
                    &g.launch,
                    GroupLaunch::LaunchTemplate {
                        template_id,
                        resolved_version: Some(v),
                        ..
                    } if template_id == template && v == version
                );
                let launched = g
                    .instances
                    .iter()
                    .any(|i| i.launch_template_version == Some(*version))
                    && g.launch.template_id() == Some(template.as_str());
                launches || launched
            })
        });
        self.activities.clear();
    }

    /// The instance types the group launches, sorted: its instances' types, else the type of
    /// the launch template version it launches from (when that version was read).
    pub fn group_instance_types(&self, group: &AutoScalingGroup) -> Vec<String> {
        let mut types: Vec<String> = group
            .instances
            .iter()
            .filter_map(|i| i.instance_type.clone())
            .collect();
        if types.is_empty()
            && let GroupLaunch::LaunchTemplate {
                template_id,
                resolved_version: Some(version),
                ..
            } = &group.launch
            && let Some(Reading::Read { value }) =
                self.versions.get(&(template_id.clone(), *version))
        {
            types.extend(value.instance_type.clone());
        }
        types.sort();
        types.dedup();
        types
    }
}

/// A read diagnosis asks the controller to make (`capacity::inquiries` says which).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase", tag = "read")]
pub enum Inquiry {
    BootOutput { instance_id: String },
    LaunchTemplateVersion { template_id: String, version: u32 },
    ScalingActivities { group: String },
    InstanceType { instance_type: String },
}
