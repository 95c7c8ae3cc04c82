//! The capacity chain of a cluster: capacity providers → Auto Scaling groups → launch template
//! versions → instances, from ECS, Auto Scaling and EC2.
//!
//! Steps, each batched at its API's limits and made only when there is something to ask:
//! 1. ECS DescribeCapacityProviders **with the cluster's provider names** (from DescribeClusters;
//!    never without names, which would list every provider of the account). FARGATE and
//!    FARGATE_SPOT are AWS-managed, have no group and are not described. A provider ECS reports
//!    MISSING is absent. The action takes up to 100 names but answers at most 10 providers a
//!    page (ECS API reference: `maxResults` is 1 to 10, and 10 when not set), so the names go
//!    10 a call: one page each, and the cost does not hide in pages.
//! 2. Auto Scaling DescribeAutoScalingGroups for the providers' groups, by name (parsed from the
//!    group ARN), 100 names a call, pages of 100. A group that no longer exists (or was replaced
//!    by a new group of the same name, with another ARN) is absent: the provider stays, without
//!    its group.
//! 3. EC2 DescribeLaunchTemplates, once for every template whose group is configured with
//!    `$Latest` or `$Default` (by the `launch-template-name` filter, so a deleted template is
//!    simply absent, leaving the version unresolved), to resolve them to numbers.
//! 4. EC2 DescribeInstances for the groups' instances (by the `instance-id` filter, 200 ids a
//!    call), for their launch time and the numbered version they were launched from.
//!
//! Which version an instance was launched from: Auto Scaling's `Instances[].LaunchTemplate` is
//! a LaunchTemplateSpecification, whose `Version` may be `$Latest` or `$Default` (the group's
//! setting when it launched the instance) rather than a number. EC2 tags every instance it
//! launches from a template with `aws:ec2launchtemplate:version`, always the number, so that tag
//! decides; a numbered Auto Scaling version is the fallback when EC2 could not be read. Auto
//! Scaling does not report launch times at all: those come from EC2 only.
//!
//! Cost for P described providers, G groups, T templates to resolve and I instances:
//! ceil(P/10) DescribeCapacityProviders, ceil(G/100) DescribeAutoScalingGroups, ceil(T/200)
//! DescribeLaunchTemplates and ceil(I/200) DescribeInstances (one page each at these sizes).
//!
//! Failures never fail the snapshot: a failed call (denied, throttled after the SDK's retries,
//! ...) is a gap, and what it would have told is missing (providers or groups left out, versions
//! unresolved, launch times unknown).
//!
//! Every call (every page) first takes a token of the process's budget ([`Pacer`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::types::Filter;
use aws_sdk_ecs::types as ecs;

use super::errors;
use super::pacing::Pacer;
use crate::cloud::{CloudError, GroupRead};
use crate::domain::{AutoScalingGroup, CapacityProvider, GroupInstance, GroupLaunch, Tags};

/// The capacity providers AWS manages itself: no Auto Scaling group, nothing to describe.
const AWS_MANAGED_PROVIDERS: [&str; 2] = ["FARGATE", "FARGATE_SPOT"];
/// DescribeCapacityProviders answers at most 10 providers a page (it takes up to 100 names).
const PROVIDER_BATCH: usize = 10;
/// DescribeAutoScalingGroups takes up to 100 names and returns up to 100 groups a page.
const GROUP_BATCH: usize = 100;
/// Values of one EC2 filter per call (the figure EC2's filtering documentation gives).
const FILTER_BATCH: usize = 200;
/// DescribeLaunchTemplates returns up to 200 templates a page.
const TEMPLATE_PAGE: i32 = 200;
/// DescribeInstances returns up to 1000 instances a page.
const INSTANCE_PAGE: i32 = 1000;
/// The tag EC2 puts on an instance launched from a launch template: the version number.
const VERSION_TAG: &str = "aws:ec2launchtemplate:version";
/// The `failures[]` reason for a resource ECS does not know.
const MISSING: &str = "MISSING";

/// What the capacity chain found, and what it could not read.
#[derive(Debug, Default)]
pub(super) struct CapacityChain {
    pub providers: Vec<CapacityProvider>,
    pub groups: Vec<AutoScalingGroup>,
    pub gaps: Vec<String>,
}

/// The clients the chain reads from.
pub(super) struct Clients<'a> {
    pub ecs: &'a aws_sdk_ecs::Client,
    pub autoscaling: &'a aws_sdk_autoscaling::Client,
    pub ec2: &'a aws_sdk_ec2::Client,
    pub pacer: &'a Pacer,
}

/// Observes the chain behind `provider_names` (the cluster's `capacityProviders`).
pub(super) async fn observe(clients: &Clients<'_>, provider_names: &[String]) -> CapacityChain {
    let mut chain = CapacityChain::default();
    let pacer = clients.pacer;
    chain.providers = providers(clients.ecs, pacer, provider_names, &mut chain.gaps).await;
    let wanted: BTreeMap<String, String> = chain
        .providers
        .iter()
        .filter_map(|p| p.auto_scaling_group_arn.as_deref())
        .map(|arn| (group_name(arn).to_string(), arn.to_string()))
        .collect();
    if wanted.is_empty() {
        return chain;
    }
    let described = groups(clients.autoscaling, pacer, &wanted, &mut chain.gaps).await;
    chain.groups = complete(clients, &described, &mut chain.gaps).await;
    chain
}

/// The capacity chain of one group, by name: a failed DescribeAutoScalingGroups is an error,
/// the template and instance reads after it are gaps.
pub(super) async fn observe_group(
    clients: &Clients<'_>,
    name: &str,
) -> Result<GroupRead, CloudError> {
    let batch = [name.to_string()];
    let described = describe_groups(clients.autoscaling, clients.pacer, &batch).await?;
    let mut gaps = Vec::new();
    let mut groups = complete(clients, &described, &mut gaps).await;
    Ok(GroupRead {
        group: groups.pop(),
        gaps,
    })
}

/// Resolves the described groups' launch template versions and their instances' launch times,
/// and converts them.
async fn complete(
    clients: &Clients<'_>,
    described: &[asg::AutoScalingGroup],
    gaps: &mut Vec<String>,
) -> Vec<AutoScalingGroup> {
    let pacer = clients.pacer;
    let (templates, launches) = tokio::join!(
        resolve_templates(clients.ec2, pacer, described),
        launches(clients.ec2, pacer, described),
    );
    let (templates, launches) = (
        templates.unwrap_or_else(|gap| {
            gaps.push(gap);
            BTreeMap::new()
        }),
        launches.unwrap_or_else(|gap| {
            gaps.push(gap);
            BTreeMap::new()
        }),
    );
    let mut out = Vec::new();
    for group in described {
        match convert_group(group, &templates, &launches) {
            Ok(group) => out.push(group),
            Err(why) => gaps.push(why),
        }
    }
    out
}

/// The group name in an Auto Scaling group ARN
/// (`arn:aws:autoscaling:REGION:ACCOUNT:autoScalingGroup:UUID:autoScalingGroupName/NAME`); a
/// bare name is returned as it is.
pub(super) fn group_name(arn_or_name: &str) -> &str {
    arn_or_name
        .split_once(":autoScalingGroupName/")
        .map_or(arn_or_name, |(_, name)| name)
}

async fn providers(
    ecs_client: &aws_sdk_ecs::Client,
    pacer: &Pacer,
    names: &[String],
    gaps: &mut Vec<String>,
) -> Vec<CapacityProvider> {
    const OP: &str = "DescribeCapacityProviders";
    let mut found = Vec::new();
    let mut to_describe = Vec::new();
    for name in names {
        if AWS_MANAGED_PROVIDERS.contains(&name.as_str()) {
            found.push(CapacityProvider {
                name: name.clone(),
                auto_scaling_group_arn: None,
                managed_scaling: false,
            });
        } else {
            to_describe.push(name.clone());
        }
    }
    for batch in to_describe.chunks(PROVIDER_BATCH) {
        let mut next_token: Option<String> = None;
        loop {
            let send = Box::pin(
                ecs_client
                    .describe_capacity_providers()
                    .set_capacity_providers(Some(batch.to_vec()))
                    .set_next_token(next_token.take())
                    .send(),
            );
            let result = pacer
                .call(OP, async {
                    send.await.map_err(|e| errors::from_sdk(OP, e))
                })
                .await;
            let output = match result {
                Ok(output) => output,
                Err(err) => {
                    gaps.push(format!(
                        "{} capacity providers not described: {err}",
                        batch.len()
                    ));
                    break;
                }
            };
            for failure in output.failures() {
                if failure.reason() != Some(MISSING) {
                    gaps.push(format!("{OP}: {}", super::convert::failure(failure)));
                }
            }
            found.extend(output.capacity_providers().iter().filter_map(provider));
            match output.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => break,
            }
        }
    }
    found
}

fn provider(p: &ecs::CapacityProvider) -> Option<CapacityProvider> {
    let name = p.name().filter(|n| !n.is_empty())?.to_string();
    let group = p.auto_scaling_group_provider();
    Some(CapacityProvider {
        name,
        auto_scaling_group_arn: group
            .map(|g| g.auto_scaling_group_arn())
            .filter(|arn| !arn.is_empty())
            .map(str::to_string),
        managed_scaling: group
            .and_then(|g| g.managed_scaling())
            .and_then(|s| s.status())
            == Some(&ecs::ManagedScalingStatus::Enabled),
    })
}

/// The groups named in `wanted` (name → the ARN the provider names), as Auto Scaling describes
/// them; a group whose ARN differs from the provider's (deleted and recreated under the same
/// name) is not the provider's group and is left out.
async fn groups(
    autoscaling: &aws_sdk_autoscaling::Client,
    pacer: &Pacer,
    wanted: &BTreeMap<String, String>,
    gaps: &mut Vec<String>,
) -> Vec<asg::AutoScalingGroup> {
    let names: Vec<String> = wanted.keys().cloned().collect();
    let mut found = Vec::new();
    for batch in names.chunks(GROUP_BATCH) {
        match describe_groups(autoscaling, pacer, batch).await {
            Ok(groups) => found.extend(groups.into_iter().filter(|g| {
                let arn_named = g
                    .auto_scaling_group_name()
                    .and_then(|name| wanted.get(name));
                match (arn_named, g.auto_scaling_group_arn()) {
                    // The provider named a full ARN: it must be this very group.
                    (Some(wanted_arn), Some(arn)) if wanted_arn.contains(':') => wanted_arn == arn,
                    (Some(_), _) => true,
                    (None, _) => false,
                }
            })),
            Err(err) => {
                gaps.push(format!(
                    "{} Auto Scaling groups not described: {err}",
                    batch.len()
                ));
            }
        }
    }
    found
}

/// DescribeAutoScalingGroups for up to [`GROUP_BATCH`] names, every page.
async fn describe_groups(
    autoscaling: &aws_sdk_autoscaling::Client,
    pacer: &Pacer,
    batch: &[String],
) -> Result<Vec<asg::AutoScalingGroup>, CloudError> {
    const OP: &str = "DescribeAutoScalingGroups";
    pacer
        .pages(OP, |token| async move {
            let page = autoscaling
                .describe_auto_scaling_groups()
                .set_auto_scaling_group_names(Some(batch.to_vec()))
                .max_records(GROUP_BATCH as i32)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| errors::from_sdk(OP, e))?;
            Ok((
                page.auto_scaling_groups().to_vec(),
                page.next_token().map(str::to_string),
            ))
        })
        .await
}

/// A launch template's version numbers, from DescribeLaunchTemplates.
#[derive(Debug, Clone, Copy)]
struct TemplateVersions {
    latest: Option<u32>,
    default: Option<u32>,
}

/// The launch template a group launches from directly (not through a mixed instances policy).
fn direct_template(g: &asg::AutoScalingGroup) -> Option<&asg::LaunchTemplateSpecification> {
    g.launch_template()
        .filter(|_| g.mixed_instances_policy().is_none())
}

/// The launch template of a group's mixed instances policy.
fn mixed_template(g: &asg::AutoScalingGroup) -> Option<&asg::LaunchTemplateSpecification> {
    g.mixed_instances_policy()
        .and_then(|m| m.launch_template())
        .and_then(|t| t.launch_template_specification())
}

/// Whether a configured version needs the template's numbers (`$Latest`, `$Default`, absent).
fn needs_resolution(version: Option<&str>) -> bool {
    version.and_then(number).is_none()
}

fn number(version: &str) -> Option<u32> {
    version.trim().parse().ok()
}

/// Latest and default version numbers (by template id) of the templates the groups are
/// configured with as `$Latest` or `$Default`; `Err` is the gap when they could not be read.
async fn resolve_templates(
    ec2: &aws_sdk_ec2::Client,
    pacer: &Pacer,
    groups: &[asg::AutoScalingGroup],
) -> Result<BTreeMap<String, TemplateVersions>, String> {
    const OP: &str = "DescribeLaunchTemplates";
    let names: BTreeSet<String> = groups
        .iter()
        .filter_map(direct_template)
        .filter(|t| needs_resolution(t.version()))
        .filter_map(|t| t.launch_template_name())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    let names: Vec<String> = names.into_iter().collect();
    let mut found = BTreeMap::new();
    for batch in names.chunks(FILTER_BATCH) {
        let filter = Filter::builder()
            .name("launch-template-name")
            .set_values(Some(batch.to_vec()))
            .build();
        let templates = pacer
            .pages(OP, |token| {
                let filter = filter.clone();
                async move {
                    let page = ec2
                        .describe_launch_templates()
                        .filters(filter)
                        .max_results(TEMPLATE_PAGE)
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| errors::from_sdk(OP, e))?;
                    Ok((
                        page.launch_templates().to_vec(),
                        page.next_token().map(str::to_string),
                    ))
                }
            })
            .await
            .map_err(|err| {
                format!(
                    "launch template versions of {} templates not resolved: {err}",
                    batch.len()
                )
            })?;
        for t in templates {
            if let Some(id) = t.launch_template_id() {
                let version = |n: Option<i64>| n.and_then(|n| u32::try_from(n).ok());
                found.insert(
                    id.to_string(),
                    TemplateVersions {
                        latest: version(t.latest_version_number()),
                        default: version(t.default_version_number()),
                    },
                );
            }
        }
    }
    Ok(found)
}

/// What EC2 says of an instance: when it launched, and from which numbered template version.
#[derive(Debug, Clone, Copy, Default)]
struct Launch {
    launched_at: Option<SystemTime>,
    version: Option<u32>,
}

/// EC2's view of the groups' instances, by instance id (an instance EC2 no longer knows is
/// absent); `Err` is the gap when they could not be read.
async fn launches(
    ec2: &aws_sdk_ec2::Client,
    pacer: &Pacer,
    groups: &[asg::AutoScalingGroup],
) -> Result<BTreeMap<String, Launch>, String> {
    const OP: &str = "DescribeInstances";
    let ids: BTreeSet<String> = groups
        .iter()
        .flat_map(|g| g.instances())
        .filter_map(|i| i.instance_id())
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    let ids: Vec<String> = ids.into_iter().collect();
    let mut found = BTreeMap::new();
    for batch in ids.chunks(FILTER_BATCH) {
        let filter = Filter::builder()
            .name("instance-id")
            .set_values(Some(batch.to_vec()))
            .build();
        let reservations = pacer
            .pages(OP, |token| {
                let filter = filter.clone();
                async move {
                    let page = ec2
                        .describe_instances()
                        .filters(filter)
                        .max_results(INSTANCE_PAGE)
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| errors::from_sdk(OP, e))?;
                    Ok((
                        page.reservations().to_vec(),
                        page.next_token().map(str::to_string),
                    ))
                }
            })
            .await
            .map_err(|err| {
                format!(
                    "launch details of {} instances not read: {err}",
                    batch.len()
                )
            })?;
        for instance in reservations.iter().flat_map(|r| r.instances()) {
            let Some(id) = instance.instance_id() else {
                continue;
            };
            let version = instance
                .tags()
                .iter()
                .find(|t| t.key() == Some(VERSION_TAG))
                .and_then(|t| t.value())
                .and_then(number);
            found.insert(
                id.to_string(),
                Launch {
                    launched_at: instance
                        .launch_time()
                        .and_then(|t| SystemTime::try_from(*t).ok()),
                    version,
                },
            );
        }
    }
    Ok(found)
}

fn size(n: Option<i32>) -> u32 {
    n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

/// A described group in domain terms, or why it cannot be used.
fn convert_group(
    g: &asg::AutoScalingGroup,
    templates: &BTreeMap<String, TemplateVersions>,
    launches: &BTreeMap<String, Launch>,
) -> Result<AutoScalingGroup, String> {
    let name =
        non_empty(g.auto_scaling_group_name()).ok_or("an Auto Scaling group without name")?;
    let refuse = |why: &str| format!("Auto Scaling group {name}: {why}");
    let launch = if g.mixed_instances_policy().is_some() {
        GroupLaunch::MixedInstancesPolicy {
            template_id: mixed_template(g).and_then(|t| non_empty(t.launch_template_id())),
        }
    } else if let Some(t) = direct_template(g) {
        let template_id = non_empty(t.launch_template_id())
            .ok_or_else(|| refuse("launch template without id"))?;
        let version = non_empty(t.version()).unwrap_or_else(|| "$Default".to_string());
        let resolved_version = number(&version).or_else(|| {
            let known = templates.get(&template_id)?;
            if version.eq_ignore_ascii_case("$Latest") {
                known.latest
            } else if version.eq_ignore_ascii_case("$Default") {
                known.default
            } else {
                None
            }
        });
        GroupLaunch::LaunchTemplate {
            template_name: non_empty(t.launch_template_name()).unwrap_or_default(),
            template_id,
            version,
            resolved_version,
        }
    } else if let Some(config) = non_empty(g.launch_configuration_name()) {
        GroupLaunch::LaunchConfiguration { name: config }
    } else {
        return Err(refuse(
            "neither a launch template, a mixed instances policy nor a launch configuration",
        ));
    };
    let instances = g
        .instances()
        .iter()
        .filter_map(|i| {
            let instance_id = non_empty(i.instance_id())?;
            let from_ec2 = launches.get(&instance_id).copied().unwrap_or_default();
            let reported = i
                .launch_template()
                .and_then(|t| t.version())
                .and_then(number);
            Some(GroupInstance {
                lifecycle_state: i
                    .lifecycle_state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                health_status: i.health_status().unwrap_or_default().to_string(),
                launch_template_version: from_ec2.version.or(reported),
                launched_at: from_ec2.launched_at,
                instance_type: non_empty(i.instance_type()),
                instance_id,
            })
        })
        .collect();
    let tags: Tags = g
        .tags()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    Ok(AutoScalingGroup {
        arn: non_empty(g.auto_scaling_group_arn()).unwrap_or_default(),
        min_size: size(g.min_size()),
        max_size: size(g.max_size()),
        desired_capacity: size(g.desired_capacity()),
        launch,
        instances,
        tags,
        name,
    })
}
