//! Configuration: built-in defaults, then a TOML file, then `ECS_RECONCILER_*` environment
//! variables, then command-line flags (figment). AWS region, credentials and endpoint are not
//! here: they come from the standard AWS chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...).
//!
//! A setting that cannot work is refused with its key and where the value came from. Ranges:
//!
//! | key                               | valid                                          |
//! |-----------------------------------|------------------------------------------------|
//! | `policies`                        | a non-empty path                               |
//! | `resync`                          | 1s ..= 24h                                     |
//! | `concurrency`                     | 1 ..= 256                                      |
//! | `audit_log`                       | absent, or a non-empty path                    |
//! | `log_level`                       | directives `LEVEL` or `TARGET=LEVEL`, comma-separated; LEVEL one of trace, debug, info, warn, error, off |
//! | `shutdown_timeout`                | 1s ..= 10m                                     |
//! | `root_cause_reads`                | `true` (default) or `false`                    |
//! | `managed_tag.key`                 | 1 to 128 characters, not starting with `aws:`  |
//! | `managed_tag.value`               | at most 256 characters                         |
//! | `aws.operation_timeout`           | 1s ..= 10m                                     |
//! | `aws.attempt_timeout`             | 1s ..= `aws.operation_timeout`                 |
//! | `aws.connect_timeout`             | 100ms ..= `aws.attempt_timeout`                |
//! | `aws.max_attempts`                | 1 ..= 10                                       |
//! | `pacing.scale`                    | above 0, at most 1                             |
//! | `pacing.throttle_hold`            | 1s ..= 1h                                      |
//! | `pacing.window`                   | 1s ..= 1h                                      |
//! | `pacing.overrides.*.per_second`   | above 0, at most 1000                          |
//! | `pacing.overrides.*.burst`        | 1 ..= 1000                                     |
//! | `events.queue_url`                | absent, or an SQS queue URL `https://HOST/ACCOUNT/NAME` (12-digit account) |
//! | `events.resync`                   | 1m ..= 24h (the resync cadence while events arrive) |
//! | `events.health_interval`          | 10s ..= 1h (health reads, and re-reads of tasks past their limit, while events arrive) |
//! | `events.resync_budget`            | above 0, at most 1 (share of the cluster-resource-read budget the resyncs may use while events arrive) |
//! | `record.dir`                      | absent (no recording), or a non-empty path (`run --record DIR`) |
//! | `record.max_bytes`                | 1 MiB ..= 1 TiB (the recording's segments together)   |
//! | `record.max_age`                  | 1h ..= 366d (segments older than this are deleted)    |
//! | `lease.table`                     | absent (one replica, no leases), or a DynamoDB table name: 3 to 255 of `A-Z a-z 0-9 _ . -` |
//! | `lease.shards`                    | 1 ..= 1024                                     |
//! | `lease.duration`                  | 1s ..= 10m, longer than `lease.renew_every` + `lease.action_timeout` |
//! | `lease.renew_every`               | 100ms ..= 1m                                   |
//! | `lease.action_timeout`            | 100ms ..= 1m (the longest a mutating call may take while leases are used) |
//! | `targets[i].role_arn`             | absent (the ambient credentials), or an IAM role ARN `arn:aws:iam::ACCOUNT:role/NAME` |
//! | `targets[i].external_id`          | absent, or 2 to 1224 of letters, digits and `+=,.@:/-` (needs `role_arn`) |
//! | `targets[i].session_name`         | absent (`ecs-reconciler`), or 2 to 64 of letters, digits and `+=,.@-` (needs `role_arn`) |
//! | `targets[i].name`                 | absent, or 1 to 64 of letters, digits and `_.-` |
//! | `targets[i].regions`              | Region names, each once; empty: the ambient Region |
//! | `targets[i].clusters`             | absent, or a non-empty list of cluster name globs |
//! | `targets`                         | no account-Region named twice                  |
//! | `listen`                          | IP:PORT of `/metrics`, `/livez`, `/readyz` (port 0: any free one) |

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::{Deserialize, Serialize};

use crate::capacity::tags::{MAX_TAG_KEY, MAX_TAG_VALUE, ManagedTag};
use crate::cloud::budget::PacingSettings;
use crate::targets::TargetSettings;

/// A text setting that also takes what an environment variable's value reads as when it looks
/// like a boolean or a number (`ECS_RECONCILER_MANAGED_TAG__VALUE=true` is the text `true`).
pub fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Bool(bool),
        Int(i64),
        Float(f64),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::Text(t) => t,
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Float(f) => f.to_string(),
    })
}

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "ecs-reconciler.toml";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Timeouts and attempts for the AWS SDK clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsClientSettings {
    /// Whole operation, retries included.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// One attempt.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Attempts per call, the first included (the SDK's standard retry mode).
    pub max_attempts: u32,
}

impl Default for AwsClientSettings {
    fn default() -> Self {
        AwsClientSettings {
            operation_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_attempts: 3,
        }
    }
}

/// The EventBridge events read through SQS (`[events]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSettings {
    /// The queue EventBridge's rules fill (`deploy/events/`); absent: no events, every
    /// cluster is listed and described every `resync`.
    pub queue_url: Option<String>,
    /// How often, at least, every cluster is still listed while events arrive (and what the
    /// picture does not know described): the safety net that repairs a lost event.
    #[serde(with = "humantime_serde")]
    pub resync: Duration,
    /// The share of the cluster-resource-read budget those resyncs may use on average: a fleet
    /// whose resyncs would cost more every `resync` is resynced less often (`src/resync.rs`).
    pub resync_budget: f64,
    /// How often, while events arrive, the healthy RUNNING tasks under an `unhealthy` limit
    /// are described again (task health is not in the events), and the tasks already past
    /// their limit (acted on or held) too.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
}

impl Default for EventsSettings {
    fn default() -> Self {
        EventsSettings {
            queue_url: None,
            resync: Duration::from_secs(600),
            resync_budget: crate::resync::DEFAULT_RESYNC_BUDGET,
            health_interval: Duration::from_secs(300),
        }
    }
}

/// The recording of `run --record DIR` (`[record]`, `src/record/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSettings {
    /// Where the segments go; absent: nothing is recorded.
    pub dir: Option<PathBuf>,
    /// The most the segments may take together; the oldest are deleted first.
    pub max_bytes: u64,
    /// Segments older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for RecordSettings {
    fn default() -> Self {
        RecordSettings {
            dir: None,
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// How replicas share the work through DynamoDB leases (`[lease]`, `src/lease/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseSettings {
    /// The lease table; absent: this replica works alone and holds no lease.
    pub table: Option<String>,
    /// Shards the clusters are split into (1: plain leader election).
    pub shards: u32,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    #[serde(with = "humantime_serde")]
    pub renew_every: Duration,
    /// The longest one mutating call may take while leases are used: no call starts with
    /// less than this left on its lease, and a call still running then is abandoned.
    #[serde(with = "humantime_serde")]
    pub action_timeout: Duration,
    /// Create the table (on-demand capacity) when it does not exist.
    pub create_table: bool,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            table: None,
            shards: 1,
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            action_timeout: Duration::from_secs(5),
            create_table: false,
        }
    }
}

/// `lease.shards`: more shards than a table scan returns in one page is not a fleet anyone runs.
pub const LEASE_SHARDS: (u32, u32) = (1, 1024);
/// `lease.duration`.
pub const LEASE_DURATION: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(600));
/// `lease.renew_every` and `lease.action_timeout`.
pub const LEASE_STEP: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(60));

/// `record.max_bytes`: below a megabyte a segment holds no full snapshot of a large cluster.
pub const RECORD_MAX_BYTES: (u64, u64) = (1 << 20, 1 << 40);
/// `record.max_age`: below an hour a segment's full snapshot is deleted too soon.
pub const RECORD_MAX_AGE: (Duration, Duration) = (
    Duration::from_secs(3600),
    Duration::from_secs(366 * 24 * 3600),
);

/// Every setting, after all sources are merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The policy directory.
    pub policies: PathBuf,
    /// How often every cluster is reconciled.
    #[serde(with = "humantime_serde")]
    pub resync: Duration,
    /// Clusters reconciled at once.
    pub concurrency: usize,
    /// Plan and record only, never mutate.
    pub dry_run: bool,
    /// Where the audit trail goes; standard output when absent.
    pub audit_log: Option<PathBuf>,
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `ecs_reconciler=debug`. RUST_LOG wins when set. The
    /// AWS SDK's own targets log errors only unless this names them (`aws_config=debug`):
    /// [`crate::logging::filter_directives`].
    pub log_level: String,
    /// How long a shutdown may take before the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub aws: AwsClientSettings,
    /// Client-side API pacing per throttle category (`[pacing]`).
    pub pacing: PacingSettings,
    /// Whether diagnosis reads boot output, launch template versions, scaling activities and
    /// instance types to find root causes (`docs/causes.md`); `false` makes none of those calls.
    pub root_cause_reads: bool,
    /// EventBridge events through SQS (`[events]`).
    pub events: EventsSettings,
    /// The tag an Auto Scaling group must carry for the controller to write to it
    /// (`[managed_tag]`, default `ecs-reconciler:managed` = `true`).
    pub managed_tag: ManagedTag,
    /// Where `run` serves `/metrics`, `/livez` and `/readyz` (`src/http.rs`).
    pub listen: String,
    /// What `run --record` keeps (`[record]`).
    pub record: RecordSettings,
    /// Leases shared with other replicas (`[lease]`).
    pub lease: LeaseSettings,
    /// The accounts and Regions reconciled (`[[targets]]`, `src/targets.rs`); empty: the
    /// ambient account and Region.
    #[serde(default)]
    pub targets: Vec<TargetSettings>,
}

/// The default of `listen`: loopback only (the image listens on 0.0.0.0:9090).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            policies: PathBuf::from("policies"),
            resync: Duration::from_secs(30),
            concurrency: 4,
            dry_run: false,
            audit_log: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            shutdown_timeout: Duration::from_secs(20),
            aws: AwsClientSettings::default(),
            pacing: PacingSettings::default(),
            root_cause_reads: true,
            events: EventsSettings::default(),
            managed_tag: ManagedTag::default(),
            listen: DEFAULT_LISTEN.into(),
            record: RecordSettings::default(),
            lease: LeaseSettings::default(),
            targets: Vec::new(),
        }
    }
}

/// `resync`: below a second the loop spins at the full API budget; beyond a day nothing is
/// being watched.
pub const RESYNC: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(24 * 3600));
/// `concurrency`: zero reconciles nothing; beyond 256 clusters at once the API budget, not the
/// concurrency, is the limit (and tokio's semaphore refuses absurd counts).
pub const CONCURRENCY: (usize, usize) = (1, 256);
/// `shutdown_timeout`: the call in flight and the audit flush need a moment; ten minutes is
/// past any orchestrator's grace period.
pub const SHUTDOWN_TIMEOUT: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(600));
/// `aws.operation_timeout`: below a second every call times out; beyond ten minutes a hung
/// call holds its cluster's reconcile that long.
pub const OPERATION_TIMEOUT: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(600));
/// `aws.attempt_timeout`, at most `aws.operation_timeout` (a longer attempt never ends by its
/// own timeout).
pub const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// `aws.connect_timeout`, at most `aws.attempt_timeout` (a connection is part of an attempt).
pub const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
/// `aws.max_attempts`: zero makes no call; past ten, retries only pile onto a throttled
/// account.
pub const MAX_ATTEMPTS: (u32, u32) = (1, 10);
/// `pacing.throttle_hold` and `pacing.window`.
pub const PACING_DURATION: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));
/// `pacing.overrides.*.per_second` upper bound (the largest account bucket refills at 40/s).
pub const MAX_OVERRIDE_PER_SECOND: f64 = 1000.0;
/// `pacing.overrides.*.burst`.
pub const OVERRIDE_BURST: (u32, u32) = (1, 1000);

/// `events.resync`: below a minute the safety net costs as much as resync without events;
/// beyond a day a lost event is never repaired in practice.
pub const EVENTS_RESYNC: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(24 * 3600));

/// `events.health_interval`: below 10 s the health reads cost more than the resync they stand
/// in for; beyond an hour an UNHEALTHY task waits too long.
pub const HEALTH_INTERVAL: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(3600));

/// The levels a `log_level` directive may name.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Values given on the command line; `None` leaves the setting to the other sources.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<PathBuf>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "humantime_serde::option"
    )]
    pub resync: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// `--events-queue URL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsFlags>,
    /// `--record DIR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordFlags>,
}

/// The flags of `[record]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecordFlags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

/// The flags of `[events]`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EventsFlags {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
}

/// The flag that sets a key, when its name is not the key's (`--events-queue`).
fn flag_of(key: &str) -> String {
    match key {
        "events.queue_url" => "--events-queue".to_string(),
        "record.dir" => "--record".to_string(),
        _ => format!("--{}", key.replace('_', "-")),
    }
}

/// Where a configured value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    EnvVar(String),
    /// The flag, e.g. `--resync`.
    Flag(String),
    BuiltInDefault,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "from {}", path.display()),
            Origin::EnvVar(name) => write!(f, "from environment variable {name}"),
            Origin::Flag(flag) => write!(f, "from flag {flag}"),
            Origin::BuiltInDefault => f.write_str("the built-in default"),
        }
    }
}

/// Why a configured value was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    TooSmall {
        min: String,
        got: String,
    },
    TooLarge {
        max: String,
        got: String,
    },
    /// Outside a range whose ends are not both inclusive.
    OutOfRange {
        valid: &'static str,
        got: String,
    },
    Empty,
    /// A `log_level` directive whose level is not one of [`LOG_LEVELS`].
    NotALevel {
        directive: String,
    },
    /// A `log_level` that tracing cannot parse.
    BadLogFilter {
        reason: String,
    },
    UnknownKey {
        expected: Vec<String>,
    },
    /// The value does not deserialize (wrong type, bad duration, unknown variant...).
    Rejected(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::TooSmall { min, got } => write!(f, "must be at least {min}, got {got}"),
            Problem::TooLarge { max, got } => write!(f, "must be at most {max}, got {got}"),
            Problem::OutOfRange { valid, got } => write!(f, "must be {valid}, got {got}"),
            Problem::Empty => f.write_str("must not be empty"),
            Problem::NotALevel { directive } => write!(
                f,
                "`{directive}` names no level; valid: LEVEL or TARGET=LEVEL, comma-separated, \
                 LEVEL one of {}",
                LOG_LEVELS.join(", ")
            ),
            Problem::BadLogFilter { reason } => write!(f, "not a tracing filter: {reason}"),
            Problem::UnknownKey { expected } if expected.is_empty() => f.write_str("unknown key"),
            Problem::UnknownKey { expected } => {
                write!(f, "unknown key; valid here: {}", expected.join(", "))
            }
            Problem::Rejected(message) => f.write_str(message),
        }
    }
}

/// The configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist", .0.display())]
    Missing(PathBuf),
    /// The file is not TOML (or cannot be read).
    #[error("invalid configuration: {}: {message}", file.display())]
    Syntax { file: PathBuf, message: String },
    /// One key's value cannot work. `key` is the dotted path, e.g. `aws.max_attempts`.
    #[error("invalid configuration: {key}: {problem}{}", suffix(origin.as_ref()))]
    Key {
        key: String,
        problem: Problem,
        origin: Option<Origin>,
    },
    #[error("invalid configuration: {0}")]
    Pacing(#[from] crate::cloud::budget::BudgetError),
}

fn suffix(origin: Option<&Origin>) -> String {
    origin.map(|o| format!(" ({o})")).unwrap_or_default()
}

/// A value that breaks its key's range, before we know where it came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    Key {
        key: String,
        problem: Problem,
    },
    /// `lower` must not exceed `upper` (timeouts nested in each other).
    Order {
        lower: &'static str,
        lower_value: Duration,
        upper: &'static str,
        upper_value: Duration,
    },
}

const DEFAULTS_NAME: &str = "built-in defaults";
const FLAGS_NAME: &str = "command-line flags";

/// Serialized values under a name of ours: figment's own provider is named by the Rust type
/// and the source line that added it, which is no help to whoever reads the error.
struct Named<T> {
    name: &'static str,
    value: T,
}

impl<T: Serialize> Provider for Named<T> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(&self.value).data()
    }
}

/// Merges defaults, the config file, the environment (`ECS_RECONCILER_*`, `__` for nesting,
/// e.g. `ECS_RECONCILER_AWS__MAX_ATTEMPTS=5`) and the flags, in that order, and checks every
/// value against its range.
pub fn load(config_file: Option<&Path>, flags: &FlagOverrides) -> Result<Settings, ConfigError> {
    load_with_env_prefix(config_file, flags, "ECS_RECONCILER_")
}

/// [`load`] with another environment prefix (tests use a unique one per case).
pub fn load_with_env_prefix(
    config_file: Option<&Path>,
    flags: &FlagOverrides,
    env_prefix: &str,
) -> Result<Settings, ConfigError> {
    let file = match config_file {
        Some(path) if !path.exists() => return Err(ConfigError::Missing(path.to_path_buf())),
        Some(path) => Some(path),
        None => Some(Path::new(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
    };
    let mut figment = Figment::from(Named {
        name: DEFAULTS_NAME,
        value: Settings::default(),
    });
    if let Some(path) = file {
        figment = figment.merge(Toml::file_exact(path));
    }
    let figment = figment
        .merge(Env::prefixed(env_prefix).split("__"))
        .merge(Named {
            name: FLAGS_NAME,
            value: flags,
        });
    let locate = Locator {
        figment: &figment,
        env_prefix,
        file,
    };
    let settings: Settings = figment.extract().map_err(|e| locate.figment_error(e))?;
    if let Some(v) = violations(&settings).into_iter().next() {
        return Err(locate.violation(v));
    }
    settings.pacing.validate()?;
    Ok(settings)
}

/// Every value of `settings` outside its range, in key order. Pure: where each value came
/// from is found afterwards.
pub fn violations(s: &Settings) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut key = |key: &str, problem: Option<Problem>| {
        if let Some(problem) = problem {
            out.push(Violation::Key {
                key: key.to_string(),
                problem,
            });
        }
    };
    key("policies", non_empty(&s.policies));
    key("resync", duration_in(s.resync, RESYNC));
    key("concurrency", count_in(s.concurrency, CONCURRENCY));
    key("audit_log", s.audit_log.as_deref().and_then(non_empty));
    key("record.dir", s.record.dir.as_deref().and_then(non_empty));
    key("log_level", log_level_problem(&s.log_level));
    key(
        "shutdown_timeout",
        duration_in(s.shutdown_timeout, SHUTDOWN_TIMEOUT),
    );
    let aws = &s.aws;
    key(
        "aws.operation_timeout",
        duration_in(aws.operation_timeout, OPERATION_TIMEOUT),
    );
    key(
        "aws.attempt_timeout",
        at_least(aws.attempt_timeout, MIN_ATTEMPT_TIMEOUT),
    );
    key(
        "aws.connect_timeout",
        at_least(aws.connect_timeout, MIN_CONNECT_TIMEOUT),
    );
    key("aws.max_attempts", count_in(aws.max_attempts, MAX_ATTEMPTS));
    pacing_violations(&s.pacing, &mut key);
    key(
        "listen",
        s.listen
            .parse::<std::net::SocketAddr>()
            .is_err()
            .then(|| Problem::OutOfRange {
                valid: "IP:PORT, e.g. 127.0.0.1:9090 or 0.0.0.0:9090",
                got: format!("{:?}", s.listen),
            }),
    );
    key(
        "events.queue_url",
        s.events.queue_url.as_deref().and_then(queue_url_problem),
    );
    key("events.resync", duration_in(s.events.resync, EVENTS_RESYNC));
    let share_ok = s.events.resync_budget > 0.0 && s.events.resync_budget <= 1.0;
    key(
        "events.resync_budget",
        (!share_ok).then(|| Problem::OutOfRange {
            valid: "above 0 and at most 1",
            got: s.events.resync_budget.to_string(),
        }),
    );
    key(
        "events.health_interval",
        duration_in(s.events.health_interval, HEALTH_INTERVAL),
    );
    key(
        "record.max_bytes",
        count_in(s.record.max_bytes, RECORD_MAX_BYTES),
    );
    key(
        "record.max_age",
        duration_in(s.record.max_age, RECORD_MAX_AGE),
    );
    lease_violations(&s.lease, &mut key);
    for (target_key, why) in crate::targets::violations(&s.targets) {
        key(&target_key, Some(Problem::Rejected(why)));
    }
    key("managed_tag.key", tag_key_problem(&s.managed_tag.key));
    key(
        "managed_tag.value",
        longer_than(&s.managed_tag.value, MAX_TAG_VALUE),
    );
    let order = [
        (
            "aws.attempt_timeout",
            aws.attempt_timeout,
            "aws.operation_timeout",
            aws.operation_timeout,
        ),
        (
            "aws.connect_timeout",
            aws.connect_timeout,
            "aws.attempt_timeout",
            aws.attempt_timeout,
        ),
    ];
    for (lower, lower_value, upper, upper_value) in order {
        if lower_value > upper_value {
            out.push(Violation::Order {
                lower,
                lower_value,
                upper,
                upper_value,
            });
        }
    }
    out
}

fn lease_violations(l: &LeaseSettings, key: &mut impl FnMut(&str, Option<Problem>)) {
    key(
        "lease.table",
        l.table.as_deref().and_then(table_name_problem),
    );
    key("lease.shards", count_in(l.shards, LEASE_SHARDS));
    key("lease.duration", duration_in(l.duration, LEASE_DURATION));
    key("lease.renew_every", duration_in(l.renew_every, LEASE_STEP));
    key(
        "lease.action_timeout",
        duration_in(l.action_timeout, LEASE_STEP),
    );
    let short = l.duration <= l.renew_every + l.action_timeout;
    key(
        "lease.duration",
        short.then(|| {
            Problem::Rejected(format!(
                "must be longer than lease.renew_every ({}) plus lease.action_timeout ({}), \
                 so that a lease is renewed before its last action must start; got {}",
                show(l.renew_every),
                show(l.action_timeout),
                show(l.duration)
            ))
        }),
    );
}

/// A DynamoDB table name: 3 to 255 characters of `A-Z a-z 0-9 _ . -`.
fn table_name_problem(name: &str) -> Option<Problem> {
    let ok = (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    (!ok).then(|| {
        Problem::Rejected(format!(
            "a DynamoDB table name is 3 to 255 of A-Z a-z 0-9 _ . -, got {name:?}"
        ))
    })
}

/// An Auto Scaling tag key: 1 to 128 characters, and `aws:` is reserved.
fn tag_key_problem(key: &str) -> Option<Problem> {
    if key.is_empty() {
        return Some(Problem::Empty);
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Some(Problem::Rejected(format!(
            "must not start with aws: (reserved by AWS), got {key:?}"
        )));
    }
    longer_than(key, MAX_TAG_KEY)
}

fn longer_than(text: &str, max: usize) -> Option<Problem> {
    let chars = text.chars().count();
    (chars > max).then(|| Problem::TooLarge {
        max: format!("{max} characters"),
        got: format!("{chars}"),
    })
}

fn pacing_violations(p: &PacingSettings, key: &mut impl FnMut(&str, Option<Problem>)) {
    let scale_ok = p.scale > 0.0 && p.scale <= 1.0;
    key(
        "pacing.scale",
        (!scale_ok).then(|| Problem::OutOfRange {
            valid: "above 0 and at most 1",
            got: p.scale.to_string(),
        }),
    );
    key(
        "pacing.throttle_hold",
        duration_in(p.throttle_hold, PACING_DURATION),
    );
    key("pacing.window", duration_in(p.window, PACING_DURATION));
    for (category, rate) in &p.overrides {
        let per_second = rate.per_second;
        let rate_ok = per_second > 0.0 && per_second <= MAX_OVERRIDE_PER_SECOND;
        key(
            &format!("pacing.overrides.{category}.per_second"),
            (!rate_ok).then(|| Problem::OutOfRange {
                valid: "above 0 and at most 1000",
                got: per_second.to_string(),
            }),
        );
        key(
            &format!("pacing.overrides.{category}.burst"),
            count_in(rate.burst, OVERRIDE_BURST),
        );
    }
}

/// What an SQS queue URL looks like: `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME` on AWS
/// (any host for an emulator, `http` too), a 12-digit account, a queue name of 1 to 80 letters,
/// digits, `-` and `_` (with `.fifo` after it for a FIFO queue).
pub const QUEUE_URL_FORM: &str =
    "an SQS queue URL like https://sqs.us-east-1.amazonaws.com/123456789012/NAME";

/// Why `url` is not an SQS queue URL, if it is not.
pub fn queue_url_problem(url: &str) -> Option<Problem> {
    let bad = || {
        Some(Problem::OutOfRange {
            valid: QUEUE_URL_FORM,
            got: format!("{url:?}"),
        })
    };
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return bad();
    };
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let [host, account, name] = parts.as_slice() else {
        return bad();
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    let account_ok = account.len() == 12 && account.chars().all(|c| c.is_ascii_digit());
    let base = name.strip_suffix(".fifo").unwrap_or(name);
    let name_ok = (1..=80).contains(&name.len())
        && !base.is_empty()
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if host_ok && account_ok && name_ok {
        None
    } else {
        bad()
    }
}

fn non_empty(path: &Path) -> Option<Problem> {
    path.as_os_str().is_empty().then_some(Problem::Empty)
}

fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn at_least(value: Duration, min: Duration) -> Option<Problem> {
    (value < min).then(|| Problem::TooSmall {
        min: show(min),
        got: show(value),
    })
}

fn duration_in(value: Duration, (min, max): (Duration, Duration)) -> Option<Problem> {
    at_least(value, min).or_else(|| {
        (value > max).then(|| Problem::TooLarge {
            max: show(max),
            got: show(value),
        })
    })
}

fn count_in<T: PartialOrd + fmt::Display>(value: T, (min, max): (T, T)) -> Option<Problem> {
    if value < min {
        Some(Problem::TooSmall {
            min: min.to_string(),
            got: value.to_string(),
        })
    } else if value > max {
        Some(Problem::TooLarge {
            max: max.to_string(),
            got: value.to_string(),
        })
    } else {
        None
    }
}

/// Tracing takes a bare word that is no level for a target name (`verbose` silently means
/// "trace for target verbose", everything else off), so every directive must name its level.
fn log_level_problem(filter: &str) -> Option<Problem> {
    let directives: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Some(Problem::Empty);
    }
    let unnamed = directives.iter().find(|d| {
        let level = d.rsplit_once('=').map_or(**d, |(_, level)| level);
        !LOG_LEVELS
            .iter()
            .any(|l| l.eq_ignore_ascii_case(level.trim()))
    });
    if let Some(directive) = unnamed {
        return Some(Problem::NotALevel {
            directive: directive.to_string(),
        });
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .err()
        .map(|e| Problem::BadLogFilter {
            reason: e.to_string(),
        })
}

/// Finds where a value came from, to name it in the error.
struct Locator<'a> {
    figment: &'a Figment,
    env_prefix: &'a str,
    file: Option<&'a Path>,
}

impl Locator<'_> {
    fn origin(&self, key: &str) -> Option<Origin> {
        // An array element (`targets[1].role_arn`) is found by its array.
        let array = key.split('[').next().unwrap_or(key);
        let metadata = self
            .figment
            .find_metadata(key)
            .or_else(|| self.figment.find_metadata(array))?;
        self.origin_of(metadata, key)
    }

    fn origin_of(&self, metadata: &Metadata, key: &str) -> Option<Origin> {
        match (metadata.name.as_ref(), &metadata.source) {
            (DEFAULTS_NAME, _) => Some(Origin::BuiltInDefault),
            (FLAGS_NAME, _) => Some(Origin::Flag(flag_of(key))),
            (_, Some(Source::File(path))) => Some(Origin::File(absolute(path))),
            (name, _) if name.contains("environment variable") => Some(Origin::EnvVar(format!(
                "{}{}",
                self.env_prefix,
                key.to_ascii_uppercase().replace('.', "__")
            ))),
            _ => None,
        }
    }

    fn violation(&self, v: Violation) -> ConfigError {
        match v {
            Violation::Key { key, problem } => ConfigError::Key {
                origin: self.origin(&key),
                key,
                problem,
            },
            Violation::Order {
                lower,
                lower_value,
                upper,
                upper_value,
            } => {
                // Name the key the user set: a default is not what needs changing.
                let lower_origin = self.origin(lower);
                if lower_origin == Some(Origin::BuiltInDefault) {
                    ConfigError::Key {
                        key: upper.to_string(),
                        problem: Problem::TooSmall {
                            min: format!("{lower} ({})", show(lower_value)),
                            got: show(upper_value),
                        },
                        origin: self.origin(upper),
                    }
                } else {
                    ConfigError::Key {
                        key: lower.to_string(),
                        problem: Problem::TooLarge {
                            max: format!("{upper} ({})", show(upper_value)),
                            got: show(lower_value),
                        },
                        origin: lower_origin,
                    }
                }
            }
        }
    }

    /// The first of figment's errors, with its key (without the profile figment puts in
    /// front) and its origin.
    fn figment_error(&self, e: figment::Error) -> ConfigError {
        let Some(e) = e.into_iter().next() else {
            return ConfigError::Syntax {
                file: self.file.map(absolute).unwrap_or_default(),
                message: "no configuration".into(),
            };
        };
        let problem = match &e.kind {
            figment::error::Kind::UnknownField(_, expected) => Problem::UnknownKey {
                expected: expected.iter().map(|s| s.to_string()).collect(),
            },
            kind => Problem::Rejected(kind.to_string()),
        };
        let key = dotted(&e.path);
        let origin = e.metadata.as_ref().and_then(|m| self.origin_of(m, &key));
        if key.is_empty() {
            return ConfigError::Syntax {
                file: match origin {
                    Some(Origin::File(file)) => file,
                    _ => self.file.map(absolute).unwrap_or_default(),
                },
                message: one_line(&e.kind.to_string()),
            };
        }
        ConfigError::Key {
            key,
            problem,
            origin,
        }
    }
}

/// A key path as written in TOML: `aws.max_attempts`; an array element as `aws[0]`.
fn dotted(path: &[String]) -> String {
    let mut key = String::new();
    for (i, segment) in path.iter().enumerate() {
        match segment.parse::<usize>() {
            Ok(index) if i > 0 => key.push_str(&format!("[{index}]")),
            _ if i > 0 => key.push_str(&format!(".{segment}")),
            _ => key.push_str(segment),
        }
    }
    key
}

/// A TOML parse error is several lines (a snippet with a caret under the position): keep the
/// position and the reason.
fn one_line(message: &str) -> String {
    let is_snippet = |line: &str| {
        line.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ')
            .starts_with('|')
    };
    message
        .lines()
        .filter(|l| !l.trim().is_empty() && !is_snippet(l))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(": ")
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
