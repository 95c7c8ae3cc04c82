//! The controller's records on Auto Scaling groups: cordoned launch template versions and the
//! last capacity nudge, kept as group tags so a restarted controller honors them. Pure.
//!
//! - `ecs-reconciler/cordon/<template id>/<version>` = `<RFC 3339 time> pinned <version or
//!   none> [policy NAME]: <why>` (one tag per cordoned version, never removed by the
//!   controller; an operator deletes it to un-cordon).
//! - `ecs-reconciler/nudge` = `<RFC 3339 time> <from>-><to> [policy NAME]`, written before the
//!   desired capacity is raised, so a crash in between is finished, not repeated.
//!
//! Both count against the hourly budget of the policy they name (see `history`); only the
//! last nudge is kept, so after a restart earlier nudges of the hour are not counted.
//!
//! [`ManagedTag`] is the opt-in: the controller writes to a group (cordon, pin, terminate,
//! nudge) only when the group carries it. The task role's IAM grant carries the same
//! condition (`aws:ResourceTag/<key>`, deploy/cloudformation/ecs-reconciler.yaml), so the tag is
//! checked twice: here, before planning, and by IAM, should a write get past this check.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::diagnose::rfc3339;
use crate::domain::AutoScalingGroup;

/// Auto Scaling tag keys hold at most 128 characters.
pub const MAX_TAG_KEY: usize = 128;

const CORDON_PREFIX: &str = "ecs-reconciler/cordon/";
/// The tag that records the last nudge.
pub const NUDGE_TAG: &str = "ecs-reconciler/nudge";

/// Auto Scaling tag values hold at most 256 characters.
pub const MAX_TAG_VALUE: usize = 256;

/// The tag key of the opt-in by default.
pub const MANAGED_TAG_KEY: &str = "ecs-reconciler:managed";
/// The tag value of the opt-in by default.
pub const MANAGED_TAG_VALUE: &str = "true";

/// The tag an Auto Scaling group must carry for the controller to write to it (the
/// `[managed_tag]` configuration table; default `ecs-reconciler:managed` = `true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagedTag {
    #[serde(deserialize_with = "crate::config::text")]
    pub key: String,
    /// Text even when an environment variable's `true` or `12` reads as a boolean or number.
    #[serde(deserialize_with = "crate::config::text")]
    pub value: String,
}

impl Default for ManagedTag {
    fn default() -> Self {
        ManagedTag {
            key: MANAGED_TAG_KEY.to_string(),
            value: MANAGED_TAG_VALUE.to_string(),
        }
    }
}

impl ManagedTag {
    /// Whether the group opted in: it carries the key with exactly the value.
    pub fn is_managed(&self, group: &AutoScalingGroup) -> bool {
        group.tags.get(&self.key).is_some_and(|v| *v == self.value)
    }
}

/// A cordon recorded on a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cordon {
    pub template_id: String,
    pub version: u32,
    pub at: Option<SystemTime>,
    pub pinned: Option<u32>,
    /// The policy that cordoned it, when the tag says.
    pub policy: Option<String>,
}

/// The last nudge recorded on a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nudge {
    pub at: SystemTime,
    pub from: u32,
    pub to: u32,
    pub policy: String,
}

/// The tag that records a cordon.
pub fn cordon_tag(
    template_id: &str,
    version: u32,
    at: SystemTime,
    pinned: Option<u32>,
    policy: &str,
    why: &str,
) -> (String, String) {
    let pinned = pinned.map_or("none".to_string(), |v| v.to_string());
    let value = format!("{} pinned {pinned} [policy {policy}]: {why}", rfc3339(at));
    (
        format!("{CORDON_PREFIX}{template_id}/{version}"),
        truncate(value),
    )
}

/// The tag that records a nudge.
pub fn nudge_tag(at: SystemTime, from: u32, to: u32, policy: &str) -> (String, String) {
    (
        NUDGE_TAG.to_string(),
        truncate(format!("{} {from}->{to} [policy {policy}]", rfc3339(at))),
    )
}

/// Every cordon recorded on the group.
pub fn cordons(group: &AutoScalingGroup) -> Vec<Cordon> {
    group
        .tags
        .iter()
        .filter_map(|(key, value)| {
            let rest = key.strip_prefix(CORDON_PREFIX)?;
            let (template_id, version) = rest.rsplit_once('/')?;
            let mut words = value.split_whitespace();
            let at = words.next().and_then(parse_time);
            let pinned = match (words.next(), words.next()) {
                (Some("pinned"), Some(v)) => v.parse().ok(),
                _ => None,
            };
            let policy = value
                .split_once("[policy ")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map(|(name, _)| name.to_string())
                .filter(|name| !name.is_empty());
            Some(Cordon {
                template_id: template_id.to_string(),
                version: version.parse().ok()?,
                at,
                pinned,
                policy,
            })
        })
        .collect()
}

/// Whether a version of a template is cordoned on this group.
pub fn is_cordoned(group: &AutoScalingGroup, template_id: &str, version: u32) -> bool {
    cordons(group)
        .iter()
        .any(|c| c.template_id == template_id && c.version == version)
}

/// The last nudge recorded on the group, if its tag parses.
pub fn last_nudge(group: &AutoScalingGroup) -> Option<Nudge> {
    let value = group.tags.get(NUDGE_TAG)?;
    let mut words = value.split_whitespace();
    let at = parse_time(words.next()?)?;
    let (from, to) = words.next()?.split_once("->")?;
    let policy = value
        .rsplit_once("[policy ")
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .unwrap_or_default();
    Some(Nudge {
        at,
        from: from.parse().ok()?,
        to: to.parse().ok()?,
        policy: policy.to_string(),
    })
}

fn parse_time(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(text).ok()
}

fn truncate(mut value: String) -> String {
    if value.len() > MAX_TAG_VALUE {
        value.truncate(value.floor_char_boundary(MAX_TAG_VALUE));
    }
    value
}
