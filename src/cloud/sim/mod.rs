//! The simulated ECS account (placeholder until it lands).
use std::time::SystemTime;

use super::{Cloud, CloudError, ErrorCategory};
use crate::domain::{ClusterSnapshot, RunTaskRequest, Task};

pub struct SimAccount;
pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    pub clusters: Vec<String>,
}
pub fn scenario_names() -> &'static [&'static str] {
    &[]
}
pub fn build_scenario(_: &str, _: SystemTime) -> Option<(SimAccount, Scenario)> {
    None
}
impl SimAccount {
    pub fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
    }
    pub fn tasks(&self, _: &str) -> Vec<Task> {
        Vec::new()
    }
}
impl Cloud for SimAccount {
    async fn list_clusters(&self) -> Result<Vec<String>, CloudError> {
        Err(CloudError::new(ErrorCategory::Invalid, "ListClusters", "todo"))
    }
    async fn observe_cluster(&self, _: &str) -> Result<ClusterSnapshot, CloudError> {
        Err(CloudError::new(ErrorCategory::Invalid, "ListClusters", "todo"))
    }
    async fn stop_task(&self, _: &str, _: &str, _: &str) -> Result<(), CloudError> {
        Err(CloudError::new(ErrorCategory::Invalid, "ListClusters", "todo"))
    }
    async fn run_task(&self, _: &str, _: &RunTaskRequest) -> Result<String, CloudError> {
        Err(CloudError::new(ErrorCategory::Invalid, "ListClusters", "todo"))
    }
}
