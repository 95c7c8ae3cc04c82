//! The validated, ready-to-use form of a policy: what diagnosis and planning read.
//!
//! These types are built from the YAML documents by the loader after every check has passed;
//! nothing here can be invalid.

use std::path::PathBuf;
use std::time::Duration;

use globset::GlobSet;

use crate::domain::{Task, TaskStatus};
use crate::targets::Place;

/// The valid range of an integer field of the policy format, bounds included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountRange {
    pub min: u32,
    pub max: u32,
}

impl CountRange {
    pub const fn contains(self, value: u32) -> bool {
        self.min <= value && value <= self.max
    }
}

/// The valid range of a duration field of the policy format, bounds included. Durations are
/// whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

impl DurationRange {
    pub const fn contains(self, value: Duration) -> bool {
        self.min.as_nanos() <= value.as_nanos() && value.as_nanos() <= self.max.as_nanos()
    }
}

/// A whole number of seconds in the largest unit that divides it: `1m`, `24h`, `90s`.
pub fn seconds_text(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The valid ranges of every number in the policy format, in one place: validation enforces
/// them, the JSON Schema states the integer ones, `policies/README.md` documents them (a test
/// checks the table against these constants).
pub mod ranges {
    use std::time::Duration;

    use super::{CountRange, DurationRange};

    const MINUTE: Duration = Duration::from_secs(60);
    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// `remediate.nudgeCapacity.step`: instances added per nudge. 0 adds nothing; more than
    /// 100 at once is a typo, not a nudge (`maxDesired` bounds the total anyway).
    pub const NUDGE_STEP: CountRange = CountRange { min: 1, max: 100 };
    /// `remediate.nudgeCapacity.maxDesired`: at least one instance; at most ECS's quota of
    /// container instances per cluster (5,000).
    pub const NUDGE_MAX_DESIRED: CountRange = CountRange { min: 1, max: 5000 };
    /// `remediate.cordonLaunchTemplate.minFailedInstances`: a version is judged on at least one
    /// failed instance; a threshold above 100 would never be met by a real rollout.
    pub const MIN_FAILED_INSTANCES: CountRange = CountRange { min: 1, max: 100 };
    /// `guardrails.maxActionsPerHour`: 0 would hold every action forever under a guardrail's
    /// name (`mode: dry-run` is how to record without acting); above 1,000 an hour it guards
    /// nothing.
    pub const MAX_ACTIONS_PER_HOUR: CountRange = CountRange { min: 1, max: 1000 };

    /// Every duration of the format (`spec.stuck.*`, `cooldown`, `registrationTimeout`,
    /// `agentDisconnected`): whole seconds from 1 minute to 1 day. Below a minute the
    /// controller (30 s resync) would judge normal transitions (an image pull, an instance
    /// booting, an agent reconnecting, a nudged instance registering); beyond a day nothing
    /// is gained (the first-sighting clocks live in memory and restart with the process) and a
    /// unit slip (`10d` for `10m`) is caught.
    pub const DURATION: DurationRange = DurationRange {
        min: MINUTE,
        max: DAY,
    };
    pub const STUCK_LIMIT: DurationRange = DURATION;
    pub const NUDGE_COOLDOWN: DurationRange = DURATION;
    pub const REGISTRATION_TIMEOUT: DurationRange = DURATION;
    pub const AGENT_DISCONNECTED: DurationRange = DURATION;
}

/// Where a policy came from, for error messages and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based line of the document's start.
    pub line: usize,
}

/// Whether a policy acts, or only plans and records. Written `enforce` or `dry-run`
/// everywhere (`plan`, its JSON, the audit trail: [`crate::audit::mode_name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    #[default]
    Enforce,
    /// Plan and record only (a policy's `mode: dry-run`, or a dry run of the controller).
    #[serde(rename = "dry-run")]
    Audit,
}

/// A percentage between 0 and 100 inclusive.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Percent(pub f64);

impl Percent {
    /// `self` of `n`, as a real number.
    pub fn of(self, n: u32) -> f64 {
        self.0 / 100.0 * f64::from(n)
    }
}

/// Which clusters and tasks a policy governs.
#[derive(Debug, Clone)]
pub struct Target {
    /// The cluster patterns as written (for display).
    pub cluster_patterns: Vec<String>,
    pub clusters: GlobSet,
    /// `None`: every service. `Some`: services whose name matches.
    pub services: Option<GlobSet>,
    pub service_patterns: Option<Vec<String>>,
    /// Whether standalone tasks (not started by a service) are selected.
    pub standalone: bool,
    /// `None`: every account. `Some`: accounts whose id or target name matches.
    pub accounts: Option<GlobSet>,
    pub account_patterns: Option<Vec<String>>,
    /// Tasks carrying any of these tags (key and value equal) are never touched. Always holds
    /// the built-in exemption `ecs-reconciler/exempt=true`.
    pub exclude_tags: Vec<(String, String)>,
}

/// The tag that exempts a task from every policy.
pub const EXEMPT_TAG: (&str, &str) = ("ecs-reconciler/exempt", "true");

impl Target {
    /// Whether this policy applies in `place`'s account (by id or by the target's name).
    pub fn selects_account(&self, place: &Place) -> bool {
        self.accounts.as_ref().is_none_or(|a| {
            a.is_match(&place.account)
                || place.account_name.as_deref().is_some_and(|n| a.is_match(n))
        })
    }

    pub fn selects_cluster(&self, cluster_name: &str) -> bool {
        self.clusters.is_match(cluster_name)
    }

    /// Whether the task is of a kind and service this policy selects (cluster not checked).
    pub fn selects_task(&self, task: &Task) -> bool {
        match task.service_name() {
            Some(service) => self.services.as_ref().is_none_or(|s| s.is_match(service)),
            None => self.standalone,
        }
    }

    /// The exclusion tag the task carries, if any.
    pub fn exclusion<'a>(&'a self, task: &Task) -> Option<&'a (String, String)> {
        self.exclude_tags
            .iter()
            .find(|(k, v)| task.tags.get(k).is_some_and(|tv| tv == v))
    }
}

/// How long a task may stay in each state before it counts as stuck.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StuckLimits {
    pub provisioning: Option<Duration>,
    pub pending: Option<Duration>,
    pub activating: Option<Duration>,
    pub deactivating: Option<Duration>,
    pub stopping: Option<Duration>,
    pub deprovisioning: Option<Duration>,
    /// How long a RUNNING task may report UNHEALTHY.
    pub unhealthy: Option<Duration>,
}

impl StuckLimits {
    /// The limit for a lifecycle state, if the policy sets one.
    pub fn limit_for(&self, status: TaskStatus) -> Option<Duration> {
        match status {
            TaskStatus::Provisioning => self.provisioning,
            TaskStatus::Pending => self.pending,
            TaskStatus::Activating => self.activating,
            TaskStatus::Deactivating => self.deactivating,
            TaskStatus::Stopping => self.stopping,
            TaskStatus::Deprovisioning => self.deprovisioning,
            TaskStatus::Running | TaskStatus::Stopped => None,
        }
    }
}

/// `remediate.replaceTask`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaceTask {
    /// Whether standalone tasks may be stopped and re-run (service tasks are always replaced by
    /// their scheduler).
    pub standalone: bool,
}

/// `remediate.nudgeCapacity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NudgeCapacity {
    pub step: u32,
    pub max_desired: u32,
    pub cooldown: Duration,
}

/// `remediate.cordonLaunchTemplate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CordonLaunchTemplate {
    pub registration_timeout: Duration,
    pub min_failed_instances: u32,
}

/// `remediate.drainContainerInstance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainContainerInstance {
    pub agent_disconnected: Duration,
}

/// The remediations a policy allows, each with its bounds. Absent means not allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remediate {
    pub replace_task: Option<ReplaceTask>,
    pub nudge_capacity: Option<NudgeCapacity>,
    pub cordon_launch_template: Option<CordonLaunchTemplate>,
    pub drain_container_instance: Option<DrainContainerInstance>,
}

/// Limits on how much a policy may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Guardrails {
    /// Actions of this policy per cluster in any rolling hour.
    pub max_actions_per_hour: u32,
    /// Tasks of one service being replaced at once, as a share of its desired count (at least
    /// one task is always allowed).
    pub max_in_flight_per_service: Percent,
    /// When more than this share of the selected tasks of a cluster is stuck, plan nothing.
    pub pause_when_stuck_above: Percent,
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails {
            max_actions_per_hour: 20,
            max_in_flight_per_service: Percent(25.0),
            pause_when_stuck_above: Percent(50.0),
        }
    }
}

/// `spec.diagnose`: how far diagnosis may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnoseSettings {
    /// Whether the root-cause reads are made for this policy's findings.
    pub root_cause_reads: bool,
}

impl Default for DiagnoseSettings {
    fn default() -> Self {
        DiagnoseSettings {
            root_cause_reads: true,
        }
    }
}

/// One validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub origin: Origin,
    pub mode: PolicyMode,
    pub target: Target,
    pub stuck: StuckLimits,
    pub remediate: Remediate,
    pub guardrails: Guardrails,
    pub diagnose: DiagnoseSettings,
}

/// A complete, valid set of policies, in file path then document order.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub policies: Vec<Policy>,
    /// Identifies the set the decisions were made under: a content hash of the files (12 hex
    /// digits) from [`load_dir`](super::load_dir); `git:<sha>`, `git:<sha>+<hash>` or
    /// `sha256:<hash>` from [`load_dir_identified`](super::load_dir_identified).
    pub fingerprint: String,
}

impl PolicySet {
    /// The policies that apply in `place`'s account (`target.accounts`), under the same set
    /// id: each place's controller holds its own.
    pub fn for_place(&self, place: &Place) -> PolicySet {
        PolicySet {
            policies: self
                .policies
                .iter()
                .filter(|p| p.target.selects_account(place))
                .cloned()
                .collect(),
            fingerprint: self.fingerprint.clone(),
        }
    }

    /// The policies that select this cluster.
    pub fn for_cluster<'a, 'n>(
        &'a self,
        cluster_name: &'n str,
    ) -> impl Iterator<Item = &'a Policy> + use<'a, 'n> {
        self.policies
            .iter()
            .filter(move |p| p.target.selects_cluster(cluster_name))
    }

    /// The policy that governs a task: the first, in set order, that selects it.
    pub fn governing(&self, cluster_name: &str, task: &Task) -> Option<&Policy> {
        self.for_cluster(cluster_name)
            .find(|p| p.target.selects_task(task))
    }
}
