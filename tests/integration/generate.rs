//! `completions SHELL` and `man`: generated from the clap definitions, so every command and
//! flag is in them; printed through the one stdout path (a closed pipe ends quietly); `man
//! --dir` writes one page per command; bad input is one clear line.

use std::process::{Command, Output, Stdio};

use crate::cli_output::text;

const COMMANDS: [&str; 10] = [
    "run",
    "plan",
    "validate",
    "explain",
    "schema",
    "demo",
    "completions",
    "man",
    "health",
    "backtest",
];

fn run(args: &[&str]) -> Output {
    crate::cli::bin()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

/// The standard output of a command that must succeed with nothing on standard error.
fn stdout_of(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr), "", "{args:?} wrote to stderr");
    text(&out.stdout)
}

fn has_bash() -> bool {
    Command::new("bash")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn bash_completion_names_every_command_and_the_flags() {
    let script = stdout_of(&["completions", "bash"]);
    for word in COMMANDS.iter().chain(&["--dry-run", "--policies", "--sim"]) {
        assert!(script.contains(word), "the bash script lacks {word}");
    }
    if !has_bash() {
        eprintln!("bash is not installed: the syntax check is skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ecs-reconciler.bash");
    std::fs::write(&file, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", text(&check.stderr));
}

#[test]
fn zsh_and_fish_completions_name_every_command() {
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        for command in COMMANDS {
            assert!(
                script.contains(command),
                "the {shell} script lacks {command}"
            );
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error_naming_the_shells() {
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("'tcsh'"), "{err}");
    for shell in ["bash", "elvish", "fish", "powershell", "zsh"] {
        assert!(err.contains(shell), "the error lacks {shell}: {err}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn the_man_page_documents_every_command_and_its_flags() {
    let page = stdout_of(&["man"]);
    assert!(
        page.lines().any(|l| l.starts_with(".TH ecs-reconciler 1")),
        "{page}"
    );
    assert!(
        page.lines().position(|l| l.starts_with(".TH"))
            < page.lines().position(|l| l.starts_with(".SH"))
    );
    for command in COMMANDS {
        assert!(
            page.contains(&format!("ecs\\-reconciler\\-{command}(1)")),
            "the page does not list {command}"
        );
        let section = format!(".SH \"COMMAND: {}\"", command.to_uppercase());
        assert!(page.contains(&section), "the page lacks {section}");
    }
    for flag in [
        r"\fB\-\-dry\-run\fR",
        r"\fB\-\-policies\fR \fIDIR\fR",
        r"\fITASK\fR",
    ] {
        assert!(page.contains(flag), "the page lacks {flag}");
    }
    assert!(!page.contains("sim\\-fault"), "a hidden flag is documented");
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("new").join("man1");
    let listed = stdout_of(&["man", "--dir", target.to_str().unwrap()]);
    let mut expected: Vec<String> = COMMANDS
        .iter()
        .map(|c| format!("ecs-reconciler-{c}.1"))
        .collect();
    expected.push("ecs-reconciler.1".into());
    expected.sort();
    let mut files: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, expected);
    assert_eq!(listed.lines().count(), expected.len(), "{listed}");
    let run_page = std::fs::read_to_string(target.join("ecs-reconciler-run.1")).unwrap();
    assert!(run_page.contains(".TH ecs-reconciler-run 1"), "{run_page}");
    assert!(run_page.contains(r"\fB\-\-dry\-run\fR"), "{run_page}");
    let top = std::fs::read_to_string(target.join("ecs-reconciler.1")).unwrap();
    assert_eq!(
        top,
        stdout_of(&["man"]),
        "the top page differs from `man`'s"
    );
}

#[test]
fn man_dir_that_cannot_be_written_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let target = file.join("man1");
    let out = run(&["man", "--dir", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains(target.to_str().unwrap()),
        "{err}"
    );
}

/// `completions bash | head -1`: the reader goes away and the command ends quietly with 0;
/// the pipe's read end is closed before the child starts, so the first write gets EPIPE.
#[test]
fn completions_into_a_closed_pipe_end_quietly() {
    for args in [&["completions", "bash"][..], &["man"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = crate::cli::bin()
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "{args:?}");
    }
}

#[test]
fn completions_on_a_full_disk_is_one_line() {
    let full = std::fs::File::options()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = crate::cli::bin()
        .args(["completions", "zsh"])
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot write to standard output"), "{err}");
}
