//! backstop: run agent tasks under a policy of retry, fallback and rollback.
//!
//! `main` parses the command line into [`settings::Settings`] and calls [`run`]; the
//! commands live in [`commands`], the engine in [`engine`].

/// `eprintln!` that cannot panic. std's panics when stderr is a pipe whose reader is
/// gone (`backstop undo 2>&1 | head -1`, or one message longer than the pipe holds):
/// exit 101 instead of the documented code. A message that cannot be written is lost.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod attempt;
pub mod backoff;
pub mod call;
pub mod classify;
pub mod cli;
pub mod commands;
pub mod crash;
pub mod engine;
pub mod error;
pub mod events;
pub mod exit_code;
pub mod names;
pub mod policy;
pub mod process;
pub mod reaper;
pub mod record;
pub mod reporter;
pub mod rollback;
pub mod scan;
pub mod settings;
pub mod snapshot;
pub mod stdin;
pub mod store;
pub mod terminal;

use std::io::IsTerminal;

use settings::{Color, Settings};

/// Runs one command line's worth of work and returns the exit code.
pub fn run(settings: Settings) -> u8 {
    let color = match settings.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    console::set_colors_enabled_stderr(color);
    console::set_colors_enabled(color && std::io::stdout().is_terminal());
    // `run` and `call` decide for themselves what a reader that went away means for
    // the command they run; every other command only reports.
    let reports = !matches!(
        settings.command,
        settings::Command::Run { .. } | settings::Command::Call { .. }
    );
    match commands::dispatch(settings) {
        Ok(code) => code,
        // Like ripgrep and git: a reader that stopped reading (`backstop runs | head`)
        // ends the output, quietly.
        Err(err) if reports && error::is_broken_pipe(&err) => exit_code::SUCCESS,
        Err(err) => {
            eprintln!(
                "{} {err:#}",
                console::style("backstop: error:").red().bold().for_stderr()
            );
            error::exit_code_of(&err)
        }
    }
}
