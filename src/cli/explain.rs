//! `explain TASK`: the causal chain behind one task, as text: the task, its capacity
//! provider, the Auto Scaling group, its launch template versions and their instances'
//! registration, the root causes under the version they explain (`docs/causes.md`), then the
//! diagnosis and what the policies would do.
//!
//! A task is named by its long ARN, by the `task/CLUSTER/ID` that `plan` prints, or by its bare
//! id (then every cluster in scope is searched).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::audit::mode_name;
use crate::capacity::CapacityFinding;
use crate::causes::{Clues, Reading, RootCause, userdata};
use crate::controller::ClusterReport;
use crate::diagnose::short;
use crate::domain::short_name;
use crate::domain::{AutoScalingGroup, GroupLaunch, Task};
use crate::prose::plural;

/// How the command line named a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskName {
    /// A long ARN or `task/CLUSTER/ID`: the cluster is known.
    InCluster { cluster: String, id: String },
    /// A bare task id: every cluster in scope is searched.
    Bare { id: String },
}

impl TaskName {
    pub fn id(&self) -> &str {
        match self {
            TaskName::InCluster { id, .. } | TaskName::Bare { id } => id,
        }
    }
}

/// Reads a task's name: `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`, `task/CLUSTER/ID`, or
/// `ID`. The error is one line naming what was given.
pub fn parse_task_name(text: &str) -> Result<TaskName, String> {
    let bad = || {
        format!(
            "{text:?} is not a task: give its ARN (arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID), \
             task/CLUSTER/ID as plan prints it, or its id"
        )
    };
    let path = match text.split_once(":task/") {
        Some((prefix, rest)) if prefix.starts_with("arn:") => format!("task/{rest}"),
        Some(_) => return Err(bad()),
        None => text.to_string(),
    };
    let name = match path.strip_prefix("task/") {
        Some(rest) => match rest.split_once('/') {
            Some((cluster, id)) => TaskName::InCluster {
                cluster: cluster.to_string(),
                id: id.to_string(),
            },
            // The old ARN format names no cluster.
            None => TaskName::Bare {
                id: rest.to_string(),
            },
        },
        None => TaskName::Bare { id: path.clone() },
    };
    let cluster_ok = match &name {
        TaskName::InCluster { cluster, .. } => is_name(cluster),
        TaskName::Bare { .. } => true,
    };
    if cluster_ok && is_name(name.id()) {
        Ok(name)
    } else {
        Err(bad())
    }
}

/// Letters, digits, `-` and `_`: what ECS allows in a cluster name and uses in a task id.
fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The task with this id in a reconcile's snapshot.
pub fn find_task<'a>(report: &'a ClusterReport, id: &str) -> Option<&'a Task> {
    report.snapshot.tasks.iter().find(|t| t.id() == id)
}

/// The one cluster of `reports` that holds a task with this id; the error is one line (not
/// found, or found in several clusters).
pub fn cluster_holding<'a>(
    reports: &'a [ClusterReport],
    id: &str,
) -> Result<&'a ClusterReport, String> {
    let holding: Vec<&ClusterReport> = reports
        .iter()
        .filter(|r| find_task(r, id).is_some())
        .collect();
    match holding.as_slice() {
        [one] => Ok(one),
        [] => {
            let searched: Vec<&str> = reports.iter().map(|r| r.cluster.as_str()).collect();
            Err(format!(
                "task {id}: not found in the clusters in scope ({}); ECS keeps stopped tasks for \
                 about an hour",
                if searched.is_empty() {
                    "none".to_string()
                } else {
                    searched.join(", ")
                }
            ))
        }
        many => {
            let names: Vec<&str> = many.iter().map(|r| r.cluster.as_str()).collect();
            Err(format!(
                "task {id}: ambiguous, found in clusters {}; name it as task/CLUSTER/{id}",
                names.join(", ")
            ))
        }
    }
}

/// The reconcile of the task's cluster, when it holds the task; the error is one line.
pub fn holding_task(report: ClusterReport, id: &str) -> Result<ClusterReport, String> {
    if find_task(&report, id).is_some() {
        Ok(report)
    } else {
        Err(not_found_in_cluster(id, &report.cluster))
    }
}

fn not_found_in_cluster(task_id: &str, cluster: &str) -> String {
    format!(
        "task {task_id}: not found in cluster {cluster}; ECS keeps stopped tasks for about an hour"
    )
}

/// The causal chain for the task with id `task_id` in a dry-run reconcile of its cluster
/// (one line saying it is not there, if it is not: see [`holding_task`]).
pub fn explain(task_id: &str, report: &ClusterReport) -> String {
    let mut out = String::new();
    let snap = &report.snapshot;
    let Some(task) = find_task(report, task_id) else {
        let _ = writeln!(out, "{}", not_found_in_cluster(task_id, &report.cluster));
        return out;
    };
    let task_arn = task.arn.as_str();
    let capacity = report
        .plan
        .capacity
        .iter()
        .find(|c| c.waiting_tasks.iter().any(|t| t == task_arn));
    describe_task(&mut out, task, report);
    for provider_name in task.capacity_providers() {
        let Some(provider) = snap
            .capacity_providers
            .iter()
            .find(|p| p.name == provider_name)
        else {
            let _ = writeln!(out, "→ capacity provider {provider_name}: not observed");
            continue;
        };
        let _ = writeln!(
            out,
            "→ capacity provider {} (managed scaling {})",
            provider.name,
            if provider.managed_scaling {
                "on"
            } else {
                "off"
            }
        );
        let Some(group_arn) = &provider.auto_scaling_group_arn else {
            let _ = writeln!(out, "  (Fargate: no instances of its own)");
            continue;
        };
        match snap
            .auto_scaling_groups
            .iter()
            .find(|g| &g.arn == group_arn || group_arn.ends_with(&format!("/{}", g.name)))
        {
            Some(group) => {
                let explained = capacity.filter(|c| c.capacity_provider == provider.name);
                describe_group(&mut out, group, report, explained);
            }
            None => {
                let _ = writeln!(out, "→ Auto Scaling group {group_arn}: does not exist");
            }
        }
    }
    if let Some(capacity) = capacity {
        let _ = writeln!(
            out,
            "diagnosis: {} [{}]",
            capacity.reason,
            capacity.cause.code().as_str()
        );
        for line in unread_lines(capacity) {
            let _ = writeln!(out, "{line}");
        }
    } else if let Some(f) = report.plan.findings.iter().find(|f| f.task_arn == task_arn) {
        let _ = writeln!(out, "diagnosis: {}", f.reason);
    } else {
        let _ = writeln!(out, "diagnosis: not stuck under any policy");
    }
    describe_decisions(&mut out, task_arn, report);
    out
}

fn describe_task(out: &mut String, task: &Task, report: &ClusterReport) {
    let _ = writeln!(out, "task {}", task.arn);
    let owner = match task.service_name() {
        Some(s) => format!("service {s}"),
        None => format!(
            "standalone (group {})",
            task.group.as_deref().unwrap_or("-")
        ),
    };
    let finding = report.plan.findings.iter().find(|f| f.task_arn == task.arn);
    let state = match finding {
        Some(f) => format!("{} (policy {})", f.reason, f.policy),
        None => format!(
            "{} (desired {:?}, health {:?})",
            task.last_status, task.desired_status, task.health
        ),
    };
    let _ = writeln!(out, "  {owner}; {state}");
    let _ = writeln!(out, "  task definition {}", task.task_definition_arn);
}

fn describe_group(
    out: &mut String,
    group: &AutoScalingGroup,
    report: &ClusterReport,
    capacity: Option<&CapacityFinding>,
) {
    let (launch, template) = match &group.launch {
        GroupLaunch::LaunchTemplate {
            template_id,
            template_name,
            version,
            resolved_version,
        } => (
            format!(
                "launch template {template_id} ({template_name}) version {version}{}",
                match resolved_version {
                    Some(v) if version != &v.to_string() => format!(" = {v}"),
                    _ => String::new(),
                }
            ),
            Some(template_id.as_str()),
        ),
        GroupLaunch::MixedInstancesPolicy { template_id } => {
            ("a mixed instances policy".into(), template_id.as_deref())
        }
        GroupLaunch::LaunchConfiguration { name } => (format!("launch configuration {name}"), None),
    };
    let _ = writeln!(
        out,
        "→ Auto Scaling group {}: desired {}, min {}, max {}; {launch}",
        group.name, group.desired_capacity, group.min_size, group.max_size
    );
    for (key, value) in &group.tags {
        if key.starts_with("ecs-reconciler/") {
            let _ = writeln!(out, "  tag {key} = {value}");
        }
    }
    let snap = &report.snapshot;
    // The diagnosis' own rule (INACTIVE container instances are not registered).
    let registered = snap.registered_instances();
    let root_causes: &[RootCause] = capacity.map_or(&[], |c| c.root_causes.as_slice());
    let version_of = |instance_id: &str| {
        group
            .instances
            .iter()
            .find(|i| i.instance_id == instance_id)
            .and_then(|i| i.launch_template_version)
    };
    let mut by_version: BTreeMap<Option<u32>, Vec<String>> = BTreeMap::new();
    for i in &group.instances {
        let age = i
            .launched_at
            .and_then(|t| snap.observed_at.duration_since(t).ok())
            .map(short)
            .unwrap_or_else(|| "?".into());
        let registration = match registered.get(i.instance_id.as_str()) {
            Some(ci) if ci.agent_connected => "registered, agent connected",
            Some(_) => "registered, agent disconnected",
            None => "never registered",
        };
        let mut line = format!(
            "{} {} {age}, {registration}",
            i.instance_id, i.lifecycle_state
        );
        if let Some(note) = boot_note(&report.clues, &i.instance_id) {
            line.push_str(&format!("; boot output {note}"));
        }
        by_version
            .entry(i.launch_template_version)
            .or_default()
            .push(line);
    }
    for (version, instances) in by_version {
        let v = version.map_or("unknown".to_string(), |v| v.to_string());
        let count = plural(instances.len(), "instance", "instances");
        let _ = writeln!(out, "  → version {v}: {count}");
        for line in instances {
            let _ = writeln!(out, "      {line}");
        }
        if let (Some(template), Some(version)) = (template, version) {
            describe_version(out, &report.clues, template, version);
        }
        for cause in root_causes
            .iter()
            .filter(|c| cause_version(c, &version_of).is_some_and(|cv| Some(cv) == version))
        {
            describe_cause(out, cause, "      ");
        }
    }
    for cause in root_causes
        .iter()
        .filter(|c| cause_version(c, &version_of).is_none())
    {
        describe_cause(out, cause, "  ");
    }
}

/// The launch template version a root cause explains, if it explains one.
fn cause_version(cause: &RootCause, version_of: &impl Fn(&str) -> Option<u32>) -> Option<u32> {
    match cause {
        RootCause::BootMountFailed { instance_id, .. }
        | RootCause::BootScriptFailed { instance_id, .. }
        | RootCause::BootAgentFailed { instance_id, .. } => version_of(instance_id),
        RootCause::UserDataOtherCluster { version, .. }
        | RootCause::UserDataDefaultCluster { version, .. }
        | RootCause::NoInstanceProfile { version, .. } => Some(*version),
        RootCause::LaunchFailed { .. }
        | RootCause::NoInstanceFits { .. }
        | RootCause::ProvisioningQuota { .. } => None,
    }
}

/// One root cause: its code and phrase, then the boot lines it quotes with the instance id.
fn describe_cause(out: &mut String, cause: &RootCause, indent: &str) {
    let _ = writeln!(
        out,
        "{indent}root cause [{}]: {}",
        cause.code().as_str(),
        cause.phrase()
    );
    let instance = cause.instance_id().unwrap_or_default();
    for line in cause.quote() {
        let _ = writeln!(out, "{indent}  {instance} | {line}");
    }
    if let RootCause::LaunchFailed { message, .. } = cause {
        let _ = writeln!(out, "{indent}  {message}");
    }
}

/// What a version's reading says: its instance profile and its UserData's facts, or why it
/// could not be read.
fn describe_version(out: &mut String, clues: &Clues, template: &str, version: u32) {
    let Some(reading) = clues.versions.get(&(template.to_string(), version)) else {
        return;
    };
    let value = match reading {
        Reading::Read { value } => value,
        other => {
            let _ = writeln!(
                out,
                "      launch template version: {}",
                not_read(other, "DescribeLaunchTemplateVersions")
            );
            return;
        }
    };
    let _ = writeln!(
        out,
        "      instance profile: {}",
        value.instance_profile.as_deref().unwrap_or("none")
    );
    let facts = match value.user_data.as_deref().map(userdata::read) {
        None => "none".to_string(),
        Some(Err(e)) => format!("unreadable ({e})"),
        Some(Ok(report)) => report.describe(),
    };
    let _ = writeln!(out, "      UserData: {facts}");
}

/// Why an instance's boot output is not part of the chain, if it is not.
fn boot_note(clues: &Clues, instance_id: &str) -> Option<String> {
    match clues.boot.get(instance_id)? {
        Reading::Read { .. } => None,
        other => Some(not_read(other, "GetConsoleOutput")),
    }
}

fn not_read<T>(reading: &Reading<T>, call: &str) -> String {
    match reading {
        Reading::Read { .. } => "read".into(),
        Reading::NotYet => "not available yet".into(),
        Reading::Unreadable {
            operation,
            category,
        } => format!("could not be read ({operation}: {category})"),
        Reading::Skipped => format!("not read ({call} skipped this pass or switched off)"),
    }
}

/// The root-cause readings the diagnosis names as not made.
fn unread_lines(capacity: &CapacityFinding) -> Vec<String> {
    capacity
        .unread
        .iter()
        .map(|u| format!("  could not read: {u}"))
        .collect()
}

fn describe_decisions(out: &mut String, task_arn: &str, report: &ClusterReport) {
    let capacity_groups: Vec<&str> = report
        .plan
        .capacity
        .iter()
        .filter(|c| c.waiting_tasks.iter().any(|t| t == task_arn))
        .filter_map(|c| c.group_arn.as_deref())
        .collect();
    let relevant = |target: &str| target == task_arn || capacity_groups.contains(&target);
    let mut any = false;
    for a in report
        .plan
        .actions
        .iter()
        .filter(|a| relevant(a.action.target()))
    {
        any = true;
        let _ = writeln!(
            out,
            "the policies would: {} {} [{}, policy {}]",
            a.action.name(),
            short_name(a.action.target()),
            mode_name(a.mode),
            a.policy
        );
    }
    for h in report.plan.held.iter().filter(|h| relevant(&h.target)) {
        any = true;
        let _ = writeln!(
            out,
            "held back: {} {}: {} ({})",
            h.action,
            short_name(&h.target),
            h.hold.name(),
            h.hold.detail()
        );
    }
    if !any {
        let _ = writeln!(out, "the policies would: nothing");
    }
}
