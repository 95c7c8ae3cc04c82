//! The demo's narration: state changes and findings of each pass, then each audit record the
//! pass wrote (one line per action, one per action held back), then the summary.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::audit::{AUDIT_UNAVAILABLE, AuditRecord, Outcome};
use crate::capacity::CapacityFinding;
use crate::controller::{PassReport, since};
use crate::decision::ActionKind;
use crate::diagnose::Condition;
use crate::domain::short_name;
use crate::domain::{DesiredStatus, GroupLaunch, HealthStatus, TaskStatus};
use crate::policy::Policy;
use crate::prose::plural;

use super::DemoSummary;

/// What the narration keeps between passes.
#[derive(Default)]
pub(super) struct Story {
    /// Stuck tasks found, with what they were stuck in.
    pub(super) stuck: BTreeMap<String, Condition>,
    /// Findings told (capacity findings and root causes too).
    told: BTreeSet<String>,
    last_counts: BTreeMap<String, String>,
    /// Launch template id → name, as the snapshots show them.
    templates: BTreeMap<String, String>,
    /// Audit records already told.
    pub(super) records_told: usize,
}

impl Story {
    /// `text` with each launch template id shown as its name with the id: "demo-lt
    /// (lt-00f3…)" (an id already shown so is left as it is).
    pub(super) fn name_templates(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (id, name) in self.templates.iter().filter(|(_, n)| !n.is_empty()) {
            let mut out = String::with_capacity(text.len());
            let mut rest = text.as_str();
            let prefix = format!("{name} (");
            while let Some(at) = rest.find(id.as_str()) {
                out.push_str(&rest[..at]);
                if out.ends_with(&prefix) {
                    out.push_str(id);
                } else {
                    let _ = write!(out, "{prefix}{id})");
                }
                rest = &rest[at + id.len()..];
            }
            out.push_str(rest);
            text = out;
        }
        text
    }
}

/// A policy for the header: "policy demo-stuck-tasks: PROVISIONING 10m, …; replaceTask, …;
/// at most 20 actions an hour, …".
pub(super) fn policy_line(p: &Policy) -> String {
    let short = crate::diagnose::short;
    let limits = TaskStatus::ALL
        .iter()
        .filter_map(|s| p.stuck.limit_for(*s).map(|d| format!("{s} {}", short(d))))
        .chain(p.stuck.unhealthy.map(|d| format!("unhealthy {}", short(d))));
    let r = &p.remediate;
    let remedies = [
        r.replace_task.as_ref().map(|_| "replaceTask".to_string()),
        r.nudge_capacity.as_ref().map(|n| {
            format!(
                "nudgeCapacity (step {}, max {}, cooldown {})",
                n.step,
                n.max_desired,
                short(n.cooldown)
            )
        }),
        r.cordon_launch_template.as_ref().map(|c| {
            format!(
                "cordonLaunchTemplate (registration {}, {})",
                short(c.registration_timeout),
                plural(
                    c.min_failed_instances as usize,
                    "failed instance",
                    "failed instances"
                )
            )
        }),
        r.drain_container_instance.as_ref().map(|d| {
            format!(
                "drainContainerInstance (agent disconnected {})",
                short(d.agent_disconnected)
            )
        }),
    ];
    let g = &p.guardrails;
    format!(
        "policy {}: {}; {}; at most {} an hour, {}% of a service in flight; pause above {}% \
         stuck",
        p.name,
        limits.collect::<Vec<_>>().join(", "),
        remedies
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
        plural(g.max_actions_per_hour as usize, "action", "actions"),
        g.max_in_flight_per_service.0,
        g.pause_when_stuck_above.0
    )
}

/// The summary: what was stuck, what the audit trail recorded, what recovered.
pub(super) fn summary_line(s: &DemoSummary, elapsed: Duration) -> String {
    let actions = |n| plural(n, "action", "actions");
    let mut acted = match (s.actions_planned, s.actions_taken) {
        (0, 0) => "no action taken".to_string(),
        (0, n) => format!("{} taken", actions(n)),
        (n, 0) => format!("{} planned, none taken", actions(n)),
        (p, t) => format!("{} taken, {} planned", actions(t), actions(p)),
    };
    if s.actions_failed > 0 {
        let _ = write!(acted, ", {} failed", s.actions_failed);
    }
    let stuck = match s.stuck_found {
        0 => "nothing was stuck".to_string(),
        n => format!("{} found", plural(n, "stuck task", "stuck tasks")),
    };
    let after = |d: Duration| format!("after {} of virtual time", crate::diagnose::short(d));
    let recovery = match (s.stuck_found, s.time_to_recovery) {
        (0, _) => String::new(),
        (1, Some(d)) => format!("; it recovered {}", after(d)),
        (n, Some(d)) => format!("; all {n} recovered {}", after(d)),
        (n, None) if s.recovered == 0 => {
            format!("; none recovered: {} still stuck {}", n, after(elapsed))
        }
        (n, None) => format!(
            "; {} of {n} recovered: {} still stuck {}",
            s.recovered,
            n - s.recovered,
            after(elapsed)
        ),
    };
    let held = match s.held_back {
        0 => "nothing held back".to_string(),
        n => format!("{n} held back"),
    };
    format!("\nsummary: {stuck}, {acted}, {held}{recovery}\n")
}

/// Tells the audit records of one pass: one line per action done, failed or planned, one per
/// action held back (those waiting on capacity together), and counts them.
pub(super) fn tell_records(
    text: &mut String,
    records: &[AuditRecord],
    report: &PassReport,
    start: SystemTime,
    summary: &mut DemoSummary,
) {
    let at_of = |cluster: &str| {
        report
            .clusters
            .iter()
            .find(|c| c.cluster == cluster)
            .map(|c| clock(start, c.snapshot.observed_at))
            .unwrap_or_default()
    };
    let mut waiting: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        match &r.outcome {
            Outcome::Started => continue,
            Outcome::Done => summary.actions_taken += 1,
            Outcome::Failed(_) => summary.actions_failed += 1,
            Outcome::Planned => summary.actions_planned += 1,
            Outcome::Skipped(CAPACITY_CAUSE) => {
                summary.held_back += 1;
                *waiting.entry(r.cluster.clone()).or_default() += 1;
                continue;
            }
            Outcome::Skipped(_) | Outcome::AuditUnavailable => {
                summary.held_back += 1;
                let hold = match r.outcome {
                    Outcome::Skipped(hold) => hold,
                    _ => AUDIT_UNAVAILABLE,
                };
                let _ = writeln!(
                    text,
                    "[{}]   held back {} {}: {} ({})",
                    at_of(&r.cluster),
                    r.action,
                    short_name(&r.target),
                    hold,
                    r.detail.as_deref().unwrap_or_default()
                );
                continue;
            }
        }
        summary.actions_narrated += 1;
        let _ = writeln!(text, "[{}]   {}", at_of(&r.cluster), action_line(r));
    }
    for (cluster, n) in waiting {
        let _ = writeln!(
            text,
            "[{}]   not replacing {}: {} on capacity, and a replacement would wait the same way",
            at_of(&cluster),
            plural(n, "stuck task", "stuck tasks"),
            if n == 1 { "it waits" } else { "they wait" }
        );
    }
}

/// The hold of a task replacement that waits on capacity.
const CAPACITY_CAUSE: &str = "capacityCause";

/// One action record for people: "stopTask task/… → done (service web will start a
/// replacement)"; a drain names the EC2 instance and says why.
fn action_line(r: &AuditRecord) -> String {
    let is = |kind: ActionKind| r.action == kind.as_str();
    let detail = r
        .detail
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    let line =
        |target: &str, what: &str| format!("{} {target} → {}{what}{detail}", r.action, r.outcome);
    let target = short_name(&r.target);
    match r.service.as_deref() {
        Some(s) if is(ActionKind::StopTask) => {
            line(target, &format!(" (service {s} will start a replacement)"))
        }
        _ if is(ActionKind::ReplaceTask) || is(ActionKind::RunReplacement) => {
            line(target, " (standalone: re-run with the same settings)")
        }
        _ if is(ActionKind::DrainContainerInstance) => {
            let ec2 = r.evidence.get("ec2InstanceId").map_or("?", String::as_str);
            let since = r
                .evidence
                .get("disconnectedSince")
                .map(|s| format!("; disconnected since {s}"))
                .unwrap_or_default();
            let target = format!("EC2 instance {ec2} (container instance {target})");
            format!("{}; why: {}{since}", line(&target, ""), r.reason)
        }
        _ => line(target, ""),
    }
}

/// Prints state changes and newly stuck tasks of one pass.
pub(super) fn tell(text: &mut String, report: &PassReport, start: SystemTime, story: &mut Story) {
    for cluster in &report.clusters {
        let snap = &cluster.snapshot;
        for group in &snap.auto_scaling_groups {
            if let GroupLaunch::LaunchTemplate {
                template_id,
                template_name,
                ..
            } = &group.launch
            {
                story
                    .templates
                    .insert(template_id.clone(), template_name.clone());
            }
        }
        let at = clock(start, snap.observed_at);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for t in snap
            .tasks
            .iter()
            .filter(|t| t.desired_status == DesiredStatus::Running)
        {
            let label = if t.health == HealthStatus::Unhealthy {
                "RUNNING (UNHEALTHY)".to_string()
            } else {
                t.last_status.to_string()
            };
            *counts.entry(label).or_default() += 1;
        }
        let line = counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ");
        if story.last_counts.get(&snap.cluster_name) != Some(&line) {
            let _ = writeln!(text, "[{at}] {}: {line}", snap.cluster_name);
            story.last_counts.insert(snap.cluster_name.clone(), line);
        }
        for f in &cluster.plan.findings {
            if !story.stuck.contains_key(&f.task_arn) {
                story.stuck.insert(f.task_arn.clone(), f.condition);
                let _ = writeln!(text, "[{at}] {}: {}", short_name(&f.task_arn), f.reason);
            }
        }
        for c in &cluster.plan.capacity {
            if story.told.insert(format!(
                "capacity {} {}",
                c.capacity_provider,
                c.cause.name()
            )) {
                let _ = writeln!(text, "[{at}] why: {}", c.reason);
            }
            tell_root_causes(text, &at, c, &mut story.told);
        }
    }
    for (cluster, e) in &report.errors {
        let _ = writeln!(text, "cluster {cluster}: not reconciled: {e}");
    }
}

/// The root causes behind a capacity finding not told yet (a boot output may be read a pass
/// after the finding), each with the boot lines it quotes.
fn tell_root_causes(
    text: &mut String,
    at: &str,
    finding: &CapacityFinding,
    told: &mut BTreeSet<String>,
) {
    for cause in &finding.root_causes {
        let key = format!("capacity {} root {cause:?}", finding.capacity_provider);
        if !told.insert(key) {
            continue;
        }
        let _ = writeln!(
            text,
            "[{at}]   root cause [{}]: {}",
            cause.code().as_str(),
            cause.phrase()
        );
        let instance = cause.instance_id().unwrap_or_default();
        for line in cause.quote() {
            let _ = writeln!(text, "[{at}]     {instance} | {line}");
        }
    }
}

pub(super) fn clock(start: SystemTime, t: SystemTime) -> String {
    let s = since(start, t).as_secs();
    format!("+{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}
