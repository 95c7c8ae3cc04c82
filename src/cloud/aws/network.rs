//! Security groups of tasks' network interfaces, from EC2 DescribeNetworkInterfaces.
//!
//! ECS DescribeTasks names an awsvpc task's network interface (`networkInterfaceId`) and subnet,
//! never its security groups; re-running a standalone task with the same network reach needs
//! them, so the observer asks EC2 for the interfaces of standalone tasks (service tasks are
//! replaced by their scheduler and are not looked up).
//!
//! The interfaces are selected with the `network-interface-id` filter, not the
//! `NetworkInterfaceIds` parameter: that parameter fails the whole call with
//! `InvalidNetworkInterfaceID.NotFound` when a single interface is gone (a task stopped
//! meanwhile) and cannot be combined with `MaxResults`. With the filter, an interface EC2 no
//! longer knows is simply absent from the answer. Cost: ceil(E/200) calls for E distinct
//! interfaces (200 filter values a call, up to 1000 interfaces a page, so one page each).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Filter;

use super::errors;
use super::pacing::Pacer;

/// The operation, as the call counter and gaps name it.
const OP: &str = "DescribeNetworkInterfaces";
/// Interface ids per call, as the values of one filter. EC2 caps the values of a filter; 200
/// is the figure its filtering documentation gives (not checked against this operation).
const FILTER_BATCH: usize = 200;
/// Interfaces per page (EC2 allows 5 to 1000).
const PAGE: i32 = 1000;

/// What the lookup found: sorted, deduplicated security group ids by interface id (an
/// interface EC2 does not know is absent), and a gap for each batch that could not be read.
#[derive(Debug, Default)]
pub(super) struct SecurityGroups {
    pub by_interface: BTreeMap<String, Vec<String>>,
    pub gaps: Vec<String>,
}

/// Looks up the security groups of `interface_ids`, batched and paged. Never fails: security
/// groups only complete a snapshot, so a failed call (denied, throttled after the SDK's
/// retries...) becomes a gap and its interfaces keep no security groups.
pub(super) async fn security_groups<'a>(
    ec2: &Client,
    pacer: &Pacer,
    interface_ids: impl IntoIterator<Item = &'a str>,
) -> SecurityGroups {
    let ids: Vec<String> = interface_ids
        .into_iter()
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut found = SecurityGroups::default();
    for batch in ids.chunks(FILTER_BATCH) {
        let filter = Filter::builder()
            .name("network-interface-id")
            .set_values(Some(batch.to_vec()))
            .build();
        let result = pacer
            .pages(OP, |token| {
                let filter = filter.clone();
                async move {
                    let page = ec2
                        .describe_network_interfaces()
                        .filters(filter)
                        .max_results(PAGE)
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| errors::from_sdk(OP, e))?;
                    Ok((
                        page.network_interfaces().to_vec(),
                        page.next_token().map(str::to_string),
                    ))
                }
            })
            .await;
        match result {
            Ok(interfaces) => {
                for eni in interfaces {
                    let Some(id) = eni.network_interface_id() else {
                        continue;
                    };
                    let groups: BTreeSet<String> = eni
                        .groups()
                        .iter()
                        .filter_map(|g| g.group_id())
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect();
                    found
                        .by_interface
                        .insert(id.to_string(), groups.into_iter().collect());
                }
            }
            Err(err) => {
                found.gaps.push(format!(
                    "security groups of {} network interfaces not read: {err}",
                    batch.len()
                ));
            }
        }
    }
    found
}
