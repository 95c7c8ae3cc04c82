//! Configuration: defaults, then the TOML file, then the environment, then flags.

use std::path::PathBuf;
use std::time::Duration;

use ecs_reconciler::config::{
    ConfigError, FlagOverrides, LogFormat, Settings, load_with_env_prefix,
};

/// A prefix no environment variable has, so the environment adds nothing.
const NO_ENV: &str = "ECS_RECONCILER_TEST_UNSET_";

fn write(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn defaults_without_file_or_flags() {
    let s = load_with_env_prefix(None, &FlagOverrides::default(), NO_ENV).unwrap();
    assert_eq!(s, Settings::default());
    assert_eq!(s.resync, Duration::from_secs(30));
    assert_eq!(s.policies, PathBuf::from("policies"));
}

#[test]
fn the_file_overrides_defaults_and_flags_override_the_file() {
    let file =
        write("resync = \"2m\"\nconcurrency = 8\nlog_format = \"json\"\n[aws]\nmax_attempts = 5\n");
    let s = load_with_env_prefix(Some(file.path()), &FlagOverrides::default(), NO_ENV).unwrap();
    assert_eq!(s.resync, Duration::from_secs(120));
    assert_eq!(s.concurrency, 8);
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.aws.max_attempts, 5);
    assert_eq!(
        s.aws.attempt_timeout,
        Duration::from_secs(10),
        "untouched default"
    );
    let flags = FlagOverrides {
        resync: Some("45s".into()),
        dry_run: Some(true),
        ..FlagOverrides::default()
    };
    let s = load_with_env_prefix(Some(file.path()), &flags, NO_ENV).unwrap();
    assert_eq!(s.resync, Duration::from_secs(45));
    assert!(s.dry_run);
    assert_eq!(s.concurrency, 8);
}

#[test]
fn a_file_that_does_not_parse_names_the_file() {
    let file = write("resync = \n");
    let err =
        load_with_env_prefix(Some(file.path()), &FlagOverrides::default(), NO_ENV).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Invalid(_) | ConfigError::InFile { .. }
    ));
    let text = err.to_string();
    assert!(text.contains(&file.path().display().to_string()), "{text}");
}

#[test]
fn unknown_keys_and_bad_durations_are_errors() {
    let file = write("resynk = \"30s\"\n");
    let err = load_with_env_prefix(Some(file.path()), &FlagOverrides::default(), NO_ENV)
        .unwrap_err()
        .to_string();
    assert!(err.contains("resynk"), "{err}");
    let file = write("resync = \"soon\"\n");
    let err = load_with_env_prefix(Some(file.path()), &FlagOverrides::default(), NO_ENV)
        .unwrap_err()
        .to_string();
    assert!(err.contains("resync"), "{err}");
}

#[test]
fn an_explicit_file_that_does_not_exist_is_an_error() {
    let err = load_with_env_prefix(
        Some(std::path::Path::new("/no/such/ecs-reconciler.toml")),
        &FlagOverrides::default(),
        NO_ENV,
    )
    .unwrap_err();
    assert!(matches!(err, ConfigError::Missing(_)));
}
