//! How one simulated task behaves: how long it dwells in each lifecycle state, where it hangs,
//! when it turns unhealthy and when it stops by itself.

use std::time::Duration;

use crate::domain::TaskStatus;

/// How long a task stays in each transient state before moving on.
///
/// RUNNING and STOPPED are not transient: a task stays RUNNING until it is stopped (or stops by
/// itself), and STOPPED is the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dwell {
    pub provisioning: Duration,
    pub pending: Duration,
    pub activating: Duration,
    pub deactivating: Duration,
    pub stopping: Duration,
    pub deprovisioning: Duration,
}

impl Default for Dwell {
    fn default() -> Self {
        Dwell {
            provisioning: Duration::from_secs(3),
            pending: Duration::from_secs(4),
            activating: Duration::from_secs(2),
            deactivating: Duration::from_secs(2),
            stopping: Duration::from_secs(3),
            deprovisioning: Duration::from_secs(2),
        }
    }
}

impl Dwell {
    /// The dwell in `status`; `None` for RUNNING and STOPPED, which are left only by an event.
    pub fn of(&self, status: TaskStatus) -> Option<Duration> {
        match status {
            TaskStatus::Provisioning => Some(self.provisioning),
            TaskStatus::Pending => Some(self.pending),
            TaskStatus::Activating => Some(self.activating),
            TaskStatus::Deactivating => Some(self.deactivating),
            TaskStatus::Stopping => Some(self.stopping),
            TaskStatus::Deprovisioning => Some(self.deprovisioning),
            TaskStatus::Running | TaskStatus::Stopped => None,
        }
    }

    /// Sets the dwell in `status` (ignored for RUNNING and STOPPED).
    pub fn set(&mut self, status: TaskStatus, dwell: Duration) {
        match status {
            TaskStatus::Provisioning => self.provisioning = dwell,
            TaskStatus::Pending => self.pending = dwell,
            TaskStatus::Activating => self.activating = dwell,
            TaskStatus::Deactivating => self.deactivating = dwell,
            TaskStatus::Stopping => self.stopping = dwell,
            TaskStatus::Deprovisioning => self.deprovisioning = dwell,
            TaskStatus::Running | TaskStatus::Stopped => {}
        }
    }
}

/// What a simulated task does over its life. The default is a healthy task that comes up in
/// about ten seconds and runs until stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskBehavior {
    pub dwell: Dwell,
    /// The task reaches this state and stays there for good. A task hanging on the way up
    /// still goes down when stopped; a task hanging on the way down (e.g. STOPPING because its
    /// agent is gone) stays there even after StopTask. RUNNING and STOPPED mean no hang.
    pub hang_in: Option<TaskStatus>,
    /// healthStatus turns UNHEALTHY this long after the task reaches RUNNING (HEALTHY before).
    pub unhealthy_after: Option<Duration>,
    /// The task stops by itself this long after it was created (createdAt): as "Essential
    /// container in task exited" if it is RUNNING by then, as "Task failed to start" if it is
    /// still on the way up (ECS giving up on a task that never got going).
    pub stop_on_its_own_after: Option<Duration>,
    /// The stoppedReason ECS gives when the task stops on its own before it runs (stopCode
    /// TaskFailedToStart), e.g. "Timeout waiting for network interface provisioning to
    /// complete."; `None`: "Task failed to start".
    pub start_failure: Option<String>,
}

impl TaskBehavior {
    /// A task that comes up and stays RUNNING and HEALTHY.
    pub fn healthy() -> Self {
        TaskBehavior::default()
    }

    /// A task that reaches `status` and stays there.
    pub fn hangs_in(status: TaskStatus) -> Self {
        TaskBehavior {
            hang_in: Some(status),
            ..TaskBehavior::default()
        }
    }

    /// A task that turns UNHEALTHY `after` reaching RUNNING.
    pub fn turns_unhealthy_after(after: Duration) -> Self {
        TaskBehavior {
            unhealthy_after: Some(after),
            ..TaskBehavior::default()
        }
    }

    /// A task that stops by itself `after` its creation.
    pub fn stops_on_its_own_after(after: Duration) -> Self {
        TaskBehavior {
            stop_on_its_own_after: Some(after),
            ..TaskBehavior::default()
        }
    }

    /// A task that stays in PROVISIONING and, `after` its creation, fails to start with
    /// `reason` (stopCode TaskFailedToStart), as ECS stops a task whose network interface or
    /// capacity never came.
    pub fn fails_to_start_after(after: Duration, reason: &str) -> Self {
        TaskBehavior {
            hang_in: Some(TaskStatus::Provisioning),
            stop_on_its_own_after: Some(after),
            start_failure: Some(reason.to_string()),
            ..TaskBehavior::default()
        }
    }

    /// The same behavior with the dwell in `status` set to `dwell`.
    pub fn with_dwell(mut self, status: TaskStatus, dwell: Duration) -> Self {
        self.dwell.set(status, dwell);
        self
    }

    /// Whether the task hangs in `status` (RUNNING and STOPPED never count as a hang).
    pub fn hangs_at(&self, status: TaskStatus) -> bool {
        self.hang_in == Some(status) && self.dwell.of(status).is_some()
    }
}
