//! One file per subcommand.

mod breaker;
mod call;
mod call_json;
pub mod chaos;
mod completions;
mod dispatch;
mod finish;
mod fsck;
mod gc;
mod health;
mod history;
mod policy;
mod preflight;
mod run;
mod runs;
mod show;
pub mod simulate;
mod snapshot;
pub mod stats;

pub use dispatch::dispatch;
use preflight::{lock_region, lock_tree, recover, token};
