//! Recovering from an unknown field: blanking one mapping entry out of a YAML document's text, so
//! that the document can be parsed again and its other problems found.
//!
//! serde stops at the first unknown field (`deny_unknown_fields`). [`blank_entry`] replaces the
//! entry whose key the parser pointed at (the key, its value and the value's nested lines) with
//! spaces. Line breaks stay, so every other node keeps its line and column and the problems found
//! on the next parse point at the file as written. Two cases keep the text valid YAML:
//!
//! - an entry of a flow mapping (`{step: 1, stpe: 2}`) is blanked with its trailing comma, if
//!   any; a comma left before `}` is allowed in YAML;
//! - the only entry of a block mapping leaves `{}` in its place: an empty mapping, not the null a
//!   blank value would be (which would be reported as a second, invented problem).
//!
//! This works on the text without a YAML parser of its own: it only needs to know where an entry
//! ends, which indentation (block style) or bracket depth and quotes (flow style) tell.

/// Blanks the mapping entry whose key starts at 1-based `line` and `column` (in characters) of
/// `text`. `false` when there is no such position or nothing is left to blank there, so a caller
/// that parses again always makes progress.
pub(crate) fn blank_entry(text: &mut String, line: usize, column: usize) -> bool {
    let Some(start) = byte_offset(text, line, column) else {
        return false;
    };
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let starts_line = text[line_start..start].trim().is_empty();
    let indent = column.saturating_sub(1);
    let (end, only_entry) = if in_flow(text, line_start, start) {
        (flow_entry_end(text, start), false)
    } else {
        let end = block_entry_end(text, start, indent);
        let only = !has_block_sibling(text, line_start, end, indent, starts_line);
        (end, only)
    };
    if text[start..end].trim().is_empty() {
        return false;
    }
    let blanked: String = text[start..end]
        .chars()
        .map(|c| if c == '\n' { '\n' } else { ' ' })
        .collect();
    text.replace_range(start..end, &blanked);
    // The key and its `:` were at least two characters on this line, now two spaces.
    if only_entry && text[start..].starts_with("  ") {
        text.replace_range(start..start + 2, "{}");
    }
    true
}

/// The byte offset of 1-based `line` and `column` (characters), if it is inside `text`.
fn byte_offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let mut offset = 0;
    let wanted = text.split_inclusive('\n').nth(line.checked_sub(1)?)?;
    for earlier in text.split_inclusive('\n').take(line - 1) {
        offset += earlier.len();
    }
    let (i, _) = wanted.char_indices().nth(column.checked_sub(1)?)?;
    Some(offset + i)
}

/// Whether the key at `start` is inside a flow collection: the last character before it, leaving
/// out white space and comments, opens one or separates its entries.
fn in_flow(text: &str, line_start: usize, start: usize) -> bool {
    let before = text[line_start..start].trim_end();
    if let Some(c) = before.chars().last() {
        return matches!(c, ',' | '{' | '[');
    }
    for line in text[..line_start].lines().rev() {
        let content = without_comment(line).trim_end();
        if let Some(c) = content.chars().last() {
            return matches!(c, ',' | '{' | '[');
        }
    }
    false
}

/// `line` without a trailing `# comment` (a `#` at the start or after white space, outside
/// quotes).
fn without_comment(line: &str) -> &str {
    let mut quote = None;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '\'' || c == '"') && is_token_start(prev) => quote = Some(c),
            None if c == '#' && prev.is_whitespace() => return &line[..i],
            None => {}
        }
        prev = c;
    }
    line
}

/// Whether a quote after `prev` opens a quoted scalar (rather than being part of a plain one,
/// like the `'` of `don't`).
fn is_token_start(prev: char) -> bool {
    prev.is_whitespace() || matches!(prev, ':' | ',' | '[' | '{' | '-')
}

/// The end of the flow entry starting at `start`: after its comma, or before the bracket that
/// closes its collection.
fn flow_entry_end(text: &str, start: usize) -> usize {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    let mut prev = ' ';
    for (i, c) in text[start..].char_indices() {
        let at = start + i;
        if comment {
            comment = c != '\n';
        } else if let Some(q) = quote {
            // `''` inside single quotes closes and reopens, which toggling handles.
            if escaped {
                escaped = false;
            } else if q == '"' && c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                '\'' | '"' if is_token_start(prev) => quote = Some(c),
                '#' if prev.is_whitespace() => comment = true,
                '[' | '{' => depth += 1,
                ']' | '}' if depth == 0 => return at,
                ']' | '}' => depth -= 1,
                ',' if depth == 0 => return at + 1,
                _ => {}
            }
        }
        prev = c;
    }
    text.len()
}

/// The leading spaces of `line`.
fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Whether a line holds nothing for the parser (blank, a comment, a marker or a directive).
fn is_filler(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#') || line.starts_with("---") || line.starts_with('%')
}

/// Whether `line` is an item of a block sequence written at the indentation of its key.
fn is_sequence_item(line: &str) -> bool {
    let t = line.trim_start();
    t == "-" || t.starts_with("- ")
}

/// The end of the block entry whose key starts at `start`, indented `indent`: the end of its
/// line and of every following line that belongs to its value (indented more, or a sequence
/// item at the key's indentation). Filler lines are included only between such lines.
fn block_entry_end(text: &str, start: usize, indent: usize) -> usize {
    let Some(newline) = text[start..].find('\n').map(|i| start + i) else {
        return text.len();
    };
    let mut end = newline;
    let mut line_start = newline + 1;
    for line in text[line_start..].split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let here = line_start;
        line_start += line.len();
        if is_filler(content) {
            continue;
        }
        let i = indent_of(content);
        if i > indent || (i == indent && is_sequence_item(content)) {
            end = here + content.len();
        } else {
            break;
        }
    }
    end
}

/// Whether the block mapping of the entry spanning `line_start..end` has another entry: a line
/// at the same indentation before it (when the key begins its line) or after it.
fn has_block_sibling(
    text: &str,
    line_start: usize,
    end: usize,
    indent: usize,
    starts_line: bool,
) -> bool {
    let is_sibling = |line: &str| indent_of(line) == indent && !is_sequence_item(line);
    let after = text[end..]
        .lines()
        .skip(1)
        .find(|line| !is_filler(line))
        .is_some_and(is_sibling);
    let before = starts_line
        && text[..line_start]
            .lines()
            .rev()
            .filter(|line| !is_filler(line))
            .find(|line| {
                indent_of(line) <= indent && !(indent_of(line) == indent && is_sequence_item(line))
            })
            .is_some_and(is_sibling);
    after || before
}
