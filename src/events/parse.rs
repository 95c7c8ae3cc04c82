//! Reads one queue message body into an [`Event`], or says by its [`Disposition`] why it cannot
//! be used. Pure: no I/O, no clock; it never panics, whatever the bytes.
//!
//! The body is an EventBridge envelope ([`envelope`]); its `detail` is read according to its
//! `source` and `detail-type`. A known type whose detail lacks a field the controller needs, or
//! has a value it does not know (a status, a time that is not RFC 3339), is `Malformed`; an
//! `ECS Service Action` of type INFO is `UnknownType` (the rule pattern asks for WARN and ERROR
//! only, so one arriving means someone changed the rule).

use std::time::SystemTime;

use serde::de::DeserializeOwned;

use super::envelope::{self, Envelope};
use super::{Disposition, Event, GroupActivityKind, InstanceChange, TaskChange};
use crate::domain::{
    Capacity, CapacityProviderStrategyItem, DesiredStatus, HealthStatus, Task, TaskStatus,
    TaskTimestamps,
};

/// A message that reads as an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The envelope's `id`: the same for every delivery of one event, whichever message
    /// carried it.
    pub event_id: String,
    /// The envelope's `time`, when it has a valid one.
    pub happened_at: Option<SystemTime>,
    pub event: Event,
}

/// A message that does not: its disposition, and one line saying why (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub disposition: Disposition,
    pub why: String,
}

impl Rejected {
    fn new(disposition: Disposition, why: impl Into<String>) -> Rejected {
        Rejected {
            disposition,
            why: why.into(),
        }
    }
}

/// Reads a message body.
pub fn parse(body: &str) -> Result<Parsed, Rejected> {
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| Rejected::new(Disposition::NotJson, format!("not JSON: {e}")))?;
    let envelope: Envelope = serde_json::from_value(value).map_err(|e| {
        Rejected::new(
            Disposition::NotEnvelope,
            format!("not an EventBridge envelope: {e}"),
        )
    })?;
    let happened_at = time(&envelope.time).ok();
    let event = event_of(&envelope)?;
    Ok(Parsed {
        event_id: envelope.id,
        happened_at,
        event,
    })
}

fn event_of(envelope: &Envelope) -> Result<Event, Rejected> {
    match (envelope.source.as_str(), envelope.detail_type.as_str()) {
        (envelope::ECS_SOURCE, envelope::TASK_STATE_CHANGE) => task_change(envelope),
        (envelope::ECS_SOURCE, envelope::CONTAINER_INSTANCE_STATE_CHANGE) => {
            instance_change(envelope)
        }
        (envelope::ECS_SOURCE, envelope::SERVICE_ACTION) => service_action(envelope),
        (envelope::AUTOSCALING_SOURCE, envelope::LAUNCH_SUCCESSFUL) => {
            launch(envelope, GroupActivityKind::LaunchSuccessful)
        }
        (envelope::AUTOSCALING_SOURCE, envelope::LAUNCH_UNSUCCESSFUL) => {
            launch(envelope, GroupActivityKind::LaunchUnsuccessful)
        }
        (envelope::AUTOSCALING_SOURCE, envelope::TERMINATE_LIFECYCLE_ACTION) => {
            terminate_lifecycle_action(envelope)
        }
        (source, detail_type) => Err(Rejected::new(
            Disposition::UnknownType,
            format!("unused event type {detail_type:?} from {source:?}"),
        )),
    }
}

/// The envelope's `detail` as `T`, or `Malformed` naming the detail type and the field.
fn detail<T: DeserializeOwned>(envelope: &Envelope) -> Result<T, Rejected> {
    serde_path_to_error::deserialize(&envelope.detail).map_err(|e| {
        let path = e.path().to_string();
        malformed(envelope, format!("detail.{path}: {}", e.into_inner()))
    })
}

fn malformed(envelope: &Envelope, why: impl std::fmt::Display) -> Rejected {
    Rejected::new(
        Disposition::Malformed,
        format!("{} {}: {why}", envelope.detail_type, envelope.id),
    )
}

fn required(envelope: &Envelope, field: &str, value: &str) -> Result<String, Rejected> {
    if value.is_empty() {
        Err(malformed(envelope, format!("detail.{field} is empty")))
    } else {
        Ok(value.to_string())
    }
}

fn task_change(envelope: &Envelope) -> Result<Event, Rejected> {
    let d: envelope::TaskDetail = detail(envelope)?;
    let bad = |why: String| malformed(envelope, why);
    let last_status = TaskStatus::parse(&d.last_status)
        .ok_or_else(|| bad(format!("unknown lastStatus {:?}", d.last_status)))?;
    let desired_status = match d.desired_status.as_str() {
        "RUNNING" => DesiredStatus::Running,
        "STOPPED" => DesiredStatus::Stopped,
        other => return Err(bad(format!("unknown desiredStatus {other:?}"))),
    };
    let capacity = capacity(&d).ok_or_else(|| {
        bad("neither detail.capacityProviderName nor detail.launchType".to_string())
    })?;
    let at = |field: &str, value: &Option<String>| optional_time(envelope, field, value);
    let timestamps = TaskTimestamps {
        created_at: at("createdAt", &d.created_at)?,
        connectivity_at: at("connectivityAt", &d.connectivity_at)?,
        pull_started_at: at("pullStartedAt", &d.pull_started_at)?,
        pull_stopped_at: at("pullStoppedAt", &d.pull_stopped_at)?,
        started_at: at("startedAt", &d.started_at)?,
        stopping_at: at("stoppingAt", &d.stopping_at)?,
        execution_stopped_at: at("executionStoppedAt", &d.execution_stopped_at)?,
        stopped_at: at("stoppedAt", &d.stopped_at)?,
    };
    let task = Task {
        arn: required(envelope, "taskArn", &d.task_arn)?,
        cluster_arn: required(envelope, "clusterArn", &d.cluster_arn)?.into(),
        task_definition_arn: required(envelope, "taskDefinitionArn", &d.task_definition_arn)?
            .into(),
        group: non_empty(d.group).map(Into::into),
        started_by: non_empty(d.started_by).map(Into::into),
        last_status,
        desired_status,
        // Not in the events: a cached task keeps the health of its last describe.
        health: HealthStatus::Unknown,
        timestamps,
        stopped_reason: non_empty(d.stopped_reason),
        stop_code: non_empty(d.stop_code),
        cpu: units(envelope, "cpu", d.cpu.as_deref())?,
        memory: units(envelope, "memory", d.memory.as_deref())?,
        tags: Default::default(),
        capacity,
        network: None,
        overrides: Default::default(),
        container_instance_arn: non_empty(d.container_instance_arn),
        version: d.version,
    };
    Ok(Event::Task(TaskChange {
        task: Box::new(task),
    }))
}

/// As the adapter reads DescribeTasks: the capacity provider when there is one (the event, like
/// DescribeTasks, names only the provider the task was placed with), else the launch type.
fn capacity(d: &envelope::TaskDetail) -> Option<Capacity> {
    if let Some(provider) = d
        .capacity_provider_name
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        return Some(Capacity::CapacityProviderStrategy(vec![
            CapacityProviderStrategyItem {
                capacity_provider: provider.to_string(),
                weight: 1,
                base: 0,
            },
        ]));
    }
    d.launch_type
        .as_deref()
        .filter(|l| !l.is_empty())
        .map(|l| Capacity::LaunchType(l.to_string()))
}

/// Task-level CPU units or memory: a number as a string (`"256"`). ECS also accepts `1 vCPU`
/// and `1 GB` at registration but reports numbers; anything else is malformed.
fn units(envelope: &Envelope, field: &str, value: Option<&str>) -> Result<Option<u32>, Rejected> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| malformed(envelope, format!("detail.{field} {v:?} is not a number"))),
    }
}

fn instance_change(envelope: &Envelope) -> Result<Event, Rejected> {
    let d: envelope::ContainerInstanceDetail = detail(envelope)?;
    Ok(Event::ContainerInstance(InstanceChange {
        cluster_arn: required(envelope, "clusterArn", &d.cluster_arn)?,
        container_instance_arn: required(
            envelope,
            "containerInstanceArn",
            &d.container_instance_arn,
        )?,
        ec2_instance_id: non_empty(d.ec2_instance_id),
        version: d.version,
        agent_connected: d.agent_connected,
        status: required(envelope, "status", &d.status)?,
    }))
}

fn service_action(envelope: &Envelope) -> Result<Event, Rejected> {
    let d: envelope::ServiceActionDetail = detail(envelope)?;
    match d.event_type.as_str() {
        "WARN" | "ERROR" => {}
        "INFO" => {
            return Err(Rejected::new(
                Disposition::UnknownType,
                format!(
                    "{} {}: INFO {} is not used",
                    envelope.detail_type, envelope.id, d.event_name
                ),
            ));
        }
        other => return Err(malformed(envelope, format!("unknown eventType {other:?}"))),
    }
    let service_arn = envelope
        .resources
        .first()
        .filter(|r| !r.is_empty())
        .cloned()
        .ok_or_else(|| malformed(envelope, "no service ARN in resources"))?;
    Ok(Event::ServiceAction {
        cluster_arn: required(envelope, "clusterArn", &d.cluster_arn)?,
        service_arn,
        event_name: required(envelope, "eventName", &d.event_name)?,
        reason: (!d.reasons.is_empty()).then(|| d.reasons.join(", ")),
    })
}

fn launch(envelope: &Envelope, kind: GroupActivityKind) -> Result<Event, Rejected> {
    let d: envelope::LaunchDetail = detail(envelope)?;
    Ok(Event::GroupActivity {
        group_name: required(envelope, "AutoScalingGroupName", &d.auto_scaling_group_name)?,
        kind,
        message: non_empty(d.status_message).or(non_empty(d.cause)),
    })
}

fn terminate_lifecycle_action(envelope: &Envelope) -> Result<Event, Rejected> {
    let d: envelope::LifecycleActionDetail = detail(envelope)?;
    let instance = required(envelope, "EC2InstanceId", &d.ec2_instance_id)?;
    Ok(Event::GroupActivity {
        group_name: required(envelope, "AutoScalingGroupName", &d.auto_scaling_group_name)?,
        kind: GroupActivityKind::TerminateLifecycleAction,
        message: Some(format!("instance {instance} is terminating")),
    })
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn optional_time(
    envelope: &Envelope,
    field: &str,
    value: &Option<String>,
) -> Result<Option<SystemTime>, Rejected> {
    match value.as_deref().filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => time(v)
            .map(Some)
            .map_err(|why| malformed(envelope, format!("detail.{field}: {why}"))),
    }
}

/// An RFC 3339 time in UTC as EventBridge and ECS write it (`2020-01-23T17:57:34.402Z`);
/// `+00:00` is read as `Z`.
pub fn time(text: &str) -> Result<SystemTime, String> {
    let utc = match text.strip_suffix("+00:00") {
        Some(head) => format!("{head}Z"),
        None => text.to_string(),
    };
    humantime::parse_rfc3339(&utc)
        .map_err(|e| format!("{text:?} is not an RFC 3339 UTC time ({e})"))
}
