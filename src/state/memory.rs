//! The `memory` backend: breakers and the budget of one process, on tokio's clock,
//! so the engine's tests run them on the paused clock. (`backstop simulate` does not
//! use it: its runs follow one another with no time between them, so an open breaker
//! would never see its cooldown pass.)

use anyhow::Result;
use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::breaker::Admission;
use super::kept::Kept;
use super::{Backend, Status};
use crate::policy::Guarding;
use crate::policy::values::millis;

pub struct Memory {
    kept: Kept,
    guarding: Guarding,
    /// Time zero of the backend's clock.
    start: Instant,
}

impl Memory {
    pub fn new(guarding: Guarding) -> Memory {
        Memory {
            kept: Kept::default(),
            guarding,
            start: Instant::now(),
        }
    }

    /// Milliseconds on tokio's clock, from a day in (so no window reaches before zero).
    fn now(&self) -> u64 {
        86_400_000 + millis(self.start.elapsed())
    }
}

impl Backend for Memory {
    fn admit<'a>(&'a mut self, key: &'a str, first: bool) -> BoxFuture<'a, Result<Admission>> {
        let now = self.now();
        Box::pin(async move { Ok(self.kept.admit(&self.guarding, key, first, now)) })
    }

    fn record<'a>(
        &'a mut self,
        key: &'a str,
        admission: Admission,
        failed: bool,
    ) -> BoxFuture<'a, Result<()>> {
        let now = self.now();
        Box::pin(async move {
            self.kept
                .record(&self.guarding, key, admission, failed, now);
            Ok(())
        })
    }

    fn withdraw(&mut self) -> BoxFuture<'_, Result<bool>> {
        let now = self.now();
        Box::pin(async move { Ok(self.kept.withdraw(&self.guarding, now)) })
    }

    fn status(&mut self) -> BoxFuture<'_, Result<Status>> {
        let now = self.now();
        Box::pin(async move { Ok(self.kept.status("memory", &self.guarding, now)) })
    }

    fn reset<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.kept.breakers.remove(key).is_some()) })
    }
}
