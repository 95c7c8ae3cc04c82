//! Policy files: loading, validation errors with file/line/field, selectors, schema.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ecs_reconciler::domain::{
    Capacity, DesiredStatus, HealthStatus, Tags, Task, TaskStatus, TaskTimestamps,
};
use ecs_reconciler::policy::{
    EXEMPT_TAG, Guardrails, Percent, PolicyError, PolicyErrors, PolicyMode, json_schema, load_dir,
    parse_str,
};
use proptest::prelude::*;

/// A valid document; the error cases below each change one line of it.
const BASE: &str = r#"apiVersion: ecs-reconciler/v1
kind: RemediationPolicy
metadata:
  name: web
spec:
  mode: enforce
  target:
    clusters: [prod-web]
    services: ["web-*"]
  stuck:
    PROVISIONING: 10m
    PENDING: 15m
  remediate:
    replaceTask: {}
    nudgeCapacity: {step: 1, maxDesired: 20, cooldown: 5m}
  guardrails:
    maxActionsPerHour: 20
    maxInFlightPerService: 25%
    pauseWhenStuckAbove: 50%
"#;

pub(crate) fn file() -> &'static Path {
    Path::new("policies/web.yaml")
}

pub(crate) fn errors_of(text: &str) -> PolicyErrors {
    match parse_str(file(), text) {
        Ok(p) => panic!("expected errors, got {} policies for:\n{text}", p.len()),
        Err(e) => e,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn named(name: &str) -> String {
    BASE.replace("  name: web\n", &format!("  name: {name}\n"))
}

#[test]
fn base_document_is_valid() {
    let policies = parse_str(file(), BASE).unwrap();
    assert_eq!(policies.len(), 1);
    let p = &policies[0];
    assert_eq!(p.name, "web");
    assert_eq!(p.origin.file, file());
    assert_eq!(p.origin.line, 1);
    assert_eq!(p.mode, PolicyMode::Enforce);
    assert_eq!(p.target.cluster_patterns, vec!["prod-web"]);
    assert_eq!(p.target.service_patterns, Some(vec!["web-*".to_owned()]));
    assert_eq!(p.stuck.provisioning, Some(Duration::from_secs(600)));
    assert_eq!(p.stuck.pending, Some(Duration::from_secs(900)));
    assert_eq!(p.stuck.unhealthy, None);
    let nudge = p.remediate.nudge_capacity.as_ref().unwrap();
    assert_eq!(
        (nudge.step, nudge.max_desired, nudge.cooldown),
        (1, 20, Duration::from_secs(300))
    );
    assert!(!p.remediate.replace_task.as_ref().unwrap().standalone);
    assert!(p.remediate.cordon_launch_template.is_none());
}

/// One case per rule: (what, replace this, with this, expected line, expected field, message part).
const ERROR_CASES: &[(&str, &str, &str, usize, &str, &str)] = &[
    (
        "malformed yaml",
        "  mode: enforce\n",
        "  mode: enforce: now\n",
        6,
        "spec",
        "mapping values are not allowed",
    ),
    (
        "unknown top-level field",
        "kind: RemediationPolicy\n",
        "kind: RemediationPolicy\nstatus: {}\n",
        3,
        "status",
        "unknown field `status`",
    ),
    (
        "unknown nested field",
        "    replaceTask: {}\n",
        "    replaceTask: {standalon: true}\n",
        14,
        "spec.remediate.replaceTask.standalon",
        "expected one of standalone",
    ),
    (
        "wrong apiVersion",
        "apiVersion: ecs-reconciler/v1\n",
        "apiVersion: v1\n",
        1,
        "apiVersion",
        "valid: ecs-reconciler/v1",
    ),
    (
        "wrong kind",
        "kind: RemediationPolicy\n",
        "kind: Policy\n",
        2,
        "kind",
        "valid: RemediationPolicy",
    ),
    (
        "misspelled state",
        "    PROVISIONING: 10m\n",
        "    PROVISONING: 10m\n",
        11,
        "spec.stuck.PROVISONING",
        "unknown lifecycle state; valid: PROVISIONING, PENDING, ACTIVATING, DEACTIVATING, STOPPING, DEPROVISIONING, unhealthy",
    ),
    (
        "RUNNING is not a stuck state",
        "    PENDING: 15m\n",
        "    RUNNING: 15m\n",
        12,
        "spec.stuck.RUNNING",
        "valid: PROVISIONING",
    ),
    (
        "STOPPED is not a stuck state",
        "    PENDING: 15m\n",
        "    STOPPED: 15m\n",
        12,
        "spec.stuck.STOPPED",
        "valid: PROVISIONING",
    ),
    (
        "duration without unit",
        "    PENDING: 15m\n",
        "    PENDING: 15\n",
        12,
        "spec.stuck.PENDING",
        "a unit is required",
    ),
    (
        "quoted duration without unit",
        "    PENDING: 15m\n",
        "    PENDING: \"15\"\n",
        12,
        "spec.stuck.PENDING",
        "a unit is required",
    ),
    (
        "zero duration",
        "    PENDING: 15m\n",
        "    PENDING: 0s\n",
        12,
        "spec.stuck.PENDING",
        "must be positive",
    ),
    (
        "negative duration",
        "    PENDING: 15m\n",
        "    PENDING: -5m\n",
        12,
        "spec.stuck.PENDING",
        "must be positive",
    ),
    (
        "not a duration",
        "    PENDING: 15m\n",
        "    PENDING: soon\n",
        12,
        "spec.stuck.PENDING",
        "valid: a positive duration with a unit",
    ),
    (
        "remediation duration without unit",
        "cooldown: 5m}",
        "cooldown: 5}",
        15,
        "spec.remediate.nudgeCapacity.cooldown",
        "a unit is required",
    ),
    (
        "percentage above 100",
        "    maxInFlightPerService: 25%\n",
        "    maxInFlightPerService: 125%\n",
        18,
        "spec.guardrails.maxInFlightPerService",
        "from 0% to 100%",
    ),
    (
        "negative percentage",
        "    pauseWhenStuckAbove: 50%\n",
        "    pauseWhenStuckAbove: -5%\n",
        19,
        "spec.guardrails.pauseWhenStuckAbove",
        "from 0% to 100%",
    ),
    (
        "percentage without %",
        "    maxInFlightPerService: 25%\n",
        "    maxInFlightPerService: 25\n",
        18,
        "spec.guardrails.maxInFlightPerService",
        "not a percentage",
    ),
    (
        "percentage not a number",
        "    maxInFlightPerService: 25%\n",
        "    maxInFlightPerService: lots%\n",
        18,
        "spec.guardrails.maxInFlightPerService",
        "not a percentage",
    ),
    (
        "empty cluster selector",
        "    clusters: [prod-web]\n",
        "    clusters: []\n",
        8,
        "spec.target.clusters",
        "empty cluster selector",
    ),
    (
        "missing cluster selector",
        "    clusters: [prod-web]\n",
        "",
        7,
        "spec.target.clusters",
        "missing field `clusters`",
    ),
    (
        "invalid service glob",
        "    services: [\"web-*\"]\n",
        "    services: [\"web-[*\"]\n",
        9,
        "spec.target.services[0]",
        "invalid glob `web-[*`",
    ),
    (
        "invalid cluster glob",
        "    clusters: [prod-web]\n",
        "    clusters: [prod-web, \"prod-{a\"]\n",
        8,
        "spec.target.clusters[1]",
        "invalid glob",
    ),
    (
        "empty stuck",
        "  stuck:\n    PROVISIONING: 10m\n    PENDING: 15m\n",
        "  stuck: {}\n",
        10,
        "spec.stuck",
        "at least one is required",
    ),
    (
        "missing stuck",
        "  stuck:\n    PROVISIONING: 10m\n    PENDING: 15m\n",
        "",
        5,
        "spec.stuck",
        "missing field `stuck`",
    ),
    (
        "invalid name",
        "  name: web\n",
        "  name: Web_Tasks\n",
        4,
        "metadata.name",
        "lowercase letters, digits or '-'",
    ),
    (
        "name too long",
        "  name: web\n",
        "  name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
        4,
        "metadata.name",
        "1 to 63",
    ),
    (
        "duplicate key",
        "    PENDING: 15m\n",
        "    PENDING: 15m\n    PENDING: 20m\n",
        13,
        "spec.stuck.PENDING",
        "duplicate mapping key",
    ),
    (
        "list expected",
        "    services: [\"web-*\"]\n",
        "    services: web-*\n",
        9,
        "spec.target.services",
        "valid: a list",
    ),
    (
        "unknown mode",
        "  mode: enforce\n",
        "  mode: act\n",
        6,
        "spec.mode",
        "expected one of enforce, dry-run",
    ),
    (
        "nudge step zero",
        "{step: 1,",
        "{step: 0,",
        15,
        "spec.remediate.nudgeCapacity.step",
        "at least 1",
    ),
    (
        "negative maxActionsPerHour",
        "    maxActionsPerHour: 20\n",
        "    maxActionsPerHour: -1\n",
        17,
        "spec.guardrails.maxActionsPerHour",
        "valid: a whole number",
    ),
    (
        "cordon minFailedInstances zero",
        "    replaceTask: {}\n",
        "    replaceTask: {}\n    cordonLaunchTemplate: {registrationTimeout: 10m, minFailedInstances: 0}\n",
        15,
        "spec.remediate.cordonLaunchTemplate.minFailedInstances",
        "at least 1",
    ),
];

#[test]
fn every_error_rule_names_file_line_and_field() {
    for &(what, from, to, line, field, message) in ERROR_CASES {
        assert_eq!(
            BASE.matches(from).count(),
            1,
            "{what}: `{from}` must occur once"
        );
        let text = BASE.replacen(from, to, 1);
        let errors = errors_of(&text);
        assert_eq!(errors.len(), 1, "{what}: expected one error, got {errors}");
        let e = &errors.0[0];
        assert_eq!(e.file, file(), "{what}: {e}");
        assert_eq!(e.line, line, "{what}: {e}");
        assert_eq!(e.field, field, "{what}: {e}");
        assert!(e.message.contains(message), "{what}: {e}");
        assert!(e.column.is_some_and(|c| c >= 1), "{what}: {e}");
    }
}

#[test]
fn display_format_is_file_line_column_field_message() {
    let text = BASE.replace("    PROVISIONING: 10m\n", "    PROVISONING: 10m\n");
    let errors = errors_of(&text);
    assert_eq!(
        errors.0[0].to_string(),
        "policies/web.yaml:11:5: spec.stuck.PROVISONING: unknown lifecycle state; valid: \
         PROVISIONING, PENDING, ACTIVATING, DEACTIVATING, STOPPING, DEPROVISIONING, unhealthy"
    );
    let all = errors.to_string();
    assert!(all.starts_with("1 problem in policy files\n"), "{all}");
    assert!(all.contains("policies/web.yaml:11:5:"), "{all}");
}

#[test]
fn every_semantic_problem_of_a_document_is_reported() {
    let text = BASE
        .replace("apiVersion: ecs-reconciler/v1", "apiVersion: v2")
        .replace("PENDING: 15m", "PENDING: 15")
        .replace("maxInFlightPerService: 25%", "maxInFlightPerService: 101%")
        .replace("clusters: [prod-web]", "clusters: []");
    let errors = errors_of(&text);
    let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (1, "apiVersion"),
            (8, "spec.target.clusters"),
            (12, "spec.stuck.PENDING"),
            (18, "spec.guardrails.maxInFlightPerService"),
        ]
    );
}

#[test]
fn multi_document_file_keeps_document_order_and_lines() {
    let text = format!(
        "# two policies\n---\n{}---\n{}",
        named("first"),
        named("second")
    );
    let policies = parse_str(file(), &text).unwrap();
    let got: Vec<(&str, usize)> = policies
        .iter()
        .map(|p| (p.name.as_str(), p.origin.line))
        .collect();
    // Documents start after the markers on lines 2 and 22.
    assert_eq!(got, vec![("first", 3), ("second", 23)]);
}

#[test]
fn a_bad_document_does_not_hide_the_next_one() {
    let bad_syntax = named("first").replace("  mode: enforce\n", "  mode: [enforce\n");
    let bad_value = named("second").replace("PENDING: 15m", "PENDING: 15");
    let text = format!("{bad_syntax}---\n{bad_value}");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 2, "{errors}");
    // The second document starts on line 21 (after 19 lines and the marker); PENDING is its 12th.
    assert!(errors.0[0].line <= 20, "{errors}");
    assert_eq!(errors.0[1].line, 20 + 12, "{errors}");
    assert_eq!(errors.0[1].field, "spec.stuck.PENDING");
}

#[test]
fn duplicate_name_in_one_text_is_an_error() {
    let text = format!("{BASE}---\n{BASE}");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{errors}");
    assert_eq!(errors.0[0].line, 24);
    assert_eq!(errors.0[0].field, "metadata.name");
    assert!(
        errors.0[0].message.contains("policies/web.yaml:4:9"),
        "{errors}"
    );
}

#[test]
fn empty_and_comment_only_texts_hold_no_policy() {
    assert!(parse_str(file(), "").unwrap().is_empty());
    assert!(
        parse_str(file(), "# nothing yet\n---\n")
            .unwrap()
            .is_empty()
    );
    let errors = errors_of("- a\n- b\n");
    assert_eq!(errors.0[0].line, 1);
}

#[test]
fn defaults_apply() {
    let text = "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata: {name: minimal}\n\
                spec:\n  target: {clusters: [\"*\"]}\n  stuck: {unhealthy: 90s}\n";
    let p = &parse_str(file(), text).unwrap()[0];
    assert_eq!(p.mode, PolicyMode::Enforce);
    assert_eq!(p.guardrails, Guardrails::default());
    assert!(p.target.services.is_none());
    assert!(!p.target.standalone);
    assert_eq!(p.remediate, Default::default());
    assert_eq!(p.stuck.unhealthy, Some(Duration::from_secs(90)));
    assert_eq!(p.target.exclude_tags, vec![exempt()]);
    assert!(p.target.selects_cluster("anything"));

    let partial = BASE.replace(
        "    maxActionsPerHour: 20\n    maxInFlightPerService: 25%\n",
        "",
    );
    let p = &parse_str(file(), &partial.replace("50%", "12.5%")).unwrap()[0];
    assert_eq!(p.guardrails.max_actions_per_hour, 20);
    assert_eq!(p.guardrails.max_in_flight_per_service, Percent(25.0));
    assert_eq!(p.guardrails.pause_when_stuck_above, Percent(12.5));
}

fn exempt() -> (String, String) {
    (EXEMPT_TAG.0.to_owned(), EXEMPT_TAG.1.to_owned())
}

#[test]
fn shipped_examples_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let set = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = set.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "audit-everything-staging",
            "batch-standalone",
            "internal-admin",
            "internal-tools",
            "web-stuck-tasks",
        ]
    );
    assert_eq!(set.fingerprint.len(), 12);
    assert!(set.fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
    let by_name = |n: &str| set.policies.iter().find(|p| p.name == n).unwrap();
    assert_eq!(by_name("audit-everything-staging").mode, PolicyMode::Audit);
    assert!(
        by_name("batch-standalone")
            .remediate
            .replace_task
            .as_ref()
            .unwrap()
            .standalone
    );
    assert!(by_name("batch-standalone").target.standalone);
    assert_eq!(
        by_name("internal-admin")
            .guardrails
            .max_in_flight_per_service,
        Percent(12.5)
    );
    // The second document of internal-tools.yaml.
    assert!(by_name("internal-tools").origin.line > 20);
    // Every example keeps the built-in exemption.
    assert!(
        set.policies
            .iter()
            .all(|p| p.target.exclude_tags.contains(&exempt()))
    );
}

#[test]
fn load_dir_orders_by_path_and_ignores_other_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b.yml", &named("from-b"));
    write(
        dir.path(),
        "a.yaml",
        &format!("{}---\n{}", named("a-one"), named("a-two")),
    );
    write(dir.path(), "notes.txt", "not: yaml: at all");
    fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    let set = load_dir(dir.path()).unwrap();
    let names: Vec<&str> = set.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["a-one", "a-two", "from-b"]);
    assert_eq!(set.policies[2].origin.file, dir.path().join("b.yml"));
}

#[test]
fn duplicate_names_across_files_name_both_places() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.yaml", BASE);
    let b = write(dir.path(), "b.yaml", &format!("# same name\n{BASE}"));
    let errors = load_dir(dir.path()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    let e = &errors.0[0];
    assert_eq!(e.file, b);
    assert_eq!(e.line, 5);
    assert_eq!(e.field, "metadata.name");
    assert!(e.message.contains(&format!("{}:4:9", a.display())), "{e}");
}

#[test]
fn all_errors_are_collected_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.yaml",
        &named("a").replace("PENDING: 15m", "PENDING: 15"),
    );
    write(dir.path(), "b.yaml", &named("fine"));
    let c = write(
        dir.path(),
        "c.yaml",
        &format!(
            "{}---\n{}",
            named("c-one").replace("kind: RemediationPolicy", "kind: Nope"),
            named("c-two").replace("  mode: enforce\n", "  mode: enforce\n  typo: 1\n")
        ),
    );
    let errors = load_dir(dir.path()).unwrap_err();
    let got: Vec<(&Path, usize, &str)> = errors
        .iter()
        .map(|e| (e.file.as_path(), e.line, e.field.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (a.as_path(), 12, "spec.stuck.PENDING"),
            (c.as_path(), 2, "kind"),
            (c.as_path(), 27, "spec.typo"),
        ]
    );
}

#[test]
fn directory_problems_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let errors = load_dir(&missing).unwrap_err();
    assert_eq!(errors.0[0].file, missing);
    assert!(errors.0[0].message.contains("cannot read"), "{errors}");

    let errors = load_dir(dir.path()).unwrap_err();
    assert!(errors.0[0].message.contains("no policy files"), "{errors}");

    write(dir.path(), "empty.yaml", "# nothing\n");
    let errors = load_dir(dir.path()).unwrap_err();
    assert!(errors.0[0].message.contains("hold no policy"), "{errors}");
}

#[test]
fn fingerprint_follows_content() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "web.yaml", BASE);
    let first = load_dir(dir.path()).unwrap().fingerprint;
    assert_eq!(load_dir(dir.path()).unwrap().fingerprint, first);
    fs::write(&path, BASE.replace("10m", "11m")).unwrap();
    let changed = load_dir(dir.path()).unwrap().fingerprint;
    assert_ne!(changed, first);
    // A comment is content too: the set is identified by its files.
    fs::write(&path, format!("# reviewed\n{BASE}")).unwrap();
    assert_ne!(load_dir(dir.path()).unwrap().fingerprint, first);
    // Renaming the file changes it as well.
    fs::write(&path, BASE).unwrap();
    fs::rename(&path, dir.path().join("web2.yaml")).unwrap();
    assert_ne!(load_dir(dir.path()).unwrap().fingerprint, first);
}

fn task(service: Option<&str>, tags: &[(&str, &str)]) -> Task {
    Task {
        arn: "arn:aws:ecs:eu-west-1:123456789012:task/prod-web/abc".into(),
        cluster_arn: "arn:aws:ecs:eu-west-1:123456789012:cluster/prod-web".into(),
        task_definition_arn: "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:1".into(),
        group: Some(
            service
                .map_or_else(|| "family:web".to_owned(), |s| format!("service:{s}"))
                .into(),
        ),
        started_by: None,
        last_status: TaskStatus::Pending,
        desired_status: DesiredStatus::Running,
        health: HealthStatus::Unknown,
        timestamps: TaskTimestamps::default(),
        stopped_reason: None,
        stop_code: None,
        cpu: None,
        memory: None,
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Tags>(),
        capacity: Capacity::LaunchType("FARGATE".into()),
        network: None,
        overrides: Default::default(),
        container_instance_arn: None,
        version: 1,
    }
}

#[test]
fn target_selects_and_excludes() {
    let text = BASE.replace(
        "    services: [\"web-*\"]\n",
        "    services: [\"web-*\"]\n    exclude: {tags: {hold: \"yes\"}}\n",
    );
    let p = &parse_str(file(), &text).unwrap()[0];
    let t = &p.target;
    assert!(t.selects_cluster("prod-web"));
    assert!(!t.selects_cluster("prod-web-2"));
    assert!(t.selects_task(&task(Some("web-frontend"), &[])));
    assert!(!t.selects_task(&task(Some("api"), &[])));
    assert!(
        !t.selects_task(&task(None, &[])),
        "standalone defaults to false"
    );
    assert_eq!(
        t.exclude_tags,
        vec![("hold".to_owned(), "yes".to_owned()), exempt()]
    );
    let held = task(Some("web-frontend"), &[("hold", "yes")]);
    assert_eq!(
        t.exclusion(&held),
        Some(&("hold".to_owned(), "yes".to_owned()))
    );
    assert_eq!(t.exclusion(&task(Some("web-a"), &[("hold", "no")])), None);
    let exempted = task(Some("web-a"), &[(EXEMPT_TAG.0, EXEMPT_TAG.1)]);
    assert_eq!(t.exclusion(&exempted), Some(&exempt()));

    let standalone = BASE.replace(
        "    services: [\"web-*\"]\n",
        "    services: []\n    standalone: true\n",
    );
    let p = &parse_str(file(), &standalone).unwrap()[0];
    assert!(p.target.selects_task(&task(None, &[])));
    assert!(!p.target.selects_task(&task(Some("web-a"), &[])));
    // Listing the exemption explicitly does not duplicate it.
    let explicit = BASE.replace(
        "    services: [\"web-*\"]\n",
        "    exclude: {tags: {ecs-reconciler/exempt: \"true\"}}\n",
    );
    let p = &parse_str(file(), &explicit).unwrap()[0];
    assert_eq!(p.target.exclude_tags, vec![exempt()]);
}

#[test]
fn json_schema_describes_the_format() {
    let schema = json_schema();
    let text = schema.to_string();
    for needle in [
        "apiVersion",
        "RemediationPolicy",
        "clusters",
        "standalone",
        "PROVISIONING",
        "unhealthy",
        "replaceTask",
        "nudgeCapacity",
        "cordonLaunchTemplate",
        "drainContainerInstance",
        "maxInFlightPerService",
        "pauseWhenStuckAbove",
    ] {
        assert!(text.contains(needle), "schema lacks {needle}");
    }
    assert_eq!(schema["additionalProperties"], false);
    let defs = &schema["$defs"];
    assert_eq!(defs["Duration"]["type"], "string");
    assert!(defs["Duration"]["pattern"].is_string());
    assert_eq!(defs["Percent"]["type"], "string");
    assert!(defs["Percent"]["pattern"].as_str().unwrap().ends_with("%$"));
}

/// Applies a few single-character edits to `text`.
fn mutate(text: &str, edits: &[(usize, u8, char)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for &(pos, op, c) in edits {
        let i = pos % (chars.len() + 1);
        match op % 3 {
            0 => chars.insert(i, c),
            1 if i < chars.len() => {
                chars.remove(i);
            }
            _ if i < chars.len() => chars[i] = c,
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn check_never_panics(text: &str) -> Result<(), TestCaseError> {
    match parse_str(file(), text) {
        Ok(policies) => {
            for p in policies {
                prop_assert!(!p.name.is_empty());
                prop_assert!(p.origin.line >= 1);
            }
        }
        Err(errors) => {
            prop_assert!(!errors.is_empty());
            for e in errors.iter() {
                let e: &PolicyError = e;
                prop_assert_eq!(&e.file, file());
                prop_assert!(e.line >= 1, "no line: {}", e);
            }
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn parse_str_never_panics_on_arbitrary_text(text in any::<String>()) {
        check_never_panics(&text)?;
    }

    #[test]
    fn parse_str_never_panics_on_mutated_documents(
        edits in prop::collection::vec(
            (any::<usize>(), any::<u8>(), prop::sample::select(vec![
                ' ', '\n', ':', '-', '[', ']', '{', '}', '"', '\'', '%', '#', '*', '&', '!', '|',
                '>', '0', 'a', 'Z', '\t', 'é',
            ])),
            1..6,
        ),
        two_documents in any::<bool>(),
    ) {
        let base = if two_documents { format!("{BASE}---\n{}", named("other")) } else { BASE.to_owned() };
        check_never_panics(&mutate(&base, &edits))?;
    }
}

#[test]
fn root_cause_reads_are_on_unless_the_policy_switches_them_off() {
    assert!(
        parse_str(file(), BASE).unwrap()[0]
            .diagnose
            .root_cause_reads
    );
    let with = |value: &str| {
        BASE.replace(
            "  guardrails:\n",
            &format!("  diagnose:\n    rootCauseReads: {value}\n  guardrails:\n"),
        )
    };
    let off = &parse_str(file(), &with("false")).unwrap()[0];
    assert!(!off.diagnose.root_cause_reads);
    assert!(
        parse_str(file(), &with("true")).unwrap()[0]
            .diagnose
            .root_cause_reads
    );
    let err = errors_of(&with("sometimes")).to_string();
    assert!(err.contains("policies/web.yaml:"), "{err}");
    assert!(
        err.contains("rootCauseReads") || err.contains("bool"),
        "{err}"
    );
    let unknown = BASE.replace(
        "  guardrails:\n",
        "  diagnose:\n    bootOutput: false\n  guardrails:\n",
    );
    let err = errors_of(&unknown).to_string();
    assert!(err.contains("bootOutput"), "{err}");

    let schema = json_schema();
    let diagnose = &schema["$defs"]["DiagnoseDoc"];
    assert_eq!(
        diagnose["properties"]["rootCauseReads"]["type"][0], "boolean",
        "{diagnose}"
    );
    assert_eq!(diagnose["additionalProperties"], false);
}
