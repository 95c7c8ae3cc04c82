//! The contract of the four root-cause reads, run against every account that answers them:
//! the simulated account ([`sim`]) and, on the adapter's side, AWS through moto.
//!
//! PLACEHOLDER written on the sim branch so its side compiles: the adapter branch owns this
//! file, and on merge its version replaces this one (the names below are the agreed ones).

mod sim;

use ecs_reconciler::cloud::{Cloud, ErrorCategory};

/// What [`ReadsAccount::seed`] made.
pub struct Seeded {
    pub group: String,
    pub template_id: String,
    pub version: u32,
    pub instance_id: String,
    pub instance_type: String,
}

/// What the seeded launch template version boots with.
pub struct Seed<'a> {
    pub user_data_b64: &'a str,
    pub instance_profile: Option<&'a str>,
    pub instance_type: &'a str,
    pub boot_output: &'a [u8],
    pub failed_launch: Option<&'a str>,
}

/// An account the contract runs against.
pub trait ReadsAccount {
    type C: Cloud;
    /// A launch template whose version 1 boots with `seed`, and an Auto Scaling group with
    /// one instance launched from it whose boot output is `seed.boot_output`; with
    /// `failed_launch`, the group's newest scaling activity is a Failed launch with that
    /// status message.
    async fn seed(&self, seed: &Seed<'_>) -> Seeded;
    fn cloud(&self) -> &Self::C;
}

const USER_DATA: &str =
    "IyEvYmluL2Jhc2gKZWNobyBFQ1NfQ0xVU1RFUj1jb250cmFjdCA+PiAvZXRjL2Vjcy9lY3MuY29uZmlnCg==";
const PROFILE: &str = "arn:aws:iam::123456789012:instance-profile/ecsInstanceRole";
/// Not UTF-8 and cut in the middle of a line, as boot output can be.
const BOOT: &[u8] = b"[  OK  ] Started cloud-init\n\xff\xfe\nmount error(110): Connection tim";
const VCPU: &str = "You have requested more vCPU capacity than your current vCPU limit of 32 \
                    allows for the instance bucket that the specified instance type belongs \
                    to. Please visit http://aws.amazon.com/contact-us/ec2-request to request \
                    an adjustment to this limit. Launching EC2 instance failed.";

fn seed(failed_launch: Option<&str>) -> Seed<'_> {
    Seed {
        user_data_b64: USER_DATA,
        instance_profile: Some(PROFILE),
        instance_type: "c5.large",
        boot_output: BOOT,
        failed_launch,
    }
}

pub async fn console_output_round_trips_the_exact_bytes(a: impl ReadsAccount) {
    let s = a.seed(&seed(None)).await;
    let output = a.cloud().console_output(&s.instance_id).await.unwrap();
    assert_eq!(output.as_deref(), Some(BOOT));
}

pub async fn console_output_of_an_unknown_instance_is_not_found(a: impl ReadsAccount) {
    a.seed(&seed(None)).await;
    let err = a
        .cloud()
        .console_output("i-0fedcba9876543210")
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
}

pub async fn a_version_shows_its_user_data_profile_and_type(a: impl ReadsAccount) {
    let s = a.seed(&seed(None)).await;
    let v = a
        .cloud()
        .launch_template_version(&s.template_id, s.version)
        .await
        .unwrap();
    assert_eq!(
        (v.template_id.as_str(), v.version),
        (s.template_id.as_str(), s.version)
    );
    assert_eq!(v.user_data.as_deref(), Some(USER_DATA));
    assert_eq!(v.instance_profile.as_deref(), Some(PROFILE));
    assert_eq!(v.instance_type.as_deref(), Some("c5.large"));
    assert_eq!(s.instance_type, "c5.large");
}

pub async fn an_unknown_version_is_not_found(a: impl ReadsAccount) {
    let s = a.seed(&seed(None)).await;
    let err = a
        .cloud()
        .launch_template_version(&s.template_id, s.version + 5)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
}

pub async fn activities_are_newest_first_with_the_failed_message(a: impl ReadsAccount) {
    let s = a.seed(&seed(Some(VCPU))).await;
    let activities = a.cloud().scaling_activities(&s.group).await.unwrap();
    assert_eq!(activities[0].status_code, "Failed", "{activities:#?}");
    assert_eq!(activities[0].status_message.as_deref(), Some(VCPU));
    assert!(
        activities.iter().any(|x| x.status_code == "Successful"),
        "{activities:#?}"
    );
    let times: Vec<_> = activities.iter().map(|x| x.start_time).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{activities:#?}");
}

pub async fn m5_large_has_2_vcpus_and_8192_mib(a: impl ReadsAccount) {
    let size = a.cloud().instance_type("m5.large").await.unwrap();
    assert_eq!(
        (size.instance_type.as_str(), size.vcpus, size.memory_mib),
        ("m5.large", 2, 8192)
    );
}

pub async fn an_unknown_instance_type_is_not_found(a: impl ReadsAccount) {
    let err = a.cloud().instance_type("m5.colossal").await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
}
