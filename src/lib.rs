//! backstop: run agent tasks under a policy of retry, fallback and rollback.
//!
//! `main` parses the command line into [`settings::Settings`] and calls [`run`]; the
//! commands live in [`commands`], the engine in [`engine`].

// The guarantees rest on Linux's calls (renameat2, syncfs, /proc, the child
// subreaper): said at build time rather than by a port that keeps them only in part.
#[cfg(not(target_os = "linux"))]
compile_error!("backstop runs on Linux only: see the README");

// `eprintln!` and `eprint!` panic when stderr cannot be written, and it can fail at
// any moment: the terminal was closed (EIO after SIGHUP), or stderr is a pipe whose
// reader left. A message backstop can no longer show must never turn a run into a
// panic (exit 101) that skips its rollback or its record, so within this crate both
// are shadowed by these, which drop a failed write. Defined before the modules, so
// every module sees them (textual scope).
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod attempt;
pub mod backoff;
pub mod call;
pub mod chaos;
pub mod classify;
pub mod cli;
pub mod commands;
pub mod crash;
pub mod engine;
pub mod error;
pub mod events;
pub mod exit_code;
pub mod export;
pub mod names;
pub mod policy;
pub mod process;
pub mod reaper;
pub mod reason;
pub mod record;
pub mod reporter;
pub mod rollback;
pub mod scan;
pub mod settings;
pub mod snapshot;
pub mod state;
pub mod stats;
pub mod stdin;
pub mod store;
pub mod terminal;

/// `build.rs`'s version logic, for its tests.
#[cfg(test)]
#[path = "../build/version.rs"]
mod build_version;

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
