//! Reads a recording back, segment by segment, entry by entry, in the order written.
//!
//! A segment the writer did not close (the controller was killed) ends in a torn tail: the
//! part of a line after the last flush, or only a missing gzip trailer. Everything before it
//! is read, and the tail is reported ([`Torn`]). A whole line that is not an entry, a first
//! line that is not a header, or a header of another format version is an error naming the
//! file and line.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde::Deserialize;

use crate::record::segments::parse_name;
use crate::record::{Entry, FORMAT, VERSION};

/// Where an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// The end of a segment that was not written whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torn {
    /// The line that was being written.
    pub at: Location,
    /// Bytes of it that could be read (0: only the gzip trailer is missing).
    pub bytes: usize,
}

impl fmt::Display for Torn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bytes == 0 {
            write!(
                f,
                "{}: the segment was not closed (the controller stopped while writing it); every record before it is read",
                self.at
            )
        } else {
            write!(
                f,
                "{}: torn record of {} bytes (the controller stopped while writing it) ignored; every record before it is read",
                self.at, self.bytes
            )
        }
    }
}

/// Why a recording cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("recording {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("recording {}: no segments (rec-*.jsonl.gz) in it", dir.display())]
    Empty { dir: PathBuf },
    #[error(
        "recording {at}: not a recording of ecs-reconciler (the first line is no {FORMAT} header)"
    )]
    NotARecording { at: Location },
    #[error(
        "recording {at}: format version {version} is not known to this build, which reads version {VERSION}"
    )]
    UnknownVersion { at: Location, version: u32 },
    #[error("recording {at}: not an entry: {error}")]
    Corrupt { at: Location, error: String },
}

/// What was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSummary {
    pub segments: usize,
    pub entries: usize,
    pub torn: Vec<Torn>,
}

/// The segments of the recording in `dir`, in the order written.
pub fn segments(dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let io_error = |source| ReadError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        if let Some((seq, _)) = entry.file_name().to_str().and_then(parse_name) {
            found.push((seq, entry.path()));
        }
    }
    if found.is_empty() {
        return Err(ReadError::Empty {
            dir: dir.to_path_buf(),
        });
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Reads every entry of the recording in `dir`, in order, handing each to `visit` with where
/// it is. `visit` may refuse an entry (an error naming its location).
pub fn read(
    dir: &Path,
    mut visit: impl FnMut(Entry, &Location) -> Result<(), ReadError>,
) -> Result<ReadSummary, ReadError> {
    let mut summary = ReadSummary::default();
    for path in segments(dir)? {
        read_segment(&path, &mut visit, &mut summary)?;
        summary.segments += 1;
    }
    Ok(summary)
}

#[derive(Deserialize)]
struct HeaderProbe {
    kind: String,
    format: Option<String>,
    version: Option<u32>,
}

fn read_segment(
    path: &Path,
    visit: &mut impl FnMut(Entry, &Location) -> Result<(), ReadError>,
    summary: &mut ReadSummary,
) -> Result<(), ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut lines = BufReader::with_capacity(1 << 16, GzDecoder::new(file));
    let mut buf = Vec::new();
    let mut at = Location {
        path: path.to_path_buf(),
        line: 0,
    };
    loop {
        buf.clear();
        at.line += 1;
        let read = lines.read_until(b'\n', &mut buf);
        let whole = matches!(read, Ok(n) if n > 0) && buf.last() == Some(&b'\n');
        if !whole {
            // The end: clean, or a torn tail (a decoder error is a stream cut short).
            // A segment with not even its header was cut short just after it was created.
            if read.is_err() || !buf.is_empty() || at.line == 1 {
                summary.torn.push(Torn {
                    at: at.clone(),
                    bytes: buf.len(),
                });
            }
            return Ok(());
        }
        if at.line == 1 {
            check_header(&buf, &at)?;
        }
        let entry: Entry = serde_json::from_slice(&buf).map_err(|e| ReadError::Corrupt {
            at: at.clone(),
            error: e.to_string(),
        })?;
        summary.entries += 1;
        visit(entry, &at)?;
    }
}

fn check_header(line: &[u8], at: &Location) -> Result<(), ReadError> {
    let probe: HeaderProbe =
        serde_json::from_slice(line).map_err(|_| ReadError::NotARecording { at: at.clone() })?;
    if probe.kind != "header" || probe.format.as_deref() != Some(FORMAT) {
        return Err(ReadError::NotARecording { at: at.clone() });
    }
    match probe.version {
        Some(VERSION) => Ok(()),
        Some(version) => Err(ReadError::UnknownVersion {
            at: at.clone(),
            version,
        }),
        None => Err(ReadError::NotARecording { at: at.clone() }),
    }
}
