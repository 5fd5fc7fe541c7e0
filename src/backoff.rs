//! Backoff schedules: an iterator of delays, `None` when the attempts are spent.
//!
//! A schedule is built per link. The n-th delay is the base delay of the policy's
//! kind (constant, linear, exponential), capped at `max`, then jittered. The jitter's
//! random source is seedable, so a test or `policy explain` can pin a schedule.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::policy::{Backoff, BackoffKind, Jitter};

#[derive(Debug)]
pub struct Schedule {
    backoff: Backoff,
    retries_left: u32,
    retry: u32,
    /// Made at the first jittered delay: a run whose first attempt succeeds never
    /// needs one, and seeding it from the kernel's entropy is not free.
    rng: Option<StdRng>,
}

impl Schedule {
    /// The delays before each retry of a link allowed `max_attempts` attempts.
    pub fn new(backoff: &Backoff, max_attempts: u32) -> Schedule {
        Schedule {
            backoff: backoff.clone(),
            retries_left: max_attempts.saturating_sub(1),
            retry: 0,
            rng: None,
        }
    }
}

impl Iterator for Schedule {
    type Item = Delay;

    fn next(&mut self) -> Option<Delay> {
        if self.retries_left == 0 {
            return None;
        }
        self.retries_left -= 1;
        self.retry += 1;
        let base = base_delay(&self.backoff, self.retry);
        let (lo, hi) = jitter_bounds(self.backoff.jitter, base);
        let chosen = if lo == hi {
            lo
        } else {
            let seed = self.backoff.seed;
            let rng = self.rng.get_or_insert_with(|| match seed {
                Some(seed) => StdRng::seed_from_u64(seed),
                None => StdRng::from_entropy(),
            });
            let nanos = rng.gen_range(lo.as_nanos()..=hi.as_nanos());
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        };
        Some(Delay {
            retry: self.retry,
            base,
            chosen,
        })
    }
}

/// One delay of a schedule, with what it was drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delay {
    /// 1 for the delay before the first retry.
    pub retry: u32,
    /// The delay before jitter.
    pub base: Duration,
    /// The delay after jitter.
    pub chosen: Duration,
}

/// The delay before retry `n` (1-based), before jitter, capped at `max`.
pub fn base_delay(b: &Backoff, n: u32) -> Duration {
    let n = n.max(1);
    let uncapped = match b.kind {
        // `max` bounds a delay that grows; a constant one is what the policy says.
        BackoffKind::Constant => return b.initial.0,
        BackoffKind::Linear => {
            b.initial.0.as_secs_f64() + b.step.0.as_secs_f64() * f64::from(n - 1)
        }
        BackoffKind::Exponential => {
            b.initial.0.as_secs_f64() * b.multiplier.powi(i32::try_from(n - 1).unwrap_or(i32::MAX))
        }
    };
    let max = b.max.0.as_secs_f64();
    // Clamping in f64 first keeps huge exponents from overflowing Duration.
    // `try_from`: a NaN (a zero initial times an infinite power) or anything else
    // out of range means the cap, never a panic.
    Duration::try_from_secs_f64(if uncapped.is_finite() {
        uncapped.min(max)
    } else {
        max
    })
    .unwrap_or(b.max.0)
}

/// The range jitter draws from for a base delay.
pub fn jitter_bounds(jitter: Jitter, base: Duration) -> (Duration, Duration) {
    match jitter {
        Jitter::None => (base, base),
        Jitter::Full => (Duration::ZERO, base),
        Jitter::Equal => (base / 2, base),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::values::Dur;

    fn backoff(kind: BackoffKind, jitter: Jitter) -> Backoff {
        Backoff {
            kind,
            initial: Dur(Duration::from_millis(100)),
            multiplier: 2.0,
            step: Dur(Duration::from_millis(50)),
            max: Dur(Duration::from_secs(2)),
            jitter,
            seed: Some(7),
        }
    }

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let b = backoff(BackoffKind::Exponential, Jitter::None);
        let d: Vec<_> = Schedule::new(&b, 8).map(|d| d.chosen).collect();
        assert_eq!(d, ms(&[100, 200, 400, 800, 1600, 2000, 2000]));
    }

    #[test]
    fn linear_and_constant() {
        let l: Vec<_> = Schedule::new(&backoff(BackoffKind::Linear, Jitter::None), 4)
            .map(|d| d.chosen)
            .collect();
        assert_eq!(l, ms(&[100, 150, 200]));
        let c: Vec<_> = Schedule::new(&backoff(BackoffKind::Constant, Jitter::None), 4)
            .map(|d| d.chosen)
            .collect();
        assert_eq!(c, ms(&[100, 100, 100]));
    }

    /// Issue 15: `kind: constant` with no `jitter` waits exactly `initial`, every time,
    /// even past the default `max` (which bounds only growing kinds).
    #[test]
    fn constant_waits_exactly_initial_without_jitter_asked_for() {
        let policy = crate::policy::load_str(
            "version: 1\nretry: { max_attempts: 5, backoff: { kind: constant, initial: 3s } }\n",
            "test",
        )
        .unwrap();
        let b = &policy.retry.backoff;
        assert_eq!(b.jitter, Jitter::None);
        let d: Vec<_> = Schedule::new(b, 5).map(|d| d.chosen).collect();
        assert_eq!(d, vec![Duration::from_secs(3); 4]);
        let asked = crate::policy::load_str(
            "version: 1\nretry: { backoff: { kind: constant, initial: 1s, jitter: full } }\n",
            "test",
        )
        .unwrap();
        assert_eq!(asked.retry.backoff.jitter, Jitter::Full);
        let exp = crate::policy::load_str("version: 1\n", "test").unwrap();
        assert_eq!(exp.retry.backoff.jitter, Jitter::Full);
    }

    #[test]
    fn one_attempt_means_no_delays() {
        assert_eq!(
            Schedule::new(&backoff(BackoffKind::Exponential, Jitter::Full), 1).count(),
            0
        );
    }

    #[test]
    fn huge_exponents_stay_at_the_cap() {
        let b = backoff(BackoffKind::Exponential, Jitter::None);
        assert_eq!(base_delay(&b, 5000), Duration::from_secs(2));
    }

    #[test]
    fn jitter_stays_in_bounds_and_a_seed_pins_it() {
        for jitter in [Jitter::Full, Jitter::Equal] {
            let b = backoff(BackoffKind::Exponential, jitter);
            let a: Vec<_> = Schedule::new(&b, 50).collect();
            for d in &a {
                let (lo, hi) = jitter_bounds(jitter, d.base);
                assert!(
                    d.chosen >= lo && d.chosen <= hi,
                    "{d:?} outside {lo:?}..={hi:?}"
                );
            }
            let again: Vec<_> = Schedule::new(&b, 50).collect();
            assert_eq!(a, again, "the same seed gives the same schedule");
            assert!(
                a.iter().any(|d| d.chosen != d.base),
                "jitter changes some delays"
            );
        }
    }
}
