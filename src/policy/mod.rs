//! Policy files: the format, loading, validation with file/line/field errors, and selectors.

pub mod model;

pub use model::*;
mod stub;
pub use stub::*;
