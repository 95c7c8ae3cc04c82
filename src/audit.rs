//! The audit trail: one JSON object per line, append-only, for every planned, skipped, done or
//! failed action, with the one-line why and the facts it relied on.
//!
//! It is write-ahead: before an action's first mutating call, its intent is written
//! (`outcome: started`, with an `attempt` id and the calls it is about to make in `detail`);
//! after the calls, its outcome (`done` or `failed:…`) with the same `attempt`. An intent with
//! no outcome of the same attempt means the process stopped in between: any prefix of the
//! listed calls may have been made (each is idempotent, and a restart finishes the rest).
//!
//! Each record is serialized to one buffer and written whole, then flushed to the operating
//! system before the caller goes on. The records of an attempt (its intent and its outcome) are
//! also synced to the disk when the trail is a regular file: they stand for calls made to the
//! account, which a host crash must not erase (3 to 5 ms a record on this project's test
//! disk, `cargo bench --bench audit`; a mutating AWS call takes far longer). Planned and skipped
//! records are not synced: a restarted process writes them again, as its memory of what was
//! written starts empty. A write that failed part-way leaves a torn line; the next record
//! starts on a line of its own. There is no buffer in this process that a failed write could
//! leave behind to be sent later. A sink can also keep records in memory (tests, the demo).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

use crate::diagnose::{Evidence, rfc3339};
use crate::policy::PolicyMode;

/// The guardrail that holds an action back while the audit trail cannot be written.
pub const AUDIT_UNAVAILABLE: &str = "auditUnavailable";

/// What became of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Decided, not performed (a dry run, or a policy in `mode: dry-run`).
    Planned,
    /// The intent, written before the action's first mutating call; the outcome record of the
    /// same attempt follows the calls.
    Started,
    /// Performed.
    Done,
    /// Held back by the named guardrail.
    Skipped(&'static str),
    /// Held back because the audit trail could not be written: no call was made
    /// (`skipped:auditUnavailable`).
    AuditUnavailable,
    /// The call failed with this error category.
    Failed(&'static str),
}

impl Serialize for Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// The outcome is written as one string: `planned`, `started`, `done`, `skipped:GUARDRAIL` or
/// `failed:CATEGORY`.
impl JsonSchema for Outcome {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Outcome".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "What became of the action: planned, started, done, skipped:GUARDRAIL or failed:CATEGORY.",
            "type": "string",
            "pattern": "^(planned|started|done|skipped:\\S+|failed:\\S+)$"
        })
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Planned => f.write_str("planned"),
            Outcome::Started => f.write_str("started"),
            Outcome::Done => f.write_str("done"),
            Outcome::Skipped(guardrail) => write!(f, "skipped:{guardrail}"),
            Outcome::AuditUnavailable => write!(f, "skipped:{AUDIT_UNAVAILABLE}"),
            Outcome::Failed(category) => write!(f, "failed:{category}"),
        }
    }
}

/// `dry-run` or `enforce`: the one spelling of the mode, in the audit trail, `plan`'s table and
/// JSON, the `starting` log line and the policy file (which still reads `audit` as `dry-run`).
pub fn mode_name(mode: PolicyMode) -> &'static str {
    match mode {
        PolicyMode::Enforce => "enforce",
        PolicyMode::Audit => "dry-run",
    }
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "AuditRecord", deny_unknown_fields)]
pub struct AuditRecord {
    /// RFC 3339, on the clock of the account observed.
    #[schemars(extend("format" = "date-time"))]
    pub time: String,
    /// `dry-run` or `enforce`.
    #[schemars(with = "String", extend("enum" = ["dry-run", "enforce"]))]
    pub mode: &'static str,
    /// The policy set the decision was made under (content hash).
    pub policy_set: String,
    pub policy: String,
    /// An `ActionKind` (`stopTask`, `replaceTask`, `runReplacement`, `cordonLaunchTemplate`,
    /// `nudgeCapacity`, `drainContainerInstance`, `capacity`), or `observe` for a cluster that
    /// could not be observed.
    pub action: String,
    /// The ARN of what was acted on.
    pub target: String,
    pub cluster: String,
    /// The cluster's account id and Region, when the controller knows them (always under
    /// `[[targets]]`; see `src/targets.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The one-line why.
    pub reason: String,
    /// The finding's evidence, shared with the plan (serialized as the map itself).
    #[serde(serialize_with = "crate::diagnose::serialize_shared")]
    #[schemars(with = "Evidence")]
    pub evidence: Arc<Evidence>,
    pub outcome: Outcome,
    /// Pairs an intent (`started`) with its outcome: `<process id>-<sequence>`, unique per
    /// attempt of an action. Absent on planned and skipped records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    /// What happened beyond the outcome: the guardrail's numbers, the error message, the new
    /// task's ARN; on an intent, the calls about to be made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditRecord {
    pub fn time_of(t: SystemTime) -> String {
        rfc3339(t)
    }

    /// The record as its one JSON line (without the newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{self:?} (not serializable: {e})"))
    }
}

/// Where audit records go. Cheap to clone; clones share the destination.
#[derive(Clone)]
pub struct AuditSink {
    inner: Arc<Mutex<Destination>>,
}

enum Destination {
    Writer(Trail),
    Memory(Vec<AuditRecord>),
}

/// The audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path} is a FIFO with no reader")]
    FifoWithoutReader { path: PathBuf },
    #[error("cannot open the audit log {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl AuditSink {
    /// Appends to a file, creating it if needed. The open never blocks: a FIFO with no reader
    /// is refused. The records of an attempt written to a regular file are synced to the disk.
    pub fn file(path: &Path) -> Result<AuditSink, AuditError> {
        let file = open_append(path)?;
        Ok(Self::to_file(file))
    }

    /// Writes to standard output (unbuffered: a failed write leaves nothing behind).
    pub fn stdout() -> AuditSink {
        match stdout_file() {
            Some(file) => Self::to_file(file),
            None => Self::writer(Box::new(io::stdout())),
        }
    }

    /// Writes to any writer, one whole record per `write` loop, then `flush`. The writer should
    /// not buffer: a buffer it keeps after a failed write would be sent again later.
    pub fn writer(w: Box<dyn Write + Send>) -> AuditSink {
        Self::with_trail(Trail::new(Output::Other(w)))
    }

    fn to_file(file: File) -> AuditSink {
        // fsync is meaningful for regular files only (a device or a FIFO refuses it).
        let sync = file.metadata().map(|m| m.is_file()).unwrap_or(false);
        Self::with_trail(Trail::new(Output::File { file, sync }))
    }

    fn with_trail(trail: Trail) -> AuditSink {
        AuditSink {
            inner: Arc::new(Mutex::new(Destination::Writer(trail))),
        }
    }

    /// Keeps records in memory; read them with [`AuditSink::records`].
    pub fn memory() -> AuditSink {
        AuditSink {
            inner: Arc::new(Mutex::new(Destination::Memory(Vec::new()))),
        }
    }

    /// Writes one record whole and flushes it (and syncs a regular file if the record is
    /// that of an attempt). On error the record is not in the trail, or only a torn part of it.
    pub fn record(&self, record: &AuditRecord) -> io::Result<()> {
        let mut dest = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *dest {
            Destination::Writer(trail) => {
                let line = serde_json::to_vec(record).map_err(io::Error::other)?;
                trail.append(&line, record.attempt.is_some())
            }
            Destination::Memory(records) => {
                records.push(record.clone());
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

    /// Flushes the writer (every record is already flushed when written).
    pub fn flush(&self) -> io::Result<()> {
        match &mut *self.inner.lock().unwrap_or_else(|e| e.into_inner()) {
            Destination::Writer(trail) => trail.out.flush(),
            Destination::Memory(_) => Ok(()),
        }
    }
}

/// A writer destination and whether its last line was left torn by a failed write.
struct Trail {
    out: Output,
    torn: bool,
}

enum Output {
    File { file: File, sync: bool },
    Other(Box<dyn Write + Send>),
}

impl Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::File { file, .. } => file.write(buf),
            Output::Other(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::File { file, .. } => file.flush(),
            Output::Other(w) => w.flush(),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match self {
            Output::File { file, sync: true } => file.sync_data(),
            _ => Ok(()),
        }
    }
}

impl Trail {
    fn new(out: Output) -> Trail {
        Trail { out, torn: false }
    }

    /// Writes `line` and a newline as one buffer (after a newline of its own if the previous
    /// write stopped part-way), then flushes, and syncs if `durable`.
    fn append(&mut self, line: &[u8], durable: bool) -> io::Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 2);
        if self.torn {
            buf.push(b'\n');
        }
        buf.extend_from_slice(line);
        buf.push(b'\n');
        let mut written = 0;
        let result = self.write_whole(&buf, &mut written);
        if written > 0 {
            self.torn = buf[written - 1] != b'\n';
        }
        result?;
        self.out.flush()?;
        if durable { self.out.sync() } else { Ok(()) }
    }

    /// `write_all`, counting what was written before an error.
    fn write_whole(&mut self, buf: &[u8], written: &mut usize) -> io::Result<()> {
        while *written < buf.len() {
            match self.out.write(&buf[*written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Opens `path` for appending without blocking (a FIFO with no reader fails at once with
/// ENXIO instead of waiting for one), then makes the descriptor blocking again.
#[cfg(unix)]
fn open_append(path: &Path) -> Result<File, AuditError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let open_error = |source| AuditError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source: io::Error| {
            let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
            if source.raw_os_error() == Some(libc::ENXIO) && fifo {
                AuditError::FifoWithoutReader {
                    path: path.to_path_buf(),
                }
            } else {
                open_error(source)
            }
        })?;
    clear_nonblocking(&file).map_err(open_error)?;
    Ok(file)
}

#[cfg(not(unix))]
fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| AuditError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes to a FIFO block again once it is open: the trail waits for a slow reader rather than
/// failing a record.
#[cfg(unix)]
fn clear_nonblocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `file`, which outlives both calls; F_GETFL
    // and F_SETFL read and set its status flags and touch no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Standard output as an unbuffered file (a duplicate of descriptor 1), so a failed write
/// leaves nothing in the standard library's line buffer to be sent with a later record.
#[cfg(unix)]
fn stdout_file() -> Option<File> {
    use std::os::fd::AsFd;
    io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(File::from)
}

#[cfg(not(unix))]
fn stdout_file() -> Option<File> {
    None
}
