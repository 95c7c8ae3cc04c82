//! Hot policy reload: load the policy directory again when its files change or on SIGHUP, and
//! put the new set in force only when the whole directory is valid.
//!
//! A [`PolicyWatcher`] holds the last good [`PolicySet`]. [`PolicyWatcher::reload_now`] loads
//! the directory (with [`load_dir_identified`], so the set is named by its git commit when it
//! has one) and:
//!
//! - on success, when the set differs from the one in force (by identity), hands it to the
//!   `on_change` callback (the CLI passes `Controller::set_policies`), publishes it on a
//!   [`tokio::sync::watch`] channel, and logs `policy set <id> loaded (N policies)`;
//! - on failure, logs every error exactly as `validate` prints them (`file:line:column: field:
//!   message`, one per line) and keeps the last good set: nothing is half-applied.
//!
//! [`PolicyWatcher::start`] runs the triggers in the background until shutdown: a file watch on
//! the directory (the `notify` crate) and SIGHUP. File changes are debounced: the directory is
//! loaded once it has been quiet for [`DEBOUNCE`], so an editor's save is one reload. Only
//! changes count: inotify also reports files being opened and read, which the reload itself
//! does, and counting those would reload forever. Tests call `reload_now` directly instead of
//! sending signals or waiting on the file system.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{MetadataKind, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::policy::{PolicyError, PolicyErrors, PolicySet, load_dir_identified};

/// How long the directory must be quiet after a change before it is loaded again.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

const FILE_CHANGE: &str = "file change";

type OnChange = Box<dyn Fn(PolicySet) + Send + Sync>;

/// Reloads a policy directory on demand, on file changes and on SIGHUP, keeping the last good
/// set.
pub struct PolicyWatcher {
    dir: PathBuf,
    current: watch::Sender<PolicySet>,
    on_change: Option<OnChange>,
    /// One reload at a time, so sets are never published out of order. Holds whether the last
    /// attempt failed (so the fix of a broken directory is reported even when it restores the
    /// set in force).
    reloading: Mutex<bool>,
}

impl PolicyWatcher {
    /// A watcher of `dir` whose set in force is `initial` (loaded by the caller at start).
    pub fn new(dir: impl Into<PathBuf>, initial: PolicySet) -> Self {
        PolicyWatcher {
            dir: dir.into(),
            current: watch::Sender::new(initial),
            on_change: None,
            reloading: Mutex::new(false),
        }
    }

    /// Calls `f` with every newly loaded set, before it is published on the channel and before
    /// [`reload_now`](Self::reload_now) returns.
    pub fn on_change(mut self, f: impl Fn(PolicySet) + Send + Sync + 'static) -> Self {
        self.on_change = Some(Box::new(f));
        self
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last good set.
    pub fn current(&self) -> PolicySet {
        self.current.borrow().clone()
    }

    /// A receiver that sees every newly loaded set.
    pub fn subscribe(&self) -> watch::Receiver<PolicySet> {
        self.current.subscribe()
    }

    /// Loads the directory now. `Ok` with the set in force afterwards (the new one, or the
    /// same when nothing changed); `Err` with every problem, the last good set staying in force.
    pub async fn reload_now(&self) -> Result<PolicySet, PolicyErrors> {
        self.reload("request").await
    }

    async fn reload(&self, trigger: &str) -> Result<PolicySet, PolicyErrors> {
        let mut last_failed = self.reloading.lock().await;
        let dir = self.dir.clone();
        let loaded = tokio::task::spawn_blocking(move || load_dir_identified(&dir))
            .await
            .unwrap_or_else(|e| {
                Err(PolicyErrors(vec![PolicyError::new(
                    &self.dir,
                    0,
                    None,
                    "",
                    format!("policy load did not complete: {e}"),
                )]))
            });
        match loaded {
            Ok(set) => {
                let recovered = std::mem::replace(&mut *last_failed, false);
                if set.fingerprint == self.current.borrow().fingerprint {
                    if trigger == FILE_CHANGE && !recovered {
                        debug!(policy_set = %set.fingerprint, trigger, "policy set unchanged");
                    } else {
                        info!(
                            policy_set = %set.fingerprint,
                            trigger,
                            "policy set {} unchanged ({} policies)",
                            set.fingerprint,
                            set.policies.len()
                        );
                    }
                    return Ok(set);
                }
                if let Some(f) = &self.on_change {
                    f(set.clone());
                }
                info!(
                    policy_set = %set.fingerprint,
                    policies = set.policies.len(),
                    trigger,
                    "policy set {} loaded ({} policies)",
                    set.fingerprint,
                    set.policies.len()
                );
                self.current.send_replace(set.clone());
                Ok(set)
            }
            Err(errors) => {
                *last_failed = true;
                let kept = self.current.borrow().fingerprint.clone();
                warn!(
                    policy_set = %kept,
                    trigger,
                    "policy reload failed: {} problem{} in {}; keeping policy set {kept}",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" },
                    self.dir.display()
                );
                for e in &errors {
                    error!("{e}");
                }
                Err(errors)
            }
        }
    }

    /// Reloads on file changes in the directory and on SIGHUP until `shutdown` is cancelled.
    ///
    /// A file watch that cannot be set up (no inotify instances left, say) is logged and
    /// SIGHUP still works; so is the reverse.
    pub fn start(self: Arc<Self>, shutdown: CancellationToken) -> JoinHandle<()> {
        let changed = Arc::new(Notify::new());
        let file_watch = match watch_dir(&self.dir, Arc::clone(&changed)) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(dir = %self.dir.display(), error = %e, "cannot watch the policy directory; reload with SIGHUP");
                None
            }
        };
        // Listen before returning, so a SIGHUP sent right after start reloads (and does not
        // end the process, SIGHUP's default).
        let mut hangup = hangup_signal();
        tokio::spawn(async move {
            // Dropping the watcher stops the file watch, so it lives as long as this task.
            let _file_watch = file_watch;
            loop {
                let trigger = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = changed.notified() => {
                        // Wait until the directory has been quiet for DEBOUNCE.
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = changed.notified() => {}
                                _ = tokio::time::sleep(DEBOUNCE) => break,
                            }
                        }
                        FILE_CHANGE
                    }
                    _ = next_hangup(&mut hangup) => "SIGHUP",
                };
                let _ = self.reload(trigger).await;
            }
            debug!("policy watcher stopped");
        })
    }
}

/// Watches `dir` (not recursively) and wakes `changed` on every change to its policy files.
fn watch_dir(dir: &Path, changed: Arc<Notify>) -> notify::Result<RecommendedWatcher> {
    let mut watcher =
        notify::recommended_watcher(move |result: notify::Result<Event>| match result {
            Ok(event) => {
                if is_change(&event.kind) && event.paths.iter().any(|p| is_relevant(p)) {
                    changed.notify_one();
                }
            }
            Err(e) => warn!(error = %e, "policy directory watch error"),
        })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Whether an event changes a file, rather than only opening, reading or closing it.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        EventKind::Any | EventKind::Other => true,
    }
}

/// A change that may alter the loaded set: a `*.yaml`/`*.yml` file, or a `..`-prefixed entry
/// (the atomic symlink swap of mounted configuration volumes, `..data`).
fn is_relevant(path: &Path) -> bool {
    let by_extension = path
        .extension()
        .is_some_and(|ext| ext == "yaml" || ext == "yml");
    let swapped = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".."));
    by_extension || swapped
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    use tokio::signal::unix::{SignalKind, signal};
    signal(SignalKind::hangup())
        .inspect_err(|e| warn!(error = %e, "cannot listen for SIGHUP"))
        .ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {}

#[cfg(unix)]
async fn next_hangup(hangup: &mut Hangup) {
    let received = match hangup {
        Some(s) => s.recv().await.is_some(),
        None => false,
    };
    if !received {
        // No SIGHUP stream (or it ended): never trigger again.
        *hangup = None;
        std::future::pending::<()>().await
    }
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Hangup) {
    std::future::pending().await
}
