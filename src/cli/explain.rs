//! `explain TASK_ARN`: the causal chain behind one task, as text: the task, its capacity
//! provider, the Auto Scaling group, its launch template versions and their instances'
//! registration, then the diagnosis and what the policies would do.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use crate::audit::mode_name;
use crate::controller::ClusterReport;
use crate::diagnose::short;
use crate::domain::short_name;
use crate::domain::{AutoScalingGroup, GroupLaunch, Task};

/// The cluster name in a task ARN of the long format (`…:task/CLUSTER/ID`).
pub fn cluster_of(task_arn: &str) -> Option<&str> {
    let (_, rest) = task_arn.split_once(":task/")?;
    let (cluster, _) = rest.split_once('/')?;
    Some(cluster)
}

/// The causal chain for `task_arn` in a dry-run reconcile of its cluster.
pub fn explain(task_arn: &str, report: &ClusterReport) -> String {
    let mut out = String::new();
    let snap = &report.snapshot;
    let Some(task) = snap.tasks.iter().find(|t| t.arn == task_arn) else {
        let _ = writeln!(
            out,
            "task {task_arn}: not found in cluster {} (ECS keeps stopped tasks for about an \
             hour)",
            snap.cluster_name
        );
        return out;
    };
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
            Some(group) => describe_group(&mut out, group, report),
            None => {
                let _ = writeln!(out, "→ Auto Scaling group {group_arn}: does not exist");
            }
        }
    }
    if let Some(capacity) = report
        .plan
        .capacity
        .iter()
        .find(|c| c.waiting_tasks.iter().any(|t| t == task_arn))
    {
        let _ = writeln!(out, "diagnosis: {}", capacity.reason);
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

fn describe_group(out: &mut String, group: &AutoScalingGroup, report: &ClusterReport) {
    let launch = match &group.launch {
        GroupLaunch::LaunchTemplate {
            template_id,
            template_name,
            version,
            resolved_version,
        } => format!(
            "launch template {template_id} ({template_name}) version {version}{}",
            match resolved_version {
                Some(v) if version != &v.to_string() => format!(" = {v}"),
                _ => String::new(),
            }
        ),
        GroupLaunch::MixedInstancesPolicy { .. } => "a mixed instances policy".into(),
        GroupLaunch::LaunchConfiguration { name } => format!("launch configuration {name}"),
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
    let registered: HashMap<&str, bool> = snap
        .container_instances
        .iter()
        .filter_map(|ci| Some((ci.ec2_instance_id.as_deref()?, ci.agent_connected)))
        .collect();
    let mut by_version: BTreeMap<Option<u32>, Vec<String>> = BTreeMap::new();
    for i in &group.instances {
        let age = i
            .launched_at
            .and_then(|t| snap.observed_at.duration_since(t).ok())
            .map(short)
            .unwrap_or_else(|| "?".into());
        let registration = match registered.get(i.instance_id.as_str()) {
            Some(true) => "registered, agent connected",
            Some(false) => "registered, agent disconnected",
            None => "never registered",
        };
        by_version
            .entry(i.launch_template_version)
            .or_default()
            .push(format!(
                "{} {} {age}, {registration}",
                i.instance_id, i.lifecycle_state
            ));
    }
    for (version, instances) in by_version {
        let v = version.map_or("unknown".to_string(), |v| v.to_string());
        let _ = writeln!(out, "  → version {v}: {} instances", instances.len());
        for line in instances {
            let _ = writeln!(out, "      {line}");
        }
    }
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
