//! The demo: a scenario on the simulated account in accelerated virtual time, narrated pass by
//! pass, ending with a summary. Also the built-in policy the simulated scenarios run under.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::audit::{AuditRecord, AuditSink, Outcome};
use crate::capacity::CapacityFinding;
use crate::causes::RootCause;
use crate::cli::DemoArgs;
use crate::cli::output;
use crate::cloud::read_only::ReadOnly;
use crate::cloud::sim::scenario::Concern;
use crate::cloud::sim::{SimAccount, build_scenario, scenario_names};
use crate::cloud::{Cloud, sim};
use crate::controller::{Controller, ControllerSettings, PassReport, since};
use crate::decision::ActionKind;
use crate::diagnose::Condition;
use crate::domain::short_name;
use crate::domain::{DesiredStatus, GroupLaunch, HealthStatus, TaskStatus};
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

/// One measure of what a scenario is about, with and without the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compared {
    pub measure: Measure,
    pub with: usize,
    pub without: usize,
}

/// A count of trouble in an account's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Tasks that should run, still PROVISIONING, PENDING or ACTIVATING.
    WayUp,
    /// Tasks hanging in STOPPING.
    Stopping,
    /// Container instances whose agent is disconnected, still ACTIVE.
    DisconnectedActive,
    /// Tasks that should run, RUNNING but UNHEALTHY.
    Unhealthy,
    /// Tasks missing from services' desired counts of healthy RUNNING tasks.
    Missing,
}

impl Measure {
    fn of(concern: Concern) -> &'static [Measure] {
        match concern {
            Concern::WayUp => &[Measure::WayUp],
            Concern::StoppingHang => &[Measure::Stopping, Measure::DisconnectedActive],
            Concern::Unhealthy => &[Measure::Unhealthy],
            Concern::Capacity => &[Measure::Missing],
        }
    }

    /// The count in `account`'s current state.
    fn count(self, account: &SimAccount) -> usize {
        let clusters = account.cluster_names();
        let tasks = || clusters.iter().flat_map(|c| account.tasks(c));
        let should_run = |t: &crate::domain::Task| t.desired_status == DesiredStatus::Running;
        match self {
            Measure::WayUp => tasks()
                .filter(|t| should_run(t) && t.last_status.is_way_up())
                .count(),
            Measure::Stopping => tasks()
                .filter(|t| t.last_status == TaskStatus::Stopping)
                .count(),
            Measure::DisconnectedActive => clusters
                .iter()
                .flat_map(|c| account.container_instances(c))
                .filter(|ci| !ci.agent_connected && ci.status == "ACTIVE")
                .count(),
            Measure::Unhealthy => tasks()
                .filter(|t| {
                    should_run(t)
                        && t.last_status == TaskStatus::Running
                        && t.health == HealthStatus::Unhealthy
                })
                .count(),
            Measure::Missing => clusters
                .iter()
                .flat_map(|c| {
                    let tasks = account.tasks(c);
                    account
                        .services(c)
                        .into_iter()
                        .map(move |s| missing(&s, &tasks))
                })
                .sum(),
        }
    }

    /// `n` of this, for people: "2 tasks on the way up (PROVISIONING, PENDING or ACTIVATING)".
    fn phrase(self, n: usize) -> String {
        let tasks = plural(n, "task", "tasks");
        match self {
            Measure::WayUp => {
                format!("{tasks} on the way up (PROVISIONING, PENDING or ACTIVATING)")
            }
            Measure::Stopping => format!("{tasks} hanging in STOPPING"),
            Measure::DisconnectedActive => format!(
                "{} with a disconnected agent still ACTIVE",
                plural(n, "container instance", "container instances")
            ),
            Measure::Unhealthy => format!("{tasks} RUNNING but UNHEALTHY"),
            Measure::Missing => format!(
                "{} missing from services' desired counts",
                plural(n, "healthy RUNNING task", "healthy RUNNING tasks")
            ),
        }
    }
}

/// How many healthy RUNNING tasks `service` lacks.
fn missing(service: &crate::domain::Service, tasks: &[crate::domain::Task]) -> usize {
    let healthy = tasks
        .iter()
        .filter(|t| {
            t.service_name() == Some(&service.name)
                && t.desired_status == DesiredStatus::Running
                && t.last_status == TaskStatus::Running
                && t.health != HealthStatus::Unhealthy
        })
        .count();
    (service.desired_count as usize).saturating_sub(healthy)
}

/// "1 task", "2 tasks".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
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
    let mut text = String::new();
    let _ = writeln!(
        text,
        "ecs-reconciler demo — scenario {} ({}; simulated account, virtual time)\n  {}\n  policy \
         demo-stuck-tasks: PROVISIONING 10m, PENDING 10m, ACTIVATING 5m, STOPPING 15m, \
         unhealthy 3m; replaceTask, nudgeCapacity (step 1, max 8, cooldown 5m), \
         cordonLaunchTemplate (registration 10m, 2 failed instances), drainContainerInstance \
         (15m); at most 50% of a service in flight; pause above 50% stuck\n",
        info.name,
        if dry_run { "dry run" } else { "enforce" },
        info.description
    );
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
        let span = horizon.max(account.now().duration_since(start).unwrap_or_default());
        tokio::time::sleep(span).await;
        summary.compared = info
            .about
            .iter()
            .flat_map(|c| Measure::of(*c))
            .map(|m| Compared {
                measure: *m,
                with: m.count(&account),
                without: m.count(&alone),
            })
            .collect();
        let _ = writeln!(out, "{}", comparison(span, &summary.compared));
    }
    Ok(summary)
}

/// "without the controller, after 45m of virtual time the same account has 2 tasks …,
/// against 0 with it".
fn comparison(span: Duration, compared: &[Compared]) -> String {
    let each = compared
        .iter()
        .map(|c| {
            format!(
                "{}, against {} with it",
                c.measure.phrase(c.without),
                c.with
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "without the controller, after {} of virtual time the same account has {each}",
        crate::diagnose::short(span)
    )
}

/// One demo run: the account, where its audit records go, and how long it may run.
struct Run<'a> {
    account: &'a SimAccount,
    audit: AuditSink,
    horizon: Duration,
}

/// What the narration keeps between passes.
#[derive(Default)]
struct Story {
    /// Stuck tasks found, with what they were stuck in.
    stuck: BTreeMap<String, Condition>,
    /// Findings told (capacity findings and root causes too).
    told: BTreeSet<String>,
    last_counts: BTreeMap<String, String>,
    /// Launch template id → name, as the snapshots show them.
    templates: BTreeMap<String, String>,
    /// Audit records already told.
    records_told: usize,
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
            let records = trail.records();
            let new = &records[story.records_told..];
            story.records_told = records.len();
            for record in new {
                self.audit
                    .record(record)
                    .map_err(|e| format!("cannot write the audit log: {e}"))?;
            }
            tell_records(&mut text, new, &report, start, &mut summary);
            let _ = out.write_all(story.name_templates(&text).as_bytes());
            let elapsed = started.elapsed();
            summary.recovered = recovered(self.account, &story.stuck);
            if story.stuck.is_empty() || summary.recovered < story.stuck.len() {
                summary.time_to_recovery = None;
            } else if summary.time_to_recovery.is_none() {
                summary.time_to_recovery = Some(elapsed);
            }
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

impl Story {
    /// `text` with each launch template id shown as its name with the id: "demo-lt
    /// (lt-00f3…)".
    fn name_templates(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (id, name) in &self.templates {
            if !name.is_empty() {
                text = text.replace(id.as_str(), &format!("{name} ({id})"));
            }
        }
        text
    }
}

/// The summary: what was stuck, what the audit trail recorded, what recovered.
fn summary_line(s: &DemoSummary, elapsed: Duration) -> String {
    let mut acted = match (s.actions_planned, s.actions_taken) {
        (0, 0) => "no action taken".to_string(),
        (0, n) => format!("{} taken", plural(n, "action", "actions")),
        (n, _) => format!(
            "{} planned (dry run: none taken)",
            plural(n, "action", "actions")
        ),
    };
    if s.actions_failed > 0 {
        let _ = write!(acted, ", {} failed", s.actions_failed);
    }
    let stuck = match s.stuck_found {
        0 => "nothing was stuck".to_string(),
        n => format!("{} found", plural(n, "stuck task", "stuck tasks")),
    };
    let after = |d: Duration| format!("after {} of virtual time", crate::diagnose::short(d));
    let recovery = match (s.stuck_found, s.time_to_recovery) {
        (0, _) => String::new(),
        (1, Some(d)) => format!("; it recovered {}", after(d)),
        (n, Some(d)) => format!("; all {n} recovered {}", after(d)),
        (n, None) if s.recovered == 0 => {
            format!("; none recovered: {} still stuck {}", n, after(elapsed))
        }
        (n, None) => format!(
            "; {} of {n} recovered: {} still stuck {}",
            s.recovered,
            n - s.recovered,
            after(elapsed)
        ),
    };
    let held = match s.held_back {
        0 => "nothing held back".to_string(),
        n => format!("{n} held back"),
    };
    format!("\nsummary: {stuck}, {acted}, {held}{recovery}\n")
}

/// Tells the audit records of one pass: one line per action done, failed or planned, one per
/// action held back (those waiting on capacity together), and counts them.
fn tell_records(
    text: &mut String,
    records: &[AuditRecord],
    report: &PassReport,
    start: SystemTime,
    summary: &mut DemoSummary,
) {
    let at_of = |cluster: &str| {
        report
            .clusters
            .iter()
            .find(|c| c.cluster == cluster)
            .map(|c| clock(start, c.snapshot.observed_at))
            .unwrap_or_default()
    };
    let mut waiting: BTreeMap<String, usize> = BTreeMap::new();
    for r in records {
        match &r.outcome {
            Outcome::Started => continue,
            Outcome::Done => summary.actions_taken += 1,
            Outcome::Failed(_) => summary.actions_failed += 1,
            Outcome::Planned => summary.actions_planned += 1,
            Outcome::Skipped(CAPACITY_CAUSE) => {
                summary.held_back += 1;
                *waiting.entry(r.cluster.clone()).or_default() += 1;
                continue;
            }
            Outcome::Skipped(hold) => {
                summary.held_back += 1;
                let _ = writeln!(
                    text,
                    "[{}]   held back {} {}: {hold} ({})",
                    at_of(&r.cluster),
                    r.action,
                    short_name(&r.target),
                    r.detail.as_deref().unwrap_or_default()
                );
                continue;
            }
            Outcome::AuditUnavailable => {
                summary.held_back += 1;
                continue;
            }
        }
        summary.actions_narrated += 1;
        let _ = writeln!(text, "[{}]   {}", at_of(&r.cluster), action_line(r));
    }
    for (cluster, n) in waiting {
        let _ = writeln!(
            text,
            "[{}]   not replacing {}: they wait on capacity, and a replacement would wait the \
             same way",
            at_of(&cluster),
            plural(n, "stuck task", "stuck tasks")
        );
    }
}

/// The hold of a task replacement that waits on capacity.
const CAPACITY_CAUSE: &str = "capacityCause";

/// One action record for people: "stopTask task/… → done (service web will start a
/// replacement)"; a drain names the EC2 instance and says why.
fn action_line(r: &AuditRecord) -> String {
    let is = |kind: ActionKind| r.action == kind.as_str();
    let detail = r
        .detail
        .as_deref()
        .filter(|d| !d.is_empty())
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    let line =
        |target: &str, what: &str| format!("{} {target} → {}{what}{detail}", r.action, r.outcome);
    let target = short_name(&r.target);
    match r.service.as_deref() {
        Some(s) if is(ActionKind::StopTask) => {
            line(target, &format!(" (service {s} will start a replacement)"))
        }
        _ if is(ActionKind::ReplaceTask) || is(ActionKind::RunReplacement) => {
            line(target, " (standalone: re-run with the same settings)")
        }
        _ if is(ActionKind::DrainContainerInstance) => {
            let ec2 = r.evidence.get("ec2InstanceId").map_or("?", String::as_str);
            let since = r
                .evidence
                .get("disconnectedSince")
                .map(|s| format!("; disconnected since {s}"))
                .unwrap_or_default();
            let target = format!("EC2 instance {ec2} (container instance {target})");
            format!("{}; why: {}{since}", line(&target, ""), r.reason)
        }
        _ => line(target, ""),
    }
}

/// Prints state changes and newly stuck tasks of one pass.
fn tell(text: &mut String, report: &PassReport, start: SystemTime, story: &mut Story) {
    for cluster in &report.clusters {
        let snap = &cluster.snapshot;
        for group in &snap.auto_scaling_groups {
            if let GroupLaunch::LaunchTemplate {
                template_id,
                template_name,
                ..
            } = &group.launch
            {
                story
                    .templates
                    .insert(template_id.clone(), template_name.clone());
            }
        }
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
        if story.last_counts.get(&snap.cluster_name) != Some(&line) {
            let _ = writeln!(text, "[{at}] {}: {line}", snap.cluster_name);
            story.last_counts.insert(snap.cluster_name.clone(), line);
        }
        for f in &cluster.plan.findings {
            if !story.stuck.contains_key(&f.task_arn) {
                story.stuck.insert(f.task_arn.clone(), f.condition);
                let _ = writeln!(text, "[{at}] {}: {}", short_name(&f.task_arn), f.reason);
            }
        }
        for c in &cluster.plan.capacity {
            if story.told.insert(format!(
                "capacity {} {}",
                c.capacity_provider,
                c.cause.name()
            )) {
                let _ = writeln!(text, "[{at}] why: {}", c.reason);
            }
            tell_root_causes(text, &at, c, &mut story.told);
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
