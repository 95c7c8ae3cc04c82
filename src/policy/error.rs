//! Errors found in policy files: each names the file, the 1-based line (and column when known),
//! the dotted field path, and says what would have been valid.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a policy file (or with the policy directory itself).
///
/// Displayed as `file:line:column: field: message`, for example
/// `policies/web.yaml:12:5: spec.stuck.PROVISONING: unknown lifecycle state; valid: PROVISIONING, ...`.
/// The column is left out when unknown; the field is left out when the problem is not about one
/// field (malformed YAML). `line` is 0 only for problems with the directory or with reading a
/// file as a whole (I/O errors, no policy files at all); those display as `path: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is not located inside a file.
    pub line: usize,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted path to the field, such as `spec.guardrails.maxInFlightPerService`. Empty when the
    /// problem is not about one field.
    pub field: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl PolicyError {
    pub fn new(
        file: &Path,
        line: usize,
        column: Option<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PolicyError {
            file: file.to_path_buf(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a load, in file path then line order. Never empty when returned as an
/// error.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, PolicyError> {
        self.0.iter()
    }

    /// Sorts by file, line and column (stable, so problems on one line keep their order).
    pub(crate) fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in policy files",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl From<Vec<PolicyError>> for PolicyErrors {
    fn from(errors: Vec<PolicyError>) -> Self {
        PolicyErrors(errors)
    }
}

impl IntoIterator for PolicyErrors {
    type Item = PolicyError;
    type IntoIter = std::vec::IntoIter<PolicyError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a PolicyErrors {
    type Item = &'a PolicyError;
    type IntoIter = std::slice::Iter<'a, PolicyError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}
