//! Where lease records live: the narrow [`LeaseStore`] trait the keeper needs (read every
//! record; write one conditionally), [`MemoryStore`], an in-process table for the simulated
//! account and the keeper's tests, and [`Link`], one replica's connection to a shared table,
//! which can be cut or slowed. The DynamoDB table is
//! `crate::cloud::aws::leases::DynamoStore`.
//!
//! A record is a key (`shard#N` for a shard's lease, `replica#ID` for a replica's heartbeat),
//! its holder, and a version that every write increases. A write names the version it expects
//! to replace (or none: the record must not exist yet), and loses when the record has moved
//! on: the DynamoDB conditional write.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::cloud::{CloudError, ErrorCategory};

/// One lease record as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub key: String,
    pub holder: String,
    pub version: u64,
}

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The record now holds the new holder and version.
    Won,
    /// The record was not at the expected version (or existed when it was expected not to):
    /// nothing was written.
    Lost,
}

/// The lease table.
pub trait LeaseStore: Send + Sync + 'static {
    /// Every record, read consistently.
    fn scan(&self) -> impl Future<Output = Result<Vec<LeaseRecord>, CloudError>> + Send;

    /// Writes `holder` and `version` to `key`, only if the record is at `expected` (or, with
    /// `None`, does not exist).
    fn write(
        &self,
        key: &str,
        holder: &str,
        version: u64,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<Claim, CloudError>> + Send;
}

impl<S: LeaseStore> LeaseStore for std::sync::Arc<S> {
    fn scan(&self) -> impl Future<Output = Result<Vec<LeaseRecord>, CloudError>> + Send {
        (**self).scan()
    }

    fn write(
        &self,
        key: &str,
        holder: &str,
        version: u64,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<Claim, CloudError>> + Send {
        (**self).write(key, holder, version, expected)
    }
}

/// An in-process lease table, shared by simulated replicas. It counts the calls it answered.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<BTreeMap<String, LeaseRecord>>,
    scans: AtomicU64,
    writes: AtomicU64,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// The records as they stand.
    pub fn records(&self) -> Vec<LeaseRecord> {
        self.lock().values().cloned().collect()
    }

    /// Calls answered so far: (scans, writes).
    pub fn calls(&self) -> (u64, u64) {
        (
            self.scans.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, LeaseRecord>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LeaseStore for MemoryStore {
    async fn scan(&self) -> Result<Vec<LeaseRecord>, CloudError> {
        self.scans.fetch_add(1, Ordering::Relaxed);
        Ok(self.records())
    }

    async fn write(
        &self,
        key: &str,
        holder: &str,
        version: u64,
        expected: Option<u64>,
    ) -> Result<Claim, CloudError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        let mut records = self.lock();
        let current = records.get(key).map(|r| r.version);
        if current != expected {
            return Ok(Claim::Lost);
        }
        records.insert(
            key.to_string(),
            LeaseRecord {
                key: key.to_string(),
                holder: holder.to_string(),
                version,
            },
        );
        Ok(Claim::Won)
    }
}

/// One replica's connection to a shared table: it can be cut (every call fails as a timeout
/// would, `Transient`) or slowed (every answer arrives `delay` after the table applied the
/// call, as when an answer is lost and retried).
#[derive(Debug)]
pub struct Link<S> {
    table: Arc<S>,
    cut: AtomicBool,
    delay_ms: AtomicU64,
}

impl<S: LeaseStore> Link<S> {
    pub fn new(table: Arc<S>) -> Self {
        Link {
            table,
            cut: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
        }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    fn refuse(&self, operation: &str) -> Result<(), CloudError> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(CloudError::new(
                ErrorCategory::Transient,
                operation,
                "the lease table cannot be reached",
            ));
        }
        Ok(())
    }

    async fn answer_late(&self) {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

impl<S: LeaseStore> LeaseStore for Link<S> {
    async fn scan(&self) -> Result<Vec<LeaseRecord>, CloudError> {
        self.refuse("Scan")?;
        let records = self.table.scan().await;
        self.answer_late().await;
        records
    }

    async fn write(
        &self,
        key: &str,
        holder: &str,
        version: u64,
        expected: Option<u64>,
    ) -> Result<Claim, CloudError> {
        self.refuse("PutItem")?;
        let claim = self.table.write(key, holder, version, expected).await;
        self.answer_late().await;
        claim
    }
}
