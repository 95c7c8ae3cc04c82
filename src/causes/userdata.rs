//! Reading a launch template version's UserData: which cluster its instances join and what
//! they mount. Pure.

use serde::Serialize;

/// What one UserData says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserDataReport {}

/// Reads UserData as EC2 keeps it (base64).
pub fn read(_base64: &str) -> Result<UserDataReport, String> {
    Ok(UserDataReport::default())
}
