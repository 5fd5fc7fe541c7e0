//! One breaker's state machine, without I/O or a clock: every step is given the
//! time (milliseconds since the Unix epoch), so tests inject it. The local backend
//! runs it on the state file; the Redis backend's Lua scripts (`redis_scripts.rs`)
//! are the same machine, and the integration tests hold both to the same behaviour.

use serde::{Deserialize, Serialize};

use crate::policy::{Breaker, Trip};

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Closed,
    /// Links are skipped until the cooldown has passed.
    Open,
    /// Probes are out: their results close or re-open the breaker.
    HalfOpen,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Open => "open",
            Phase::HalfOpen => "half_open",
        }
    }

    pub fn parse(s: &str) -> Phase {
        match s {
            "open" => Phase::Open,
            "half_open" => Phase::HalfOpen,
            _ => Phase::Closed,
        }
    }
}

/// One key's breaker, as kept between runs.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct KeyState {
    pub phase: Phase,
    /// When it last opened.
    #[serde(default)]
    pub since_ms: u64,
    /// Half-open: probes let through, and how many of them succeeded.
    #[serde(default)]
    pub probes_out: u32,
    #[serde(default)]
    pub probes_ok: u32,
    /// Half-open: when probes that never reported are given up and others let through.
    #[serde(default)]
    pub probe_deadline_ms: u64,
    /// Closed: attempts within the window, `(time, failed)`, oldest first.
    #[serde(default)]
    pub events: Vec<(u64, bool)>,
    /// How many times it has opened.
    #[serde(default)]
    pub opened: u64,
    /// The last time anything happened to it.
    #[serde(default)]
    pub last_ms: u64,
    /// Kept at least until then, by the windows of the policy that last used it: the
    /// state file holds every policy's keys, and one with a short `within` must not
    /// prune another's failures (0 in files written before it was kept).
    #[serde(default)]
    pub keep_until_ms: u64,
}

/// Whether a link may be attempted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go on (no breaker, or a closed one).
    Go,
    /// Go on as one of the half-open breaker's probes: its result decides.
    Probe,
    /// Skip the link: the breaker has been open since then, and lets a probe through
    /// at `next_probe_ms`.
    Open { since_ms: u64, next_probe_ms: u64 },
}

impl Admission {
    pub fn is_probe(self) -> bool {
        self == Admission::Probe
    }
}

/// The most attempts a closed breaker remembers: its window is counted on them.
const MAX_EVENTS: usize = 1000;

fn ms(d: crate::policy::values::Dur) -> u64 {
    crate::policy::values::millis(d.0)
}

impl KeyState {
    /// Decides whether the link may be attempted now, letting probes through once
    /// the cooldown has passed.
    pub fn admit(&mut self, cfg: &Breaker, now: u64) -> Admission {
        let cooldown = ms(cfg.cooldown);
        match self.phase {
            Phase::Closed => return Admission::Go,
            Phase::Open if now < self.since_ms.saturating_add(cooldown) => {
                return Admission::Open {
                    since_ms: self.since_ms,
                    next_probe_ms: self.since_ms.saturating_add(cooldown),
                };
            }
            Phase::Open => {
                self.phase = Phase::HalfOpen;
                self.probes_out = 0;
                self.probes_ok = 0;
            }
            Phase::HalfOpen if now >= self.probe_deadline_ms => {
                // Probes that never said how they went (their run was killed).
                self.probes_out = self.probes_ok;
            }
            Phase::HalfOpen => {}
        }
        if self.probes_out >= cfg.probes {
            return Admission::Open {
                since_ms: self.since_ms,
                next_probe_ms: self.probe_deadline_ms,
            };
        }
        self.probes_out += 1;
        self.probe_deadline_ms = now.saturating_add(cooldown);
        self.touch(cfg, now);
        Admission::Probe
    }

    /// Takes in how an admitted attempt went. Only probes decide a half-open breaker;
    /// attempts admitted before it opened are not counted once it is open.
    pub fn record(&mut self, cfg: &Breaker, now: u64, admission: Admission, failed: bool) {
        self.touch(cfg, now);
        match (self.phase, admission) {
            (Phase::Closed, _) => self.count(cfg, now, failed),
            (Phase::HalfOpen, Admission::Probe) if failed => self.open(now),
            (Phase::HalfOpen, Admission::Probe) => {
                self.probes_ok += 1;
                if self.probes_ok >= cfg.probes {
                    *self = KeyState {
                        opened: self.opened,
                        last_ms: now,
                        ..KeyState::default()
                    };
                }
            }
            _ => {}
        }
    }

    fn count(&mut self, cfg: &Breaker, now: u64, failed: bool) {
        let from = now.saturating_sub(ms(cfg.within));
        self.events.retain(|&(t, _)| t > from);
        self.events.push((now, failed));
        if self.events.len() > MAX_EVENTS {
            self.events.remove(0);
        }
        let failures = self.events.iter().filter(|(_, f)| *f).count() as u64;
        let attempts = self.events.len() as u64;
        let trips = match cfg.trip {
            Trip::Failures { failures: n } => failures >= u64::from(n),
            Trip::Ratio {
                ratio,
                min_attempts,
            } => attempts >= u64::from(min_attempts) && failures as f64 >= ratio * attempts as f64,
        };
        if trips {
            self.open(now);
        }
    }

    fn open(&mut self, now: u64) {
        self.phase = Phase::Open;
        self.since_ms = now;
        self.probes_out = 0;
        self.probes_ok = 0;
        self.events.clear();
        self.opened += 1;
    }

    /// Failures counted in the window as of `now`.
    pub fn failures(&self, cfg: &Breaker, now: u64) -> usize {
        let from = now.saturating_sub(ms(cfg.within));
        self.events.iter().filter(|&&(t, f)| f && t > from).count()
    }

    /// Something happened to it at `now`, under `cfg`.
    fn touch(&mut self, cfg: &Breaker, now: u64) {
        self.last_ms = now;
        let horizon = now.saturating_add(ms(cfg.within).max(ms(cfg.cooldown)));
        self.keep_until_ms = self.keep_until_ms.max(horizon);
    }

    /// Whether nothing about it is worth keeping any longer: closed, and past what its
    /// own policy keeps it for (`cfg`, the asking policy's, only for a key written
    /// before that was kept).
    pub fn is_idle(&self, cfg: &Breaker, now: u64) -> bool {
        let until = match self.keep_until_ms {
            0 => self
                .last_ms
                .saturating_add(ms(cfg.within).max(ms(cfg.cooldown))),
            until => until,
        };
        self.phase == Phase::Closed && now > until
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::values::Dur;

    fn cfg(failures: u32, probes: u32) -> Breaker {
        Breaker {
            trip: Trip::Failures { failures },
            within: Dur(Duration::from_secs(60)),
            cooldown: Dur(Duration::from_secs(30)),
            probes,
            key: None,
        }
    }

    fn fail(s: &mut KeyState, cfg: &Breaker, now: u64) {
        let a = s.admit(cfg, now);
        s.record(cfg, now, a, true);
    }

    /// The state file holds every policy's keys: a policy with a short window never
    /// prunes the failures another policy counts over a long one.
    #[test]
    fn a_key_is_kept_for_its_own_windows_not_the_askers() {
        let long = Breaker {
            within: Dur(Duration::from_secs(3600)),
            ..cfg(5, 1)
        };
        let short = cfg(5, 1);
        let mut s = KeyState::default();
        fail(&mut s, &long, 1_000);
        let later = 1_000 + 120_000;
        assert!(
            !s.is_idle(&short, later),
            "kept for the hour its policy counts"
        );
        assert_eq!(s.failures(&long, later), 1);
        assert!(s.is_idle(&short, 1_000 + 3_600_001));
    }

    #[test]
    fn opens_after_the_configured_failures_within_the_window() {
        let c = cfg(3, 1);
        let mut s = KeyState::default();
        fail(&mut s, &c, 0);
        fail(&mut s, &c, 1_000);
        // The first failure falls out of the window before the third.
        fail(&mut s, &c, 60_500);
        assert_eq!(s.phase, Phase::Closed);
        fail(&mut s, &c, 60_900);
        assert_eq!(s.phase, Phase::Open);
        assert_eq!(s.since_ms, 60_900);
        assert_eq!(s.opened, 1);
    }

    #[test]
    fn an_open_breaker_skips_until_the_cooldown_then_lets_one_probe_through() {
        let c = cfg(1, 1);
        let mut s = KeyState::default();
        fail(&mut s, &c, 10_000);
        let open = Admission::Open {
            since_ms: 10_000,
            next_probe_ms: 40_000,
        };
        assert_eq!(s.admit(&c, 39_999), open);
        assert_eq!(s.admit(&c, 40_000), Admission::Probe);
        assert_eq!(s.phase, Phase::HalfOpen);
        // A second run while the probe is out is skipped.
        assert!(matches!(s.admit(&c, 40_001), Admission::Open { .. }));
    }

    #[test]
    fn a_successful_probe_closes_and_a_failed_one_reopens() {
        let c = cfg(1, 1);
        let mut s = KeyState::default();
        fail(&mut s, &c, 0);
        let probe = s.admit(&c, 30_000);
        s.record(&c, 30_100, probe, true);
        assert_eq!((s.phase, s.since_ms, s.opened), (Phase::Open, 30_100, 2));
        let probe = s.admit(&c, 60_100);
        s.record(&c, 60_200, probe, false);
        assert_eq!(s.phase, Phase::Closed);
        assert_eq!(s.admit(&c, 60_300), Admission::Go);
        assert_eq!(s.opened, 2);
    }

    #[test]
    fn results_of_runs_admitted_before_it_opened_do_not_count() {
        let c = cfg(1, 2);
        let mut s = KeyState::default();
        fail(&mut s, &c, 0);
        s.record(&c, 5, Admission::Go, true);
        assert_eq!((s.since_ms, s.opened), (0, 1));
        let p1 = s.admit(&c, 30_000);
        s.record(&c, 30_001, Admission::Go, true);
        assert_eq!(s.phase, Phase::HalfOpen);
        s.record(&c, 30_002, p1, false);
        assert_eq!(s.phase, Phase::HalfOpen, "two probes must succeed");
        let p2 = s.admit(&c, 30_003);
        s.record(&c, 30_004, p2, false);
        assert_eq!(s.phase, Phase::Closed);
    }

    #[test]
    fn a_probe_that_never_reports_is_given_up_after_a_cooldown() {
        let c = cfg(1, 1);
        let mut s = KeyState::default();
        fail(&mut s, &c, 0);
        assert_eq!(s.admit(&c, 30_000), Admission::Probe);
        assert!(matches!(s.admit(&c, 59_999), Admission::Open { .. }));
        assert_eq!(s.admit(&c, 60_000), Admission::Probe);
    }

    #[test]
    fn the_ratio_waits_for_its_minimum_of_attempts() {
        let c = Breaker {
            trip: Trip::Ratio {
                ratio: 0.5,
                min_attempts: 4,
            },
            ..cfg(1, 1)
        };
        let mut s = KeyState::default();
        for t in 10..13 {
            fail(&mut s, &c, t);
        }
        assert_eq!(s.phase, Phase::Closed);
        let a = s.admit(&c, 13);
        s.record(&c, 13, a, false);
        assert_eq!(s.phase, Phase::Open, "3 of 4 failed");
    }
}
