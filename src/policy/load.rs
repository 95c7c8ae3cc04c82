//! Reading policy files: splitting a file into YAML documents, deserializing each with field
//! paths and locations, validating, checking names are unique, and fingerprinting the set.
//!
//! # YAML crate
//!
//! We use `serde-saphyr`: it is maintained, reports a line and column for every parse and
//! deserialization error, and offers [`serde_saphyr::Spanned`], which gives every value we check
//! after deserializing its own line and column (wrapped as [`Located`]). `serde_norway` has no
//! span type, so semantic errors could only point at the document start.
//!
//! Field paths for serde errors (`spec.guardrails.maxInFlightPerService`) come from
//! `serde_path_to_error`, run on the deserializer that
//! [`serde_saphyr::with_deserializer_from_str_with_options`] hands us.
//!
//! # Documents
//!
//! serde-saphyr's `from_multiple` stops at the first bad document, and its streaming `read`
//! stops at the first syntax error and does not hand out the deserializer (which
//! `serde_path_to_error` needs). So we split a file into documents ourselves, at `---` marker
//! lines in column 0 (YAML forbids those inside any content, so this split is exact for policy
//! files). Each document is parsed on its own, so a broken document does not hide the problems
//! of the next one. Its lines are made those of the file by adding the lines before it (to every
//! [`Located`] value through [`with_line_offset`], and to parser errors), not by padding the
//! document with that many newlines: padding made a file of n documents cost O(n²) (15,000
//! policies in one file took 7 s).
//!
//! # Every problem of a document
//!
//! serde stops at the first unknown field (`deny_unknown_fields`). To report the others and the
//! document's remaining problems too, we recover: the entry at the unknown key is blanked out of
//! the document's text (spaces, line breaks kept, so everything else keeps its line and column;
//! see `recover`), and the document is parsed again, at most [`MAX_UNKNOWN_FIELDS`] times. Each
//! pass removes one key, so this ends. When the document then deserializes, it is validated as
//! usual. Keeping `deny_unknown_fields` (rather than collecting unknown keys in a catch-all map)
//! keeps serde's own list of valid names in the message and the JSON Schema's
//! `additionalProperties: false`, and costs nothing for a document without unknown fields.
//!
//! A type error (a list where a mapping belongs, a word where a number belongs) or a YAML syntax
//! error still ends its document: it is reported with the unknown fields before it, but what
//! follows it in the document is not checked.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_path_to_error::Segment;
use serde_saphyr::MessageFormatter;
use sha2::{Digest, Sha256};

use super::document::{Located, PolicyDocument, with_line_offset};
use super::error::{PolicyError, PolicyErrors};
use super::model::{Policy, PolicySet};
use super::recover;
use super::validate::validate;

/// Problems reported per document before the rest of it is left unchecked: each unknown field
/// costs one more parse of the document.
const MAX_UNKNOWN_FIELDS: usize = 32;

/// A validated policy with where its name is written, for the duplicate-name check.
struct Parsed {
    policy: Policy,
    name_line: usize,
    name_column: usize,
}

/// Loads every `*.yaml` and `*.yml` file of `dir` (not recursively), in path order.
///
/// Policies come in file path then document order. Every problem in every file is reported,
/// including names used twice anywhere in the directory. A missing directory, a directory
/// without policy files, or files without a single policy, are errors too.
pub fn load_dir(dir: &Path) -> Result<PolicySet, PolicyErrors> {
    let mut errors = Vec::new();
    let files = policy_files(dir, &mut errors)?;
    let mut hasher = Sha256::new();
    let mut parsed = Vec::new();
    for path in &files {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                errors.push(cannot_read(path, e));
                continue;
            }
        };
        let relative = path.strip_prefix(dir).unwrap_or(path);
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
        match std::str::from_utf8(&bytes) {
            Ok(text) => parse_documents(path, text, &mut parsed, &mut errors),
            Err(e) => errors.push(not_utf8(path, &bytes, e)),
        }
    }
    check_unique_names(&parsed, &mut errors);
    if errors.is_empty() && parsed.is_empty() {
        errors.push(PolicyError::new(
            dir,
            0,
            None,
            "",
            "the policy files hold no policy; expected at least one RemediationPolicy document",
        ));
    }
    if !errors.is_empty() {
        let mut errors = PolicyErrors(errors);
        errors.sort();
        return Err(errors);
    }
    let digest = hasher.finalize();
    let fingerprint: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    Ok(PolicySet {
        policies: parsed.into_iter().map(|p| p.policy).collect(),
        fingerprint,
    })
}

/// The `*.yaml` and `*.yml` files of `dir` in path order. An entry that has a policy file's name
/// but cannot be read as a file (a dangling symlink, a symlink loop, a FIFO) is a problem pushed
/// to `errors`, like a file that cannot be read: nothing named as a policy file is skipped
/// silently. `Err` when the directory itself cannot be read or holds no policy file at all.
fn policy_files(dir: &Path, errors: &mut Vec<PolicyError>) -> Result<Vec<PathBuf>, PolicyErrors> {
    let dir_error =
        |message: String| PolicyErrors(vec![PolicyError::new(dir, 0, None, "", message)]);
    let entries =
        fs::read_dir(dir).map_err(|e| dir_error(format!("cannot read policy directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(e) => {
                errors.push(PolicyError::new(
                    dir,
                    0,
                    None,
                    "",
                    format!("cannot read policy directory: {e}"),
                ));
                continue;
            }
        };
        if !path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            continue;
        }
        // `metadata` follows symlinks, so a dangling one or a loop fails here.
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => files.push(path),
            // A directory (or a symlink to one) named like a policy file is skipped: loading is
            // not recursive, so no policy is ever read from inside a directory, whatever its
            // name; it is not a policy file that could not be read.
            Ok(m) if m.is_dir() => {}
            Ok(_) => errors.push(PolicyError::new(
                &path,
                0,
                None,
                "",
                "cannot read: not a regular file (a FIFO, socket or device); valid: a regular file or a symlink to one",
            )),
            Err(e) => errors.push(cannot_read(&path, e)),
        }
    }
    files.sort();
    if files.is_empty() && errors.is_empty() {
        return Err(dir_error(
            "no policy files; expected at least one *.yaml or *.yml file".to_owned(),
        ));
    }
    Ok(files)
}

/// `path: cannot read: <why>`, naming the target when `path` is a symlink (a dangling symlink
/// otherwise reads as a file that does not exist, though it is listed).
fn cannot_read(path: &Path, e: std::io::Error) -> PolicyError {
    let target = fs::symlink_metadata(path)
        .is_ok_and(|m| m.file_type().is_symlink())
        .then(|| fs::read_link(path).ok())
        .flatten();
    let message = match target {
        Some(target) => format!("cannot read: {e} (a symlink to `{}`)", target.display()),
        None => format!("cannot read: {e}"),
    };
    PolicyError::new(path, 0, None, "", message)
}

/// The problem with a file that is not UTF-8, at the line and column of its first bad byte.
fn not_utf8(path: &Path, bytes: &[u8], e: std::str::Utf8Error) -> PolicyError {
    let valid = e.valid_up_to();
    // Valid UTF-8 up to there by definition, so nothing is replaced.
    let before = String::from_utf8_lossy(&bytes[..valid]);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    PolicyError::new(
        path,
        line,
        Some(column),
        "",
        format!(
            "not valid UTF-8: byte 0x{:02x} at byte offset {valid}; policy files must be UTF-8 text",
            bytes[valid]
        ),
    )
}

/// Parses and validates the policies in `text`, as if read from `file` (used in messages and
/// [`super::Origin`]). Names must be unique within `text`. An empty text yields no policies.
pub fn parse_str(file: &Path, text: &str) -> Result<Vec<Policy>, PolicyErrors> {
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    parse_documents(file, text, &mut parsed, &mut errors);
    check_unique_names(&parsed, &mut errors);
    if errors.is_empty() {
        Ok(parsed.into_iter().map(|p| p.policy).collect())
    } else {
        let mut errors = PolicyErrors(errors);
        errors.sort();
        Err(errors)
    }
}

/// Reports every policy whose name an earlier one already uses, naming both places.
fn check_unique_names(parsed: &[Parsed], errors: &mut Vec<PolicyError>) {
    let mut first: HashMap<&str, &Parsed> = HashMap::new();
    for p in parsed {
        if let Some(earlier) = first.get(p.policy.name.as_str()) {
            errors.push(PolicyError::new(
                &p.policy.origin.file,
                p.name_line,
                Some(p.name_column),
                "metadata.name",
                format!(
                    "duplicate policy name `{}`, already used at {}:{}:{}; valid: a name unique across the policy directory",
                    p.policy.name,
                    earlier.policy.origin.file.display(),
                    earlier.name_line,
                    earlier.name_column
                ),
            ));
        } else {
            first.insert(&p.policy.name, p);
        }
    }
}

/// Whether a line is a YAML document start marker (`---` in column 0).
fn is_document_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// Splits `text` into documents: (0-based index of the first line, text). A marker only starts a
/// new piece once the current one has content, so leading comments and directives stay with the
/// document that follows them.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut pieces = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 0, 0);
    let mut has_content = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if is_document_marker(line) {
            if has_content {
                pieces.push((start_line, &text[start..offset]));
                (start, start_line) = (offset, i);
            }
            has_content = true;
        } else {
            let t = line.trim();
            if !(t.is_empty() || t.starts_with('#') || line.starts_with('%')) {
                has_content = true;
            }
        }
        offset += line.len();
    }
    if start < text.len() {
        pieces.push((start_line, &text[start..]));
    }
    pieces
}

/// Parses every document of `text`, pushing valid policies to `parsed` and problems to `errors`.
fn parse_documents(
    file: &Path,
    text: &str,
    parsed: &mut Vec<Parsed>,
    errors: &mut Vec<PolicyError>,
) {
    for (first_line, piece) in split_documents(text) {
        let (doc, problems) = parse_document(file, piece, first_line);
        errors.extend(problems);
        // A document with unknown fields is still validated, so its other problems (and a name
        // used twice) are reported too; the load fails on its unknown fields either way.
        if let Some(doc) = doc {
            match validate(file, &doc) {
                Ok(policy) => parsed.push(Parsed {
                    policy,
                    name_line: doc.value.metadata.name.line,
                    name_column: doc.value.metadata.name.column,
                }),
                Err(e) => errors.extend(e),
            }
        }
    }
}

/// Deserializes one document, whose first line is line `offset + 1` of `file`: the document
/// (`None` when it is empty or cannot be deserialized) and its problems. After an unknown field,
/// the entry is blanked out and the document parsed again (see the [module](self) documentation),
/// at most [`MAX_UNKNOWN_FIELDS`] times.
fn parse_document(
    file: &Path,
    piece: &str,
    offset: usize,
) -> (Option<Located<PolicyDocument>>, Vec<PolicyError>) {
    let mut text = Cow::Borrowed(piece);
    let mut problems = Vec::new();
    loop {
        let failure = match deserialize_document(&text, offset) {
            Ok(doc) => return (doc, problems),
            Err(failure) => failure,
        };
        problems.push(to_policy_error(file, &text, offset, &failure));
        let Some((line, column)) = unknown_field_at(&failure.error) else {
            return (None, problems);
        };
        if problems.len() >= MAX_UNKNOWN_FIELDS {
            problems.push(PolicyError::new(
                file,
                offset + line,
                Some(column),
                "",
                format!(
                    "{MAX_UNKNOWN_FIELDS} problems in this document; the rest of it was not checked"
                ),
            ));
            return (None, problems);
        }
        if !recover::blank_entry(text.to_mut(), line, column) {
            return (None, problems);
        }
    }
}

/// A document that failed to deserialize: the parser's error and the field path it was at.
struct Failure {
    /// Boxed: the parser's error is large, and a failure is the rare path.
    error: Box<serde_saphyr::Error>,
    path: Option<serde_path_to_error::Path>,
}

/// Deserializes `text` (a document whose first line is line `offset + 1` of its file); `None`
/// when it is empty.
fn deserialize_document(
    text: &str,
    offset: usize,
) -> Result<Option<Located<PolicyDocument>>, Failure> {
    let options = serde_saphyr::options! { with_snippet: false };
    let mut path = None;
    with_line_offset(offset, || {
        serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
            serde_path_to_error::deserialize::<_, Option<Located<PolicyDocument>>>(de).map_err(
                |e| {
                    path = Some(e.path().clone());
                    e.into_inner()
                },
            )
        })
    })
    .map_err(|error| Failure {
        error: Box::new(error),
        path,
    })
}

/// The 1-based line and column of the key of an unknown field, relative to the document.
fn unknown_field_at(error: &serde_saphyr::Error) -> Option<(usize, usize)> {
    match error {
        serde_saphyr::Error::SerdeUnknownField { location, .. } if location.line() > 0 => {
            Some((location.line() as usize, location.column() as usize))
        }
        serde_saphyr::Error::WithSnippet { error, .. } => unknown_field_at(error),
        _ => None,
    }
}

/// The problem `failure` describes, in the file's terms: field path, file line and column, and
/// what would be valid.
fn to_policy_error(file: &Path, text: &str, offset: usize, failure: &Failure) -> PolicyError {
    let e = &failure.error;
    let mut message = serde_saphyr::DefaultMessageFormatter
        .format_message(e)
        .into_owned();
    // Say what would be valid, in the file's terms rather than the parser's.
    if let Some(cut) = message.find(", set DuplicateKeyPolicy") {
        message.truncate(cut);
        message.push_str("; valid: each key at most once");
    }
    let hint = match message.as_str() {
        m if m.starts_with("invalid u32") => "; valid: a whole number from 0 to 4294967295",
        m if m.starts_with("missing field") => "; it is required",
        "expected sequence start" => "; valid: a list, such as [a, b]",
        "expected mapping start" => "; valid: a mapping of `key: value` lines",
        _ => "",
    };
    message.push_str(hint);
    let parent = failure.path.as_ref().map(dotted_path).unwrap_or_default();
    let mut field = parent.clone();
    // The parser names a missing, unknown or repeated key only in its message.
    let named = [
        ("unknown field `", '`'),
        ("missing field `", '`'),
        ("duplicate mapping key: ", ';'),
    ];
    for (prefix, end) in named {
        if let Some(name) = message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split(end).next())
            && field.rsplit('.').next() != Some(name)
        {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(name);
        }
    }
    let located = match e.location() {
        Some(l) if l.line() > 0 => Some((l.line() as usize, Some(l.column() as usize))),
        _ => None,
    };
    // The parser points a missing field at the end of its mapping; the mapping's own key
    // says more, when we can find it.
    let parent_key = message
        .starts_with("missing field")
        .then(|| find_key_line(text, &parent, located.map(|l| l.0)))
        .flatten();
    let (line, column) = parent_key
        .map(|(l, c)| (l, Some(c)))
        .or(located)
        .unwrap_or((1, None));
    PolicyError::new(file, offset + line, column, field, message)
}

/// `spec.target.clusters[0]`, leaving out the segments of the [`Located`] wrapper.
fn dotted_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Map { key } => {
                if matches!(
                    key.as_str(),
                    "value" | "referenced" | "defined" | "__serde_saphyr_private_spanned"
                ) {
                    continue;
                }
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// The 1-based line and column of the block mapping key at dotted `path` (plain keys only, no
/// sequences), searching the lines before `before`. `None` when it is not written that way, or
/// for the root (`path` empty).
fn find_key_line(text: &str, path: &str, before: Option<usize>) -> Option<(usize, usize)> {
    if path.is_empty() || path.contains('[') {
        return None;
    }
    let mut lines = text
        .lines()
        .take(before.unwrap_or(usize::MAX))
        .enumerate()
        .filter(|(_, line)| {
            let t = line.trim_start();
            !(t.is_empty() || t.starts_with('#') || is_document_marker(line))
        })
        .map(|(i, line)| (i, line.len() - line.trim_start().len(), line.trim_start()));
    let mut found = None;
    let mut parent_indent = None;
    for segment in path.split('.') {
        // The keys of a mapping are the lines indented like its first line.
        let mut child_indent = None;
        found = None;
        for (i, indent, content) in lines.by_ref() {
            if parent_indent.is_some_and(|p| indent <= p) {
                return None;
            }
            let child = *child_indent.get_or_insert(indent);
            if indent == child
                && content
                    .strip_prefix(segment)
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
            {
                found = Some((i + 1, indent + 1));
                parent_indent = Some(indent);
                break;
            }
        }
        found?;
    }
    found
}
