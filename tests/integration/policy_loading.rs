//! Policy loading says what it skipped: files that cannot be read (dangling symlinks, symlink
//! loops, read errors) are errors of the load, non-UTF-8 bytes are located, and every problem of
//! a document is reported, unknown fields included.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use ecs_reconciler::policy::{PolicyErrors, load_dir, load_dir_identified, parse_str};
use ecs_reconciler::reload::PolicyWatcher;
use proptest::prelude::*;

/// A valid document of 17 lines; the cases below change it.
const BASE: &str = r#"apiVersion: ecs-reconciler/v1
kind: RemediationPolicy
metadata:
  name: web
spec:
  target:
    clusters: [prod-web]
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

use crate::policy_files::{errors_of, file};

/// (line, column, field) of every error.
fn located(errors: &PolicyErrors) -> Vec<(usize, Option<usize>, String)> {
    errors
        .iter()
        .map(|e| (e.line, e.column, e.field.clone()))
        .collect()
}

fn named(name: &str) -> String {
    BASE.replace("  name: web\n", &format!("  name: {name}\n"))
}

/// A policy directory with one valid file, `good.yaml`.
fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("good.yaml"), BASE).unwrap();
    dir
}

/// The one error of loading `dir`, which must be about `path` and not located inside it.
fn only_error_about(dir: &Path, path: &Path) -> String {
    let errors = load_dir(dir).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    let e = &errors.0[0];
    assert_eq!(e.file, path, "{errors}");
    assert_eq!(e.line, 0, "{errors}");
    e.to_string()
}

// ---- files that cannot be read --------------------------------------------------------------

#[test]
fn a_dangling_symlink_is_an_error_naming_its_target() {
    let dir = policy_dir();
    let link = dir.path().join("web.yaml");
    symlink("gone.yaml", &link).unwrap();
    let shown = only_error_about(dir.path(), &link);
    assert!(
        shown.starts_with(&format!("{}: cannot read: ", link.display())),
        "{shown}"
    );
    assert!(shown.contains("`gone.yaml`"), "{shown}");
}

#[test]
fn a_symlink_loop_is_an_error() {
    let dir = policy_dir();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yml");
    symlink("b.yml", &a).unwrap();
    symlink("a.yaml", &b).unwrap();
    let errors = load_dir(dir.path()).unwrap_err();
    let files: Vec<&Path> = errors.iter().map(|e| e.file.as_path()).collect();
    assert_eq!(files, vec![a.as_path(), b.as_path()], "{errors}");
    for e in &errors {
        assert!(e.message.starts_with("cannot read: "), "{e}");
        // ELOOP, in whatever words the platform uses.
        assert!(e.message.to_lowercase().contains("symbolic links"), "{e}");
    }
}

#[test]
fn a_file_that_cannot_be_read_is_an_error_like_a_bad_symlink() {
    let dir = policy_dir();
    let locked = dir.path().join("locked.yaml");
    fs::write(&locked, BASE.replace("name: web", "name: locked")).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::read(&locked).is_err() {
        let shown = only_error_about(dir.path(), &locked);
        assert!(shown.contains(": cannot read: "), "{shown}");
    }
    // Running as root, mode 000 does not stop a read; remove it and use a file whose read fails
    // for root too. On Linux, /proc/self/mem is a regular file that fails with EIO at offset 0.
    fs::remove_file(&locked).unwrap();
    if cfg!(target_os = "linux") {
        let failing = dir.path().join("mem.yaml");
        symlink("/proc/self/mem", &failing).unwrap();
        let shown = only_error_about(dir.path(), &failing);
        assert!(
            shown.starts_with(&format!("{}: cannot read: ", failing.display())),
            "{shown}"
        );
    }
}

#[test]
fn a_fifo_named_like_a_policy_file_is_an_error_and_is_not_opened() {
    let dir = policy_dir();
    let fifo = dir.path().join("pipe.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // Opening a FIFO without a writer would block the load for ever.
    let shown = only_error_about(dir.path(), &fifo);
    assert!(shown.contains("cannot read: not a regular file"), "{shown}");
}

#[test]
fn a_directory_named_like_a_policy_file_is_skipped() {
    let dir = policy_dir();
    fs::create_dir(dir.path().join("archive.yaml")).unwrap();
    symlink("archive.yaml", dir.path().join("link-to-dir.yaml")).unwrap();
    let set = load_dir(dir.path()).unwrap();
    assert_eq!(set.policies.len(), 1);
}

#[test]
fn only_unreadable_files_are_their_errors_not_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("web.yaml");
    symlink("gone.yaml", &link).unwrap();
    let shown = only_error_about(dir.path(), &link);
    assert!(shown.contains("cannot read"), "{shown}");
}

#[tokio::test]
async fn an_unreadable_file_keeps_the_last_good_set_in_force() {
    let dir = policy_dir();
    let initial = load_dir_identified(dir.path()).unwrap();
    let first = initial.fingerprint.clone();
    let watcher = PolicyWatcher::new(dir.path(), initial);
    symlink("gone.yaml", dir.path().join("web.yaml")).unwrap();
    let errors = watcher.reload_now().await.unwrap_err();
    assert!(errors.0[0].message.starts_with("cannot read"), "{errors}");
    assert_eq!(watcher.current().fingerprint, first);
}

// ---- bytes that are not UTF-8 ---------------------------------------------------------------

/// `BASE` with `bad` inserted after the first occurrence of `after`.
fn with_bytes_after(after: &str, bad: &[u8]) -> Vec<u8> {
    let at = BASE.find(after).unwrap() + after.len();
    let mut bytes = BASE.as_bytes()[..at].to_vec();
    bytes.extend_from_slice(bad);
    bytes.extend_from_slice(&BASE.as_bytes()[at..]);
    bytes
}

#[test]
fn non_utf8_is_reported_at_the_line_and_column_of_the_first_bad_byte() {
    // (insert after, bytes, line, column): columns count characters, not bytes.
    let cases: &[(&str, &[u8], usize, usize)] = &[
        ("", b"\xff", 1, 1),
        ("  name: w", b"\xfe", 4, 10),
        // U+00E9 (two bytes), then a lone continuation byte.
        ("  name: w", b"\xc3\xa9\x80", 4, 11),
        // A truncated two-byte sequence.
        ("    PENDING: ", b"\xc3\x28", 10, 14),
        // U+00E9, an emoji (four bytes), then 0xff.
        ("    PENDING: ", b"\xc3\xa9\xf0\x9f\x98\x80\xff", 10, 16),
    ];
    for &(after, bad, line, column) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yaml");
        fs::write(&path, with_bytes_after(after, bad)).unwrap();
        let errors = load_dir(dir.path()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors}");
        let e = &errors.0[0];
        assert_eq!((e.line, e.column), (line, Some(column)), "{after:?}: {e}");
        assert!(e.message.contains("not valid UTF-8"), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}:{line}:{column}: ", path.display())),
            "{e}"
        );
    }
}

// ---- every problem of a document ------------------------------------------------------------

#[test]
fn two_unknown_fields_and_a_bad_duration_are_all_reported() {
    let text = BASE
        .replace(
            "kind: RemediationPolicy\n",
            "kind: RemediationPolicy\nstatus: {}\n",
        )
        .replace("replaceTask: {}", "replaceTask: {standalon: true}")
        .replace("PENDING: 15m", "PENDING: 15");
    let errors = errors_of(&text);
    assert_eq!(
        located(&errors),
        vec![
            (3, Some(1), "status".to_owned()),
            (11, Some(14), "spec.stuck.PENDING".to_owned()),
            (
                13,
                Some(19),
                "spec.remediate.replaceTask.standalon".to_owned()
            ),
        ],
        "{errors}"
    );
    // Each unknown field says which names are valid there.
    assert!(
        errors.0[0]
            .message
            .contains("apiVersion, kind, metadata, spec"),
        "{errors}"
    );
    assert!(errors.0[2].message.contains("standalone"), "{errors}");
    assert!(errors.0[1].message.contains("has no unit"), "{errors}");
}

/// (what, replace this, with this, the (line, field) of every error expected).
type StyleCase = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(usize, &'static str)],
);

#[test]
fn unknown_fields_in_every_style_are_reported_without_invented_problems() {
    let cases: &[StyleCase] = &[
        (
            "the only entry of a block mapping",
            "    maxActionsPerHour: 20\n    maxInFlightPerService: 25%\n    pauseWhenStuckAbove: 50%\n",
            "    maxActionPerHour: 20\n",
            &[(15, "spec.guardrails.maxActionPerHour")],
        ),
        (
            "an entry with a nested block value and a sequence at its indentation",
            "  target:\n",
            "  targets:\n    clusters:\n    - a\n    - b\n  labels:\n  - x\n  target:\n",
            &[(6, "spec.targets"), (10, "spec.labels")],
        ),
        (
            "flow entries first, middle and last",
            "{step: 1, maxDesired: 20, cooldown: 5m}",
            "{stp: 1, step: 1, maxDesired: 20, extra: [1, {a: b}], cooldown: 5m, last: 'x, }'}",
            &[
                (13, "spec.remediate.nudgeCapacity.stp"),
                (13, "spec.remediate.nudgeCapacity.extra"),
                (13, "spec.remediate.nudgeCapacity.last"),
            ],
        ),
        (
            "a flow mapping over several lines",
            "    clusters: [prod-web]\n",
            "    {clusters: [prod-web],\n     clusterz: [a],\n     # a comment\n     standalone: true}\n",
            &[(8, "spec.target.clusterz")],
        ),
    ];
    for &(what, from, to, expected) in cases {
        assert_eq!(BASE.matches(from).count(), 1, "{what}");
        let text = BASE.replacen(from, to, 1);
        let errors = errors_of(&text);
        let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(got, expected, "{what}:\n{errors}\n{text}");
        for e in &errors {
            assert!(e.message.starts_with("unknown field"), "{what}: {e}");
        }
    }
}

#[test]
fn an_unknown_field_and_a_type_error_after_it_are_both_reported() {
    let text = BASE
        .replace("  remediate:\n", "  remedy: 1\n  remediate:\n")
        .replace("maxActionsPerHour: 20", "maxActionsPerHour: many");
    let errors = errors_of(&text);
    let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (11, "spec.remedy"),
            (16, "spec.guardrails.maxActionsPerHour")
        ],
        "{errors}"
    );
}

#[test]
fn problems_of_a_later_document_are_at_the_files_lines() {
    let third = named("third")
        .replace(
            "kind: RemediationPolicy\n",
            "kind: RemediationPolicy\ntypo: 1\n",
        )
        .replace("PENDING: 15m", "PENDING: 0s");
    let text = format!("{}---\n{}---\n{third}", named("first"), named("second"));
    // The third document starts on line 37 (two documents of 17 lines and two markers).
    let errors = errors_of(&text);
    let got: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        got,
        vec![(37 + 2, "typo"), (37 + 10, "spec.stuck.PENDING")],
        "{errors}"
    );
    let policies = parse_str(file(), &format!("{}---\n{}", named("a"), named("b"))).unwrap();
    assert_eq!(policies[1].origin.line, 19);
}

#[test]
fn unknown_fields_are_reported_up_to_a_bound_per_document() {
    let many: String = (0..40).map(|i| format!("zz{i}: 1\n")).collect();
    let text = format!("{BASE}{many}");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 33, "{errors}");
    assert!(
        errors.0[..32]
            .iter()
            .all(|e| e.message.starts_with("unknown field"))
    );
    assert!(errors.0[32].message.contains("not checked"), "{errors}");
}

/// Lines of `BASE` (0-based) before which a sibling key can be inserted, with that key's
/// indentation and whether it lands in `spec.stuck` (whose keys are lifecycle states, reported
/// by validation rather than by serde).
fn insertion_points() -> Vec<(usize, usize, bool)> {
    BASE.lines()
        .enumerate()
        .map(|(i, line)| {
            let indent = line.len() - line.trim_start().len();
            (i, indent, (8..=9).contains(&i))
        })
        .collect()
}

proptest! {
    /// Unknown keys inserted anywhere, in block or flow style, with scalar, flow or nested block
    /// values: each is reported once, at its own line, and nothing else is.
    #[test]
    fn every_inserted_unknown_key_is_reported_at_its_line_and_nothing_else(
        inserts in prop::collection::btree_map(0usize..17, 0u8..3, 1..6),
    ) {
        let points = insertion_points();
        let mut lines: Vec<String> = Vec::new();
        let mut expected = Vec::new();
        for (i, line) in BASE.lines().enumerate() {
            if let Some(&style) = inserts.get(&i) {
                let (_, indent, in_stuck) = points[i];
                let pad = " ".repeat(indent);
                let key = format!("zz{i}");
                expected.push((lines.len() + 1, key.clone()));
                match (style, in_stuck) {
                    (_, true) => lines.push(format!("{pad}{key}: 10m")),
                    (0, _) => lines.push(format!("{pad}{key}: 1")),
                    (1, _) => lines.push(format!("{pad}{key}: {{a: [1, 2], b: 'x, y'}}")),
                    _ => {
                        lines.push(format!("{pad}{key}:"));
                        lines.push(format!("{pad}  nested: true"));
                        lines.push(format!("{pad}  list:"));
                        lines.push(format!("{pad}  - one"));
                    }
                }
            }
            lines.push(line.to_owned());
        }
        let text = lines.join("\n") + "\n";
        let errors = parse_str(file(), &text).expect_err("unknown keys are errors");
        let got: Vec<(usize, String)> = errors
            .iter()
            .map(|e| (e.line, e.field.rsplit('.').next().unwrap_or("").to_owned()))
            .collect();
        prop_assert_eq!(got, expected, "{}\n{}", errors, text);
    }
}

#[test]
fn target_accounts_select_by_account_id_or_target_name() {
    use ecs_reconciler::policy::PolicySet;
    use ecs_reconciler::targets::Place;
    let text = BASE.replace(
        "clusters: [prod-web]",
        "clusters: [prod-web]\n    accounts: [\"team-*\", \"111122223333\"]",
    );
    let policies = parse_str(file(), &format!("{text}---\n{}", named("everywhere"))).unwrap();
    let set = PolicySet {
        policies,
        fingerprint: "f".into(),
    };
    let place = |account: &str, name: Option<&str>| Place {
        account: account.into(),
        account_name: name.map(str::to_string),
        region: "us-east-1".into(),
    };
    let names = |p: &Place| -> Vec<String> {
        set.for_place(p)
            .policies
            .iter()
            .map(|p| p.name.clone())
            .collect()
    };
    assert_eq!(names(&place("111122223333", None)), ["web", "everywhere"]);
    assert_eq!(
        names(&place("444455556666", Some("team-a"))),
        ["web", "everywhere"]
    );
    assert_eq!(
        names(&place("444455556666", Some("payments"))),
        ["everywhere"]
    );
    assert_eq!(set.for_place(&place("444455556666", None)).fingerprint, "f");
}

#[test]
fn a_bad_account_glob_is_located() {
    let text = BASE.replace(
        "clusters: [prod-web]",
        "clusters: [prod-web]\n    accounts: [\"team-[\"]",
    );
    let errors = parse_str(file(), &text).expect_err("a bad glob");
    let at = located(&errors);
    assert_eq!(at.len(), 1, "{errors}");
    assert_eq!(at[0].0, 8, "{errors}");
    assert_eq!(at[0].2, "spec.target.accounts[0]");
}
