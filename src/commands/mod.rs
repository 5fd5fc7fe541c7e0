//! One file per subcommand.

mod completions;
mod dispatch;
mod policy;
mod run;
mod runs;
mod show;

pub use dispatch::dispatch;
