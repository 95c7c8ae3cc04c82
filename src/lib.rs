//! # ecs-reconciler
//!
//! A reconciling controller for Amazon ECS: it compares each selected task's desired health with
//! its observed lifecycle state, diagnoses why a task is stuck, and, under declarative policy
//! files, remediates the cause, or in dry-run records what it would do.
//!
//! A functional core inside an imperative shell:
//!
//! ```text
//! observe (cloud) ─► ClusterSnapshot ─► diagnose ─► Findings ─► plan ─► Plan ─► act (cloud) ─► audit
//! ```
//!
//! - [`domain`]: plain types for what is observed. No SDK type crosses into them.
//!   [`compact`]: the shared strings and tag lists that keep them small.
//! - [`policy`]: the policy file format, loading, validation with file/line/field errors, selectors.
//! - [`diagnose`]: pure; finds stuck tasks and says why.
//! - [`history`]: pure; what the controller already did, rebuilt from the tasks' stop reasons
//!   and tags so budgets and idempotency survive a restart.
//! - [`plan`]: pure; turns findings into actions under the policies' guardrails and past actions.
//! - [`capacity`]: pure; the capacity chain behind tasks stuck in PROVISIONING, and its
//!   remediations (cordon a launch template version, nudge capacity, drain instances).
//! - [`cloud`]: the one narrow trait the controller calls, with the AWS SDK adapter, the
//!   simulated account and the read-only (dry-run) decorator.
//! - [`controller`]: the loop: observe → diagnose → plan → act per cluster, requeue, shutdown.
//! - [`events`]: what EventBridge says changed, typed, for the controller's cached clusters.
//! - [`telemetry`]: what the controller tells its watchers (metrics, recordings).
//! - [`metrics`]: the Prometheus metrics, filled from the telemetry; [`http`]: `/metrics`,
//!   `/livez` and `/readyz` on `--listen`.
//! - [`audit`]: the JSON-lines audit trail.
//! - [`lease`]: which clusters this replica owns (DynamoDB leases shared between replicas).
//! - [`reload`]: hot policy reload (file watch and SIGHUP) that keeps the last good set.
//! - [`supervise`]: `run`'s named tasks; a task that dies ends the process, non-zero, saying
//!   which and why; SIGTERM and SIGINT are honoured in every state.
//! - [`logging`]: logging that never blocks or panics the task that logs (lines that cannot be
//!   written are dropped and counted).
//! - [`targets`]: the accounts and Regions one deployment reconciles.
//! - [`config`], [`cli`], [`demo`]: the shell.

pub mod audit;
pub mod backtest;
pub mod cache;
pub mod capacity;
pub mod causes;
pub mod cli;
pub mod cloud;
pub mod compact;
pub mod config;
pub mod controller;
pub mod deadline;
pub mod decision;
pub mod demo;
pub mod diagnose;
pub mod domain;
pub mod events;
pub mod history;
pub mod http;
pub mod investigate;
pub mod lease;
pub mod logging;
pub mod metrics;
pub mod plan;
pub mod policy;
pub mod prose;
pub mod queue;
pub mod record;
pub mod reload;
pub mod resync;
pub mod supervise;
pub mod targets;
pub mod telemetry;
