//! One file per subcommand.

mod call;
mod completions;
mod dispatch;
mod fsck;
mod health;
mod history;
mod policy;
mod run;
mod runs;
mod show;
mod snapshot;
mod tree;

pub use dispatch::dispatch;
use tree::{lock_region, lock_tree, recover, token};
