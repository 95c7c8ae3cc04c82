//! The root-cause reads (issue 8): an instance's boot output, a launch template version, a
//! group's scaling activities and an instance type's size.
//!
//! Each is one paced call (see [`Pacer`]), made only when the diagnosis asks for it:
//! - GetConsoleOutput with `Latest=true` (the serial console's latest output, on Nitro
//!   instance types); an instance type without it refuses the request (EC2 answers
//!   `UnsupportedOperation`), and the output is asked for once more without `Latest` (two
//!   calls). EC2's reference does not name that code for this action, so any refusal whose
//!   code is categorized `Invalid` is retried without `Latest`: it is the only kind of answer
//!   `Latest` can cause (a missing instance, a denial or a throttle is answered at once). The `Output` is base64; an
//!   answer without it (or empty) is `None`, "not available yet"; one that is not base64 is
//!   `Invalid`, naming the instance.
//! - DescribeLaunchTemplateVersions of one numbered version.
//! - DescribeScalingActivities of one group, one page of [`ACTIVITIES_PAGE`], newest first.
//!   An empty page is confirmed with DescribeAutoScalingGroups (see [`confirm`]): an unknown
//!   group is `NotFound`, not "no activities".
//! - DescribeInstanceTypes of one type; `InvalidInstanceType` (an unknown type) is `NotFound`.
//!
//! [`confirm`]: super::confirm

use std::time::SystemTime;

use base64::Engine;

use super::confirm::{self, Readers, Subject};
use super::errors;
use super::pacing::Pacer;
use crate::cloud::{CloudError, ErrorCategory};
use crate::domain::{InstanceTypeSize, LaunchTemplateVersion, ScalingActivity};

/// Scaling activities read per group: the recent ones are those that explain a shortfall.
pub(super) const ACTIVITIES_PAGE: i32 = 20;

/// GetConsoleOutput, decoded: with `Latest=true` first, without it where unsupported.
pub(super) async fn console_output(
    ec2: &aws_sdk_ec2::Client,
    pacer: &Pacer,
    instance_id: &str,
) -> Result<Option<Vec<u8>>, CloudError> {
    let output = match console_output_once(ec2, pacer, instance_id, true).await {
        Ok(output) => output,
        Err(refused) if refused.latest_unsupported => {
            console_output_once(ec2, pacer, instance_id, false)
                .await
                .map_err(|refused| refused.error)?
        }
        Err(refused) => return Err(refused.error),
    };
    decode_console_output(instance_id, output.as_deref())
}

/// A failed GetConsoleOutput, and whether it may have refused `Latest=true` only.
struct Refused {
    error: CloudError,
    latest_unsupported: bool,
}

async fn console_output_once(
    ec2: &aws_sdk_ec2::Client,
    pacer: &Pacer,
    instance_id: &str,
    latest: bool,
) -> Result<Option<String>, Refused> {
    const OP: &str = "GetConsoleOutput";
    let send = Box::pin(
        ec2.get_console_output()
            .instance_id(instance_id)
            .set_latest(latest.then_some(true))
            .send(),
    );
    pacer
        .call(OP, async {
            send.await.map_err(|e| errors::from_sdk(OP, e))
        })
        .await
        .map(|answer| answer.output().map(str::to_string))
        .map_err(|error| Refused {
            latest_unsupported: latest && error.category == ErrorCategory::Invalid,
            error,
        })
}

/// The bytes of a GetConsoleOutput `Output` (base64; line breaks and spaces are ignored);
/// `None` when there is none yet.
///
/// Public so the decoding can be tested without a server.
pub fn decode_console_output(
    instance_id: &str,
    output: Option<&str>,
) -> Result<Option<Vec<u8>>, CloudError> {
    let compact: String = output
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Ok(None);
    }
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map(Some)
        .map_err(|why| {
            CloudError::new(
                ErrorCategory::Invalid,
                "GetConsoleOutput",
                format!("the console output of instance {instance_id} is not base64: {why}"),
            )
        })
}

/// DescribeLaunchTemplateVersions of one numbered version.
pub(super) async fn launch_template_version(
    ec2: &aws_sdk_ec2::Client,
    pacer: &Pacer,
    template_id: &str,
    version: u32,
) -> Result<LaunchTemplateVersion, CloudError> {
    const OP: &str = "DescribeLaunchTemplateVersions";
    let send = Box::pin(
        ec2.describe_launch_template_versions()
            .launch_template_id(template_id)
            .versions(version.to_string())
            .send(),
    );
    let output = pacer
        .call(OP, async {
            send.await.map_err(|e| errors::from_sdk(OP, e))
        })
        .await?;
    let found = output
        .launch_template_versions()
        .iter()
        .find(|v| v.version_number() == Some(i64::from(version)))
        .ok_or_else(|| {
            CloudError::new(
                ErrorCategory::NotFound,
                OP,
                format!("launch template {template_id} has no version {version}"),
            )
        })?;
    let data = found.launch_template_data();
    let profile = data.and_then(|d| d.iam_instance_profile());
    Ok(LaunchTemplateVersion {
        template_id: template_id.to_string(),
        version,
        user_data: non_empty(data.and_then(|d| d.user_data())),
        instance_profile: non_empty(profile.and_then(|p| p.arn()))
            .or_else(|| non_empty(profile.and_then(|p| p.name()))),
        instance_type: non_empty(data.and_then(|d| d.instance_type()).map(|t| t.as_str())),
        image_id: non_empty(data.and_then(|d| d.image_id())),
    })
}

/// DescribeScalingActivities of one group: one page, newest first.
pub(super) async fn scaling_activities(
    readers: &Readers<'_>,
    group: &str,
) -> Result<Vec<ScalingActivity>, CloudError> {
    const OP: &str = "DescribeScalingActivities";
    let mut validation = false;
    let send = Box::pin(
        readers
            .autoscaling
            .describe_scaling_activities()
            .auto_scaling_group_name(group)
            .max_records(ACTIVITIES_PAGE)
            .send(),
    );
    let answer = readers
        .pacer
        .call(OP, async {
            send.await.map_err(|e| {
                validation = confirm::has_code(&e, errors::AUTO_SCALING_VALIDATION);
                errors::from_sdk(OP, e)
            })
        })
        .await;
    let output = match answer {
        Ok(output) => output,
        Err(err) if validation => return Err(readers.confirm(Subject::Group(group), err).await),
        Err(err) => return Err(err),
    };
    let mut activities: Vec<ScalingActivity> = output
        .activities()
        .iter()
        .map(|a| ScalingActivity {
            activity_id: a.activity_id().unwrap_or_default().to_string(),
            status_code: a
                .status_code()
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
            status_message: non_empty(a.status_message()),
            description: non_empty(a.description()),
            cause: non_empty(a.cause()),
            start_time: a.start_time().and_then(|t| SystemTime::try_from(*t).ok()),
        })
        .collect();
    if activities.is_empty() && matches!(readers.exists(Subject::Group(group)).await, Ok(false)) {
        return Err(CloudError::new(
            ErrorCategory::NotFound,
            OP,
            format!("no Auto Scaling group {group}"),
        ));
    }
    // Auto Scaling answers newest first; made certain, since the diagnosis relies on it.
    activities.sort_by_key(|a| std::cmp::Reverse(a.start_time));
    Ok(activities)
}

/// DescribeInstanceTypes of one type.
pub(super) async fn instance_type(
    ec2: &aws_sdk_ec2::Client,
    pacer: &Pacer,
    instance_type: &str,
) -> Result<InstanceTypeSize, CloudError> {
    const OP: &str = "DescribeInstanceTypes";
    // The code DescribeInstanceTypes answers for a type that does not exist.
    const UNKNOWN_TYPE: &str = "InvalidInstanceType";
    let send = Box::pin(
        ec2.describe_instance_types()
            .instance_types(aws_sdk_ec2::types::InstanceType::from(instance_type))
            .send(),
    );
    let output = pacer
        .call(OP, async {
            send.await
                .map_err(|e| errors::from_sdk_naming(OP, e, &[UNKNOWN_TYPE]))
        })
        .await?;
    let not_found = || {
        CloudError::new(
            ErrorCategory::NotFound,
            OP,
            format!("no instance type {instance_type}"),
        )
    };
    let info = output
        .instance_types()
        .iter()
        .find(|t| t.instance_type().map(|t| t.as_str()) == Some(instance_type))
        .ok_or_else(not_found)?;
    let unreadable = |what: &str| {
        CloudError::new(
            ErrorCategory::Invalid,
            OP,
            format!("instance type {instance_type}: {what}"),
        )
    };
    let vcpus = info
        .v_cpu_info()
        .and_then(|v| v.default_v_cpus())
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| unreadable("no DefaultVCpus"))?;
    let memory_mib = info
        .memory_info()
        .and_then(|m| m.size_in_mib())
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| unreadable("no SizeInMiB"))?;
    Ok(InstanceTypeSize {
        instance_type: instance_type.to_string(),
        vcpus,
        memory_mib,
    })
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}
