//! Chaos: a fault model; `backstop simulate`, which runs the real engine against it
//! on a virtual clock and reports the figures `backstop stats` would; `run --chaos`
//! and `call --chaos`, which inject it into real attempts; and `backstop chaos
//! serve`, a local model API that answers any client with the model's faults.

mod api;
mod canned;
mod dealer;
mod draw;
mod exchange;
pub mod inject;
mod log_line;
pub mod model;
mod pick;
mod play;
mod raw;
pub mod serve;
mod shape;
mod sim_attempter;
pub mod simulate;
mod upstream;
