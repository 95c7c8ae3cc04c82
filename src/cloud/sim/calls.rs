//! Call accounting and fault injection: which AWS operations the real adapter would have made,
//! and which of them the scenario makes fail.
//!
//! An injected failure reads as the adapter's would: its message starts with the error code
//! AWS answers for that category (`ThrottlingException: ...`, `AccessDeniedException: ...`),
//! as `errors::from_sdk` words them.
//!
//! Besides the counts, the calls made since the last [`Calls::take_paced`] are kept in order
//! (with the throttled ones), so the account can take their tokens from an attached
//! [`ApiBudget`](crate::cloud::budget::ApiBudget) once its lock is released.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::cloud::{CloudError, ErrorCategory};

/// Operations that change the account. Everything else counted here is a read.
pub const MUTATING_OPERATIONS: &[&str] = &[
    "RunTask",
    "StopTask",
    "UpdateService",
    "UpdateContainerInstancesState",
    "SetDesiredCapacity",
    "UpdateAutoScalingGroup",
    "CreateOrUpdateTags",
    "DeleteTags",
    "TagResource",
    "UntagResource",
    "TerminateInstanceInAutoScalingGroup",
];

/// Counts per operation, plus the faults armed for the next calls.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    counts: BTreeMap<String, u64>,
    armed: HashMap<String, VecDeque<ErrorCategory>>,
    /// Operations every call of which fails, with the category.
    always: BTreeMap<String, ErrorCategory>,
    /// Calls made since the last [`Calls::take_paced`], in order (one per page).
    unpaced: Vec<String>,
    /// Calls answered Throttled since the last [`Calls::take_paced`].
    throttled: Vec<String>,
    /// How each call since the last [`Calls::take_paced`] was answered (for the metrics).
    answers: Vec<(String, Option<ErrorCategory>)>,
}

/// Calls to account for in the budget: tokens to take, and throttling answers to report.
#[derive(Debug, Default)]
pub(crate) struct Paced {
    pub(crate) calls: Vec<String>,
    pub(crate) throttled: Vec<String>,
    /// Each call with its answer: `None` for success, else the error's category.
    pub(crate) answers: Vec<(String, Option<ErrorCategory>)>,
}

impl Calls {
    /// Records one call of `operation` and says whether it succeeds. A failed call was still
    /// made (and counted) but has no effect.
    pub(crate) fn call(&mut self, operation: &str) -> Result<(), CloudError> {
        let answer = self.answer(operation);
        self.answers.push((
            operation.to_string(),
            answer.as_ref().err().map(|e| e.category),
        ));
        answer
    }

    fn answer(&mut self, operation: &str) -> Result<(), CloudError> {
        *self.counts.entry(operation.to_string()).or_default() += 1;
        self.unpaced.push(operation.to_string());
        let injected = match self.always.get(operation) {
            Some(category) => Some(*category),
            None => self.armed.get_mut(operation).and_then(VecDeque::pop_front),
        };
        let Some(category) = injected else {
            return Ok(());
        };
        if category == ErrorCategory::Throttled {
            self.throttled.push(operation.to_string());
        }
        Err(injected_error(operation, category))
    }

    /// Records `pages` calls of `operation`, stopping at the first that fails.
    pub(crate) fn call_pages(&mut self, operation: &str, pages: u64) -> Result<(), CloudError> {
        (0..pages).try_for_each(|_| self.call(operation))
    }

    pub(crate) fn fail_next(&mut self, operation: &str, category: ErrorCategory, times: u32) {
        let queue = self.armed.entry(operation.to_string()).or_default();
        queue.extend(std::iter::repeat_n(category, times as usize));
    }

    pub(crate) fn deny(&mut self, operation: &str) {
        self.fail_always(operation, ErrorCategory::Denied);
    }

    pub(crate) fn fail_always(&mut self, operation: &str, category: ErrorCategory) {
        self.always.insert(operation.to_string(), category);
    }

    /// Forgets every armed and permanent failure.
    pub(crate) fn clear_faults(&mut self) {
        self.armed.clear();
        self.always.clear();
    }

    pub(crate) fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.clone()
    }

    pub(crate) fn mutating(&self) -> u64 {
        self.counts
            .iter()
            .filter(|(op, _)| MUTATING_OPERATIONS.contains(&op.as_str()))
            .map(|(_, n)| n)
            .sum()
    }

    /// The calls made (and the throttling answers given) since the last time, emptied.
    pub(crate) fn take_paced(&mut self) -> Paced {
        Paced {
            calls: std::mem::take(&mut self.unpaced),
            throttled: std::mem::take(&mut self.throttled),
            answers: std::mem::take(&mut self.answers),
        }
    }

    pub(crate) fn reset(&mut self) {
        self.counts.clear();
    }
}

/// Pages needed for `n` items at `per_page` a page, with at least `min` calls.
pub(crate) fn pages(n: usize, per_page: usize, min: u64) -> u64 {
    (n.div_ceil(per_page) as u64).max(min)
}

/// The error an injected failure of `category` answers, as the adapter words AWS's.
fn injected_error(operation: &str, category: ErrorCategory) -> CloudError {
    let message = match category {
        ErrorCategory::Denied => format!(
            "AccessDeniedException: not authorized to perform {}:{operation}",
            service_of(operation)
        ),
        ErrorCategory::Throttled => "ThrottlingException: Rate exceeded".to_string(),
        ErrorCategory::Transient => "ServiceUnavailable: injected failure".to_string(),
        ErrorCategory::Invalid => "InvalidParameterException: injected failure".to_string(),
        ErrorCategory::NotFound => "ResourceNotFoundException: injected failure".to_string(),
    };
    CloudError::new(category, operation, message)
}

/// The IAM service prefix of an operation the simulated account counts.
fn service_of(operation: &str) -> &'static str {
    match operation {
        "GetConsoleOutput"
        | "DescribeLaunchTemplates"
        | "DescribeLaunchTemplateVersions"
        | "DescribeInstanceTypes"
        | "DescribeNetworkInterfaces"
        | "DescribeInstances" => "ec2",
        "DescribeAutoScalingGroups"
        | "DescribeAutoScalingInstances"
        | "DescribeScalingActivities"
        | "SetDesiredCapacity"
        | "UpdateAutoScalingGroup"
        | "CreateOrUpdateTags"
        | "DeleteTags"
        | "TerminateInstanceInAutoScalingGroup" => "autoscaling",
        _ => "ecs",
    }
}
