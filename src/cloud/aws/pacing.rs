//! Pacing of the adapter's SDK calls through the process's [`ApiBudget`].
//!
//! Every SDK call goes through [`Pacer::call`]: it waits for a token of the operation's throttle
//! category (`budget.acquire(operation)`) before the call is sent, and tells the budget when
//! the call comes back [`ErrorCategory::Throttled`] (after the SDK's own retries), so the
//! category slows down. Paged operations go through [`Pacer::pages`], which acquires once per
//! page: the SDK's paginators are not used, because they may start the next page's request
//! before the caller asks for it, outside the budget.
//!
//! This is the only pacing; there is no retry here (the SDK's standard mode retries).

use std::future::Future;
use std::sync::Arc;

use crate::cloud::budget::ApiBudget;
use crate::cloud::{CloudError, ErrorCategory};

/// The process's budget, as the adapter's modules use it.
#[derive(Clone)]
pub(crate) struct Pacer {
    budget: Arc<ApiBudget>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").finish_non_exhaustive()
    }
}

impl Pacer {
    pub(crate) fn new(budget: Arc<ApiBudget>) -> Self {
        Pacer { budget }
    }

    pub(crate) fn budget(&self) -> &Arc<ApiBudget> {
        &self.budget
    }

    /// Sends one call of `operation` (`send` is not polled before the token is there).
    pub(crate) async fn call<T>(
        &self,
        operation: &str,
        send: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        self.budget.acquire(operation).await;
        let result = send.await;
        if let Err(e) = &result
            && e.category == ErrorCategory::Throttled
        {
            self.budget.throttled(operation);
        }
        self.budget
            .answered(operation, result.as_ref().err().map(|e| e.category));
        result
    }

    /// Every item of a paged `operation`: `page(next_token)` sends one page and returns its
    /// items and the next token. One token of the budget per page.
    pub(crate) async fn pages<T, F, Fut>(
        &self,
        operation: &str,
        mut page: F,
    ) -> Result<Vec<T>, CloudError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<(Vec<T>, Option<String>), CloudError>>,
    {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // Boxed: an SDK call's future is large, and debug builds copy it between frames.
            let (found, next) = self.call(operation, Box::pin(page(token.take()))).await?;
            items.extend(found);
            match next {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(items),
            }
        }
    }
}
