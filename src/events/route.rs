//! Events of several places (`[[targets]]`) from one queue: each goes to the controller of the
//! account and Region in its cluster's ARN. An event that names no cluster (an Auto Scaling
//! group's activity) is offered to each place in turn until one has the group in scope.

use std::sync::Arc;
use std::time::SystemTime;

use super::{Disposition, Event, EventSink};
use crate::targets::Place;

/// The event sinks of every place.
pub struct Router {
    places: Vec<(Place, Arc<dyn EventSink>)>,
}

impl Router {
    pub fn new(places: Vec<(Place, Arc<dyn EventSink>)>) -> Self {
        Router { places }
    }
}

/// The account and Region of an ARN, `arn:PARTITION:SERVICE:REGION:ACCOUNT:...`.
fn account_region(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some(_), Some(region), Some(account)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    Some((account, region))
}

fn cluster_arn(event: &Event) -> Option<&str> {
    match event {
        Event::Task(change) => Some(&change.task.cluster_arn),
        Event::ContainerInstance(change) => Some(&change.cluster_arn),
        Event::ServiceAction { cluster_arn, .. } => Some(cluster_arn),
        Event::GroupActivity { .. } => None,
    }
}

impl EventSink for Router {
    fn apply(&self, event: Event, received_at: SystemTime) -> Disposition {
        if let Some((account, region)) = cluster_arn(&event).and_then(account_region) {
            return match self
                .places
                .iter()
                .find(|(p, _)| p.account == account && p.region == region)
            {
                Some((_, sink)) => sink.apply(event, received_at),
                None => Disposition::OutOfScope,
            };
        }
        for (_, sink) in &self.places {
            match sink.apply(event.clone(), received_at) {
                Disposition::OutOfScope => continue,
                other => return other,
            }
        }
        Disposition::OutOfScope
    }

    fn set_degraded(&self, degraded: bool) {
        for (_, sink) in &self.places {
            sink.set_degraded(degraded);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Remembers the events it was given; says `OutOfScope` unless `in_scope`.
    struct Sink {
        got: Mutex<Vec<Event>>,
        in_scope: bool,
    }

    impl EventSink for Sink {
        fn apply(&self, event: Event, _: SystemTime) -> Disposition {
            self.got.lock().unwrap().push(event);
            if self.in_scope {
                Disposition::Applied
            } else {
                Disposition::OutOfScope
            }
        }

        fn set_degraded(&self, _: bool) {}
    }

    fn place(account: &str, region: &str) -> Place {
        Place {
            account: account.into(),
            account_name: None,
            region: region.into(),
        }
    }

    fn sink(in_scope: bool) -> Arc<Sink> {
        Arc::new(Sink {
            got: Mutex::new(Vec::new()),
            in_scope,
        })
    }

    fn service_action(cluster_arn: &str) -> Event {
        Event::ServiceAction {
            cluster_arn: cluster_arn.into(),
            service_arn: String::new(),
            event_name: "SERVICE_TASK_PLACEMENT_FAILURE".into(),
            reason: None,
        }
    }

    #[test]
    fn an_event_goes_to_the_place_of_its_cluster_arn_only() {
        let (a, b) = (sink(true), sink(true));
        let router = Router::new(vec![
            (
                place("111111111111", "us-east-1"),
                a.clone() as Arc<dyn EventSink>,
            ),
            (
                place("111111111111", "eu-west-1"),
                b.clone() as Arc<dyn EventSink>,
            ),
        ]);
        let now = SystemTime::now();
        let here = service_action("arn:aws:ecs:eu-west-1:111111111111:cluster/web");
        assert_eq!(router.apply(here, now), Disposition::Applied);
        let elsewhere = service_action("arn:aws:ecs:eu-west-1:222222222222:cluster/web");
        assert_eq!(router.apply(elsewhere, now), Disposition::OutOfScope);
        assert_eq!(a.got.lock().unwrap().len(), 0);
        assert_eq!(b.got.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_group_event_is_offered_until_a_place_takes_it() {
        let (a, b, c) = (sink(false), sink(true), sink(true));
        let router = Router::new(vec![
            (place("1", "r"), a.clone() as Arc<dyn EventSink>),
            (place("2", "r"), b.clone() as Arc<dyn EventSink>),
            (place("3", "r"), c.clone() as Arc<dyn EventSink>),
        ]);
        let group = Event::GroupActivity {
            group_name: "asg".into(),
            kind: super::super::GroupActivityKind::LaunchUnsuccessful,
            message: None,
        };
        assert_eq!(router.apply(group, SystemTime::now()), Disposition::Applied);
        let counts: Vec<usize> = [&a, &b, &c]
            .iter()
            .map(|s| s.got.lock().unwrap().len())
            .collect();
        assert_eq!(counts, [1, 1, 0]);
    }
}
