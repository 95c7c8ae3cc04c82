//! The AWS SDK adapter: the only module that touches the AWS SDK.
//!
//! [`AwsCloud`] implements [`Cloud`] with `aws-sdk-ecs`, `aws-sdk-autoscaling` for the groups
//! behind capacity providers, and `aws-sdk-ec2` for what neither reports (the security groups
//! of a task's network interface; launch template versions and instances' launches). Layout:
//! - this file: settings, setup (region and credentials checked up front) and the mutating
//!   calls;
//! - [`observe`]: one cluster's snapshot, paged and batched at the API's limits;
//! - [`capacity`]: the capacity chain (providers, Auto Scaling groups, template versions,
//!   instances);
//! - [`network`]: security groups of tasks' network interfaces, from EC2;
//! - [`reads`]: the root-cause reads (boot output, launch template version, scaling
//!   activities, instance type size);
//! - [`confirm`]: a read that confirms a resource does not exist before an error says
//!   `NotFound` (never decided from message text);
//! - [`convert`]: SDK types to domain types and back;
//! - [`errors`]: SDK errors to [`CloudError`] categories, in one place;
//! - [`calls`]: the interceptor that counts every operation sent;
//! - [`operations`]: the one list of every operation called, with its IAM grant's scope;
//! - [`pacing`]: every call waits for a token of the process's [`ApiBudget`] first, and a
//!   throttling answer slows its category down.
//!
//! Retries are the SDK's (standard mode: throttling, 5xx and timeouts, jittered backoff); this
//! adapter adds none of its own. Pacing is client-side only: one [`ApiBudget`] shared by the
//! whole process ([`AwsCloud::from_env`] takes it; [`AwsCloud::with_budget`] replaces it).

mod calls;
mod capacity;
mod confirm;
mod convert;
mod errors;
pub mod leases;
mod network;
mod observe;
pub mod operations;
mod pacing;
mod reads;
pub mod sqs;
pub mod targets;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_autoscaling::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::config::ProvideCredentials;
use aws_smithy_runtime_api::http::Response as HttpResponse;

pub use errors::error_category;
pub use reads::decode_console_output;

use crate::cloud::budget::ApiBudget;
use crate::cloud::{Cloud, CloudError, ErrorCategory, GroupRead, KnownTasks, Resync, TaskReads};
use crate::domain::{
    ClusterSnapshot, InstanceTypeSize, LaunchTemplateVersion, RunTaskRequest, ScalingActivity, Tags,
};
use confirm::Subject;

/// ECS keeps at most this many characters of a StopTask reason.
const STOP_REASON_MAX_CHARS: usize = 255;

/// How the adapter talks to AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// Limit for one operation, retries included.
    pub operation_timeout: Duration,
    /// Limit for one attempt of an operation.
    pub attempt_timeout: Duration,
    /// Limit for opening a connection.
    pub connect_timeout: Duration,
    /// Attempts per operation, the first included (the SDK's standard retry mode).
    pub max_attempts: u32,
    /// Limit for resolving credentials once at setup (so a missing IMDS never hangs startup).
    pub credentials_timeout: Duration,
    /// Overrides the endpoint (e.g. an emulator); `AWS_ENDPOINT_URL` works as well.
    pub endpoint_url: Option<String>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            operation_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_attempts: 3,
            credentials_timeout: Duration::from_secs(5),
            endpoint_url: None,
        }
    }
}

/// How to give the process credentials, for the setup error.
const HOW_TO_SET_CREDENTIALS: &str = "set AWS_PROFILE to a profile in ~/.aws/config, or \
     AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance or task role";

/// Why the adapter could not be set up: one line that says what is missing and how to set it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsSetupError {
    #[error(
        "no AWS Region configured: set AWS_REGION, or AWS_PROFILE to a profile with a region \
         in ~/.aws/config"
    )]
    NoRegion,
    /// What went wrong (no provider had any, one failed, none answered in time), one line.
    #[error("no usable AWS credentials ({0}): {HOW_TO_SET_CREDENTIALS}")]
    NoCredentials(String),
}

impl AwsSetupError {
    /// The setup error of a credentials provider's answer: the kind of failure picks the
    /// words; the SDK's own messages are kept (their `Display` only, never their `Debug`).
    fn of_credentials(err: &CredentialsError) -> AwsSetupError {
        let why = match err {
            CredentialsError::CredentialsNotLoaded(_) => "none found".to_string(),
            CredentialsError::ProviderTimedOut(t) => format!(
                "no provider answered within {}",
                humantime::format_duration(t.timeout_duration())
            ),
            CredentialsError::InvalidConfiguration(_) => {
                format!("invalid AWS configuration: {}", what_went_wrong(err))
            }
            _ => format!("a provider failed: {}", what_went_wrong(err)),
        };
        AwsSetupError::NoCredentials(why)
    }
}

/// The sources of a credentials error, its own words being only the kind of failure (which the
/// setup error says already); the error itself when it has none.
fn what_went_wrong(err: &CredentialsError) -> String {
    use std::error::Error as _;
    err.source().map_or_else(|| one_line(err), one_line)
}

/// An error and its sources, by their `Display`, on one line (some SDK messages span lines).
fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        // A wrapper often repeats its source's message.
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The [`Cloud`] of a real AWS account (or an emulator of one), through the AWS SDK.
#[derive(Debug, Clone)]
pub struct AwsCloud {
    ecs: aws_sdk_ecs::Client,
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    credentials: aws_sdk_ecs::config::SharedCredentialsProvider,
    credentials_timeout: Duration,
    calls: calls::CallCounter,
    pacer: pacing::Pacer,
}

impl AwsCloud {
    /// Sets up from the standard environment (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL,
    /// container and instance credentials...), and resolves credentials once to fail early.
    /// Every call waits for `budget`, the process's one [`ApiBudget`].
    pub async fn from_env(
        settings: &AwsSettings,
        budget: Arc<ApiBudget>,
    ) -> Result<AwsCloud, AwsSetupError> {
        let sdk_config = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeout_config(settings))
            .retry_config(retry_config(settings))
            .load()
            .await;
        let cloud = AwsCloud::from_conf(&sdk_config, settings)?.with_budget(budget);
        cloud.check_credentials().await?;
        Ok(cloud)
    }

    /// Sets up from an explicit SDK configuration (tests, emulators). Checks that a Region and
    /// a credentials provider are present, without resolving credentials: see
    /// [`AwsCloud::check_credentials`].
    ///
    /// Its calls are paced by a budget of its own at the default [`PacingSettings`]
    /// (half the account's documented rates); give it the process's shared one with
    /// [`AwsCloud::with_budget`].
    ///
    /// [`PacingSettings`]: crate::cloud::budget::PacingSettings
    pub fn from_conf(
        sdk_config: &aws_config::SdkConfig,
        settings: &AwsSettings,
    ) -> Result<AwsCloud, AwsSetupError> {
        if sdk_config.region().is_none() {
            return Err(AwsSetupError::NoRegion);
        }
        let credentials = sdk_config.credentials_provider().ok_or_else(|| {
            AwsSetupError::NoCredentials("no credentials provider configured".into())
        })?;
        let calls = calls::CallCounter::default();
        let mut ecs_config = aws_sdk_ecs::config::Builder::from(sdk_config)
            .timeout_config(timeout_config(settings))
            .retry_config(retry_config(settings))
            .interceptor(calls.clone());
        // The same timeouts, retries, call counter and endpoint for EC2.
        let mut ec2_config = aws_sdk_ec2::config::Builder::from(sdk_config)
            .timeout_config(timeout_config(settings))
            .retry_config(retry_config(settings))
            .interceptor(calls.clone());
        let mut autoscaling_config = aws_sdk_autoscaling::config::Builder::from(sdk_config)
            .timeout_config(timeout_config(settings))
            .retry_config(retry_config(settings))
            .interceptor(calls.clone());
        if let Some(url) = &settings.endpoint_url {
            ecs_config = ecs_config.endpoint_url(url);
            ec2_config = ec2_config.endpoint_url(url);
            autoscaling_config = autoscaling_config.endpoint_url(url);
        }
        Ok(AwsCloud {
            ecs: aws_sdk_ecs::Client::from_conf(ecs_config.build()),
            ec2: aws_sdk_ec2::Client::from_conf(ec2_config.build()),
            autoscaling: aws_sdk_autoscaling::Client::from_conf(autoscaling_config.build()),
            credentials,
            credentials_timeout: settings.credentials_timeout,
            calls,
            pacer: pacing::Pacer::new(Arc::new(ApiBudget::default())),
        })
    }

    /// The same adapter, paced by `budget` (share one budget across the process).
    pub fn with_budget(mut self, budget: Arc<ApiBudget>) -> AwsCloud {
        self.pacer = pacing::Pacer::new(budget);
        self
    }

    /// The budget its calls wait for.
    pub fn budget(&self) -> &Arc<ApiBudget> {
        self.pacer.budget()
    }

    /// Resolves credentials once, within the settings' `credentials_timeout`.
    pub async fn check_credentials(&self) -> Result<(), AwsSetupError> {
        match tokio::time::timeout(
            self.credentials_timeout,
            self.credentials.provide_credentials(),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(AwsSetupError::of_credentials(&err)),
            Err(_) => Err(AwsSetupError::NoCredentials(format!(
                "no provider answered within {}",
                humantime::format_duration(self.credentials_timeout)
            ))),
        }
    }

    /// How many times each API operation has been sent (e.g. `{"ListTasks": 4}`), counting
    /// each page of a paged list, not counting the SDK's retries.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.calls.snapshot()
    }
}

impl AwsCloud {
    fn clients(&self) -> capacity::Clients<'_> {
        capacity::Clients {
            ecs: &self.ecs,
            autoscaling: &self.autoscaling,
            ec2: &self.ec2,
            pacer: &self.pacer,
        }
    }

    fn readers(&self) -> confirm::Readers<'_> {
        confirm::Readers {
            ecs: &self.ecs,
            autoscaling: &self.autoscaling,
            pacer: &self.pacer,
        }
    }

    /// One paced Auto Scaling write about `subject`, whose answer carries nothing the
    /// controller needs. A `ValidationError` is `NotFound` only when a read confirms that
    /// `subject` does not exist.
    async fn autoscaling_write<T, E>(
        &self,
        operation: &str,
        subject: Subject<'_>,
        send: impl Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    ) -> Result<(), CloudError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut validation = false;
        let answer = self
            .pacer
            .call(operation, async {
                send.await.map_err(|e| {
                    validation = confirm::has_code(&e, errors::AUTO_SCALING_VALIDATION);
                    errors::from_sdk(operation, e)
                })
            })
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(err) if validation => Err(self.readers().confirm(subject, err).await),
            Err(err) => Err(err),
        }
    }
}

fn timeout_config(settings: &AwsSettings) -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_timeout(settings.operation_timeout)
        .operation_attempt_timeout(settings.attempt_timeout)
        .connect_timeout(settings.connect_timeout)
        .build()
}

fn retry_config(settings: &AwsSettings) -> RetryConfig {
    RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1))
}

/// `reason` cut to what ECS keeps, on a character boundary.
fn stop_reason(reason: &str) -> String {
    reason.chars().take(STOP_REASON_MAX_CHARS).collect()
}

impl Cloud for AwsCloud {
    async fn list_clusters(&self) -> Result<Vec<String>, CloudError> {
        const OP: &str = "ListClusters";
        let arns = self
            .pacer
            .pages(OP, |token| async move {
                let page = self
                    .ecs
                    .list_clusters()
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| errors::from_sdk(OP, e))?;
                Ok((
                    page.cluster_arns().to_vec(),
                    page.next_token().map(str::to_string),
                ))
            })
            .await?;
        Ok(arns
            .into_iter()
            .map(|arn| arn.rsplit('/').next().unwrap_or(&arn).to_string())
            .collect())
    }

    async fn observe_cluster(&self, cluster: &str) -> Result<ClusterSnapshot, CloudError> {
        let everything = KnownTasks::default();
        let resync = observe::observe_cluster(&self.clients(), cluster, &everything).await?;
        Ok(resync.snapshot)
    }

    async fn resync_cluster(
        &self,
        cluster: &str,
        known: &KnownTasks,
    ) -> Result<Resync, CloudError> {
        observe::observe_cluster(&self.clients(), cluster, known).await
    }

    async fn describe_tasks(
        &self,
        cluster: &str,
        task_arns: &[String],
    ) -> Result<TaskReads, CloudError> {
        let described =
            observe::describe(&self.ecs, &self.ec2, &self.pacer, cluster, task_arns).await?;
        Ok(TaskReads {
            tasks: described.part.items,
            missing: described.missing,
            gaps: described.part.gaps,
        })
    }

    async fn observe_group(&self, group: &str) -> Result<GroupRead, CloudError> {
        capacity::observe_group(&self.clients(), group).await
    }

    async fn console_output(&self, instance_id: &str) -> Result<Option<Vec<u8>>, CloudError> {
        reads::console_output(&self.ec2, &self.pacer, instance_id).await
    }

    async fn launch_template_version(
        &self,
        template_id: &str,
        version: u32,
    ) -> Result<LaunchTemplateVersion, CloudError> {
        reads::launch_template_version(&self.ec2, &self.pacer, template_id, version).await
    }

    async fn scaling_activities(&self, group: &str) -> Result<Vec<ScalingActivity>, CloudError> {
        reads::scaling_activities(&self.readers(), group).await
    }

    async fn instance_type(&self, instance_type: &str) -> Result<InstanceTypeSize, CloudError> {
        reads::instance_type(&self.ec2, &self.pacer, instance_type).await
    }

    async fn stop_task(
        &self,
        cluster: &str,
        task_arn: &str,
        reason: &str,
    ) -> Result<(), CloudError> {
        const OP: &str = "StopTask";
        let mut invalid_parameter = false;
        let answer = self
            .pacer
            .call(OP, async {
                // Boxed, as every SDK future here: they are large, and debug builds copy them.
                Box::pin(
                    self.ecs
                        .stop_task()
                        .cluster(cluster)
                        .task(task_arn)
                        .reason(stop_reason(reason))
                        .send(),
                )
                .await
                .map_err(|e| {
                    invalid_parameter = confirm::has_code(&e, errors::ECS_INVALID_PARAMETER);
                    errors::from_sdk(OP, e)
                })
            })
            .await;
        match answer {
            Ok(_) => Ok(()),
            // ECS names a task it does not know with InvalidParameterException: DescribeTasks
            // says whether that is what happened.
            Err(err) if invalid_parameter => {
                let subject = Subject::Task { cluster, task_arn };
                Err(self.readers().confirm(subject, err).await)
            }
            Err(err) => Err(err),
        }
    }

    async fn run_task(
        &self,
        cluster: &str,
        request: &RunTaskRequest,
    ) -> Result<String, CloudError> {
        let parts = convert::run_task_parts(request)
            .map_err(|why| CloudError::new(ErrorCategory::Invalid, "RunTask", why))?;
        let send = Box::pin(
            self.ecs
                .run_task()
                .cluster(cluster)
                .task_definition(&request.task_definition)
                .count(1)
                .overrides(parts.overrides)
                .set_tags((!parts.tags.is_empty()).then_some(parts.tags))
                .set_group(request.group.clone())
                .set_started_by(request.started_by.clone())
                .set_launch_type(parts.launch_type)
                .set_capacity_provider_strategy(parts.strategy)
                .set_network_configuration(parts.network)
                .client_token(&request.client_token)
                .send(),
        );
        let output = self
            .pacer
            .call("RunTask", async {
                send.await.map_err(|e| errors::from_sdk("RunTask", e))
            })
            .await?;
        if let Some(failure) = output.failures().first() {
            let category = match failure.reason().unwrap_or_default() {
                "MISSING" => ErrorCategory::NotFound,
                // No room on the instances, or their agents are away: may pass.
                reason if reason.starts_with("RESOURCE") || reason == "AGENT" => {
                    ErrorCategory::Transient
                }
                _ => ErrorCategory::Invalid,
            };
            return Err(CloudError::new(
                category,
                "RunTask",
                format!(
                    "ECS refused to place the task: {}",
                    convert::failure(failure)
                ),
            ));
        }
        output
            .tasks()
            .first()
            .and_then(|t| t.task_arn())
            .map(str::to_string)
            .ok_or_else(|| {
                CloudError::new(
                    ErrorCategory::Transient,
                    "RunTask",
                    "ECS started no task and reported no failure",
                )
            })
    }

    async fn set_desired_capacity(&self, group: &str, desired: u32) -> Result<(), CloudError> {
        const OP: &str = "SetDesiredCapacity";
        let desired = i32::try_from(desired).map_err(|_| {
            CloudError::new(
                ErrorCategory::Invalid,
                OP,
                format!("desired capacity {desired} is too large"),
            )
        })?;
        let send = Box::pin(
            self.autoscaling
                .set_desired_capacity()
                .auto_scaling_group_name(group)
                .desired_capacity(desired)
                // The controller keeps its own cooldown (on the group's tags).
                .honor_cooldown(false)
                .send(),
        );
        self.autoscaling_write(OP, Subject::Group(group), send)
            .await
    }

    async fn pin_launch_template_version(
        &self,
        group: &str,
        template_id: &str,
        version: u32,
    ) -> Result<(), CloudError> {
        let template = aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
            .launch_template_id(template_id)
            .version(version.to_string())
            .build();
        const OP: &str = "UpdateAutoScalingGroup";
        let send = Box::pin(
            self.autoscaling
                .update_auto_scaling_group()
                .auto_scaling_group_name(group)
                .launch_template(template)
                .send(),
        );
        self.autoscaling_write(OP, Subject::Group(group), send)
            .await
    }

    async fn tag_group(&self, group: &str, tags: &Tags) -> Result<(), CloudError> {
        if tags.is_empty() {
            return Ok(());
        }
        let tags = tags
            .iter()
            .map(|(key, value)| {
                aws_sdk_autoscaling::types::Tag::builder()
                    .resource_id(group)
                    .resource_type("auto-scaling-group")
                    .key(key)
                    .value(value)
                    // The controller's records belong to the group, not to its instances.
                    .propagate_at_launch(false)
                    .build()
            })
            .collect();
        const OP: &str = "CreateOrUpdateTags";
        let send = Box::pin(
            self.autoscaling
                .create_or_update_tags()
                .set_tags(Some(tags))
                .send(),
        );
        self.autoscaling_write(OP, Subject::Group(group), send)
            .await
    }

    async fn terminate_instance(&self, instance_id: &str) -> Result<(), CloudError> {
        const OP: &str = "TerminateInstanceInAutoScalingGroup";
        let send = Box::pin(
            self.autoscaling
                .terminate_instance_in_auto_scaling_group()
                .instance_id(instance_id)
                // The group launches a replacement.
                .should_decrement_desired_capacity(false)
                .send(),
        );
        self.autoscaling_write(OP, Subject::GroupInstance(instance_id), send)
            .await
    }

    async fn drain_container_instance(
        &self,
        cluster: &str,
        container_instance_arn: &str,
    ) -> Result<(), CloudError> {
        const OP: &str = "UpdateContainerInstancesState";
        let send = Box::pin(
            self.ecs
                .update_container_instances_state()
                .cluster(cluster)
                .container_instances(container_instance_arn)
                .status(aws_sdk_ecs::types::ContainerInstanceStatus::Draining)
                .send(),
        );
        let output = self
            .pacer
            .call(OP, async {
                send.await.map_err(|e| errors::from_sdk(OP, e))
            })
            .await?;
        if let Some(failure) = output.failures().first() {
            let category = if failure.reason() == Some("MISSING") {
                ErrorCategory::NotFound
            } else {
                ErrorCategory::Invalid
            };
            return Err(CloudError::new(
                category,
                OP,
                format!(
                    "ECS did not drain the instance: {}",
                    convert::failure(failure)
                ),
            ));
        }
        Ok(())
    }
}
