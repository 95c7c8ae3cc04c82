//! One replayed reconcile: diagnose and plan a recorded picture under a policy set, with the
//! memory the controller would have kept. Pure.
//!
//! The memory is the controller's own (`controller::reconcile_observed`): when each task was
//! first seen in each state, and the ledger of actions taken. Every action the replayed set
//! plans is entered in the ledger as if taken, so budgets, cooldowns and "already acted on"
//! hold as they would have. The picture itself is never altered: a task this set would have
//! stopped stays as the recorded account showed it.

use std::time::Duration;

use crate::capacity::diagnose_capacity;
use crate::capacity::tags::ManagedTag;
use crate::causes::Clues;
use crate::diagnose::{Sightings, diagnose};
use crate::domain::ClusterSnapshot;
use crate::history::{BUDGET_WINDOW, History, PastAction};
use crate::plan::{Plan, plan_with_capacity};
use crate::policy::PolicySet;

/// What one policy set's controller would remember of one cluster between reconciles.
#[derive(Debug, Default)]
pub struct Memory {
    sightings: Sightings,
    ledger: Vec<PastAction>,
}

/// Plans `snapshot` under `policies` as the controller would have, and remembers the actions
/// planned as taken.
pub fn step(
    memory: &mut Memory,
    snapshot: &ClusterSnapshot,
    clues: &Clues,
    policies: &PolicySet,
    managed: &ManagedTag,
) -> Plan {
    let now = snapshot.observed_at;
    memory.sightings.record(snapshot);
    memory
        .ledger
        .retain(|a| now.duration_since(a.at).unwrap_or(Duration::ZERO) < BUDGET_WINDOW);
    let diagnosis = diagnose(snapshot, policies, &memory.sightings);
    let capacity = diagnose_capacity(snapshot, &diagnosis, policies, clues);
    let history = History::rebuild(snapshot, &memory.ledger);
    let plan = plan_with_capacity(
        snapshot,
        diagnosis,
        capacity,
        policies,
        &history,
        &memory.sightings,
        managed,
        false,
    );
    memory
        .ledger
        .extend(plan.actions.iter().map(|a| PastAction {
            at: now,
            policy: a.policy.clone(),
            kind: a.action.kind(),
            service: a.service.clone(),
            target: a.action.target().to_string(),
            condition: a.condition,
        }));
    plan
}
