//! Policy files: the format, loading, validation with file/line/field errors, and selectors.
//!
//! - [`document`][]: the YAML document as written (serde and JSON Schema types).
//! - `validate` (private): checks a document and builds the runtime [`Policy`].
//! - [`load`](mod@load): splits files into documents, parses, validates, fingerprints:
//!   [`load_dir`], [`parse_str`].
//! - `recover` (private): blanks an unknown field out of a document so the rest is checked.
//! - [`identity`][]: names the set by its git commit when it has one:
//!   [`load_dir_identified`] (what the CLI loads with).
//! - [`error`][]: [`PolicyError`] (file, line, column, field, message) and [`PolicyErrors`].
//! - [`schema`][]: [`json_schema`].
//! - [`model`][]: the validated types diagnosis and planning read.

pub mod document;
pub mod error;
pub mod identity;
pub mod load;
pub mod model;
mod recover;
pub mod schema;
mod validate;

pub use error::{PolicyError, PolicyErrors};
pub use identity::load_dir_identified;
pub use load::{load_dir, parse_str};
pub use model::*;
pub use schema::json_schema;
