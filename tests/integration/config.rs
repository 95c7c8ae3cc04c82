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
        resync: Some(Duration::from_secs(45)),
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
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&file.path().display().to_string()), "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains("line 1"), "{text}");
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

fn load_text(text: &str) -> Result<Settings, ConfigError> {
    let file = write(text);
    load_with_env_prefix(Some(file.path()), &FlagOverrides::default(), NO_ENV)
}

/// Asserts that `text` is refused on `key`, in one line naming the key (without figment's
/// `default.` profile prefix), the file, and `expected`.
fn assert_refused(text: &str, key: &str, expected: &str) {
    let file = write(text);
    let err = load_with_env_prefix(Some(file.path()), &FlagOverrides::default(), NO_ENV)
        .expect_err(text)
        .to_string();
    assert!(!err.contains('\n'), "more than one line: {err}");
    assert!(!err.contains("default."), "{err}");
    let prefix = format!("invalid configuration: {key}: ");
    assert!(
        err.starts_with(&prefix),
        "{text}: expected {prefix:?}, got {err}"
    );
    assert!(
        err.contains(expected),
        "{text}: expected {expected:?} in {err}"
    );
    assert!(
        err.contains(&format!("(from {})", file.path().display())),
        "{text}: the file is not named: {err}"
    );
}

#[test]
fn settings_that_cannot_work_are_refused_with_their_key() {
    let cases = [
        ("resync = \"0s\"", "resync", "must be at least 1s, got 0s"),
        (
            "resync = \"999ms\"",
            "resync",
            "must be at least 1s, got 999ms",
        ),
        (
            "resync = \"25h\"",
            "resync",
            "must be at most 1day, got 1day 1h",
        ),
        (
            "concurrency = 0",
            "concurrency",
            "must be at least 1, got 0",
        ),
        (
            "concurrency = 257",
            "concurrency",
            "must be at most 256, got 257",
        ),
        (
            "concurrency = 9223372036854775807",
            "concurrency",
            "must be at most 256",
        ),
        ("policies = \"\"", "policies", "must not be empty"),
        ("audit_log = \"\"", "audit_log", "must not be empty"),
        (
            "log_level = \"verbose\"",
            "log_level",
            "`verbose` names no level",
        ),
        (
            "log_level = \"warn,ecs_reconciler=loud\"",
            "log_level",
            "`ecs_reconciler=loud` names no level",
        ),
        (
            "log_level = \"ecs_reconciler\"",
            "log_level",
            "names no level",
        ),
        ("log_level = \"\"", "log_level", "must not be empty"),
        ("log_level = \"3\"", "log_level", "names no level"),
        (
            "shutdown_timeout = \"0s\"",
            "shutdown_timeout",
            "must be at least 1s",
        ),
        (
            "shutdown_timeout = \"11m\"",
            "shutdown_timeout",
            "must be at most 10m",
        ),
        (
            "[aws]\noperation_timeout = \"0s\"",
            "aws.operation_timeout",
            "must be at least 1s, got 0s",
        ),
        (
            "[aws]\noperation_timeout = \"1h\"",
            "aws.operation_timeout",
            "must be at most 10m",
        ),
        (
            "[aws]\nmax_attempts = 0",
            "aws.max_attempts",
            "must be at least 1, got 0",
        ),
        (
            "[aws]\nmax_attempts = 11",
            "aws.max_attempts",
            "must be at most 10, got 11",
        ),
        ("[aws]\nmax_attempts = -1", "aws.max_attempts", "invalid"),
        (
            "[aws]\nattempt_timeout = \"0s\"",
            "aws.attempt_timeout",
            "must be at least 1s",
        ),
        (
            "[aws]\nconnect_timeout = \"0s\"",
            "aws.connect_timeout",
            "must be at least 100ms",
        ),
        // Nested timeouts: the key the file set is named, not the default it collides with.
        (
            "[aws]\nattempt_timeout = \"1m\"",
            "aws.attempt_timeout",
            "must be at most aws.operation_timeout (30s), got 1m",
        ),
        (
            "[aws]\noperation_timeout = \"5s\"",
            "aws.operation_timeout",
            "must be at least aws.attempt_timeout (10s), got 5s",
        ),
        (
            "[aws]\nconnect_timeout = \"20s\"",
            "aws.connect_timeout",
            "must be at most aws.attempt_timeout (10s), got 20s",
        ),
        (
            "[pacing]\nscale = 0.0",
            "pacing.scale",
            "above 0 and at most 1",
        ),
        ("[pacing]\nscale = 1.5", "pacing.scale", "got 1.5"),
        ("[pacing]\nscale = nan", "pacing.scale", "got NaN"),
        (
            "[pacing]\nthrottle_hold = \"0s\"",
            "pacing.throttle_hold",
            "must be at least 1s",
        ),
        (
            "[pacing]\nwindow = \"2h\"",
            "pacing.window",
            "must be at most 1h",
        ),
        (
            "[pacing.overrides.service-modify]\nper_second = 0.0\nburst = 3",
            "pacing.overrides.service-modify.per_second",
            "above 0 and at most 1000",
        ),
        (
            "[pacing.overrides.service-modify]\nper_second = inf\nburst = 3",
            "pacing.overrides.service-modify.per_second",
            "got inf",
        ),
        (
            "[pacing.overrides.service-modify]\nper_second = 1.0\nburst = 0",
            "pacing.overrides.service-modify.burst",
            "must be at least 1",
        ),
        (
            "[pacing.overrides.service-modify]\nper_second = 1.0\nburst = 1001",
            "pacing.overrides.service-modify.burst",
            "must be at most 1000",
        ),
        (
            "[record]\nmax_bytes = 1000",
            "record.max_bytes",
            "must be at least 1048576, got 1000",
        ),
        (
            "[record]\nmax_age = \"30m\"",
            "record.max_age",
            "must be at least 1h, got 30m",
        ),
        ("[record]\ndir = \"\"", "record.dir", "empty"),
        (
            "[lease]\nshards = 0",
            "lease.shards",
            "must be at least 1, got 0",
        ),
        (
            "[lease]\nduration = \"5s\"\nrenew_every = \"5s\"",
            "lease.duration",
            "must be longer than lease.renew_every (5s) plus lease.action_timeout (5s)",
        ),
        (
            "[lease]\nduration = \"10s\"",
            "lease.duration",
            "so that a lease is renewed before its last action must start; got 10s",
        ),
        (
            "[lease]\ntable = \"no spaces\"",
            "lease.table",
            "a DynamoDB table name is 3 to 255 of A-Z a-z 0-9 _ . -",
        ),
        (
            "[lease]\nrenew_every = \"50ms\"",
            "lease.renew_every",
            "must be at least 100ms",
        ),
        ("[lease]\nshard = 2", "lease.shard", "unknown key"),
        (
            "[[targets]]\nrole_arn = \"arn:aws:iam::1234:role/x\"",
            "targets[0].role_arn",
            "not a role ARN",
        ),
        (
            "[[targets]]\nregions = [\"us-east-1\", \"Mars\"]",
            "targets[0].regions[1]",
            "not a Region name",
        ),
        (
            "[[targets]]\nexternal_id = \"abc\"",
            "targets[0].external_id",
            "set role_arn too",
        ),
        (
            "[[targets]]\nrole_arn = \"arn:aws:iam::111122223333:role/a\"\n\
             regions = [\"us-east-1\"]\n\
             [[targets]]\nrole_arn = \"arn:aws:iam::111122223333:role/b\"\n\
             regions = [\"us-east-1\"]",
            "targets[1]",
            "names account 111122223333 in us-east-1, as targets[0] does",
        ),
        (
            "[[targets]]\nrole = \"x\"",
            "targets[0].role",
            "unknown key",
        ),
        // Figment's own errors get the same shape: key, problem, file.
        ("resync = 30", "resync", "invalid type"),
        (
            "resynk = \"30s\"",
            "resynk",
            "unknown key; valid here: policies, resync",
        ),
        ("[aws]\nmax_attempt = 3", "aws.max_attempt", "unknown key"),
        ("log_format = \"xml\"", "log_format", "xml"),
    ];
    for (text, key, expected) in cases {
        assert_refused(text, key, expected);
    }
}

#[test]
fn the_values_just_inside_every_range_are_accepted() {
    let lowest = "resync = \"1s\"\nconcurrency = 1\nshutdown_timeout = \"1s\"\n\
                  log_level = \"OFF\"\n\
                  [aws]\noperation_timeout = \"1s\"\nattempt_timeout = \"1s\"\n\
                  connect_timeout = \"100ms\"\nmax_attempts = 1\n\
                  [pacing]\nscale = 0.001\nthrottle_hold = \"1s\"\nwindow = \"1s\"\n\
                  [pacing.overrides.other]\nper_second = 0.001\nburst = 1\n";
    let s = load_text(lowest).unwrap();
    assert_eq!(s.resync, Duration::from_secs(1));
    assert_eq!(s.lease.table, None, "no table: no leases");
    assert_eq!(s.lease.shards, 1);
    assert_eq!(s.lease.duration, Duration::from_secs(15));
    assert_eq!(s.lease.renew_every, Duration::from_secs(5));
    let leased = load_text(
        "[lease]\ntable = \"ecs-reconciler-leases\"\nshards = 1024\nduration = \"3s\"\n\
         renew_every = \"1s\"\naction_timeout = \"1s\"\ncreate_table = true\n",
    )
    .unwrap();
    assert_eq!(leased.lease.shards, 1024);
    assert!(leased.lease.create_table);
    assert_eq!(s.concurrency, 1);
    assert_eq!(s.aws.max_attempts, 1);
    assert_eq!(s.aws.connect_timeout, Duration::from_millis(100));

    let highest = "resync = \"24h\"\nconcurrency = 256\nshutdown_timeout = \"10m\"\n\
                   log_level = \"warn,ecs_reconciler=trace,aws_smithy_runtime[req]=debug\"\n\
                   [aws]\noperation_timeout = \"10m\"\nattempt_timeout = \"10m\"\n\
                   connect_timeout = \"10m\"\nmax_attempts = 10\n\
                   [pacing]\nscale = 1.0\nthrottle_hold = \"1h\"\nwindow = \"1h\"\n\
                   [pacing.overrides.other]\nper_second = 1000.0\nburst = 1000\n";
    let s = load_text(highest).unwrap();
    assert_eq!(s.resync, Duration::from_secs(24 * 3600));
    assert_eq!(s.concurrency, 256);
    assert_eq!(s.aws.max_attempts, 10);
    assert_eq!(s.shutdown_timeout, Duration::from_secs(600));
}

#[test]
fn flags_are_checked_like_the_file_and_named_as_flags() {
    let flags = FlagOverrides {
        resync: Some(Duration::ZERO),
        ..FlagOverrides::default()
    };
    let err = load_with_env_prefix(None, &flags, NO_ENV)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid configuration: resync: must be at least 1s, got 0s (from flag --resync)"
    );
    let flags = FlagOverrides {
        concurrency: Some(usize::MAX),
        ..FlagOverrides::default()
    };
    let err = load_with_env_prefix(None, &flags, NO_ENV)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid configuration: concurrency: must be at most 256"),
        "{err}"
    );
    assert!(err.ends_with("(from flag --concurrency)"), "{err}");
    // A flag inside the range wins over a file value outside it.
    let file = write("concurrency = 0\n");
    let flags = FlagOverrides {
        concurrency: Some(2),
        ..FlagOverrides::default()
    };
    let s = load_with_env_prefix(Some(file.path()), &flags, NO_ENV).unwrap();
    assert_eq!(s.concurrency, 2);
}

#[test]
fn a_value_from_the_environment_is_named_by_its_variable() {
    let out = crate::cli_output::bin()
        .env("ECS_RECONCILER_AWS__MAX_ATTEMPTS", "0")
        .args(["validate"])
        .output()
        .unwrap();
    let err = crate::cli_output::text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        "error: invalid configuration: aws.max_attempts: must be at least 1, got 0 (from \
         environment variable ECS_RECONCILER_AWS__MAX_ATTEMPTS)\n"
    );
}

#[test]
fn a_broken_file_in_the_working_directory_does_not_stop_validate_dir_or_schema() {
    for broken in ["resync = \n", "resync = \"0s\"\n", "no_such_key = 1\n"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ecs-reconciler.toml"), broken).unwrap();
        let bin = || {
            let mut c = crate::cli_output::bin();
            c.current_dir(dir.path());
            c
        };
        let out = bin()
            .arg("validate")
            .arg(crate::cli_output::examples())
            .output()
            .unwrap();
        let err = crate::cli_output::text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{broken}: {err}");
        assert!(crate::cli_output::text(&out.stdout).contains("policies valid"));

        let out = bin().arg("schema").output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{broken}");
        let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(schema.is_object());

        // `validate` without DIR takes the policy directory from the configuration.
        let out = bin().arg("validate").output().unwrap();
        let err = crate::cli_output::text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{broken}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: invalid configuration: "), "{err}");
        assert!(err.contains("ecs-reconciler.toml"), "{err}");
    }
}

/// Generated configuration documents: keys from the real set and unknown ones, values of any
/// type, with the extremes of each.
mod generated {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use ecs_reconciler::config::{FlagOverrides, Settings, load_with_env_prefix};
    use proptest::prelude::*;

    use super::{NO_ENV, write};

    /// A TOML value: a scalar already rendered, or a table.
    #[derive(Debug, Clone)]
    enum Node {
        Scalar(String),
        Table(BTreeMap<String, Node>),
    }

    impl Node {
        fn render(&self) -> String {
            match self {
                Node::Scalar(s) => s.clone(),
                Node::Table(entries) => {
                    let inner: Vec<String> = entries
                        .iter()
                        .map(|(k, v)| format!("{k} = {}", v.render()))
                        .collect();
                    format!("{{ {} }}", inner.join(", "))
                }
            }
        }

        /// Every dotted key path in the document, tables included.
        fn paths(&self, prefix: &str, out: &mut Vec<String>) {
            if let Node::Table(entries) = self {
                for (k, v) in entries {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    v.paths(&path, out);
                    out.push(path);
                }
            }
        }
    }

    fn quoted(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    fn scalar() -> impl Strategy<Value = Node> {
        let ints = prop_oneof![
            Just(i64::MIN),
            Just(-1i64),
            Just(0),
            Just(1),
            Just(10),
            Just(11),
            Just(256),
            Just(257),
            Just(1000),
            Just(1001),
            Just(i64::from(u32::MAX)),
            Just(i64::MAX),
            any::<i64>(),
        ]
        .prop_map(|i| i.to_string());
        let floats = prop_oneof![
            Just("0.0".to_string()),
            Just("-0.0".to_string()),
            Just("0.5".to_string()),
            Just("1.0".to_string()),
            Just("1.5".to_string()),
            Just("1000.0".to_string()),
            Just("1e300".to_string()),
            Just("nan".to_string()),
            Just("inf".to_string()),
            Just("-inf".to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:?}")),
        ];
        let strings = prop_oneof![
            prop::sample::select(vec![
                "0s",
                "1ns",
                "99ms",
                "100ms",
                "999ms",
                "1s",
                "5s",
                "30s",
                "10m",
                "11m",
                "1h",
                "2h",
                "24h",
                "25h",
                "18446744073709551615s",
                "99999999999999years",
                "soon",
                "",
                "info",
                "OFF",
                "verbose",
                "warn,ecs_reconciler=debug",
                "x=y",
                "ecs_reconciler",
                "[span{a=1}]=info",
                "text",
                "json",
                "xml",
                "policies",
                "-",
                "/dev/null",
            ])
            .prop_map(quoted),
            "[ -~]{0,12}".prop_map(|s| quoted(&s)),
        ];
        let other = prop_oneof![
            Just("true".to_string()),
            Just("false".to_string()),
            Just("[]".to_string()),
            Just("[1, 2]".to_string()),
            Just("{}".to_string()),
        ];
        prop_oneof![ints, floats, strings, other].prop_map(Node::Scalar)
    }

    fn table(keys: &'static [&'static str], value: BoxedStrategy<Node>) -> BoxedStrategy<Node> {
        prop::collection::btree_map(prop::sample::select(keys), value, 0..5)
            .prop_map(|m| Node::Table(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
            .boxed()
    }

    fn document() -> impl Strategy<Value = Node> {
        let rate = table(&["per_second", "burst", "refill"], scalar().boxed());
        let overrides = table(
            &[
                "service-modify",
                "other",
                "auto-scaling",
                "no-such-category",
            ],
            prop_oneof![3 => rate, 1 => scalar()].boxed(),
        );
        let pacing_value = prop_oneof![
            2 => scalar().boxed(),
            1 => overrides,
        ]
        .boxed();
        let pacing = table(
            &["scale", "throttle_hold", "window", "overrides", "rate"],
            pacing_value,
        );
        let aws = table(
            &[
                "operation_timeout",
                "attempt_timeout",
                "connect_timeout",
                "max_attempts",
                "region",
            ],
            scalar().boxed(),
        );
        let top = prop_oneof![
            4 => scalar().boxed(),
            1 => aws,
            1 => pacing,
        ]
        .boxed();
        table(
            &[
                "policies",
                "resync",
                "concurrency",
                "dry_run",
                "audit_log",
                "log_format",
                "log_level",
                "shutdown_timeout",
                "aws",
                "pacing",
                "resynk",
                "default",
            ],
            top,
        )
    }

    fn render(doc: &Node) -> String {
        match doc {
            Node::Table(entries) => entries
                .iter()
                .map(|(k, v)| format!("{k} = {}\n", v.render()))
                .collect(),
            Node::Scalar(_) => unreachable!("a document is a table"),
        }
    }

    /// The documented ranges (the module documentation of `config` and the README).
    fn assert_in_documented_ranges(s: &Settings) {
        let secs = Duration::from_secs;
        assert!(!s.policies.as_os_str().is_empty());
        assert!(
            (secs(1)..=secs(86_400)).contains(&s.resync),
            "{:?}",
            s.resync
        );
        assert!((1..=256).contains(&s.concurrency), "{}", s.concurrency);
        assert!(
            s.audit_log
                .as_ref()
                .is_none_or(|p| !p.as_os_str().is_empty())
        );
        let levels = ["trace", "debug", "info", "warn", "error", "off"];
        let directives: Vec<&str> = s.log_level.split(',').filter(|d| !d.is_empty()).collect();
        assert!(!directives.is_empty(), "{:?}", s.log_level);
        for d in directives {
            let level = d.rsplit('=').next().unwrap();
            assert!(
                levels.iter().any(|l| l.eq_ignore_ascii_case(level.trim())),
                "{:?}",
                s.log_level
            );
        }
        assert!((secs(1)..=secs(600)).contains(&s.shutdown_timeout));
        let aws = &s.aws;
        assert!((secs(1)..=secs(600)).contains(&aws.operation_timeout));
        assert!(secs(1) <= aws.attempt_timeout && aws.attempt_timeout <= aws.operation_timeout);
        assert!(
            Duration::from_millis(100) <= aws.connect_timeout
                && aws.connect_timeout <= aws.attempt_timeout
        );
        assert!((1..=10).contains(&aws.max_attempts));
        let p = &s.pacing;
        assert!(p.scale > 0.0 && p.scale <= 1.0, "{}", p.scale);
        assert!((secs(1)..=secs(3600)).contains(&p.throttle_hold));
        assert!((secs(1)..=secs(3600)).contains(&p.window));
        for rate in p.overrides.values() {
            assert!(
                rate.per_second > 0.0 && rate.per_second <= 1000.0,
                "{rate:?}"
            );
            assert!((1..=1000).contains(&rate.burst), "{rate:?}");
        }
    }

    /// Values at and around each real key's bounds, so that many documents are valid and the
    /// accepted side of every range is exercised too.
    fn boundary_document() -> impl Strategy<Value = Node> {
        /// A key absent, or one of its `valid` values, or (less often) an `invalid` one.
        fn key(
            valid: &'static [&'static str],
            invalid: &'static [&'static str],
        ) -> BoxedStrategy<Option<Node>> {
            let value = prop_oneof![
                9 => prop::sample::select(valid),
                1 => prop::sample::select(invalid),
            ];
            prop::option::weighted(0.6, value.prop_map(|v| Node::Scalar(v.to_string()))).boxed()
        }
        let top = [
            (
                "resync",
                key(
                    &[r#""1s""#, r#""24h""#],
                    &[r#""0s""#, r#""999ms""#, r#""25h""#],
                ),
            ),
            ("concurrency", key(&["1", "256"], &["0", "257", "-1"])),
            (
                "log_level",
                key(
                    &[r#""info""#, r#""warn,x=TRACE""#],
                    &[r#""verbose""#, r#""""#],
                ),
            ),
            (
                "shutdown_timeout",
                key(&[r#""1s""#, r#""10m""#], &[r#""999ms""#, r#""11m""#]),
            ),
            ("policies", key(&[r#""p""#], &[r#""""#])),
        ];
        let aws = [
            (
                "operation_timeout",
                key(&[r#""10m""#, r#""1m""#], &[r#""0s""#, r#""11m""#]),
            ),
            (
                "attempt_timeout",
                key(&[r#""1s""#, r#""10s""#], &[r#""999ms""#, r#""10m""#]),
            ),
            (
                "connect_timeout",
                key(&[r#""100ms""#, r#""1s""#], &[r#""99ms""#, r#""10m""#]),
            ),
            ("max_attempts", key(&["1", "10"], &["0", "11"])),
        ];
        let pacing = [
            ("scale", key(&["0.001", "1.0"], &["0.0", "1.001", "nan"])),
            (
                "throttle_hold",
                key(&[r#""1s""#, r#""1h""#], &[r#""0s""#, r#""61m""#]),
            ),
            (
                "window",
                key(&[r#""1s""#, r#""1h""#], &[r#""999ms""#, r#""2h""#]),
            ),
        ];
        let rate = [
            (
                "per_second",
                key(&["0.001", "1000.0"], &["0.0", "1000.5", "inf"]),
            ),
            ("burst", key(&["1", "1000"], &["0", "1001"])),
        ];
        fn table<const N: usize>(
            entries: [(&'static str, BoxedStrategy<Option<Node>>); N],
        ) -> BoxedStrategy<Node> {
            let (names, values): (Vec<_>, Vec<_>) = entries.into_iter().unzip();
            values
                .prop_map(move |values| {
                    Node::Table(
                        names
                            .iter()
                            .zip(values)
                            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
                            .collect(),
                    )
                })
                .boxed()
        }
        let rate = table(rate).prop_map(|mut r| {
            // A rate needs both fields.
            if let Node::Table(m) = &mut r {
                m.entry("per_second".into())
                    .or_insert(Node::Scalar("1.0".into()));
                m.entry("burst".into()).or_insert(Node::Scalar("3".into()));
            }
            r
        });
        (
            table(top),
            table(aws),
            table(pacing),
            prop::option::of(rate),
        )
            .prop_map(|(mut doc, aws, mut pacing, rate)| {
                if let (Node::Table(p), Some(rate)) = (&mut pacing, rate) {
                    let overrides = BTreeMap::from([("other".to_string(), rate)]);
                    p.insert("overrides".into(), Node::Table(overrides));
                }
                if let Node::Table(m) = &mut doc {
                    m.insert("aws".into(), aws);
                    m.insert("pacing".into(), pacing);
                }
                doc
            })
    }

    fn check(doc: &Node) -> Result<(), TestCaseError> {
        let text = render(doc);
        let file = write(&text);
        match load_with_env_prefix(Some(file.path()), &FlagOverrides::default(), NO_ENV) {
            Ok(settings) => {
                assert_in_documented_ranges(&settings);
                Ok(())
            }
            Err(e) => {
                let message = e.to_string();
                let mut keys = Vec::new();
                doc.paths("", &mut keys);
                prop_assert!(!message.contains('\n'), "{message}\n{text}");
                prop_assert!(
                    keys.iter().any(|k| {
                        let key = format!("invalid configuration: {k}");
                        message.starts_with(&format!("{key}: "))
                            || message.starts_with(&format!("{key}["))
                    }),
                    "names no key of the document: {message}\n{text}"
                );
                Ok(())
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn boundary_values_are_accepted_in_range_or_refused_naming_their_key(
            doc in boundary_document()
        ) {
            check(&doc)?;
        }

        #[test]
        fn load_yields_settings_in_range_or_names_a_key_of_the_document(doc in document()) {
            check(&doc)?;
        }
    }
}

#[test]
fn root_cause_reads_are_on_by_default_and_switched_off_by_file_or_environment() {
    assert!(load_text("").unwrap().root_cause_reads);
    assert!(
        !load_text("root_cause_reads = false\n")
            .unwrap()
            .root_cause_reads
    );
    let err = load_text("root_cause_reads = \"no\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("root_cause_reads"), "{err}");
    assert!(!err.contains('\n'), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let out = crate::cli_output::bin()
        .env("ECS_RECONCILER_ROOT_CAUSE_READS", "false")
        .args(["--log-format", "json", "run", "--sim", "mixed", "--once"])
        .arg("--audit-log")
        .arg(dir.path().join("audit.jsonl"))
        .output()
        .unwrap();
    let err = crate::cli_output::text(&out.stderr);
    let starting = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "starting")
        .unwrap_or_else(|| panic!("no starting line: {err}"));
    assert_eq!(starting["fields"]["root_cause_reads"], false, "{starting}");
}

#[test]
fn a_managed_tag_value_that_looks_like_a_boolean_or_number_is_text() {
    let s = load_text("[managed_tag]\nvalue = true\n").unwrap();
    assert_eq!(s.managed_tag.value, "true");
    let s = load_text("[managed_tag]\nkey = \"team\"\nvalue = 12\n").unwrap();
    assert_eq!(
        (s.managed_tag.key.as_str(), s.managed_tag.value.as_str()),
        ("team", "12")
    );
    // The environment's values are parsed the same way: `true` was a boolean, and refused.
    let dir = tempfile::tempdir().unwrap();
    let out = crate::cli_output::bin()
        .env("ECS_RECONCILER_MANAGED_TAG__VALUE", "true")
        .args(["run", "--sim", "mixed", "--once", "--audit-log"])
        .arg(dir.path().join("audit.jsonl"))
        .output()
        .unwrap();
    let err = crate::cli_output::text(&out.stderr);
    assert!(!err.contains("invalid configuration"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}
