//! How `plan` shows a pass: a table for people (Markdown-shaped, so it pastes into a pull
//! request), or JSON for machines.

use comfy_table::{Table, presets};
use serde_json::json;

use crate::audit::mode_name;
use crate::controller::PassReport;
use crate::diagnose::{rfc3339, short};
use crate::domain::short_name;

/// The pass as tables: per cluster, findings, planned actions and held-back actions.
pub fn plan_table(report: &PassReport) -> String {
    let mut out = String::new();
    for cluster in &report.clusters {
        let snap = &cluster.snapshot;
        out.push_str(&format!(
            "cluster {} — observed {}, {} tasks, {}\n",
            snap.cluster_name,
            rfc3339(snap.observed_at),
            snap.tasks.len(),
            if snap.is_complete() {
                "complete".to_string()
            } else {
                format!("INCOMPLETE: {}", snap.gaps.join("; "))
            }
        ));
        let plan = &cluster.plan;
        if plan.findings.is_empty() {
            out.push_str("  no stuck tasks\n\n");
            continue;
        }
        let mut findings = table(&["task", "service", "why", "policy"]);
        for f in &plan.findings {
            findings.add_row(vec![
                short_name(&f.task_arn).to_string(),
                f.service.clone().unwrap_or_else(|| "(standalone)".into()),
                f.reason.clone(),
                f.policy.clone(),
            ]);
        }
        out.push_str(&format!("\nstuck tasks\n{findings}\n"));
        if !plan.actions.is_empty() {
            let mut actions = table(&["action", "task", "mode", "policy", "why"]);
            for a in &plan.actions {
                actions.add_row(vec![
                    a.action.name().to_string(),
                    short_name(a.action.target()).to_string(),
                    mode_name(a.mode).to_string(),
                    a.policy.clone(),
                    a.reason.clone(),
                ]);
            }
            out.push_str(&format!("\nplanned actions\n{actions}\n"));
        }
        if !plan.held.is_empty() {
            let mut held = table(&["action", "task", "held by", "detail"]);
            for h in &plan.held {
                held.add_row(vec![
                    h.action.to_string(),
                    short_name(&h.target).to_string(),
                    h.hold.name().to_string(),
                    h.hold.detail(),
                ]);
            }
            out.push_str(&format!("\nheld back\n{held}\n"));
        }
        out.push('\n');
    }
    for (cluster, e) in &report.errors {
        out.push_str(&format!("cluster {cluster}: NOT RECONCILED: {e}\n"));
    }
    let findings: usize = report.clusters.iter().map(|c| c.plan.findings.len()).sum();
    let held: usize = report.clusters.iter().map(|c| c.plan.held.len()).sum();
    out.push_str(&format!(
        "{} clusters, {findings} stuck tasks, {} actions planned, {held} held back, {} errors\n",
        report.clusters.len(),
        report.action_count(),
        report.errors.len()
    ));
    out
}

/// The pass as one JSON document.
pub fn plan_json(report: &PassReport) -> String {
    let clusters: Vec<_> = report
        .clusters
        .iter()
        .map(|c| {
            json!({
                "cluster": c.cluster,
                "observedAt": rfc3339(c.snapshot.observed_at),
                "tasks": c.snapshot.tasks.len(),
                "complete": c.snapshot.is_complete(),
                "gaps": c.snapshot.gaps,
                "findings": c.plan.findings.iter().map(|f| json!({
                    "task": f.task_arn,
                    "service": f.service,
                    "policy": f.policy,
                    "reason": f.reason,
                    "elapsed": short(f.elapsed),
                    "limit": short(f.limit),
                    "evidence": f.evidence,
                })).collect::<Vec<_>>(),
                "actions": c.plan.actions,
                "held": c.plan.held.iter().map(|h| json!({
                    "action": h.action,
                    "task": h.target,
                    "policy": h.policy,
                    "guardrail": h.hold.name(),
                    "detail": h.hold.detail(),
                    "reason": h.reason,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let errors: Vec<_> = report
        .errors
        .iter()
        .map(|(cluster, e)| json!({"cluster": cluster, "error": e.to_string(), "category": e.category}))
        .collect();
    serde_json::to_string_pretty(&json!({ "clusters": clusters, "errors": errors }))
        .unwrap_or_default()
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::ASCII_MARKDOWN);
    t.set_header(header.to_vec());
    t
}
