//! The contract on moto, through the AWS adapter (one attempt a call, so an injected throttle
//! is answered at once). Faults come from the launcher's `/_harness/fault`, which answers the
//! error code AWS gives for each category; `/_harness/fault/clear` forgets them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_ec2::types::RequestLaunchTemplateData;
use aws_sdk_ecs::types::{
    AutoScalingGroupProvider, AwsVpcConfiguration, ContainerDefinition, LaunchType, ManagedScaling,
    ManagedScalingStatus, NetworkConfiguration, NetworkMode,
};
use ecs_reconciler::cloud::ErrorCategory;
use ecs_reconciler::cloud::aws::{AwsCloud, AwsSettings};
use serde_json::json;

use super::{Account, GroupShape, Seeded, Shape};
use crate::support::moto::Moto;

const IMAGE: &str = "ami-12c6146b";
const ZONE: &str = "us-east-1a";

struct MotoContract {
    moto: Moto,
    cloud: AwsCloud,
    /// The adapter's counts at the last reset.
    baseline: Mutex<BTreeMap<String, u64>>,
}

impl MotoContract {
    async fn new() -> Self {
        let moto = Moto::new();
        let cloud = moto
            .cloud_with(AwsSettings {
                max_attempts: 1,
                ..AwsSettings::default()
            })
            .await;
        moto.ecs()
            .register_task_definition()
            .family("web")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("web")
                    .image("public.ecr.aws/nginx/nginx:latest")
                    .memory(128)
                    .cpu(64)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        moto.ecs()
            .register_task_definition()
            .family("batch")
            .network_mode(NetworkMode::Awsvpc)
            .container_definitions(
                ContainerDefinition::builder()
                    .name("worker")
                    .image("public.ecr.aws/nginx/nginx:latest")
                    .memory(128)
                    .cpu(64)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        MotoContract {
            moto,
            cloud,
            baseline: Mutex::new(BTreeMap::new()),
        }
    }

    /// A launch template and a group from it at `shape.version`, behind provider `cp-NAME`;
    /// returns the provider, the template id and the instance ids.
    async fn group(&self, shape: &GroupShape) -> (String, String, Vec<String>) {
        let data = RequestLaunchTemplateData::builder()
            .image_id(IMAGE)
            .instance_type("m5.large".into())
            .build();
        let template = self
            .moto
            .ec2()
            .create_launch_template()
            .launch_template_name(format!("lt-{}", shape.name))
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
            .auto_scaling_group_name(shape.name)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_id(&template)
                    .version(shape.version)
                    .build(),
            )
            .min_size(0)
            .max_size(10)
            .desired_capacity(shape.instances as i32)
            .availability_zones(ZONE)
            .send()
            .await
            .unwrap();
        let described = autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(shape.name)
            .send()
            .await
            .unwrap();
        let group = &described.auto_scaling_groups()[0];
        let instances = group
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        let provider = format!("cp-{}", shape.name);
        self.moto
            .ecs()
            .create_capacity_provider()
            .name(&provider)
            .auto_scaling_group_provider(
                AutoScalingGroupProvider::builder()
                    .auto_scaling_group_arn(group.auto_scaling_group_arn().unwrap())
                    .managed_scaling(
                        ManagedScaling::builder()
                            .status(ManagedScalingStatus::Disabled)
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        (provider, template, instances)
    }
}

/// The error code and HTTP status AWS answers for a category.
fn code(category: ErrorCategory) -> (&'static str, u16) {
    match category {
        ErrorCategory::Denied => ("AccessDeniedException", 400),
        ErrorCategory::Throttled => ("ThrottlingException", 400),
        ErrorCategory::Transient => ("ServiceUnavailable", 503),
        ErrorCategory::Invalid => ("InvalidParameterException", 400),
        ErrorCategory::NotFound => ("ResourceNotFoundException", 400),
    }
}

impl Account for MotoContract {
    type C = AwsCloud;

    fn cloud(&self) -> &AwsCloud {
        &self.cloud
    }

    async fn seed(&self, cluster: &str, shape: Shape) -> Seeded {
        let mut seeded = Seeded::default();
        let mut providers = Vec::new();
        for group in &shape.groups {
            let (provider, template, instances) = self.group(group).await;
            providers.push(provider);
            seeded
                .groups
                .insert(group.name.to_string(), (template, instances));
        }
        let ecs = self.moto.ecs();
        ecs.create_cluster()
            .cluster_name(cluster)
            .set_capacity_providers((!providers.is_empty()).then_some(providers))
            .send()
            .await
            .unwrap();
        for n in 0..shape.services {
            ecs.create_service()
                .cluster(cluster)
                .service_name(format!("svc-{n:02}"))
                .task_definition("web")
                .desired_count(0)
                .send()
                .await
                .unwrap();
        }
        let mut left = shape.tasks;
        while left > 0 {
            let count = left.min(10);
            let output = ecs
                .run_task()
                .cluster(cluster)
                .task_definition("web")
                .launch_type(LaunchType::Fargate)
                .count(count as i32)
                .send()
                .await
                .unwrap();
            seeded.task_arns.extend(
                output
                    .tasks()
                    .iter()
                    .filter_map(|t| t.task_arn().map(str::to_string)),
            );
            left -= count;
        }
        if shape.awsvpc_tasks > 0 {
            let (subnet, group) = self.moto.default_network().await;
            let vpc = AwsVpcConfiguration::builder()
                .subnets(subnet)
                .security_groups(&group)
                .build()
                .unwrap();
            let output = ecs
                .run_task()
                .cluster(cluster)
                .task_definition("batch")
                .launch_type(LaunchType::Fargate)
                .network_configuration(
                    NetworkConfiguration::builder()
                        .awsvpc_configuration(vpc)
                        .build(),
                )
                .count(shape.awsvpc_tasks as i32)
                .send()
                .await
                .unwrap();
            seeded.task_arns.extend(
                output
                    .tasks()
                    .iter()
                    .filter_map(|t| t.task_arn().map(str::to_string)),
            );
            seeded.security_group = group;
        }
        for _ in 0..shape.container_instances {
            let instance_id = self.moto.launch_ec2_instance().await;
            let registered = ecs
                .register_container_instance()
                .cluster(cluster)
                .instance_identity_document(json!({"instanceId": instance_id}).to_string())
                .send()
                .await
                .unwrap();
            let arn = registered
                .container_instance()
                .and_then(|c| c.container_instance_arn())
                .expect("container instance ARN")
                .to_string();
            seeded.container_instance_arns.push(arn);
        }
        self.reset_calls();
        seeded
    }

    async fn fail(&self, operation: &str, category: ErrorCategory) {
        let (code, status) = code(category);
        self.moto.inject_fault(operation, code, status).await;
    }

    async fn clear_faults(&self) {
        self.moto.harness("/_harness/fault/clear", json!({})).await;
    }

    async fn settle(&self) {}

    fn calls(&self) -> BTreeMap<String, u64> {
        let baseline = self.baseline.lock().unwrap();
        self.cloud
            .calls()
            .into_iter()
            .map(|(op, n)| {
                let before = baseline.get(&op).copied().unwrap_or(0);
                (op, n - before)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    fn reset_calls(&self) {
        *self.baseline.lock().unwrap() = self.cloud.calls();
    }
}

macro_rules! on_moto {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            super::$name(MotoContract::new().await).await;
        }
    )*};
}

crate::contract_bodies!(on_moto);
