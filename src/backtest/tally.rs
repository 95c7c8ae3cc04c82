//! What one policy set did over a replay, per policy: the stuck tasks it found and when, the
//! actions it took by kind, the actions it held by guardrail, and for each stuck task the
//! delay from crossing its limit to the action, next to what the recorded controller did.
//! Pure: plans and recorded actions come in, the tally goes out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::audit::mode_name;
use crate::cli::diff::{Decision, Decisions};
use crate::diagnose::{Condition, rfc3339};
use crate::plan::Plan;
use crate::policy::PolicySet;
use crate::record::RecordedAction;

/// A stuck task as the replay found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StuckTask {
    pub cluster: String,
    pub task: String,
    pub condition: Condition,
    /// When the replay first found it past its limit.
    #[serde(serialize_with = "as_rfc3339")]
    pub found_at: SystemTime,
    /// When it crossed its limit (its entry into the state, plus the limit).
    #[serde(serialize_with = "as_rfc3339")]
    pub crossed_at: SystemTime,
    /// The first action this set took on it.
    pub action: Option<Acted>,
    /// The last guardrail that held an action on it, while none was taken.
    pub held_by: Option<String>,
    /// The first action the recorded controller went ahead with on it (performed, or planned
    /// in a dry run).
    pub recorded: Option<Acted>,
}

/// An action on a stuck task and how long after the limit it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Acted {
    pub action: String,
    #[serde(serialize_with = "as_rfc3339")]
    pub at: SystemTime,
    /// From crossing the limit to the action, in whole seconds (negative: before it, which a
    /// recorded controller under another set can do).
    pub delay_seconds: i64,
}

/// One policy's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTally {
    pub mode: String,
    pub stuck: Vec<StuckTask>,
    /// Actions taken, by kind.
    pub actions: BTreeMap<String, usize>,
    /// Targets held back, by guardrail (each target counted once per guardrail).
    pub held: BTreeMap<String, usize>,
}

/// Accumulates the plans of one set.
#[derive(Debug, Default)]
pub struct Tally {
    stuck: BTreeMap<(String, String, String), StuckTask>,
    acted: BTreeSet<(String, String, String)>,
    actions: BTreeMap<(String, String), usize>,
    held: BTreeMap<(String, String), BTreeSet<(String, String)>>,
    decisions: Decisions,
}

impl Tally {
    /// Takes in the plan of one replayed reconcile, made at `at`.
    pub fn add(&mut self, plan: &Plan, at: SystemTime, set: &PolicySet) {
        let cluster = &plan.cluster;
        for f in &plan.findings {
            let crossed_at = at - f.elapsed.saturating_sub(f.limit);
            self.stuck
                .entry((f.policy.clone(), cluster.clone(), f.task_arn.clone()))
                .or_insert_with(|| StuckTask {
                    cluster: cluster.clone(),
                    task: f.task_arn.clone(),
                    condition: f.condition,
                    found_at: at,
                    crossed_at,
                    action: None,
                    held_by: None,
                    recorded: None,
                });
        }
        for a in &plan.actions {
            let target = a.action.target().to_string();
            let name = a.action.name().to_string();
            if !self
                .acted
                .insert((cluster.clone(), target.clone(), name.clone()))
            {
                continue;
            }
            *self
                .actions
                .entry((a.policy.clone(), name.clone()))
                .or_default() += 1;
            let key = (a.policy.clone(), cluster.clone(), target.clone());
            if let Some(stuck) = self.stuck.get_mut(&key).filter(|s| s.action.is_none()) {
                stuck.action = Some(acted(&name, at, stuck.crossed_at));
            }
            self.decide(
                cluster, &target, &a.policy, &name, "planned", &a.reason, None, set,
            );
        }
        for h in &plan.held {
            let guardrail = h.hold.name().to_string();
            self.held
                .entry((h.policy.clone(), guardrail.clone()))
                .or_default()
                .insert((cluster.clone(), h.target.clone()));
            let key = (h.policy.clone(), cluster.clone(), h.target.clone());
            if let Some(stuck) = self.stuck.get_mut(&key).filter(|s| s.action.is_none()) {
                stuck.held_by = Some(guardrail.clone());
            }
            let detail = Some(h.hold.detail());
            let action = h.action.to_string();
            self.decide(
                cluster, &h.target, &h.policy, &action, &guardrail, &h.reason, detail, set,
            );
        }
    }

    /// Notes a decision for the comparison with the other set: each (policy, action, outcome)
    /// once per target, the first reason kept.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        cluster: &str,
        target: &str,
        policy: &str,
        action: &str,
        outcome: &str,
        reason: &str,
        detail: Option<String>,
        set: &PolicySet,
    ) {
        let list = self
            .decisions
            .entry((cluster.to_string(), target.to_string()))
            .or_default();
        let known = list
            .iter()
            .any(|d| d.policy == policy && d.action == action && d.outcome == outcome);
        if known {
            return;
        }
        let mode = set
            .policies
            .iter()
            .find(|p| p.name == policy)
            .map_or("?", |p| mode_name(p.mode));
        list.push(Decision {
            policy: policy.to_string(),
            action: action.to_string(),
            mode: mode.to_string(),
            outcome: outcome.to_string(),
            reason: reason.to_string(),
            detail,
        });
        list.sort();
    }

    /// The figures per policy of `set` (every policy, those that found nothing included), with
    /// the recorded controller's first action on each stuck task; and the decisions by target.
    pub fn finish(
        self,
        set: &PolicySet,
        recorded: &HashMap<String, RecordedAction>,
    ) -> (BTreeMap<String, PolicyTally>, Decisions) {
        let mut out: BTreeMap<String, PolicyTally> = set
            .policies
            .iter()
            .map(|p| {
                let tally = PolicyTally {
                    mode: mode_name(p.mode).to_string(),
                    ..PolicyTally::default()
                };
                (p.name.clone(), tally)
            })
            .collect();
        for ((policy, _, _), mut stuck) in self.stuck {
            stuck.recorded = recorded
                .get(&stuck.task)
                .map(|r| acted(&r.action, r.time, stuck.crossed_at));
            out.entry(policy).or_default().stuck.push(stuck);
        }
        for ((policy, kind), n) in self.actions {
            out.entry(policy).or_default().actions.insert(kind, n);
        }
        for ((policy, guardrail), targets) in self.held {
            out.entry(policy)
                .or_default()
                .held
                .insert(guardrail, targets.len());
        }
        for tally in out.values_mut() {
            tally.stuck.sort_by_key(|s| (s.crossed_at, s.task.clone()));
        }
        (out, self.decisions)
    }
}

/// An action at `at` on a task that crossed its limit at `crossed_at`, the delay counted in
/// whole seconds of each (the audit trail writes whole seconds).
fn acted(action: &str, at: SystemTime, crossed_at: SystemTime) -> Acted {
    let delay_seconds = unix_seconds(at).saturating_sub(unix_seconds(crossed_at));
    Acted {
        action: action.to_string(),
        at,
        delay_seconds,
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn as_rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}
