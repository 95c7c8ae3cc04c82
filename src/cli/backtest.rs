//! `backtest`: the command line of [`crate::backtest`]: loads the policy sets, replays the
//! recording, prints Markdown or JSON. Exit 0; 2 when a base set decides differently; 1 on
//! error (one line naming the flag, file or line).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::Args;

use crate::backtest::{Window, backtest as replay, markdown::markdown};
use crate::cli::{OutputFormat, PolicyArgs, load_base, load_policies, output};
use crate::config::Settings;

#[derive(Debug, Args)]
pub struct BacktestArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The recording to replay: the directory `run --record DIR` wrote.
    #[arg(long, value_name = "DIR")]
    pub recording: PathBuf,
    /// Replay the policies in BASE_DIR too, side by side, and list what this set decides
    /// differently.
    #[arg(long, value_name = "BASE_DIR", conflicts_with = "base_ref")]
    pub base: Option<PathBuf>,
    /// Like --base, with the policy directory as it is at git commit REF of the repository
    /// that holds it.
    #[arg(long, value_name = "REF")]
    pub base_ref: Option<String>,
    /// Replay only observations from TIME (RFC 3339, e.g. 2026-12-01T09:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = time)]
    pub from: Option<SystemTime>,
    /// Replay only observations up to TIME (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = time)]
    pub to: Option<SystemTime>,
    /// Markdown for people (a pull-request comment), or one JSON document.
    #[arg(long, value_enum, default_value = "table")]
    pub output: OutputFormat,
}

fn time(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("{e}: expected RFC 3339, e.g. 2026-12-01T09:00:00Z"))
}

pub fn backtest(args: &BacktestArgs, settings: &Settings) -> ExitCode {
    let head_dir = args
        .policy
        .policies
        .clone()
        .unwrap_or_else(|| settings.policies.clone());
    let Some(head) = load_policies(&head_dir) else {
        return ExitCode::from(1);
    };
    let with_base = args.base.is_some() || args.base_ref.is_some();
    let base = load_base(&head_dir, args.base.as_deref(), args.base_ref.as_deref());
    if with_base && base.is_none() {
        return ExitCode::from(1);
    }
    let window = Window {
        from: args.from,
        to: args.to,
    };
    let result = match replay(
        &args.recording,
        &head,
        base.as_ref(),
        window,
        &settings.managed_tag,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    for torn in &result.torn {
        eprintln!("warning: {torn}");
    }
    let differs = result.changes.as_ref().is_some_and(|c| !c.is_empty());
    let text = match args.output {
        OutputFormat::Table => markdown(&result),
        OutputFormat::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(&result).expect("a backtest serialises")
        ),
    };
    let code = if differs {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    };
    output::emit(&text, code)
}
