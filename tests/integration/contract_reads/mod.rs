//! The root-cause reads' contract, one set of tests run on every account that implements the
//! `Cloud` trait: moto (through the AWS adapter) and the simulated account. Each test is a
//! generic async fn over [`ReadsAccount`]; `moto.rs` and `sim.rs` instantiate them.
//!
//! What a read must do is what EC2 and Auto Scaling do: the bytes of a boot output exactly as
//! the instance wrote them, a launch template version's UserData as EC2 keeps it (base64),
//! scaling activities newest first, an instance type's documented size, and `NotFound` for
//! what does not exist.

pub(crate) mod moto;
mod sim;

use std::collections::BTreeMap;
use std::time::SystemTime;

use ecs_reconciler::cloud::{Cloud, ErrorCategory};

/// What [`ReadsAccount::seed`] made.
pub struct Seeded {
    pub group: String,
    pub template_id: String,
    pub version: u32,
    pub instance_id: String,
    pub instance_type: String,
}

/// How the seeded launch template version boots.
pub struct Seed<'a> {
    pub user_data_b64: &'a str,
    pub instance_profile: Option<&'a str>,
    pub instance_type: &'a str,
    pub boot_output: &'a [u8],
    pub failed_launch: Option<&'a str>,
}

pub trait ReadsAccount {
    type C: Cloud;
    /// A launch template whose version 1 boots with `seed`, and an Auto Scaling group with
    /// one instance launched from it whose boot output is `seed.boot_output`; with
    /// `failed_launch`, the group's newest scaling activity is a Failed launch with that
    /// status message.
    async fn seed(&self, seed: &Seed<'_>) -> Seeded;
    fn cloud(&self) -> &Self::C;
    /// The calls the cloud made since the seed, per operation.
    fn calls(&self) -> BTreeMap<String, u64>;
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(op, n)| (op.to_string(), *n)).collect()
}

/// `#!/bin/bash` + `echo ECS_CLUSTER=web >> /etc/ecs/ecs.config`, base64.
pub const USER_DATA_B64: &str =
    "IyEvYmluL2Jhc2gKZWNobyBFQ1NfQ0xVU1RFUj13ZWIgPj4gL2V0Yy9lY3MvZWNzLmNvbmZpZwo=";
pub const PROFILE_ARN: &str = "arn:aws:iam::123456789012:instance-profile/ecsInstanceRole";
/// A failed FSx mount, a byte that is not UTF-8 (a serial console's line noise), and a last
/// line cut in the middle, as GetConsoleOutput may return them.
pub const BOOT_OUTPUT: &[u8] = b"[   12.345678] cloud-init[1234]: mount.lustre: mount \
fs-0123456789abcdef0.fsx.us-east-1.amazonaws.com@tcp:/abcdefgh at /fsx failed: Connection timed \
out\r\n\xff\xfe[   13.000001] cloud-init[1234]: 2024-05-01 10:00:00,000 - cc_scripts_user.py[WAR\
NING]: Failed to run module scripts-user\n[   14.5] ecs-ag";
pub const VCPU_LIMIT: &str = "Launching a new EC2 instance. Status Reason: You have requested \
more vCPU capacity than your current vCPU limit of 32 allows for the instance bucket that the \
specified instance type belongs to. Launching EC2 instance failed.";

pub fn seed() -> Seed<'static> {
    Seed {
        user_data_b64: USER_DATA_B64,
        instance_profile: Some(PROFILE_ARN),
        instance_type: "m5.large",
        boot_output: BOOT_OUTPUT,
        failed_launch: None,
    }
}

pub async fn console_output_is_the_instances(a: impl ReadsAccount) {
    let seeded = a.seed(&seed()).await;
    let output = a.cloud().console_output(&seeded.instance_id).await.unwrap();
    assert_eq!(output.as_deref(), Some(BOOT_OUTPUT));
    assert_eq!(a.calls(), counts(&[("GetConsoleOutput", 1)]));
}

/// An instance that has written nothing yet has no output (`None`: read again later), not an
/// empty one that would be taken as a clean boot.
pub async fn empty_console_output_is_not_available_yet(a: impl ReadsAccount) {
    let seeded = a
        .seed(&Seed {
            boot_output: b"",
            ..seed()
        })
        .await;
    let output = a.cloud().console_output(&seeded.instance_id).await.unwrap();
    assert_eq!(output, None);
}

pub async fn console_output_of_an_unknown_instance_is_not_found(a: impl ReadsAccount) {
    a.seed(&seed()).await;
    let err = a
        .cloud()
        .console_output("i-0123456789abcdef0")
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
    assert_eq!(err.operation, "GetConsoleOutput");
    assert_eq!(a.calls(), counts(&[("GetConsoleOutput", 1)]));
}

pub async fn launch_template_version_is_as_seeded(a: impl ReadsAccount) {
    let no_profile = Seed {
        instance_profile: None,
        instance_type: "c5.xlarge",
        ..seed()
    };
    for seed in [seed(), no_profile] {
        let seeded = a.seed(&seed).await;
        let version = a
            .cloud()
            .launch_template_version(&seeded.template_id, seeded.version)
            .await
            .unwrap();
        assert_eq!(version.template_id, seeded.template_id);
        assert_eq!(version.version, seeded.version);
        assert_eq!(version.user_data.as_deref(), Some(seed.user_data_b64));
        assert_eq!(version.instance_profile.as_deref(), seed.instance_profile);
        assert_eq!(version.instance_type.as_deref(), Some(seed.instance_type));
        assert_eq!(seeded.instance_type, seed.instance_type);
        assert!(version.image_id.is_some(), "{version:?}");
    }
}

pub async fn unknown_launch_template_version_is_not_found(a: impl ReadsAccount) {
    let seeded = a.seed(&seed()).await;
    let cloud = a.cloud();
    let err = cloud
        .launch_template_version(&seeded.template_id, seeded.version + 1)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
    let err = cloud
        .launch_template_version("lt-0123456789abcdef0", 1)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
    assert_eq!(err.operation, "DescribeLaunchTemplateVersions");
    assert_eq!(a.calls(), counts(&[("DescribeLaunchTemplateVersions", 2)]));
}

pub async fn scaling_activities_are_newest_first_with_the_failure(a: impl ReadsAccount) {
    let seeded = a
        .seed(&Seed {
            failed_launch: Some(VCPU_LIMIT),
            ..seed()
        })
        .await;
    let activities = a.cloud().scaling_activities(&seeded.group).await.unwrap();
    let newest = activities.first().expect("the failed launch");
    assert_eq!(newest.status_code, "Failed", "{activities:?}");
    assert_eq!(newest.status_message.as_deref(), Some(VCPU_LIMIT));
    let starts: Vec<Option<SystemTime>> = activities.iter().map(|a| a.start_time).collect();
    assert!(starts.iter().all(Option::is_some), "{activities:?}");
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {activities:?}"
    );
    // A group without a failure: its newest activity is not a failure.
    let healthy = a.seed(&seed()).await;
    let activities = a.cloud().scaling_activities(&healthy.group).await.unwrap();
    assert!(
        activities.iter().all(|a| a.status_code != "Failed"),
        "{activities:?}"
    );
}

pub async fn scaling_activities_of_an_unknown_group_are_not_found(a: impl ReadsAccount) {
    a.seed(&seed()).await;
    let err = a
        .cloud()
        .scaling_activities("no-such-group")
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
    // No activity is confirmed by one read of the group.
    assert_eq!(
        a.calls(),
        counts(&[
            ("DescribeScalingActivities", 1),
            ("DescribeAutoScalingGroups", 1)
        ])
    );
}

pub async fn instance_type_size_is_documented(a: impl ReadsAccount) {
    let size = a.cloud().instance_type("m5.large").await.unwrap();
    assert_eq!(size.instance_type, "m5.large");
    assert_eq!(size.vcpus, 2);
    assert_eq!(size.memory_mib, 8192);
}

pub async fn unknown_instance_type_is_not_found(a: impl ReadsAccount) {
    let err = a.cloud().instance_type("m5.colossal").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
    assert_eq!(err.operation, "DescribeInstanceTypes");
    assert_eq!(a.calls(), counts(&[("DescribeInstanceTypes", 1)]));
}
