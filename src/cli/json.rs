//! The JSON outputs as an interface: the typed document `plan --output json` writes, and the
//! JSON Schemas that `ecs-reconciler schema --of policy|plan|audit` prints. Each schema is
//! generated from the very types that are serialized, so the output and its schema cannot
//! drift apart.

use schemars::JsonSchema;
use serde::Serialize;

use crate::audit::AuditRecord;
use crate::capacity::CapacityFinding;
use crate::decision::{ActionKind, PlannedAction};
use crate::diagnose::Evidence;

/// Which JSON Schema `ecs-reconciler schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SchemaOf {
    /// A policy document (the files in the policy directory).
    #[default]
    Policy,
    /// What `plan --output json` writes.
    Plan,
    /// One line of the audit trail (`--audit-log`).
    Audit,
}

/// The JSON Schema (draft 2020-12) of `which`.
pub fn schema(which: SchemaOf) -> serde_json::Value {
    match which {
        SchemaOf::Policy => crate::policy::json_schema(),
        SchemaOf::Plan => schemars::schema_for!(PlanOutput<'static>).to_value(),
        SchemaOf::Audit => schemars::schema_for!(AuditRecord).to_value(),
    }
}

/// What `plan --output json` writes: one pass of every place (account and Region), per
/// cluster, the clusters that failed, and the targets that could not be reached.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "PlanOutput", deny_unknown_fields)]
pub struct PlanOutput<'a> {
    pub clusters: Vec<ClusterOutput<'a>>,
    /// Clusters that could not be reconciled in this pass.
    pub errors: Vec<ClusterError>,
    /// Places of `[[targets]]` that could not be connected (a role that cannot be assumed),
    /// one line each naming the target: the plan is then incomplete (exit 1). Absent when
    /// every place was planned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// One cluster's pass: what was observed, found, planned and held back.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ClusterOutput<'a> {
    pub cluster: &'a str,
    /// The cluster's account id, when known (always under `[[targets]]`; never with `--sim`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<&'a str>,
    /// The cluster's Region, when known (always on AWS; never with `--sim`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<&'a str>,
    /// RFC 3339, on the clock of the account observed.
    #[schemars(extend("format" = "date-time"))]
    pub observed_at: String,
    /// How many tasks the snapshot holds.
    pub tasks: usize,
    /// Whether every read of the snapshot succeeded.
    pub complete: bool,
    /// The reads that failed, one line each.
    pub gaps: &'a [String],
    pub findings: Vec<FindingOutput<'a>>,
    /// Why tasks wait in PROVISIONING, per capacity provider (a capacity finding each).
    pub capacity: &'a [CapacityFinding],
    pub actions: &'a [PlannedAction],
    pub held: Vec<HeldOutput<'a>>,
}

/// A stuck task.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FindingOutput<'a> {
    /// The task's ARN.
    pub task: &'a str,
    pub service: Option<&'a str>,
    pub policy: &'a str,
    /// One line for people.
    pub reason: &'a str,
    /// How long the task has been in its condition, e.g. `14m 3s`.
    pub elapsed: String,
    /// The policy's limit for the condition, e.g. `10m`.
    pub limit: String,
    pub evidence: &'a Evidence,
}

/// An action a guardrail held back.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HeldOutput<'a> {
    pub action: ActionKind,
    /// The ARN of what the action would act on (a task, a group or a container instance).
    pub task: &'a str,
    pub policy: &'a str,
    /// The guardrail's name, as in the audit trail's `skipped:NAME`.
    pub guardrail: &'static str,
    /// The guardrail's numbers, one line.
    pub detail: String,
    pub reason: &'a str,
}

/// A cluster that could not be reconciled.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ClusterError {
    pub cluster: String,
    /// The cluster's account id and Region, when known, as on a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The error, one line.
    pub error: String,
    /// The error's category (`not_found`, `throttled`, …).
    #[schemars(with = "String")]
    pub category: crate::cloud::ErrorCategory,
}
