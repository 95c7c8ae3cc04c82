//! Recordings (`run --record DIR`): what the controller observed and decided, kept so that
//! `backtest` can replay it through diagnose and plan under another policy set
//! (docs/design.md §9).
//!
//! A recording is a directory of segments, `rec-SEQUENCE.jsonl.gz`, each one gzip stream of
//! JSON lines ([`Entry`]), flushed after every observation so that a killed process loses at
//! most the line being written (the torn tail the reader reports). Every segment starts with a
//! [`Entry::Header`] naming the format and its version, and holds a full snapshot of each
//! cluster before any delta of it, so a segment can be read, or deleted by rotation, alone.
//!
//! Observations are stored as a [`delta::SnapshotDelta`] against the previous one of the same
//! cluster, with a full snapshot at the start of each segment (at least hourly). Recorded
//! pictures are [`redact`]ed first: container override environment values and commands, and
//! launch template UserData, never reach the disk.

pub mod delta;
pub mod read;
pub mod recorder;
pub mod redact;
pub mod segments;

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::causes::boot::BootReport;
use crate::causes::{Clues, Reading};
use crate::domain::{ClusterSnapshot, InstanceTypeSize, LaunchTemplateVersion, ScalingActivity};

/// What the first line of every segment names.
pub const FORMAT: &str = "ecs-reconciler-recording";
/// The version of the format this build writes and reads.
pub const VERSION: u32 = 1;

/// One line of a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Entry {
    /// The first line of a segment.
    #[serde(rename_all = "camelCase")]
    Header {
        format: String,
        version: u32,
        /// When the segment was started, on the observed account's clock.
        started: SystemTime,
    },
    /// A whole observation of a cluster, redacted.
    #[serde(rename_all = "camelCase")]
    Full {
        policy_set: String,
        snapshot: Box<ClusterSnapshot>,
    },
    /// An observation, as its change from the previous one of the same cluster.
    #[serde(rename_all = "camelCase")]
    Delta {
        policy_set: String,
        delta: Box<delta::SnapshotDelta>,
    },
    /// What the root-cause reads had found for a cluster, written when it changed: the replay
    /// cannot read boot outputs again.
    #[serde(rename_all = "camelCase")]
    Clues {
        cluster: String,
        clues: Box<RecordedClues>,
    },
    /// An audit record of the recorded controller: what it actually did.
    #[serde(rename_all = "camelCase")]
    Action(RecordedAction),
}

/// What a backtest needs of one audit record: the recorded controller's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedAction {
    pub time: SystemTime,
    pub policy: String,
    /// The action's name as the audit trail writes it (`stopTask`, ...).
    pub action: String,
    pub target: String,
    pub cluster: String,
    /// The outcome as the audit trail writes it: `planned`, `started`, `done`,
    /// `skipped:GUARDRAIL` or `failed:CATEGORY`.
    pub outcome: String,
}

impl RecordedAction {
    /// Whether the recorded controller went ahead with the action (performed it, or planned
    /// it in a dry run), as opposed to holding it back or failing.
    pub fn went_ahead(&self) -> bool {
        matches!(self.outcome.as_str(), "planned" | "started" | "done")
    }
}

/// [`Clues`] in a form JSON can hold (its maps have tuple keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedClues {
    pub boot: Vec<(String, Reading<BootReport>)>,
    pub versions: Vec<(String, u32, Reading<LaunchTemplateVersion>)>,
    pub activities: Vec<(String, Reading<Vec<ScalingActivity>>)>,
    pub instance_types: Vec<(String, Reading<InstanceTypeSize>)>,
}

impl From<&Clues> for RecordedClues {
    fn from(c: &Clues) -> Self {
        RecordedClues {
            boot: pairs(&c.boot),
            versions: c
                .versions
                .iter()
                .map(|((id, v), r)| (id.clone(), *v, r.clone()))
                .collect(),
            activities: pairs(&c.activities),
            instance_types: pairs(&c.instance_types),
        }
    }
}

fn pairs<T: Clone>(m: &BTreeMap<String, T>) -> Vec<(String, T)> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl From<RecordedClues> for Clues {
    fn from(r: RecordedClues) -> Self {
        Clues {
            boot: r.boot.into_iter().collect(),
            versions: r
                .versions
                .into_iter()
                .map(|(id, v, r)| ((id, v), r))
                .collect(),
            activities: r.activities.into_iter().collect(),
            instance_types: r.instance_types.into_iter().collect(),
        }
    }
}
