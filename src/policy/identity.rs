//! Which policy set a decision was made under, named so an operator can find it: the git commit
//! of the policy directory when there is one, otherwise a content hash.
//!
//! [`load_dir`] stays pure (it reads files, never runs a program) and gives a
//! content hash of 12 hex digits. [`load_dir_identified`] wraps it for the shell and asks `git`
//! about the directory:
//!
//! - `git:<short sha>`: the directory is inside a git checkout and its policy files are exactly
//!   those of `HEAD` (nothing modified, staged, untracked or ignored among `*.yaml`/`*.yml`);
//! - `git:<short sha>+<content hash>`: inside a checkout, with local changes to the policy files;
//! - `sha256:<content hash>`: not in a checkout, no commit yet, no `git` installed, or `git` did
//!   not answer within [`GIT_TIMEOUT`]. This fallback is silent: identity is a label, not a
//!   reason to refuse policies.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::error::PolicyErrors;
use super::load::load_dir;
use super::model::PolicySet;

/// How long one `git` command may take before we fall back to the content hash.
pub const GIT_TIMEOUT: Duration = Duration::from_secs(2);

/// [`load_dir`], with [`PolicySet::fingerprint`] replaced by the set's identity
/// (`git:…` or `sha256:…`, see the [module](self) documentation).
///
/// Blocking: it reads files and runs `git`. Call it from `spawn_blocking` in async code that
/// must not stall.
pub fn load_dir_identified(dir: &Path) -> Result<PolicySet, PolicyErrors> {
    let mut set = load_dir(dir)?;
    set.fingerprint = identify(dir, &set.fingerprint);
    Ok(set)
}

/// The identity of the policy files in `dir` whose content hash is `content_hash`.
pub fn identify(dir: &Path, content_hash: &str) -> String {
    match git_state(dir) {
        Some(GitState {
            commit,
            dirty: false,
        }) => format!("git:{commit}"),
        Some(GitState {
            commit,
            dirty: true,
        }) => format!("git:{commit}+{content_hash}"),
        None => format!("sha256:{content_hash}"),
    }
}

struct GitState {
    commit: String,
    dirty: bool,
}

/// `HEAD`'s short sha and whether the directory's policy files differ from it; `None` when
/// `git` cannot tell.
fn git_state(dir: &Path) -> Option<GitState> {
    let head = git(dir, &["rev-parse", "--short", "HEAD"])?;
    let commit = head.trim();
    if commit.is_empty() || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // Only the files `load_dir` reads (top level `*.yaml`, `*.yml`); an edited README beside
    // them does not make the set dirty. Untracked and ignored policy files do: they are loaded
    // but are not in the commit.
    let status = git(
        dir,
        &[
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--ignored=matching",
            "--",
            ":(glob)*.yaml",
            ":(glob)*.yml",
        ],
    )?;
    Some(GitState {
        commit: commit.to_owned(),
        dirty: !status.trim().is_empty(),
    })
}

/// Runs `git -C dir ARGS` and returns its standard output when it succeeds within
/// [`GIT_TIMEOUT`].
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        // Ask about `dir` itself, whatever repository the caller's environment points at.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // Read standard output on a thread so a chatty git cannot block on a full pipe.
    let mut stdout = child.stdout.take()?;
    let reader = thread::spawn(move || {
        let mut out = String::new();
        stdout.read_to_string(&mut out).map(|_| out)
    });
    let deadline = Instant::now() + GIT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    };
    let out = reader.join().ok()?.ok()?;
    status.success().then_some(out)
}
