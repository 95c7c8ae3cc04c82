//! `run`'s places: one controller per account-Region of `[[targets]]` (or the one ambient
//! place), each with its own cloud, API budget, policy subset and cluster scope, sharing the
//! audit trail, the metrics and the leases.
//!
//! A target whose role cannot be assumed is reported and skipped; the others run. None left
//! is an error at start.

use std::sync::Arc;

use globset::GlobSet;
use tracing::{error, info};

use crate::cloud::Cloud;
use crate::cloud::aws::AwsCloud;
use crate::cloud::aws::targets::connect;
use crate::cloud::budget::ApiBudget;
use crate::config::Settings;
use crate::controller::Controller;
use crate::lease::keeper::Leases;
use crate::lease::{Ownership, PlaceScope};
use crate::policy::PolicySet;
use crate::targets::{Place, places};

/// One place's cloud, before its controller is built.
pub struct Member<C> {
    /// `None` on the simulated account.
    pub place: Option<Place>,
    pub cloud: C,
    pub budget: Arc<ApiBudget>,
    /// The target's cluster globs.
    pub scope: Option<GlobSet>,
}

impl<C> Member<C> {
    /// The member's cloud, wrapped (the dry-run decorator).
    pub fn map<D>(self, f: impl FnOnce(C) -> D) -> Member<D> {
        Member {
            place: self.place,
            cloud: f(self.cloud),
            budget: self.budget,
            scope: self.scope,
        }
    }
}

/// Connects every place of `settings.targets`, each with a budget of its own. With no
/// `[[targets]]`, a failure is the error; with targets, a failed place is logged and skipped,
/// and only none left is an error.
pub async fn connect_all(
    settings: &Settings,
    aws: &crate::cloud::aws::AwsSettings,
) -> Result<Vec<Member<AwsCloud>>, String> {
    let fleet = connect_each(settings, aws).await?;
    for e in &fleet.skipped {
        error!(error = %e, "target skipped");
    }
    if fleet.members.is_empty() {
        return Err(format!(
            "none of the {} target places could be reached (each is logged above)",
            fleet.skipped.len()
        ));
    }
    for m in &fleet.members {
        if let Some(place) = &m.place {
            info!(place = %place, "target connected");
        }
    }
    Ok(fleet.members)
}

/// What a place's controller owns: its target's clusters, under the leases if any.
pub fn ownership<C>(
    member: &Member<C>,
    leases: Option<&Arc<Leases>>,
) -> Option<Arc<dyn Ownership>> {
    let place = member.place.as_ref();
    if place.is_none() && member.scope.is_none() {
        return leases.map(|l| Arc::clone(l) as Arc<dyn Ownership>);
    }
    Some(Arc::new(PlaceScope {
        leases: leases.cloned(),
        account: place.map(|p| p.account.clone()).unwrap_or_default(),
        region: place.map(|p| p.region.clone()).unwrap_or_default(),
        clusters: member.scope.clone(),
    }))
}

/// The policies of `set` that apply in the controller's place.
pub fn policies_for<C: Cloud>(controller: &Controller<C>, set: &PolicySet) -> PolicySet {
    match controller.place() {
        Some(place) => set.for_place(place),
        None => set.clone(),
    }
}

/// The places [`connect_each`] reached, and the ones it could not.
pub struct Fleet<C> {
    pub members: Vec<Member<C>>,
    /// Each place that could not be connected: one line naming its target and why.
    pub skipped: Vec<String>,
}

/// Like [`connect_all`], for a command that must report what it could not reach (`plan`): a
/// place of `[[targets]]` that cannot be connected is returned in [`Fleet::skipped`], not
/// logged, and none reached is not an error here. Without `[[targets]]` a failure is the
/// error; so are two targets naming one account and Region.
pub async fn connect_each(
    settings: &Settings,
    aws: &crate::cloud::aws::AwsSettings,
) -> Result<Fleet<AwsCloud>, String> {
    let mut fleet = Fleet {
        members: Vec::new(),
        skipped: Vec::new(),
    };
    for p in &places(&settings.targets) {
        let budget = Arc::new(ApiBudget::new(&settings.pacing).map_err(|e| e.to_string())?);
        match connect(p, aws, Arc::clone(&budget)).await {
            Ok(c) => {
                if let Some(other) = fleet
                    .members
                    .iter()
                    .filter_map(|m| m.place.as_ref())
                    .find(|o| o.account == c.place.account && o.region == c.place.region)
                {
                    return Err(format!(
                        "invalid configuration: targets: {} names account {} in {}, as an \
                         earlier target does ({other})",
                        p.label(),
                        c.place.account,
                        c.place.region
                    ));
                }
                fleet.members.push(Member {
                    place: Some(c.place),
                    cloud: c.cloud,
                    budget,
                    scope: p.cluster_scope(),
                });
            }
            Err(e) if settings.targets.is_empty() => return Err(e),
            Err(e) => fleet.skipped.push(e),
        }
    }
    Ok(fleet)
}

/// A read-only command's controller of one place (`plan`): over `cloud` (the member's,
/// wrapped so it cannot write), under the policies of `set` that apply in the member's place,
/// limited to its target's clusters, naming its account and Region; its audit trail is kept
/// in memory.
pub fn read_only_controller<C: Cloud, D>(
    member: &Member<D>,
    cloud: C,
    set: &PolicySet,
    settings: &crate::controller::ControllerSettings,
) -> Controller<C> {
    let policies = match &member.place {
        Some(place) => set.for_place(place),
        None => set.clone(),
    };
    let mut c = Controller::new(
        cloud,
        policies,
        settings.clone(),
        crate::audit::AuditSink::memory(),
    );
    if let Some(ownership) = ownership(member, None) {
        c = c.with_ownership(ownership);
    }
    if let Some(place) = &member.place {
        c = c.with_place(place.clone());
    }
    c
}
