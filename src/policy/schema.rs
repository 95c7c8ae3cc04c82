//! The JSON Schema of a policy document, for editors and `ecs-reconciler schema`.

use super::document::PolicyDocument;

/// The JSON Schema (draft 2020-12) of one `RemediationPolicy` document. Durations and
/// percentages are strings with a pattern and a description.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(PolicyDocument).to_value()
}
