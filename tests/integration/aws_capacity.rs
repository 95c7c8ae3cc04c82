//! The AWS adapter's capacity chain against moto (see `support::moto`): capacity providers,
//! their Auto Scaling groups, launch template versions (configured, resolved, and per
//! instance), observation cost and failures, and the Auto Scaling and drain write calls.

use std::time::{Duration, UNIX_EPOCH};

use aws_sdk_autoscaling::types::{
    LaunchTemplate as AsgLaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification,
    MixedInstancesPolicy, Tag as AsgTag,
};
use aws_sdk_ec2::types::RequestLaunchTemplateData;
use aws_sdk_ecs::types::{AutoScalingGroupProvider, ManagedScaling, ManagedScalingStatus};
use ecs_reconciler::cloud::aws::{AwsCloud, AwsSettings};
use ecs_reconciler::cloud::{Cloud, ErrorCategory};
use ecs_reconciler::domain::{AutoScalingGroup, ClusterSnapshot, GroupLaunch, Tags};
use serde_json::json;

use crate::support::moto::Moto;

const CLUSTER: &str = "capacity";
const IMAGE: &str = "ami-12c6146b";
const ZONE: &str = "us-east-1a";

/// A launch template `name` whose version 1 launches t3.small, and version 2 t3.large. Returns
/// its id.
async fn template_with_two_versions(moto: &Moto, name: &str) -> String {
    let ec2 = moto.ec2();
    let data = |instance_type: &str| {
        RequestLaunchTemplateData::builder()
            .image_id(IMAGE)
            .instance_type(instance_type.into())
            .build()
    };
    let created = ec2
        .create_launch_template()
        .launch_template_name(name)
        .launch_template_data(data("t3.small"))
        .send()
        .await
        .unwrap();
    let id = created
        .launch_template()
        .unwrap()
        .launch_template_id()
        .unwrap()
        .to_string();
    ec2.create_launch_template_version()
        .launch_template_id(&id)
        .launch_template_data(data("t3.large"))
        .send()
        .await
        .unwrap();
    id
}

fn template_spec(id: &str, version: &str) -> LaunchTemplateSpecification {
    LaunchTemplateSpecification::builder()
        .launch_template_id(id)
        .version(version)
        .build()
}

/// Creates an Auto Scaling group from a template version; returns its ARN.
async fn group_from_template(
    moto: &Moto,
    name: &str,
    template_id: &str,
    version: &str,
    desired: i32,
) -> String {
    let autoscaling = moto.autoscaling();
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(template_spec(template_id, version))
        .min_size(0)
        .max_size(10)
        .desired_capacity(desired)
        .availability_zones(ZONE)
        .tags(
            AsgTag::builder()
                .key("team")
                .value("web")
                .propagate_at_launch(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    group_arn(moto, name).await
}

async fn group_arn(moto: &Moto, name: &str) -> String {
    moto.autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap()
        .auto_scaling_groups()[0]
        .auto_scaling_group_arn()
        .unwrap()
        .to_string()
}

/// A capacity provider for the group `group_arn`.
async fn provider(moto: &Moto, name: &str, group_arn: &str, managed: bool) {
    let status = if managed {
        ManagedScalingStatus::Enabled
    } else {
        ManagedScalingStatus::Disabled
    };
    moto.ecs()
        .create_capacity_provider()
        .name(name)
        .auto_scaling_group_provider(
            AutoScalingGroupProvider::builder()
                .auto_scaling_group_arn(group_arn)
                .managed_scaling(ManagedScaling::builder().status(status).build())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

async fn cluster_with_providers(moto: &Moto, providers: &[&str]) {
    moto.ecs()
        .create_cluster()
        .cluster_name(CLUSTER)
        .set_capacity_providers(Some(providers.iter().map(|p| p.to_string()).collect()))
        .send()
        .await
        .unwrap();
}

fn group<'a>(snapshot: &'a ClusterSnapshot, name: &str) -> &'a AutoScalingGroup {
    snapshot
        .auto_scaling_groups
        .iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("group {name} not observed: {snapshot:#?}"))
}

fn count(cloud: &AwsCloud, operation: &str) -> u64 {
    cloud.calls().get(operation).copied().unwrap_or(0)
}

/// Versions of the group's instances, sorted.
fn instance_versions(group: &AutoScalingGroup) -> Vec<Option<u32>> {
    let mut versions: Vec<_> = group
        .instances
        .iter()
        .map(|i| i.launch_template_version)
        .collect();
    versions.sort();
    versions
}

/// The web group: template with two versions, two instances from version 1, then switched to
/// `$Latest` and scaled to three, so the third comes from version 2. Returns the template id.
async fn web_group_on_latest(moto: &Moto) -> String {
    let template = template_with_two_versions(moto, "web-lt").await;
    let arn = group_from_template(moto, "web-asg", &template, "1", 2).await;
    provider(moto, "web-cp", &arn, true).await;
    let autoscaling = moto.autoscaling();
    autoscaling
        .update_auto_scaling_group()
        .auto_scaling_group_name("web-asg")
        .launch_template(template_spec(&template, "$Latest"))
        .send()
        .await
        .unwrap();
    autoscaling
        .set_desired_capacity()
        .auto_scaling_group_name("web-asg")
        .desired_capacity(3)
        .send()
        .await
        .unwrap();
    template
}

#[tokio::test]
async fn capacity_chain_is_observed_field_by_field() {
    let moto = Moto::new();
    let template = web_group_on_latest(&moto).await;
    cluster_with_providers(&moto, &["web-cp", "FARGATE"]).await;

    // What Auto Scaling itself reports per instance (the launcher's patch): the group's
    // setting when it launched the instance, which for the newest one is `$Latest`.
    let raw = moto
        .autoscaling()
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("web-asg")
        .send()
        .await
        .unwrap();
    let mut reported: Vec<String> = raw.auto_scaling_groups()[0]
        .instances()
        .iter()
        .map(|i| i.launch_template().unwrap().version().unwrap().to_string())
        .collect();
    reported.sort();
    assert_eq!(reported, ["$Latest", "1", "1"]);
    let first = raw.auto_scaling_groups()[0].instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    moto.set_launch_time(&first, 1_700_000_000).await;

    let cloud = moto.cloud().await;
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert!(snapshot.gaps.is_empty(), "gaps: {:?}", snapshot.gaps);

    let mut providers = snapshot.capacity_providers.clone();
    providers.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(providers.len(), 2);
    assert_eq!(providers[0].name, "FARGATE");
    assert_eq!(providers[0].auto_scaling_group_arn, None);
    assert!(!providers[0].managed_scaling);
    assert_eq!(providers[1].name, "web-cp");
    let arn = group_arn(&moto, "web-asg").await;
    assert_eq!(
        providers[1].auto_scaling_group_arn.as_deref(),
        Some(arn.as_str())
    );
    assert!(providers[1].managed_scaling);

    assert_eq!(snapshot.auto_scaling_groups.len(), 1);
    let g = group(&snapshot, "web-asg");
    assert_eq!(g.arn, arn);
    assert_eq!((g.min_size, g.max_size, g.desired_capacity), (0, 10, 3));
    assert_eq!(
        g.launch,
        GroupLaunch::LaunchTemplate {
            template_id: template.clone(),
            template_name: "web-lt".into(),
            version: "$Latest".into(),
            resolved_version: Some(2),
        }
    );
    assert_eq!(
        g.tags,
        Tags::from([("team".to_string(), "web".to_string())])
    );
    // Each instance shows the numbered version it was launched from.
    assert_eq!(instance_versions(g), [Some(1), Some(1), Some(2)]);
    for i in &g.instances {
        assert_eq!(i.lifecycle_state, "InService");
        assert_eq!(i.health_status, "Healthy");
        assert!(i.launched_at.is_some(), "{i:?}");
        // The instance type of the version it was launched from (t3.small in 1, t3.large in 2).
        let expected = match i.launch_template_version {
            Some(1) => "t3.small",
            _ => "t3.large",
        };
        assert_eq!(i.instance_type.as_deref(), Some(expected), "{i:?}");
    }
    let launched = g.instances.iter().find(|i| i.instance_id == first).unwrap();
    assert_eq!(
        launched.launched_at,
        Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    );

    // One call of each for the chain; FARGATE is not described.
    for op in [
        "DescribeCapacityProviders",
        "DescribeAutoScalingGroups",
        "DescribeLaunchTemplates",
        "DescribeInstances",
    ] {
        assert_eq!(count(&cloud, op), 1, "{op}: {:?}", cloud.calls());
    }
}

#[tokio::test]
async fn default_version_is_resolved_and_numbered_groups_need_no_template_lookup() {
    let moto = Moto::new();
    let template = template_with_two_versions(&moto, "api-lt").await;
    // Version 2 becomes the default.
    moto.ec2()
        .modify_launch_template()
        .launch_template_id(&template)
        .default_version("2")
        .send()
        .await
        .unwrap();
    let default_arn = group_from_template(&moto, "api-default", &template, "$Default", 1).await;
    provider(&moto, "api-default-cp", &default_arn, false).await;
    cluster_with_providers(&moto, &["api-default-cp"]).await;
    let cloud = moto.cloud().await;

    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert!(snapshot.gaps.is_empty(), "gaps: {:?}", snapshot.gaps);
    let g = group(&snapshot, "api-default");
    assert!(matches!(
        &g.launch,
        GroupLaunch::LaunchTemplate { version, resolved_version: Some(2), .. } if version == "$Default"
    ));
    assert_eq!(instance_versions(g), [Some(2)]);
    assert!(!snapshot.capacity_providers[0].managed_scaling);

    // Pinned to a number: nothing to resolve, no DescribeLaunchTemplates.
    cloud
        .pin_launch_template_version("api-default", &template, 1)
        .await
        .unwrap();
    let before = count(&cloud, "DescribeLaunchTemplates");
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert_eq!(count(&cloud, "DescribeLaunchTemplates"), before);
    assert!(matches!(
        &group(&snapshot, "api-default").launch,
        GroupLaunch::LaunchTemplate { version, resolved_version: Some(1), .. } if version == "1"
    ));
}

#[tokio::test]
async fn mixed_launch_configuration_and_deleted_groups_are_reported_as_such() {
    let moto = Moto::new();
    let autoscaling = moto.autoscaling();
    let template = template_with_two_versions(&moto, "batch-lt").await;

    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("mixed-asg")
        .mixed_instances_policy(
            MixedInstancesPolicy::builder()
                .launch_template(
                    AsgLaunchTemplate::builder()
                        .launch_template_specification(template_spec(&template, "1"))
                        .overrides(
                            LaunchTemplateOverrides::builder()
                                .instance_type("t3.small")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .min_size(0)
        .max_size(4)
        .desired_capacity(1)
        .availability_zones(ZONE)
        .send()
        .await
        .unwrap();
    let mixed_arn = group_arn(&moto, "mixed-asg").await;
    provider(&moto, "mixed-cp", &mixed_arn, false).await;

    autoscaling
        .create_launch_configuration()
        .launch_configuration_name("legacy-lc")
        .image_id(IMAGE)
        .instance_type("t3.small")
        .send()
        .await
        .unwrap();
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("legacy-asg")
        .launch_configuration_name("legacy-lc")
        .min_size(0)
        .max_size(4)
        .desired_capacity(1)
        .availability_zones(ZONE)
        .send()
        .await
        .unwrap();
    let legacy_arn = group_arn(&moto, "legacy-asg").await;
    provider(&moto, "legacy-cp", &legacy_arn, false).await;

    let gone_arn = group_from_template(&moto, "gone-asg", &template, "1", 0).await;
    provider(&moto, "gone-cp", &gone_arn, false).await;
    autoscaling
        .delete_auto_scaling_group()
        .auto_scaling_group_name("gone-asg")
        .force_delete(true)
        .send()
        .await
        .unwrap();

    cluster_with_providers(&moto, &["mixed-cp", "legacy-cp", "gone-cp", "FARGATE_SPOT"]).await;
    let cloud = moto.cloud().await;
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert!(snapshot.gaps.is_empty(), "gaps: {:?}", snapshot.gaps);

    let mut names: Vec<_> = snapshot
        .capacity_providers
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["FARGATE_SPOT", "gone-cp", "legacy-cp", "mixed-cp"]);
    let gone = snapshot
        .capacity_providers
        .iter()
        .find(|p| p.name == "gone-cp")
        .unwrap();
    assert_eq!(
        gone.auto_scaling_group_arn.as_deref(),
        Some(gone_arn.as_str())
    );

    // The deleted group is simply absent.
    assert_eq!(snapshot.auto_scaling_groups.len(), 2);
    assert_eq!(
        group(&snapshot, "mixed-asg").launch,
        GroupLaunch::MixedInstancesPolicy {
            template_id: Some(template.clone())
        }
    );
    let legacy = group(&snapshot, "legacy-asg");
    assert_eq!(
        legacy.launch,
        GroupLaunch::LaunchConfiguration {
            name: "legacy-lc".into()
        }
    );
    assert_eq!(legacy.instances.len(), 1);
    assert_eq!(legacy.instances[0].launch_template_version, None);
    assert!(legacy.instances[0].launched_at.is_some());

    // Three groups asked for in one call; nothing to resolve.
    assert_eq!(count(&cloud, "DescribeCapacityProviders"), 1);
    assert_eq!(count(&cloud, "DescribeAutoScalingGroups"), 1);
    assert_eq!(count(&cloud, "DescribeLaunchTemplates"), 0);
    assert_eq!(count(&cloud, "DescribeInstances"), 1);
}

#[tokio::test]
async fn groups_are_described_a_hundred_at_a_time() {
    let moto = Moto::new();
    let template = template_with_two_versions(&moto, "many-lt").await;
    let mut providers = Vec::new();
    for n in 0..101 {
        let arn = group_from_template(&moto, &format!("asg-{n:03}"), &template, "$Latest", 0).await;
        let name = format!("cp-{n:03}");
        provider(&moto, &name, &arn, false).await;
        providers.push(name);
    }
    let names: Vec<&str> = providers.iter().map(String::as_str).collect();
    cluster_with_providers(&moto, &names).await;
    let cloud = moto.cloud().await;

    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert!(snapshot.gaps.is_empty(), "gaps: {:?}", snapshot.gaps);
    assert_eq!(snapshot.capacity_providers.len(), 101);
    assert_eq!(snapshot.auto_scaling_groups.len(), 101);
    assert!(snapshot.auto_scaling_groups.iter().all(|g| matches!(
        g.launch,
        GroupLaunch::LaunchTemplate {
            resolved_version: Some(2),
            ..
        }
    )));
    // 10 names a call: ECS answers at most 10 providers a page.
    assert_eq!(count(&cloud, "DescribeCapacityProviders"), 11);
    assert_eq!(count(&cloud, "DescribeAutoScalingGroups"), 2);
    // One template, resolved once; no instances, nothing to ask EC2 about them.
    assert_eq!(count(&cloud, "DescribeLaunchTemplates"), 1);
    assert_eq!(count(&cloud, "DescribeInstances"), 0);
}

#[tokio::test]
async fn failed_capacity_reads_are_gaps_not_failed_snapshots() {
    let moto = Moto::new();
    web_group_on_latest(&moto).await;
    cluster_with_providers(&moto, &["web-cp"]).await;
    let cloud = moto
        .cloud_with(AwsSettings {
            max_attempts: 1,
            ..AwsSettings::default()
        })
        .await;

    // EC2 denied: groups observed, versions and launch times unknown beyond what Auto Scaling
    // reports as numbers.
    moto.inject_fault("DescribeInstances", "UnauthorizedOperation", 403)
        .await;
    moto.inject_fault("DescribeLaunchTemplates", "UnauthorizedOperation", 403)
        .await;
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert_eq!(snapshot.gaps.len(), 2, "gaps: {:?}", snapshot.gaps);
    assert!(
        snapshot
            .gaps
            .iter()
            .any(|g| g.contains("DescribeInstances"))
    );
    assert!(
        snapshot
            .gaps
            .iter()
            .any(|g| g.contains("DescribeLaunchTemplates"))
    );
    let g = group(&snapshot, "web-asg");
    assert!(matches!(
        g.launch,
        GroupLaunch::LaunchTemplate {
            resolved_version: None,
            ..
        }
    ));
    assert_eq!(instance_versions(g), [None, Some(1), Some(1)]);
    assert!(g.instances.iter().all(|i| i.launched_at.is_none()));

    // Auto Scaling throttled: the provider is there, its group is not, and the snapshot says so.
    moto.inject_fault("DescribeAutoScalingGroups", "Throttling", 400)
        .await;
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert_eq!(snapshot.capacity_providers.len(), 1);
    assert!(snapshot.auto_scaling_groups.is_empty());
    assert_eq!(snapshot.gaps.len(), 1, "gaps: {:?}", snapshot.gaps);
    assert!(
        snapshot.gaps[0].contains("DescribeAutoScalingGroups")
            && snapshot.gaps[0].contains("(throttled)"),
        "{}",
        snapshot.gaps[0]
    );

    // ECS denied on the providers: a gap too.
    moto.inject_fault("DescribeCapacityProviders", "AccessDeniedException", 400)
        .await;
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert!(snapshot.capacity_providers.is_empty());
    assert_eq!(snapshot.gaps.len(), 1, "gaps: {:?}", snapshot.gaps);
    assert!(
        snapshot.gaps[0].contains("(denied)"),
        "{}",
        snapshot.gaps[0]
    );
}

#[tokio::test]
async fn auto_scaling_writes_do_what_they_say() {
    let moto = Moto::new();
    let template = web_group_on_latest(&moto).await;
    cluster_with_providers(&moto, &["web-cp"]).await;
    let cloud = moto.cloud().await;

    cloud.set_desired_capacity("web-asg", 4).await.unwrap();
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    let g = group(&snapshot, "web-asg");
    assert_eq!(g.desired_capacity, 4);
    assert_eq!(instance_versions(g), [Some(1), Some(1), Some(2), Some(2)]);

    cloud
        .pin_launch_template_version("web-asg", &template, 1)
        .await
        .unwrap();
    let tags = Tags::from([
        ("ecs-reconciler/cordon".to_string(), "lt-v2".to_string()),
        ("team".to_string(), "platform".to_string()),
    ]);
    cloud.tag_group("web-asg", &tags).await.unwrap();
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    let g = group(&snapshot, "web-asg");
    assert_eq!(
        g.launch,
        GroupLaunch::LaunchTemplate {
            template_id: template.clone(),
            template_name: "web-lt".into(),
            version: "1".into(),
            resolved_version: Some(1),
        }
    );
    assert_eq!(g.tags, tags);
    // Not propagated to instances launched from now on.
    let raw = moto.autoscaling().describe_tags().send().await.unwrap();
    let cordon = raw
        .tags()
        .iter()
        .find(|t| t.key() == Some("ecs-reconciler/cordon"))
        .unwrap();
    assert_eq!(cordon.propagate_at_launch(), Some(false));

    // Terminate one instance from version 2: it leaves the group, desired stays, and the
    // replacement comes from the pinned version 1.
    let victim = g
        .instances
        .iter()
        .find(|i| i.launch_template_version == Some(2))
        .unwrap()
        .instance_id
        .clone();
    cloud.terminate_instance(&victim).await.unwrap();
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    let g = group(&snapshot, "web-asg");
    assert_eq!(g.desired_capacity, 4);
    assert!(g.instances.iter().all(|i| i.instance_id != victim));
    assert_eq!(instance_versions(g), [Some(1), Some(1), Some(1), Some(2)]);

    // Unknown group and instance: NotFound.
    let err = cloud.set_desired_capacity("nope", 1).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
    let err = cloud.tag_group("nope", &tags).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
    let err = cloud
        .terminate_instance("i-0123456789abcdef0")
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
    // Out of [MinSize, MaxSize]: refused.
    let err = cloud.set_desired_capacity("web-asg", 11).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::Invalid, "{err}");
    assert_eq!(err.operation, "SetDesiredCapacity");
}

#[tokio::test]
async fn denied_update_auto_scaling_group_is_denied() {
    let moto = Moto::new();
    let template = web_group_on_latest(&moto).await;
    moto.inject_fault("UpdateAutoScalingGroup", "AccessDenied", 403)
        .await;
    let cloud = moto.cloud().await;

    let err = cloud
        .pin_launch_template_version("web-asg", &template, 1)
        .await
        .unwrap_err();
    assert_eq!(err.category, ErrorCategory::Denied, "{err}");
    assert_eq!(err.operation, "UpdateAutoScalingGroup");
    assert!(err.message.starts_with("AccessDenied"), "{err}");
    assert_eq!(count(&cloud, "UpdateAutoScalingGroup"), 1);
}

#[tokio::test]
async fn drain_sets_the_container_instance_draining() {
    let moto = Moto::new();
    let ecs = moto.ecs();
    cluster_with_providers(&moto, &["FARGATE"]).await;
    let instance_id = moto.launch_ec2_instance().await;
    let arn = ecs
        .register_container_instance()
        .cluster(CLUSTER)
        .instance_identity_document(json!({"instanceId": instance_id}).to_string())
        .send()
        .await
        .unwrap()
        .container_instance()
        .unwrap()
        .container_instance_arn()
        .unwrap()
        .to_string();
    let cloud = moto.cloud().await;

    cloud.drain_container_instance(CLUSTER, &arn).await.unwrap();
    let snapshot = cloud.observe_cluster(CLUSTER).await.unwrap();
    assert_eq!(snapshot.container_instances.len(), 1);
    assert_eq!(snapshot.container_instances[0].status, "DRAINING");
    assert_eq!(count(&cloud, "UpdateContainerInstancesState"), 1);
    // Only FARGATE: nothing to describe.
    assert_eq!(count(&cloud, "DescribeCapacityProviders"), 0);
    assert_eq!(snapshot.capacity_providers.len(), 1);

    // Another id: the last hex digit changed (to one it is not).
    let last = if arn.ends_with('0') { '1' } else { '0' };
    let unknown = format!("{}{last}", &arn[..arn.len() - 1]);
    let err = cloud
        .drain_container_instance(CLUSTER, &unknown)
        .await
        .unwrap_err();
    assert_eq!(err.operation, "UpdateContainerInstancesState");
    assert_eq!(err.category, ErrorCategory::NotFound, "{err}");
}
