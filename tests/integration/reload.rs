//! Policy set identity (git commit or content hash) and hot policy reload: a valid change is
//! put in force, an invalid one is reported and the last good set kept, a revert applies again.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use ecs_reconciler::audit::AuditSink;
use ecs_reconciler::cloud::sim::SimAccount;
use ecs_reconciler::controller::{Controller, ControllerSettings};
use ecs_reconciler::policy::{load_dir, load_dir_identified};
use ecs_reconciler::reload::PolicyWatcher;
use tokio_util::sync::CancellationToken;

fn doc(name: &str, provisioning: &str) -> String {
    format!(
        "apiVersion: ecs-reconciler/v1\nkind: RemediationPolicy\nmetadata:\n  name: {name}\n\
         spec:\n  target:\n    clusters: [prod-web]\n  stuck:\n    PROVISIONING: {provisioning}\n  \
         remediate:\n    replaceTask: {{}}\n"
    )
}

/// Runs git in `dir` with a local identity and no signing; panics when it fails.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn is_hash(s: &str) -> bool {
    s.len() == 12 && s.chars().all(|c| c.is_ascii_hexdigit())
}

// ---- identity -------------------------------------------------------------------------------

#[test]
fn a_directory_outside_git_is_named_by_its_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("web.yaml"), doc("web", "10m")).unwrap();
    let hash = load_dir(dir.path()).unwrap().fingerprint;
    let id = load_dir_identified(dir.path()).unwrap().fingerprint;
    assert_eq!(id, format!("sha256:{hash}"));
    assert!(is_hash(&hash), "{hash}");
}

#[test]
fn a_committed_directory_is_named_by_its_commit_and_local_changes_add_the_hash() {
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path().join("policies");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("web.yaml"), doc("web", "10m")).unwrap();
    fs::write(repo.path().join("README.md"), "repo\n").unwrap();
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "-q", "-m", "policies"]);
    let sha = git(repo.path(), &["rev-parse", "--short", "HEAD"]);

    assert_eq!(
        load_dir_identified(&dir).unwrap().fingerprint,
        format!("git:{sha}")
    );

    // A change outside the policy directory leaves the set clean.
    fs::write(repo.path().join("README.md"), "changed\n").unwrap();
    assert_eq!(
        load_dir_identified(&dir).unwrap().fingerprint,
        format!("git:{sha}")
    );

    // An edited policy file: the commit plus the content hash of what is loaded.
    fs::write(dir.join("web.yaml"), doc("web", "12m")).unwrap();
    let hash = load_dir(&dir).unwrap().fingerprint;
    assert_eq!(
        load_dir_identified(&dir).unwrap().fingerprint,
        format!("git:{sha}+{hash}")
    );

    // An untracked policy file is loaded, so it makes the set dirty too.
    fs::write(dir.join("web.yaml"), doc("web", "10m")).unwrap();
    assert_eq!(
        load_dir_identified(&dir).unwrap().fingerprint,
        format!("git:{sha}")
    );
    fs::write(dir.join("extra.yml"), doc("extra", "10m")).unwrap();
    let id = load_dir_identified(&dir).unwrap().fingerprint;
    let (commit, hash) = id
        .strip_prefix("git:")
        .and_then(|rest| rest.split_once('+'))
        .unwrap_or_else(|| panic!("dirty form expected, got {id}"));
    assert_eq!(commit, sha);
    assert!(is_hash(hash), "{id}");
}

#[test]
fn a_repository_without_commits_falls_back_to_the_content_hash() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("web.yaml"), doc("web", "10m")).unwrap();
    git(dir.path(), &["init", "-q"]);
    let id = load_dir_identified(dir.path()).unwrap().fingerprint;
    assert!(id.starts_with("sha256:"), "{id}");
}

// ---- reload ---------------------------------------------------------------------------------

/// Log lines written while the returned guard lives (on this thread).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn reload_applies_valid_changes_and_keeps_the_last_good_set_on_errors() {
    let (logs, _guard) = capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    fs::write(&file, doc("web", "10m")).unwrap();
    let initial = load_dir_identified(dir.path()).unwrap();
    let first = initial.fingerprint.clone();
    let controller = Arc::new(Controller::new(
        SimAccount::new(SystemTime::now()),
        initial.clone(),
        ControllerSettings::default(),
        AuditSink::memory(),
    ));
    let target = Arc::clone(&controller);
    let watcher =
        PolicyWatcher::new(dir.path(), initial).on_change(move |set| target.set_policies(set));
    let mut rx = watcher.subscribe();

    // Nothing changed: same set, nothing published.
    assert_eq!(watcher.reload_now().await.unwrap().fingerprint, first);
    assert!(!rx.has_changed().unwrap());

    // A valid change is put in force and published.
    fs::write(&file, doc("web", "20m")).unwrap();
    let second = watcher.reload_now().await.unwrap().fingerprint;
    assert_ne!(second, first);
    assert_eq!(controller.policies().fingerprint, second);
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().fingerprint, second);
    assert_eq!(
        controller.policies().policies[0].stuck.provisioning,
        Some(Duration::from_secs(20 * 60))
    );
    assert!(
        logs.text()
            .contains(&format!("policy set {second} loaded (1 policy)")),
        "{}",
        logs.text()
    );

    // An invalid change: every error reported as `validate` prints it, nothing applied.
    fs::write(
        &file,
        doc("web", "10").replace("clusters: [prod-web]", "clusters: []"),
    )
    .unwrap();
    let errors = watcher.reload_now().await.unwrap_err();
    assert_eq!(errors.len(), 2, "{errors}");
    let text = logs.text();
    for e in &errors {
        assert!(text.contains(&e.to_string()), "{e} not in:\n{text}");
    }
    assert!(
        text.contains(&format!("keeping policy set {second}")),
        "{text}"
    );
    assert_eq!(controller.policies().fingerprint, second);
    assert_eq!(watcher.current().fingerprint, second);
    assert!(!rx.has_changed().unwrap());

    // Back to a valid file: applied again.
    fs::write(&file, doc("web", "10m")).unwrap();
    let back = watcher.reload_now().await.unwrap().fingerprint;
    assert_eq!(back, first);
    assert_eq!(controller.policies().fingerprint, first);
    assert_eq!(rx.borrow_and_update().fingerprint, first);
}

#[tokio::test]
async fn a_removed_directory_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("web.yaml"), doc("web", "10m")).unwrap();
    let initial = load_dir_identified(dir.path()).unwrap();
    let first = initial.fingerprint.clone();
    let watcher = PolicyWatcher::new(dir.path().join("gone"), initial);
    assert!(watcher.reload_now().await.is_err());
    assert_eq!(watcher.current().fingerprint, first);
}

/// The real file watch: a saved change arrives on the channel. The timeout only fails the test
/// when nothing ever arrives; it says nothing about how fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_watch_reloads_a_changed_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    fs::write(&file, doc("web", "10m")).unwrap();
    let initial = load_dir_identified(dir.path()).unwrap();
    let first = initial.fingerprint.clone();
    let watcher = Arc::new(PolicyWatcher::new(dir.path(), initial));
    let mut rx = watcher.subscribe();
    let shutdown = CancellationToken::new();
    let handle = Arc::clone(&watcher).start(shutdown.clone());

    fs::write(&file, doc("web", "30m")).unwrap();
    let expected = load_dir_identified(dir.path()).unwrap().fingerprint;
    assert_ne!(expected, first);
    tokio::time::timeout(Duration::from_secs(60), async {
        while rx.borrow_and_update().fingerprint != expected {
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("the changed directory is reloaded");

    shutdown.cancel();
    handle.await.unwrap();
}

/// Waits (with a deadline that only fails the test when the condition never holds) until `done`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never happened: {what}"));
}

/// Waits until the watcher publishes the set `expected`.
async fn until_published(
    rx: &mut tokio::sync::watch::Receiver<ecs_reconciler::policy::PolicySet>,
    expected: &str,
) {
    tokio::time::timeout(Duration::from_secs(60), async {
        while rx.borrow_and_update().fingerprint != expected {
            rx.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("policy set {expected} never loaded"));
}

/// `rmdir policies; mkdir policies`: the loss is logged, the last good set stays, the new
/// directory is watched again (logged) and a file written into it is loaded. Current-thread
/// runtime, so the watcher task logs into this test's subscriber.
#[tokio::test]
async fn the_file_watch_survives_its_directory_being_removed_and_created_again() {
    let (logs, _guard) = capture_logs();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("policies");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("web.yaml"), doc("web", "10m")).unwrap();
    let initial = load_dir_identified(&dir).unwrap();
    let first = initial.fingerprint.clone();
    let watcher = Arc::new(PolicyWatcher::new(&dir, initial));
    let mut rx = watcher.subscribe();
    let shutdown = CancellationToken::new();
    let handle = Arc::clone(&watcher).start(shutdown.clone());

    fs::remove_dir_all(&dir).unwrap();
    until("the lost watch is logged", || {
        logs.text().contains("policy directory watch lost")
    })
    .await;
    assert!(logs.text().contains("WARN"), "{}", logs.text());
    // While it is gone, a reload is an error and the last good set stays in force.
    assert!(watcher.reload_now().await.is_err());
    assert_eq!(watcher.current().fingerprint, first);

    fs::create_dir(&dir).unwrap();
    until("the new watch is logged", || {
        logs.text().contains("watching the policy directory")
    })
    .await;
    fs::write(dir.join("web.yaml"), doc("web", "30m")).unwrap();
    let expected = load_dir_identified(&dir).unwrap().fingerprint;
    assert_ne!(expected, first);
    until_published(&mut rx, &expected).await;
    // And later changes too.
    fs::write(dir.join("web.yaml"), doc("web", "40m")).unwrap();
    let later = load_dir_identified(&dir).unwrap().fingerprint;
    until_published(&mut rx, &later).await;

    shutdown.cancel();
    handle.await.unwrap();
}

/// A new directory renamed over the old one (how a deployment swaps configuration): the watch
/// follows the directory now at the path, not the one moved away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_watch_follows_a_directory_renamed_into_place() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("policies");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("web.yaml"), doc("web", "10m")).unwrap();
    let initial = load_dir_identified(&dir).unwrap();
    let watcher = Arc::new(PolicyWatcher::new(&dir, initial));
    let mut rx = watcher.subscribe();
    let shutdown = CancellationToken::new();
    let handle = Arc::clone(&watcher).start(shutdown.clone());

    let staged = parent.path().join("policies.new");
    fs::create_dir(&staged).unwrap();
    fs::write(staged.join("web.yaml"), doc("web", "20m")).unwrap();
    let old = parent.path().join("policies.old");
    fs::rename(&dir, &old).unwrap();
    fs::rename(&staged, &dir).unwrap();
    let swapped = load_dir_identified(&dir).unwrap().fingerprint;
    until_published(&mut rx, &swapped).await;

    // A change in the old directory is not a change of the policies; one in the new one is.
    fs::write(old.join("web.yaml"), doc("web", "50m")).unwrap();
    fs::write(dir.join("web.yaml"), doc("web", "30m")).unwrap();
    let expected = load_dir_identified(&dir).unwrap().fingerprint;
    until_published(&mut rx, &expected).await;
    assert_eq!(
        watcher.current().policies[0].stuck.provisioning,
        Some(Duration::from_secs(30 * 60))
    );

    shutdown.cancel();
    handle.await.unwrap();
}
