//! The HTTP endpoints of `run` (axum, on `--listen`): `/metrics` (OpenMetrics text),
//! `/livez` (the loop made progress lately) and `/readyz` (a valid policy set in force, the
//! cloud resolved, the audit trail writable).
//!
//! Liveness and readiness are the controller-runtime and Karpenter split: a process that is
//! alive but not ready is left running and taken out of rotation; one that is not alive is
//! restarted. Leadership (a standby replica) is a metric, never readiness.
//!
//! The address is bound by [`bind`] before reconciling starts, so a malformed address or one in
//! use is a one-line start-up error. [`serve`] answers until shutdown: then the listener
//! closes (a new scrape is refused), and the scrapes in flight are answered.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::metrics::{CONTENT_TYPE, Metrics};

/// A check of the process's own state, asked at each `/readyz`.
pub type Check = Box<dyn Fn() -> bool + Send + Sync>;

/// What `/livez` and `/readyz` answer from.
pub struct Health {
    metrics: Arc<Metrics>,
    /// How long the loop may go without progress and still be alive.
    live_within: Duration,
    /// The simulated time ran out: the loop ended on purpose and the process only serves.
    finished: AtomicBool,
    /// AWS credentials and the Region resolved (or the simulated account is set up).
    cloud_resolved: AtomicBool,
    /// Whether the audit trail is writable (`Controller::audit_available`).
    audit: OnceLock<Check>,
}

/// Why `/readyz` says no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    NoPolicySet,
    CloudUnresolved,
    AuditUnavailable,
}

impl NotReady {
    pub fn as_str(self) -> &'static str {
        match self {
            NotReady::NoPolicySet => "no valid policy set in force",
            NotReady::CloudUnresolved => "AWS credentials and Region not resolved",
            NotReady::AuditUnavailable => "the audit trail cannot be written",
        }
    }
}

/// The bound of `/livez`: three resync intervals and an observe's timeout. A loop that wakes
/// at least every resync, and whose slowest step is an observe, stays well inside it.
pub fn liveness_bound(resync: Duration, observe_timeout: Duration) -> Duration {
    resync.saturating_mul(3).saturating_add(observe_timeout)
}

impl Health {
    pub fn new(metrics: Arc<Metrics>, live_within: Duration) -> Health {
        Health {
            metrics,
            live_within,
            finished: AtomicBool::new(false),
            cloud_resolved: AtomicBool::new(false),
            audit: OnceLock::new(),
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The cloud is set up: credentials and Region resolved.
    pub fn cloud_resolved(&self) {
        self.cloud_resolved.store(true, Ordering::Relaxed);
    }

    /// Asks `check` whether the audit trail is writable (set once, when the controller exists).
    pub fn watch_audit(&self, check: Check) {
        let _ = self.audit.set(check);
    }

    /// The loop ended on purpose (`--sim`'s time ran out): alive from now on.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::Relaxed);
    }

    /// `Ok`, or how long the loop has gone without progress, at `now`.
    pub fn live_at(&self, now: Instant) -> Result<(), Duration> {
        let since = now.saturating_duration_since(self.metrics.last_progress());
        if self.finished.load(Ordering::Relaxed) || since <= self.live_within {
            Ok(())
        } else {
            Err(since)
        }
    }

    /// `Ok`, or every reason the process is not ready.
    pub fn ready(&self) -> Result<(), Vec<NotReady>> {
        let mut missing = Vec::new();
        if self.metrics.policy_set().is_none() {
            missing.push(NotReady::NoPolicySet);
        }
        if !self.cloud_resolved.load(Ordering::Relaxed) {
            missing.push(NotReady::CloudUnresolved);
        }
        if !self.audit.get().is_some_and(|check| check()) {
            missing.push(NotReady::AuditUnavailable);
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing)
        }
    }
}

/// Binds `address` (the `listen` setting) for [`serve`]. The error is one line naming it.
pub fn bind(address: &str) -> Result<TcpListener, String> {
    let addr: SocketAddr = address.parse().map_err(|_| {
        format!("listen: {address:?} is not an address (HOST:PORT, e.g. 127.0.0.1:9090)")
    })?;
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("listen: cannot listen on {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listen: {addr}: {e}"))?;
    Ok(listener)
}

/// The routes.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// Answers on `listener` until `shutdown`; then stops accepting and answers what is in flight.
pub async fn serve(listener: TcpListener, health: Arc<Health>, shutdown: CancellationToken) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            error!(error = %e, "cannot serve the HTTP endpoints");
            return;
        }
    };
    if let Ok(address) = listener.local_addr() {
        info!(%address, "serving /metrics, /livez and /readyz on http://{address}");
    }
    let served = axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(e) = served {
        error!(error = %e, "the HTTP endpoints stopped");
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        health.metrics.encode(),
    )
        .into_response()
}

async fn livez(State(health): State<Arc<Health>>) -> Response {
    match health.live_at(Instant::now()) {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(since) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the reconcile loop made no progress for {} (bound {})\n",
                humantime::format_duration(Duration::from_secs(since.as_secs())),
                humantime::format_duration(health.live_within)
            ),
        )
            .into_response(),
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> Response {
    match health.ready() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(missing) => {
            let why: Vec<&str> = missing.iter().map(|m| m.as_str()).collect();
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", why.join("; ")),
            )
                .into_response()
        }
    }
}
