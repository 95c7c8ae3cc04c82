//! Call counting: an SDK interceptor that counts every API operation the adapter sends.
//!
//! It counts executions (one per operation call, including each page of a paginator), not
//! retry attempts. Tests use the counts to prove what an observation costs and that dry runs
//! make no mutating call. One counter is shared by the ECS and EC2 clients (the interceptor
//! trait is the Smithy runtime's, common to every AWS SDK crate).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_ecs::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_ecs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ecs::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// Counts of API operations by name (e.g. `ListTasks`), shared between clones.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallCounter {
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl CallCounter {
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn bump(&self, operation: &str) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry(operation.to_string()).or_default() += 1;
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    // Once per execution, like `read_before_execution`, but late enough that the operation's
    // metadata is in the config bag (client interceptors' `read_before_execution` runs first).
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg.load::<Metadata>().map_or("Unknown", Metadata::name);
        self.bump(operation);
        Ok(())
    }
}
