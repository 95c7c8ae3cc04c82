//! A decorator that passes reads through and refuses every mutating call.
//!
//! The controller never issues a write in dry-run mode; this wrapper makes that a structural
//! guarantee rather than a promise: whatever the code above does, no mutating call reaches the
//! account. Refused writes are counted so tests can prove there were none.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Cloud, CloudError, ErrorCategory, GroupRead, KnownTasks, Resync, TaskReads};
use crate::domain::{
    ClusterSnapshot, InstanceTypeSize, LaunchTemplateVersion, RunTaskRequest, ScalingActivity, Tags,
};

/// Wraps a [`Cloud`] so that only reads reach it.
pub struct ReadOnly<C> {
    inner: C,
    refused: AtomicU64,
}

impl<C> ReadOnly<C> {
    pub fn new(inner: C) -> Self {
        ReadOnly {
            inner,
            refused: AtomicU64::new(0),
        }
    }

    /// How many mutating calls were refused.
    pub fn refused_writes(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    pub fn inner(&self) -> &C {
        &self.inner
    }

    fn refuse(&self, operation: &str) -> CloudError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        CloudError::new(
            ErrorCategory::Invalid,
            operation,
            "refused: the controller is in dry-run mode",
        )
    }
}

impl<C: Cloud> Cloud for ReadOnly<C> {
    async fn list_clusters(&self) -> Result<Vec<String>, CloudError> {
        self.inner.list_clusters().await
    }

    async fn observe_cluster(&self, cluster: &str) -> Result<ClusterSnapshot, CloudError> {
        self.inner.observe_cluster(cluster).await
    }

    async fn resync_cluster(
        &self,
        cluster: &str,
        known: &KnownTasks,
    ) -> Result<Resync, CloudError> {
        self.inner.resync_cluster(cluster, known).await
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        task_arns: &[String],
    ) -> Result<TaskReads, CloudError> {
        self.inner.describe_tasks(cluster, task_arns).await
    }

    async fn observe_group(&self, group: &str) -> Result<GroupRead, CloudError> {
        self.inner.observe_group(group).await
    }

    async fn console_output(&self, instance_id: &str) -> Result<Option<Vec<u8>>, CloudError> {
        self.inner.console_output(instance_id).await
    }

    async fn launch_template_version(
        &self,
        template_id: &str,
        version: u32,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        self.inner
            .launch_template_version(template_id, version)
            .await
    }

    async fn scaling_activities(&self, group: &str) -> Result<Vec<ScalingActivity>, CloudError> {
        self.inner.scaling_activities(group).await
    }

    async fn instance_type(&self, instance_type: &str) -> Result<InstanceTypeSize, CloudError> {
        self.inner.instance_type(instance_type).await
    }

    async fn stop_task(&self, _: &str, _: &str, _: &str) -> Result<(), CloudError> {
        Err(self.refuse("StopTask"))
    }

    async fn run_task(&self, _: &str, _: &RunTaskRequest) -> Result<String, CloudError> {
        Err(self.refuse("RunTask"))
    }

    async fn set_desired_capacity(&self, _: &str, _: u32) -> Result<(), CloudError> {
        Err(self.refuse("SetDesiredCapacity"))
    }

    async fn pin_launch_template_version(
        &self,
        _: &str,
        _: &str,
        _: u32,
    ) -> Result<(), CloudError> {
        Err(self.refuse("UpdateAutoScalingGroup"))
    }

    async fn tag_group(&self, _: &str, _: &Tags) -> Result<(), CloudError> {
        Err(self.refuse("CreateOrUpdateTags"))
    }

    async fn terminate_instance(&self, _: &str) -> Result<(), CloudError> {
        Err(self.refuse("TerminateInstanceInAutoScalingGroup"))
    }

    async fn drain_container_instance(&self, _: &str, _: &str) -> Result<(), CloudError> {
        Err(self.refuse("UpdateContainerInstancesState"))
    }

    fn refuses_writes(&self) -> bool {
        true
    }
}
