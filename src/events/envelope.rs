//! The EventBridge shapes this controller reads, as serde types: the envelope and the `detail`
//! of each event used. The simulated account writes its events with these same types, so the
//! two can only differ where AWS's documented examples (the tests' fixtures) say otherwise.
//!
//! Only the fields the controller uses are typed; the rest is ignored when reading. Times are
//! kept as the RFC 3339 strings EventBridge sends (`2020-01-23T17:57:34.402Z`).

use serde::{Deserialize, Serialize};

/// `source` of ECS events.
pub const ECS_SOURCE: &str = "aws.ecs";
/// `source` of Auto Scaling events.
pub const AUTOSCALING_SOURCE: &str = "aws.autoscaling";

pub const TASK_STATE_CHANGE: &str = "ECS Task State Change";
pub const CONTAINER_INSTANCE_STATE_CHANGE: &str = "ECS Container Instance State Change";
pub const SERVICE_ACTION: &str = "ECS Service Action";
pub const LAUNCH_SUCCESSFUL: &str = "EC2 Instance Launch Successful";
pub const LAUNCH_UNSUCCESSFUL: &str = "EC2 Instance Launch Unsuccessful";
pub const TERMINATE_LIFECYCLE_ACTION: &str = "EC2 Instance-terminate Lifecycle Action";

/// The EventBridge envelope around every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub version: String,
    /// Unique per event (not per delivery).
    pub id: String,
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    #[serde(default)]
    pub account: String,
    /// When the event happened, RFC 3339.
    #[serde(default)]
    pub time: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub resources: Vec<String>,
    /// Read into one of the detail types below according to `detail_type`.
    pub detail: serde_json::Value,
}

/// `detail` of `ECS Task State Change`: mirrors DescribeTasks' Task, without tags or health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDetail {
    pub cluster_arn: String,
    pub task_arn: String,
    pub task_definition_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_arn: Option<String>,
    pub last_status: String,
    pub desired_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    /// Task-level CPU units and memory, as strings (`"256"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// ECS's version of the task: grows with every change.
    pub version: u64,
}

/// `detail` of `ECS Container Instance State Change`: mirrors DescribeContainerInstances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerInstanceDetail {
    pub cluster_arn: String,
    pub container_instance_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2_instance_id: Option<String>,
    pub agent_connected: bool,
    /// ACTIVE, DRAINING, INACTIVE, ...
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    pub version: u64,
}

/// `detail` of `ECS Service Action`; the service ARN is the envelope's `resources[0]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceActionDetail {
    /// INFO, WARN or ERROR.
    pub event_type: String,
    /// SERVICE_TASK_PLACEMENT_FAILURE, SERVICE_STEADY_STATE, ...
    pub event_name: String,
    pub cluster_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Why, for SERVICE_TASK_PLACEMENT_FAILURE: e.g. `["RESOURCE:MEMORY"]` (AWS sends an
    /// array named `reasons`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The capacity providers the service tried, for a placement failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_arns: Vec<String>,
}

/// `detail` of the Auto Scaling launch events (Successful and Unsuccessful).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LaunchDetail {
    pub auto_scaling_group_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<String>,
    /// InProgress, Successful, Failed, Cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(
        rename = "EC2InstanceId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ec2_instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
}

/// `detail` of `EC2 Instance-terminate Lifecycle Action`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LifecycleActionDetail {
    pub auto_scaling_group_name: String,
    #[serde(rename = "EC2InstanceId")]
    pub ec2_instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_hook_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_transition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_action_token: Option<String>,
}
