//! Chaos: a fault model; `backstop simulate`, which runs the real engine against it
//! on a virtual clock and reports the figures `backstop stats` would; and `backstop
//! chaos serve`, a local model API that answers any client with the model's faults.

mod api;
mod canned;
mod dealer;
mod draw;
mod exchange;
mod log_line;
pub mod model;
mod play;
mod raw;
pub mod serve;
mod sim_attempter;
pub mod simulate;
mod upstream;
