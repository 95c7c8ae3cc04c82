//! Root causes, pure: recorded boot outputs and UserData read into causes, the capacity
//! diagnosis with clues, the reads it asks for, and the catalogue in docs/causes.md.

use std::path::PathBuf;
use std::time::SystemTime;

use base64::Engine;
use ecs_reconciler::capacity::{CapacityFinding, Cause, diagnose_capacity, inquiries};
use ecs_reconciler::causes::boot::{self, BootFailure, BootNote};
use ecs_reconciler::causes::userdata::{self, ClusterSetting, Mount, Part, UserDataError};
use ecs_reconciler::causes::{
    CauseCode, Clues, FileSystem, Inquiry, LaunchFailure, Reading, RootCause,
};
use ecs_reconciler::cloud::ErrorCategory;
use ecs_reconciler::decision::Action;
use ecs_reconciler::diagnose::{Sightings, diagnose};
use ecs_reconciler::domain::{
    ClusterSnapshot, DesiredStatus, InstanceTypeSize, LaunchTemplateVersion, ScalingActivity,
    ServiceEvent, TaskStatus,
};
use ecs_reconciler::history::History;
use ecs_reconciler::plan::{Plan, plan};
use ecs_reconciler::policy::PolicySet;

use crate::support::fixtures::*;

fn fixture(path: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn encoded(path: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(fixture(path))
}

const FSX_LINE: &str = "mount.lustre: mount fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com@tcp:/abcdefgh at /fsx failed: Connection timed out";
const FSX_TARGET: &str = "fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com@tcp:/abcdefgh";

// ---------------------------------------------------------------------------------------------
// Boot output

struct BootCase {
    file: &'static str,
    code: Option<CauseCode>,
    file_system: Option<FileSystem>,
    quote: &'static [&'static str],
    notes: &'static [BootNote],
    phrase: Option<&'static str>,
}

const BOOT_CASES: &[BootCase] = &[
    BootCase {
        file: "boot/fsx_lustre_timeout.txt",
        code: Some(CauseCode::BootMountFailed),
        file_system: Some(FileSystem::FsxLustre),
        quote: &[
            FSX_LINE,
            "LustreError: 2402:0:(mgc_request.c:251:do_config_log_add()) MGC10.0.40.17@tcp: failed processing log, type 1: rc = -110",
            "LustreError: 15c-8: MGC10.0.40.17@tcp: Confguration from log abcdefgh-client failed from MGS -110. C…r between node & MGS, a bad configuration, or other errors.",
        ],
        notes: &[],
        phrase: Some("FSx mount timed out"),
    },
    BootCase {
        file: "boot/efs_mount_failed.txt",
        code: Some(CauseCode::BootMountFailed),
        file_system: Some(FileSystem::Efs),
        quote: &[
            "Failed to resolve \"fs-0a1b2c3d4e5f60718.efs.us-east-1.amazonaws.com\" - check that your file system I…at the VPC has an EFS mount target for this file system ID.",
            "2026-12-02 01:41:02,118 - util.py[WARNING]: Failed running /var/lib/cloud/instance/scripts/part-001 [1]",
            "2026-12-02 01:41:02,133 - cc_scripts_user.py[WARNING]: Failed to run module scripts-user (scripts in /var/lib/cloud/instance/scripts)",
        ],
        notes: &[],
        phrase: Some("EFS mount failed"),
    },
    BootCase {
        file: "boot/nfs_systemd_hang.txt",
        code: Some(CauseCode::BootMountFailed),
        file_system: Some(FileSystem::Nfs),
        quote: &[
            "nfs: server 10.0.3.15 not responding, timed out",
            "systemd[1]: data.mount: Mounting timed out. Terminating.",
            "systemd[1]: data.mount: Failed with result 'timeout'.",
        ],
        notes: &[],
        phrase: Some("NFS mount timed out"),
    },
    BootCase {
        file: "boot/agent_endpoint_timeout.txt",
        code: Some(CauseCode::BootAgentFailed),
        file_system: None,
        quote: &[
            "ecs-init[2690]: level=error time=2026-12-02T01:41:03Z msg=\"Unable to register as a container instanc…\": dial tcp 52.46.154.12:443: i/o timeout\" module=client.go",
            "ecs-init[2690]: level=error time=2026-12-02T01:41:03Z msg=\"Error registering container instance\" error=\"RequestError: send request failed\"",
            "systemd[1]: ecs.service: Failed with result 'exit-code'.",
        ],
        notes: &[],
        phrase: Some("ECS agent cannot reach ECS"),
    },
    BootCase {
        file: "boot/script_exit_nonzero.txt",
        code: Some(CauseCode::BootScriptFailed),
        file_system: None,
        quote: &[
            "2026-12-02 01:40:51,902 - util.py[WARNING]: Failed running /var/lib/cloud/instance/scripts/part-001 [254]",
            "2026-12-02 01:40:51,915 - cc_scripts_user.py[WARNING]: Failed to run module scripts-user (scripts in /var/lib/cloud/instance/scripts)",
            "2026-12-02 01:40:51,916 - util.py[WARNING]: Running module scripts-user (<module 'cloudinit.config.c…site-packages/cloudinit/config/cc_scripts_user.py'>) failed",
        ],
        notes: &[],
        phrase: Some("UserData script failed"),
    },
    BootCase {
        file: "boot/clean_boot.txt",
        code: None,
        file_system: None,
        quote: &[],
        notes: &[],
        phrase: None,
    },
    BootCase {
        file: "boot/empty.txt",
        code: None,
        file_system: None,
        quote: &[],
        notes: &[BootNote::Empty],
        phrase: None,
    },
    BootCase {
        file: "boot/binary.bin",
        code: Some(CauseCode::BootMountFailed),
        file_system: Some(FileSystem::Nfs),
        quote: &["mount.nfs4: Connection timed out"],
        notes: &[BootNote::Binary],
        phrase: Some("NFS mount timed out"),
    },
    BootCase {
        file: "boot/truncated_mid_line.txt",
        code: Some(CauseCode::BootMountFailed),
        file_system: Some(FileSystem::FsxLustre),
        quote: &[FSX_LINE],
        notes: &[BootNote::Truncated],
        phrase: Some("FSx mount timed out"),
    },
];

#[test]
fn every_recorded_boot_output_gives_its_cause_subject_and_lines() {
    for case in BOOT_CASES {
        let report = boot::read(&fixture(case.file));
        let cause = report.root_cause("i-0abc");
        assert_eq!(
            cause.as_ref().map(RootCause::code),
            case.code,
            "{}",
            case.file
        );
        assert_eq!(report.quote, case.quote, "{}", case.file);
        assert_eq!(report.notes, case.notes, "{}", case.file);
        assert!(report.quote.len() <= boot::MAX_QUOTE, "{}", case.file);
        if let Some(cause) = &cause {
            let (RootCause::BootMountFailed { instance_id, .. }
            | RootCause::BootScriptFailed { instance_id, .. }
            | RootCause::BootAgentFailed { instance_id, .. }) = cause
            else {
                panic!("{}: not a boot cause: {cause:?}", case.file)
            };
            assert_eq!(instance_id, "i-0abc", "{}", case.file);
            assert_eq!(cause.instance_id(), Some("i-0abc"), "{}", case.file);
            assert_eq!(cause.quote(), case.quote, "{}", case.file);
        }
        assert_eq!(
            cause.as_ref().map(RootCause::phrase).as_deref(),
            case.phrase,
            "{}",
            case.file
        );
        match (report.failure, case.file_system) {
            (Some(BootFailure::Mount { file_system, .. }), Some(expected)) => {
                assert_eq!(file_system, expected, "{}", case.file)
            }
            (Some(BootFailure::Mount { file_system, .. }), None) => {
                panic!("{}: unexpected mount failure of {file_system:?}", case.file)
            }
            (_, Some(expected)) => panic!("{}: expected a {expected:?} mount failure", case.file),
            _ => {}
        }
    }
}

#[test]
fn a_mount_times_out_only_when_its_own_lines_say_so() {
    // The agent's line says "i/o timeout"; the mount's own line says "access denied".
    let output = b"mount.nfs4: access denied by server while mounting 10.0.3.15:/export\n\
        ecs-init[2690]: level=error msg=\"Unable to register as a container instance\" \
        error=\"dial tcp 52.46.154.12:443: i/o timeout\"\n";
    let report = boot::read(output);
    assert_eq!(
        report.failure,
        Some(BootFailure::Mount {
            file_system: FileSystem::Nfs,
            timed_out: false
        })
    );
    assert_eq!(report.quote.len(), 2, "{:?}", report.quote);
    let cause = report.root_cause("i-0abc").expect("a mount failure");
    assert_eq!(cause.phrase(), "NFS mount failed");
    // A systemd unit's "timeout" line tells about the mount it names none of.
    let output = b"mount.nfs4: mount to NFS server '10.0.3.15' failed\n\
        systemd[1]: data.mount: Failed with result 'timeout'.\n";
    let report = boot::read(output);
    assert_eq!(
        report.failure,
        Some(BootFailure::Mount {
            file_system: FileSystem::Nfs,
            timed_out: true
        })
    );
}

#[test]
fn only_boot_causes_name_an_instance() {
    for cause in every_root_cause() {
        let boot = matches!(
            cause.code(),
            CauseCode::BootMountFailed | CauseCode::BootScriptFailed | CauseCode::BootAgentFailed
        );
        assert_eq!(cause.instance_id().is_some(), boot, "{cause:?}");
    }
}

#[test]
fn quoted_lines_are_clean_of_escapes_carriage_returns_and_long_tails() {
    for case in BOOT_CASES {
        for line in boot::read(&fixture(case.file)).quote {
            assert!(
                line.chars().count() <= boot::QUOTE_WIDTH,
                "{}: {line}",
                case.file
            );
            assert!(
                !line.chars().any(char::is_control),
                "{}: {line:?}",
                case.file
            );
            assert_eq!(line.trim(), line, "{}", case.file);
        }
    }
}

#[test]
fn a_clean_boot_reads_every_line_and_finds_nothing() {
    let report = boot::read(&fixture("boot/clean_boot.txt"));
    assert_eq!(report.failure, None);
    assert_eq!(report.lines, 11);
    assert_eq!(report.describe(), "no failure in 11 lines");
}

#[test]
fn odd_boot_outputs_never_panic_and_say_what_they_are() {
    let whitespace = boot::read(b"  \r\n\t\n");
    assert_eq!(whitespace.notes, vec![BootNote::Empty]);
    assert_eq!(whitespace.root_cause("i-0abc"), None);
    // Cut inside a multi-byte character, with an unterminated escape sequence.
    let mut cut = "mount.nfs: mount system call failed: Connection timed out\n\x1b[0;1;3"
        .as_bytes()
        .to_vec();
    cut.extend_from_slice(&"é".as_bytes()[..1]);
    let report = boot::read(&cut);
    assert_eq!(report.notes, vec![BootNote::Truncated]);
    assert_eq!(
        report.quote,
        vec!["mount.nfs: mount system call failed: Connection timed out".to_string()]
    );
    let all_binary: Vec<u8> = (0u8..=255).cycle().take(4096).collect();
    let report = boot::read(&all_binary);
    assert!(
        report.notes.contains(&BootNote::Binary),
        "{:?}",
        report.notes
    );
    assert!(
        report
            .quote
            .iter()
            .all(|l| l.chars().count() <= boot::QUOTE_WIDTH)
    );
}

// ---------------------------------------------------------------------------------------------
// UserData

struct UserDataCase {
    name: &'static str,
    base64: String,
    gzip: bool,
    parts: Vec<Part>,
    cluster: ClusterSetting,
    mounts: Vec<Mount>,
    /// The root cause against cluster prod-web, as (code, phrase).
    cause: Option<(CauseCode, &'static str)>,
}

fn mount(file_system: FileSystem, target: &str, at: &str) -> Mount {
    Mount {
        file_system,
        target: Some(target.into()),
        mount_point: Some(at.into()),
    }
}

fn userdata_cases() -> Vec<UserDataCase> {
    let named = |c: &str| ClusterSetting::Named(c.into());
    vec![
        UserDataCase {
            name: "plain bash",
            base64: encoded("userdata/fsx_lustre.sh"),
            gzip: false,
            parts: vec![Part::ShellScript],
            cluster: named("prod-web"),
            mounts: vec![mount(FileSystem::FsxLustre, FSX_TARGET, "/fsx")],
            cause: None,
        },
        UserDataCase {
            name: "gzip",
            base64: String::from_utf8(fixture("userdata/fsx_lustre.sh.gz.b64")).unwrap(),
            gzip: true,
            parts: vec![Part::ShellScript],
            cluster: named("prod-web"),
            mounts: vec![mount(FileSystem::FsxLustre, FSX_TARGET, "/fsx")],
            cause: None,
        },
        UserDataCase {
            name: "MIME multi-part",
            base64: encoded("userdata/multipart.mime"),
            gzip: false,
            parts: vec![Part::CloudConfig, Part::ShellScript, Part::Include],
            cluster: named("prod-web"),
            mounts: vec![mount(FileSystem::Efs, "fs-0a1b2c3d4e5f60718:/", "/mnt/efs")],
            cause: None,
        },
        UserDataCase {
            name: "cloud-config, another cluster",
            base64: encoded("userdata/cloud_config.yaml"),
            gzip: false,
            parts: vec![Part::CloudConfig],
            cluster: named("batch-jobs"),
            mounts: vec![mount(FileSystem::Nfs, "10.0.3.15:/export/data", "/data")],
            cause: Some((CauseCode::UserDataOtherCluster, "UserData joins cluster batch-jobs")),
        },
        UserDataCase {
            name: "another cluster, SMB",
            base64: encoded("userdata/other_cluster.sh"),
            gzip: false,
            parts: vec![Part::ShellScript],
            cluster: named("staging-web"),
            mounts: vec![mount(
                FileSystem::Smb,
                "//fileserver.corp.example.com/reports",
                "/mnt/share",
            )],
            cause: Some((CauseCode::UserDataOtherCluster, "UserData joins cluster staging-web")),
        },
        UserDataCase {
            name: "no ECS_CLUSTER (only a comment)",
            base64: encoded("userdata/no_cluster.sh"),
            gzip: false,
            parts: vec![Part::ShellScript],
            cluster: ClusterSetting::NotSet,
            mounts: vec![],
            cause: Some((CauseCode::UserDataDefaultCluster, "UserData joins cluster default")),
        },
        UserDataCase {
            name: "computed cluster name",
            base64: base64::engine::general_purpose::STANDARD
                .encode("#!/bin/bash\nCLUSTER=$(cat /etc/cluster)\necho ECS_CLUSTER=$CLUSTER >> /etc/ecs/ecs.config\n"),
            gzip: false,
            parts: vec![Part::ShellScript],
            cluster: ClusterSetting::Unresolved("$CLUSTER".into()),
            mounts: vec![],
            cause: None,
        },
        UserDataCase {
            name: "a later empty ECS_CLUSTER= (a grep of the config) keeps the named cluster",
            base64: base64::engine::general_purpose::STANDARD.encode(
                "#!/bin/bash\necho ECS_CLUSTER=batch-jobs >> /etc/ecs/ecs.config\ngrep -q ECS_CLUSTER= /etc/ecs/ecs.config || exit 1\n",
            ),
            gzip: false,
            parts: vec![Part::ShellScript],
            cluster: named("batch-jobs"),
            mounts: vec![],
            cause: Some((CauseCode::UserDataOtherCluster, "UserData joins cluster batch-jobs")),
        },
        UserDataCase {
            name: "Bottlerocket settings",
            base64: encoded("userdata/bottlerocket.toml"),
            gzip: false,
            parts: vec![Part::BottlerocketSettings],
            cluster: named("staging-web"),
            mounts: vec![],
            cause: Some((CauseCode::UserDataOtherCluster, "UserData joins cluster staging-web")),
        },
        UserDataCase {
            name: "Windows PowerShell",
            base64: encoded("userdata/windows.ps1"),
            gzip: false,
            parts: vec![Part::PowerShell],
            cluster: named("prod-web"),
            mounts: vec![],
            cause: None,
        },
        UserDataCase {
            name: "cloud-config writing the agent config base64-encoded",
            base64: base64::engine::general_purpose::STANDARD.encode(format!(
                "#cloud-config\nwrite_files:\n  - path: /etc/ecs/ecs.config\n    encoding: b64\n    content: {}\n",
                base64::engine::general_purpose::STANDARD.encode("ECS_CLUSTER=batch-jobs\n")
            )),
            gzip: false,
            parts: vec![Part::CloudConfig],
            cluster: named("batch-jobs"),
            mounts: vec![],
            cause: Some((CauseCode::UserDataOtherCluster, "UserData joins cluster batch-jobs")),
        },
        UserDataCase {
            name: "only an #include",
            base64: base64::engine::general_purpose::STANDARD
                .encode("#include\nhttps://config.example.com/bootstrap.sh\n"),
            gzip: false,
            parts: vec![Part::Include],
            cluster: ClusterSetting::NotSet,
            mounts: vec![],
            cause: None,
        },
    ]
}

#[test]
fn every_recorded_userdata_gives_its_cluster_mounts_and_cause() {
    for case in userdata_cases() {
        let report = userdata::read(&case.base64).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(report.gzip, case.gzip, "{}", case.name);
        assert_eq!(report.parts, case.parts, "{}", case.name);
        assert_eq!(report.ecs_cluster, case.cluster, "{}", case.name);
        assert_eq!(report.mounts, case.mounts, "{}", case.name);
        let cause = report.root_cause(
            "lt-0web",
            2,
            CLUSTER,
            "arn:aws:ecs:us-east-1:123456789012:cluster/prod-web",
        );
        assert_eq!(
            cause.as_ref().map(|c| (c.code(), c.phrase())),
            case.cause.map(|(code, phrase)| (code, phrase.to_string())),
            "{}",
            case.name
        );
    }
}

#[test]
fn userdata_naming_the_cluster_by_arn_joins_it() {
    let b64 = base64::engine::general_purpose::STANDARD.encode(
        "#!/bin/bash\necho ECS_CLUSTER=arn:aws:ecs:us-east-1:123456789012:cluster/prod-web >> /etc/ecs/ecs.config\n",
    );
    let report = userdata::read(&b64).unwrap();
    assert_eq!(report.root_cause("lt-0web", 2, CLUSTER, "arn:other"), None);
    assert!(
        report
            .root_cause("lt-0web", 2, "prod-api", "arn:other")
            .is_some()
    );
}

#[test]
fn bad_userdata_is_an_error_that_names_what_is_wrong() {
    let raw = String::from_utf8(fixture("userdata/not_base64.txt")).unwrap();
    let err = userdata::read(&raw).unwrap_err();
    assert!(matches!(err, UserDataError::Base64(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("UserData is not valid base64: "),
        "{err}"
    );
    // gzip magic, then garbage.
    let b64 =
        base64::engine::general_purpose::STANDARD.encode([0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad]);
    let err = userdata::read(&b64).unwrap_err();
    assert!(matches!(err, UserDataError::Gzip(_)), "{err:?}");
    assert!(!err.to_string().contains('\n'));
}

// ---------------------------------------------------------------------------------------------
// Capacity diagnosis with clues

const STAGING_USERDATA: &str = "userdata/other_cluster.sh";

fn seed_story() -> ClusterSnapshot {
    let mut snap = snapshot(waiting_tasks(3, 20), &[("web", 10)]);
    snap.capacity_providers = vec![provider(false)];
    snap.auto_scaling_groups = vec![
        GroupBuilder::new(3, 10, 2)
            .instance("i-good", 1, 60)
            .instance("i-bad1", 2, 15)
            .instance("i-bad2", 2, 14)
            .build(),
    ];
    snap.container_instances = vec![container_instance("i-good", true)];
    snap
}

/// Every instance registered; the group has room: capacity short.
fn short_story(instance_type: &str) -> ClusterSnapshot {
    let mut snap = snapshot(waiting_tasks(2, 20), &[("web", 10)]);
    snap.capacity_providers = vec![provider(false)];
    let mut group = GroupBuilder::new(2, 10, 1)
        .instance("i-one", 1, 60)
        .instance("i-two", 1, 50)
        .build();
    for i in &mut group.instances {
        i.instance_type = Some(instance_type.into());
    }
    snap.auto_scaling_groups = vec![group];
    snap.container_instances = vec![
        container_instance("i-one", true),
        container_instance("i-two", true),
    ];
    snap
}

fn version(user_data: Option<String>, profile: Option<&str>) -> Reading<LaunchTemplateVersion> {
    Reading::Read {
        value: LaunchTemplateVersion {
            template_id: TEMPLATE.into(),
            version: 2,
            user_data,
            instance_profile: profile.map(str::to_string),
            instance_type: Some("m5.large".into()),
            image_id: Some("ami-0123".into()),
        },
    }
}

fn m5_large() -> Reading<InstanceTypeSize> {
    Reading::Read {
        value: InstanceTypeSize {
            instance_type: "m5.large".into(),
            vcpus: 2,
            memory_mib: 8192,
        },
    }
}

fn seed_clues() -> Clues {
    let mut clues = Clues::default();
    clues.versions.insert(
        (TEMPLATE.into(), 2),
        version(
            Some(encoded("userdata/fsx_lustre.sh")),
            Some("ecsInstanceRole"),
        ),
    );
    clues.boot.insert(
        "i-bad1".into(),
        Reading::Read {
            value: boot::read(&fixture("boot/fsx_lustre_timeout.txt")),
        },
    );
    clues
}

fn findings(snap: &ClusterSnapshot, set: &PolicySet, clues: &Clues) -> Vec<CapacityFinding> {
    let diagnosis = diagnose(snap, set, &Sightings::default());
    diagnose_capacity(snap, &diagnosis, set, clues)
}

fn one(snap: &ClusterSnapshot, clues: &Clues) -> CapacityFinding {
    let mut all = findings(snap, &capacity_policy(), clues);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn run(snap: &ClusterSnapshot, clues: &Clues) -> Plan {
    let set = capacity_policy();
    let diagnosis = diagnose(snap, &set, &Sightings::default());
    let history = History::rebuild(snap, &[]);
    plan(
        snap,
        diagnosis,
        &set,
        &history,
        &Sightings::default(),
        clues,
        false,
    )
}

fn cordons(plan: &Plan) -> Vec<u32> {
    plan.actions
        .iter()
        .filter_map(|a| match &a.action {
            Action::CordonLaunchTemplate { version, .. } => Some(*version),
            _ => None,
        })
        .collect()
}

fn nudges(plan: &Plan) -> usize {
    plan.actions
        .iter()
        .filter(|a| matches!(a.action, Action::NudgeCapacity { .. }))
        .count()
}

#[test]
fn the_seed_story_ends_its_reason_with_the_fsx_mount_line() {
    let finding = one(&seed_story(), &seed_clues());
    assert!(
        matches!(
            finding.cause,
            Cause::BrokenLaunchTemplateVersion { version: 2, .. }
        ),
        "{:?}",
        finding.cause
    );
    let Some(RootCause::BootMountFailed {
        instance_id,
        file_system,
        timed_out,
        quote,
    }) = finding.root_causes.first()
    else {
        panic!("a mount failure first: {:?}", finding.root_causes)
    };
    assert_eq!(instance_id, "i-bad1");
    assert_eq!(*file_system, FileSystem::FsxLustre);
    assert!(*timed_out);
    assert_eq!(quote[0], FSX_LINE);
    assert!(
        finding
            .reason
            .ends_with(&format!("; why: i-bad1: {FSX_LINE}")),
        "{}",
        finding.reason
    );
    assert_eq!(finding.root_causes[0].phrase(), "FSx mount timed out");
    assert!(finding.evidence["bootOutput i-bad1"].starts_with(FSX_LINE));
    assert_eq!(
        finding.evidence["userData version 2"],
        format!("ECS_CLUSTER=prod-web; mounts FSx for Lustre {FSX_TARGET} at /fsx")
    );
    assert!(finding.unread.is_empty(), "{:?}", finding.unread);
    assert_eq!(finding.evidence["rootCauses"], "bootMountFailed");
    // The audit trail's form: typed, with the stable code.
    let json = serde_json::to_value(&finding).unwrap();
    assert_eq!(json["rootCauses"][0]["code"], "bootMountFailed");
    assert_eq!(json["rootCauses"][0]["instanceId"], "i-bad1");
    assert_eq!(json["rootCauses"][0]["fileSystem"], "fsxLustre");
    assert_eq!(json["rootCauses"][0]["timedOut"], true);
    assert_eq!(json["rootCauses"][0]["quote"][0], FSX_LINE);
}

#[test]
fn without_clues_the_reason_is_the_registration_evidence_alone() {
    let bare = one(&seed_story(), &Clues::default());
    let explained = one(&seed_story(), &seed_clues());
    assert!(bare.root_causes.is_empty());
    assert_eq!(bare.cause, explained.cause);
    assert!(
        explained.reason.starts_with(&bare.reason),
        "{}",
        explained.reason
    );
    assert_ne!(explained.reason, bare.reason);
}

#[test]
fn unreadable_clues_are_recorded_and_leave_the_cordon_standing() {
    let mut clues = Clues::default();
    clues.boot.insert(
        "i-bad1".into(),
        Reading::Unreadable {
            operation: "GetConsoleOutput".into(),
            category: ErrorCategory::Denied,
        },
    );
    clues.boot.insert("i-bad2".into(), Reading::NotYet);
    clues.versions.insert(
        (TEMPLATE.into(), 2),
        Reading::Unreadable {
            operation: "DescribeLaunchTemplateVersions".into(),
            category: ErrorCategory::Throttled,
        },
    );
    let snap = seed_story();
    let finding = one(&snap, &clues);
    assert!(matches!(
        finding.cause,
        Cause::BrokenLaunchTemplateVersion { version: 2, .. }
    ));
    assert!(finding.root_causes.is_empty());
    assert_eq!(
        finding.unread,
        vec![
            "DescribeLaunchTemplateVersions lt-0web version 2: throttled".to_string(),
            "GetConsoleOutput i-bad1: denied".to_string(),
            "GetConsoleOutput i-bad2: not available yet".to_string(),
        ]
    );
    assert!(finding.evidence["unread"].contains("GetConsoleOutput i-bad1: denied"));
    assert_eq!(cordons(&run(&snap, &clues)), vec![2]);
    assert_eq!(cordons(&run(&snap, &Clues::default())), vec![2]);
}

#[test]
fn userdata_that_is_not_base64_is_unread_not_fatal() {
    let mut clues = Clues::default();
    clues.versions.insert(
        (TEMPLATE.into(), 2),
        version(Some("#!/bin/bash".into()), Some("ecsInstanceRole")),
    );
    let finding = one(&seed_story(), &clues);
    assert!(matches!(
        finding.cause,
        Cause::BrokenLaunchTemplateVersion { .. }
    ));
    assert_eq!(finding.unread.len(), 1);
    assert!(
        finding.unread[0].starts_with("UserData lt-0web version 2: UserData is not valid base64"),
        "{:?}",
        finding.unread
    );
}

#[test]
fn a_version_joining_another_cluster_is_cordoned_like_one_that_fails_to_boot() {
    let mut clues = Clues::default();
    clues.versions.insert(
        (TEMPLATE.into(), 2),
        version(Some(encoded(STAGING_USERDATA)), Some("ecsInstanceRole")),
    );
    let snap = seed_story();
    let finding = one(&snap, &clues);
    assert!(matches!(
        finding.cause,
        Cause::BrokenLaunchTemplateVersion { version: 2, .. }
    ));
    assert_eq!(
        finding.root_causes,
        vec![RootCause::UserDataOtherCluster {
            template_id: TEMPLATE.into(),
            version: 2,
            cluster: "staging-web".into(),
        }]
    );
    assert!(
        finding
            .reason
            .contains("why: version 2's UserData sets ECS_CLUSTER=staging-web")
    );
    assert_eq!(
        cordons(&run(&snap, &clues)),
        cordons(&run(&snap, &seed_clues()))
    );
    assert_eq!(cordons(&run(&snap, &clues)), vec![2]);
}

#[test]
fn a_version_without_an_instance_profile_says_so() {
    let mut clues = Clues::default();
    clues.versions.insert(
        (TEMPLATE.into(), 2),
        version(Some(encoded("userdata/fsx_lustre.sh")), None),
    );
    let finding = one(&seed_story(), &clues);
    assert_eq!(
        finding.root_causes,
        vec![RootCause::NoInstanceProfile {
            template_id: TEMPLATE.into(),
            version: 2
        }]
    );
    assert_eq!(finding.root_causes[0].phrase(), "no instance profile");
}

#[test]
fn a_mount_failure_outranks_what_the_userdata_gets_wrong() {
    let mut clues = seed_clues();
    clues
        .versions
        .insert((TEMPLATE.into(), 2), version(None, None));
    let codes: Vec<CauseCode> = one(&seed_story(), &clues)
        .root_causes
        .iter()
        .map(RootCause::code)
        .collect();
    assert_eq!(
        codes,
        vec![
            CauseCode::BootMountFailed,
            CauseCode::NoInstanceProfile,
            CauseCode::UserDataDefaultCluster
        ]
    );
}

fn activity(status: &str, message: &str, at: SystemTime) -> ScalingActivity {
    ScalingActivity {
        activity_id: format!("act-{status}-{message:.8}"),
        status_code: status.into(),
        status_message: Some(message.into()),
        description: Some("Launching a new EC2 instance.  Status Reason: ...".into()),
        cause: None,
        start_time: Some(at),
    }
}

const VCPU: &str = "You have requested more vCPU capacity than your current vCPU limit of 32 allows for the instance bucket that the specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit. Launching EC2 instance failed.";

#[test]
fn failed_launches_since_the_wait_turn_capacity_short_into_launch_failing() {
    let snap = short_story("m5.large");
    let mut clues = Clues::default();
    clues.activities.insert(
        GROUP.into(),
        Reading::Read {
            value: vec![
                activity("Failed", VCPU, ago(5)),
                activity("Successful", "", ago(50)),
            ],
        },
    );
    let finding = one(&snap, &clues);
    assert_eq!(
        finding.cause,
        Cause::LaunchFailing {
            failure: LaunchFailure::VcpuLimit
        }
    );
    assert_eq!(finding.root_causes[0].phrase(), "vCPU limit reached");
    assert!(
        finding
            .reason
            .contains("why: group web-asg's launches fail: You have requested")
    );
    assert_eq!(nudges(&run(&snap, &clues)), 0);
    assert_eq!(nudges(&run(&snap, &Clues::default())), 1);
}

#[test]
fn launch_failures_before_the_wait_or_followed_by_success_change_nothing() {
    let snap = short_story("m5.large");
    for activities in [
        vec![activity("Failed", VCPU, ago(30))],
        vec![
            activity("Successful", "", ago(3)),
            activity("Failed", VCPU, ago(5)),
        ],
    ] {
        let mut clues = Clues::default();
        clues
            .activities
            .insert(GROUP.into(), Reading::Read { value: activities });
        let finding = one(&snap, &clues);
        assert!(
            matches!(finding.cause, Cause::CapacityShort { .. }),
            "{:?}",
            finding.cause
        );
        assert!(finding.root_causes.is_empty());
    }
}

#[test]
fn launch_failure_messages_are_classified() {
    use ecs_reconciler::causes::activities::classify;
    let cases = [
        (VCPU, LaunchFailure::VcpuLimit),
        (
            "We currently do not have sufficient m5.large capacity in the Availability Zone you requested (us-east-1a). Launching EC2 instance failed.",
            LaunchFailure::InsufficientCapacity,
        ),
        (
            "The image id '[ami-0deadbeef]' does not exist. Launching EC2 instance failed.",
            LaunchFailure::InvalidImage,
        ),
        ("InvalidAMIID.NotFound", LaunchFailure::InvalidImage),
        (
            "Access denied when attempting to assume role",
            LaunchFailure::Other,
        ),
    ];
    for (message, expected) in cases {
        assert_eq!(classify(message), expected, "{message}");
    }
}

fn sized(snap: &mut ClusterSnapshot, cpu: u32, memory: u32, how_many: usize) {
    for task in snap.tasks.iter_mut().take(how_many) {
        task.cpu = Some(cpu);
        task.memory = Some(memory);
    }
}

#[test]
fn tasks_larger_than_the_instance_type_are_no_instance_fits_and_never_nudged() {
    let mut snap = short_story("m5.large");
    sized(&mut snap, 4096, 16384, 2);
    let mut clues = Clues::default();
    clues.instance_types.insert("m5.large".into(), m5_large());
    let finding = one(&snap, &clues);
    assert_eq!(
        finding.cause,
        Cause::NoInstanceFits {
            instance_type: "m5.large".into()
        }
    );
    assert_eq!(finding.root_causes[0].phrase(), "task larger than m5.large");
    assert_eq!(nudges(&run(&snap, &clues)), 0);
}

#[test]
fn tasks_that_fit_keep_the_capacity_cause() {
    let mut snap = short_story("m5.large");
    sized(&mut snap, 2048, 8192, 2);
    let mut clues = Clues::default();
    clues.instance_types.insert("m5.large".into(), m5_large());
    let finding = one(&snap, &clues);
    assert!(matches!(finding.cause, Cause::CapacityShort { .. }));
    assert!(finding.root_causes.is_empty());
    assert_eq!(
        finding.evidence["instanceType m5.large"],
        "2 vCPUs, 8192 MiB"
    );
    // One task too large, one that fits: the nudge still serves the one that fits.
    sized(&mut snap, 4096, 4096, 1);
    let finding = one(&snap, &clues);
    assert!(matches!(finding.cause, Cause::CapacityShort { .. }));
    assert_eq!(finding.root_causes[0].code(), CauseCode::NoInstanceFits);
}

#[test]
fn an_unread_instance_type_proves_nothing() {
    let mut snap = short_story("m5.large");
    sized(&mut snap, 4096, 16384, 2);
    let mut clues = Clues::default();
    clues.instance_types.insert(
        "m5.large".into(),
        Reading::Unreadable {
            operation: "DescribeInstanceTypes".into(),
            category: ErrorCategory::Denied,
        },
    );
    let finding = one(&snap, &clues);
    assert!(matches!(finding.cause, Cause::CapacityShort { .. }));
    assert_eq!(
        finding.unread,
        vec!["DescribeInstanceTypes m5.large: denied".to_string()]
    );
}

#[test]
fn ecs_refusing_tasks_for_the_provisioning_quota_is_reported_as_such() {
    // At the ceiling: capacity exhausted, unless ECS says why nothing more is placed.
    let mut snap = short_story("m5.large");
    snap.auto_scaling_groups[0].max_size = 2;
    let mut refused = TaskBuilder::service("web", "refused")
        .stopped(
            TaskStatus::Stopped,
            2,
            "Capacity provider tasks provisioning capacity limit was exceeded",
        )
        .build();
    refused.stop_code = Some("TaskFailedToStart".into());
    refused.desired_status = DesiredStatus::Stopped;
    let exhausted = one(&snap, &Clues::default());
    assert!(
        matches!(exhausted.cause, Cause::CapacityExhausted { .. }),
        "{:?}",
        exhausted.cause
    );
    snap.tasks.push(refused);
    let finding = one(&snap, &Clues::default());
    assert_eq!(finding.cause, Cause::ProvisioningQuota { provisioning: 2 });
    assert_eq!(
        finding.root_causes[0].phrase(),
        "PROVISIONING quota reached"
    );
    assert_eq!(
        finding.evidence["stoppedTask refused"],
        "TaskFailedToStart: Capacity provider tasks provisioning capacity limit was exceeded"
    );
}

#[test]
fn ecs_placement_events_become_evidence() {
    let mut snap = short_story("m5.large");
    snap.services[0].events = vec![
        ServiceEvent {
            at: Some(ago(1)),
            message: "(service web) has reached a steady state.".into(),
        },
        ServiceEvent {
            at: Some(ago(2)),
            message: "(service web) was unable to place a task because no container instance met all of its requirements. The closest matching (container-instance 5a1b) has insufficient memory available.".into(),
        },
    ];
    let finding = one(&snap, &Clues::default());
    assert!(
        finding.evidence["serviceEvent web"].contains("insufficient memory"),
        "{:?}",
        finding.evidence
    );
    assert!(matches!(finding.cause, Cause::CapacityShort { .. }));
}

// ---------------------------------------------------------------------------------------------
// Inquiries

#[test]
fn a_healthy_cluster_asks_for_nothing() {
    let mut snap = short_story("m5.large");
    snap.tasks.clear();
    let set = capacity_policy();
    let all = findings(&snap, &set, &Clues::default());
    assert!(all.is_empty(), "{all:?}");
    assert_eq!(inquiries(&snap, &all, &Clues::default()), vec![]);
    // The same cluster with tasks waiting asks: the silence above is the health, not a stub.
    snap.tasks = waiting_tasks(1, 20);
    let all = findings(&snap, &set, &Clues::default());
    assert!(!inquiries(&snap, &all, &Clues::default()).is_empty());
    // A healthy version beside a broken one is never asked about.
    let seed = seed_story();
    let all = findings(&seed, &set, &Clues::default());
    let asked = inquiries(&seed, &all, &Clues::default());
    assert!(!asked.is_empty());
    assert!(!asked.iter().any(
        |i| matches!(i, Inquiry::LaunchTemplateVersion { version: 1, .. })
            || matches!(i, Inquiry::BootOutput { instance_id } if instance_id == "i-good")
    ));
}

#[test]
fn a_broken_version_asks_for_itself_and_its_two_oldest_failed_instances() {
    let mut snap = seed_story();
    snap.auto_scaling_groups[0] = GroupBuilder::new(4, 10, 2)
        .instance("i-good", 1, 60)
        .instance("i-bad3", 2, 13)
        .instance("i-bad1", 2, 15)
        .instance("i-bad2", 2, 14)
        .build();
    let all = findings(&snap, &capacity_policy(), &Clues::default());
    let asked = inquiries(&snap, &all, &Clues::default());
    assert_eq!(
        asked,
        vec![
            Inquiry::LaunchTemplateVersion {
                template_id: TEMPLATE.into(),
                version: 2
            },
            Inquiry::BootOutput {
                instance_id: "i-bad1".into()
            },
            Inquiry::BootOutput {
                instance_id: "i-bad2".into()
            },
        ]
    );
    // What was read, or refused for good, is not asked again; what was throttled or not yet
    // there is.
    let mut clues = seed_clues();
    clues.boot.insert(
        "i-bad2".into(),
        Reading::Unreadable {
            operation: "GetConsoleOutput".into(),
            category: ErrorCategory::Denied,
        },
    );
    assert_eq!(inquiries(&snap, &all, &clues), vec![]);
    clues.boot.insert(
        "i-bad2".into(),
        Reading::Unreadable {
            operation: "GetConsoleOutput".into(),
            category: ErrorCategory::Throttled,
        },
    );
    clues.boot.insert("i-bad1".into(), Reading::NotYet);
    assert_eq!(
        inquiries(&snap, &all, &clues),
        vec![
            Inquiry::BootOutput {
                instance_id: "i-bad1".into()
            },
            Inquiry::BootOutput {
                instance_id: "i-bad2".into()
            },
        ]
    );
}

#[test]
fn too_few_failed_instances_still_ask_why_they_failed() {
    let mut snap = seed_story();
    snap.auto_scaling_groups[0] = GroupBuilder::new(2, 10, 2)
        .instance("i-good", 1, 60)
        .instance("i-bad1", 2, 15)
        .build();
    let all = findings(&snap, &capacity_policy(), &Clues::default());
    assert_eq!(all[0].cause, Cause::Unknown);
    let asked = inquiries(&snap, &all, &Clues::default());
    assert!(asked.contains(&Inquiry::BootOutput {
        instance_id: "i-bad1".into()
    }));
    assert!(
        !asked
            .iter()
            .any(|i| matches!(i, Inquiry::BootOutput { instance_id } if instance_id == "i-good"))
    );
}

#[test]
fn capacity_short_asks_for_activities_every_pass_and_instance_types_once() {
    let snap = short_story("m5.large");
    let all = findings(&snap, &capacity_policy(), &Clues::default());
    let activities = Inquiry::ScalingActivities {
        group: GROUP.into(),
    };
    let m5 = Inquiry::InstanceType {
        instance_type: "m5.large".into(),
    };
    assert_eq!(
        inquiries(&snap, &all, &Clues::default()),
        vec![activities.clone(), m5]
    );
    let mut clues = Clues::default();
    clues.instance_types.insert("m5.large".into(), m5_large());
    clues
        .activities
        .insert(GROUP.into(), Reading::Read { value: vec![] });
    assert_eq!(inquiries(&snap, &all, &clues), vec![activities]);
}

// ---------------------------------------------------------------------------------------------
// The catalogue

fn catalogue() -> String {
    String::from_utf8(fixture("../../docs/causes.md")).unwrap()
}

/// The listed variants as an array, after an exhaustive `match` over the same list: a new
/// variant of `CauseCode` fails to compile here until it is listed, and the list's length is
/// then the number of variants.
macro_rules! every_variant {
    ($($variant:ident),* $(,)?) => {{
        fn exhaustive(code: CauseCode) {
            match code {
                $(CauseCode::$variant => {})*
            }
        }
        let _ = exhaustive;
        [$(CauseCode::$variant),*]
    }};
}

#[test]
fn cause_code_all_lists_every_variant_once_in_catalogue_order() {
    let variants = every_variant!(
        GroupMissing,
        BrokenLaunchTemplateVersion,
        CapacityOnItsWay,
        CapacityShort,
        CapacityExhausted,
        Unsupported,
        Unknown,
        BootMountFailed,
        BootScriptFailed,
        BootAgentFailed,
        UserDataOtherCluster,
        UserDataDefaultCluster,
        NoInstanceProfile,
        LaunchFailed,
        NoInstanceFits,
        ProvisioningQuota,
    );
    assert_eq!(
        CauseCode::ALL.len(),
        variants.len(),
        "CauseCode::ALL misses a variant"
    );
    assert_eq!(CauseCode::ALL.as_slice(), variants.as_slice());
}

#[test]
fn every_cause_code_has_its_entry_in_the_catalogue() {
    let text = catalogue();
    for code in CauseCode::ALL {
        let heading = format!("### `{}`", code.as_str());
        assert!(
            text.lines().any(|l| l.trim() == heading),
            "docs/causes.md has no `{heading}`"
        );
    }
    let headings = text.lines().filter(|l| l.starts_with("### `")).count();
    assert_eq!(
        headings,
        CauseCode::ALL.len(),
        "one entry per code, no strays"
    );
}

/// One of each capacity cause; the match makes a new variant fail to compile here until it is
/// added.
fn every_capacity_cause() -> Vec<Cause> {
    let all = vec![
        Cause::GroupMissing,
        Cause::BrokenLaunchTemplateVersion {
            template_id: "lt".into(),
            version: 1,
            failed_instances: vec![],
            known_good: None,
        },
        Cause::CapacityOnItsWay { booting: vec![] },
        Cause::CapacityShort {
            desired: 1,
            ceiling: 2,
        },
        Cause::CapacityExhausted {
            desired: 2,
            max_size: 2,
            ceiling: 2,
        },
        Cause::NoInstanceFits {
            instance_type: "m5.large".into(),
        },
        Cause::LaunchFailing {
            failure: LaunchFailure::Other,
        },
        Cause::ProvisioningQuota { provisioning: 500 },
        Cause::Unsupported { why: "x".into() },
        Cause::Unknown,
    ];
    for cause in &all {
        match cause {
            Cause::GroupMissing
            | Cause::BrokenLaunchTemplateVersion { .. }
            | Cause::CapacityOnItsWay { .. }
            | Cause::CapacityShort { .. }
            | Cause::CapacityExhausted { .. }
            | Cause::NoInstanceFits { .. }
            | Cause::LaunchFailing { .. }
            | Cause::ProvisioningQuota { .. }
            | Cause::Unsupported { .. }
            | Cause::Unknown => {}
        }
    }
    all
}

#[test]
fn every_cause_maps_to_a_catalogued_code_and_codes_are_distinct() {
    for cause in every_capacity_cause() {
        assert!(CauseCode::ALL.contains(&cause.code()), "{cause:?}");
    }
    let mut spelled: Vec<&str> = CauseCode::ALL.iter().map(|c| c.as_str()).collect();
    spelled.sort_unstable();
    spelled.dedup();
    assert_eq!(spelled.len(), CauseCode::ALL.len());
    let mut phrases = Vec::new();
    for cause in every_root_cause() {
        assert!(CauseCode::ALL.contains(&cause.code()), "{cause:?}");
        let phrase = cause.phrase();
        assert!(!phrase.is_empty() && phrase.len() <= 40, "{phrase}");
        assert_ne!(
            phrase,
            cause.code().as_str(),
            "a phrase for people, not the code"
        );
        phrases.push(phrase);
    }
}

fn every_root_cause() -> Vec<RootCause> {
    let t = || "lt".to_string();
    let i = || "i-1".to_string();
    let v = 1u32;
    vec![
        RootCause::BootMountFailed {
            instance_id: i(),
            file_system: FileSystem::Efs,
            timed_out: false,
            quote: vec![],
        },
        RootCause::BootScriptFailed {
            instance_id: i(),
            quote: vec![],
        },
        RootCause::BootAgentFailed {
            instance_id: i(),
            timed_out: false,
            quote: vec![],
        },
        RootCause::UserDataOtherCluster {
            template_id: t(),
            version: v,
            cluster: "c".into(),
        },
        RootCause::UserDataDefaultCluster {
            template_id: t(),
            version: v,
        },
        RootCause::NoInstanceProfile {
            template_id: t(),
            version: v,
        },
        RootCause::LaunchFailed {
            group: "g".into(),
            failure: LaunchFailure::InsufficientCapacity,
            message: "m".into(),
        },
        RootCause::NoInstanceFits {
            instance_type: "m5.large".into(),
            instance_vcpus: 2,
            instance_memory_mib: 8192,
            task_cpu: Some(4096),
            task_memory: None,
        },
        RootCause::ProvisioningQuota { provisioning: 500 },
    ]
}

// ---------------------------------------------------------------------------------------------
// More capacity stories

#[test]
fn a_launch_configuration_group_still_shows_its_boot_output() {
    let mut snap = seed_story();
    snap.auto_scaling_groups[0].launch = ecs_reconciler::domain::GroupLaunch::LaunchConfiguration {
        name: "web-lc".into(),
    };
    let all = findings(&snap, &capacity_policy(), &Clues::default());
    assert!(
        matches!(all[0].cause, Cause::Unsupported { .. }),
        "{:?}",
        all[0].cause
    );
    let asked = inquiries(&snap, &all, &Clues::default());
    assert!(asked.contains(&Inquiry::BootOutput {
        instance_id: "i-bad1".into()
    }));
    assert!(
        !asked
            .iter()
            .any(|i| matches!(i, Inquiry::LaunchTemplateVersion { .. })),
        "a launch configuration has no version to read: {asked:?}"
    );
    let finding = one(&snap, &seed_clues());
    assert_eq!(finding.root_causes[0].code(), CauseCode::BootMountFailed);
    assert!(finding.reason.ends_with(FSX_LINE), "{}", finding.reason);
}

#[test]
fn five_hundred_tasks_in_provisioning_are_the_quota() {
    let mut snap = short_story("m5.large");
    snap.auto_scaling_groups[0].max_size = 2;
    snap.tasks = waiting_tasks(499, 20);
    let below = one(&snap, &Clues::default());
    assert!(
        matches!(below.cause, Cause::CapacityExhausted { .. }),
        "{:?}",
        below.cause
    );
    snap.tasks = waiting_tasks(500, 20);
    let at = one(&snap, &Clues::default());
    assert_eq!(at.cause, Cause::ProvisioningQuota { provisioning: 500 });
}

#[test]
fn a_quota_event_behind_a_placement_event_is_still_heard() {
    let mut snap = short_story("m5.large");
    snap.auto_scaling_groups[0].max_size = 2;
    snap.services[0].events = vec![
        ServiceEvent {
            at: Some(ago(1)),
            message: "(service web) was unable to place a task because no container instance met all of its requirements.".into(),
        },
        ServiceEvent {
            at: Some(ago(2)),
            message: "(service web) was unable to place a task. Reason: tasks provisioning capacity limit was exceeded.".into(),
        },
    ];
    let finding = one(&snap, &Clues::default());
    assert_eq!(finding.cause, Cause::ProvisioningQuota { provisioning: 2 });
    assert!(finding.evidence["serviceEvent web"].contains("no container instance met"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any bytes read into a report whose quote is short, clean and present exactly when a
    /// failure is named.
    #[test]
    fn any_boot_output_reads_into_a_bounded_report(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        tail in proptest::sample::select(vec![
            "", "mount.nfs: Connection timed out\n", "Failed to run module scripts-user\n",
            "\x1b[0;1;31mFAILED\x1b[0m] Failed to mount /data.\r\n",
        ]),
    ) {
        // The failure on a line of its own, after whatever came before.
        let mut bytes = bytes;
        bytes.push(b'\n');
        bytes.extend_from_slice(tail.as_bytes());
        let report = boot::read(&bytes);
        proptest::prop_assert!(report.quote.len() <= boot::MAX_QUOTE);
        proptest::prop_assert_eq!(report.failure.is_some(), !report.quote.is_empty());
        for line in &report.quote {
            proptest::prop_assert!(line.chars().count() <= boot::QUOTE_WIDTH);
            proptest::prop_assert!(!line.chars().any(char::is_control));
        }
        if !tail.is_empty() {
            proptest::prop_assert!(report.failure.is_some(), "{:?}", report);
        }
    }

    /// Any text as UserData: a report, or an error of one line.
    #[test]
    fn any_userdata_reads_or_fails_in_one_line(
        text in "[ -~\n]{0,300}",
        encode in proptest::prelude::any::<bool>(),
    ) {
        let input = if encode {
            base64::engine::general_purpose::STANDARD.encode(&text)
        } else {
            text.clone()
        };
        match userdata::read(&input) {
            Ok(report) => {
                let cause = report.root_cause("lt", 1, CLUSTER, "arn");
                if let Some(cause) = cause {
                    proptest::prop_assert!(matches!(
                        cause.code(),
                        CauseCode::UserDataOtherCluster | CauseCode::UserDataDefaultCluster
                    ));
                }
            }
            Err(e) => proptest::prop_assert!(!e.to_string().contains('\n'), "{}", e),
        }
    }
}

#[test]
fn desired_capacity_that_never_launches_is_launch_failing_not_on_its_way() {
    // Desired 3, two launched: "on its way" until the activities say the launches fail.
    let mut snap = short_story("m5.large");
    snap.auto_scaling_groups[0].desired_capacity = 3;
    let bare = one(&snap, &Clues::default());
    assert_eq!(bare.cause, Cause::CapacityOnItsWay { booting: vec![] });
    let mut clues = Clues::default();
    clues.activities.insert(
        GROUP.into(),
        Reading::Read {
            value: vec![activity(
                "Failed",
                "We currently do not have sufficient m5.large capacity in the Availability Zone you requested (us-east-1a).",
                ago(4),
            )],
        },
    );
    let finding = one(&snap, &clues);
    assert_eq!(
        finding.cause,
        Cause::LaunchFailing {
            failure: LaunchFailure::InsufficientCapacity
        }
    );
    assert_eq!(
        finding
            .root_causes
            .first()
            .map(RootCause::phrase)
            .as_deref(),
        Some("no EC2 capacity in the AZ")
    );
    // An instance still booting: capacity may yet arrive, the cause stays.
    let mut booting = snap.clone();
    booting.auto_scaling_groups[0]
        .instances
        .push(ecs_reconciler::domain::GroupInstance {
            instance_id: "i-three".into(),
            lifecycle_state: "Pending".into(),
            health_status: "Healthy".into(),
            launch_template_version: Some(1),
            launched_at: Some(ago(1)),
            instance_type: Some("m5.large".into()),
        });
    let finding = one(&booting, &clues);
    assert!(
        matches!(finding.cause, Cause::CapacityOnItsWay { .. }),
        "{:?}",
        finding.cause
    );
    assert_eq!(finding.root_causes[0].code(), CauseCode::LaunchFailed);
}

#[test]
fn clues_record_console_outcomes_and_forget_what_is_gone() {
    use ecs_reconciler::cloud::CloudError;
    let mut clues = Clues::default();
    clues.record_boot_output("i-bad1", Ok(Some(fixture("boot/fsx_lustre_timeout.txt"))));
    clues.record_boot_output("i-bad2", Ok(None));
    clues.record_boot_output(
        "i-gone",
        Err(CloudError::new(
            ErrorCategory::Denied,
            "GetConsoleOutput",
            "not authorized",
        )),
    );
    assert!(matches!(&clues.boot["i-bad1"], Reading::Read { value } if value.quote[0] == FSX_LINE));
    assert_eq!(clues.boot["i-bad2"], Reading::NotYet);
    assert_eq!(
        clues.boot["i-gone"],
        Reading::Unreadable {
            operation: "GetConsoleOutput".into(),
            category: ErrorCategory::Denied
        }
    );
    clues
        .versions
        .insert((TEMPLATE.into(), 2), version(None, None));
    clues
        .versions
        .insert((TEMPLATE.into(), 7), version(None, None));
    clues
        .activities
        .insert(GROUP.into(), Reading::Read { value: vec![] });
    clues.instance_types.insert("m5.large".into(), m5_large());
    clues.prune(&seed_story());
    let kept: Vec<&str> = clues.boot.keys().map(String::as_str).collect();
    assert_eq!(kept, vec!["i-bad1", "i-bad2"]);
    let versions: Vec<u32> = clues.versions.keys().map(|(_, v)| *v).collect();
    assert_eq!(
        versions,
        vec![2],
        "version 7 is neither launched from nor configured"
    );
    assert!(clues.activities.is_empty());
    assert_eq!(clues.instance_types.len(), 1);
}
