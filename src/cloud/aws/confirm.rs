//! Confirmation reads: whether a group, an instance or a task the service refused really does
//! not exist.
//!
//! Auto Scaling answers an unknown group or instance with `ValidationError`, the same code as
//! for a desired capacity above MaxSize; ECS answers StopTask of an unknown task with
//! `InvalidParameterException`, the same code as for a malformed request. The message text
//! differs, but the category never comes from it (issue 8): when a call fails with one of
//! those codes, one read asks whether the resource exists, and the error becomes `NotFound`
//! only when the read says it does not. A read that fails itself leaves the error as it was.
//!
//! Cost: one paced call, only after such a failure (DescribeAutoScalingGroups,
//! DescribeAutoScalingInstances or DescribeTasks); a scaling activities read that comes back
//! empty is confirmed the same way (Auto Scaling may answer an unknown group with no
//! activities).

use aws_sdk_ecs::error::ProvideErrorMetadata;

use super::errors;
use super::pacing::Pacer;
use crate::cloud::{CloudError, ErrorCategory};

/// What a refused call was about.
#[derive(Debug, Clone, Copy)]
pub(super) enum Subject<'a> {
    /// An Auto Scaling group, by name.
    Group(&'a str),
    /// An instance in an Auto Scaling group, by EC2 instance id.
    GroupInstance(&'a str),
    /// An ECS task of a cluster.
    Task { cluster: &'a str, task_arn: &'a str },
}

/// The clients the confirmation reads use.
pub(super) struct Readers<'a> {
    pub ecs: &'a aws_sdk_ecs::Client,
    pub autoscaling: &'a aws_sdk_autoscaling::Client,
    pub pacer: &'a Pacer,
}

impl Readers<'_> {
    /// `err` as `NotFound` when a read confirms that `subject` does not exist; else unchanged.
    pub(super) async fn confirm(&self, subject: Subject<'_>, mut err: CloudError) -> CloudError {
        match self.exists(subject).await {
            Ok(false) => {
                err.category = ErrorCategory::NotFound;
                err.message = format!("{}; {}", err.message, absent(subject));
            }
            Ok(true) => {}
            // The original error stands; say why it could not be sharpened.
            Err(read) => tracing::warn!(
                error = %err,
                confirming_read = %read,
                "could not confirm whether the resource still exists"
            ),
        }
        err
    }

    /// Whether `subject` exists, as one read says.
    pub(super) async fn exists(&self, subject: Subject<'_>) -> Result<bool, CloudError> {
        match subject {
            Subject::Group(name) => self.group_exists(name).await,
            Subject::GroupInstance(id) => self.group_instance_exists(id).await,
            Subject::Task { cluster, task_arn } => self.task_exists(cluster, task_arn).await,
        }
    }

    async fn group_exists(&self, name: &str) -> Result<bool, CloudError> {
        const OP: &str = "DescribeAutoScalingGroups";
        let send = Box::pin(
            self.autoscaling
                .describe_auto_scaling_groups()
                .auto_scaling_group_names(name)
                .send(),
        );
        let output = self
            .pacer
            .call(OP, async {
                send.await.map_err(|e| errors::from_sdk(OP, e))
            })
            .await?;
        Ok(output
            .auto_scaling_groups()
            .iter()
            .any(|g| g.auto_scaling_group_name() == Some(name)))
    }

    async fn group_instance_exists(&self, instance_id: &str) -> Result<bool, CloudError> {
        const OP: &str = "DescribeAutoScalingInstances";
        let send = Box::pin(
            self.autoscaling
                .describe_auto_scaling_instances()
                .instance_ids(instance_id)
                .send(),
        );
        let output = self
            .pacer
            .call(OP, async {
                send.await.map_err(|e| errors::from_sdk(OP, e))
            })
            .await?;
        Ok(output
            .auto_scaling_instances()
            .iter()
            .any(|i| i.instance_id() == Some(instance_id)))
    }

    async fn task_exists(&self, cluster: &str, task_arn: &str) -> Result<bool, CloudError> {
        const OP: &str = "DescribeTasks";
        let send = Box::pin(
            self.ecs
                .describe_tasks()
                .cluster(cluster)
                .tasks(task_arn)
                .send(),
        );
        let output = self
            .pacer
            .call(OP, async {
                send.await.map_err(|e| errors::from_sdk(OP, e))
            })
            .await?;
        let missing = output
            .failures()
            .iter()
            .any(|f| f.reason() == Some("MISSING"));
        Ok(!output.tasks().is_empty() || !missing)
    }
}

fn absent(subject: Subject<'_>) -> String {
    match subject {
        Subject::Group(name) => format!("DescribeAutoScalingGroups has no group {name}"),
        Subject::GroupInstance(id) => {
            format!("DescribeAutoScalingInstances has no instance {id}")
        }
        Subject::Task { cluster, task_arn } => {
            format!("DescribeTasks reports task {task_arn} MISSING in cluster {cluster}")
        }
    }
}

/// Whether an SDK error carries `code` (decided by the code, never by the message).
pub(super) fn has_code<E: ProvideErrorMetadata>(err: &E, code: &str) -> bool {
    err.code() == Some(code)
}
