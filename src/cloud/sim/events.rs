//! The simulated account's events: what EventBridge would deliver for each change of the world,
//! in the EventBridge JSON shape of [`crate::events::envelope`], and the in-process queue that
//! delivers them ([`SimQueue`], an [`EventSource`]) the way an SQS queue behind an EventBridge
//! rule does (docs/design.md §7).
//!
//! The world writes an envelope into its [`Outbox`] on every task state change (lastStatus or
//! desiredStatus), container instance change (agent connected or not, status), placement
//! failure of a service (ECS Service Action `SERVICE_TASK_PLACEMENT_FAILURE`) and Auto Scaling
//! launch (Successful or Unsuccessful). Nothing is written until a queue is made
//! ([`SimAccount::event_queue`]), so accounts without one pay nothing. An envelope's `time` is
//! the virtual time of the change.
//!
//! The queue behaves as SQS with long polling: a receive returns up to [`RECEIVE_MAX`]
//! messages, waiting (on the virtual clock) up to [`RECEIVE_WAIT`] for the first; a delivery
//! not deleted by its receipt comes back after [`VISIBILITY_TIMEOUT`]. Its [`QueueFaults`]
//! delay, duplicate, reorder (a random further delay within a window) and drop events,
//! deterministically for a seed.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::SimAccount;
use super::ids::{ACCOUNT_ID, REGION};
use crate::cloud::CloudError;
use crate::domain::{Capacity, ContainerInstance, DesiredStatus, Task, TaskStatus};
use crate::events::envelope::{
    AUTOSCALING_SOURCE, CONTAINER_INSTANCE_STATE_CHANGE, ContainerInstanceDetail, ECS_SOURCE,
    Envelope, LAUNCH_SUCCESSFUL, LAUNCH_UNSUCCESSFUL, LaunchDetail, SERVICE_ACTION,
    ServiceActionDetail, TASK_STATE_CHANGE, TaskDetail,
};
use crate::events::{EventSource, Message};

/// Messages one receive returns at most (SQS's `MaxNumberOfMessages` limit).
pub const RECEIVE_MAX: usize = 10;
/// How long a receive waits for a first message (SQS's longest `WaitTimeSeconds`).
pub const RECEIVE_WAIT: Duration = Duration::from_secs(20);
/// How long a received message stays invisible before it is delivered again (SQS's default).
pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `eventName` of ECS's placement failure service action.
pub const PLACEMENT_FAILURE: &str = "SERVICE_TASK_PLACEMENT_FAILURE";

// ---- emission ----

/// Where the world writes the envelopes of its changes, once enabled.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    enabled: bool,
    envelopes: Vec<(SystemTime, Envelope)>,
    next_id: u64,
}

impl Outbox {
    pub(crate) fn enable(&mut self) {
        self.enabled = true;
    }

    /// The envelopes written since the last take with the times of their changes, in the
    /// order of the changes.
    pub(crate) fn take(&mut self) -> Vec<(SystemTime, Envelope)> {
        std::mem::take(&mut self.envelopes)
    }

    /// `ECS Task State Change` for `task` as it is now.
    pub(crate) fn task(&mut self, task: &Task, at: SystemTime) {
        if !self.enabled {
            return;
        }
        let resources = vec![task.arn.clone()];
        self.push(
            ECS_SOURCE,
            TASK_STATE_CHANGE,
            at,
            resources,
            task_detail(task, at),
        );
    }

    /// `ECS Container Instance State Change` for `instance` of `cluster_arn`.
    pub(crate) fn container_instance(
        &mut self,
        cluster_arn: &str,
        instance: &ContainerInstance,
        version: u64,
        at: SystemTime,
    ) {
        if !self.enabled {
            return;
        }
        let detail = ContainerInstanceDetail {
            cluster_arn: cluster_arn.to_string(),
            container_instance_arn: instance.arn.clone(),
            ec2_instance_id: instance.ec2_instance_id.clone(),
            agent_connected: instance.agent_connected,
            status: instance.status.clone(),
            registered_at: instance.registered_at.map(rfc3339),
            updated_at: Some(rfc3339(at)),
            version,
        };
        let resources = vec![instance.arn.clone()];
        let kind = CONTAINER_INSTANCE_STATE_CHANGE;
        self.push(ECS_SOURCE, kind, at, resources, detail);
    }

    /// `ECS Service Action` SERVICE_TASK_PLACEMENT_FAILURE (WARN) for a service whose task
    /// finds no instance with enough `lacking` (`CPU` or `memory`) behind `providers` (the
    /// names of the capacity providers it tried).
    pub(crate) fn placement_failure(
        &mut self,
        cluster_arn: &str,
        service_arn: &str,
        (lacking, providers): (&str, &[String]),
        at: SystemTime,
    ) {
        if !self.enabled {
            return;
        }
        let detail = ServiceActionDetail {
            event_type: "WARN".to_string(),
            event_name: PLACEMENT_FAILURE.to_string(),
            cluster_arn: cluster_arn.to_string(),
            created_at: Some(rfc3339(at)),
            reasons: vec![format!("RESOURCE:{}", lacking.to_uppercase())],
            capacity_provider_arns: providers
                .iter()
                .map(|p| format!("arn:aws:ecs:{REGION}:{ACCOUNT_ID}:capacity-provider/{p}"))
                .collect(),
        };
        let resources = vec![service_arn.to_string()];
        self.push(ECS_SOURCE, SERVICE_ACTION, at, resources, detail);
    }

    /// `EC2 Instance Launch Successful` (an instance id) or `Unsuccessful` (`failure`, the
    /// status message) for `group`.
    pub(crate) fn launch(&mut self, launch: LaunchEvent<'_>, at: SystemTime) {
        if !self.enabled {
            return;
        }
        let (kind, status) = match launch.failure {
            None => (LAUNCH_SUCCESSFUL, "Successful"),
            Some(_) => (LAUNCH_UNSUCCESSFUL, "Failed"),
        };
        let detail = LaunchDetail {
            auto_scaling_group_name: launch.group.to_string(),
            activity_id: Some(launch.activity_id.to_string()),
            status_code: Some(status.to_string()),
            status_message: launch.failure.map(str::to_string),
            cause: Some(launch.cause.to_string()),
            ec2_instance_id: launch.instance.map(str::to_string),
            start_time: Some(rfc3339(at)),
            end_time: Some(rfc3339(at)),
        };
        let mut resources = vec![launch.group_arn.to_string()];
        if let Some(instance) = launch.instance {
            resources.push(format!(
                "arn:aws:ec2:{REGION}:{ACCOUNT_ID}:instance/{instance}"
            ));
        }
        self.push(AUTOSCALING_SOURCE, kind, at, resources, detail);
    }

    fn push(
        &mut self,
        source: &str,
        detail_type: &str,
        at: SystemTime,
        resources: Vec<String>,
        detail: impl Serialize,
    ) {
        self.next_id += 1;
        let detail = serde_json::to_value(detail).unwrap_or(serde_json::Value::Null);
        let envelope = Envelope {
            version: "0".to_string(),
            id: event_id(self.next_id),
            detail_type: detail_type.to_string(),
            source: source.to_string(),
            account: ACCOUNT_ID.to_string(),
            time: rfc3339(at),
            region: REGION.to_string(),
            resources,
            detail,
        };
        self.envelopes.push((at, envelope));
    }
}

/// One Auto Scaling launch, successful (`failure` `None`, `instance` set) or not.
pub(crate) struct LaunchEvent<'a> {
    pub(crate) group: &'a str,
    pub(crate) group_arn: &'a str,
    pub(crate) activity_id: &'a str,
    pub(crate) cause: &'a str,
    pub(crate) instance: Option<&'a str>,
    pub(crate) failure: Option<&'a str>,
}

fn task_detail(task: &Task, at: SystemTime) -> TaskDetail {
    let ts = &task.timestamps;
    let (launch_type, capacity_provider_name) = match &task.capacity {
        Capacity::LaunchType(t) => (Some(t.clone()), None),
        Capacity::CapacityProviderStrategy(items) => (
            Some("EC2".to_string()),
            items.first().map(|i| i.capacity_provider.clone()),
        ),
    };
    TaskDetail {
        cluster_arn: task.cluster_arn.to_string(),
        task_arn: task.arn.clone(),
        task_definition_arn: task.task_definition_arn.to_string(),
        container_instance_arn: task.container_instance_arn.clone(),
        last_status: task.last_status.as_str().to_string(),
        desired_status: match task.desired_status {
            DesiredStatus::Running => TaskStatus::Running.as_str().to_string(),
            DesiredStatus::Stopped => TaskStatus::Stopped.as_str().to_string(),
        },
        group: task.group.as_deref().map(String::from),
        started_by: task.started_by.as_deref().map(String::from),
        launch_type,
        capacity_provider_name,
        cpu: task.cpu.map(|c| c.to_string()),
        memory: task.memory.map(|m| m.to_string()),
        created_at: ts.created_at.map(rfc3339),
        connectivity_at: ts.connectivity_at.map(rfc3339),
        pull_started_at: ts.pull_started_at.map(rfc3339),
        pull_stopped_at: ts.pull_stopped_at.map(rfc3339),
        started_at: ts.started_at.map(rfc3339),
        stopping_at: ts.stopping_at.map(rfc3339),
        execution_stopped_at: ts.execution_stopped_at.map(rfc3339),
        stopped_at: ts.stopped_at.map(rfc3339),
        stopped_reason: task.stopped_reason.clone(),
        stop_code: task.stop_code.clone(),
        updated_at: Some(rfc3339(at)),
        version: task.version,
    }
}

/// RFC 3339 with milliseconds, as EventBridge writes times (`2020-01-23T17:57:34.402Z`).
fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// An event id: a UUID-shaped string made from a counter.
fn event_id(counter: u64) -> String {
    let hex = super::ids::hex_id(counter);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

// ---- the queue ----

/// Envelopes with the times of their changes.
type Emitted = Vec<(SystemTime, Envelope)>;

/// What the queue does to the events it is given. The default delivers each once, at once,
/// in order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueFaults {
    /// Each event becomes visible only this long after its change.
    pub delay: Duration,
    /// The chance (0 to 1) that an event is delivered twice (as two messages).
    pub duplicate: f64,
    /// Each message (a duplicate too) turns visible after a further random part of this
    /// window, so the events of one window arrive shuffled, and a copy may arrive after newer
    /// events (zero: in order).
    pub reorder_window: Duration,
    /// The chance (0 to 1) that an event is never delivered.
    pub drop: f64,
    /// Seeds every random choice above: the same seed and changes give the same deliveries.
    pub seed: u64,
}

impl Default for QueueFaults {
    fn default() -> Self {
        QueueFaults {
            delay: Duration::ZERO,
            duplicate: 0.0,
            reorder_window: Duration::ZERO,
            drop: 0.0,
            seed: 0,
        }
    }
}

/// What the queue did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Events the world wrote.
    pub emitted: u64,
    /// Events dropped by the fault.
    pub dropped: u64,
    /// Extra copies made by the fault.
    pub duplicated: u64,
    /// Deliveries made (a message delivered again counts again).
    pub delivered: u64,
    /// Deliveries deleted.
    pub deleted: u64,
    /// Receive calls answered.
    pub receives: u64,
}

/// The simulated account's queue of events, as an [`EventSource`].
pub struct SimQueue {
    account: Arc<SimAccount>,
    state: Mutex<QueueState>,
}

#[derive(Debug)]
struct QueueState {
    faults: QueueFaults,
    rng: SplitMix,
    /// Messages not deleted, oldest first.
    messages: Vec<Stored>,
    next_message: u64,
    next_receipt: u64,
    counts: QueueCounts,
}

#[derive(Debug)]
struct Stored {
    id: String,
    body: String,
    visible_at: SystemTime,
    /// The receipt of its latest delivery; only that one deletes it.
    receipt: Option<String>,
}

impl SimAccount {
    /// The account's event queue, with `faults`. The world writes events from now on (not
    /// for what happened before). Make one queue per account: a second one takes events
    /// away from the first.
    pub fn event_queue(self: &Arc<Self>, faults: QueueFaults) -> SimQueue {
        self.current().world.outbox_mut().enable();
        SimQueue {
            account: Arc::clone(self),
            state: Mutex::new(QueueState {
                faults,
                rng: SplitMix(faults.seed),
                messages: Vec::new(),
                next_message: 0,
                next_receipt: 0,
                counts: QueueCounts::default(),
            }),
        }
    }

    /// Brings the world up to now; the envelopes it wrote, now, and when it next changes by
    /// itself.
    fn take_emitted(&self) -> (Emitted, SystemTime, Option<SystemTime>) {
        let mut inner = self.current();
        let envelopes = inner.world.outbox_mut().take();
        (envelopes, inner.world.now(), inner.world.next_due())
    }
}

impl SimQueue {
    /// What the queue did so far.
    pub fn counts(&self) -> QueueCounts {
        self.lock().counts
    }

    /// Messages not yet deleted (visible or in flight).
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes the faults from now on (the random sequence goes on).
    pub fn set_faults(&self, faults: QueueFaults) {
        self.lock().faults = faults;
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes what the world wrote into the queue; returns now and when to look again at the
    /// latest (the world's next change, the next message to turn visible).
    fn fill(&self) -> (SystemTime, Option<SystemTime>) {
        let (envelopes, now, next_due) = self.account.take_emitted();
        let mut state = self.lock();
        for (at, envelope) in envelopes {
            state.enqueue(at, &envelope);
        }
        let next_visible = state.messages.iter().map(|m| m.visible_at).min();
        let wake = match (next_due, next_visible) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (now, wake)
    }
}

impl QueueState {
    fn enqueue(&mut self, at: SystemTime, envelope: &Envelope) {
        self.counts.emitted += 1;
        if self.rng.chance(self.faults.drop) {
            self.counts.dropped += 1;
            return;
        }
        let copies = if self.rng.chance(self.faults.duplicate) {
            self.counts.duplicated += 1;
            2
        } else {
            1
        };
        let body = serde_json::to_string(envelope).unwrap_or_default();
        for _ in 0..copies {
            self.next_message += 1;
            let shuffle = self.rng.within(self.faults.reorder_window);
            self.messages.push(Stored {
                id: format!("sim-message-{}", self.next_message),
                body: body.clone(),
                visible_at: at + self.faults.delay + shuffle,
                receipt: None,
            });
        }
    }

    /// Up to [`RECEIVE_MAX`] visible messages, the earliest visible first, now invisible.
    fn deliver(&mut self, now: SystemTime) -> Vec<Message> {
        let mut visible: Vec<usize> = (0..self.messages.len())
            .filter(|&i| self.messages[i].visible_at <= now)
            .collect();
        visible.sort_by_key(|&i| self.messages[i].visible_at);
        visible.truncate(RECEIVE_MAX);
        let mut out = Vec::with_capacity(visible.len());
        for i in visible {
            self.next_receipt += 1;
            let receipt = format!("sim-receipt-{}", self.next_receipt);
            let m = &mut self.messages[i];
            m.visible_at = now + VISIBILITY_TIMEOUT;
            m.receipt = Some(receipt.clone());
            out.push(Message {
                id: m.id.clone(),
                receipt,
                body: m.body.clone(),
            });
        }
        self.counts.delivered += out.len() as u64;
        out
    }
}

impl EventSource for SimQueue {
    async fn receive(&self) -> Result<Vec<Message>, CloudError> {
        let deadline = self.account.now() + RECEIVE_WAIT;
        loop {
            let changed = self.account.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let (now, wake) = self.fill();
            let delivered = self.lock().deliver(now);
            if !delivered.is_empty() || now >= deadline {
                self.lock().counts.receives += 1;
                return Ok(delivered);
            }
            let wake = wake.map_or(deadline, |w| w.min(deadline));
            let wait = wake.duration_since(now).unwrap_or(Duration::ZERO);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut changed => {}
            }
        }
    }

    async fn delete(&self, receipts: &[String]) -> Result<Vec<String>, CloudError> {
        let mut state = self.lock();
        let mut failed = Vec::new();
        for receipt in receipts {
            let found = state
                .messages
                .iter()
                .position(|m| m.receipt.as_deref() == Some(receipt.as_str()));
            match found {
                Some(i) => {
                    state.messages.remove(i);
                    state.counts.deleted += 1;
                }
                None => failed.push(receipt.clone()),
            }
        }
        Ok(failed)
    }
}

/// SplitMix64: a small seeded generator, enough for fault injection.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// True with probability `p` (never for 0, always for 1); draws nothing for p <= 0.
    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A uniform random part of `window` (to the millisecond); draws nothing for zero.
    fn within(&mut self, window: Duration) -> Duration {
        let millis = window.as_millis() as u64;
        if millis == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.next() % millis)
    }
}
