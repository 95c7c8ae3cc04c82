//! Words for people: a count with its noun in the right number. Used wherever a reason, a
//! narration or a summary line counts something, so "1 instance" and "2 instances" are written
//! one way everywhere.

/// "1 task", "2 tasks", "0 tasks".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `one` when `n` is 1, else `many`: for the verb that follows a count ("has"/"have").
pub fn agree<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}
