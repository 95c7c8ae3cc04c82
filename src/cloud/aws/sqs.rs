//! The SQS queue that EventBridge's rules fill, as an [`EventSource`] (aws-sdk-sqs).
//!
//! ReceiveMessage long-polls (20 s, 10 messages); the attempt and read timeouts of this client
//! are raised above the poll so that an empty queue is not a timeout. DeleteMessageBatch
//! deletes 10 receipts a call. [`SqsQueue::check`] reads the queue once at start
//! (GetQueueAttributes) so that a missing queue or a role that may not read it is one clear
//! line before anything runs. Errors get their categories as every other call of the adapter
//! ([`errors::from_sdk`](super::errors)); SQS calls are not paced by the ECS budget (they draw
//! on no ECS bucket).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::config::Region;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};

use super::calls::CallCounter;
use super::errors;
use super::{AwsSettings, retry_config};
use crate::cloud::{CloudError, ErrorCategory};
use crate::events::{EventSource, Message};

/// The long poll of one ReceiveMessage (SQS's maximum).
pub const RECEIVE_WAIT: Duration = Duration::from_secs(20);
/// Messages per ReceiveMessage (SQS's maximum).
pub const RECEIVE_MAX_MESSAGES: i32 = 10;
/// Receipts per DeleteMessageBatch (SQS's maximum).
pub const DELETE_BATCH: usize = 10;
/// What an attempt may take beyond the long poll (the answer's transfer, a slow network).
const POLL_MARGIN: Duration = Duration::from_secs(10);

/// The error codes SQS answers for a queue that does not exist: the JSON protocol's, and the
/// query protocol's that the SDK reports for query-compatible services.
const QUEUE_DOES_NOT_EXIST: [&str; 2] = [
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
];

/// One SQS queue, read and deleted from.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    calls: CallCounter,
}

/// Why the queue cannot be used, as one line naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("events queue {url}: {why}")]
pub struct QueueCheckError {
    pub url: String,
    pub category: ErrorCategory,
    pub why: String,
}

impl SqsQueue {
    /// The queue at `url`, with the standard AWS environment (as [`super::AwsCloud::from_env`]).
    pub async fn from_env(settings: &AwsSettings, url: &str) -> SqsQueue {
        let sdk_config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        SqsQueue::from_conf(&sdk_config, settings, url)
    }

    /// The queue at `url` with an explicit SDK configuration (tests, emulators). The client's
    /// Region is the one the URL names (`https://sqs.REGION.amazonaws.com/...`), if it names
    /// one: a queue lives in one Region, whatever the process's default.
    pub fn from_conf(
        sdk_config: &aws_config::SdkConfig,
        settings: &AwsSettings,
        url: &str,
    ) -> Self {
        let calls = CallCounter::default();
        let mut config = aws_sdk_sqs::config::Builder::from(sdk_config)
            .timeout_config(poll_timeouts(settings))
            .retry_config(retry_config(settings))
            .interceptor(calls.clone());
        if let Some(region) = region_of(url) {
            config = config.region(Region::new(region));
        }
        if let Some(endpoint) = &settings.endpoint_url {
            config = config.endpoint_url(endpoint);
        }
        SqsQueue {
            client: aws_sdk_sqs::Client::from_conf(config.build()),
            url: url.to_string(),
            calls,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many times each SQS operation has been sent (e.g. `{"ReceiveMessage": 3}`), not
    /// counting the SDK's retries.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.calls.snapshot()
    }

    /// Reads the queue's ARN once: a missing queue, AccessDenied or any other refusal is one
    /// line naming the queue.
    pub async fn check(&self) -> Result<String, QueueCheckError> {
        let answer = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| errors::from_sdk_naming("GetQueueAttributes", e, &QUEUE_DOES_NOT_EXIST))
            .map_err(|e| self.check_error(&e))?;
        Ok(answer
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .unwrap_or_default())
    }

    fn check_error(&self, err: &CloudError) -> QueueCheckError {
        let why = match err.category {
            ErrorCategory::NotFound => format!("no such queue ({})", err.message),
            ErrorCategory::Denied => format!(
                "access denied: the role needs sqs:GetQueueAttributes, sqs:ReceiveMessage and \
                 sqs:DeleteMessage on it ({})",
                err.message
            ),
            _ => format!("cannot be read ({})", err.message),
        };
        QueueCheckError {
            url: self.url.clone(),
            category: err.category,
            why,
        }
    }

    /// Deletes at most [`DELETE_BATCH`] receipts; returns those not deleted.
    async fn delete_batch(&self, receipts: &[String]) -> Result<Vec<String>, CloudError> {
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, receipt)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .build()
                    .map_err(|e| {
                        CloudError::new(ErrorCategory::Invalid, "DeleteMessageBatch", e.to_string())
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let answer = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| errors::from_sdk_naming("DeleteMessageBatch", e, &QUEUE_DOES_NOT_EXIST))?;
        Ok(answer
            .failed()
            .iter()
            .filter_map(|f| f.id().parse::<usize>().ok())
            .filter_map(|i| receipts.get(i).cloned())
            .collect())
    }
}

impl EventSource for SqsQueue {
    async fn receive(&self) -> Result<Vec<Message>, CloudError> {
        let answer = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .wait_time_seconds(i32::try_from(RECEIVE_WAIT.as_secs()).unwrap_or(20))
            .max_number_of_messages(RECEIVE_MAX_MESSAGES)
            .send()
            .await
            .map_err(|e| errors::from_sdk_naming("ReceiveMessage", e, &QUEUE_DOES_NOT_EXIST))?;
        Ok(answer
            .messages()
            .iter()
            .filter_map(|m| {
                // A message without a receipt cannot be deleted; SQS always sends both.
                Some(Message {
                    id: m.message_id()?.to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                })
            })
            .collect())
    }

    async fn delete(&self, receipts: &[String]) -> Result<Vec<String>, CloudError> {
        let mut left = Vec::new();
        let mut last_error = None;
        let mut calls = 0usize;
        for chunk in receipts.chunks(DELETE_BATCH) {
            calls += 1;
            match self.delete_batch(chunk).await {
                Ok(failed) => left.extend(failed),
                Err(err) => {
                    left.extend_from_slice(chunk);
                    last_error = Some(err);
                }
            }
        }
        match last_error {
            // Every call failed: say why.
            Some(err) if left.len() == receipts.len() && calls > 0 => Err(err),
            _ => Ok(left),
        }
    }
}

/// The adapter's timeouts, with the attempt (and so the read) long enough for a long poll.
fn poll_timeouts(settings: &AwsSettings) -> TimeoutConfig {
    let attempt = settings.attempt_timeout.max(RECEIVE_WAIT + POLL_MARGIN);
    TimeoutConfig::builder()
        .operation_attempt_timeout(attempt)
        .operation_timeout(settings.operation_timeout.max(attempt * 2))
        .read_timeout(attempt)
        .connect_timeout(settings.connect_timeout)
        .build()
}

/// The Region of an AWS queue URL (`https://sqs.us-east-1.amazonaws.com/...` or the legacy
/// `https://us-east-1.queue.amazonaws.com/...`); `None` for any other host (an emulator).
pub fn region_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let host = rest.split('/').next()?;
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split_once(".amazonaws.com").map(|(r, _)| r))
        .or_else(|| host.split_once(".queue.amazonaws.com").map(|(r, _)| r))?;
    let valid = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then(|| region.to_string())
}
