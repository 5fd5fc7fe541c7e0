//! Prometheus's text exposition format: counters and histograms over runs.

use super::Facts;

/// Counters and histograms, mergeable, over a set of runs.
#[derive(Clone, Debug, Default)]
pub struct Tally {}

impl Tally {
    pub fn of<'a>(_runs: impl IntoIterator<Item = &'a Facts>) -> Tally {
        Tally {}
    }

    pub fn render(&self) -> String {
        String::new()
    }
}
