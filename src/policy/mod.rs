//! The policy file: parsing, validation, defaults, schema and schedule.

pub mod explain;
pub mod limits;
pub mod load;
mod locate;
pub mod model;
mod raw;
mod resolve;
pub mod schema;
pub mod values;

pub use load::{PolicyChoice, builtin, choose, load_file, load_str};
pub use model::*;
pub use resolve::MAX_ATTEMPTS_CAP;
