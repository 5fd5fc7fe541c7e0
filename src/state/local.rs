//! The `local` backend: one small JSON file in the store (`state/breakers.json`),
//! read and rewritten under an `flock` (`state/breakers.lock`), so every run on the
//! machine sees the others' failures at once. A decision that changes nothing
//! writes nothing. The state is advisory: a damaged file is started afresh.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use futures_util::future::BoxFuture;

use super::breaker::Admission;
use super::kept::Kept;
use super::{Backend, Status, now_ms};
use crate::policy::Guarding;
use crate::snapshot::lock::FileLock;
use crate::store::layout;

/// The most bytes the state file may hold: anything larger is damage.
const MAX_BYTES: u64 = 16 << 20;

pub struct Local {
    file: PathBuf,
    lock: PathBuf,
    guarding: Guarding,
}

impl Local {
    pub fn new(store: &Path, guarding: Guarding) -> Local {
        let lock = layout::breaker_lock_file(store);
        // Once per run, not per decision; a failure is said by the first lock.
        if let Some(dir) = lock.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        Local {
            file: layout::breaker_state_file(store),
            lock,
            guarding,
        }
    }

    /// The state's lock, waited for at most `state.timeout`: a holder that is stopped
    /// (Ctrl-Z) or stuck on a hung store must not hold every run on the machine before
    /// its first attempt. Past the limit the run goes on without breakers, warned.
    fn lock(&self) -> Result<FileLock> {
        let until = std::time::Instant::now() + self.guarding.state.timeout.0;
        loop {
            if let Some(held) = FileLock::try_exclusive(&self.lock)? {
                return Ok(held);
            }
            if std::time::Instant::now() >= until {
                anyhow::bail!(
                    "{} is held by another backstop for longer than state.timeout ({})",
                    self.lock.display(),
                    crate::policy::values::format_duration(self.guarding.state.timeout.0)
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Runs `change` on the file under its lock, and writes it back if it changed.
    fn transact<T>(&self, change: impl FnOnce(&mut Kept, &Guarding, u64) -> T) -> Result<T> {
        let _lock = self.lock()?;
        let before = read(&self.file);
        let mut kept = before.clone();
        let now = now_ms();
        let out = change(&mut kept, &self.guarding, now);
        kept.forget_idle(&self.guarding, now);
        if kept != before {
            let bytes = serde_json::to_vec(&kept).context("cannot encode the breaker state")?;
            crate::store::write_atomic(&self.file, &bytes, crate::store::Durability::Atomic)?;
        }
        Ok(out)
    }
}

/// The state file, or a fresh state when it is missing or damaged.
fn read(path: &Path) -> Kept {
    crate::store::read_plain(path, "a breaker state file", MAX_BYTES)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

impl Backend for Local {
    fn admit<'a>(&'a mut self, key: &'a str, first: bool) -> BoxFuture<'a, Result<Admission>> {
        Box::pin(async move { self.transact(|k, g, now| k.admit(g, key, first, now)) })
    }

    fn record<'a>(
        &'a mut self,
        key: &'a str,
        admission: Admission,
        failed: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { self.transact(|k, g, now| k.record(g, key, admission, failed, now)) })
    }

    fn withdraw(&mut self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move { self.transact(|k, g, now| k.withdraw(g, now)) })
    }

    /// Read only: the file is replaced whole by every write, so it needs no lock, and
    /// looking at the state never prunes it with this policy's windows.
    fn status(&mut self) -> BoxFuture<'_, Result<Status>> {
        Box::pin(async move { Ok(read(&self.file).status("local", &self.guarding, now_ms())) })
    }

    fn reset<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { self.transact(|k, _, _| k.breakers.remove(key).is_some()) })
    }
}
