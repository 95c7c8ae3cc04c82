//! The policy document exactly as written in YAML: serde + JSON Schema types, before validation.
//!
//! Structure (unknown fields, wrong types, missing required fields) is checked by serde while
//! deserializing. Values whose rules serde cannot express (durations, percentages, globs, names,
//! lifecycle state keys, numeric ranges) are kept as [`Located`] raw values, so that
//! the `validate` module can check them all afterwards, report every problem in a document, and
//! point each at its own line and column.
//!
//! A document is parsed on its own, cut out of its file; [`with_line_offset`] makes the lines of
//! every [`Located`] value those of the file.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::model::{ranges, seconds_text};

/// The only supported `apiVersion`.
pub const API_VERSION: &str = "ecs-reconciler/v1";
/// The only supported `kind`.
pub const KIND: &str = "RemediationPolicy";
/// Keys allowed under `spec.stuck`.
pub const STUCK_KEYS: [&str; 7] = [
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "unhealthy",
];

thread_local! {
    /// Lines of the file before the document being deserialized on this thread.
    static LINE_OFFSET: Cell<usize> = const { Cell::new(0) };
}

/// Runs `f` (which deserializes one document cut out of a file) with `offset` added to the line
/// of every [`Located`] value it produces, so that lines are those of the file.
///
/// A thread-local rather than a parameter: serde gives `Deserialize` impls no context, and
/// shifting afterwards would need a walk over every type of the document, easy to get wrong when
/// a field is added. Deserialization runs on the calling thread, inside `f`.
pub(crate) fn with_line_offset<R>(offset: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            LINE_OFFSET.set(self.0);
        }
    }
    let _restore = Restore(LINE_OFFSET.replace(offset));
    f()
}

/// A value with the 1-based line and column of the YAML node it came from.
///
/// Deserializes through [`serde_saphyr::Spanned`]; its JSON Schema is the inner value's. The
/// line includes the offset set by [`with_line_offset`] (0 stays 0: an unknown location).
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
    pub column: usize,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Located<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        let line = spanned.referenced.line() as usize;
        Ok(Located {
            value: spanned.value,
            line: if line > 0 {
                line + LINE_OFFSET.get()
            } else {
                0
            },
            column: spanned.referenced.column() as usize,
        })
    }
}

impl<T: JsonSchema> JsonSchema for Located<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A YAML mapping kept in document order, with the location of every key.
#[derive(Debug, Clone, PartialEq)]
pub struct LocatedMap<V>(pub Vec<(Located<String>, V)>);

impl<V> Default for LocatedMap<V> {
    fn default() -> Self {
        LocatedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for LocatedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = LocatedMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Located<String>>()? {
                    let value = map.next_value::<V>()?;
                    entries.push((key, value));
                }
                Ok(LocatedMap(entries))
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

impl<V: JsonSchema> JsonSchema for LocatedMap<V> {
    fn schema_name() -> Cow<'static, str> {
        format!("Map_of_{}", V::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<V>(),
        })
    }
}

/// A scalar kept as written, for checks with precise messages after deserialization: a bare
/// number where a unit or `%` is required is reported as such, not as a type mismatch.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarText {
    pub text: String,
    /// Whether YAML resolved the scalar as a number (for example `10` rather than `10m`).
    pub is_number: bool,
}

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = ScalarText;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar such as `10m` (duration) or `25%` (percentage)")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText {
                    text: v.to_owned(),
                    is_number: false,
                })
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText {
                    text: v.to_string(),
                    is_number: true,
                })
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText {
                    text: v.to_string(),
                    is_number: true,
                })
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText {
                    text: v.to_string(),
                    is_number: true,
                })
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A duration string with a unit, such as `90s`, `10m` or `1h 30m` (humantime syntax).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct DurationText(pub ScalarText);

impl JsonSchema for DurationText {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": format!(
                "A duration with a unit, humantime syntax: `90s`, `10m`, `1h 30m`; whole seconds \
                 from {} to {}. A bare number is an error.",
                seconds_text(ranges::DURATION.min),
                seconds_text(ranges::DURATION.max)
            ),
            "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*[a-zA-Zµ]+(\\s*[0-9]+(\\.[0-9]+)?\\s*[a-zA-Zµ]+)*\\s*$",
            "examples": ["90s", "10m", "1h 30m"],
        })
    }
}

/// A percentage string from `0%` to `100%`, decimals allowed (`12.5%`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct PercentText(pub ScalarText);

impl JsonSchema for PercentText {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A percentage from 0% to 100% inclusive, decimals allowed: `25%`, `12.5%`.",
            "pattern": "^[0-9]+(\\.[0-9]+)?%$",
            "examples": ["25%", "12.5%"],
        })
    }
}

/// One `RemediationPolicy` document.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "RemediationPolicy")]
pub struct PolicyDocument {
    /// Always `ecs-reconciler/v1`.
    #[schemars(extend("const" = "ecs-reconciler/v1"))]
    pub api_version: Located<String>,
    /// Always `RemediationPolicy`.
    #[schemars(extend("const" = "RemediationPolicy"))]
    pub kind: Located<String>,
    pub metadata: Metadata,
    pub spec: Spec,
}

/// `metadata`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Unique across the policy directory: lowercase letters, digits and `-`, starting and ending
    /// with a letter or digit, at most 63 characters.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: Located<String>,
    /// Free text for readers.
    #[serde(default)]
    pub description: Option<String>,
}

/// Whether a policy acts, or only plans and records: the words of the audit trail and `plan`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Plan and act.
    #[default]
    Enforce,
    /// Plan and record only.
    #[serde(rename = "dry-run")]
    DryRun,
}

/// By hand, so that `audit`, the earlier spelling of `dry-run`, is still read while an error
/// names only the current words.
impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(ModeVisitor)
    }
}

/// Reads [`Mode`] in the scalar itself, so an error points at the value.
struct ModeVisitor;

impl Visitor<'_> for ModeVisitor {
    type Value = Mode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`enforce` or `dry-run`")
    }

    fn visit_str<E: de::Error>(self, word: &str) -> Result<Mode, E> {
        match word {
            "enforce" => Ok(Mode::Enforce),
            "dry-run" | "audit" => Ok(Mode::DryRun),
            other => Err(E::unknown_variant(other, &["enforce", "dry-run"])),
        }
    }
}

/// `spec`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// `enforce` (default) or `dry-run` (`audit` is read as `dry-run`).
    #[serde(default)]
    pub mode: Mode,
    pub target: Located<TargetDoc>,
    /// How long a task may stay in a lifecycle state (or a RUNNING task may report UNHEALTHY,
    /// key `unhealthy`) before it counts as stuck. At least one entry.
    #[schemars(schema_with = "stuck_schema")]
    pub stuck: Located<LocatedMap<Located<DurationText>>>,
    /// The remediations allowed; an absent entry is not allowed.
    #[serde(default)]
    pub remediate: RemediateDoc,
    /// Limits on how much the policy may do.
    #[serde(default)]
    pub guardrails: GuardrailsDoc,
    /// How far diagnosis may read to find a root cause.
    #[serde(default)]
    pub diagnose: DiagnoseDoc,
}

fn stuck_schema(generator: &mut SchemaGenerator) -> Schema {
    let duration = generator.subschema_for::<DurationText>();
    let properties: serde_json::Map<String, serde_json::Value> = STUCK_KEYS
        .iter()
        .map(|k| ((*k).to_owned(), duration.clone().to_value()))
        .collect();
    json_schema!({
        "type": "object",
        "description": "How long a task may stay in each state before it counts as stuck; `unhealthy` is how long a RUNNING task may report UNHEALTHY.",
        "properties": properties,
        "additionalProperties": false,
        "minProperties": 1,
    })
}

/// `spec.target`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetDoc {
    /// Cluster name globs; required and non-empty (no implicit "everything").
    #[schemars(length(min = 1))]
    pub clusters: Located<Vec<Located<String>>>,
    /// Service name globs; absent selects every service.
    #[serde(default)]
    pub services: Option<Vec<Located<String>>>,
    /// Account id or target name globs (`[[targets]] name`); absent selects every account.
    #[serde(default)]
    pub accounts: Option<Vec<Located<String>>>,
    /// Whether standalone tasks (not started by a service) are selected.
    #[serde(default)]
    pub standalone: bool,
    /// Tasks to leave alone.
    #[serde(default)]
    pub exclude: Option<ExcludeDoc>,
}

/// `spec.target.exclude`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExcludeDoc {
    /// Tasks carrying any of these tags (key and value equal) are never touched.
    /// `ecs-reconciler/exempt: "true"` always applies.
    #[serde(default)]
    pub tags: LocatedMap<String>,
}

/// `spec.remediate`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RemediateDoc {
    /// Stop a stuck task so it is replaced (by its service, or re-run when standalone).
    #[serde(default)]
    pub replace_task: Option<ReplaceTaskDoc>,
    /// Raise an Auto Scaling group's desired capacity when tasks wait for capacity.
    #[serde(default)]
    pub nudge_capacity: Option<NudgeCapacityDoc>,
    /// Pin the last good launch template version when new instances fail to register.
    #[serde(default)]
    pub cordon_launch_template: Option<CordonLaunchTemplateDoc>,
    /// Drain a container instance whose agent stays disconnected.
    #[serde(default)]
    pub drain_container_instance: Option<DrainContainerInstanceDoc>,
}

/// `spec.remediate.replaceTask`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplaceTaskDoc {
    /// Whether standalone tasks may be stopped and re-run (default false).
    #[serde(default)]
    pub standalone: bool,
}

/// `spec.remediate.nudgeCapacity`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NudgeCapacityDoc {
    /// Instances added per nudge.
    #[schemars(range(min = ranges::NUDGE_STEP.min, max = ranges::NUDGE_STEP.max))]
    pub step: Located<u32>,
    /// Desired capacity is never raised above this.
    #[schemars(range(min = ranges::NUDGE_MAX_DESIRED.min, max = ranges::NUDGE_MAX_DESIRED.max))]
    pub max_desired: Located<u32>,
    /// Minimum time between two nudges of one group.
    pub cooldown: Located<DurationText>,
}

/// `spec.remediate.cordonLaunchTemplate`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CordonLaunchTemplateDoc {
    /// How long a new instance may take to register with the cluster.
    pub registration_timeout: Located<DurationText>,
    /// Instances of one launch template version that must fail before it is cordoned.
    #[schemars(range(
        min = ranges::MIN_FAILED_INSTANCES.min,
        max = ranges::MIN_FAILED_INSTANCES.max
    ))]
    pub min_failed_instances: Located<u32>,
}

/// `spec.remediate.drainContainerInstance`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DrainContainerInstanceDoc {
    /// How long an instance's agent may stay disconnected.
    pub agent_disconnected: Located<DurationText>,
}

/// `spec.guardrails`; each absent entry takes its default.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GuardrailsDoc {
    /// Actions of this policy per cluster in any rolling hour (default 20).
    #[serde(default)]
    #[schemars(range(min = ranges::MAX_ACTIONS_PER_HOUR.min, max = ranges::MAX_ACTIONS_PER_HOUR.max))]
    pub max_actions_per_hour: Option<Located<u32>>,
    /// Tasks of one service replaced at once, as a share of its desired count (default 25%).
    #[serde(default)]
    pub max_in_flight_per_service: Option<Located<PercentText>>,
    /// Plan nothing when more than this share of the selected tasks is stuck (default 50%).
    #[serde(default)]
    pub pause_when_stuck_above: Option<Located<PercentText>>,
}

/// `spec.diagnose`; each absent entry takes its default.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiagnoseDoc {
    /// Whether the root-cause reads (boot output, launch template version, scaling
    /// activities, instance type) are made for this policy's findings (default true).
    #[serde(default)]
    pub root_cause_reads: Option<bool>,
}
