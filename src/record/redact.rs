//! What a recording must not keep. Pure.
//!
//! A task's container overrides may carry secrets in environment values and in command
//! arguments (`--password=...`), and a launch template version's UserData often does. A
//! recorded picture keeps the names (which container, which variable) and replaces each value
//! with [`REDACTED`]. Diagnosis never reads them: a replacement task is started from them, and
//! a replay starts nothing. UserData is read by the root-cause diagnosis (which file systems it
//! mounts); a replay of a redacted one sees it as undecodable, as it would an unreadable one.

use std::borrow::Cow;

use crate::domain::{ClusterSnapshot, Task};
use crate::record::RecordedClues;

/// What a redacted value reads as.
pub const REDACTED: &str = "(redacted)";

/// `snapshot` with every override environment value and command argument redacted; borrowed
/// when it has none.
pub fn snapshot(snapshot: &ClusterSnapshot) -> Cow<'_, ClusterSnapshot> {
    if !snapshot.tasks.iter().any(holds_secrets) {
        return Cow::Borrowed(snapshot);
    }
    let mut copy = snapshot.clone();
    for task in copy.tasks.iter_mut().filter(|t| holds_secrets(t)) {
        redact_task(task);
    }
    Cow::Owned(copy)
}

fn holds_secrets(task: &Task) -> bool {
    task.overrides.containers.iter().any(|c| {
        c.environment.iter().any(|e| e.value != REDACTED)
            || c.command
                .as_ref()
                .is_some_and(|args| args.iter().any(|a| a != REDACTED))
    })
}

fn redact_task(task: &mut Task) {
    let mut overrides = (*task.overrides).clone();
    for container in &mut overrides.containers {
        for var in &mut container.environment {
            var.value = REDACTED.to_string();
        }
        if let Some(args) = &mut container.command {
            for arg in args {
                *arg = REDACTED.to_string();
            }
        }
    }
    task.overrides = overrides.into();
}

/// The clues with every launch template version's UserData redacted.
pub fn clues(clues: &mut RecordedClues) {
    for (_, _, reading) in &mut clues.versions {
        if let crate::causes::Reading::Read { value } = reading
            && value.user_data.is_some()
        {
            value.user_data = Some(REDACTED.to_string());
        }
    }
}
