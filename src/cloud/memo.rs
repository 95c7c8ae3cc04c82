//! A decorator that makes every read once and answers it again from memory, and refuses every
//! mutating call: two read-only passes through one [`Memo`] judge one observation of the
//! account (`plan --base` plans the same picture under two policy sets).
//!
//! Failures are remembered too, so both passes see the same gaps and errors.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

use super::read_only::ReadOnly;
use super::{Cloud, CloudError, GroupRead, TaskReads};
use crate::domain::{
    ClusterSnapshot, InstanceTypeSize, LaunchTemplateVersion, RunTaskRequest, ScalingActivity, Tags,
};

type Answers<K, V> = Mutex<HashMap<K, Result<V, CloudError>>>;

/// Wraps a [`Cloud`]: each distinct read reaches it once; no write does.
pub struct Memo<C> {
    inner: ReadOnly<C>,
    clusters: Answers<(), Vec<String>>,
    observations: Answers<String, ClusterSnapshot>,
    describes: Answers<(String, Vec<String>), TaskReads>,
    groups: Answers<String, GroupRead>,
    console: Answers<String, Option<Vec<u8>>>,
    versions: Answers<(String, u32), LaunchTemplateVersion>,
    activities: Answers<String, Vec<ScalingActivity>>,
    types: Answers<String, InstanceTypeSize>,
}

impl<C> Memo<C> {
    pub fn new(inner: C) -> Self {
        Memo {
            inner: ReadOnly::new(inner),
            clusters: Mutex::default(),
            observations: Mutex::default(),
            describes: Mutex::default(),
            groups: Mutex::default(),
            console: Mutex::default(),
            versions: Mutex::default(),
            activities: Mutex::default(),
            types: Mutex::default(),
        }
    }

    /// How many mutating calls were refused.
    pub fn refused_writes(&self) -> u64 {
        self.inner.refused_writes()
    }

    /// Forgets every answer: the next reads observe the account anew.
    pub fn forget(&self) {
        fn clear<K, V>(answers: &Answers<K, V>) {
            answers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        clear(&self.clusters);
        clear(&self.observations);
        clear(&self.describes);
        clear(&self.groups);
        clear(&self.console);
        clear(&self.versions);
        clear(&self.activities);
        clear(&self.types);
    }
}

/// The remembered answer for `key`, or `read`'s (made only then), remembered.
async fn remember<K, V>(
    answers: &Answers<K, V>,
    key: K,
    read: impl Future<Output = Result<V, CloudError>>,
) -> Result<V, CloudError>
where
    K: Hash + Eq,
    V: Clone,
{
    let known = {
        let map = answers.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&key).cloned()
    };
    if let Some(answer) = known {
        return answer;
    }
    let answer = read.await;
    let mut map = answers.lock().unwrap_or_else(PoisonError::into_inner);
    map.entry(key).or_insert(answer).clone()
}

impl<C: Cloud> Cloud for Memo<C> {
    async fn list_clusters(&self) -> Result<Vec<String>, CloudError> {
        remember(&self.clusters, (), self.inner.list_clusters()).await
    }

    async fn observe_cluster(&self, cluster: &str) -> Result<ClusterSnapshot, CloudError> {
        let read = self.inner.observe_cluster(cluster);
        remember(&self.observations, cluster.to_string(), read).await
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        task_arns: &[String],
    ) -> Result<TaskReads, CloudError> {
        let key = (cluster.to_string(), task_arns.to_vec());
        let read = self.inner.describe_tasks(cluster, task_arns);
        remember(&self.describes, key, read).await
    }

    async fn observe_group(&self, group: &str) -> Result<GroupRead, CloudError> {
        let read = self.inner.observe_group(group);
        remember(&self.groups, group.to_string(), read).await
    }

    async fn console_output(&self, instance_id: &str) -> Result<Option<Vec<u8>>, CloudError> {
        let read = self.inner.console_output(instance_id);
        remember(&self.console, instance_id.to_string(), read).await
    }

    async fn launch_template_version(
        &self,
        template_id: &str,
        version: u32,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        let read = self.inner.launch_template_version(template_id, version);
        remember(&self.versions, (template_id.to_string(), version), read).await
    }

    async fn scaling_activities(&self, group: &str) -> Result<Vec<ScalingActivity>, CloudError> {
        let read = self.inner.scaling_activities(group);
        remember(&self.activities, group.to_string(), read).await
    }

    async fn instance_type(&self, instance_type: &str) -> Result<InstanceTypeSize, CloudError> {
        let read = self.inner.instance_type(instance_type);
        remember(&self.types, instance_type.to_string(), read).await
    }

    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<(), CloudError> {
        self.inner.stop_task(cluster, task, reason).await
    }

    async fn run_task(
        &self,
        cluster: &str,
        request: &RunTaskRequest,
    ) -> Result<String, CloudError> {
        self.inner.run_task(cluster, request).await
    }

    async fn set_desired_capacity(&self, group: &str, desired: u32) -> Result<(), CloudError> {
        self.inner.set_desired_capacity(group, desired).await
    }

    async fn pin_launch_template_version(
        &self,
        group: &str,
        template_id: &str,
        version: u32,
    ) -> Result<(), CloudError> {
        self.inner
            .pin_launch_template_version(group, template_id, version)
            .await
    }

    async fn tag_group(&self, group: &str, tags: &Tags) -> Result<(), CloudError> {
        self.inner.tag_group(group, tags).await
    }

    async fn terminate_instance(&self, instance_id: &str) -> Result<(), CloudError> {
        self.inner.terminate_instance(instance_id).await
    }

    async fn drain_container_instance(
        &self,
        cluster: &str,
        container_instance: &str,
    ) -> Result<(), CloudError> {
        self.inner
            .drain_container_instance(cluster, container_instance)
            .await
    }

    fn refuses_writes(&self) -> bool {
        true
    }
}
