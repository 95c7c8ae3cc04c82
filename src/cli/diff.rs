//! `plan --base`: what a policy change changes. Two read-only passes over one observation (a
//! [`crate::cloud::memo::Memo`]), one under the base set and one under the new set, compared
//! per cluster and target: a decision added, removed, or changed (another action, another
//! guardrail holding it back, another policy or mode), each with both reasons. Under
//! `[[targets]]` each place (account and Region) is planned and compared on its own, so two
//! accounts' clusters of one name are never mixed up. Pure: the passes come in, the
//! differences and their Markdown or JSON go out.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::audit::mode_name;
use crate::controller::PassReport;
use crate::domain::short_name;
use crate::policy::PolicySet;
use crate::targets::Place;

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
    /// The cluster's account id and Region, when known (always under `[[targets]]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The place, as the Markdown names it.
    #[serde(skip)]
    pub place: Option<Place>,
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
    /// Clusters either pass could not reconcile, with why; under `[[targets]]` the cluster
    /// is named with its place (`web in team-a (111122223333) us-east-1`).
    pub errors: Vec<(String, String)>,
    pub changes: Vec<Change>,
    /// Places of `[[targets]]` that could not be connected, one line each naming the target:
    /// the comparison is then incomplete. Absent when every place was planned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// Whether the Markdown names each change's place (under `[[targets]]`).
    #[serde(skip)]
    pub name_places: bool,
}

/// One place's passes under the base set and the new (head) set.
pub struct PlacePasses {
    /// `None` on the simulated account.
    pub place: Option<Place>,
    pub base: PassReport,
    pub head: PassReport,
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

/// Compares each place's pass under the base set with its pass under the new (head) set,
/// place by place. `skipped` are the places that could not be reached; `name_places` says
/// whether the Markdown names each place.
pub fn diff(
    places: &[PlacePasses],
    base: &PolicySet,
    head: &PolicySet,
    skipped: Vec<String>,
    name_places: bool,
) -> PlanDiff {
    let mut changes = Vec::new();
    let mut errors: Vec<(String, String)> = Vec::new();
    for p in places {
        let mut found = compare(decisions(&p.base, base), decisions(&p.head, head));
        let known = |s: &str| (!s.is_empty()).then(|| s.to_string());
        for c in &mut found {
            c.account = p.place.as_ref().and_then(|p| known(&p.account));
            c.region = p.place.as_ref().and_then(|p| known(&p.region));
            c.place.clone_from(&p.place);
        }
        changes.extend(found);
        errors.extend(p.base.errors.iter().chain(&p.head.errors).map(|(c, e)| {
            let cluster = match &p.place {
                Some(place) if name_places => format!("{c} in {place}"),
                _ => c.clone(),
            };
            (cluster, e.to_string())
        }));
    }
    changes
        .sort_by(|a, b| (&a.place, &a.cluster, &a.target).cmp(&(&b.place, &b.cluster, &b.target)));
    errors.sort();
    errors.dedup();
    PlanDiff {
        base_policy_set: base.fingerprint.clone(),
        head_policy_set: head.fingerprint.clone(),
        errors,
        changes,
        skipped,
        name_places,
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
            account: None,
            region: None,
            place: None,
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
                account: None,
                region: None,
                place: None,
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
    let observed = if d.name_places {
        "each account and Region"
    } else {
        "the account"
    };
    out.push_str(&format!(
        "Base policy set `{}`, this change `{}`; one observation of {observed}, planned under \
         both.\n\n",
        d.base_policy_set, d.head_policy_set
    ));
    if d.changes.is_empty() {
        out.push_str("No difference: both sets decide the same for every target.\n");
    } else {
        out.push_str(&table(&d.changes, d.name_places));
    }
    for (cluster, e) in &d.errors {
        out.push_str(&format!("\n**cluster {cluster} not planned:** {e}\n"));
    }
    for skipped in &d.skipped {
        out.push_str(&format!("\n**target skipped, not compared:** {skipped}\n"));
    }
    out
}

/// The changes as a Markdown table, and how many targets differ.
pub fn changes_table(changes: &[Change]) -> String {
    table(changes, false)
}

/// [`changes_table`], with a first column naming each change's place when `name_places`.
fn table(changes: &[Change], name_places: bool) -> String {
    let (head, rule) = if name_places {
        ("| place ", "|---")
    } else {
        ("", "")
    };
    let mut out = format!("{head}| cluster | target | change | base | this change | why |\n");
    out.push_str(&format!("{rule}|---|---|---|---|---|---|\n"));
    for c in changes {
        if name_places {
            let place = c
                .place
                .as_ref()
                .map_or_else(String::new, ToString::to_string);
            out.push_str(&format!("| {} ", escape(&place)));
        }
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
