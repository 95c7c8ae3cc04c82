//! `plan --base`: what a policy change changes. Two read-only passes over one observation (a
//! [`crate::cloud::memo::Memo`]), one under the base set and one under the new set, compared
//! per cluster and target: a decision added, removed, or changed (another action, another
//! guardrail holding it back, another policy or mode), each with both reasons. Pure: the
//! passes come in, the differences and their Markdown or JSON go out.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::audit::mode_name;
use crate::controller::PassReport;
use crate::domain::short_name;
use crate::policy::PolicySet;

/// What one set decided about one target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub policy: String,
    /// The action's name, as the audit trail writes it (`stopTask`, `nudgeCapacity`, ...).
    pub action: String,
    /// The policy's mode in its set: `enforce` or `dry-run`.
    pub mode: String,
    /// `planned`, or the guardrail that holds it back (`skipped:NAME` in the audit trail).
    pub outcome: String,
    /// Why the target needs it: the diagnosis.
    pub reason: String,
    /// What the guardrail says, for a held action.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Decision {
    /// What makes two decisions the same one (the reason may be worded after the limit).
    fn key(&self) -> (&str, &str, &str, &str) {
        (&self.policy, &self.action, &self.mode, &self.outcome)
    }
}

/// How a target's decisions differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One target whose decisions differ between the sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub cluster: String,
    pub target: String,
    pub kind: ChangeKind,
    pub base: Vec<Decision>,
    pub head: Vec<Decision>,
}

/// Every difference, and the fingerprints of both sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanDiff {
    pub base_policy_set: String,
    pub head_policy_set: String,
    /// Clusters either pass could not reconcile, with why.
    pub errors: Vec<(String, String)>,
    pub changes: Vec<Change>,
}

/// Decisions by cluster and target.
pub type Decisions = BTreeMap<(String, String), Vec<Decision>>;

/// The decisions of one pass, by cluster and target.
fn decisions(report: &PassReport, set: &PolicySet) -> Decisions {
    let mode = |policy: &str| {
        set.policies
            .iter()
            .find(|p| p.name == policy)
            .map_or("?", |p| mode_name(p.mode))
            .to_string()
    };
    let mut out = Decisions::new();
    for cluster in &report.clusters {
        let plan = &cluster.plan;
        for a in &plan.actions {
            out.entry((plan.cluster.clone(), a.action.target().to_string()))
                .or_default()
                .push(Decision {
                    policy: a.policy.clone(),
                    action: a.action.name().to_string(),
                    mode: mode(&a.policy),
                    outcome: "planned".into(),
                    reason: a.reason.clone(),
                    detail: None,
                });
        }
        for h in &plan.held {
            out.entry((plan.cluster.clone(), h.target.clone()))
                .or_default()
                .push(Decision {
                    policy: h.policy.clone(),
                    action: h.action.to_string(),
                    mode: mode(&h.policy),
                    outcome: h.hold.name().to_string(),
                    reason: h.reason.clone(),
                    detail: Some(h.hold.detail()),
                });
        }
    }
    for list in out.values_mut() {
        list.sort();
    }
    out
}

/// Compares the pass under the base set with the pass under the new (head) set.
pub fn diff(base: (&PassReport, &PolicySet), head: (&PassReport, &PolicySet)) -> PlanDiff {
    let changes = compare(decisions(base.0, base.1), decisions(head.0, head.1));
    let mut errors: Vec<(String, String)> = base
        .0
        .errors
        .iter()
        .chain(&head.0.errors)
        .map(|(c, e)| (c.clone(), e.to_string()))
        .collect();
    errors.sort();
    errors.dedup();
    PlanDiff {
        base_policy_set: base.1.fingerprint.clone(),
        head_policy_set: head.1.fingerprint.clone(),
        errors,
        changes,
    }
}

/// The targets whose decisions differ between `before` (the base set's) and `after`, by
/// cluster and target.
pub fn compare(mut before: Decisions, after: Decisions) -> Vec<Change> {
    let mut changes = Vec::new();
    for ((cluster, target), head_list) in after {
        let base_list = before
            .remove(&(cluster.clone(), target.clone()))
            .unwrap_or_default();
        let same = base_list.len() == head_list.len()
            && base_list
                .iter()
                .zip(&head_list)
                .all(|(b, h)| b.key() == h.key());
        if same {
            continue;
        }
        let kind = if base_list.is_empty() {
            ChangeKind::Added
        } else {
            ChangeKind::Changed
        };
        changes.push(Change {
            cluster,
            target,
            kind,
            base: base_list,
            head: head_list,
        });
    }
    changes.extend(
        before
            .into_iter()
            .map(|((cluster, target), base_list)| Change {
                cluster,
                target,
                kind: ChangeKind::Removed,
                base: base_list,
                head: Vec::new(),
            }),
    );
    changes.sort_by(|a, b| (&a.cluster, &a.target).cmp(&(&b.cluster, &b.target)));
    changes
}

/// The differences as Markdown, fit to paste as a pull-request comment.
pub fn markdown(d: &PlanDiff) -> String {
    let mut out = String::from("### ecs-reconciler plan diff\n\n");
    out.push_str(&format!(
        "Base policy set `{}`, this change `{}`; one observation of the account, planned under \
         both.\n\n",
        d.base_policy_set, d.head_policy_set
    ));
    if d.changes.is_empty() {
        out.push_str("No difference: both sets decide the same for every target.\n");
    } else {
        out.push_str(&changes_table(&d.changes));
    }
    for (cluster, e) in &d.errors {
        out.push_str(&format!("\n**cluster {cluster} not planned:** {e}\n"));
    }
    out
}

/// The changes as a Markdown table, and how many targets differ.
pub fn changes_table(changes: &[Change]) -> String {
    let mut out = String::from("| cluster | target | change | base | this change | why |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for c in changes {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} |\n",
            c.cluster,
            short_name(&c.target),
            kind_word(c.kind),
            cell(&c.base),
            cell(&c.head),
            reasons(c),
        ));
    }
    let verb = if changes.len() == 1 {
        "differs"
    } else {
        "differ"
    };
    out.push_str(&format!(
        "\n{} {verb}.\n",
        crate::prose::plural(changes.len(), "target", "targets")
    ));
    out
}

fn kind_word(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Changed => "changed",
    }
}

/// One side's decisions about a target, in one table cell: the action, planned or the
/// guardrail holding it back (and what it says), by which policy in which mode.
fn cell(decisions: &[Decision]) -> String {
    if decisions.is_empty() {
        return "—".into();
    }
    decisions
        .iter()
        .map(|d| {
            let outcome = match &d.detail {
                Some(detail) => format!("held by {} ({})", d.outcome, escape(detail)),
                None => d.outcome.clone(),
            };
            format!("**{}** {outcome}, `{}` ({})", d.action, d.policy, d.mode)
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

/// The diagnoses behind a change: once when both sides give the same, else each side's.
fn reasons(c: &Change) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for d in c.base.iter().chain(&c.head) {
        if !seen.contains(&d.reason.as_str()) {
            seen.push(&d.reason);
        }
    }
    seen.iter()
        .map(|r| escape(r))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// Text safe inside a Markdown table cell.
fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
