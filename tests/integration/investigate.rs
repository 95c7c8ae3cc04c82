//! The controller's root-cause read step (`src/investigate.rs`): which reads a pass makes, what
//! it keeps between passes, and that a failed or switched-off read never blocks the plan.
//!
//! The end-to-end tests on the seed scenario (`broken-launch-template`) need the causes
//! module's `inquiries` and the simulator's root-cause reads; the others run on hand-made
//! inquiries and clues.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ecs_reconciler::audit::AuditSink;
use ecs_reconciler::causes::{Clues, Inquiry, Reading, boot};
use ecs_reconciler::cloud::faults::{Fault, Faulty, Method};
use ecs_reconciler::cloud::sim::{SimAccount, build_scenario};
use ecs_reconciler::cloud::{Cloud, ErrorCategory};
use ecs_reconciler::controller::{ClusterReport, Controller, ControllerSettings};
use ecs_reconciler::demo::{SCENARIO_POLICY, scenario_policies};
use ecs_reconciler::domain::{LaunchTemplateVersion, ScalingActivity};
use ecs_reconciler::investigate::{self, MAX_READS_PER_PASS};
use ecs_reconciler::policy::{self, PolicySet};
use tokio_util::sync::CancellationToken;

use crate::support::fixtures::{GroupBuilder, TEMPLATE, container_instance, snapshot};

/// The EC2 and Auto Scaling operations of the root-cause reads.
const READS: [&str; 4] = [
    "GetConsoleOutput",
    "DescribeLaunchTemplateVersions",
    "DescribeScalingActivities",
    "DescribeInstanceTypes",
];

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000)
}

fn scenario(name: &str) -> Arc<SimAccount> {
    Arc::new(build_scenario(name, start()).expect("scenario exists").0)
}

fn controller<C: Cloud>(cloud: C, policies: PolicySet, reads: bool) -> Controller<C> {
    Controller::new(
        cloud,
        policies,
        ControllerSettings {
            dry_run: true,
            root_cause_reads: reads,
            ..ControllerSettings::default()
        },
        AuditSink::memory(),
    )
}

/// Root-cause read calls made so far, by operation.
fn reads_made(sim: &SimAccount) -> u64 {
    READS.iter().map(|op| sim.call_count(op)).sum()
}

/// One reconcile of the capacity cluster, then 30 s of virtual time.
async fn pass<C: Cloud>(c: &Controller<C>) -> ClusterReport {
    let report = c
        .reconcile_cluster("demo-capacity", &CancellationToken::new())
        .await
        .expect("the cluster is observed");
    tokio::time::advance(Duration::from_secs(30)).await;
    report
}

fn boot_inquiry(id: &str) -> Inquiry {
    Inquiry::BootOutput {
        instance_id: id.to_string(),
    }
}

fn version_reading(version: u32) -> Reading<LaunchTemplateVersion> {
    Reading::Read {
        value: LaunchTemplateVersion {
            template_id: TEMPLATE.into(),
            version,
            user_data: None,
            instance_profile: None,
            instance_type: Some("m5.large".into()),
            image_id: None,
        },
    }
}

// ---- choosing this pass's reads ----

#[test]
fn a_pass_reads_at_most_the_cap_each_inquiry_once_and_skips_the_rest() {
    let many: Vec<(Inquiry, bool)> = (0..20)
        .flat_map(|i| {
            let inquiry = boot_inquiry(&format!("i-{i:02}"));
            [(inquiry.clone(), true), (inquiry, true)]
        })
        .collect();
    let selection = investigate::choose(many);
    assert_eq!(selection.to_read.len(), MAX_READS_PER_PASS);
    assert_eq!(selection.skipped.len(), 20 - MAX_READS_PER_PASS);
    let mut all: Vec<&Inquiry> = selection.to_read.iter().chain(&selection.skipped).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 20, "every inquiry once, read or skipped");
    // The order diagnosis asked in decides what is read first.
    assert_eq!(selection.to_read[0], boot_inquiry("i-00"));
}

#[test]
fn an_inquiry_whose_policy_switches_reads_off_is_skipped_unless_another_allows_it() {
    let selection = investigate::choose([
        (boot_inquiry("i-off"), false),
        (boot_inquiry("i-both"), false),
        (boot_inquiry("i-both"), true),
    ]);
    assert_eq!(selection.to_read, vec![boot_inquiry("i-both")]);
    assert_eq!(selection.skipped, vec![boot_inquiry("i-off")]);
}

// ---- what is kept between passes ----

#[test]
fn readings_are_kept_while_their_subject_is_observed_and_the_rest_asked_again() {
    let mut snap = snapshot(Vec::new(), &[]);
    snap.auto_scaling_groups = vec![
        GroupBuilder::new(2, 10, 2)
            .instance("i-stuck", 2, 20)
            .instance("i-waiting", 2, 20)
            .instance("i-failed", 2, 20)
            .instance("i-denied", 2, 20)
            .build(),
    ];
    snap.container_instances = vec![container_instance("i-registered", true)];
    let mut clues = Clues::default();
    let read = Reading::Read {
        value: boot::read(b"cloud-init: ok\n"),
    };
    clues.boot.insert("i-stuck".into(), read.clone());
    clues.boot.insert("i-registered".into(), read.clone());
    clues.boot.insert("i-gone".into(), read.clone());
    clues.boot.insert("i-waiting".into(), Reading::NotYet);
    clues.boot.insert(
        "i-failed".into(),
        Reading::Unreadable {
            operation: "GetConsoleOutput".into(),
            category: ErrorCategory::Throttled,
        },
    );
    clues.boot.insert(
        "i-denied".into(),
        Reading::Unreadable {
            operation: "GetConsoleOutput".into(),
            category: ErrorCategory::Denied,
        },
    );
    clues
        .versions
        .insert((TEMPLATE.into(), 2), version_reading(2));
    clues
        .versions
        .insert(("lt-gone".into(), 1), version_reading(1));
    clues.activities.insert(
        "web-asg".into(),
        Reading::Read {
            value: Vec::<ScalingActivity>::new(),
        },
    );
    clues
        .instance_types
        .insert("m5.large".into(), Reading::Skipped);

    investigate::prepare(&mut clues, &snap);

    let kept: Vec<&str> = clues.boot.keys().map(String::as_str).collect();
    // Kept: read, or denied (asking again would be denied again), and still in a group.
    // Gone: an instance no group has, a throttled read and one not yet available.
    assert_eq!(kept, ["i-denied", "i-stuck"]);
    assert_eq!(
        clues.versions.keys().collect::<Vec<_>>(),
        [&(TEMPLATE.to_string(), 2)]
    );
    assert!(
        clues.activities.is_empty(),
        "scaling activities are read afresh"
    );
    assert!(
        clues.instance_types.is_empty(),
        "a skipped read is asked again"
    );
}

#[test]
fn a_skipped_inquiry_never_hides_what_was_read() {
    let mut clues = Clues::default();
    let mut found = Clues::default();
    found.boot.insert(
        "i-read".into(),
        Reading::Read {
            value: boot::read(b"ok\n"),
        },
    );
    investigate::store(
        &mut clues,
        found,
        &[boot_inquiry("i-read"), boot_inquiry("i-later")],
    );
    assert!(matches!(clues.boot["i-read"], Reading::Read { .. }));
    assert_eq!(clues.boot["i-later"], Reading::Skipped);
}

// ---- reading ----

#[tokio::test(start_paused = true)]
async fn a_denied_read_is_unreadable_and_the_other_reads_are_still_made() {
    let sim = scenario("broken-launch-template");
    let faulty = Faulty::new(Arc::clone(&sim));
    faulty.script(Method::ConsoleOutput, Fault::denied(), 1);
    let inquiries = [
        boot_inquiry("i-first"),
        Inquiry::ScalingActivities {
            group: "demo-asg".into(),
        },
    ];
    let found = investigate::read(&faulty, &inquiries).await;
    assert_eq!(
        found.boot["i-first"],
        Reading::Unreadable {
            operation: "GetConsoleOutput".into(),
            category: ErrorCategory::Denied,
        }
    );
    assert!(
        found.activities.contains_key("demo-asg"),
        "the failed read did not stop the next: {found:?}"
    );
    assert_eq!(faulty.pending(), 0, "GetConsoleOutput asked once");
}

// ---- end to end (need the causes module's inquiries and the simulator's reads) ----

#[tokio::test(start_paused = true)]
async fn root_cause_reads_per_pass_seed_scenario_against_a_healthy_cluster() {
    let mut figures = Vec::new();
    for name in ["broken-launch-template", "healthy-rollout"] {
        let sim = scenario(name);
        let c = controller(Arc::clone(&sim), scenario_policies().unwrap(), true);
        let mut per_pass = Vec::new();
        for _ in 0..4 {
            let before = reads_made(&sim);
            pass(&c).await;
            per_pass.push(reads_made(&sim) - before);
        }
        let by_operation: Vec<(&str, u64)> = READS
            .iter()
            .map(|op| (*op, sim.call_count(op)))
            .filter(|(_, n)| *n > 0)
            .collect();
        println!("{name}: root-cause read calls per pass {per_pass:?}, in all {by_operation:?}");
        figures.push(per_pass);
    }
    let (seed, healthy) = (&figures[0], &figures[1]);
    assert!(seed[0] > 0, "the seed scenario is read: {seed:?}");
    assert!(seed.iter().all(|n| *n as usize <= MAX_READS_PER_PASS));
    assert!(healthy.iter().all(|n| *n == 0), "{healthy:?}");
}

#[tokio::test(start_paused = true)]
async fn a_boot_output_is_read_once_across_passes() {
    let sim = scenario("broken-launch-template");
    let c = controller(Arc::clone(&sim), scenario_policies().unwrap(), true);
    let first = pass(&c).await;
    let read_after_first = sim.call_count("GetConsoleOutput");
    assert!(read_after_first > 0, "{:?}", sim.calls());
    assert!(
        first
            .clues
            .boot
            .values()
            .all(|r| matches!(r, Reading::Read { .. })),
        "{:?}",
        first.clues.boot
    );
    for _ in 0..3 {
        pass(&c).await;
    }
    assert_eq!(sim.call_count("GetConsoleOutput"), read_after_first);
}

#[tokio::test(start_paused = true)]
async fn a_denied_console_output_leaves_the_cordon_planned_and_names_the_unread_part() {
    let sim = scenario("broken-launch-template");
    let faulty = Faulty::new(Arc::clone(&sim));
    faulty.script(Method::ConsoleOutput, Fault::denied(), 100);
    let c = controller(faulty, scenario_policies().unwrap(), true);
    let report = pass(&c).await;
    assert!(
        report
            .plan
            .actions
            .iter()
            .any(|a| a.action.name() == "cordonLaunchTemplate"),
        "{:?}",
        report.plan
    );
    let denied = Reading::Unreadable {
        operation: "GetConsoleOutput".into(),
        category: ErrorCategory::Denied,
    };
    assert!(
        report.clues.boot.values().any(|r| *r == denied),
        "{:?}",
        report.clues.boot
    );
    assert!(
        report.plan.capacity.iter().any(|f| !f.unread.is_empty()),
        "the finding names what could not be read: {:?}",
        report.plan.capacity
    );
}

/// The built-in policy with `spec.diagnose.rootCauseReads: false`.
fn policies_without_reads() -> PolicySet {
    let text = SCENARIO_POLICY.replace(
        "  guardrails:\n",
        "  diagnose:\n    rootCauseReads: false\n  guardrails:\n",
    );
    let policies = policy::parse_str(std::path::Path::new("test"), &text).unwrap();
    assert!(!policies[0].diagnose.root_cause_reads);
    PolicySet {
        policies,
        fingerprint: "test".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn switched_off_by_configuration_or_policy_no_read_is_made() {
    for (policies, config_on) in [
        (scenario_policies().unwrap(), false),
        (policies_without_reads(), true),
    ] {
        let sim = scenario("broken-launch-template");
        let c = controller(Arc::clone(&sim), policies, config_on);
        let report = pass(&c).await;
        pass(&c).await;
        assert_eq!(reads_made(&sim), 0, "{:?}", sim.calls());
        let clues = &report.clues;
        assert!(
            !clues.boot.is_empty(),
            "the inquiries are recorded as skipped"
        );
        assert!(clues.boot.values().all(|r| *r == Reading::Skipped));
        assert!(
            report
                .plan
                .actions
                .iter()
                .any(|a| a.action.name() == "cordonLaunchTemplate"),
            "the registration evidence alone still cordons"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_root_causes_reach_the_audit_record_of_the_cordon() {
    let sim = scenario("broken-launch-template");
    let c = controller(Arc::clone(&sim), scenario_policies().unwrap(), true);
    let report = pass(&c).await;
    let codes: Vec<&str> = report
        .plan
        .capacity
        .iter()
        .flat_map(|f| f.root_causes.iter().map(|r| r.code().as_str()))
        .collect();
    assert!(!codes.is_empty(), "{:?}", report.plan.capacity);
    let records = c.audit().records();
    let cordon = records
        .iter()
        .find(|r| r.action == "cordonLaunchTemplate")
        .expect("the cordon is recorded");
    let line = cordon.to_json();
    for code in codes {
        assert!(line.contains(code), "{code} missing from {line}");
    }
}
