//! How commands put their answer on standard output: every command's stdout goes through
//! [`Stdout`], so output that cannot be written ends the command with one line on standard
//! error and exit 1 (e.g. /dev/full), or quietly with the command's own exit code when the
//! reader went away (EPIPE: it chose to stop reading). Also how `plan` shows a pass: a table
//! for people (Markdown-shaped, so it pastes into a pull request), or JSON for machines.

use std::io::{self, Write};
use std::process::ExitCode;

use comfy_table::{Table, presets};

use super::json::{ClusterError, ClusterOutput, FindingOutput, HeldOutput, PlanOutput};
use crate::audit::mode_name;
use crate::controller::{ClusterReport, PassReport};
use crate::diagnose::{rfc3339, short};
use crate::domain::short_name;
use crate::plan::Plan;
use crate::prose::plural;
use crate::targets::Place;

/// Standard output did not take a command's answer.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader closed its end of the pipe.
    #[error("the reader of standard output went away")]
    ReaderGone,
    #[error("cannot write to standard output: {0}")]
    Failed(io::Error),
}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::BrokenPipe => OutputError::ReaderGone,
            _ => OutputError::Failed(e),
        }
    }
}

/// Standard output that remembers its first failure: once a write failed, nothing more is
/// written (each later write fails the same way), and [`Stdout::finish`] reports it.
#[derive(Debug, Default)]
pub struct Stdout {
    first_error: Option<OutputError>,
}

impl Stdout {
    pub fn new() -> Self {
        Stdout::default()
    }

    /// Flushes, and says whether everything written reached standard output.
    pub fn finish(mut self) -> Result<(), OutputError> {
        let _ = self.flush();
        self.first_error.map_or(Ok(()), Err)
    }

    /// Runs one operation on standard output unless an earlier one failed.
    fn attempt<T>(&mut self, op: impl FnOnce(&mut io::Stdout) -> io::Result<T>) -> io::Result<T> {
        match &self.first_error {
            Some(OutputError::ReaderGone) => Err(io::ErrorKind::BrokenPipe.into()),
            Some(OutputError::Failed(e)) => Err(e.kind().into()),
            None => op(&mut io::stdout()).map_err(|e| {
                let kind = e.kind();
                if kind == io::ErrorKind::Interrupted {
                    return e; // write_all tries again
                }
                self.first_error = Some(e.into());
                kind.into()
            }),
        }
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.attempt(|out| out.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.attempt(|out| out.flush())
    }
}

/// Writes a command's whole answer to standard output.
pub fn write_stdout(text: &str) -> Result<(), OutputError> {
    let mut out = Stdout::new();
    let _ = out.write_all(text.as_bytes());
    out.finish()
}

/// The exit code of a command that would exit with `code` once its answer was `written`: that
/// code when the answer went out or its reader went away; 1, with one line on standard error,
/// when standard output failed.
pub fn exit_code(written: Result<(), OutputError>, code: ExitCode) -> ExitCode {
    match written {
        Ok(()) | Err(OutputError::ReaderGone) => code,
        Err(e @ OutputError::Failed(_)) => {
            // Not eprintln!: it panics when standard error is gone too.
            let _ = writeln!(io::stderr(), "error: {e}");
            ExitCode::from(1)
        }
    }
}

/// [`write_stdout`], then [`exit_code`].
pub fn emit(text: &str, code: ExitCode) -> ExitCode {
    exit_code(write_stdout(text), code)
}

/// One place's pass, as `plan` prints it.
pub struct PlacePass {
    /// `None` on the simulated account.
    pub place: Option<Place>,
    pub report: PassReport,
}

/// What `plan` prints: every place's pass, and the places of `[[targets]]` it could not reach.
pub struct PlanReport {
    pub passes: Vec<PlacePass>,
    /// Each place that could not be connected: one line naming its target and why.
    pub skipped: Vec<String>,
    /// Whether the table names each cluster's place (under `[[targets]]`); the JSON names it
    /// whenever it is known.
    pub name_places: bool,
}

impl PlanReport {
    /// Actions planned in every place.
    pub fn action_count(&self) -> usize {
        self.passes.iter().map(|p| p.report.action_count()).sum()
    }

    /// Clusters not reconciled, in every place.
    pub fn error_count(&self) -> usize {
        self.passes.iter().map(|p| p.report.errors.len()).sum()
    }

    /// How a cluster is named in the table and in error lines: `web`, or under `[[targets]]`
    /// `web in team-a (111122223333) us-east-1`.
    pub fn cluster_label(&self, place: Option<&Place>, cluster: &str) -> String {
        match place {
            Some(place) if self.name_places => format!("{cluster} in {place}"),
            _ => cluster.to_string(),
        }
    }
}

/// The passes as tables: per cluster, findings, planned actions and held-back actions; under
/// `[[targets]]` each cluster named with its account and Region, and the targets skipped.
pub fn plan_table(plans: &PlanReport) -> String {
    let mut out = String::new();
    for pass in &plans.passes {
        for cluster in &pass.report.clusters {
            cluster_table(
                &mut out,
                &plans.cluster_label(pass.place.as_ref(), &cluster.cluster),
                cluster,
            );
        }
    }
    for pass in &plans.passes {
        for (cluster, e) in &pass.report.errors {
            let label = plans.cluster_label(pass.place.as_ref(), cluster);
            out.push_str(&format!("cluster {label}: NOT RECONCILED: {e}\n"));
        }
    }
    for skipped in &plans.skipped {
        out.push_str(&format!("target SKIPPED: {skipped}\n"));
    }
    let clusters = || plans.passes.iter().flat_map(|p| &p.report.clusters);
    let findings: usize = clusters().map(|c| c.plan.findings.len()).sum();
    let held: usize = clusters().map(|c| c.plan.held.len()).sum();
    let places = if plans.name_places {
        format!("{}, ", plural(plans.passes.len(), "place", "places"))
    } else {
        String::new()
    };
    let skipped = if plans.skipped.is_empty() {
        String::new()
    } else {
        format!(
            ", {} skipped",
            plural(plans.skipped.len(), "target", "targets")
        )
    };
    out.push_str(&format!(
        "{places}{}, {}, {} planned, {held} held back, {}{skipped}\n",
        plural(clusters().count(), "cluster", "clusters"),
        plural(findings, "stuck task", "stuck tasks"),
        plural(plans.action_count(), "action", "actions"),
        plural(plans.error_count(), "error", "errors"),
    ));
    out
}

/// One cluster's tables, under a line naming it (`label`).
fn cluster_table(out: &mut String, label: &str, cluster: &ClusterReport) {
    let snap = &cluster.snapshot;
    out.push_str(&format!(
        "cluster {label} — observed {}, {}, {}\n",
        rfc3339(snap.observed_at),
        plural(snap.tasks.len(), "task", "tasks"),
        if snap.is_complete() {
            "complete".to_string()
        } else {
            format!("INCOMPLETE: {}", snap.gaps.join("; "))
        }
    ));
    let plan = &cluster.plan;
    if plan.findings.is_empty() {
        out.push_str("  no stuck tasks\n\n");
        return;
    }
    let mut findings = table(&["task", "service", "why", "policy"]);
    for f in &plan.findings {
        findings.add_row(vec![
            short_name(&f.task_arn).to_string(),
            f.service.clone().unwrap_or_else(|| "(standalone)".into()),
            f.reason.clone(),
            f.policy.clone(),
        ]);
    }
    out.push_str(&format!("\nstuck tasks\n{findings}\n"));
    if !plan.actions.is_empty() {
        let mut actions = table(&["action", "target", "mode", "policy", "why", "root cause"]);
        for a in &plan.actions {
            actions.add_row(vec![
                a.action.name().to_string(),
                short_name(a.action.target()).to_string(),
                mode_name(a.mode).to_string(),
                a.policy.clone(),
                a.reason.clone(),
                root_cause_phrase(plan, a.action.target()),
            ]);
        }
        out.push_str(&format!("\nplanned actions\n{actions}\n"));
    }
    if !plan.held.is_empty() {
        let mut held = table(&["action", "target", "held by", "detail", "root cause"]);
        for h in &plan.held {
            held.add_row(vec![
                h.action.to_string(),
                short_name(&h.target).to_string(),
                h.hold.name().to_string(),
                h.hold.detail(),
                root_cause_phrase(plan, &h.target),
            ]);
        }
        out.push_str(&format!("\nheld back\n{held}\n"));
    }
    out.push('\n');
}

/// The root causes behind an action or hold on `target` (a group, or a task waiting on one),
/// one short phrase each; `-` when none is known.
pub fn root_cause_phrase(plan: &Plan, target: &str) -> String {
    let phrases: Vec<String> = plan
        .capacity
        .iter()
        .filter(|c| {
            c.group_arn.as_deref() == Some(target) || c.waiting_tasks.iter().any(|t| t == target)
        })
        .flat_map(|c| c.root_causes.iter().map(|r| r.phrase()))
        .fold(Vec::new(), |mut seen, phrase| {
            // The same cause on several instances is one phrase.
            if !seen.contains(&phrase) {
                seen.push(phrase);
            }
            seen
        });
    if phrases.is_empty() {
        "-".into()
    } else {
        phrases.join("; ")
    }
}

/// The passes as one JSON document: a [`PlanOutput`], whose schema is `schema --of plan`. Each
/// cluster and error carries its account and Region when they are known.
pub fn plan_json(plans: &PlanReport) -> String {
    let mut output = PlanOutput {
        clusters: Vec::new(),
        errors: Vec::new(),
        skipped: plans.skipped.clone(),
    };
    for pass in &plans.passes {
        let (account, region) = place_fields(pass.place.as_ref());
        output.clusters.extend(
            pass.report
                .clusters
                .iter()
                .map(|c| cluster_output(c, account, region)),
        );
        output
            .errors
            .extend(pass.report.errors.iter().map(|(cluster, e)| ClusterError {
                cluster: cluster.clone(),
                account: account.map(str::to_string),
                region: region.map(str::to_string),
                error: e.to_string(),
                category: e.category,
            }));
    }
    serde_json::to_string_pretty(&output).unwrap_or_default()
}

/// A place's account and Region for the JSON: each `None` when not known (the simulated
/// account; an ambient account whose id could not be read).
fn place_fields(place: Option<&Place>) -> (Option<&str>, Option<&str>) {
    fn known(s: &str) -> Option<&str> {
        (!s.is_empty()).then_some(s)
    }
    place.map_or((None, None), |p| (known(&p.account), known(&p.region)))
}

fn cluster_output<'a>(
    c: &'a ClusterReport,
    account: Option<&'a str>,
    region: Option<&'a str>,
) -> ClusterOutput<'a> {
    ClusterOutput {
        cluster: &c.cluster,
        account,
        region,
        observed_at: rfc3339(c.snapshot.observed_at),
        tasks: c.snapshot.tasks.len(),
        complete: c.snapshot.is_complete(),
        gaps: &c.snapshot.gaps,
        findings: c
            .plan
            .findings
            .iter()
            .map(|f| FindingOutput {
                task: &f.task_arn,
                service: f.service.as_deref(),
                policy: &f.policy,
                reason: &f.reason,
                elapsed: short(f.elapsed),
                limit: short(f.limit),
                evidence: &f.evidence,
            })
            .collect(),
        capacity: &c.plan.capacity,
        actions: &c.plan.actions,
        held: c
            .plan
            .held
            .iter()
            .map(|h| HeldOutput {
                action: h.action,
                task: &h.target,
                policy: &h.policy,
                guardrail: h.hold.name(),
                detail: h.hold.detail(),
                reason: &h.reason,
            })
            .collect(),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::ASCII_MARKDOWN);
    t.set_header(header.to_vec());
    t
}
