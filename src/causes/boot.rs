//! Reading an instance's boot output (EC2 GetConsoleOutput): the lines that show why it never
//! registered. Pure.

use serde::Serialize;

/// What one boot output shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootReport {}

/// Reads a decoded boot output.
pub fn read(_output: &[u8]) -> BootReport {
    BootReport::default()
}
