//! Plain `flock` locks on files in the store: a tree's history (undo, redo, gc), its
//! journal, and the objects (snapshots shared, gc exclusive). Scope regions are in
//! `region.rs`.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use anyhow::{Context, Result};

use crate::error::UserError;

/// An `flock` on a file in the store, held until dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

/// Whether to wait for a lock another backstop holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Yes,
    No,
}

impl FileLock {
    /// Takes the lock file at `path`; `holder` describes this process for the one who waits.
    pub fn take(path: &Path, wait: Wait, on_wait: impl FnOnce(&str)) -> Result<FileLock> {
        let file = open(path)?;
        if !flock(&file, libc::LOCK_EX | libc::LOCK_NB).context("cannot lock the tree")? {
            let holder = fs::read_to_string(path).unwrap_or_default();
            let holder = holder.trim();
            if wait == Wait::No {
                return Err(UserError::Locked(holder.to_string()).into());
            }
            on_wait(holder);
            flock(&file, libc::LOCK_EX).context("cannot lock the tree")?;
        }
        // Tell a waiter who holds it. The lock is on the open file, not its contents.
        let _ = file.set_len(0);
        let _ = std::os::unix::fs::FileExt::write_at(
            &file,
            format!("backstop pid {}\n", std::process::id()).as_bytes(),
            0,
        );
        Ok(FileLock { _file: file })
    }
}

impl FileLock {
    /// A shared hold on `path`, waiting as long as an exclusive holder (gc) has it.
    pub fn shared(path: &Path) -> Result<FileLock> {
        let file = open(path)?;
        flock(&file, libc::LOCK_SH).context("cannot lock the tree")?;
        Ok(FileLock { _file: file })
    }
}

impl FileLock {
    /// An exclusive hold on `path`, waiting as long as it takes: for short critical
    /// sections (the journal) that never wait for anything else while held.
    pub fn exclusive(path: &Path) -> Result<FileLock> {
        let file = open(path)?;
        flock(&file, libc::LOCK_EX).context("cannot lock the tree")?;
        Ok(FileLock { _file: file })
    }

    /// An exclusive hold on `path` if no one else has it, else `None` at once.
    pub fn try_exclusive(path: &Path) -> Result<Option<FileLock>> {
        let file = open(path)?;
        let held = flock(&file, libc::LOCK_EX | libc::LOCK_NB).context("cannot lock the tree")?;
        Ok(held.then_some(FileLock { _file: file }))
    }
}

/// A shared hold on the store's objects (`objects.lock`): while one is held, gc sweeps
/// nothing. A snapshot holds one while it writes objects, and a run keeps one until its
/// record names what the snapshot wrote (see "What gc may delete" in ARCHITECTURE.md).
/// Never taken while waiting for a tree's history lock: gc waits for the objects
/// while it holds that one.
#[derive(Debug)]
pub struct ObjectsHold {
    _lock: FileLock,
}

impl ObjectsHold {
    /// Waits as long as gc (or `fsck --repair`) has the objects to itself.
    pub fn take(store: &Path) -> Result<ObjectsHold> {
        let _lock = FileLock::shared(&crate::store::layout::objects_lock(store))?;
        Ok(ObjectsHold { _lock })
    }
}

/// The store's objects to oneself: no snapshot is writing objects that nothing names
/// yet. gc holds it from reading what is reachable to the end of its sweep, `fsck
/// --repair` while it repairs.
#[derive(Debug)]
pub struct ObjectsExclusive {
    _lock: FileLock,
}

impl ObjectsExclusive {
    pub fn take(store: &Path, wait: Wait, on_wait: impl FnOnce(&str)) -> Result<Self> {
        let _lock = FileLock::take(&crate::store::layout::objects_lock(store), wait, on_wait)?;
        Ok(ObjectsExclusive { _lock })
    }
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open the lock {}", path.display()))
}

/// `flock(2)`, again on EINTR; `Ok(false)` when a non-blocking request would block.
/// `op` is `LOCK_SH`, `LOCK_EX` or `LOCK_UN`, with or without `LOCK_NB`, as in C.
pub(crate) fn flock(file: &File, op: i32) -> io::Result<bool> {
    use rustix::fs::FlockOperation as Op;
    let nb = op & libc::LOCK_NB != 0;
    let op = match (op & !libc::LOCK_NB, nb) {
        (libc::LOCK_SH, false) => Op::LockShared,
        (libc::LOCK_SH, true) => Op::NonBlockingLockShared,
        (libc::LOCK_EX, false) => Op::LockExclusive,
        (libc::LOCK_EX, true) => Op::NonBlockingLockExclusive,
        (libc::LOCK_UN, false) => Op::Unlock,
        (libc::LOCK_UN, true) => Op::NonBlockingUnlock,
        _ => return Err(io::ErrorKind::InvalidInput.into()),
    };
    loop {
        match rustix::fs::flock(file, op) {
            Ok(()) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}
