//! Reading an instance's boot output (EC2 GetConsoleOutput): the lines that show why it never
//! registered. Pure.
//!
//! The output is what the instance wrote to its serial console: kernel lines, systemd units,
//! cloud-init and whatever the UserData printed. It is not necessarily UTF-8, may carry ANSI
//! colour escapes and `\r\n`, and EC2 keeps only its last 64 KiB, so either end may be cut in
//! the middle of a line. Reading it never fails: what could not be made out is said in
//! [`BootReport::notes`].

// Counts, capacities, durations and budgets: checked or saturating arithmetic only.
#![warn(clippy::arithmetic_side_effects)]

use serde::{Deserialize, Serialize};

use super::{FileSystem, RootCause};

/// At most this many lines are quoted as evidence.
pub const MAX_QUOTE: usize = 3;
/// A quoted line is cut to this many characters.
pub const QUOTE_WIDTH: usize = 160;
/// Of a cut line, this many characters of its head are kept.
const QUOTE_HEAD: usize = 100;

/// What kind of failure a boot output shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum BootFailure {
    /// A file system mount failed or timed out.
    #[serde(rename_all = "camelCase")]
    Mount {
        file_system: FileSystem,
        /// A line of this failure says it timed out.
        timed_out: bool,
    },
    /// The ECS agent failed to start or to reach the ECS endpoint.
    #[serde(rename_all = "camelCase")]
    Agent {
        /// A line of this failure says a connection timed out.
        timed_out: bool,
    },
    /// The UserData (or a cloud-init stage) failed or exited non-zero.
    Script,
}

impl BootFailure {
    /// Most telling first: a mount failure outranks the script failure it caused, and the
    /// agent's own complaint outranks a generic "script exited 1".
    fn rank(self) -> u8 {
        match self {
            BootFailure::Mount { .. } => 0,
            BootFailure::Agent { .. } => 1,
            BootFailure::Script => 2,
        }
    }

    /// Whether `other` is a line of the same failure: the same kind, and for a mount the
    /// same file system or a line that names none (a systemd mount unit's).
    fn same_as(self, other: BootFailure) -> bool {
        match (self, other) {
            (
                BootFailure::Mount { file_system: a, .. },
                BootFailure::Mount { file_system: b, .. },
            ) => a == b || b == FileSystem::Other,
            (BootFailure::Agent { .. }, BootFailure::Agent { .. }) => true,
            (BootFailure::Script, BootFailure::Script) => true,
            _ => false,
        }
    }

    fn timed_out(self) -> bool {
        match self {
            BootFailure::Mount { timed_out, .. } | BootFailure::Agent { timed_out } => timed_out,
            BootFailure::Script => false,
        }
    }

    /// The failure, with `timed_out` set as given.
    fn with_timed_out(mut self, value: bool) -> BootFailure {
        if let BootFailure::Mount { timed_out, .. } | BootFailure::Agent { timed_out } = &mut self {
            *timed_out = value;
        }
        self
    }
}

/// Something about the output itself that limits what it can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BootNote {
    /// The output is empty (or only whitespace).
    Empty,
    /// Much of the output is not text.
    Binary,
    /// The last line is cut in the middle (EC2 keeps only the tail of the output).
    Truncated,
}

/// What one boot output shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootReport {
    /// The most telling failure, if any line shows one.
    pub failure: Option<BootFailure>,
    /// At most [`MAX_QUOTE`] lines, trimmed, most telling first.
    pub quote: Vec<String>,
    /// How many lines were read.
    pub lines: usize,
    pub notes: Vec<BootNote>,
}

impl BootReport {
    /// The root cause this output shows for `instance_id`, if any.
    pub fn root_cause(&self, instance_id: &str) -> Option<RootCause> {
        let instance_id = instance_id.to_string();
        let quote = self.quote.clone();
        Some(match self.failure? {
            BootFailure::Mount {
                file_system,
                timed_out,
            } => RootCause::BootMountFailed {
                instance_id,
                file_system,
                timed_out,
                quote,
            },
            BootFailure::Agent { timed_out } => RootCause::BootAgentFailed {
                instance_id,
                timed_out,
                quote,
            },
            BootFailure::Script => RootCause::BootScriptFailed { instance_id, quote },
        })
    }

    /// One line for a finding's evidence.
    pub fn describe(&self) -> String {
        let notes: Vec<&str> = self
            .notes
            .iter()
            .map(|n| match n {
                BootNote::Empty => "empty",
                BootNote::Binary => "mostly not text",
                BootNote::Truncated => "last line cut",
            })
            .collect();
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join(", "))
        };
        if self.quote.is_empty() {
            format!("no failure in {} lines{notes}", self.lines)
        } else {
            format!("{}{notes}", self.quote.join(" | "))
        }
    }
}

/// Reads a decoded boot output.
pub fn read(output: &[u8]) -> BootReport {
    let text = String::from_utf8_lossy(output);
    let mut notes = Vec::new();
    if text.trim().is_empty() {
        notes.push(BootNote::Empty);
        return BootReport {
            notes,
            ..BootReport::default()
        };
    }
    if looks_binary(&text) {
        notes.push(BootNote::Binary);
    }
    if !text.ends_with('\n') {
        notes.push(BootNote::Truncated);
    }
    // (kind's rank, pattern, position, failure, line)
    let mut hits: Vec<(u8, usize, usize, BootFailure, String)> = Vec::new();
    let mut lines = 0usize;
    for (position, raw) in text.split('\n').enumerate() {
        let line = clean(raw);
        if line.is_empty() {
            continue;
        }
        lines = lines.saturating_add(1);
        if let Some((failure, pattern)) = classify(&line) {
            hits.push((failure.rank(), pattern, position, failure, line));
        }
    }
    // A line that names the file system says more than a systemd unit's "Failed to mount".
    hits.sort_by_key(|(rank, pattern, position, failure, _)| {
        let unnamed = matches!(
            failure,
            BootFailure::Mount {
                file_system: FileSystem::Other,
                ..
            }
        );
        (*rank, unnamed, *pattern, *position)
    });
    // Timed out when any line of the same failure says so ("Failed with result 'timeout'"
    // under the mount helper's "failed").
    let failure = hits.first().map(|h| {
        let timed_out = hits.iter().any(|o| h.3.same_as(o.3) && o.3.timed_out());
        h.3.with_timed_out(timed_out)
    });
    let mut quote: Vec<String> = Vec::new();
    for (_, _, _, _, line) in hits {
        let line = cut(&line);
        if quote.len() < MAX_QUOTE && !quote.contains(&line) {
            quote.push(line);
        }
    }
    BootReport {
        failure,
        quote,
        lines,
        notes,
    }
}

/// More than a tenth of the characters are neither printable nor whitespace.
fn looks_binary(text: &str) -> bool {
    let (mut odd, mut all) = (0usize, 0usize);
    for c in text.chars() {
        all = all.saturating_add(1);
        if c == char::REPLACEMENT_CHARACTER
            || (c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x1b'))
        {
            odd = odd.saturating_add(1);
        }
    }
    odd.saturating_mul(10) > all
}

/// The line without ANSI escapes, control characters, a kernel timestamp or a
/// `cloud-init[1234]:` prefix, trimmed.
fn clean(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte; OSC: ESC ] ... BEL; anything else: one char.
            match chars.next() {
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\x40'..='\x7e').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    for c in chars.by_ref() {
                        if c == '\x07' {
                            break;
                        }
                    }
                }
                _ => {}
            }
        } else if c == '\t' {
            out.push(' ');
        } else if !c.is_control() && c != char::REPLACEMENT_CHARACTER {
            out.push(c);
        }
    }
    let mut line = out.trim();
    line = strip_kernel_time(line);
    line = strip_cloud_init_prefix(line);
    line.trim().to_string()
}

/// `[   12.345678] rest` → `rest`.
fn strip_kernel_time(line: &str) -> &str {
    let Some(rest) = line.strip_prefix('[') else {
        return line;
    };
    match rest.split_once(']') {
        Some((inside, after))
            if !inside.trim().is_empty()
                && inside
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.') =>
        {
            after.trim_start()
        }
        _ => line,
    }
}

/// `cloud-init[1234]: rest` → `rest`.
fn strip_cloud_init_prefix(line: &str) -> &str {
    let Some(rest) = line.strip_prefix("cloud-init[") else {
        return line;
    };
    match rest.split_once("]: ") {
        Some((pid, after)) if pid.chars().all(|c| c.is_ascii_digit()) => after,
        _ => line,
    }
}

/// A line longer than [`QUOTE_WIDTH`] keeps its head and its tail, where log lines put the
/// error ("... dial tcp 52.46.1.1:443: i/o timeout"), joined by an ellipsis.
fn cut(line: &str) -> String {
    let count = line.chars().count();
    if count <= QUOTE_WIDTH {
        return line.to_string();
    }
    let tail = QUOTE_WIDTH.saturating_sub(QUOTE_HEAD).saturating_sub(1);
    let mut s: String = line.chars().take(QUOTE_HEAD).collect();
    s.push('…');
    s.extend(line.chars().skip(count.saturating_sub(tail)));
    s
}

/// What a line must say, lower-cased: one of `subject` and one of `failure`.
struct Pattern {
    subject: &'static [&'static str],
    failure: &'static [&'static str],
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Mount,
    Agent,
    Script,
}

const FAILED: &[&str] = &[
    "fail",
    "timed out",
    "timeout",
    "error",
    "denied",
    "refused",
    "no such",
    "does not exist",
    "unreachable",
    "bad option",
    "wrong fs type",
    "could not",
    "unable",
];
const ANY: &[&str] = &[""];

/// Every boot-output pattern, in the order they are tried; the first that matches a line
/// classifies it, and within a kind an earlier pattern is the more telling line. Boot output has no codes, so matching its text is the only way to read it.
const PATTERNS: &[Pattern] = &[
    // Mounts: mount helpers, util-linux mount, systemd mount units, amazon-efs-utils, Lustre.
    Pattern {
        subject: &[
            "mount.lustre",
            "mount.nfs",
            "mount.efs",
            "mount.cifs",
            "mount error",
            "failed to mount",
            ".mount: ",
            "mount: ",
            "mount -t",
            "amazon-efs-utils",
            "efs-utils",
            "dependency failed for /",
        ],
        failure: FAILED,
        kind: Kind::Mount,
    },
    Pattern {
        subject: &["failed to resolve \"fs-"],
        failure: ANY,
        kind: Kind::Mount,
    },
    Pattern {
        subject: &["nfs: server"],
        failure: &["not responding", "timed out"],
        kind: Kind::Mount,
    },
    // Kernel lines: telling, but after the mount helper's own line.
    Pattern {
        subject: &["lustreerror", "lneterror"],
        failure: ANY,
        kind: Kind::Mount,
    },
    // The ECS agent and ecs-init.
    Pattern {
        subject: &[
            "unable to register as a container instance",
            "error registering",
            "could not register",
            "error connecting to acs",
            "error connecting to tcs",
            "unable to discover poll endpoint",
            "failed to start amazon elastic container service",
        ],
        failure: ANY,
        kind: Kind::Agent,
    },
    Pattern {
        subject: &["ecs.service", "ecs-init", "amazon-ecs-agent", "ecs-agent"],
        failure: FAILED,
        kind: Kind::Agent,
    },
    Pattern {
        subject: &["dial tcp"],
        failure: &["ecs.", "ecs-a", "ecs-t"],
        kind: Kind::Agent,
    },
    // cloud-init and the UserData script.
    Pattern {
        subject: &[
            "failed to run module scripts-user",
            "failed running /var/lib/cloud/",
        ],
        failure: ANY,
        kind: Kind::Script,
    },
    Pattern {
        subject: &[
            "scripts-user",
            "runcmd",
            "bootcmd",
            "cloud-final",
            "cloud-config.service",
            "cloud-init.service",
            "part-00",
            "user-data",
            "userdata",
        ],
        failure: &["fail", "error", "exit status", "non-zero", "exited"],
        kind: Kind::Script,
    },
    Pattern {
        subject: &["cloud-init"],
        failure: &["exit status", "exited with"],
        kind: Kind::Script,
    },
];

/// The failure a line shows, with the index of the pattern that matched it.
fn classify(line: &str) -> Option<(BootFailure, usize)> {
    let lower = line.to_ascii_lowercase();
    let (index, pattern) = PATTERNS.iter().enumerate().find(|(_, p)| {
        p.subject.iter().any(|s| lower.contains(s)) && p.failure.iter().any(|f| lower.contains(f))
    })?;
    if lower.contains("exit status 0") || lower.contains("status=0/success") {
        return None;
    }
    let timed_out = says_timed_out(&lower);
    let failure = match pattern.kind {
        Kind::Mount => BootFailure::Mount {
            file_system: file_system_named(&lower),
            timed_out,
        },
        Kind::Agent => BootFailure::Agent { timed_out },
        Kind::Script => BootFailure::Script,
    };
    Some((failure, index))
}

/// Whether a lower-cased line says something timed out ("Connection timed out", "dial tcp
/// ...: i/o timeout", "Failed with result 'timeout'").
fn says_timed_out(lower: &str) -> bool {
    lower.contains("timed out") || lower.contains("timeout")
}

/// The kind of file system a lower-cased line names.
pub(crate) fn file_system_named(lower: &str) -> FileSystem {
    if lower.contains("lustre") || lower.contains(".fsx.") || lower.contains("@tcp:") {
        FileSystem::FsxLustre
    } else if lower.contains("efs") || lower.contains("fs-") {
        FileSystem::Efs
    } else if lower.contains("cifs") || lower.contains("smb") || lower.contains("mount error(") {
        FileSystem::Smb
    } else if lower.contains("nfs") {
        FileSystem::Nfs
    } else {
        FileSystem::Other
    }
}
