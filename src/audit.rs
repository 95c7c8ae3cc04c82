//! The audit trail: one JSON object per line, append-only, for every planned, skipped, done or
//! failed action, with the one-line why and the facts it relied on.
//!
//! Each record is written and flushed before the next action starts, so a crash loses nothing
//! that was decided. A sink can also keep records in memory (tests, the demo).

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::diagnose::{Evidence, rfc3339};
use crate::policy::PolicyMode;

/// What became of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Decided, not performed (dry run or an audit-mode policy).
    Planned,
    /// Performed.
    Done,
    /// Held back by the named guardrail.
    Skipped(&'static str),
    /// The call failed with this error category.
    Failed(&'static str),
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Planned => f.write_str("planned"),
            Outcome::Done => f.write_str("done"),
            Outcome::Skipped(guardrail) => write!(f, "skipped:{guardrail}"),
            Outcome::Failed(category) => write!(f, "failed:{category}"),
        }
    }
}

/// `dry-run` or `enforce`, as the audit trail spells it.
pub fn mode_name(mode: PolicyMode) -> &'static str {
    match mode {
        PolicyMode::Enforce => "enforce",
        PolicyMode::Audit => "dry-run",
    }
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// RFC 3339, on the clock of the account observed.
    pub time: String,
    /// `dry-run` or `enforce`.
    pub mode: &'static str,
    /// The policy set the decision was made under (content hash).
    pub policy_set: String,
    pub policy: String,
    /// `stopTask`, `replaceTask`, `runReplacement`, or `observe` for a cluster that could not be
    /// observed.
    pub action: String,
    /// The ARN of what was acted on.
    pub target: String,
    pub cluster: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The one-line why.
    pub reason: String,
    pub evidence: Evidence,
    pub outcome: Outcome,
    /// What happened beyond the outcome: the guardrail's numbers, the error message, the new
    /// task's ARN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditRecord {
    pub fn time_of(t: SystemTime) -> String {
        rfc3339(t)
    }
}

/// Where audit records go. Cheap to clone; clones share the destination.
#[derive(Clone)]
pub struct AuditSink {
    inner: Arc<Mutex<Destination>>,
}

enum Destination {
    Writer(BufWriter<Box<dyn Write + Send>>),
    Memory(Vec<AuditRecord>),
}

/// The audit trail could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the audit trail {path}: {source}")]
pub struct AuditError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl AuditSink {
    /// Appends to a file, creating it if needed.
    pub fn file(path: &Path) -> Result<AuditSink, AuditError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| AuditError {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self::writer(Box::new(file)))
    }

    /// Writes to standard output.
    pub fn stdout() -> AuditSink {
        Self::writer(Box::new(io::stdout()))
    }

    fn writer(w: Box<dyn Write + Send>) -> AuditSink {
        AuditSink {
            inner: Arc::new(Mutex::new(Destination::Writer(BufWriter::new(w)))),
        }
    }

    /// Keeps records in memory; read them with [`AuditSink::records`].
    pub fn memory() -> AuditSink {
        AuditSink {
            inner: Arc::new(Mutex::new(Destination::Memory(Vec::new()))),
        }
    }

    /// Writes one record and flushes it.
    pub fn record(&self, record: AuditRecord) -> io::Result<()> {
        let mut dest = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *dest {
            Destination::Writer(w) => {
                serde_json::to_writer(&mut *w, &record)?;
                w.write_all(b"\n")?;
                w.flush()
            }
            Destination::Memory(records) => {
                records.push(record);
                Ok(())
            }
        }
    }

    /// The records kept by a memory sink (empty for other sinks).
    pub fn records(&self) -> Vec<AuditRecord> {
        match &*self.inner.lock().unwrap_or_else(|e| e.into_inner()) {
            Destination::Memory(records) => records.clone(),
            Destination::Writer(_) => Vec::new(),
        }
    }

    /// Flushes buffered output.
    pub fn flush(&self) -> io::Result<()> {
        match &mut *self.inner.lock().unwrap_or_else(|e| e.into_inner()) {
            Destination::Writer(w) => w.flush(),
            Destination::Memory(_) => Ok(()),
        }
    }
}
