//! The command line: parses arguments, assembles configuration, picks the cloud (AWS or the
//! simulated account), and runs a command. Exit codes: 0 success (and, for `plan`, nothing to
//! do), 1 error, 2 `plan` found actions.

mod backtest;
mod base_ref;
pub mod diff;
pub mod explain;
mod fleet;
pub mod generate;
pub mod health;
pub mod json;
pub(crate) mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::audit::{AuditSink, mode_name};
use crate::cloud::Cloud;
use crate::cloud::aws::leases::DynamoStore;
use crate::cloud::aws::sqs::SqsQueue;
use crate::cloud::aws::{AwsCloud, AwsSettings};
use crate::cloud::budget::ApiBudget;
use crate::cloud::memo::Memo;
use crate::cloud::read_only::ReadOnly;
use crate::cloud::sim::{SimAccount, SimFault, build_scenario, scenario_names};
use crate::config::{self, FlagOverrides, LogFormat, Settings};
use crate::controller::{Controller, ControllerSettings};
use crate::events::EventSink;
use crate::events::pump::Pump;
use crate::events::route::Router;
use crate::http::{self, Health};
use crate::lease::keeper::{Keeper, LeaseConfig, Leases};
use crate::lease::rules::LeaseTiming;
use crate::logging::{self, LogGuard};
use crate::metrics::Metrics;
use crate::policy::{self, PolicyMode, PolicySet};
use crate::record::recorder::Recorder;
use crate::record::segments::Limits;
use crate::reload::PolicyWatcher;
use crate::supervise::{self, Supervisor};
use crate::targets::Place;
use crate::telemetry::Telemetry;
use fleet::Member;

/// A reconciling controller that finds ECS tasks stuck in their lifecycle, says why, and
/// fixes the cause under declarative policies.
#[derive(Debug, Parser)]
#[command(name = "ecs-reconciler", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Default: ecs-reconciler.toml if it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log format on standard error.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reconcile every cluster in scope every resync interval until SIGINT/SIGTERM.
    Run(RunArgs),
    /// One pass that never mutates: print findings and planned actions, per account and Region
    /// of `[[targets]]`. Exit 0 when nothing would be done, 2 when actions are planned, 1 on
    /// error (a target that cannot be reached included).
    Plan(PlanArgs),
    /// Check every policy file in a directory. Exit 0 when all are valid, 1 with every error.
    Validate(ValidateArgs),
    /// Print the causal chain behind one task: task → capacity provider → Auto Scaling group
    /// → launch template versions → instances, the diagnosis, and what the policies would do.
    Explain(ExplainArgs),
    /// Print the JSON Schema of the policy file format, of `plan --output json`, or of an
    /// audit record: the contract of each.
    Schema(SchemaArgs),
    /// Run a scenario on the simulated account in accelerated virtual time and narrate it.
    Demo(DemoArgs),
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions(generate::CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory.
    Man(generate::ManArgs),
    /// Probe a running `run`'s /livez: exit 0 when it answers 200, 1 otherwise.
    Health(health::HealthArgs),
    /// Replay a recording (`run --record DIR`) through diagnose and plan under these policies
    /// (and a base set, side by side): what they would have done. Exit 0, or 2 when a base
    /// set decides differently, 1 on error.
    Backtest(backtest::BacktestArgs),
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Whose JSON Schema to print: a policy document, what `plan --output json` writes, or one
    /// line of the audit trail.
    #[arg(long, value_enum, value_name = "OUTPUT", default_value_t = json::SchemaOf::Policy)]
    pub of: json::SchemaOf,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The policy directory [default: policies].
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Plan and record only; make no mutating call.
    #[arg(long)]
    pub dry_run: bool,
    /// Make one pass and exit.
    #[arg(long)]
    pub once: bool,
    /// Append the audit trail (JSON lines) to FILE; `-` or absent: standard output.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Run against the simulated account with this scenario instead of AWS.
    #[arg(long, value_name = "SCENARIO", value_parser = scenario_parser())]
    pub sim: Option<String>,
    /// How often every cluster is reconciled (e.g. 30s; 1s to 24h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub resync: Option<Duration>,
    /// Clusters reconciled at once (1 to 256).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// With --sim: stop after this much virtual time (the simulator's clock runs ahead; at
    /// most 24h).
    #[arg(
        long,
        value_name = "DURATION",
        requires = "sim",
        default_value = "1h",
        value_parser = duration_text
    )]
    pub sim_for: String,
    /// Read EventBridge events from this SQS queue (deploy/events/ has the rules), so stuck
    /// tasks are seen as they change instead of at the next resync. Wins over
    /// `[events] queue_url`.
    #[arg(long, value_name = "URL", conflicts_with = "sim")]
    pub events_queue: Option<String>,
    /// Record every observation and decision into DIR, for `backtest` (`[record]` in the
    /// configuration: `max_bytes`, `max_age`).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Test-only: make the simulated account strike a fault in every observation.
    #[arg(long, value_name = "FAULT", requires = "sim", hide = true)]
    pub sim_fault: Option<SimFault>,
    /// Serve /metrics, /livez and /readyz on this IP:PORT [default: `listen`, 127.0.0.1:9090;
    /// port 0: any free port]. Never with --once; with --sim only when given, and then the
    /// endpoints serve on after the simulated time until SIGTERM.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    /// Markdown-shaped tables, for people (and pull requests).
    Table,
    /// One JSON document, for machines.
    Json,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// How to print the pass: tables for people, or one JSON document.
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Plan against the simulated account with this scenario instead of AWS.
    #[arg(long, value_name = "SCENARIO", value_parser = scenario_parser())]
    pub sim: Option<String>,
    /// With --sim: let this much virtual time pass before planning (e.g. 15m; at most 24h).
    #[arg(long, value_name = "DURATION", requires = "sim", value_parser = duration_text)]
    pub sim_after: Option<String>,
    /// Compare with the policies in BASE_DIR: observe once, plan under both sets, print what
    /// this set decides differently (exit 0: no difference, 2: differences).
    #[arg(long, value_name = "BASE_DIR", conflicts_with = "base_ref")]
    pub base: Option<PathBuf>,
    /// Like --base, with the policy directory as it is at git commit REF (e.g. origin/main) of
    /// the repository that holds it; nothing is checked out.
    #[arg(long, value_name = "REF")]
    pub base_ref: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The task: its ARN (arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID), task/CLUSTER/ID as
    /// `plan` prints it, or its bare id (every cluster in scope is searched).
    #[arg(value_name = "TASK")]
    pub task: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Explain against the simulated account with this scenario instead of AWS.
    #[arg(long, value_name = "SCENARIO", value_parser = scenario_parser())]
    pub sim: Option<String>,
    /// With --sim: let this much virtual time pass first (e.g. 15m; at most 24h).
    #[arg(long, value_name = "DURATION", requires = "sim", value_parser = duration_text)]
    pub sim_after: Option<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The policy directory (same as --policies).
    #[arg(value_name = "DIR", conflicts_with = "policies")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The scenario to run (see --list).
    #[arg(default_value = crate::demo::DEFAULT_SCENARIO)]
    pub scenario: String,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Plan and record only; make no mutating call.
    #[arg(long)]
    pub dry_run: bool,
    /// Also append the audit trail (JSON lines) to FILE.
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
}

/// `--sim` takes a scenario's name, and its help lists them.
fn scenario_parser() -> PossibleValuesParser {
    PossibleValuesParser::new(scenario_names().iter().copied())
}

/// The longest virtual time `--sim-for` and `--sim-after` take: a simulated day covers every
/// scenario's story (the longest is told in an hour), and each virtual resync costs real time.
const MAX_VIRTUAL_TIME: Duration = Duration::from_secs(24 * 3600);

/// A virtual-time flag checked by clap (so a bad one gets clap's one-line error naming the
/// flag), kept as text for the code that reads it.
fn duration_text(text: &str) -> Result<String, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d > MAX_VIRTUAL_TIME {
        return Err(format!(
            "at most {} of virtual time",
            humantime::format_duration(MAX_VIRTUAL_TIME)
        ));
    }
    Ok(text.to_string())
}

/// `schema`, `validate DIR`, `completions` and `man` need nothing from the configuration: a broken
/// ecs-reconciler.toml in the working directory must not stop them. A file named with
/// `--config` is still checked: whoever named it wants to hear that it is broken.
fn needs_configuration(cli: &Cli) -> bool {
    match &cli.command {
        Command::Schema(_) => cli.config.is_some(),
        Command::Validate(args) => cli.config.is_some() || args.dir.is_none(),
        Command::Completions(_) | Command::Man(_) => cli.config.is_some(),
        _ => true,
    }
}

/// Parses the command line, runs the command, and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = if needs_configuration(&cli) {
        match config::load(cli.config.as_deref(), &flags_of(&cli)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        Settings {
            log_format: cli.log_format.unwrap_or(LogFormat::Text),
            ..Settings::default()
        }
    };
    let mut settings = settings;
    if matches!(
        cli.command,
        Command::Demo(_) | Command::Plan(_) | Command::Explain(_)
    ) {
        // These commands' output is the answer; only warnings go to the log.
        settings.log_level = "warn".into();
    }
    let _logs = init_tracing(&settings);
    match cli.command {
        Command::Validate(args) => validate(args.dir.as_deref().unwrap_or(&settings.policies)),
        Command::Schema(args) => output::emit(
            &format!(
                "{}\n",
                serde_json::to_string_pretty(&json::schema(args.of)).unwrap_or_default()
            ),
            ExitCode::SUCCESS,
        ),
        Command::Demo(args) => crate::demo::main(&args),
        Command::Completions(args) => generate::completions(&args),
        Command::Man(args) => generate::man(&args),
        Command::Health(args) => probe_runtime().block_on(health::health(args, &settings.listen)),
        Command::Run(args) => runtime(args.sim.is_some()).block_on(run(args, settings)),
        Command::Backtest(args) => backtest::backtest(&args, &settings),
        Command::Plan(args) => runtime(args.sim.is_some()).block_on(plan(args, settings)),
        Command::Explain(args) => {
            runtime(args.sim.is_some()).block_on(explain_command(args, settings))
        }
    }
}

/// A multi-threaded runtime for AWS; for the simulated account, a single-threaded one whose
/// clock is paused, so virtual time jumps ahead whenever everything waits.
pub fn runtime(simulated: bool) -> tokio::runtime::Runtime {
    let mut builder = if simulated {
        let mut b = tokio::runtime::Builder::new_current_thread();
        b.start_paused(true);
        b
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

fn flags_of(cli: &Cli) -> FlagOverrides {
    let mut flags = FlagOverrides {
        log_format: cli.log_format,
        ..FlagOverrides::default()
    };
    match &cli.command {
        Command::Run(a) => {
            flags.policies = a.policy.policies.clone();
            flags.resync = a.resync;
            flags.concurrency = a.concurrency;
            flags.dry_run = a.dry_run.then_some(true);
            flags.audit_log = a.audit_log.clone();
            flags.events = a.events_queue.clone().map(|url| config::EventsFlags {
                queue_url: Some(url),
            });
            flags.listen = a.listen.clone();
            flags.record = a
                .record
                .clone()
                .map(|dir| config::RecordFlags { dir: Some(dir) });
        }
        Command::Plan(a) => flags.policies = a.policy.policies.clone(),
        Command::Backtest(a) => flags.policies = a.policy.policies.clone(),
        Command::Explain(a) => flags.policies = a.policy.policies.clone(),
        Command::Validate(a) => flags.policies = a.policy.policies.clone(),
        Command::Schema(_) | Command::Demo(_) => {}
        Command::Completions(_) | Command::Man(_) | Command::Health(_) => {}
    }
    flags
}

/// Logs to standard error through [`crate::logging`], so that logging never blocks or panics;
/// the guard flushes the log when the process ends.
fn init_tracing(settings: &Settings) -> LogGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(logging::filter_directives(&settings.log_level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = logging::use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    use tracing_subscriber::util::SubscriberInitExt;
    let (writer, guard) = logging::install_stderr();
    let _ = match settings.log_format {
        LogFormat::Json => logging::json_subscriber(writer, filter)
            .try_init()
            .map_err(|e| e.to_string()),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(colour)
            .with_writer(writer)
            // The writer never fails; a formatting error must not be printed to stderr either.
            .log_internal_errors(false)
            .try_init()
            .map_err(|e| e.to_string()),
    };
    guard
}

fn validate(dir: &Path) -> ExitCode {
    match policy::load_dir_identified(dir) {
        Ok(set) => output::emit(
            &format!(
                "{}: {} valid (policy set {})\n",
                dir.display(),
                crate::prose::plural(set.policies.len(), "policy", "policies"),
                set.fingerprint
            ),
            ExitCode::SUCCESS,
        ),
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(1)
        }
    }
}

/// Loads a policy directory for `run` and `plan`, named by its git commit when it has one.
fn load_policies(dir: &Path) -> Option<PolicySet> {
    match policy::load_dir_identified(dir) {
        Ok(set) => Some(set),
        Err(errors) => {
            eprintln!("{errors}");
            None
        }
    }
}

fn aws_settings(settings: &Settings) -> AwsSettings {
    AwsSettings {
        operation_timeout: settings.aws.operation_timeout,
        attempt_timeout: settings.aws.attempt_timeout,
        connect_timeout: settings.aws.connect_timeout,
        max_attempts: settings.aws.max_attempts,
        ..AwsSettings::default()
    }
}

/// The AWS account of the environment; the error, one line, says what is missing, how to set
/// it, and that `--sim` needs no AWS at all.
async fn aws_cloud(settings: &Settings, budget: Arc<ApiBudget>) -> Result<AwsCloud, String> {
    AwsCloud::from_env(&aws_settings(settings), budget)
        .await
        .map_err(|e| with_sim_hint(&e.to_string()))
}

fn with_sim_hint(e: &str) -> String {
    format!(
        "{e}; or run without AWS on the simulated account with --sim SCENARIO \
         (`ecs-reconciler demo --list` names the scenarios)"
    )
}

/// The process's one API budget, from `[pacing]` (already validated with the settings).
fn api_budget(settings: &Settings) -> Result<Arc<ApiBudget>, String> {
    ApiBudget::new(&settings.pacing)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// Logs what the budget granted per category (the categories that were used).
fn log_budget(budget: &ApiBudget) {
    for c in budget.report().iter().filter(|c| c.calls > 0) {
        info!(
            category = %c.category,
            calls = c.calls,
            budget_per_sec = hundredths(c.budget_per_sec),
            observed_per_sec = hundredths(c.observed_per_sec),
            "API budget"
        );
    }
}

/// A rate to two decimals, for the log (`0.17`, not `0.16666666666666666`); still a number
/// in the JSON log.
fn hundredths(rate: f64) -> f64 {
    (rate * 100.0).round() / 100.0
}

fn audit_sink(path: Option<&Path>) -> Result<AuditSink, String> {
    match path {
        None => Ok(AuditSink::stdout()),
        Some(p) if p == Path::new("-") => Ok(AuditSink::stdout()),
        Some(p) => AuditSink::file(p).map_err(|e| e.to_string()),
    }
}

/// A scenario's simulated account, with its built-in policies.
struct SimInputs {
    account: Arc<SimAccount>,
    builtin: PolicySet,
    /// The clusters the scenario sets up.
    clusters: Vec<String>,
}

/// The simulated account of a scenario, with its built-in policies.
fn sim_account(name: &str) -> Result<SimInputs, String> {
    let Some((account, scenario)) = build_scenario(name, SystemTime::now()) else {
        return Err(format!(
            "unknown scenario {name}; known: {}",
            scenario_names().join(", ")
        ));
    };
    let builtin = crate::demo::scenario_policies().map_err(|e| e.to_string())?;
    Ok(SimInputs {
        account: Arc::new(account),
        builtin,
        clusters: scenario.clusters,
    })
}

impl SimInputs {
    /// The policies of a `--sim` command: those in `dir` (`--policies`), which must select
    /// one of the scenario's clusters, or else the scenario's own. Errors are printed (one line
    /// for the scope); the exit code is returned.
    fn policies(
        self,
        scenario: &str,
        dir: Option<&Path>,
    ) -> Result<(Arc<SimAccount>, PolicySet), ExitCode> {
        let Some(dir) = dir else {
            return Ok((self.account, self.builtin));
        };
        let set = load_policies(dir).ok_or(ExitCode::from(1))?;
        sim_scope(scenario, &self.clusters, &set, dir).map_err(|e| startup_error(&e))?;
        Ok((self.account, set))
    }
}

/// With `--sim` and `--policies`: policies that select none of the scenario's clusters are an
/// error, one line naming the clusters the scenario has and those the policies select.
fn sim_scope(
    scenario: &str,
    clusters: &[String],
    policies: &PolicySet,
    dir: &Path,
) -> Result<(), String> {
    if clusters
        .iter()
        .any(|c| policies.for_cluster(c).next().is_some())
    {
        return Ok(());
    }
    let mut selected: Vec<&str> = policies
        .policies
        .iter()
        .flat_map(|p| p.target.cluster_patterns.iter().map(String::as_str))
        .collect();
    selected.sort_unstable();
    selected.dedup();
    let word = |n: usize| if n == 1 { "cluster" } else { "clusters" };
    Err(format!(
        "the policies in {} select {} {}; scenario {scenario} has {} {}, which no policy \
         selects (without --policies, --sim uses the scenario's own policy)",
        dir.display(),
        word(selected.len()),
        selected.join(", "),
        word(clusters.len()),
        clusters.join(", ")
    ))
}

async fn run(args: RunArgs, settings: Settings) -> ExitCode {
    let audit = match audit_sink(settings.audit_log.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let budget = match api_budget(&settings) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let sim_budget = args.sim.as_ref().map(|_| &budget);
    let serving = match Serving::bind(&args, &settings, sim_budget) {
        Ok(s) => s,
        Err(e) => return startup_error(&e),
    };
    if let Some(name) = &args.sim {
        if settings.lease.table.is_some() {
            warn!("lease.table is ignored with --sim: the simulated account has one replica");
        }
        let sim = match sim_account(name) {
            Ok(sim) => sim,
            Err(e) => return startup_error(&e),
        };
        let (account, policies) = match sim.policies(name, args.policy.policies.as_deref()) {
            Ok(a) => a,
            Err(code) => return code,
        };
        // The simulated account is paced like the real one, in virtual time.
        account.set_budget(Some(Arc::clone(&budget)));
        account.set_fault(args.sim_fault);
        // The scenario's built-in policies have no directory to watch.
        let reload_dir = args.policy.policies.clone();
        if let Some(s) = &serving {
            s.health.cloud_resolved();
        }
        // A dry run on the simulator is read-only by construction too (docs/design.md §4).
        let inputs = DriveInputs {
            policies,
            reload_dir,
            audit,
            serving,
            // The simulated account's events are its own, in process.
            events: None,
            // One simulated account, one replica.
            leases: None,
        };
        let member = Member {
            place: None,
            cloud: account,
            budget,
            scope: None,
        };
        return if settings.dry_run {
            drive(vec![member.map(ReadOnly::new)], inputs, &args, &settings).await
        } else {
            drive(vec![member], inputs, &args, &settings).await
        };
    }
    let Some(policies) = load_policies(&settings.policies) else {
        return ExitCode::from(1);
    };
    let members = match fleet::connect_all(&settings, &aws_settings(&settings)).await {
        Ok(m) => m,
        Err(e) if settings.targets.is_empty() => return startup_error(&with_sim_hint(&e)),
        Err(e) => return startup_error(&e),
    };
    if let Some(s) = &serving {
        for m in &members {
            if let Some(place) = &m.place {
                s.metrics.add_budget(place, Arc::clone(&m.budget));
            }
        }
    }
    let events = match event_queue(&settings, &args).await {
        Ok(q) => q,
        Err(e) => return startup_error(&e),
    };
    let first = members.first().and_then(|m| m.place.as_ref());
    let leases = match lease_table(&settings, &args, first).await {
        Ok(l) => l,
        Err(e) => return startup_error(&e),
    };
    if let Some(s) = &serving {
        s.health.cloud_resolved();
    }
    let inputs = DriveInputs {
        policies,
        reload_dir: Some(settings.policies.clone()),
        audit,
        serving,
        events,
        leases,
    };
    if settings.dry_run {
        let members = members.into_iter().map(|m| m.map(ReadOnly::new)).collect();
        drive(members, inputs, &args, &settings).await
    } else {
        drive(members, inputs, &args, &settings).await
    }
}

/// The event queue of `[events] queue_url` (or `--events-queue`), checked once: a missing
/// queue or one the role may not read is a one-line error. None without a queue, and with
/// `--once` (one pass needs no events).
async fn event_queue(settings: &Settings, args: &RunArgs) -> Result<Option<SqsQueue>, String> {
    let Some(url) = settings.events.queue_url.as_deref() else {
        return Ok(None);
    };
    if args.once {
        return Ok(None);
    }
    let queue = SqsQueue::from_env(&aws_settings(settings), url).await;
    let arn = queue.check().await.map_err(|e| e.to_string())?;
    info!(queue = %url, arn = %arn, "reading events");
    Ok(Some(queue))
}

/// The leases of `[lease] table`, checked once (a missing table, or one the role may not
/// read, is a one-line error; `lease.create_table` creates it). None without a table.
async fn lease_table(
    settings: &Settings,
    args: &RunArgs,
    first: Option<&Place>,
) -> Result<Option<LeaseParts>, String> {
    let lease = &settings.lease;
    let Some(table) = lease.table.as_deref() else {
        return Ok(None);
    };
    if args.once {
        return Err(
            "--once makes one pass without a lease, but lease.table is set: other replicas may \
             be acting; run without --once, or without lease.table"
                .into(),
        );
    }
    let (store, _) = DynamoStore::from_env(&aws_settings(settings), table, lease.renew_every).await;
    store
        .check(lease.create_table)
        .await
        .map_err(|e| e.to_string())?;
    let config = LeaseConfig {
        shards: lease.shards,
        timing: LeaseTiming {
            duration: lease.duration,
            renew_every: lease.renew_every,
            longest_call: lease.action_timeout,
        },
        // Each place's controller asks by its own account and Region (`PlaceScope`); these
        // are what `Leases` answers for alone.
        account: first.map(|p| p.account.clone()).unwrap_or_default(),
        region: first.map(|p| p.region.clone()).unwrap_or_default(),
    };
    let leases = Leases::new(&crate::lease::replica_id(), config);
    info!(table = %table, replica = %leases.replica(), shards = lease.shards, "sharing the work through leases");
    Ok(Some(LeaseParts { leases, store }))
}

/// This replica's leases and the table they live in.
struct LeaseParts {
    leases: Arc<Leases>,
    store: DynamoStore,
}

/// The HTTP endpoints of `run` (not with `--once`): the address bound before anything is
/// reconciled, the metrics the loop tells, and what `/livez` and `/readyz` answer from.
struct Serving {
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl Serving {
    /// Binds `listen`; `None` with `--once`, and with `--sim` unless `--listen` asks for it
    /// (a demo then serves until SIGTERM). The error is one line.
    fn bind(
        args: &RunArgs,
        settings: &Settings,
        budget: Option<&Arc<ApiBudget>>,
    ) -> Result<Option<Serving>, String> {
        if args.once || (args.sim.is_some() && args.listen.is_none()) {
            return Ok(None);
        }
        let listener = http::bind(&settings.listen)?;
        // Each place's budget is added once connected.
        let metrics = Arc::new(Metrics::new(budget.cloned()));
        let bound = http::liveness_bound(settings.resync, settings.aws.operation_timeout);
        let health = Arc::new(Health::new(Arc::clone(&metrics), bound));
        Ok(Some(Serving {
            listener,
            metrics,
            health,
        }))
    }
}

/// What `drive` runs the controller with.
struct DriveInputs {
    policies: PolicySet,
    /// With a directory, the policies are reloaded from it on file changes and SIGHUP.
    reload_dir: Option<PathBuf>,
    audit: AuditSink,
    serving: Option<Serving>,
    /// The checked SQS queue of `[events] queue_url`, if any.
    events: Option<SqsQueue>,
    /// The checked lease table of `[lease] table`, if any.
    leases: Option<LeaseParts>,
}

/// Runs the controllers until shutdown (or one pass with `--once`), serving the endpoints when
/// `inputs.serving` says so: one controller per place.
async fn drive<C: Cloud>(
    members: Vec<Member<C>>,
    inputs: DriveInputs,
    args: &RunArgs,
    settings: &Settings,
) -> ExitCode {
    let DriveInputs {
        policies,
        reload_dir,
        audit,
        serving,
        events,
        leases,
    } = inputs;
    let controller_settings = controller_settings(settings);
    info!(
        policies = policies.policies.len(),
        policy_set = %policies.fingerprint,
        mode = %mode_name(if controller_settings.dry_run {
            PolicyMode::Audit
        } else {
            PolicyMode::Enforce
        }),
        refuses_writes = members.iter().all(|m| m.cloud.refuses_writes()),
        root_cause_reads = controller_settings.root_cause_reads,
        places = members.len(),
        "starting"
    );
    let initial = reload_dir.as_ref().map(|_| policies.clone());
    if let Some(s) = &serving {
        s.metrics.set_policy_set(&policies.fingerprint);
    }
    let recorder = match start_recorder(settings, serving.as_ref()) {
        Ok(r) => r,
        Err(e) => return startup_error(&e),
    };
    let budgets: Vec<Arc<ApiBudget>> = members.iter().map(|m| Arc::clone(&m.budget)).collect();
    let held = leases.as_ref().map(|p| &p.leases);
    let controllers: Vec<Arc<Controller<C>>> = members
        .into_iter()
        .map(|m| {
            let parts = ControllerParts {
                policies: &policies,
                settings: &controller_settings,
                audit: &audit,
                serving: serving.as_ref(),
                recorder: recorder.as_ref(),
                leases: held,
            };
            Arc::new(parts.controller(m))
        })
        .collect();
    if let Some(s) = &serving {
        let all = controllers.clone();
        s.health
            .watch_audit(Box::new(move || all.iter().all(|c| c.audit_available())));
    }
    let shutdown = CancellationToken::new();
    supervise::install_panic_hook();
    if args.once {
        return once(&controllers, &shutdown, recorder.as_deref(), &budgets).await;
    }
    let virtual_limit = match (&args.sim, humantime::parse_duration(&args.sim_for)) {
        (None, _) => None,
        (Some(_), Ok(d)) => Some(d),
        (Some(_), Err(e)) => return startup_error(&format!("--sim-for: {e}")),
    };
    let stop_requests = match supervise::listen_for_stop_signals(settings.shutdown_timeout) {
        Ok(r) => r,
        Err(e) => return startup_error(&format!("cannot listen for SIGTERM and SIGINT: {e}")),
    };
    let mut tasks = Supervisor::new(shutdown.clone());
    // Cancelled with shutdown, or alone when --sim's time ran out while serving.
    let loop_stop = shutdown.child_token();
    if let Some(limit) = virtual_limit {
        let clock = SimulatedClock {
            limit,
            shutdown: shutdown.clone(),
            loop_stop: loop_stop.clone(),
            serving: serving.as_ref().map(|s| Arc::clone(&s.health)),
        };
        tasks.spawn("simulated clock", clock.run());
    }
    if let (Some(dir), Some(initial)) = (reload_dir, initial) {
        let targets = controllers.clone();
        let mut watcher = PolicyWatcher::new(dir, initial).on_change(move |set| {
            for c in &targets {
                c.set_policies(fleet::policies_for(c, &set));
            }
        });
        if let Some(s) = &serving {
            watcher = watcher.with_telemetry(Arc::clone(&s.metrics) as Arc<dyn Telemetry>);
        }
        tasks.adopt("policy reload", Arc::new(watcher).start(shutdown.clone()));
    }
    if let Some(queue) = events {
        let pump = Pump::new(
            queue,
            event_sink(&controllers),
            event_telemetry(&controllers),
        );
        tasks.spawn("event pump", pump.run(shutdown.clone()));
    }
    // Cancelled when every controller loop has ended: the leases may then be given back.
    let loops_ended = CancellationToken::new();
    if let Some(parts) = leases {
        let metrics = serving.as_ref().map(|s| Arc::clone(&s.metrics));
        let ending = (shutdown.clone(), loops_ended.clone());
        tasks.spawn(
            "leases",
            keep_leases(parts, controllers.clone(), metrics, ending),
        );
    }
    if let Some(s) = serving {
        tasks.spawn(
            "http endpoints",
            http::serve(s.listener, s.health, shutdown.clone()),
        );
    }
    let looping = controllers.clone();
    let until = shutdown.clone();
    tasks.spawn("controller loop", async move {
        run_loops(looping, loop_stop.clone()).await;
        loops_ended.cancel();
        if loop_stop.is_cancelled() {
            // The simulated time ran out: the endpoints serve on until shutdown.
            until.cancelled().await;
        }
    });
    info!(tasks = ?tasks.running(), "supervising");
    let ending = tasks.wait(stop_requests, settings.shutdown_timeout).await;
    finish_recording(recorder.as_deref());
    budgets.iter().for_each(|b| log_budget(b));
    let dropped = logging::dropped_lines();
    if dropped > 0 {
        warn!(dropped, "log lines could not be written and were dropped");
    }
    match ending.last_line() {
        None if audit_trail_ok(&controllers) => ExitCode::SUCCESS,
        None => ExitCode::from(1),
        // Not a return: a task that did not stop would keep the runtime (and so the process)
        // from ending.
        Some(line) => supervise::exit_now(&line, ending.exit_code()),
    }
}

fn controller_settings(settings: &Settings) -> ControllerSettings {
    ControllerSettings {
        resync: settings.resync,
        concurrency: settings.concurrency,
        dry_run: settings.dry_run,
        root_cause_reads: settings.root_cause_reads,
        event_resync: settings.events.resync,
        resync_read_rate: Some(crate::resync::resync_read_rate(
            &settings.pacing,
            settings.events.resync_budget,
        )),
        health_interval: settings.events.health_interval,
        managed_tag: settings.managed_tag.clone(),
    }
}

/// What every place's controller shares.
struct ControllerParts<'a> {
    policies: &'a PolicySet,
    settings: &'a ControllerSettings,
    audit: &'a AuditSink,
    serving: Option<&'a Serving>,
    recorder: Option<&'a Arc<Recorder>>,
    leases: Option<&'a Arc<Leases>>,
}

impl ControllerParts<'_> {
    /// The controller of one place: its policies, its account and Region in the audit
    /// records and metrics, its clusters under the leases.
    fn controller<C: Cloud>(&self, member: Member<C>) -> Controller<C> {
        let ownership = fleet::ownership(&member, self.leases);
        let policies = match &member.place {
            Some(place) => self.policies.for_place(place),
            None => self.policies.clone(),
        };
        let mut c = Controller::new(
            member.cloud,
            policies,
            self.settings.clone(),
            self.audit.clone(),
        );
        if let Some(telemetry) = listeners(self.serving, self.recorder, member.place.as_ref()) {
            c = c.with_telemetry(telemetry);
        }
        if let Some(ownership) = ownership {
            c = c.with_ownership(ownership);
        }
        if let Some(place) = member.place {
            c = c.with_place(place);
        }
        c
    }
}

/// `run --once`: one pass of every place; exit 1 if any cluster was not reconciled or any
/// action was held for the audit trail.
async fn once<C: Cloud>(
    controllers: &[Arc<Controller<C>>],
    shutdown: &CancellationToken,
    recorder: Option<&Recorder>,
    budgets: &[Arc<ApiBudget>],
) -> ExitCode {
    let mut ok = true;
    for controller in controllers {
        let report = controller.pass(shutdown).await;
        let _ = controller.audit().flush();
        let place = controller
            .place()
            .map(ToString::to_string)
            .unwrap_or_default();
        for (cluster, e) in &report.errors {
            error!(place = %place, cluster = %cluster, error = %e, "cluster not reconciled");
        }
        let held = report.held_for_audit();
        if held > 0 {
            error!(
                actions = held,
                "actions held back (skipped:auditUnavailable): the audit trail cannot be written"
            );
        }
        ok &= report.errors.is_empty() && held == 0;
    }
    finish_recording(recorder);
    budgets.iter().for_each(|b| log_budget(b));
    if ok && audit_trail_ok(controllers) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Every place's loop, until `stop`; a loop that panics ends this task with its panic.
async fn run_loops<C: Cloud>(controllers: Vec<Arc<Controller<C>>>, stop: CancellationToken) {
    let mut loops = tokio::task::JoinSet::new();
    for c in controllers {
        let stop = stop.clone();
        loops.spawn(async move { c.run(stop).await });
    }
    while let Some(ended) = loops.join_next().await {
        if let Err(e) = ended
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Where the event pump delivers: the one controller, or a router by account and Region.
fn event_sink<C: Cloud>(controllers: &[Arc<Controller<C>>]) -> Arc<dyn EventSink> {
    if let [one] = controllers {
        return Arc::clone(one) as Arc<dyn EventSink>;
    }
    Arc::new(Router::new(
        controllers
            .iter()
            .filter_map(|c| {
                let place = c.place()?.clone();
                Some((place, Arc::clone(c) as Arc<dyn EventSink>))
            })
            .collect(),
    ))
}

fn event_telemetry<C: Cloud>(controllers: &[Arc<Controller<C>>]) -> Arc<dyn Telemetry> {
    controllers.first().map_or_else(
        || Arc::new(crate::telemetry::Silent) as Arc<dyn Telemetry>,
        |c| Arc::clone(c.telemetry()),
    )
}

/// The lease keeper: every controller lists its scope again when a lease is taken or lost. At
/// shutdown, once the loops have ended, the leases are given back.
async fn keep_leases<C: Cloud>(
    parts: LeaseParts,
    controllers: Vec<Arc<Controller<C>>>,
    metrics: Option<Arc<Metrics>>,
    (until, loops_ended): (CancellationToken, CancellationToken),
) {
    let held = Arc::clone(&parts.leases);
    let keeper = Keeper::new(Arc::new(parts.store), parts.leases).on_change(Arc::new(move || {
        for c in &controllers {
            c.scope_changed();
        }
        if let Some(m) = &metrics {
            m.set_leases_held(held.held().len());
        }
    }));
    let keeper = keeper.release_when(loops_ended);
    if let Err(lost) = keeper.run(until).await {
        error!("{lost}");
    }
}

/// The recorder of `--record DIR` (`[record] dir`), telling the metrics of its failures.
fn start_recorder(
    settings: &Settings,
    serving: Option<&Serving>,
) -> Result<Option<Arc<Recorder>>, String> {
    let Some(dir) = &settings.record.dir else {
        return Ok(None);
    };
    let limits = Limits {
        max_bytes: settings.record.max_bytes,
        max_age: settings.record.max_age,
    };
    let notify: Arc<dyn Telemetry> = match serving {
        Some(s) => Arc::clone(&s.metrics) as Arc<dyn Telemetry>,
        None => Arc::new(crate::telemetry::Silent),
    };
    Recorder::start(dir, limits, notify).map(|r| Some(Arc::new(r)))
}

/// Whom a controller tells: the metrics (labelled with its place), the recorder, both, or
/// nobody.
fn listeners(
    serving: Option<&Serving>,
    recorder: Option<&Arc<Recorder>>,
    place: Option<&Place>,
) -> Option<Arc<dyn Telemetry>> {
    let mut all: Vec<Arc<dyn Telemetry>> = Vec::new();
    if let Some(s) = serving {
        all.push(match place {
            Some(place) => s.metrics.for_place(place),
            None => Arc::clone(&s.metrics) as Arc<dyn Telemetry>,
        });
    }
    if let Some(r) = recorder {
        all.push(Arc::clone(r) as Arc<dyn Telemetry>);
    }
    match all.len() {
        0 => None,
        1 => all.pop(),
        _ => Some(Arc::new(crate::telemetry::Tee(all))),
    }
}

/// Writes what the recorder holds and closes its segment, logging what it dropped.
fn finish_recording(recorder: Option<&Recorder>) {
    let Some(recorder) = recorder else {
        return;
    };
    recorder.finish();
    let stats = recorder.stats();
    let dropped = stats.dropped.load(std::sync::atomic::Ordering::Relaxed);
    let failures = stats
        .write_failures
        .load(std::sync::atomic::Ordering::Relaxed);
    info!(
        observations = stats
            .observations
            .load(std::sync::atomic::Ordering::Relaxed),
        actions = stats.actions.load(std::sync::atomic::Ordering::Relaxed),
        dropped,
        write_failures = failures,
        "recording closed"
    );
}

/// Whether the audit trail was writable at the end; logs an error when not.
fn audit_trail_ok<C: Cloud>(controllers: &[Arc<Controller<C>>]) -> bool {
    let ok = controllers.iter().all(|c| c.audit_available());
    if !ok {
        error!("the audit trail could not be written; exiting non-zero");
    }
    ok
}

/// With `--sim-for`: once that much virtual time has passed, requests shutdown, or, while the
/// endpoints are served, stops the loop only (`/livez` stays 200) and waits for SIGTERM.
struct SimulatedClock {
    limit: Duration,
    shutdown: CancellationToken,
    loop_stop: CancellationToken,
    serving: Option<Arc<Health>>,
}

impl SimulatedClock {
    async fn run(self) {
        tokio::select! {
            _ = self.shutdown.cancelled() => return,
            _ = tokio::time::sleep(self.limit) => {}
        }
        let Some(health) = self.serving else {
            info!(limit = ?self.limit, "simulated run complete");
            self.shutdown.cancel();
            return;
        };
        info!(limit = ?self.limit, "simulated run complete; serving the endpoints until SIGTERM");
        health.finish();
        self.loop_stop.cancel();
        // Real time from here on: a paused clock with nothing left to time leaves the idle
        // runtime parked in a state where SIGTERM was seen not to get through.
        tokio::time::resume();
        self.shutdown.cancelled().await;
    }
}

/// A small runtime for `health`'s one request.
fn probe_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
}

/// A start-up error line on standard error (ignoring a failed write), and exit status 1.
fn startup_error(message: &str) -> ExitCode {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "error: {message}");
    ExitCode::from(1)
}

/// `plan`: one read-only pass of every place (each account and Region of `[[targets]]`, or the
/// ambient one; the scenario's account with `--sim`), each under its own policies and cluster
/// scope, printed as tables or JSON. Exit 0 when nothing would be done, 2 when actions are
/// planned, 1 when a cluster could not be reconciled or a target could not be reached (one
/// line each on standard error, after the plans of the places that were reached).
async fn plan(args: PlanArgs, settings: Settings) -> ExitCode {
    if args.base.is_some() || args.base_ref.is_some() {
        return plan_diff(args, settings).await;
    }
    let plans = match plan_inputs(&args, &settings).await {
        Ok(PlanPlaces::Sim(inputs)) => plan_places(inputs, &settings).await,
        Ok(PlanPlaces::Aws(inputs)) => plan_places(inputs, &settings).await,
        Err(code) => return code,
    };
    let written = output::write_stdout(&match args.output {
        OutputFormat::Table => output::plan_table(&plans),
        OutputFormat::Json => format!("{}\n", output::plan_json(&plans)),
    });
    for pass in &plans.passes {
        for (cluster, e) in &pass.report.errors {
            let label = plans.cluster_label(pass.place.as_ref(), cluster);
            eprintln!("error: cluster {label}: {e}");
        }
    }
    report_skipped(&plans.skipped);
    let code = if plans.error_count() > 0 || !plans.skipped.is_empty() {
        ExitCode::from(1)
    } else if plans.action_count() > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    };
    output::exit_code(written, code)
}

/// One line on standard error per target `plan` could not reach: its plan is missing, so the
/// output is not the whole fleet's.
fn report_skipped(skipped: &[String]) {
    for line in skipped {
        eprintln!("error: target skipped, not planned: {line}");
    }
}

/// The base set of `--base DIR` or `--base-ref REF` (read from git beside `head_dir`); the
/// error is printed. `None` also when neither is given.
fn load_base(head_dir: &Path, base: Option<&Path>, base_ref: Option<&str>) -> Option<PolicySet> {
    match (base, base_ref) {
        (Some(dir), _) => load_policies(dir),
        (None, Some(reference)) => match base_ref::load(head_dir, reference) {
            Ok(set) => Some(set),
            Err(e) => {
                eprintln!("error: --base-ref {reference}: {e}");
                None
            }
        },
        (None, None) => None,
    }
}

/// `plan --base DIR | --base-ref REF`: per place, one observation planned under the base set
/// and this one; the differences, keyed by place, cluster and target, as Markdown
/// (`--output table`) or JSON. Exit 0: no difference, 2: differences, 1: a cluster not planned
/// or a target not reached.
async fn plan_diff(args: PlanArgs, settings: Settings) -> ExitCode {
    let head_dir = args
        .policy
        .policies
        .clone()
        .unwrap_or_else(|| settings.policies.clone());
    let Some(base) = load_base(&head_dir, args.base.as_deref(), args.base_ref.as_deref()) else {
        return ExitCode::from(1);
    };
    let diff = match plan_inputs(&args, &settings).await {
        Ok(PlanPlaces::Sim(inputs)) => diff_places(inputs, &base, &settings).await,
        Ok(PlanPlaces::Aws(inputs)) => diff_places(inputs, &base, &settings).await,
        Err(code) => return code,
    };
    let written = output::write_stdout(&match args.output {
        OutputFormat::Table => diff::markdown(&diff),
        OutputFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&diff).expect("a diff serialises")
        ),
    });
    for (cluster, e) in &diff.errors {
        eprintln!("error: cluster {cluster}: {e}");
    }
    report_skipped(&diff.skipped);
    let code = if !diff.errors.is_empty() || !diff.skipped.is_empty() {
        ExitCode::from(1)
    } else if !diff.changes.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    };
    output::exit_code(written, code)
}

/// Every place's passes under `inputs.policies` (head) and `base`, compared place by place.
async fn diff_places<C: Cloud>(
    inputs: PlanInputs<C>,
    base: &PolicySet,
    config: &Settings,
) -> diff::PlanDiff {
    let settings = read_only_settings(config);
    let mut passes = tokio::task::JoinSet::new();
    for (i, member) in inputs.members.into_iter().enumerate() {
        // One observation at a time, answered to both controllers; the memo makes no write.
        let member = member.map(|c| Arc::new(Memo::new(c)));
        let controller = |set: &PolicySet| {
            Arc::new(fleet::read_only_controller(
                &member,
                Arc::clone(&member.cloud),
                set,
                &settings,
            ))
        };
        let (head, base) = (controller(&inputs.policies), controller(base));
        let (memo, place, after) = (
            Arc::clone(&member.cloud),
            member.place.clone(),
            inputs.after,
        );
        let resync = settings.resync;
        passes.spawn(async move {
            let (head, base) = diff_passes(&memo, &head, &base, after, resync).await;
            (i, diff::PlacePasses { place, base, head })
        });
    }
    let places = in_order(passes).await;
    diff::diff(
        &places,
        base,
        &inputs.policies,
        inputs.skipped,
        inputs.name_places,
    )
}

/// The passes of a plan diff under `head` and `base` (their controllers, over `memo`) over
/// one observation at a time: each read is made once and answered to both controllers. With
/// the simulator, `after` of virtual time passes first, both controllers watching the account
/// every resync.
async fn diff_passes<C: Cloud>(
    memo: &Memo<C>,
    head: &Arc<Controller<Arc<Memo<C>>>>,
    base: &Arc<Controller<Arc<Memo<C>>>>,
    after: Duration,
    resync: Duration,
) -> (crate::controller::PassReport, crate::controller::PassReport) {
    let shutdown = CancellationToken::new();
    let deadline = tokio::time::Instant::now() + after;
    loop {
        memo.forget();
        let reports = (head.pass(&shutdown).await, base.pass(&shutdown).await);
        if tokio::time::Instant::now() >= deadline {
            return reports;
        }
        tokio::time::sleep(resync).await;
    }
}

/// The results of `tasks`, each tagged with its place's index, in that order; a task that
/// panicked panics here.
async fn in_order<T: 'static>(mut tasks: tokio::task::JoinSet<(usize, T)>) -> Vec<T> {
    let mut done = Vec::new();
    while let Some(ended) = tasks.join_next().await {
        match ended {
            Ok(result) => done.push(result),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("a plan task was cancelled: {e}"),
        }
    }
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, t)| t).collect()
}

/// What an `explain` runs against.
enum ReadOnlyInputs {
    /// The scenario's account, the policies, and the virtual time to let pass first.
    Sim(Arc<SimAccount>, PolicySet, Duration),
    Aws(AwsCloud, PolicySet),
}

/// The account and policies of `explain`: the scenario's (see [`sim_inputs`]), or the
/// ambient AWS account's with the configured policy directory. Errors are printed; the exit
/// code is returned.
async fn read_only_inputs(
    sim: &Option<String>,
    policy: &PolicyArgs,
    sim_after: &Option<String>,
    settings: &Settings,
) -> Result<ReadOnlyInputs, ExitCode> {
    if let Some(name) = sim {
        let (account, policies, after) = sim_inputs(name, policy, sim_after)?;
        return Ok(ReadOnlyInputs::Sim(account, policies, after));
    }
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    };
    let policies = load_policies(&settings.policies).ok_or(ExitCode::from(1))?;
    let budget = api_budget(settings).map_err(|e| fail(&e))?;
    let aws = aws_cloud(settings, budget).await.map_err(|e| fail(&e))?;
    Ok(ReadOnlyInputs::Aws(aws, policies))
}

/// The scenario's account of a read-only command, its policies (the built-in one unless
/// `--policies` is given) and the virtual time of `--sim-after`. Errors are printed; the exit
/// code is returned.
fn sim_inputs(
    name: &str,
    policy: &PolicyArgs,
    sim_after: &Option<String>,
) -> Result<(Arc<SimAccount>, PolicySet, Duration), ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    };
    let sim = sim_account(name).map_err(|e| fail(&e))?;
    let (account, policies) = sim.policies(name, policy.policies.as_deref())?;
    let after = match sim_after.as_deref().map(humantime::parse_duration) {
        Some(Ok(d)) => d,
        Some(Err(e)) => return Err(fail(&format!("--sim-after: {e}"))),
        None => Duration::ZERO,
    };
    Ok((account, policies, after))
}

/// What `plan` runs against: its places, the policies, the virtual time to let pass first
/// (`--sim-after`), and the targets that could not be reached.
struct PlanInputs<C> {
    members: Vec<Member<C>>,
    policies: PolicySet,
    after: Duration,
    /// One line per place of `[[targets]]` that could not be connected.
    skipped: Vec<String>,
    /// Under `[[targets]]`, the tables name each cluster's place.
    name_places: bool,
}

/// `plan`'s places: the scenario's one unnamed place, or AWS's.
enum PlanPlaces {
    Sim(PlanInputs<Arc<SimAccount>>),
    Aws(PlanInputs<AwsCloud>),
}

/// The places and policies of `plan`: with `--sim` the scenario's account, one place with no
/// account or Region; else every place of `[[targets]]` (or the ambient account and Region),
/// connected with [`fleet::connect_each`]. A target that cannot be reached is kept as a
/// skipped line; none reached, or an ambient account that cannot be, is an error. Errors are
/// printed; the exit code is returned.
async fn plan_inputs(args: &PlanArgs, settings: &Settings) -> Result<PlanPlaces, ExitCode> {
    let budget = api_budget(settings).map_err(|e| startup_error(&e))?;
    if let Some(name) = &args.sim {
        let (account, policies, after) = sim_inputs(name, &args.policy, &args.sim_after)?;
        return Ok(PlanPlaces::Sim(PlanInputs {
            members: vec![Member {
                place: None,
                cloud: account,
                budget,
                scope: None,
            }],
            policies,
            after,
            skipped: Vec::new(),
            name_places: false,
        }));
    }
    let policies = load_policies(&settings.policies).ok_or(ExitCode::from(1))?;
    let fleet = match fleet::connect_each(settings, &aws_settings(settings)).await {
        Ok(f) => f,
        Err(e) if settings.targets.is_empty() => return Err(startup_error(&with_sim_hint(&e))),
        Err(e) => return Err(startup_error(&e)),
    };
    if fleet.members.is_empty() {
        report_skipped(&fleet.skipped);
        return Err(startup_error(&format!(
            "none of the {} target places could be reached",
            fleet.skipped.len()
        )));
    }
    Ok(PlanPlaces::Aws(PlanInputs {
        members: fleet.members,
        policies,
        after: Duration::ZERO,
        skipped: fleet.skipped,
        name_places: !settings.targets.is_empty(),
    }))
}

/// The controller settings of a read-only command: a dry run, making the root-cause reads
/// (they are reads) unless the configuration switches them off.
fn read_only_settings(settings: &Settings) -> ControllerSettings {
    ControllerSettings {
        dry_run: true,
        root_cause_reads: settings.root_cause_reads,
        managed_tag: settings.managed_tag.clone(),
        ..ControllerSettings::default()
    }
}

/// One read-only pass of every place, each under its own policies and cluster scope, at once
/// (each place has its own API budget).
async fn plan_places<C: Cloud>(inputs: PlanInputs<C>, config: &Settings) -> output::PlanReport {
    let settings = read_only_settings(config);
    let mut passes = tokio::task::JoinSet::new();
    for (i, member) in inputs.members.into_iter().enumerate() {
        let member = member.map(|c| Arc::new(ReadOnly::new(c)));
        let controller = Arc::new(fleet::read_only_controller(
            &member,
            Arc::clone(&member.cloud),
            &inputs.policies,
            &settings,
        ));
        let (place, after, resync) = (member.place, inputs.after, settings.resync);
        passes.spawn(async move {
            let report = plan_once(&controller, after, resync).await;
            (i, output::PlacePass { place, report })
        });
    }
    output::PlanReport {
        passes: in_order(passes).await,
        skipped: inputs.skipped,
        name_places: inputs.name_places,
    }
}

/// One read-only pass; with the simulator, first let `after` of virtual time pass, watching
/// the account every resync so tasks are seen in their states as the controller would.
async fn plan_once<C: Cloud>(
    controller: &Arc<Controller<C>>,
    after: Duration,
    resync: Duration,
) -> crate::controller::PassReport {
    let shutdown = CancellationToken::new();
    if after.is_zero() {
        return controller.pass(&shutdown).await;
    }
    let deadline = tokio::time::Instant::now() + after;
    loop {
        let report = controller.pass(&shutdown).await;
        if tokio::time::Instant::now() >= deadline {
            return report;
        }
        tokio::time::sleep(resync).await;
    }
}

async fn explain_command(args: ExplainArgs, settings: Settings) -> ExitCode {
    let name = match explain::parse_task_name(&args.task) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let controller_settings = read_only_settings(&settings);
    let inputs = read_only_inputs(&args.sim, &args.policy, &args.sim_after, &settings).await;
    let report = match inputs {
        Ok(ReadOnlyInputs::Sim(account, policies, after)) => {
            let cloud = ReadOnly::new(account);
            explain_once(cloud, policies, &name, after, controller_settings).await
        }
        Ok(ReadOnlyInputs::Aws(aws, policies)) => {
            let cloud = ReadOnly::new(aws);
            explain_once(cloud, policies, &name, Duration::ZERO, controller_settings).await
        }
        Err(code) => return code,
    };
    match report {
        Ok(report) => output::emit(&explain::explain(name.id(), &report), ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// A read-only reconcile of the task's cluster (or, for a bare task id, of every cluster in
/// scope, then the one holding it), after `after` of (virtual) time watched at resync. The
/// error is one line.
async fn explain_once<C: Cloud>(
    cloud: C,
    policies: PolicySet,
    name: &explain::TaskName,
    after: Duration,
    settings: ControllerSettings,
) -> Result<crate::controller::ClusterReport, String> {
    let controller = Arc::new(Controller::new(
        cloud,
        policies,
        settings.clone(),
        AuditSink::memory(),
    ));
    let shutdown = CancellationToken::new();
    let deadline = tokio::time::Instant::now() + after;
    loop {
        let done = tokio::time::Instant::now() >= deadline;
        match name {
            explain::TaskName::InCluster { cluster, id } => {
                let report = controller.reconcile_cluster(cluster, &shutdown).await;
                if done || report.is_err() {
                    let report = report.map_err(|e| format!("cluster {cluster}: {e}"))?;
                    return explain::holding_task(report, id);
                }
            }
            explain::TaskName::Bare { id } => {
                let pass = controller.pass(&shutdown).await;
                if done {
                    // A cluster that could not be observed matters only if the task is not in
                    // one that was.
                    return explain::cluster_holding(&pass.clusters, id)
                        .cloned()
                        .map_err(|e| match pass.errors.first() {
                            Some((cluster, err)) => {
                                format!("{e}; cluster {cluster} could not be observed: {err}")
                            }
                            None => e,
                        });
                }
            }
        }
        tokio::time::sleep(settings.resync).await;
    }
}
