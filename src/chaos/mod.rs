//! Chaos: a fault model, and `backstop simulate`, which runs the real engine against
//! it on a virtual clock and reports the figures `backstop stats` would.

mod draw;
pub mod model;
mod raw;
mod sim_attempter;
pub mod simulate;
