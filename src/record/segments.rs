//! Writes a recording's segments: turns each observation into a full snapshot or a delta,
//! compresses, flushes, rolls to a new segment and deletes old ones (`record.max_bytes`,
//! `record.max_age`). Runs on the recorder's own thread, never on the controller's.
//!
//! Ages are measured on the observed account's clock (virtual under `--sim`), from the time in
//! each segment's name: `rec-SEQUENCE-STARTED.jsonl.gz`, STARTED in seconds since the epoch.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::causes::Clues;
use crate::domain::ClusterSnapshot;
use crate::record::{Entry, FORMAT, RecordedAction, RecordedClues, VERSION, delta, redact};

/// How much a recording keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most the segments may take on disk together.
    pub max_bytes: u64,
    /// Segments whose every entry is older than this are deleted.
    pub max_age: Duration,
}

impl Limits {
    /// A segment is closed once it holds this many compressed bytes: an eighth of the whole,
    /// so that deleting the oldest frees a useful share.
    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).max(64 * 1024)
    }

    /// A segment is closed once it spans this long: it starts with full snapshots, so this is
    /// also the longest stretch of deltas.
    fn segment_span(&self) -> Duration {
        (self.max_age / 4).min(Duration::from_secs(3600))
    }
}

/// A closed segment on disk.
#[derive(Debug)]
struct Kept {
    path: PathBuf,
    bytes: u64,
    started: SystemTime,
}

/// The segment being written.
struct Open {
    seq: u64,
    path: PathBuf,
    gz: GzEncoder<File>,
    started: SystemTime,
}

/// What was kept of the last picture recorded of a cluster, and in which segment.
struct Last {
    written: delta::Written,
    clues: RecordedClues,
    seq: u64,
}

/// The writer of one recording directory.
pub struct SegmentWriter {
    dir: PathBuf,
    limits: Limits,
    open: Option<Open>,
    kept: VecDeque<Kept>,
    next_seq: u64,
    last: HashMap<String, Last>,
}

impl SegmentWriter {
    /// Opens `dir` (creating it), continuing after the segments already there.
    pub fn open(dir: &Path, limits: Limits) -> io::Result<SegmentWriter> {
        fs::create_dir_all(dir)?;
        let mut found = existing_segments(dir)?;
        found.sort_by_key(|(seq, _)| *seq);
        let next_seq = found.last().map_or(1, |(seq, _)| seq + 1);
        Ok(SegmentWriter {
            dir: dir.to_path_buf(),
            limits,
            open: None,
            kept: found.into_iter().map(|(_, k)| k).collect(),
            next_seq,
            last: HashMap::new(),
        })
    }

    /// Records one observation of a cluster, and its clues when they changed.
    pub fn observation(
        &mut self,
        policy_set: &str,
        snapshot: &ClusterSnapshot,
        clues: &Clues,
    ) -> io::Result<()> {
        self.roll_if_due(snapshot.observed_at)?;
        let seq = self.open.as_ref().map_or(0, |o| o.seq);
        let cluster = &snapshot.cluster_name;
        let mut lines = Vec::new();
        let last = self.last.get(cluster).filter(|l| l.seq == seq);
        let redacted = redact::snapshot(snapshot);
        let written = delta::Written::of(&redacted);
        let entry = match last.and_then(|l| delta::diff_from(&l.written, &redacted, &written)) {
            Some(delta) => Entry::Delta {
                policy_set: policy_set.to_string(),
                delta: Box::new(delta),
            },
            None => Entry::Full {
                policy_set: policy_set.to_string(),
                snapshot: Box::new(redacted.clone().into_owned()),
            },
        };
        // The clues go first: the replay reads them as those of the observation that follows.
        let mut recorded = RecordedClues::from(clues);
        redact::clues(&mut recorded);
        let clues_changed = match last {
            Some(l) => l.clues != recorded,
            None => recorded != RecordedClues::default(),
        };
        if clues_changed {
            let clues_entry = Entry::Clues {
                cluster: cluster.clone(),
                clues: Box::new(recorded.clone()),
            };
            push_line(&mut lines, &clues_entry)?;
        }
        push_line(&mut lines, &entry)?;
        self.write(&lines)?;
        self.last.insert(
            cluster.clone(),
            Last {
                written,
                clues: recorded,
                seq,
            },
        );
        Ok(())
    }

    /// Records an audit record of the controller, at its time.
    pub fn action(&mut self, action: RecordedAction) -> io::Result<()> {
        self.roll_if_due(action.time)?;
        let mut lines = Vec::new();
        push_line(&mut lines, &Entry::Action(action))?;
        self.write(&lines)
    }

    /// Forgets the open segment after a failed write (its tail may be torn): the next write
    /// starts a new segment, with full snapshots.
    pub fn abandon(&mut self) {
        if let Some(open) = self.open.take() {
            let bytes = fs::metadata(&open.path).map_or(0, |m| m.len());
            self.kept.push_back(Kept {
                path: open.path,
                bytes,
                started: open.started,
            });
        }
        self.last.clear();
    }

    /// Finishes the open segment (writes the gzip trailer).
    pub fn close(&mut self) -> io::Result<()> {
        if let Some(open) = self.open.take() {
            let file = open.gz.finish()?;
            file.sync_all()?;
            let bytes = file.metadata()?.len();
            self.kept.push_back(Kept {
                path: open.path,
                bytes,
                started: open.started,
            });
        }
        Ok(())
    }

    /// The compressed bytes of every segment, the open one included.
    pub fn bytes_on_disk(&self) -> u64 {
        let open = self
            .open
            .as_ref()
            .and_then(|o| fs::metadata(&o.path).ok())
            .map_or(0, |m| m.len());
        self.kept.iter().map(|k| k.bytes).sum::<u64>() + open
    }

    fn write(&mut self, lines: &[u8]) -> io::Result<()> {
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| io::Error::other("no open segment"))?;
        open.gz.write_all(lines)?;
        // A sync flush: everything so far can be decompressed from the file as it stands.
        open.gz.flush()
    }

    /// Closes the open segment when it is full or old enough, opens one when none is, and
    /// deletes what the limits no longer keep.
    fn roll_if_due(&mut self, now: SystemTime) -> io::Result<()> {
        if let Some(open) = &self.open {
            let full = fs::metadata(&open.path)?.len() >= self.limits.segment_bytes();
            let old = since(open.started, now) >= self.limits.segment_span();
            if full || old {
                self.close()?;
            }
        }
        if self.open.is_none() {
            self.start(now)?;
            self.prune(now);
        }
        Ok(())
    }

    fn start(&mut self, now: SystemTime) -> io::Result<()> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let path = self.dir.join(format!("rec-{seq:06}-{secs}.jsonl.gz"));
        let file = File::options().create_new(true).write(true).open(&path)?;
        let mut open = Open {
            seq,
            path,
            gz: GzEncoder::new(file, Compression::default()),
            started: now,
        };
        let mut line = Vec::new();
        let header = Entry::Header {
            format: FORMAT.to_string(),
            version: VERSION,
            started: now,
        };
        push_line(&mut line, &header)?;
        open.gz.write_all(&line)?;
        open.gz.flush()?;
        self.open = Some(open);
        Ok(())
    }

    /// Deletes the oldest closed segments while the whole is over `max_bytes`, and those whose
    /// successor started more than `max_age` before `now`.
    fn prune(&mut self, now: SystemTime) {
        loop {
            let Some(oldest) = self.kept.front() else {
                return;
            };
            let ended = self
                .kept
                .get(1)
                .map(|k| k.started)
                .or(self.open.as_ref().map(|o| o.started))
                .unwrap_or(now);
            let too_old = since(ended, now) > self.limits.max_age;
            let too_big = self.bytes_on_disk() > self.limits.max_bytes;
            if !(too_old || too_big) {
                return;
            }
            if let Err(e) = fs::remove_file(&oldest.path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(segment = %oldest.path.display(), error = %e, "cannot delete an old recording segment");
                return;
            }
            self.kept.pop_front();
        }
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn push_line(buf: &mut Vec<u8>, entry: &Entry) -> io::Result<()> {
    serde_json::to_writer(&mut *buf, entry).map_err(io::Error::other)?;
    buf.push(b'\n');
    Ok(())
}

fn since(earlier: SystemTime, later: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

/// A segment file's sequence number and start time, from its name.
pub fn parse_name(name: &str) -> Option<(u64, SystemTime)> {
    let rest = name.strip_prefix("rec-")?.strip_suffix(".jsonl.gz")?;
    let (seq, secs) = rest.split_once('-')?;
    let started = UNIX_EPOCH + Duration::from_secs(secs.parse().ok()?);
    Some((seq.parse().ok()?, started))
}

fn existing_segments(dir: &Path) -> io::Result<Vec<(u64, Kept)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((seq, started)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        let bytes = entry.metadata()?.len();
        found.push((
            seq,
            Kept {
                path: entry.path(),
                bytes,
                started,
            },
        ));
    }
    Ok(found)
}
