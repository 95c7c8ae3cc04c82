//! The root-cause reads' contract on moto, through the AWS adapter. Moto's GetConsoleOutput
//! and DescribeScalingActivities are scripted by the launcher's harness endpoints (see
//! `tests/moto/launcher.py`); the rest is moto as it is.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_ec2::types::{
    LaunchTemplateIamInstanceProfileSpecificationRequest, RequestLaunchTemplateData,
};
use ecs_reconciler::cloud::aws::AwsCloud;

use super::{ReadsAccount, Seed, Seeded};
use crate::support::moto::Moto;

const IMAGE: &str = "ami-12c6146b";
const ZONE: &str = "us-east-1a";

pub struct MotoAccount {
    moto: Moto,
    cloud: AwsCloud,
    seeds: AtomicU32,
}

impl MotoAccount {
    pub async fn new() -> MotoAccount {
        let moto = Moto::new();
        let cloud = moto.cloud().await;
        MotoAccount {
            moto,
            cloud,
            seeds: AtomicU32::new(0),
        }
    }

    /// The moto account, for scripting beyond the seed.
    pub fn moto(&self) -> &Moto {
        &self.moto
    }
}

fn profile(name_or_arn: &str) -> LaunchTemplateIamInstanceProfileSpecificationRequest {
    let builder = LaunchTemplateIamInstanceProfileSpecificationRequest::builder();
    if name_or_arn.starts_with("arn:") {
        builder.arn(name_or_arn).build()
    } else {
        builder.name(name_or_arn).build()
    }
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

impl ReadsAccount for MotoAccount {
    type C = AwsCloud;

    async fn seed(&self, seed: &Seed<'_>) -> Seeded {
        let n = self.seeds.fetch_add(1, Ordering::Relaxed);
        let (template, group) = (format!("seed-lt-{n}"), format!("seed-asg-{n}"));
        let data = RequestLaunchTemplateData::builder()
            .image_id(IMAGE)
            .instance_type(seed.instance_type.into())
            .user_data(seed.user_data_b64)
            .set_iam_instance_profile(seed.instance_profile.map(profile))
            .build();
        let template_id = self
            .moto
            .ec2()
            .create_launch_template()
            .launch_template_name(&template)
            .launch_template_data(data)
            .send()
            .await
            .unwrap()
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .expect("template id")
            .to_string();
        let autoscaling = self.moto.autoscaling();
        autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(&group)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&template_id)
                    .version("1")
                    .build(),
            )
            .min_size(0)
            .max_size(2)
            .desired_capacity(1)
            .availability_zones(ZONE)
            .send()
            .await
            .unwrap();
        let described = autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&group)
            .send()
            .await
            .unwrap();
        let instance_id = described.auto_scaling_groups()[0].instances()[0]
            .instance_id()
            .expect("instance id")
            .to_string();
        self.moto
            .set_console_output(&instance_id, Some(seed.boot_output), true)
            .await;
        let now = now_epoch();
        self.moto
            .add_scaling_activity(&group, "Successful", None, now - 600)
            .await;
        if let Some(message) = seed.failed_launch {
            self.moto
                .add_scaling_activity(&group, "Failed", Some(message), now - 60)
                .await;
        }
        Seeded {
            group,
            template_id,
            version: 1,
            instance_id,
            instance_type: seed.instance_type.to_string(),
        }
    }

    fn cloud(&self) -> &AwsCloud {
        &self.cloud
    }

    /// The adapter's calls (the seed arranges with raw clients, which are not counted).
    fn calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.cloud.calls()
    }
}

macro_rules! on_moto {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                super::$name(MotoAccount::new().await).await;
            }
        )*
    };
}

on_moto!(
    console_output_is_the_instances,
    empty_console_output_is_not_available_yet,
    console_output_of_an_unknown_instance_is_not_found,
    launch_template_version_is_as_seeded,
    unknown_launch_template_version_is_not_found,
    scaling_activities_are_newest_first_with_the_failure,
    scaling_activities_of_an_unknown_group_are_not_found,
    instance_type_size_is_documented,
    unknown_instance_type_is_not_found,
);
