//! The retry budget, without I/O or a clock: first attempts and retries counted in
//! one-second buckets over the window; a retry is allowed while
//! `retries + 1 <= ratio × first attempts + min_per_second × window`.

use serde::{Deserialize, Serialize};

use crate::policy::RetryBudget;

/// The budget as kept between runs: `(second, first attempts, retries)`, oldest first.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct BudgetState {
    #[serde(default)]
    pub buckets: Vec<(u64, u64, u64)>,
}

/// What the budget holds at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BudgetView {
    pub first_attempts: u64,
    pub retries: u64,
    /// Retries the window allows in all.
    pub allowed: f64,
}

impl BudgetView {
    pub fn exhausted(&self) -> bool {
        (self.retries + 1) as f64 > self.allowed
    }
}

impl BudgetState {
    fn prune(&mut self, cfg: &RetryBudget, now_ms: u64) -> u64 {
        let sec = now_ms / 1000;
        let span = cfg.window.0.as_secs().max(1);
        self.buckets.retain(|&(s, _, _)| s + span > sec);
        sec
    }

    fn bucket(&mut self, sec: u64) -> &mut (u64, u64, u64) {
        if self.buckets.last().is_none_or(|b| b.0 != sec) {
            self.buckets.push((sec, 0, 0));
        }
        let last = self.buckets.len() - 1;
        &mut self.buckets[last]
    }

    /// Counts a first attempt.
    pub fn deposit(&mut self, cfg: &RetryBudget, now_ms: u64) {
        let sec = self.prune(cfg, now_ms);
        self.bucket(sec).1 += 1;
    }

    /// Takes a retry from the budget if it allows one.
    pub fn withdraw(&mut self, cfg: &RetryBudget, now_ms: u64) -> bool {
        let sec = self.prune(cfg, now_ms);
        if self.view(cfg).exhausted() {
            return false;
        }
        self.bucket(sec).2 += 1;
        true
    }

    /// The counts within the window as of `now_ms`.
    pub fn view_at(&self, cfg: &RetryBudget, now_ms: u64) -> BudgetView {
        let mut pruned = self.clone();
        pruned.prune(cfg, now_ms);
        pruned.view(cfg)
    }

    /// The counts within the window (as last pruned).
    pub fn view(&self, cfg: &RetryBudget) -> BudgetView {
        let (first_attempts, retries) = self
            .buckets
            .iter()
            .fold((0, 0), |(f, r), b| (f + b.1, r + b.2));
        BudgetView {
            first_attempts,
            retries,
            allowed: allowed(cfg, first_attempts),
        }
    }
}

/// Retries a window allows for so many first attempts.
pub fn allowed(cfg: &RetryBudget, first_attempts: u64) -> f64 {
    cfg.ratio * first_attempts as f64 + cfg.min_per_second * cfg.window.0.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::values::Dur;

    fn cfg(min_per_second: f64) -> RetryBudget {
        RetryBudget {
            ratio: 0.2,
            min_per_second,
            window: Dur(Duration::from_secs(10)),
        }
    }

    #[test]
    fn retries_stay_within_the_ratio_of_first_attempts() {
        let c = cfg(0.0);
        let mut b = BudgetState::default();
        for _ in 0..10 {
            b.deposit(&c, 0);
        }
        assert!(b.withdraw(&c, 1));
        assert!(b.withdraw(&c, 2));
        assert!(!b.withdraw(&c, 3), "0.2 × 10 first attempts is 2 retries");
        assert_eq!(b.view(&c).retries, 2);
    }

    #[test]
    fn the_trickle_allows_retries_without_first_attempts() {
        let c = cfg(0.1);
        let mut b = BudgetState::default();
        assert!(b.withdraw(&c, 0));
        assert!(!b.withdraw(&c, 0), "0.1/s over 10s is one retry");
    }

    #[test]
    fn the_window_forgets_old_counts() {
        let c = cfg(0.0);
        let mut b = BudgetState::default();
        for _ in 0..5 {
            b.deposit(&c, 0);
        }
        assert!(b.withdraw(&c, 0));
        assert!(!b.withdraw(&c, 9_999));
        // Everything from second 0 is out of a 10s window at second 10.
        assert!(!b.withdraw(&c, 10_000));
        assert_eq!(b.view(&c).first_attempts, 0);
        for _ in 0..5 {
            b.deposit(&c, 10_000);
        }
        assert!(b.withdraw(&c, 10_001));
    }
}
