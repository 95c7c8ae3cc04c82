//! The laws of motion of the capacity chain: launch templates and their versions, Auto Scaling
//! groups converging on their desired capacity, their instances going Pending → InService →
//! (registered) → Terminating → gone, capacity providers, and placing tasks on free slots.
//!
//! A task whose capacity provider strategy names only providers of this cluster that have an
//! Auto Scaling group waits in PROVISIONING until a container instance of one of those groups
//! is ACTIVE, has its agent connected and has a free slot; it holds the slot until STOPPED.
//! Every other task places as before (round robin over ACTIVE instances, none for Fargate).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use super::{SERVICE_EVENTS_KEPT, SimInstance, World};
use crate::cloud::ErrorCategory;
use crate::cloud::sim::boot;
use crate::cloud::sim::capacity::{
    CONSOLE_OUTPUT_DELAY, GroupSpec, INSTANCE_START, INSTANCE_STOP, LAUNCH_RETRY, LaunchSpec,
    TemplateVersion, UserData, VersionBehavior, VersionSpec,
};
use crate::cloud::sim::events::LaunchEvent;
use crate::cloud::sim::ids;
use crate::domain::{
    AutoScalingGroup, Capacity, CapacityProvider, ContainerInstance, DesiredStatus, GroupInstance,
    GroupLaunch, LaunchTemplateVersion, ScalingActivity, ServiceEvent, Tags, TaskStatus,
};

/// Scaling activities a group keeps (one DescribeScalingActivities page).
const ACTIVITIES_KEPT: usize = 100;
/// The most GetConsoleOutput returns: the latest 64 KiB.
const CONSOLE_OUTPUT_MAX: usize = 64 * 1024;

/// Why a capacity call was refused: the category and the message AWS would give.
pub(crate) type Refusal = (ErrorCategory, String);

/// An EC2 launch template with its numbered versions (version n is `versions[n - 1]`).
#[derive(Debug)]
pub(crate) struct TemplateState {
    name: String,
    versions: Vec<VersionSpec>,
    default_version: u32,
}

impl TemplateState {
    fn latest(&self) -> u32 {
        self.versions.len() as u32
    }

    /// The numbered version `version` stands for now; `None` for a number that does not exist.
    fn resolve(&self, version: TemplateVersion) -> Option<u32> {
        match version {
            TemplateVersion::Latest => Some(self.latest()),
            TemplateVersion::Default => Some(self.default_version),
            TemplateVersion::Number(n) => (1..=self.latest()).contains(&n).then_some(n),
        }
    }

    fn spec(&self, version: u32) -> Option<&VersionSpec> {
        let index = usize::try_from(version.checked_sub(1)?).ok()?;
        self.versions.get(index)
    }
}

/// Auto Scaling lifecycle state of an instance (terminated instances are removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    Pending,
    InService,
    Terminating,
}

impl Lifecycle {
    fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Pending => "Pending",
            Lifecycle::InService => "InService",
            Lifecycle::Terminating => "Terminating",
        }
    }
}

#[derive(Debug)]
struct InstanceState {
    id: String,
    /// Creation counter: breaks ties between instances launched at the same moment.
    counter: u64,
    lifecycle: Lifecycle,
    version: Option<u32>,
    behavior: VersionBehavior,
    instance_type: String,
    boot_output: Arc<[u8]>,
    launched_at: SystemTime,
    /// The ARN of the container instance it registered as.
    container_instance: Option<String>,
}

/// An Auto Scaling group.
#[derive(Debug)]
pub(crate) struct GroupState {
    arn: String,
    min_size: u32,
    max_size: u32,
    desired: u32,
    launch: LaunchSpec,
    tags: Tags,
    cluster: Option<String>,
    task_slots: u32,
    instances: Vec<InstanceState>,
    /// Newest first, at most [`ACTIVITIES_KEPT`].
    activities: VecDeque<ScalingActivity>,
    /// Every launch fails with this status message (e.g. the account's vCPU limit).
    launch_failure: Option<String>,
    /// A retry of failed launches is scheduled.
    retry_due: bool,
}

impl GroupState {
    /// Its instances that are not terminating.
    fn live(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.lifecycle != Lifecycle::Terminating)
            .count()
    }
}

/// A capacity provider of a cluster.
#[derive(Debug, Clone)]
pub(crate) struct SimProvider {
    name: String,
    /// The group's name and ARN; the ARN stays when the group is deleted.
    group: Option<(String, String)>,
}

/// A timed step of one group instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum InstanceStep {
    /// Pending → InService.
    InService,
    /// The instance has booted and its agent registers with the cluster.
    Register,
    /// Terminating → gone.
    Gone,
}

fn group_not_found(group: &str) -> Refusal {
    (
        ErrorCategory::NotFound,
        format!("ValidationError: AutoScalingGroup name not found - {group}"),
    )
}

fn invalid(message: String) -> Refusal {
    (
        ErrorCategory::Invalid,
        format!("ValidationError: {message}"),
    )
}

impl World {
    // ---- launch templates ----

    /// Creates a launch template whose version 1 (latest and default) behaves as `first`;
    /// returns its id.
    pub(crate) fn add_launch_template(&mut self, name: &str, first: VersionSpec) -> String {
        let id = ids::launch_template_id(self.next_counter());
        self.templates.insert(
            id.clone(),
            TemplateState {
                name: name.to_string(),
                versions: vec![first],
                default_version: 1,
            },
        );
        id
    }

    fn template_mut(&mut self, id: &str) -> &mut TemplateState {
        self.templates
            .get_mut(id)
            .unwrap_or_else(|| panic!("simulated account has no launch template {id:?}"))
    }

    /// Publishes a new version (the new latest); returns its number.
    pub(crate) fn publish_template_version(
        &mut self,
        id: &str,
        spec: VersionSpec,
        make_default: bool,
    ) -> u32 {
        let template = self.template_mut(id);
        template.versions.push(spec);
        let version = template.latest();
        if make_default {
            template.default_version = version;
        }
        version
    }

    /// Makes an existing version the default.
    pub(crate) fn set_default_template_version(&mut self, id: &str, version: u32) {
        let template = self.template_mut(id);
        assert!(
            template.resolve(TemplateVersion::Number(version)).is_some(),
            "launch template {id:?} has no version {version}"
        );
        template.default_version = version;
    }

    // ---- groups ----

    /// Creates an Auto Scaling group with its existing instances, then lets it converge on its
    /// desired capacity; returns its ARN.
    pub(crate) fn add_group(&mut self, spec: GroupSpec) -> String {
        assert!(
            !self.groups.contains_key(&spec.name),
            "group {:?} already exists",
            spec.name
        );
        let arn = ids::auto_scaling_group_arn(self.next_counter(), &spec.name);
        let name = spec.name.clone();
        self.groups.insert(
            name.clone(),
            GroupState {
                arn: arn.clone(),
                min_size: spec.min_size,
                max_size: spec.max_size,
                desired: spec.desired_capacity,
                launch: spec.launch,
                tags: spec.tags,
                cluster: spec.cluster,
                task_slots: spec.task_slots,
                instances: Vec::new(),
                activities: VecDeque::new(),
                launch_failure: None,
                retry_due: false,
            },
        );
        for existing in spec.existing {
            let launched_at = self.now - existing.age;
            self.launch_instance(&name, existing.version, launched_at);
        }
        self.converge(&name);
        arn
    }

    /// Deletes a group (as with ForceDelete): its instances are gone at once and their
    /// container instances deregister. Capacity providers naming it keep its ARN.
    pub(crate) fn delete_group(&mut self, name: &str) {
        let group = self
            .groups
            .remove(name)
            .unwrap_or_else(|| panic!("simulated account has no group {name:?}"));
        for instance in group.instances {
            if let (Some(cluster), Some(arn)) = (&group.cluster, &instance.container_instance) {
                self.deregister(cluster, arn, &instance.id);
            }
        }
    }

    /// Links a capacity provider to `cluster`, with the Auto Scaling group `group` behind it.
    pub(crate) fn add_capacity_provider(&mut self, cluster: &str, name: &str, group: Option<&str>) {
        let ci = self.index(cluster);
        let group = group.map(|g| {
            let state = self
                .groups
                .get(g)
                .unwrap_or_else(|| panic!("simulated account has no group {g:?}"));
            (g.to_string(), state.arn.clone())
        });
        self.clusters[ci].providers.push(SimProvider {
            name: name.to_string(),
            group,
        });
        self.place_waiting(ci);
    }

    /// Launches an instance of `group` at `launched_at` (now, or earlier for an existing one),
    /// from `version` or, if `None`, from what the group's launch spec resolves to now.
    fn launch_instance(&mut self, group: &str, version: Option<u32>, launched_at: SystemTime) {
        let counter = self.next_counter();
        let Some(g) = self.groups.get(group) else {
            return;
        };
        let template_id = match &g.launch {
            LaunchSpec::Template { template_id, .. } => Some(template_id),
            LaunchSpec::MixedInstancesPolicy { template_id } => template_id.as_ref(),
            LaunchSpec::LaunchConfiguration { .. } => None,
        };
        let template = template_id.and_then(|id| self.templates.get(id));
        let version = match (version, &g.launch, template) {
            (Some(v), _, _) => Some(v),
            (None, LaunchSpec::Template { version, .. }, Some(t)) => t.resolve(*version),
            (None, LaunchSpec::MixedInstancesPolicy { .. }, Some(t)) => Some(t.default_version),
            _ => None,
        };
        let spec = match (template, version) {
            (Some(t), Some(v)) => t.spec(v),
            (None, None) => Some(default_spec()),
            _ => None,
        };
        let Some(spec) = spec else {
            // The launch fails (unknown template or version): the group stays short.
            return;
        };
        let is_new = launched_at >= self.now;
        let failure = g.launch_failure.as_ref().or(spec.launch_failure.as_ref());
        if let Some(message) = failure.filter(|_| is_new) {
            let message = message.clone();
            self.launch_failed(group, counter, message);
            return;
        }
        let behavior = spec.behavior;
        let instance_type = spec.instance_type.clone();
        let boot_output = Arc::clone(&spec.boot_output);
        let id = ids::ec2_instance_id(counter);
        let activity = launch_activity(counter, &id, launched_at, g.live(), g.desired);
        let now = self.now;
        let in_service_at = launched_at + INSTANCE_START;
        let register_at = in_service_at + behavior.boot;
        let joins = behavior.registers && g.cluster.is_some();
        let lifecycle = if in_service_at <= now {
            Lifecycle::InService
        } else {
            Lifecycle::Pending
        };
        if let Some(g) = self.groups.get_mut(group) {
            g.instances.push(InstanceState {
                id: id.clone(),
                counter,
                lifecycle,
                version,
                behavior,
                instance_type,
                boot_output,
                launched_at,
                container_instance: None,
            });
            if is_new {
                let launch = LaunchEvent {
                    group,
                    group_arn: &g.arn,
                    activity_id: &activity.activity_id,
                    cause: activity.cause.as_deref().unwrap_or_default(),
                    instance: Some(&id),
                    failure: None,
                };
                self.outbox.launch(launch, now);
            }
            record(&mut g.activities, activity);
        }
        if lifecycle == Lifecycle::Pending {
            self.schedule_instance(in_service_at, group, &id, InstanceStep::InService);
        } else if joins && register_at <= now {
            self.register(group, &id, register_at);
        } else if joins {
            self.schedule_instance(register_at, group, &id, InstanceStep::Register);
        }
    }

    /// Launches or terminates (newest first) instances until the group's instances that are
    /// not terminating match its desired capacity.
    fn converge(&mut self, group: &str) {
        let Some(g) = self.groups.get(group) else {
            return;
        };
        let mut live: Vec<(SystemTime, u64, String)> = g
            .instances
            .iter()
            .filter(|i| i.lifecycle != Lifecycle::Terminating)
            .map(|i| (i.launched_at, i.counter, i.id.clone()))
            .collect();
        let desired = g.desired as usize;
        if live.len() < desired {
            for _ in live.len()..desired {
                self.launch_instance(group, None, self.now);
            }
        } else if live.len() > desired {
            live.sort();
            for (_, _, id) in live.split_off(desired) {
                self.begin_terminating(group, &id);
            }
        }
    }

    /// A launch of `group` failed with `message`: a Failed activity, no instance, and a retry
    /// after [`LAUNCH_RETRY`] (one at a time).
    fn launch_failed(&mut self, group: &str, counter: u64, message: String) {
        let now = self.now;
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let activity = ScalingActivity {
            activity_id: activity_id(counter),
            status_code: "Failed".to_string(),
            description: Some(format!(
                "Launching a new EC2 instance.  Status Reason: {message}"
            )),
            status_message: Some(message),
            cause: Some(capacity_cause(now, g.live(), g.desired)),
            start_time: Some(now),
        };
        let launch = LaunchEvent {
            group,
            group_arn: &g.arn,
            activity_id: &activity.activity_id,
            cause: activity.cause.as_deref().unwrap_or_default(),
            instance: None,
            failure: activity.status_message.as_deref(),
        };
        self.outbox.launch(launch, now);
        record(&mut g.activities, activity);
        if !g.retry_due {
            g.retry_due = true;
            self.schedule_retry(now + LAUNCH_RETRY, group);
        }
    }

    /// The group tries again the launches that failed.
    pub(super) fn retry_launches(&mut self, group: &str) {
        if let Some(g) = self.groups.get_mut(group) {
            g.retry_due = false;
            self.converge(group);
        }
    }

    /// Makes every launch of `group` fail with `status_message` (or, with `None`, succeed
    /// again); the group converges at once.
    pub(crate) fn fail_launches(&mut self, group: &str, status_message: Option<&str>) {
        let g = self
            .groups
            .get_mut(group)
            .unwrap_or_else(|| panic!("simulated account has no group {group:?}"));
        g.launch_failure = status_message.map(str::to_string);
        self.converge(group);
    }

    fn begin_terminating(&mut self, group: &str, instance: &str) {
        let Some(i) = self
            .groups
            .get_mut(group)
            .and_then(|g| g.instances.iter_mut().find(|i| i.id == instance))
        else {
            return;
        };
        i.lifecycle = Lifecycle::Terminating;
        self.schedule_instance(
            self.now + INSTANCE_STOP,
            group,
            instance,
            InstanceStep::Gone,
        );
    }

    /// A timed step of a group instance (ignored if the instance is not in the state the step
    /// expects).
    pub(super) fn instance_step(&mut self, group: &str, instance: &str, step: InstanceStep) {
        let now = self.now;
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let Some(index) = g.instances.iter().position(|i| i.id == instance) else {
            return;
        };
        let i = &mut g.instances[index];
        match step {
            InstanceStep::InService if i.lifecycle == Lifecycle::Pending => {
                i.lifecycle = Lifecycle::InService;
                if i.behavior.registers && g.cluster.is_some() {
                    let at = now + i.behavior.boot;
                    self.schedule_instance(at, group, instance, InstanceStep::Register);
                }
            }
            InstanceStep::Register
                if i.lifecycle == Lifecycle::InService && i.container_instance.is_none() =>
            {
                self.register(group, instance, now);
            }
            InstanceStep::Gone => {
                let gone = g.instances.remove(index);
                let cluster = g.cluster.clone();
                if let (Some(cluster), Some(arn)) = (cluster, gone.container_instance) {
                    self.deregister(&cluster, &arn, instance);
                }
                self.converge(group);
            }
            _ => {}
        }
    }

    /// The instance's agent registers it with the group's cluster, as of `registered_at`.
    fn register(&mut self, group: &str, instance: &str, registered_at: SystemTime) {
        let counter = self.next_counter();
        let Some(g) = self.groups.get_mut(group) else {
            return;
        };
        let Some(&ci) = g.cluster.as_ref().and_then(|c| self.cluster_index.get(c)) else {
            return;
        };
        let Some(i) = g.instances.iter_mut().find(|i| i.id == instance) else {
            return;
        };
        let arn = ids::container_instance_arn(&self.clusters[ci].name, &ids::hex_id(counter));
        i.container_instance = Some(arn.clone());
        let slots = g.task_slots;
        let size = boot::instance_type_size(&i.instance_type);
        let instance = SimInstance {
            info: ContainerInstance {
                arn,
                ec2_instance_id: Some(instance.to_string()),
                status: "ACTIVE".to_string(),
                agent_connected: true,
                registered_at: Some(registered_at),
            },
            slots: Some(slots),
            used: 0,
            group: Some(group.to_string()),
            size,
            version: 1,
        };
        self.add_instance(ci, instance);
    }

    /// The EC2 instance behind a container instance is gone: the container instance becomes
    /// INACTIVE (and is no longer reported) and its tasks are STOPPED.
    fn deregister(&mut self, cluster: &str, arn: &str, instance: &str) {
        let Some(&ci) = self.cluster_index.get(cluster) else {
            return;
        };
        let c = &mut self.clusters[ci];
        if let Some(gone) = c.instances.iter_mut().find(|i| i.info.arn == arn) {
            gone.info.status = "INACTIVE".to_string();
            gone.info.agent_connected = false;
            gone.version += 1;
            self.outbox
                .container_instance(&c.arn, &gone.info, gone.version, self.now);
        }
        c.instances.retain(|i| i.info.arn != arn);
        let on_it: Vec<u64> = c
            .tasks
            .iter()
            .filter(|(_, t)| {
                t.task.container_instance_arn.as_deref() == Some(arn)
                    && t.task.last_status != TaskStatus::Stopped
            })
            .map(|(&key, _)| key)
            .collect();
        let reason = format!("Host EC2 (instance {instance}) terminated.");
        for key in on_it {
            self.stop(ci, key, (&reason, "ServiceSchedulerInitiated"), true);
            if let Some(t) = self.clusters[ci].tasks.get_mut(&key)
                && t.task.last_status != TaskStatus::Stopped
            {
                t.generation += 1;
                self.enter(ci, key, TaskStatus::Stopped);
            }
        }
    }

    // ---- mutating calls ----

    /// SetDesiredCapacity.
    pub(crate) fn set_desired_capacity(
        &mut self,
        group: &str,
        desired: u32,
    ) -> Result<(), Refusal> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| group_not_found(group))?;
        if desired > g.max_size {
            return Err(invalid(format!(
                "New SetDesiredCapacity value {desired} is above max value {} for the \
                 AutoScalingGroup.",
                g.max_size
            )));
        }
        if desired < g.min_size {
            return Err(invalid(format!(
                "New SetDesiredCapacity value {desired} is below min value {} for the \
                 AutoScalingGroup.",
                g.min_size
            )));
        }
        g.desired = desired;
        self.converge(group);
        Ok(())
    }

    /// UpdateAutoScalingGroup with a numbered launch template version.
    pub(crate) fn pin_template_version(
        &mut self,
        group: &str,
        template_id: &str,
        version: u32,
    ) -> Result<(), Refusal> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| group_not_found(group))?;
        let LaunchSpec::Template {
            template_id: current,
            version: configured,
        } = &mut g.launch
        else {
            return Err(invalid(format!(
                "AutoScalingGroup {group} does not use a launch template"
            )));
        };
        if current != template_id {
            return Err(invalid(format!(
                "AutoScalingGroup {group} uses launch template {current}, not {template_id}"
            )));
        }
        let exists = self
            .templates
            .get(template_id)
            .and_then(|t| t.resolve(TemplateVersion::Number(version)))
            .is_some();
        if !exists {
            return Err(invalid(format!(
                "You must use a valid fully-formed launch template. The specified launch \
                 template version {version} of {template_id} does not exist"
            )));
        }
        *configured = TemplateVersion::Number(version);
        Ok(())
    }

    /// CreateOrUpdateTags on a group.
    pub(crate) fn tag_group(&mut self, group: &str, tags: &Tags) -> Result<(), Refusal> {
        let g = self
            .groups
            .get_mut(group)
            .ok_or_else(|| group_not_found(group))?;
        if tags.is_empty() {
            return Err(invalid("at least one tag is required".to_string()));
        }
        g.tags
            .extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ok(())
    }

    /// TerminateInstanceInAutoScalingGroup without decrementing the desired capacity: the
    /// group launches a replacement now. Terminating a terminating instance changes nothing.
    pub(crate) fn terminate_instance(&mut self, instance: &str) -> Result<(), Refusal> {
        let found = self.groups.iter().find_map(|(name, g)| {
            g.instances
                .iter()
                .find(|i| i.id == instance)
                .map(|i| (name.clone(), i.lifecycle))
        });
        let Some((group, lifecycle)) = found else {
            return Err((
                ErrorCategory::NotFound,
                format!(
                    "ValidationError: Instance Id not found - No managed instance found for \
                     instance ID: {instance}"
                ),
            ));
        };
        if lifecycle != Lifecycle::Terminating {
            self.begin_terminating(&group, instance);
            self.converge(&group);
        }
        Ok(())
    }

    /// UpdateContainerInstancesState to DRAINING: nothing new is placed on it.
    pub(crate) fn drain(&mut self, cluster: &str, arn: &str) -> Result<(), Refusal> {
        if !self.has_cluster(cluster) {
            return Err((
                ErrorCategory::NotFound,
                format!("ClusterNotFoundException: cluster {cluster} not found"),
            ));
        }
        let changed = self.change_container_instance(cluster, arn, |i| {
            i.status = "DRAINING".to_string();
        });
        if changed {
            Ok(())
        } else {
            Err((
                ErrorCategory::NotFound,
                format!("ECS did not drain the instance: {arn}: MISSING"),
            ))
        }
    }

    // ---- observation ----

    /// The group as DescribeAutoScalingGroups shows it; `$Latest` and `$Default` are resolved
    /// only if `templates_read` (DescribeLaunchTemplates answered).
    pub(crate) fn auto_scaling_group(
        &self,
        name: &str,
        templates_read: bool,
    ) -> Option<AutoScalingGroup> {
        let g = self.groups.get(name)?;
        let launch = match &g.launch {
            LaunchSpec::Template {
                template_id,
                version,
            } => {
                let template = self.templates.get(template_id);
                let resolved = match version {
                    TemplateVersion::Number(n) => Some(*n),
                    _ if templates_read => template.and_then(|t| t.resolve(*version)),
                    _ => None,
                };
                GroupLaunch::LaunchTemplate {
                    template_id: template_id.clone(),
                    template_name: template.map(|t| t.name.clone()).unwrap_or_default(),
                    version: version.as_string(),
                    resolved_version: resolved,
                }
            }
            LaunchSpec::MixedInstancesPolicy { template_id } => GroupLaunch::MixedInstancesPolicy {
                template_id: template_id.clone(),
            },
            LaunchSpec::LaunchConfiguration { name } => {
                GroupLaunch::LaunchConfiguration { name: name.clone() }
            }
        };
        Some(AutoScalingGroup {
            name: name.to_string(),
            arn: g.arn.clone(),
            min_size: g.min_size,
            max_size: g.max_size,
            desired_capacity: g.desired,
            launch,
            instances: g
                .instances
                .iter()
                .map(|i| GroupInstance {
                    instance_id: i.id.clone(),
                    lifecycle_state: i.lifecycle.as_str().to_string(),
                    health_status: "Healthy".to_string(),
                    launch_template_version: i.version,
                    launched_at: Some(i.launched_at),
                    instance_type: Some(i.instance_type.clone()),
                })
                .collect(),
            tags: g.tags.clone(),
        })
    }

    // ---- root-cause reads ----

    /// GetConsoleOutput: the instance's boot output (its latest 64 KiB) once EC2 has it,
    /// [`CONSOLE_OUTPUT_DELAY`] after launch; `None` before, and while the instance has written
    /// nothing (EC2 then answers without an output, as it does before one exists).
    pub(crate) fn console_output(&self, instance: &str) -> Result<Option<Vec<u8>>, Refusal> {
        let found = self
            .groups
            .values()
            .flat_map(|g| &g.instances)
            .find(|i| i.id == instance);
        let Some(i) = found else {
            return Err((
                ErrorCategory::NotFound,
                format!("InvalidInstanceID.NotFound: The instance ID '{instance}' does not exist"),
            ));
        };
        if self.now < i.launched_at + CONSOLE_OUTPUT_DELAY || i.boot_output.is_empty() {
            return Ok(None);
        }
        let output = &i.boot_output;
        let from = output.len().saturating_sub(CONSOLE_OUTPUT_MAX);
        Ok(Some(output[from..].to_vec()))
    }

    /// DescribeLaunchTemplateVersions of one numbered version.
    pub(crate) fn launch_template_version(
        &self,
        template_id: &str,
        version: u32,
    ) -> Result<LaunchTemplateVersion, Refusal> {
        let Some(template) = self.templates.get(template_id) else {
            return Err((
                ErrorCategory::NotFound,
                format!(
                    "InvalidLaunchTemplateId.NotFound: The specified launch template, with \
                     template ID {template_id}, does not exist."
                ),
            ));
        };
        let Some(spec) = template.spec(version) else {
            return Err((
                ErrorCategory::NotFound,
                format!(
                    "InvalidLaunchTemplateId.VersionNotFound: Could not find launch template \
                     version {version} for launch template {template_id}."
                ),
            ));
        };
        let user_data = match &spec.user_data {
            UserData::Standard => {
                let cluster = self.template_cluster(template_id);
                Some(boot::base64(boot::ecs_user_data(cluster).as_bytes()))
            }
            UserData::Absent => None,
            UserData::Base64(text) => Some(text.clone()),
        };
        Ok(LaunchTemplateVersion {
            template_id: template_id.to_string(),
            version,
            user_data,
            instance_profile: spec.instance_profile.clone(),
            instance_type: Some(spec.instance_type.clone()),
            image_id: Some(spec.image_id.clone()),
        })
    }

    /// The cluster the first group (by name) launching from the template joins.
    fn template_cluster(&self, template_id: &str) -> Option<&str> {
        self.groups
            .values()
            .filter(|g| match &g.launch {
                LaunchSpec::Template { template_id: t, .. } => t == template_id,
                LaunchSpec::MixedInstancesPolicy { template_id: t } => {
                    t.as_deref() == Some(template_id)
                }
                LaunchSpec::LaunchConfiguration { .. } => false,
            })
            .find_map(|g| g.cluster.as_deref())
    }

    /// DescribeScalingActivities of a group: newest first, one page.
    pub(crate) fn scaling_activities(&self, group: &str) -> Result<Vec<ScalingActivity>, Refusal> {
        let g = self
            .groups
            .get(group)
            .ok_or_else(|| group_not_found(group))?;
        Ok(g.activities.iter().cloned().collect())
    }

    // ---- placement ----

    /// Where a task leaving PROVISIONING may go: `None` if its capacity is not constrained by
    /// a modelled group; otherwise the index of a container instance with a free slot, if any.
    fn slot_for(&self, ci: usize, key: u64) -> Option<Option<usize>> {
        let c = &self.clusters[ci];
        let task = &c.tasks.get(&key)?.task;
        let groups = self.task_groups(ci, key)?;
        let chosen = c
            .instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.group.as_deref().is_some_and(|g| groups.contains(&g)))
            .filter(|(_, i)| i.accepts_tasks() && i.lacks(task.cpu, task.memory).is_none())
            .min_by_key(|(index, i)| (i.used, *index))
            .map(|(index, _)| index);
        Some(chosen)
    }

    /// The groups behind the task's capacity provider strategy; `None` if its capacity is not
    /// constrained by modelled groups.
    fn task_groups(&self, ci: usize, key: u64) -> Option<Vec<&str>> {
        let c = &self.clusters[ci];
        let task = &c.tasks.get(&key)?.task;
        let Capacity::CapacityProviderStrategy(items) = &task.capacity else {
            return None;
        };
        let mut groups = Vec::new();
        for item in items {
            let provider = c
                .providers
                .iter()
                .find(|p| p.name == item.capacity_provider)?;
            groups.push(provider.group.as_ref()?.0.as_str());
        }
        (!groups.is_empty()).then_some(groups)
    }

    /// A service task found no slot: if its groups have instances taking tasks but none large
    /// enough for it, its service gets ECS's "unable to place a task" event (not repeated
    /// while it is the newest).
    fn note_unplaceable(&mut self, ci: usize, key: u64) {
        let Some((message, lacking)) = self.unplaceable_message(ci, key) else {
            return;
        };
        let now = self.now;
        let c = &mut self.clusters[ci];
        let Some(task) = c.tasks.get(&key).map(|t| &t.task) else {
            return;
        };
        let providers = task.capacity_providers();
        let Some(service) = task.service_name() else {
            return;
        };
        let Some(state) = c.services.get_mut(service) else {
            return;
        };
        if state.events.front().is_some_and(|e| e.message == message) {
            return;
        }
        state.events.push_front(ServiceEvent {
            at: Some(now),
            message,
        });
        state.events.truncate(SERVICE_EVENTS_KEPT);
        let providers: Vec<String> = providers.into_iter().map(str::to_string).collect();
        self.outbox
            .placement_failure(&c.arn, &state.arn, (lacking, &providers), now);
    }

    /// ECS's message, and what the closest instance lacks (`CPU` or `memory`).
    fn unplaceable_message(&self, ci: usize, key: u64) -> Option<(String, &'static str)> {
        let c = &self.clusters[ci];
        let task = &c.tasks.get(&key)?.task;
        let service = task.service_name()?;
        let groups = self.task_groups(ci, key)?;
        let candidates: Vec<&SimInstance> = c
            .instances
            .iter()
            .filter(|i| i.group.as_deref().is_some_and(|g| groups.contains(&g)))
            .filter(|i| i.info.status == "ACTIVE" && i.info.agent_connected)
            .collect();
        if candidates
            .iter()
            .any(|i| i.lacks(task.cpu, task.memory).is_none())
        {
            return None;
        }
        let closest = candidates
            .iter()
            .max_by_key(|i| i.size.as_ref().map(|s| (s.memory_mib, s.vcpus)))?;
        let lacking = closest.lacks(task.cpu, task.memory)?;
        let id = closest
            .info
            .arn
            .rsplit('/')
            .next()
            .unwrap_or(&closest.info.arn);
        let message = format!(
            "(service {service}) was unable to place a task because no container instance met \
             all of its requirements. The closest matching (container-instance {id}) has \
             insufficient {lacking} available. For more information, see the Troubleshooting \
             section of the Amazon ECS Developer Guide."
        );
        Some((message, lacking))
    }

    /// The task's provisioning is done: it moves to PENDING if it can be placed, or waits for
    /// a slot.
    pub(super) fn leave_provisioning(&mut self, ci: usize, key: u64) {
        match self.slot_for(ci, key) {
            None => self.enter(ci, key, TaskStatus::Pending),
            Some(Some(index)) => self.place_on(ci, key, index),
            Some(None) => {
                self.clusters[ci].waiting.insert(key);
                self.note_unplaceable(ci, key);
            }
        }
    }

    fn place_on(&mut self, ci: usize, key: u64, index: usize) {
        let c = &mut self.clusters[ci];
        c.waiting.remove(&key);
        let instance = &mut c.instances[index];
        instance.used += 1;
        if let Some(t) = c.tasks.get_mut(&key) {
            t.task.container_instance_arn = Some(instance.info.arn.clone());
        }
        self.enter(ci, key, TaskStatus::Pending);
    }

    /// Places the waiting tasks of the cluster that now find a free slot, oldest first.
    pub(super) fn place_waiting(&mut self, ci: usize) {
        let waiting: Vec<u64> = self.clusters[ci].waiting.iter().copied().collect();
        for key in waiting {
            let still_waiting = self.clusters[ci].tasks.get(&key).is_some_and(|t| {
                t.task.desired_status == DesiredStatus::Running
                    && t.task.last_status == TaskStatus::Provisioning
            });
            if !still_waiting {
                self.clusters[ci].waiting.remove(&key);
                continue;
            }
            if let Some(Some(index)) = self.slot_for(ci, key) {
                self.place_on(ci, key, index);
            } else {
                self.note_unplaceable(ci, key);
            }
        }
    }

    /// A STOPPED task frees its slot on `arn`.
    pub(super) fn release_slot(&mut self, ci: usize, arn: &str) {
        if let Some(i) = self.clusters[ci]
            .instances
            .iter_mut()
            .find(|i| i.info.arn == arn)
        {
            i.used = i.used.saturating_sub(1);
        }
        self.place_waiting(ci);
    }
}

impl super::ClusterState {
    /// The cluster's capacity providers, as DescribeCapacityProviders shows them.
    pub(crate) fn capacity_providers(&self) -> Vec<CapacityProvider> {
        self.providers
            .iter()
            .map(|p| CapacityProvider {
                name: p.name.clone(),
                auto_scaling_group_arn: p.group.as_ref().map(|(_, arn)| arn.clone()),
                managed_scaling: false,
            })
            .collect()
    }
}

/// Adds `activity` to a group's activities, keeping them newest first and at most
/// [`ACTIVITIES_KEPT`] (an existing instance's launch may be older than ones recorded before).
fn record(activities: &mut VecDeque<ScalingActivity>, activity: ScalingActivity) {
    let at = activity.start_time;
    let position = activities
        .iter()
        .position(|a| a.start_time <= at)
        .unwrap_or(activities.len());
    activities.insert(position, activity);
    activities.truncate(ACTIVITIES_KEPT);
}

/// An activity id: a UUID made from a counter.
fn activity_id(counter: u64) -> String {
    let hex = ids::hex_id(counter);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Why Auto Scaling launched, as it words it.
fn capacity_cause(at: SystemTime, from: usize, desired: u32) -> String {
    let to = (desired as usize).max(from.saturating_add(1));
    format!(
        "At {} an instance was started in response to a difference between desired and actual \
         capacity, increasing the capacity from {from} to {to}.",
        humantime::format_rfc3339_seconds(at)
    )
}

/// The Successful activity of launching `instance`.
fn launch_activity(
    counter: u64,
    instance: &str,
    at: SystemTime,
    from: usize,
    desired: u32,
) -> ScalingActivity {
    ScalingActivity {
        activity_id: activity_id(counter),
        status_code: "Successful".to_string(),
        status_message: None,
        description: Some(format!("Launching a new EC2 instance: {instance}")),
        cause: Some(capacity_cause(at, from, desired)),
        start_time: Some(at),
    }
}

/// What instances launched without a template version boot with.
fn default_spec() -> &'static VersionSpec {
    static DEFAULT: std::sync::OnceLock<VersionSpec> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(VersionSpec::default)
}
