//! Chaos: a fault model, and `backstop simulate`, which runs the real engine against
//! it on a virtual clock and reports the figures `backstop stats` would.

mod draw;
pub mod inject;
pub mod model;
mod pick;
mod raw;
mod shape;
mod sim_attempter;
pub mod simulate;
