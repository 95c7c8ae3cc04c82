//! The lease table on DynamoDB (aws-sdk-dynamodb), as a [`LeaseStore`].
//!
//! One item per record: `id` (the partition key, a string: `shard#N` or `replica#ID`),
//! `holder` and `version` (a number). A write is a PutItem whose condition is the version it
//! replaces (`version = :expected`), or `attribute_not_exists(id)` for a record that must not
//! exist yet; `ConditionalCheckFailedException` is a lost claim, not an error. The table is
//! read with a consistent Scan (it holds one item per shard and per replica).
//!
//! [`DynamoStore::check`] describes the table once at start: a missing table, a role that may
//! not read it, or a table whose key is not `id` is one line before anything runs. With
//! `lease.create_table` it creates the table (on-demand capacity) and waits for it.
//!
//! Every call is bounded by the renewal period, so that a slow table never holds a renewal
//! past the next one; the SDK's standard retries run within that bound.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};

use super::calls::CallCounter;
use super::errors;
use super::{AwsSettings, retry_config};
use crate::cloud::{CloudError, ErrorCategory};
use crate::lease::store::{Claim, LeaseRecord, LeaseStore};

/// The partition key of the lease table.
pub const KEY: &str = "id";
const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailedException";
/// How long a created table may take to become ACTIVE.
const CREATE_WAIT: Duration = Duration::from_secs(120);

/// One DynamoDB table of lease records.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    calls: CallCounter,
}

/// Why the lease table cannot be used, as one line naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lease table {table}: {why}")]
pub struct TableCheckError {
    pub table: String,
    pub category: ErrorCategory,
    pub why: String,
}

impl DynamoStore {
    /// The table `table` in the environment's account and Region (as
    /// [`super::AwsCloud::from_env`]); also the Region's name.
    pub async fn from_env(
        settings: &AwsSettings,
        table: &str,
        call_limit: Duration,
    ) -> (Self, String) {
        let sdk_config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let region = sdk_config
            .region()
            .map(|r| r.as_ref().to_string())
            .unwrap_or_default();
        (
            DynamoStore::from_conf(&sdk_config, settings, table, call_limit),
            region,
        )
    }

    /// The table `table`, every call bounded by `call_limit` (the renewal period).
    pub fn from_conf(
        sdk_config: &aws_config::SdkConfig,
        settings: &AwsSettings,
        table: &str,
        call_limit: Duration,
    ) -> Self {
        let calls = CallCounter::default();
        let timeouts = TimeoutConfig::builder()
            .operation_timeout(call_limit)
            .operation_attempt_timeout(call_limit.min(settings.attempt_timeout))
            .connect_timeout(settings.connect_timeout.min(call_limit))
            .build();
        let mut config = aws_sdk_dynamodb::config::Builder::from(sdk_config)
            .timeout_config(timeouts)
            .retry_config(retry_config(settings))
            .interceptor(calls.clone());
        if let Some(endpoint) = &settings.endpoint_url {
            config = config.endpoint_url(endpoint);
        }
        DynamoStore {
            client: aws_sdk_dynamodb::Client::from_conf(config.build()),
            table: table.to_string(),
            calls,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// How many times each DynamoDB operation has been sent, not counting the SDK's retries.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.calls.snapshot()
    }

    /// Describes the table once; with `create`, a missing table is created and waited for.
    pub async fn check(&self, create: bool) -> Result<(), TableCheckError> {
        match self.describe().await {
            Ok(Some(key)) if key == KEY => Ok(()),
            Ok(Some(key)) => Err(self.error(
                ErrorCategory::Invalid,
                format!("its partition key is {key:?}; a lease table's must be the string {KEY:?}"),
            )),
            Ok(None) => Err(self.error(
                ErrorCategory::Invalid,
                format!("it has no string partition key; a lease table's must be {KEY:?}"),
            )),
            Err(e) if e.category == ErrorCategory::NotFound && create => self.create().await,
            Err(e) => Err(self.check_error(&e)),
        }
    }

    /// The table's string partition key, if it has one.
    async fn describe(&self) -> Result<Option<String>, CloudError> {
        let answer = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| errors::from_sdk("DescribeTable", e))?;
        let Some(table) = answer.table() else {
            return Ok(None);
        };
        let hash = table
            .key_schema()
            .iter()
            .find(|k| k.key_type() == &KeyType::Hash)
            .map(|k| k.attribute_name().to_string());
        Ok(hash)
    }

    async fn create(&self) -> Result<(), TableCheckError> {
        let definition = AttributeDefinition::builder()
            .attribute_name(KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| self.error(ErrorCategory::Invalid, e.to_string()))?;
        let key = KeySchemaElement::builder()
            .attribute_name(KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| self.error(ErrorCategory::Invalid, e.to_string()))?;
        self.client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(definition)
            .key_schema(key)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| self.check_error(&errors::from_sdk("CreateTable", e)))?;
        tracing::info!(table = %self.table, "created the lease table (lease.create_table)");
        self.wait_active().await
    }

    async fn wait_active(&self) -> Result<(), TableCheckError> {
        let deadline = tokio::time::Instant::now() + CREATE_WAIT;
        loop {
            let answer = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.check_error(&errors::from_sdk("DescribeTable", e)))?;
            let status = answer.table().and_then(|t| t.table_status()).cloned();
            if status == Some(TableStatus::Active) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.error(
                    ErrorCategory::Transient,
                    format!("created, but not ACTIVE after {CREATE_WAIT:?} (status {status:?})"),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn check_error(&self, err: &CloudError) -> TableCheckError {
        let why = match err.category {
            ErrorCategory::NotFound => format!(
                "no such table ({}); create it (deploy/ has it) or set lease.create_table = true",
                err.message
            ),
            ErrorCategory::Denied => format!(
                "access denied: the role needs dynamodb:DescribeTable, dynamodb:Scan and \
                 dynamodb:PutItem on it ({})",
                err.message
            ),
            _ => format!("cannot be read ({})", err.message),
        };
        self.error(err.category, why)
    }

    fn error(&self, category: ErrorCategory, why: String) -> TableCheckError {
        TableCheckError {
            table: self.table.clone(),
            category,
            why,
        }
    }
}

impl LeaseStore for DynamoStore {
    async fn scan(&self) -> Result<Vec<LeaseRecord>, CloudError> {
        let mut records = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let answer = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| errors::from_sdk("Scan", e))?;
            records.extend(answer.items().iter().filter_map(record_of));
            match answer.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(records),
            }
        }
    }

    async fn write(
        &self,
        key: &str,
        holder: &str,
        version: u64,
        expected: Option<u64>,
    ) -> Result<Claim, CloudError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, AttributeValue::S(key.to_string()))
            .item("holder", AttributeValue::S(holder.to_string()))
            .item("version", AttributeValue::N(version.to_string()));
        put = match expected {
            None => put.condition_expression("attribute_not_exists(#id)"),
            Some(v) => put
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", AttributeValue::N(v.to_string())),
        };
        if expected.is_none() {
            put = put.expression_attribute_names("#id", KEY);
        }
        match put.send().await {
            Ok(_) => Ok(Claim::Won),
            Err(e) if e.code() == Some(CONDITIONAL_CHECK_FAILED) => Ok(Claim::Lost),
            Err(e) => Err(errors::from_sdk("PutItem", e)),
        }
    }
}

/// A lease record from a scanned item; items of another shape are not ours and are skipped.
fn record_of(item: &HashMap<String, AttributeValue>) -> Option<LeaseRecord> {
    let key = item.get(KEY)?.as_s().ok()?;
    let holder = item
        .get("holder")
        .and_then(|h| h.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let version = item.get("version")?.as_n().ok()?.parse().ok()?;
    Some(LeaseRecord {
        key: key.clone(),
        holder,
        version,
    })
}
