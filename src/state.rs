//! Memory across runs: circuit breakers per link and a retry budget, kept by a
//! backend — a file in the store (`local`, every run on this machine) or Redis (a
//! fleet). The engine holds a [`Guard`]; without `breaker:` or `retry_budget:` in
//! the policy it is a no-op, and state problems never fail a run: the first one
//! turns the guard off for the rest of the run, with one warning that says why.

use std::path::Path;

use anyhow::Result;
use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::policy::{Backend as BackendKind, Guarding};

pub mod breaker;
pub mod budget;
mod kept;
pub mod local;
pub mod memory;
pub mod redis;
mod redis_scripts;

pub use breaker::{Admission, Phase};
pub use budget::BudgetView;

/// Where breakers and the budget are kept. Each call is one decision or update,
/// atomic against every other run that shares the backend.
pub trait Backend: Send {
    /// Whether link `key` may be attempted; `first` also counts a first attempt in the
    /// retry budget.
    fn admit<'a>(&'a mut self, key: &'a str, first: bool) -> BoxFuture<'a, Result<Admission>>;
    /// Takes in how an admitted attempt went.
    fn record<'a>(
        &'a mut self,
        key: &'a str,
        admission: Admission,
        failed: bool,
    ) -> BoxFuture<'a, Result<()>>;
    /// Takes a retry from the budget, if it allows one.
    fn withdraw(&mut self) -> BoxFuture<'_, Result<bool>>;
    /// Every key's breaker, and the budget.
    fn status(&mut self) -> BoxFuture<'_, Result<Status>>;
    /// Forgets one key's breaker; whether there was one.
    fn reset<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<bool>>;
}

/// `backstop breaker status`: what the backend holds.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub backend: &'static str,
    /// Milliseconds since the Unix epoch, on the backend's clock.
    pub now_ms: u64,
    pub breakers: Vec<KeyStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetView>,
}

/// One key's breaker.
#[derive(Clone, Debug, Serialize)]
pub struct KeyStatus {
    pub key: String,
    pub state: Phase,
    /// When it last opened (open or half-open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// When it lets a probe through (open or half-open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_probe_ms: Option<u64>,
    /// Failures counted in the window (closed).
    pub failures: u64,
    /// Attempts counted in the window (closed).
    pub attempts: u64,
    /// How many times it has opened.
    pub opened: u64,
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, crate::policy::values::millis)
}

/// Opens the backend a policy names; `Err` says why it cannot be used.
pub fn open_backend(guarding: &Guarding, store: &Path) -> Result<Box<dyn Backend>> {
    Ok(match guarding.state.backend {
        BackendKind::Local => Box::new(local::Local::new(store, guarding.clone())),
        BackendKind::Redis => Box::new(redis::Redis::from_env(guarding.clone())?),
    })
}

/// The retry budget's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    Allowed,
    /// Retries are off; `first`: the budget said so just now (the run tells it once).
    Off {
        first: bool,
    },
}

/// What the engine asks before and after attempts; off when the policy keeps no
/// state, or once the backend failed.
#[derive(Default)]
pub struct Guard {
    backend: Option<Box<dyn Backend>>,
    warnings: Vec<String>,
    /// Told once per run that the budget turned retries off.
    retries_off: bool,
    /// What the policy keeps: a call to the backend for a part it has not is a round
    /// trip (a lock, a read; on Redis a script) that can change nothing.
    breaker: bool,
    budget: bool,
}

impl Guard {
    /// A guard that admits everything and counts nothing.
    pub fn none() -> Guard {
        Guard::default()
    }

    /// The guard a policy asks for, over the store at `store`.
    pub fn for_policy(guarding: &Guarding, store: &Path) -> Guard {
        if !guarding.is_on() {
            return Guard::none();
        }
        match open_backend(guarding, store) {
            Ok(backend) => Guard {
                breaker: guarding.breaker.is_some(),
                budget: guarding.retry_budget.is_some(),
                ..Guard::with_backend(backend)
            },
            Err(e) => {
                let mut guard = Guard::none();
                guard.warn(&e);
                guard
            }
        }
    }

    pub fn with_backend(backend: Box<dyn Backend>) -> Guard {
        Guard {
            backend: Some(backend),
            breaker: true,
            budget: true,
            ..Guard::default()
        }
    }

    fn warn(&mut self, e: &anyhow::Error) {
        self.backend = None;
        self.warnings.push(format!(
            "breaker state: {e:#}; this run goes on without breakers or a retry budget"
        ));
    }

    /// Whether link `key` may be attempted (always, once the backend failed).
    pub async fn admit(&mut self, key: &str, first: bool) -> Admission {
        // Without a breaker only a first attempt has something to count (the budget's).
        if !(self.breaker || first && self.budget) {
            return Admission::Go;
        }
        let Some(backend) = self.backend.as_mut() else {
            return Admission::Go;
        };
        match backend.admit(key, first).await {
            Ok(admission) => admission,
            Err(e) => {
                self.warn(&e);
                Admission::Go
            }
        }
    }

    /// Takes in how an admitted attempt went.
    pub async fn record(&mut self, key: &str, admission: Admission, failed: bool) {
        let Some(backend) = self.backend.as_mut().filter(|_| self.breaker) else {
            return;
        };
        if let Err(e) = backend.record(key, admission, failed).await {
            self.warn(&e);
        }
    }

    /// Whether a retry may be made: refused once the budget is exhausted, for the
    /// rest of the run.
    pub async fn may_retry(&mut self) -> Retry {
        if self.retries_off {
            return Retry::Off { first: false };
        }
        let Some(backend) = self.backend.as_mut().filter(|_| self.budget) else {
            return Retry::Allowed;
        };
        match backend.withdraw().await {
            Ok(true) => Retry::Allowed,
            Ok(false) => {
                self.retries_off = true;
                Retry::Off { first: true }
            }
            Err(e) => {
                self.warn(&e);
                Retry::Allowed
            }
        }
    }

    /// Warnings not yet told.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }
}
