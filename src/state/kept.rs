//! Every breaker and the budget as one value, and the backend operations on it at a
//! given time: the `local` backend keeps it in a file, the `memory` one (for
//! `simulate` and the engine's tests) in memory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::breaker::{Admission, KeyState, Phase};
use super::budget::BudgetState;
use super::{KeyStatus, Status};
use crate::policy::Guarding;
use crate::policy::values::millis;

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Kept {
    #[serde(default)]
    pub breakers: BTreeMap<String, KeyState>,
    #[serde(default)]
    pub budget: BudgetState,
}

impl Kept {
    /// Whether link `key` may be attempted; a first attempt that runs counts in the budget.
    pub fn admit(&mut self, g: &Guarding, key: &str, first: bool, now: u64) -> Admission {
        let admission = match &g.breaker {
            Some(cfg) => self
                .breakers
                .entry(key.to_string())
                .or_default()
                .admit(cfg, now),
            None => Admission::Go,
        };
        // A skipped link is no attempt: only what runs counts in the budget.
        let runs = !matches!(admission, Admission::Open { .. });
        if let (true, true, Some(cfg)) = (first, runs, &g.retry_budget) {
            self.budget.deposit(cfg, now);
        }
        admission
    }

    pub fn record(
        &mut self,
        g: &Guarding,
        key: &str,
        admission: Admission,
        failed: bool,
        now: u64,
    ) {
        if let Some(cfg) = &g.breaker {
            let k = self.breakers.entry(key.to_string()).or_default();
            k.record(cfg, now, admission, failed);
        }
    }

    pub fn withdraw(&mut self, g: &Guarding, now: u64) -> bool {
        match &g.retry_budget {
            Some(cfg) => self.budget.withdraw(cfg, now),
            None => true,
        }
    }

    /// Drops breakers with nothing left worth keeping.
    pub fn forget_idle(&mut self, g: &Guarding, now: u64) {
        if let Some(b) = &g.breaker {
            self.breakers.retain(|_, k| !k.is_idle(b, now));
        }
    }

    pub fn status(&self, backend: &'static str, g: &Guarding, now: u64) -> Status {
        Status {
            backend,
            now_ms: now,
            breakers: self
                .breakers
                .iter()
                .map(|(key, k)| key_status(key, k, g, now))
                .collect(),
            budget: g
                .retry_budget
                .as_ref()
                .map(|cfg| self.budget.view_at(cfg, now)),
        }
    }
}

fn key_status(key: &str, k: &KeyState, g: &Guarding, now: u64) -> KeyStatus {
    let (within, cooldown) = g
        .breaker
        .as_ref()
        .map_or((0, 0), |b| (millis(b.within.0), millis(b.cooldown.0)));
    let open = k.phase != Phase::Closed;
    let next_probe = match k.phase {
        Phase::HalfOpen => k.probe_deadline_ms,
        _ => k.since_ms.saturating_add(cooldown),
    };
    let live = k
        .events
        .iter()
        .filter(|(t, _)| t.saturating_add(within) > now);
    let (attempts, failures) = live.fold((0, 0), |(a, f), (_, failed)| {
        (a + 1, f + u64::from(*failed))
    });
    KeyStatus {
        key: key.to_string(),
        state: k.phase,
        since_ms: open.then_some(k.since_ms),
        next_probe_ms: open.then_some(next_probe),
        failures,
        attempts,
        opened: k.opened,
    }
}
