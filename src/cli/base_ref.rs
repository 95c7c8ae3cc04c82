//! `plan --base-ref REF`: the policy directory as it is at a git commit, read with `git
//! ls-tree` and `git show` from the repository that holds the directory, without a checkout.
//! The files are written to a scratch directory only to be loaded as any policy directory is;
//! problems name them as `REF:PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::policy::{PolicySet, load_dir};

/// The policy set of `dir` at commit `reference`; one line on failure.
pub fn load(dir: &Path, reference: &str) -> Result<PolicySet, String> {
    let prefix = git(dir, &["rev-parse", "--show-prefix"])
        .map_err(|e| format!("{} is not in a git repository: {e}", dir.display()))?;
    let prefix = prefix.trim_end().to_string();
    // From the top: in a subdirectory, ls-tree would list only what lies under it.
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let dir = Path::new(top.trim_end());
    git(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{reference}^{{commit}}"),
        ],
    )
    .map_err(|_| {
        format!(
            "no commit {reference} in the repository of {}",
            dir.display()
        )
    })?;
    let tree = format!("{reference}:{prefix}");
    let listing = git(dir, &["ls-tree", &tree])
        .map_err(|_| format!("{} was not in git at {reference}", shown(&prefix)))?;
    let scratch = Scratch::new()?;
    for name in policy_files(&listing) {
        let text = git(dir, &["show", &format!("{tree}{name}")])?;
        std::fs::write(scratch.0.join(&name), text)
            .map_err(|e| format!("cannot write a scratch copy of {name}: {e}"))?;
    }
    load_dir(&scratch.0).map_err(|errors| {
        let scratch_path = format!("{}/", scratch.0.display());
        let at = format!("{reference}:{prefix}");
        errors.to_string().replace(&scratch_path, &at).replace(
            &scratch.0.display().to_string(),
            &format!("{reference}:{}", shown(&prefix)),
        )
    })
}

/// The YAML files (blobs) of one `git ls-tree` listing.
fn policy_files(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|line| {
            let (meta, name) = line.split_once('\t')?;
            let is_blob = meta.split_whitespace().nth(1) == Some("blob");
            let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            (is_blob && yaml).then(|| name.to_string())
        })
        .collect()
}

fn shown(prefix: &str) -> &str {
    if prefix.is_empty() {
        "."
    } else {
        prefix.trim_end_matches('/')
    }
}

/// Runs git in `dir`; its standard output, or its first line of standard error.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        return String::from_utf8(out.stdout).map_err(|_| "git printed non-UTF-8".to_string());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(err.lines().next().unwrap_or("git failed").to_string())
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "ecs-reconciler-base-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot make a scratch directory: {e}"))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
