//! Shell completions and man pages, generated from the clap definitions of [`super::Cli`], so
//! they cannot drift from the flags the binary takes. `completions SHELL` and `man` print
//! through [`super::output`] (a closed pipe ends quietly, an unwritable stdout with one line);
//! `man --dir DIR` writes one page per command into DIR.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;

use super::{Cli, output};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (ecs-reconciler.1, ecs-reconciler-run.1, ...) into DIR,
    /// created if missing, instead of printing the top page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `completions SHELL`: the completion script for the whole command line.
pub fn completions(args: &CompletionsArgs) -> ExitCode {
    let mut script = Vec::new();
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    // Writing to a Vec cannot fail; standard output is written by `emit` alone.
    clap_complete::generate(args.shell, &mut cmd, name, &mut script);
    output::emit(&String::from_utf8_lossy(&script), ExitCode::SUCCESS)
}

/// `man [--dir DIR]`: the top page on standard output, or every page into DIR.
pub fn man(args: &ManArgs) -> ExitCode {
    let Some(dir) = &args.dir else {
        return output::emit(&top_page(), ExitCode::SUCCESS);
    };
    match write_pages(dir) {
        Ok(written) => {
            let list: String = written
                .iter()
                .map(|p| format!("{}\n", p.display()))
                .collect();
            output::emit(&list, ExitCode::SUCCESS)
        }
        Err(e) => {
            // Not eprintln!: it panics when standard error is gone too.
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The command line as clap builds it: subcommands carry their full names
/// (`ecs-reconciler-run`) and the global flags, and there is no `help` page.
fn built_command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The top page: clap_mangen's page of the top command, followed by a section per command
/// with its arguments, so the one printed page documents every flag.
pub fn top_page() -> String {
    let mut page = Vec::new();
    // Rendering into a Vec cannot fail.
    let _ = Man::new(built_command()).render(&mut page);
    let mut page = String::from_utf8_lossy(&page).into_owned();
    for sub in visible(&Cli::command()) {
        page.push_str(&command_section(sub));
    }
    page
}

fn visible(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands().filter(|s| !s.is_hide_set())
}

/// One command's section of the top page: its summary and its visible arguments.
fn command_section(sub: &clap::Command) -> String {
    let mut roff = format!(".SH \"COMMAND: {}\"\n", sub.get_name().to_uppercase());
    if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
        roff.push_str(&text_lines(&about.to_string()));
    }
    for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
        let _ = writeln!(roff, ".TP\n{}", arg_heading(arg));
        if let Some(help) = arg.get_long_help().or_else(|| arg.get_help()) {
            roff.push_str(&text_lines(&help.to_string()));
        }
    }
    roff
}

/// `\fB\-\-audit\-log\fR \fIFILE\fR`, or `\fITASK\fR` for a positional argument.
fn arg_heading(arg: &clap::Arg) -> String {
    let values: Vec<String> = arg
        .get_value_names()
        .unwrap_or_default()
        .iter()
        .map(|v| format!("\\fI{}\\fR", escape(v)))
        .collect();
    let mut names: Vec<String> = Vec::new();
    if let Some(s) = arg.get_short() {
        names.push(format!("\\fB\\-{}\\fR", escape(&s.to_string())));
    }
    if let Some(l) = arg.get_long() {
        names.push(format!("\\fB\\-\\-{}\\fR", escape(l)));
    }
    if names.is_empty() {
        let id = arg.get_id().as_str().to_uppercase();
        return values.first().cloned().unwrap_or(format!("\\fI{id}\\fR"));
    }
    let takes_value = arg.get_action().takes_values();
    match (takes_value, values.is_empty()) {
        (true, false) => format!("{} {}", names.join(", "), values.join(" ")),
        _ => names.join(", "),
    }
}

/// Text as roff text lines: backslashes and dashes escaped, and no line taken for a request.
fn text_lines(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = escape(line);
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// Writes every page into `dir` (created if missing); the error is one line naming the path.
fn write_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cmd = built_command();
    let mut pages = vec![(dir.join("ecs-reconciler.1"), top_page())];
    collect_pages(&cmd, dir, &mut pages);
    let mut written = Vec::new();
    for (path, page) in pages {
        std::fs::write(&path, page).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// The page of every visible command below `cmd`, named by its full name (`ecs-reconciler-run.1`).
fn collect_pages(cmd: &clap::Command, dir: &Path, pages: &mut Vec<(PathBuf, String)>) {
    for sub in visible(cmd) {
        let man = Man::new(sub.clone());
        let mut page = Vec::new();
        let _ = man.render(&mut page);
        pages.push((
            dir.join(man.get_filename()),
            String::from_utf8_lossy(&page).into_owned(),
        ));
        collect_pages(sub, dir, pages);
    }
}
