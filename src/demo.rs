//! The demo: a scenario on the simulated account in accelerated virtual time, narrated pass by
//! pass, ending with a summary. Also the built-in policy the simulated scenarios run under.
//!
//! The controller writes its audit records to memory; after each pass the demo copies that
//! pass's records to the trail it was given (`--audit-log`) and narrates them, so narration,
//! summary and trail are the same records. (The copy comes after the pass's calls, not before
//! them: the write-ahead rule of [`crate::audit`] matters for a real account, not this one.)

mod compare;
mod tell;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::audit::{AuditRecord, AuditSink};
use crate::cli::DemoArgs;
use crate::cli::output;
use crate::cloud::read_only::ReadOnly;
use crate::cloud::sim::{SimAccount, build_scenario, scenario_names};
use crate::cloud::{Cloud, sim};
use crate::controller::{Controller, ControllerSettings, PassReport};
use crate::diagnose::Condition;
use crate::domain::{DesiredStatus, HealthStatus, TaskStatus};
use crate::history::REPLACES_TAG;
use crate::policy::{self, PolicyErrors, PolicySet};

use compare::comparison;
pub use compare::{Compared, Measure};
use tell::{Story, clock, policy_line, summary_line, tell, tell_records};

/// The scenario `demo` runs when none is named.
pub const DEFAULT_SCENARIO: &str = "broken-launch-template";

/// The policy the simulated scenarios run under unless `--policies` is given.
pub const SCENARIO_POLICY: &str = r#"
apiVersion: ecs-reconciler/v1
kind: RemediationPolicy
metadata:
  name: demo-stuck-tasks
  description: Replace tasks stuck on the way up or unhealthy, in the simulated clusters.
spec:
  mode: enforce
  target:
    clusters: ["demo-*", "scale-*"]
    standalone: true
  stuck:
    PROVISIONING: 10m
    PENDING: 10m
    ACTIVATING: 5m
    STOPPING: 15m
    unhealthy: 3m
  remediate:
    replaceTask: {standalone: true}
    nudgeCapacity: {step: 1, maxDesired: 8, cooldown: 5m}
    cordonLaunchTemplate: {registrationTimeout: 10m, minFailedInstances: 2}
    drainContainerInstance: {agentDisconnected: 15m}
  guardrails:
    maxActionsPerHour: 20
    maxInFlightPerService: 50%
    pauseWhenStuckAbove: 50%
"#;

/// The built-in scenario policy as a policy set.
pub fn scenario_policies() -> Result<PolicySet, PolicyErrors> {
    let policies = policy::parse_str(Path::new("<built-in demo policy>"), SCENARIO_POLICY)?;
    Ok(PolicySet {
        policies,
        fingerprint: "builtin-demo".into(),
    })
}

/// What a demo run found and did. The action and held-back counts are those of the audit
/// records the run wrote; the narration tells each of those records, so the two agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub stuck_found: usize,
    /// Audit records `done`.
    pub actions_taken: usize,
    /// Audit records `failed:…`.
    pub actions_failed: usize,
    /// Audit records `planned`.
    pub actions_planned: usize,
    /// Audit records `skipped:…`.
    pub held_back: usize,
    /// Action lines narrated (one per done, failed or planned record).
    pub actions_narrated: usize,
    /// Stuck tasks made good: a task stuck on the way up or unhealthy is RUNNING and healthy,
    /// or stopped with its service back at its desired count of healthy RUNNING tasks, or
    /// (standalone) replaced by a healthy one; a task hanging on the way down has stopped.
    pub recovered: usize,
    /// Virtual time from start until every stuck task found had recovered (and stayed so);
    /// `None` unless all of them did.
    pub time_to_recovery: Option<Duration>,
    pub mutating_calls: u64,
    /// What the scenario is about, with the controller (at the end of the run) and without it
    /// (the same scenario left alone for the horizon, or longer if the run took longer).
    pub compared: Vec<Compared>,
}

/// `ecs-reconciler demo`.
pub fn main(args: &DemoArgs) -> ExitCode {
    if args.list {
        return output::emit(&list(), ExitCode::SUCCESS);
    }
    let audit = match &args.audit_log {
        Some(path) => match AuditSink::file(path) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        },
        None => AuditSink::memory(),
    };
    let runtime = crate::cli::runtime(true);
    let mut stdout = output::Stdout::new();
    let result = runtime.block_on(run_demo(
        &args.scenario,
        args.dry_run,
        audit,
        Duration::from_secs(45 * 60),
        &mut stdout,
    ));
    match result {
        Ok(_) => output::exit_code(stdout.finish(), ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `demo --list`: one scenario a line, the descriptions in one column.
pub fn list() -> String {
    let names = scenario_names();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut list = String::new();
    for name in names {
        if let Some((_, s)) = build_scenario(name, SystemTime::now()) {
            let _ = writeln!(list, "{name:width$}  {}", s.description);
        }
    }
    list
}

/// Runs a scenario for at most `horizon` of virtual time (stopping early once everything has
/// recovered), narrating to `out`; every audit record is also written to `audit`. Must run on
/// a runtime with paused time.
pub async fn run_demo(
    scenario: &str,
    dry_run: bool,
    audit: AuditSink,
    horizon: Duration,
    out: &mut dyn std::io::Write,
) -> Result<DemoSummary, String> {
    let start = SystemTime::now();
    let Some((account, info)) = build_scenario(scenario, start) else {
        return Err(format!(
            "unknown scenario {scenario}; known: {}",
            scenario_names().join(", ")
        ));
    };
    let policies = scenario_policies().map_err(|e| e.to_string())?;
    let account = Arc::new(account);
    let settings = ControllerSettings {
        dry_run,
        ..ControllerSettings::default()
    };
    let mut description = info.description.to_string();
    for (name, id) in &info.launch_templates {
        // The first mention names the id too, as every later line does.
        description = description.replacen(name.as_str(), &format!("{name} ({id})"), 1);
    }
    let mut text = format!(
        "ecs-reconciler demo — scenario {} ({}; simulated account, virtual time)\n  \
         {description}\n",
        info.name,
        if dry_run { "dry run" } else { "enforce" },
    );
    for policy in &policies.policies {
        let _ = writeln!(text, "  {}", policy_line(policy));
    }
    text.push('\n');
    let _ = out.write_all(text.as_bytes());
    let run = Run {
        account: &account,
        audit,
        horizon,
    };
    let mut summary = if dry_run {
        let cloud = ReadOnly::new(Arc::clone(&account));
        run.narrate(cloud, policies, settings, out).await?
    } else {
        run.narrate(Arc::clone(&account), policies, settings, out)
            .await?
    };
    if let Some((alone, _)) = build_scenario(scenario, start) {
        let measures = Measure::all_of(info.about);
        // Counted now: the account the controller ran on stops here.
        let with: Vec<usize> = measures.iter().map(|m| m.count(&account)).collect();
        let span = horizon.max(account.now().duration_since(start).unwrap_or_default());
        tokio::time::sleep(span).await;
        summary.compared = measures
            .iter()
            .zip(with)
            .map(|(m, with)| Compared {
                measure: *m,
                with,
                without: m.count(&alone),
            })
            .collect();
        let _ = writeln!(out, "{}", comparison(span, &summary.compared, dry_run));
    }
    Ok(summary)
}

/// One demo run: the account, where its audit records go, and how long it may run.
struct Run<'a> {
    account: &'a SimAccount,
    audit: AuditSink,
    horizon: Duration,
}

impl Run<'_> {
    async fn narrate<C: Cloud>(
        &self,
        cloud: C,
        policies: PolicySet,
        settings: ControllerSettings,
        out: &mut dyn std::io::Write,
    ) -> Result<DemoSummary, String> {
        let resync = settings.resync;
        // The controller writes to memory; each pass's records are told from there and copied
        // to the demo's own trail, so narration, summary and trail are the same records.
        let trail = AuditSink::memory();
        let controller = Arc::new(Controller::new(cloud, policies, settings, trail.clone()));
        let shutdown = CancellationToken::new();
        let start = self.account.now();
        let started = tokio::time::Instant::now();
        let mut summary = DemoSummary::default();
        let mut story = Story::default();
        loop {
            let report = controller.pass(&shutdown).await;
            let mut text = String::new();
            tell(&mut text, &report, start, &mut story);
            let new = self.copy_new(&trail, &mut story.records_told)?;
            tell_records(&mut text, &new, &report, start, &mut summary);
            let _ = out.write_all(story.name_templates(&text).as_bytes());
            let elapsed = started.elapsed();
            summary.note_recovery(recovered(self.account, &story.stuck), &story, elapsed);
            if !story.stuck.is_empty() && settled(&report) {
                let _ = writeln!(
                    out,
                    "[{}] every service is at its desired count of healthy RUNNING tasks; \
                     nothing stuck",
                    clock(start, self.account.now())
                );
                break;
            }
            if elapsed >= self.horizon {
                break;
            }
            tokio::time::sleep(resync).await;
        }
        summary.stuck_found = story.stuck.len();
        summary.mutating_calls = self.account.mutating_calls();
        let _ = out.write_all(summary_line(&summary, started.elapsed()).as_bytes());
        Ok(summary)
    }
}

impl Run<'_> {
    /// The records `trail` got since the first `told`, copied to the demo's own trail.
    fn copy_new(&self, trail: &AuditSink, told: &mut usize) -> Result<Vec<AuditRecord>, String> {
        let new = trail.records().split_off(*told);
        *told += new.len();
        for record in &new {
            self.audit
                .record(record)
                .map_err(|e| format!("cannot write the audit log (--audit-log): {e}"))?;
        }
        Ok(new)
    }
}

impl DemoSummary {
    /// After a pass: `recovered` of the stuck tasks found so far are made good. Recovery
    /// counts from the first pass since which all of them have been.
    fn note_recovery(&mut self, recovered: usize, story: &Story, elapsed: Duration) {
        self.recovered = recovered;
        if story.stuck.is_empty() || recovered < story.stuck.len() {
            self.time_to_recovery = None;
        } else if self.time_to_recovery.is_none() {
            self.time_to_recovery = Some(elapsed);
        }
    }
}

/// Nothing stuck, nothing on its way up, and every service at its desired count.
fn settled(report: &PassReport) -> bool {
    report.errors.is_empty()
        && report.clusters.iter().all(|c| {
            let snap = &c.snapshot;
            c.plan.findings.is_empty()
                && snap.tasks.iter().all(|t| {
                    t.desired_status == DesiredStatus::Stopped
                        || (t.last_status == TaskStatus::Running
                            && t.health != HealthStatus::Unhealthy)
                })
                && snap.services.iter().all(|s| {
                    snap.tasks
                        .iter()
                        .filter(|t| {
                            t.service_name() == Some(&s.name)
                                && t.desired_status == DesiredStatus::Running
                        })
                        .count()
                        == s.desired_count as usize
                })
        })
}

/// How many of the stuck tasks were made good (see [`DemoSummary::recovered`]).
fn recovered(account: &SimAccount, stuck: &BTreeMap<String, Condition>) -> usize {
    let mut n = 0;
    for (arn, condition) in stuck {
        let way_down = matches!(condition, Condition::InState(s) if !s.is_way_up());
        let Some(task) = account.task(arn) else {
            n += usize::from(way_down);
            continue;
        };
        if way_down {
            n += usize::from(task.last_status == TaskStatus::Stopped);
            continue;
        }
        let cluster = sim::ids::parse_task_arn(arn)
            .map(|(c, _)| c.to_string())
            .unwrap_or_default();
        let tasks = account.tasks(&cluster);
        let healthy = |t: &crate::domain::Task| {
            t.last_status == TaskStatus::Running && t.health != HealthStatus::Unhealthy
        };
        // Placed at last, once its capacity was fixed.
        let ok = healthy(&task) && task.desired_status == DesiredStatus::Running
            || match task.service_name() {
                Some(service) => {
                    account.service(&cluster, service).is_some_and(|s| {
                        tasks
                            .iter()
                            .filter(|t| {
                                t.service_name() == Some(service)
                                    && t.desired_status == DesiredStatus::Running
                            })
                            .filter(|t| healthy(t))
                            .count()
                            >= s.desired_count as usize
                    }) && task.desired_status == DesiredStatus::Stopped
                }
                None => tasks.iter().any(|t| {
                    t.tags.get(REPLACES_TAG).map(|v| v.as_str()) == Some(task.id()) && healthy(t)
                }),
            };
        if ok {
            n += 1;
        }
    }
    n
}
