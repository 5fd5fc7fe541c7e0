//! One file per subcommand.

mod completions;
mod policy;
mod run;
mod runs;
mod show;

pub use run::dispatch;
