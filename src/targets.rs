//! Targets: the accounts and Regions one deployment reconciles (`[[targets]]`). A target is an
//! account, reached through a role to assume or the ambient credentials, in one or more
//! Regions, optionally with its own cluster scope. Each account-Region ([`Place`]) gets its own
//! SDK clients, API budget and controller (`src/cli/fleet.rs`): AWS throttles per account and
//! Region, so one place's burst must not spend another's budget.
//!
//! This module is pure: the settings, their checks (with the key named), and the places they
//! expand to. No `[[targets]]` means one place: the ambient account and Region.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// The session name of an assumed role when `session_name` is not set.
pub const DEFAULT_SESSION_NAME: &str = "ecs-reconciler";

/// One `[[targets]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSettings {
    /// A name for the account that policies may select by (`target.accounts`); the account
    /// id always selects it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The role to assume in the target account; absent: the ambient credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The `sts:ExternalId` the role's trust policy asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The role session's name (in the target's CloudTrail); default `ecs-reconciler`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
    /// The Regions; empty: the ambient Region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// Cluster name globs this target is limited to (within what the policies select);
    /// absent: every cluster the policies select.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<String>>,
}

/// Who a target's account is before any call: the one in the role's ARN, or the ambient one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountRef {
    Ambient,
    Id(String),
}

impl std::fmt::Display for AccountRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountRef::Ambient => f.write_str("the ambient account"),
            AccountRef::Id(id) => write!(f, "account {id}"),
        }
    }
}

/// Where one controller works: an account and a Region, as the audit records, the metrics
/// and `plan` name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    /// The 12-digit account id.
    pub account: String,
    /// The target's `name`, if it has one.
    pub account_name: Option<String>,
    pub region: String,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.account_name {
            Some(name) => write!(f, "{name} ({}) {}", self.account, self.region),
            None => write!(f, "{} {}", self.account, self.region),
        }
    }
}

/// One account-Region of a target, before it is connected.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedPlace {
    /// The index of its `[[targets]]` entry (`targets[i]`); `None` without targets.
    pub target: Option<usize>,
    pub account: AccountRef,
    pub name: Option<String>,
    /// `None`: the ambient Region.
    pub region: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub session_name: String,
    /// The target's cluster globs, as written.
    pub clusters: Option<Vec<String>>,
}

impl PlannedPlace {
    /// How the logs name it before it is connected: `targets[1] (account 1111…) eu-west-1`.
    pub fn label(&self) -> String {
        let target = self
            .target
            .map(|i| format!("targets[{i}] "))
            .unwrap_or_default();
        let region = self.region.as_deref().unwrap_or("the ambient Region");
        format!("{target}({}) {region}", self.account)
    }

    /// The target's cluster scope, compiled (the globs were checked with the settings).
    pub fn cluster_scope(&self) -> Option<GlobSet> {
        let patterns = self.clusters.as_ref()?;
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            builder.add(Glob::new(p).ok()?);
        }
        builder.build().ok()
    }
}

/// The places `targets` expands to, in order: every Region of every target. No targets: the
/// ambient account and Region. The settings must have passed [`violations`].
pub fn places(targets: &[TargetSettings]) -> Vec<PlannedPlace> {
    if targets.is_empty() {
        return vec![PlannedPlace {
            target: None,
            account: AccountRef::Ambient,
            name: None,
            region: None,
            role_arn: None,
            external_id: None,
            session_name: DEFAULT_SESSION_NAME.into(),
            clusters: None,
        }];
    }
    let mut out = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let regions: Vec<Option<String>> = if t.regions.is_empty() {
            vec![None]
        } else {
            t.regions.iter().cloned().map(Some).collect()
        };
        for region in regions {
            out.push(PlannedPlace {
                target: Some(i),
                account: account_of(t),
                name: t.name.clone(),
                region,
                role_arn: t.role_arn.clone(),
                external_id: t.external_id.clone(),
                session_name: t
                    .session_name
                    .clone()
                    .unwrap_or_else(|| DEFAULT_SESSION_NAME.into()),
                clusters: t.clusters.clone(),
            });
        }
    }
    out
}

fn account_of(t: &TargetSettings) -> AccountRef {
    t.role_arn
        .as_deref()
        .and_then(|arn| role_account(arn).ok())
        .map_or(AccountRef::Ambient, |id| AccountRef::Id(id.to_string()))
}

/// The account id of an IAM role ARN, `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`; the error
/// says what is wrong.
pub fn role_account(arn: &str) -> Result<&str, String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return Err(format!(
            "not a role ARN: {arn:?}; valid: arn:aws:iam::111122223333:role/NAME"
        ));
    };
    let ok = prefix == "arn"
        && !partition.is_empty()
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty());
    if ok {
        Ok(account)
    } else {
        Err(format!(
            "not a role ARN: {arn:?}; valid: arn:aws:iam::111122223333:role/NAME"
        ))
    }
}

/// Every value of `targets` that cannot work, as (key, why), in order. Two targets naming the
/// same account and Region are refused here when both accounts are known from the settings;
/// the ambient account is compared once it is known (at start).
pub fn violations(targets: &[TargetSettings]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let key = |field: &str| format!("targets[{i}].{field}");
        if let Some(arn) = &t.role_arn
            && let Err(e) = role_account(arn)
        {
            out.push((key("role_arn"), e));
        }
        if t.role_arn.is_none() {
            for (field, set) in [
                ("external_id", t.external_id.is_some()),
                ("session_name", t.session_name.is_some()),
            ] {
                if set {
                    out.push((
                        key(field),
                        "is only used when assuming a role: set role_arn too, or remove it".into(),
                    ));
                }
            }
        }
        if let Some(id) = &t.external_id {
            out.extend(text_problem(id, 2, 1224, "+=,.@:/-").map(|p| (key("external_id"), p)));
        }
        if let Some(name) = &t.session_name {
            out.extend(text_problem(name, 2, 64, "+=,.@-").map(|p| (key("session_name"), p)));
        }
        if let Some(name) = &t.name {
            out.extend(text_problem(name, 1, 64, "_.-").map(|p| (key("name"), p)));
        }
        for (j, region) in t.regions.iter().enumerate() {
            if !is_region(region) {
                out.push((
                    format!("targets[{i}].regions[{j}]"),
                    format!("not a Region name: {region:?}; valid: e.g. us-east-1, eu-west-1"),
                ));
            } else if t.regions[..j].contains(region) {
                out.push((
                    format!("targets[{i}].regions[{j}]"),
                    format!("{region} is listed twice"),
                ));
            }
        }
        if let Some(clusters) = &t.clusters {
            out.extend(cluster_problems(i, clusters));
        }
    }
    out.extend(duplicate_places(targets));
    out
}

fn cluster_problems(i: usize, clusters: &[String]) -> Vec<(String, String)> {
    if clusters.is_empty() {
        return vec![(
            format!("targets[{i}].clusters"),
            "empty: it would select no cluster; remove it to take every cluster the policies \
             select"
                .into(),
        )];
    }
    clusters
        .iter()
        .enumerate()
        .filter_map(|(j, p)| {
            let why = match Glob::new(p) {
                _ if p.is_empty() => "empty pattern; valid: a name or glob such as `prod-*`".into(),
                Ok(_) => return None,
                Err(e) => format!("invalid glob `{p}`: {}", e.kind()),
            };
            Some((format!("targets[{i}].clusters[{j}]"), why))
        })
        .collect()
}

/// Two targets, or one target twice, naming one account and Region.
fn duplicate_places(targets: &[TargetSettings]) -> Vec<(String, String)> {
    let mut seen: Vec<(AccountRef, Option<&str>, usize)> = Vec::new();
    let mut out = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let account = account_of(t);
        let regions: Vec<Option<&str>> = if t.regions.is_empty() {
            vec![None]
        } else {
            t.regions.iter().map(|r| Some(r.as_str())).collect()
        };
        for region in regions {
            if let Some((_, _, first)) = seen
                .iter()
                .find(|(a, r, first)| *a == account && *r == region && *first != i)
            {
                let where_ = region.unwrap_or("the ambient Region");
                out.push((
                    format!("targets[{i}]"),
                    format!("names {account} in {where_}, as targets[{first}] does"),
                ));
            }
            seen.push((account.clone(), region, i));
        }
    }
    out
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`: lowercase words and a number, dash-joined.
fn is_region(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// Text of `min..=max` characters of letters, digits and `extra`.
fn text_problem(text: &str, min: usize, max: usize, extra: &str) -> Option<String> {
    let n = text.chars().count();
    let ok = (min..=max).contains(&n)
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c));
    (!ok).then(|| format!("must be {min} to {max} of letters, digits and {extra}, got {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(account: &str) -> Option<String> {
        Some(format!("arn:aws:iam::{account}:role/ecs-reconciler"))
    }

    #[test]
    fn the_account_comes_from_the_role_arn() {
        assert_eq!(
            role_account("arn:aws:iam::111122223333:role/path/ecs-reconciler"),
            Ok("111122223333")
        );
        for bad in [
            "arn:aws:iam::1111:role/x",
            "arn:aws:sts::111122223333:role/x",
            "arn:aws:iam::111122223333:user/x",
            "arn:aws:iam:us-east-1:111122223333:role/x",
            "111122223333",
        ] {
            assert!(role_account(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn no_targets_is_the_ambient_account_and_region() {
        let p = places(&[]);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].account, AccountRef::Ambient);
        assert_eq!(p[0].region, None);
    }

    #[test]
    fn every_region_of_every_target_is_a_place() {
        let targets = [
            TargetSettings {
                role_arn: role("111122223333"),
                regions: vec!["us-east-1".into(), "eu-west-1".into()],
                ..Default::default()
            },
            TargetSettings::default(),
        ];
        assert!(violations(&targets).is_empty());
        let p = places(&targets);
        let got: Vec<_> = p.iter().map(|p| (p.target, p.region.clone())).collect();
        assert_eq!(
            got,
            [
                (Some(0), Some("us-east-1".into())),
                (Some(0), Some("eu-west-1".into())),
                (Some(1), None)
            ]
        );
        assert_eq!(p[0].account, AccountRef::Id("111122223333".into()));
        assert_eq!(p[0].session_name, DEFAULT_SESSION_NAME);
    }

    #[test]
    fn the_same_account_and_region_twice_is_refused_with_both_targets_named() {
        let targets = [
            TargetSettings {
                role_arn: role("111122223333"),
                regions: vec!["us-east-1".into()],
                ..Default::default()
            },
            TargetSettings {
                role_arn: Some("arn:aws:iam::111122223333:role/other".into()),
                regions: vec!["eu-west-1".into(), "us-east-1".into()],
                ..Default::default()
            },
        ];
        let v = violations(&targets);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].0, "targets[1]");
        assert!(v[0].1.contains("as targets[0] does"), "{}", v[0].1);
        assert!(v[0].1.contains("111122223333 in us-east-1"), "{}", v[0].1);
    }

    #[test]
    fn bad_fields_are_named() {
        let targets = [TargetSettings {
            role_arn: Some("arn:aws:iam::12:role/x".into()),
            regions: vec!["us-east-1".into(), "Mars".into(), "us-east-1".into()],
            clusters: Some(vec!["prod-[".into()]),
            ..Default::default()
        }];
        let keys: Vec<String> = violations(&targets).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "targets[0].role_arn",
                "targets[0].regions[1]",
                "targets[0].regions[2]",
                "targets[0].clusters[0]"
            ]
        );
        let ambient = [TargetSettings {
            external_id: Some("abc".into()),
            ..Default::default()
        }];
        assert_eq!(violations(&ambient)[0].0, "targets[0].external_id");
    }

    #[test]
    fn a_target_cluster_scope_selects_by_glob() {
        let p = &places(&[TargetSettings {
            clusters: Some(vec!["prod-*".into()]),
            ..Default::default()
        }])[0];
        let scope = p.cluster_scope().unwrap();
        assert!(scope.is_match("prod-web"));
        assert!(!scope.is_match("staging-web"));
    }
}
