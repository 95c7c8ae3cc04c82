//! A backtest as Markdown, fit to paste as a pull-request comment: what was replayed and its
//! limit, then per policy the stuck tasks, actions and holds (both sets side by side with a
//! base), the stuck tasks with their delays next to the recorded controller's, and with a
//! base the targets whose decisions differ.

use std::fmt::Write as _;
use std::time::Duration;

use crate::backtest::tally::{Acted, PolicyTally};
use crate::backtest::{Backtest, SetReport};
use crate::cli::diff::changes_table;
use crate::diagnose::short;
use crate::domain::short_name;
use crate::prose::plural;

/// The most stuck tasks listed per policy; the JSON output has them all.
const MAX_ROWS: usize = 25;

pub fn markdown(b: &Backtest) -> String {
    let mut out = String::from("### ecs-reconciler backtest\n\n");
    let _ = writeln!(
        out,
        "Recording `{}`: {} of {} ({}), from {} to {}; recorded under policy set {}.\n",
        b.recording,
        plural(b.observations, "observation", "observations"),
        plural(b.clusters.len(), "cluster", "clusters"),
        b.clusters.join(", "),
        b.first.as_deref().unwrap_or("?"),
        b.last.as_deref().unwrap_or("?"),
        b.recorded_policy_sets
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(out, "> {}\n", b.limit);
    for torn in &b.torn {
        let _ = writeln!(out, "- {torn}");
    }
    if !b.torn.is_empty() {
        out.push('\n');
    }
    match &b.base {
        Some(base) => {
            side_by_side(&mut out, base, &b.head);
            stuck_tasks(&mut out, base, " (base)");
            stuck_tasks(&mut out, &b.head, " (this change)");
        }
        None => {
            summary(&mut out, &b.head);
            stuck_tasks(&mut out, &b.head, "");
        }
    }
    if let Some(changes) = &b.changes {
        out.push_str("#### Differences from the base set\n\n");
        if changes.is_empty() {
            out.push_str("None: both sets decide the same for every target.\n");
        } else {
            out.push_str(&changes_table(changes));
        }
    }
    out
}

fn summary(out: &mut String, set: &SetReport) {
    let _ = writeln!(out, "#### Policy set `{}`\n", set.policy_set);
    out.push_str("| policy | mode | stuck tasks | actions | held |\n|---|---|---|---|---|\n");
    for (name, p) in &set.policies {
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} |",
            p.mode,
            p.stuck.len(),
            counts(&p.actions),
            counts(&p.held)
        );
    }
    out.push('\n');
}

fn side_by_side(out: &mut String, base: &SetReport, head: &SetReport) {
    let _ = writeln!(
        out,
        "#### Base set `{}` and this change `{}`\n",
        base.policy_set, head.policy_set
    );
    out.push_str(
        "| policy | stuck tasks (base → this) | actions (base → this) | held (base → this) |\n\
         |---|---|---|---|\n",
    );
    let empty = PolicyTally::default();
    let names: std::collections::BTreeSet<&String> =
        base.policies.keys().chain(head.policies.keys()).collect();
    for name in names {
        let b = base.policies.get(name).unwrap_or(&empty);
        let h = head.policies.get(name).unwrap_or(&empty);
        let _ = writeln!(
            out,
            "| {name} | {} → {} | {} → {} | {} → {} |",
            b.stuck.len(),
            h.stuck.len(),
            counts(&b.actions),
            counts(&h.actions),
            counts(&b.held),
            counts(&h.held)
        );
    }
    out.push('\n');
}

fn stuck_tasks(out: &mut String, set: &SetReport, label: &str) {
    for (name, p) in set.policies.iter().filter(|(_, p)| !p.stuck.is_empty()) {
        let _ = writeln!(out, "#### Stuck tasks under {name}{label}\n");
        out.push_str(
            "| task | cluster | condition | crossed the limit | replayed action | delay | recorded controller | delay |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        for s in p.stuck.iter().take(MAX_ROWS) {
            let (action, delay) = acted(s.action.as_ref(), s.held_by.as_deref());
            let (recorded, recorded_delay) = acted(s.recorded.as_ref(), None);
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {action} | {delay} | {recorded} | {recorded_delay} |",
                short_name(&s.task),
                s.cluster,
                s.condition.token(),
                crate::diagnose::rfc3339(s.crossed_at),
            );
        }
        if p.stuck.len() > MAX_ROWS {
            let _ = writeln!(
                out,
                "\n… and {} more (`--output json` lists them all).",
                p.stuck.len() - MAX_ROWS
            );
        }
        out.push('\n');
    }
}

/// An action and its delay as two cells; `held` names the guardrail when none was taken.
fn acted(a: Option<&Acted>, held: Option<&str>) -> (String, String) {
    match (a, held) {
        (Some(a), _) => (a.action.clone(), delay(a.delay_seconds)),
        (None, Some(guardrail)) => (format!("held by {guardrail}"), "—".into()),
        (None, None) => ("none".into(), "—".into()),
    }
}

fn delay(seconds: i64) -> String {
    let d = short(Duration::from_secs(seconds.unsigned_abs()));
    if seconds < 0 {
        format!("{d} before")
    } else {
        d
    }
}

fn counts(m: &std::collections::BTreeMap<String, usize>) -> String {
    if m.is_empty() {
        return "—".into();
    }
    m.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
