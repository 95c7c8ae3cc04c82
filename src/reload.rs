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
//! Every reload that ends is told to the [`Telemetry`] given with
//! [`PolicyWatcher::with_telemetry`] (the metrics count reloads by result and show the set in
//! force).
//!
//! [`PolicyWatcher::start`] runs the triggers in the background until shutdown: a file watch on
//! the directory (the `notify` crate) and SIGHUP. File changes are debounced: the directory is
//! loaded once it has been quiet for [`DEBOUNCE`], so an editor's save is one reload. Only
//! changes count: inotify also reports files being opened and read, which the reload itself
//! does, and counting those would reload forever. Tests call `reload_now` directly instead of
//! sending signals or waiting on the file system.
//!
//! # When the directory goes away
//!
//! A watch belongs to the directory, not to its name: after `rmdir policies; mkdir policies`
//! (or a new directory renamed into place, or a symlink switched to another one) the old watch
//! sees nothing. So the parent directory is watched too, for events about the policy
//! directory's name, and every such event compares the directory on disk (device and inode)
//! with the one watched. When the directory is gone or replaced, the watch is lost: that is
//! logged as a warning, and the last good set stays in force (a reload of a missing directory
//! is an error that keeps it). As soon as a directory is there again it is watched, that is
//! logged (info), and it is loaded after the usual debounce, since files may have been written
//! into it before the watch was in place. The parent's watch makes that immediate; in case it
//! cannot help (the parent was removed too, or cannot be watched), the directory is also looked
//! for again with backoff, from [`RETRY_MIN`] up to [`RETRY_MAX`]. SIGHUP works throughout.

use std::fs;
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
use crate::prose::plural;
use crate::telemetry::Telemetry;

/// How long the directory must be quiet after a change before it is loaded again.
pub const DEBOUNCE: Duration = Duration::from_millis(500);
/// The first delay before a lost policy directory is looked for again; it doubles up to
/// [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest delay between two looks for a lost policy directory.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

const FILE_CHANGE: &str = "file change";
const DIRECTORY_BACK: &str = "policy directory watched again";

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
    telemetry: Option<Arc<dyn Telemetry>>,
}

impl PolicyWatcher {
    /// A watcher of `dir` whose set in force is `initial` (loaded by the caller at start).
    pub fn new(dir: impl Into<PathBuf>, initial: PolicySet) -> Self {
        PolicyWatcher {
            dir: dir.into(),
            current: watch::Sender::new(initial),
            on_change: None,
            reloading: Mutex::new(false),
            telemetry: None,
        }
    }

    /// Calls `f` with every newly loaded set, before it is published on the channel and before
    /// [`reload_now`](Self::reload_now) returns.
    pub fn on_change(mut self, f: impl Fn(PolicySet) + Send + Sync + 'static) -> Self {
        self.on_change = Some(Box::new(f));
        self
    }

    /// Tells `telemetry` how each reload ended.
    pub fn with_telemetry(mut self, telemetry: Arc<dyn Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
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
        let result = self.load_and_apply(trigger).await;
        if let Some(telemetry) = &self.telemetry {
            match &result {
                Ok(set) => telemetry.policies_reloaded(Ok(&set.fingerprint)),
                Err(errors) => {
                    let first = errors.0.first().map(ToString::to_string);
                    telemetry.policies_reloaded(Err(first.as_deref().unwrap_or("invalid")));
                }
            }
        }
        result
    }

    async fn load_and_apply(&self, trigger: &str) -> Result<PolicySet, PolicyErrors> {
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
                            "policy set {} unchanged ({})",
                            set.fingerprint,
                            plural(set.policies.len(), "policy", "policies")
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
                    "policy set {} loaded ({})",
                    set.fingerprint,
                    plural(set.policies.len(), "policy", "policies")
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
    /// SIGHUP still works; so is the reverse. A directory removed and created again is watched
    /// again (see the [module](self) documentation).
    pub fn start(self: Arc<Self>, shutdown: CancellationToken) -> JoinHandle<()> {
        let events = Arc::new(WatchEvents::default());
        // Set up before returning, so a change made right after start is seen.
        let mut dir_watch = match DirWatch::new(&self.dir, Arc::clone(&events)) {
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
            loop {
                let retry = dir_watch.as_ref().and_then(DirWatch::retry_delay);
                let trigger = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = events.files.notified() => FILE_CHANGE,
                    _ = events.directory.notified() => {
                        match dir_watch.as_mut().map(DirWatch::refresh) {
                            Some(Refresh::Established) => DIRECTORY_BACK,
                            _ => continue,
                        }
                    }
                    _ = tokio::time::sleep(retry.unwrap_or(RETRY_MAX)), if retry.is_some() => {
                        match dir_watch.as_mut().map(DirWatch::refresh) {
                            Some(Refresh::Established) => DIRECTORY_BACK,
                            _ => continue,
                        }
                    }
                    _ = next_hangup(&mut hangup) => "SIGHUP",
                };
                if trigger != "SIGHUP" && !quiet(&events.files, &shutdown).await {
                    break;
                }
                let _ = self.reload(trigger).await;
            }
            debug!("policy watcher stopped");
        })
    }
}

/// Waits until no policy file has changed for [`DEBOUNCE`]; `false` when `shutdown` came first.
async fn quiet(files: &Notify, shutdown: &CancellationToken) -> bool {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = files.notified() => {}
            _ = tokio::time::sleep(DEBOUNCE) => return true,
        }
    }
}

/// What the file watch tells the watcher task.
#[derive(Default)]
struct WatchEvents {
    /// A policy file of the directory changed.
    files: Notify,
    /// Something happened to the directory itself (removed, renamed, created), seen by its own
    /// watch or its parent's.
    directory: Notify,
}

/// The directory's identity on disk: a directory removed and created again, or another one
/// renamed into its place, is another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirId {
    device: u64,
    inode: u64,
}

/// The identity of the directory at `path` (following symlinks); `None` when there is none.
fn dir_id(path: &Path) -> Option<DirId> {
    let metadata = fs::metadata(path).ok().filter(|m| m.is_dir())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some(DirId {
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }
    #[cfg(not(unix))]
    {
        let _ = metadata;
        Some(DirId {
            device: 0,
            inode: 0,
        })
    }
}

/// What [`DirWatch::refresh`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    /// The directory watched is still the one on disk.
    Unchanged,
    /// The directory is watched again, from now on.
    Established,
    /// The directory is gone (or cannot be watched); looked for again after the retry delay.
    Missing,
}

/// The file watch of the policy directory and its parent, re-established when the directory is
/// replaced or comes back.
struct DirWatch {
    /// Absolute, because event paths are the watched path joined with entry names.
    dir: PathBuf,
    watcher: RecommendedWatcher,
    /// The directory watched; `None` while it is not.
    watched: Option<DirId>,
    /// The delay before the next look for the directory while it is not watched.
    retry: Duration,
}

impl DirWatch {
    /// Creates the watcher and watches the directory (and its parent). A directory that cannot be
    /// watched now is logged once and looked for again with backoff; `Err` only when there is no
    /// watcher at all.
    fn new(dir: &Path, events: Arc<WatchEvents>) -> notify::Result<DirWatch> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let watcher = watcher(dir.clone(), events)?;
        let mut watch = DirWatch {
            dir,
            watcher,
            watched: None,
            retry: RETRY_MIN,
        };
        if let Err(e) = watch.establish() {
            warn!(dir = %watch.dir.display(), error = %e, "cannot watch the policy directory; looking for it again with backoff, reload with SIGHUP");
        }
        Ok(watch)
    }

    /// How long to wait before looking for the directory again; `None` while it is watched.
    fn retry_delay(&self) -> Option<Duration> {
        self.watched.is_none().then_some(self.retry)
    }

    /// Brings the watch in line with the directory on disk: notices a lost watch (logged as a
    /// warning) and re-establishes it when a directory is there (logged as info).
    fn refresh(&mut self) -> Refresh {
        let on_disk = dir_id(&self.dir);
        if let Some(watched) = self.watched {
            if on_disk == Some(watched) {
                return Refresh::Unchanged;
            }
            warn!(
                dir = %self.dir.display(),
                "policy directory watch lost: {} was {}; the last good policy set stays in force until it is back",
                self.dir.display(),
                if on_disk.is_some() { "replaced" } else { "removed" }
            );
            let _ = self.watcher.unwatch(&self.dir);
            self.watched = None;
            self.retry = RETRY_MIN;
        } else if on_disk.is_none() {
            self.retry = (self.retry * 2).min(RETRY_MAX);
            return Refresh::Missing;
        }
        match self.establish() {
            Ok(()) => {
                info!(dir = %self.dir.display(), "watching the policy directory {} again", self.dir.display());
                Refresh::Established
            }
            Err(e) => {
                debug!(dir = %self.dir.display(), error = %e, "policy directory not watched yet");
                self.retry = (self.retry * 2).min(RETRY_MAX);
                Refresh::Missing
            }
        }
    }

    /// Watches the parent (best effort) and the directory, remembering which directory is
    /// watched.
    fn establish(&mut self) -> notify::Result<()> {
        if let Some(parent) = self.dir.parent().filter(|_| self.dir.file_name().is_some()) {
            // Watched afresh: the parent may have been replaced too.
            let _ = self.watcher.unwatch(parent);
            if let Err(e) = self.watcher.watch(parent, RecursiveMode::NonRecursive) {
                debug!(dir = %parent.display(), error = %e, "cannot watch the policy directory's parent");
            }
        }
        let _ = self.watcher.unwatch(&self.dir);
        let before = dir_id(&self.dir);
        self.watcher.watch(&self.dir, RecursiveMode::NonRecursive)?;
        // Replaced between the look and the watch: the parent's event for it will tell.
        self.watched = before.filter(|id| dir_id(&self.dir) == Some(*id));
        if self.watched.is_none() {
            return Err(notify::Error::path_not_found().add_path(self.dir.clone()));
        }
        self.retry = RETRY_MIN;
        Ok(())
    }
}

/// A watcher that wakes `events.files` on every change to a policy file of `dir`, and
/// `events.directory` on every change to `dir` itself.
fn watcher(dir: PathBuf, events: Arc<WatchEvents>) -> notify::Result<RecommendedWatcher> {
    notify::recommended_watcher(move |result: notify::Result<Event>| match result {
        Ok(event) => {
            // Queue overflow: anything may have happened.
            let rescan = event.need_rescan();
            if rescan || !is_change(&event.kind) {
                if rescan {
                    events.files.notify_one();
                    events.directory.notify_one();
                }
                return;
            }
            if event.paths.iter().any(|p| p == &dir) {
                events.directory.notify_one();
            }
            if event
                .paths
                .iter()
                .any(|p| p.parent() == Some(dir.as_path()) && is_relevant(p))
            {
                events.files.notify_one();
            }
        }
        Err(e) => warn!(error = %e, "policy directory watch error"),
    })
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
