//! The demo: a scenario on the simulated account in accelerated virtual time, narrated pass by
//! pass, ending with a summary. Also the built-in policy the simulated scenarios run under.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::audit::{AuditSink, Outcome};
use crate::capacity::CapacityFinding;
use crate::causes::RootCause;
use crate::cli::DemoArgs;
use crate::cli::output;
use crate::cloud::read_only::ReadOnly;
use crate::cloud::sim::{SimAccount, build_scenario, scenario_names};
use crate::cloud::{Cloud, sim};
use crate::controller::{Controller, ControllerSettings, PassReport, since};
use crate::decision::Action;
use crate::domain::short_name;
use crate::domain::{DesiredStatus, HealthStatus, TaskStatus};
use crate::history::REPLACES_TAG;
use crate::policy::{self, PolicyErrors, PolicySet};

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

/// What a demo run found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DemoSummary {
    pub stuck_found: usize,
    pub actions_taken: usize,
    pub actions_planned: usize,
    pub held_back: usize,
    /// Stuck tasks whose service is back at its desired count of healthy RUNNING tasks, or
    /// whose replacement (standalone) is RUNNING.
    pub recovered: usize,
    /// Virtual time from start until no selected task was stuck or in replacement.
    pub time_to_recovery: Option<Duration>,
    pub mutating_calls: u64,
    /// The same scenario left alone for the same virtual time: tasks still on the way up.
    pub stuck_without_controller: usize,
}

/// `ecs-reconciler demo`.
pub fn main(args: &DemoArgs) -> ExitCode {
    if args.list {
        let mut list = String::new();
        for name in scenario_names() {
            if let Some((_, s)) = build_scenario(name, SystemTime::now()) {
                let _ = writeln!(list, "{name:20} {}", s.description);
            }
        }
        return output::emit(&list, ExitCode::SUCCESS);
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

/// Runs a scenario for at most `horizon` of virtual time (stopping early once everything has
/// recovered), narrating to `out`. Must run on a runtime with paused time.
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
    let mut text = String::new();
    let _ = writeln!(
        text,
        "ecs-reconciler demo — scenario {} ({}; simulated account, virtual time)\n  {}\n  policy \
         demo-stuck-tasks: PROVISIONING 10m, PENDING 10m, ACTIVATING 5m, unhealthy 3m; \
         replaceTask, nudgeCapacity (step 1, max 8, cooldown 5m), cordonLaunchTemplate \
         (registration 10m, 2 failed instances), drainContainerInstance (15m); at most 50% of \
         a service in flight; pause above 50% stuck\n",
        info.name,
        if dry_run { "dry run" } else { "enforce" },
        info.description
    );
    let _ = out.write_all(text.as_bytes());
    let mut summary = if dry_run {
        let cloud = ReadOnly::new(Arc::clone(&account));
        narrate(cloud, &account, policies, settings, audit, horizon, out).await
    } else {
        narrate(
            Arc::clone(&account),
            &account,
            policies,
            settings,
            audit,
            horizon,
            out,
        )
        .await
    };
    if let Some((alone, _)) = build_scenario(scenario, start) {
        let span = summary.time_to_recovery.unwrap_or(horizon).max(horizon);
        tokio::time::sleep(span).await;
        summary.stuck_without_controller = alone
            .cluster_names()
            .iter()
            .flat_map(|c| alone.tasks(c))
            .filter(|t| t.desired_status == DesiredStatus::Running && t.last_status.is_way_up())
            .count();
        let _ = writeln!(
            out,
            "without the controller: after {} of virtual time the same account still has {} \
             tasks on the way up (PROVISIONING, PENDING or ACTIVATING)",
            crate::diagnose::short(span),
            summary.stuck_without_controller
        );
    }
    Ok(summary)
}

async fn narrate<C: Cloud>(
    cloud: C,
    account: &SimAccount,
    policies: PolicySet,
    settings: ControllerSettings,
    audit: AuditSink,
    horizon: Duration,
    out: &mut dyn std::io::Write,
) -> DemoSummary {
    let resync = settings.resync;
    let controller = Arc::new(Controller::new(cloud, policies, settings, audit));
    let shutdown = CancellationToken::new();
    let start = account.now();
    let started = tokio::time::Instant::now();
    let mut summary = DemoSummary::default();
    let mut stuck_seen: BTreeSet<String> = BTreeSet::new();
    let mut held_seen: BTreeSet<(String, &'static str)> = BTreeSet::new();
    // (target, outcome) already told: a dry run plans the same action every pass.
    let mut told: BTreeSet<(String, String)> = BTreeSet::new();
    let mut last_counts: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let report = controller.pass(&shutdown).await;
        let mut text = String::new();
        tell(&mut text, &report, start, &mut last_counts, &mut stuck_seen);
        for cluster in &report.clusters {
            let at = clock(start, cluster.snapshot.observed_at);
            for (action, outcome, detail) in &cluster.outcomes {
                let key = (action.action.target().to_string(), outcome.to_string());
                if !told.insert(key) {
                    continue;
                }
                let what = match (&action.action, action.service.as_deref()) {
                    (Action::StopServiceTask { .. }, Some(s)) => {
                        format!(" (service {s} will start a replacement)")
                    }
                    (
                        Action::ReplaceStandaloneTask { .. } | Action::FinishReplacement { .. },
                        _,
                    ) => " (standalone: re-run with the same settings)".into(),
                    _ => String::new(),
                };
                let _ = writeln!(
                    text,
                    "[{at}]   {} {} → {outcome}{what}{}",
                    action.action.name(),
                    short_name(action.action.target()),
                    detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                );
                match outcome {
                    Outcome::Done => summary.actions_taken += 1,
                    Outcome::Planned => summary.actions_planned += 1,
                    _ => {}
                }
            }
            let mut waiting_on_capacity = 0;
            for held in &cluster.plan.held {
                if !held_seen.insert((held.target.clone(), held.hold.name())) {
                    continue;
                }
                summary.held_back += 1;
                if held.hold.name() == "capacityCause" {
                    waiting_on_capacity += 1;
                    continue;
                }
                let _ = writeln!(
                    text,
                    "[{at}]   held back {} {}: {} ({})",
                    held.action,
                    short_name(&held.target),
                    held.hold.name(),
                    held.hold.detail()
                );
            }
            if waiting_on_capacity > 0 {
                let _ = writeln!(
                    text,
                    "[{at}]   not replacing {waiting_on_capacity} stuck tasks: they wait on \
                     capacity, and a replacement would wait the same way"
                );
            }
        }
        let _ = out.write_all(text.as_bytes());
        let elapsed = started.elapsed();
        if summary.time_to_recovery.is_none() && !stuck_seen.is_empty() && settled(&report) {
            summary.time_to_recovery = Some(elapsed);
            let _ = writeln!(
                out,
                "[{}] every service is at its desired count of healthy RUNNING tasks; nothing stuck",
                clock(start, account.now())
            );
            break;
        }
        if elapsed >= horizon {
            break;
        }
        tokio::time::sleep(resync).await;
    }
    stuck_seen.retain(|k| !k.starts_with("capacity "));
    summary.stuck_found = stuck_seen.len();
    summary.recovered = recovered(account, &stuck_seen);
    summary.mutating_calls = account.mutating_calls();
    let mut text = String::new();
    let acted = if summary.actions_planned > 0 {
        format!(
            "{} actions planned (dry run: none taken)",
            summary.actions_planned
        )
    } else {
        format!("{} actions taken", summary.actions_taken)
    };
    let _ = writeln!(
        text,
        "\nsummary: {} stuck tasks found, {acted}, {} held back, {} tasks recovered; {}",
        summary.stuck_found,
        summary.held_back,
        summary.recovered,
        match summary.time_to_recovery {
            Some(d) => format!(
                "recovered after {} of virtual time",
                crate::diagnose::short(d)
            ),
            None => format!(
                "not recovered after {} of virtual time",
                crate::diagnose::short(started.elapsed())
            ),
        }
    );
    let _ = out.write_all(text.as_bytes());
    summary
}

/// Prints state changes and newly stuck tasks of one pass.
fn tell(
    text: &mut String,
    report: &PassReport,
    start: SystemTime,
    last_counts: &mut BTreeMap<String, String>,
    stuck_seen: &mut BTreeSet<String>,
) {
    for cluster in &report.clusters {
        let snap = &cluster.snapshot;
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
        if last_counts.get(&snap.cluster_name) != Some(&line) {
            let _ = writeln!(text, "[{at}] {}: {line}", snap.cluster_name);
            last_counts.insert(snap.cluster_name.clone(), line);
        }
        for f in &cluster.plan.findings {
            if stuck_seen.insert(f.task_arn.clone()) {
                let _ = writeln!(text, "[{at}] {}: {}", short_name(&f.task_arn), f.reason);
            }
        }
        for c in &cluster.plan.capacity {
            if stuck_seen.insert(format!(
                "capacity {} {}",
                c.capacity_provider,
                c.cause.name()
            )) {
                let _ = writeln!(text, "[{at}] why: {}", c.reason);
            }
            tell_root_causes(text, &at, c, stuck_seen);
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
        let key = format!(
            "capacity {} root {}",
            finding.capacity_provider,
            serde_json::to_string(cause).unwrap_or_default()
        );
        if !told.insert(key) {
            continue;
        }
        let _ = writeln!(
            text,
            "[{at}]   root cause [{}]: {}",
            cause.code().as_str(),
            cause.phrase()
        );
        let instance = match cause {
            RootCause::BootMountFailed { instance_id, .. }
            | RootCause::BootScriptFailed { instance_id, .. }
            | RootCause::BootAgentFailed { instance_id, .. } => instance_id.as_str(),
            _ => "",
        };
        for line in cause.quote() {
            let _ = writeln!(text, "[{at}]     {instance} | {line}");
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

/// How many of the stuck tasks were made good.
fn recovered(account: &SimAccount, stuck: &BTreeSet<String>) -> usize {
    let mut n = 0;
    for arn in stuck {
        let Some(task) = account.task(arn) else {
            continue;
        };
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
                    t.tags.get(REPLACES_TAG).map(String::as_str) == Some(task.id()) && healthy(t)
                }),
            };
        if ok {
            n += 1;
        }
    }
    n
}

fn clock(start: SystemTime, t: SystemTime) -> String {
    let s = since(start, t).as_secs();
    format!("+{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}
