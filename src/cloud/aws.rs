//! The AWS SDK adapter: the only module that touches the AWS SDK. (Placeholder until the
//! adapter lands.)

use std::time::Duration;

use super::{Cloud, CloudError, ErrorCategory};
use crate::domain::{ClusterSnapshot, RunTaskRequest};

#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub operation_timeout: Duration,
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_attempts: u32,
    pub endpoint_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AwsSetupError {
    #[error("no AWS region configured")]
    NoRegion,
}

pub struct AwsCloud;

impl AwsCloud {
    pub async fn from_env(_: &AwsSettings) -> Result<AwsCloud, AwsSetupError> {
        Err(AwsSetupError::NoRegion)
    }
}

impl Cloud for AwsCloud {
    async fn list_clusters(&self) -> Result<Vec<String>, CloudError> {
        Err(CloudError::new(
            ErrorCategory::Invalid,
            "ListClusters",
            "todo",
        ))
    }
    async fn observe_cluster(&self, _: &str) -> Result<ClusterSnapshot, CloudError> {
        Err(CloudError::new(
            ErrorCategory::Invalid,
            "ListClusters",
            "todo",
        ))
    }
    async fn stop_task(&self, _: &str, _: &str, _: &str) -> Result<(), CloudError> {
        Err(CloudError::new(
            ErrorCategory::Invalid,
            "ListClusters",
            "todo",
        ))
    }
    async fn run_task(&self, _: &str, _: &RunTaskRequest) -> Result<String, CloudError> {
        Err(CloudError::new(
            ErrorCategory::Invalid,
            "ListClusters",
            "todo",
        ))
    }
}
