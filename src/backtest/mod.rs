//! `backtest`: what a policy set would have done over a recording (`run --record`). Each
//! recorded observation is rebuilt (full snapshot, then deltas), and within the window it is
//! diagnosed and planned under the set ([`replay::step`]) as the controller would have; with
//! a base set, under both, side by side. The recorded controller's own actions are read from
//! the recording, so each stuck task's delay can be shown next to what was actually done.
//!
//! The limit, said in every report: the observations are replayed as recorded. A replay
//! cannot know how the account would have reacted to actions the recorded controller did not
//! take, nor see what it did take undone.

pub mod markdown;
pub mod replay;
pub mod tally;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;

use crate::capacity::tags::ManagedTag;
use crate::causes::Clues;
use crate::cli::diff::{Change, compare};
use crate::diagnose::rfc3339;
use crate::domain::ClusterSnapshot;
use crate::policy::PolicySet;
use crate::record::read::{Location, ReadError, read};
use crate::record::{Entry, RecordedAction, delta};
use tally::{PolicyTally, Tally};

/// What every report says of its own limit.
pub const LIMIT: &str = "A replay cannot know how the account would have reacted: the recorded \
     observations are replayed unchanged, so a task this set would have stopped stays as the \
     recorded controller left it, and the effect of an action the recorded controller took is \
     seen whichever set is replayed.";

/// The part of the recording to replay (observed time, both ends included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<SystemTime>,
    pub to: Option<SystemTime>,
}

impl Window {
    fn holds(&self, t: SystemTime) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|to| t <= to)
    }
}

/// Why a backtest cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("--from {from} is after --to {to}")]
    Window { from: String, to: String },
    #[error("no observations between {from} and {to}: the recording spans {span}")]
    EmptyWindow {
        from: String,
        to: String,
        span: String,
    },
}

/// One set's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetReport {
    pub policy_set: String,
    pub policies: BTreeMap<String, PolicyTally>,
}

/// The whole backtest, for Markdown or JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backtest {
    pub recording: String,
    /// The observations replayed: how many, of which clusters, first and last.
    pub observations: usize,
    pub clusters: Vec<String>,
    pub first: Option<String>,
    pub last: Option<String>,
    /// The policy sets the recorded controller ran under in the window.
    pub recorded_policy_sets: Vec<String>,
    /// Torn records at the end of segments (the controller was stopped while writing).
    pub torn: Vec<String>,
    pub limit: &'static str,
    pub head: SetReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<SetReport>,
    /// With a base: the targets whose decisions differ, as in `plan --base`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<Change>>,
}

/// The picture of one cluster being rebuilt, and each set's memory of it.
struct ClusterReplay {
    snapshot: ClusterSnapshot,
    clues: Clues,
    memories: Vec<replay::Memory>,
}

/// Replays the recording in `dir` under `head` (and `base`, if given) within `window`.
pub fn backtest(
    dir: &Path,
    head: &PolicySet,
    base: Option<&PolicySet>,
    window: Window,
    managed: &ManagedTag,
) -> Result<Backtest, BacktestError> {
    if let (Some(from), Some(to)) = (window.from, window.to)
        && from > to
    {
        return Err(BacktestError::Window {
            from: rfc3339(from),
            to: rfc3339(to),
        });
    }
    let sets: Vec<&PolicySet> = std::iter::once(head).chain(base).collect();
    let mut run = Run {
        sets: &sets,
        window,
        managed,
        clusters: HashMap::new(),
        pending_clues: HashMap::new(),
        tallies: sets.iter().map(|_| Tally::default()).collect(),
        recorded: HashMap::new(),
        seen: Seen::default(),
    };
    let summary = read(dir, |entry, at| run.entry(entry, at))?;
    let seen = run.seen;
    if seen.replayed == 0 {
        return Err(BacktestError::EmptyWindow {
            from: window.from.map_or("the start".into(), rfc3339),
            to: window.to.map_or("the end".into(), rfc3339),
            span: match (seen.first_any, seen.last_any) {
                (Some(a), Some(b)) => format!("{} to {}", rfc3339(a), rfc3339(b)),
                _ => "no observations at all".into(),
            },
        });
    }
    let mut results = run
        .tallies
        .into_iter()
        .zip(&sets)
        .map(|(t, set)| (t.finish(set, &run.recorded), set.fingerprint.clone()));
    let ((head_policies, head_decisions), head_fp) = results.next().expect("the head set");
    let base_result = results.next();
    let changes = base_result
        .as_ref()
        .map(|((_, decisions), _)| compare(decisions.clone(), head_decisions.clone()));
    Ok(Backtest {
        recording: dir.display().to_string(),
        observations: seen.replayed,
        clusters: seen.clusters.into_iter().collect(),
        first: seen.first.map(rfc3339),
        last: seen.last.map(rfc3339),
        recorded_policy_sets: seen.policy_sets.into_iter().collect(),
        torn: summary.torn.iter().map(ToString::to_string).collect(),
        limit: LIMIT,
        head: SetReport {
            policy_set: head_fp,
            policies: head_policies,
        },
        base: base_result.map(|((policies, _), policy_set)| SetReport {
            policy_set,
            policies,
        }),
        changes,
    })
}

/// What the window held.
#[derive(Default)]
struct Seen {
    replayed: usize,
    clusters: BTreeSet<String>,
    policy_sets: BTreeSet<String>,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
    first_any: Option<SystemTime>,
    last_any: Option<SystemTime>,
}

/// The state of one backtest while the recording is read.
struct Run<'a> {
    sets: &'a [&'a PolicySet],
    window: Window,
    managed: &'a ManagedTag,
    clusters: HashMap<String, ClusterReplay>,
    /// Clues recorded for a cluster before its next observation.
    pending_clues: HashMap<String, Clues>,
    tallies: Vec<Tally>,
    /// Per target: the recorded controller's first action that went ahead, in the window.
    recorded: HashMap<String, RecordedAction>,
    seen: Seen,
}

impl Run<'_> {
    fn entry(&mut self, entry: Entry, at: &Location) -> Result<(), ReadError> {
        match entry {
            Entry::Header { .. } => Ok(()),
            Entry::Full {
                policy_set,
                snapshot,
            } => {
                let name = snapshot.cluster_name.clone();
                let replay = self
                    .clusters
                    .entry(name.clone())
                    .or_insert_with(|| ClusterReplay {
                        snapshot: ClusterSnapshot::empty(&name, "", snapshot.observed_at),
                        clues: Clues::default(),
                        memories: self
                            .sets
                            .iter()
                            .map(|_| replay::Memory::default())
                            .collect(),
                    });
                replay.snapshot = *snapshot;
                self.observed(&name, &policy_set);
                Ok(())
            }
            Entry::Delta { policy_set, delta } => {
                let name = delta.cluster_name.clone();
                let Some(replay) = self.clusters.get_mut(&name) else {
                    return Err(ReadError::Corrupt {
                        at: at.clone(),
                        error: format!("a delta of cluster {name} before any full snapshot of it"),
                    });
                };
                delta::apply(&mut replay.snapshot, *delta);
                self.observed(&name, &policy_set);
                Ok(())
            }
            Entry::Clues { cluster, clues } => {
                self.pending_clues.insert(cluster, (*clues).into());
                Ok(())
            }
            Entry::Action(action) => {
                if self.window.holds(action.time) && action.went_ahead() {
                    self.recorded.entry(action.target.clone()).or_insert(action);
                }
                Ok(())
            }
        }
    }

    /// The picture of `cluster` is now the recorded one: replays it if it is in the window.
    fn observed(&mut self, cluster: &str, policy_set: &str) {
        let replay = self.clusters.get_mut(cluster).expect("just rebuilt");
        if let Some(clues) = self.pending_clues.remove(cluster) {
            replay.clues = clues;
        }
        let at = replay.snapshot.observed_at;
        let seen = &mut self.seen;
        seen.first_any = Some(seen.first_any.map_or(at, |f| f.min(at)));
        seen.last_any = Some(seen.last_any.map_or(at, |l| l.max(at)));
        if !self.window.holds(at) {
            return;
        }
        seen.replayed += 1;
        seen.first = Some(seen.first.map_or(at, |f| f.min(at)));
        seen.last = Some(seen.last.map_or(at, |l| l.max(at)));
        seen.clusters.insert(cluster.to_string());
        if !seen.policy_sets.contains(policy_set) {
            seen.policy_sets.insert(policy_set.to_string());
        }
        for ((set, memory), tally) in self
            .sets
            .iter()
            .zip(&mut replay.memories)
            .zip(&mut self.tallies)
        {
            let plan = replay::step(memory, &replay.snapshot, &replay.clues, set, self.managed);
            tally.add(&plan, at, set);
        }
    }
}
