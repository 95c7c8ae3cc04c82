//! Configuration: built-in defaults, then a TOML file, then `ECS_RECONCILER_*` environment
//! variables, then command-line flags (figment). AWS region, credentials and endpoint are not
//! here: they come from the standard AWS chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, ...).

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::cloud::budget::PacingSettings;

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
    /// A tracing filter, e.g. `info` or `ecs_reconciler=debug`. RUST_LOG wins when set.
    pub log_level: String,
    /// How long a shutdown may take before the process exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub aws: AwsClientSettings,
    /// Client-side API pacing per throttle category (`[pacing]`).
    pub pacing: PacingSettings,
}

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
        }
    }
}

/// Values given on the command line; `None` leaves the setting to the other sources.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resync: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// The configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
    #[error("invalid configuration in {}: {message}", file.display())]
    InFile { file: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Pacing(#[from] crate::cloud::budget::BudgetError),
}

/// A parse error of the file does not name it: say which file, so the message is enough to
/// find it.
fn name_the_file(e: figment::Error, config_file: Option<&Path>) -> ConfigError {
    let file = config_file.or_else(|| {
        Path::new(DEFAULT_CONFIG_FILE)
            .exists()
            .then_some(Path::new(DEFAULT_CONFIG_FILE))
    });
    let message = e.to_string();
    match file {
        Some(file) if !message.contains(&file.display().to_string()) => ConfigError::InFile {
            file: file.to_path_buf(),
            message,
        },
        _ => ConfigError::Invalid(Box::new(e)),
    }
}

/// Merges defaults, the config file, the environment (`ECS_RECONCILER_*`, `__` for nesting,
/// e.g. `ECS_RECONCILER_AWS__MAX_ATTEMPTS=5`) and the flags, in that order.
pub fn load(config_file: Option<&Path>, flags: &FlagOverrides) -> Result<Settings, ConfigError> {
    load_with_env_prefix(config_file, flags, "ECS_RECONCILER_")
}

/// [`load`] with another environment prefix (tests use a unique one per case).
pub fn load_with_env_prefix(
    config_file: Option<&Path>,
    flags: &FlagOverrides,
    env_prefix: &str,
) -> Result<Settings, ConfigError> {
    let env = Env::prefixed(env_prefix).split("__");
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    match config_file {
        Some(path) if !path.exists() => return Err(ConfigError::Missing(path.to_path_buf())),
        Some(path) => figment = figment.merge(Toml::file_exact(path)),
        None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
            figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
        }
        None => {}
    }
    let settings: Settings = figment
        .merge(env)
        .merge(Serialized::defaults(flags))
        .extract()
        .map_err(|e| name_the_file(e, config_file))?;
    settings.pacing.validate()?;
    Ok(settings)
}
