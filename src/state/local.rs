//! The `local` backend: one small JSON file in the store (`state/breakers.json`),
//! read and rewritten under an `flock` (`state/breakers.lock`), so every run on the
//! machine sees the others' failures at once. A decision that changes nothing
//! writes nothing. The state is advisory: a damaged file is started afresh.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::breaker::{Admission, KeyState, Phase};
use super::budget::BudgetState;
use super::{Backend, KeyStatus, Status, now_ms};
use crate::policy::Guarding;
use crate::snapshot::lock::FileLock;
use crate::store::layout;

/// The file as kept.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
struct StateFile {
    #[serde(default)]
    breakers: BTreeMap<String, KeyState>,
    #[serde(default)]
    budget: BudgetState,
}

/// The most bytes the state file may hold: anything larger is damage.
const MAX_BYTES: u64 = 16 << 20;

pub struct Local {
    file: PathBuf,
    lock: PathBuf,
    guarding: Guarding,
}

impl Local {
    pub fn new(store: &Path, guarding: Guarding) -> Local {
        Local {
            file: layout::breaker_state_file(store),
            lock: layout::breaker_lock_file(store),
            guarding,
        }
    }

    /// Runs `change` on the file under its lock, and writes it back if it changed.
    fn transact<T>(&self, change: impl FnOnce(&mut StateFile, &Guarding, u64) -> T) -> Result<T> {
        if let Some(dir) = self.lock.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let _lock = FileLock::exclusive(&self.lock)?;
        let before = read(&self.file);
        let mut state = before.clone();
        let now = now_ms();
        let out = change(&mut state, &self.guarding, now);
        if let Some(b) = &self.guarding.breaker {
            state.breakers.retain(|_, k| !k.is_idle(b, now));
        }
        if state != before {
            let bytes = serde_json::to_vec(&state).context("cannot encode the breaker state")?;
            crate::store::write_atomic(&self.file, &bytes, crate::store::Durability::Atomic)?;
        }
        Ok(out)
    }

    fn admit_now(&self, key: &str, first: bool) -> Result<Admission> {
        self.transact(|s, g, now| {
            let admission = match &g.breaker {
                Some(cfg) => s.breakers.entry(key.to_string()).or_default().admit(cfg, now),
                None => Admission::Go,
            };
            // A skipped link is no attempt: only what runs counts in the budget.
            let runs = !matches!(admission, Admission::Open { .. });
            if let (true, true, Some(cfg)) = (first, runs, &g.retry_budget) {
                s.budget.deposit(cfg, now);
            }
            admission
        })
    }

    fn status_now(&self) -> Result<Status> {
        self.transact(|s, g, now| {
            let breakers = s
                .breakers
                .iter()
                .map(|(key, k)| key_status(key, k, g, now))
                .collect();
            let budget = g
                .retry_budget
                .as_ref()
                .map(|cfg| s.budget.view_at(cfg, now));
            Status {
                backend: "local",
                now_ms: now,
                breakers,
                budget,
            }
        })
    }
}

fn key_status(key: &str, k: &KeyState, g: &Guarding, now: u64) -> KeyStatus {
    let cooldown = g
        .breaker
        .as_ref()
        .map_or(0, |b| crate::policy::values::millis(b.cooldown.0));
    let open = k.phase != Phase::Closed;
    let next_probe = match k.phase {
        Phase::HalfOpen => k.probe_deadline_ms,
        _ => k.since_ms.saturating_add(cooldown),
    };
    let within = g
        .breaker
        .as_ref()
        .map_or(0, |b| crate::policy::values::millis(b.within.0));
    let live = k.events.iter().filter(|(t, _)| *t + within > now);
    let (attempts, failures) = live.fold((0, 0), |(a, f), (_, failed)| (a + 1, f + u64::from(*failed)));
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

/// The state file, or a fresh state when it is missing or damaged.
fn read(path: &Path) -> StateFile {
    crate::store::read_plain(path, "a breaker state file", MAX_BYTES)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

impl Backend for Local {
    fn admit<'a>(&'a mut self, key: &'a str, first: bool) -> BoxFuture<'a, Result<Admission>> {
        Box::pin(async move { self.admit_now(key, first) })
    }

    fn record<'a>(
        &'a mut self,
        key: &'a str,
        admission: Admission,
        failed: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            self.transact(|s, g, now| {
                if let Some(cfg) = &g.breaker {
                    let k = s.breakers.entry(key.to_string()).or_default();
                    k.record(cfg, now, admission, failed);
                }
            })
        })
    }

    fn withdraw(&mut self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move {
            self.transact(|s, g, now| match &g.retry_budget {
                Some(cfg) => s.budget.withdraw(cfg, now),
                None => true,
            })
        })
    }

    fn status(&mut self) -> BoxFuture<'_, Result<Status>> {
        Box::pin(async move { self.status_now() })
    }

    fn reset<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { self.transact(|s, _, _| s.breakers.remove(key).is_some()) })
    }
}
