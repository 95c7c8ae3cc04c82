//! Reading an Auto Scaling group's scaling activities: whether its recent launches fail, and
//! why. Pure.

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use std::time::SystemTime;

use super::{LaunchFailure, RootCause};
use crate::domain::ScalingActivity;

/// A status message is cut to this many characters.
const MESSAGE_WIDTH: usize = 200;

/// Auto Scaling reports a failed launch only as text, so matching it is the only way to tell
/// why. Lower-cased substrings, tried in order.
const FAILURES: &[(&str, LaunchFailure)] = &[
    ("vcpulimitexceeded", LaunchFailure::VcpuLimit),
    ("vcpu limit", LaunchFailure::VcpuLimit),
    (
        "insufficientinstancecapacity",
        LaunchFailure::InsufficientCapacity,
    ),
    (
        "do not have sufficient",
        LaunchFailure::InsufficientCapacity,
    ),
    ("insufficient capacity", LaunchFailure::InsufficientCapacity),
    ("invalidamiid", LaunchFailure::InvalidImage),
    ("the image id", LaunchFailure::InvalidImage),
    ("image id", LaunchFailure::InvalidImage),
];

/// What a failed activity's message says.
pub fn classify(message: &str) -> LaunchFailure {
    let lower = message.to_ascii_lowercase();
    FAILURES
        .iter()
        .find(|(needle, _)| lower.contains(needle))
        .map_or(LaunchFailure::Other, |(_, failure)| *failure)
}

/// Whether the group's launches fail: among the launch activities that started at or after
/// `since` (the oldest waiting task's wait), the newest that finished failed. An activity with
/// no start time cannot be placed against the wait and is passed over. `activities` is
/// newest first, as DescribeScalingActivities returns it.
pub fn launch_failed(
    group: &str,
    activities: &[ScalingActivity],
    since: SystemTime,
) -> Option<RootCause> {
    let newest = activities
        .iter()
        .filter(|a| a.start_time.is_some_and(|t| t >= since))
        .filter(|a| is_launch(a))
        .find(|a| matches!(a.status_code.as_str(), "Failed" | "Successful"))?;
    if newest.status_code != "Failed" {
        return None;
    }
    let message = newest
        .status_message
        .clone()
        .or_else(|| newest.description.clone())
        .unwrap_or_default();
    Some(RootCause::LaunchFailed {
        group: group.to_string(),
        failure: classify(&message),
        message: cut(message.trim()),
    })
}

/// A launch, not a termination: Auto Scaling describes launches as "Launching a new EC2
/// instance...". An activity with no description is taken for one.
fn is_launch(activity: &ScalingActivity) -> bool {
    activity
        .description
        .as_deref()
        .is_none_or(|d| !d.to_ascii_lowercase().starts_with("terminating"))
}

fn cut(message: &str) -> String {
    if message.chars().count() <= MESSAGE_WIDTH {
        return message.to_string();
    }
    let mut s: String = message
        .chars()
        .take(MESSAGE_WIDTH.saturating_sub(1))
        .collect();
    s.push('…');
    s
}
