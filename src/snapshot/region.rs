//! One writer per tree region, and who is alive.
//!
//! A scope root is locked hierarchically: a shared `flock` on a lock file for every
//! ancestor of the (canonical) root, then an exclusive one on the root itself, taken
//! from `/` downwards. Two roots where one contains the other (or equal roots) then
//! meet on the inner one's path: the outer holds it shared, the inner wants it
//! exclusive, or the other way round, so the second waits. Disjoint siblings share
//! only ancestors, all shared, so they never wait for each other. Every process takes
//! its locks in the same order (by depth along its own chain), and holds only strict
//! ancestors of the lock it waits for, so no cycle of waiters can form. This does not
//! depend on git: the tree store key (nearest `.git`) plays no part.
//!
//! Lock files live in `<store>/locks/<hash of the path>`; they are never deleted
//! (deleting a lock file others may have open would let two processes hold "the
//! same" lock on different inodes).
//!
//! Every holder also registers in `<store>/live/<token>.lock`: a JSON description
//! (pid, run id, action, root, start time) in a file it holds an exclusive `flock` on
//! for its whole life. The file is locked before it gets its name (created under a
//! temporary name, locked, then renamed), so a registry file whose lock can be taken
//! belongs to a dead process. That lock is how a waiter names the holder, and how
//! anyone tells a live run from a dead one: a PID alone can be reused, a lock dies
//! with its holder.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::lock::{Wait, flock};
use crate::error::UserError;

/// What a holder tells a waiter about itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The run this process runs, or works on (undo, redo).
    pub run_id: Option<String>,
    /// `run`, `undo`, `redo`, `snapshot`.
    pub action: String,
    pub root: PathBuf,
    #[serde(with = "crate::record::rfc3339")]
    pub since: SystemTime,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.run_id, self.action.as_str()) {
            (Some(id), "run") => write!(f, "run {id}")?,
            (Some(id), action) => write!(f, "{action} of run {id}")?,
            (None, action) => write!(f, "{action}")?,
        }
        write!(
            f,
            " (pid {}) in {} since {}",
            self.pid,
            self.root.display(),
            humantime::format_rfc3339_seconds(self.since)
        )
    }
}

/// A locked region: held until dropped.
#[derive(Debug)]
pub struct RegionLock {
    _locks: Vec<File>,
    live: Live,
}

impl RegionLock {
    /// The root this lock covers.
    pub fn root(&self) -> &Path {
        &self.live.holder.root
    }
}

/// A registry entry in `<store>/live/`, locked for as long as it exists.
#[derive(Debug)]
struct Live {
    path: PathBuf,
    holder: Holder,
    _file: File,
}

impl Drop for Live {
    fn drop(&mut self) {
        // Unlinked while still locked: nobody can mistake it for a dead holder's file
        // and nobody else ever gets this name.
        let _ = fs::remove_file(&self.path);
    }
}

/// Locks the region under `root` (canonical, absolute) for one writer.
///
/// `token` names this holder in the registry: a run's id for a run, so that
/// [`is_live`] can ask about it; anything unique otherwise. `on_wait` is told who
/// holds the region when this has to wait.
pub fn lock(
    store: &Path,
    root: &Path,
    token: &str,
    holder: Holder,
    wait: Wait,
    on_wait: impl FnOnce(&str),
) -> Result<RegionLock> {
    anyhow::ensure!(
        root.is_absolute(),
        "cannot lock {}: the scope root must be an absolute path",
        root.display()
    );
    let dir = store.join("locks");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // `/`, `/a`, `/a/b`, … root: ancestors first, the root last.
    let mut chain: Vec<&Path> = root.ancestors().collect();
    chain.reverse();
    let mut held = Vec::with_capacity(chain.len());
    let mut on_wait = Some(on_wait);
    for (i, path) in chain.iter().enumerate() {
        let exclusive = i + 1 == chain.len();
        let file = open_lock(&dir.join(key(path)), path)?;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        if !flock(&file, op | libc::LOCK_NB)
            .with_context(|| format!("cannot lock {} for {}", path.display(), root.display()))?
        {
            let who = describe(&holders_overlapping(store, root));
            if wait == Wait::No {
                return Err(UserError::Locked(who).into());
            }
            if let Some(f) = on_wait.take() {
                f(&who);
            }
            flock(&file, op).with_context(|| {
                format!("cannot lock {} for {}", path.display(), root.display())
            })?;
        }
        held.push(file);
    }
    let live = register(store, token, holder)?;
    Ok(RegionLock { _locks: held, live })
}

/// Whether the run `id` is alive: its registry file exists and its lock is held.
pub fn is_live(store: &Path, id: &str) -> bool {
    // Ids are hex; anything else cannot name a registry file of ours.
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return false;
    }
    match File::open(live_dir(store).join(format!("{id}.lock"))) {
        Ok(f) => held_by_other(&f),
        Err(_) => false,
    }
}

/// Removes registry files whose holders are dead (killed backstops leave them).
pub fn sweep_dead(store: &Path) {
    for entry in fs::read_dir(live_dir(store))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "lock")
            && let Ok(f) = File::open(&path)
            && !held_by_other(&f)
        {
            // Its holder is gone and its name is never reused: nobody can lock it again.
            let _ = fs::remove_file(&path);
        }
    }
}

fn live_dir(store: &Path) -> PathBuf {
    store.join("live")
}

/// A lock file's name: a hash of the path it stands for.
fn key(path: &Path) -> String {
    let h = blake3::hash(path.as_os_str().as_bytes()).to_hex();
    h.as_str()[..32].to_string()
}

fn open_lock(file: &Path, for_path: &Path) -> Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(file)
        .with_context(|| {
            format!(
                "cannot open the lock {} (for {})",
                file.display(),
                for_path.display()
            )
        })
}

/// Creates `<store>/live/<token>.lock`, locked before it is visible under that name.
fn register(store: &Path, token: &str, holder: Holder) -> Result<Live> {
    let dir = live_dir(store);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot register this backstop in {}", dir.display()))?;
    let path = dir.join(format!("{token}.lock"));
    anyhow::ensure!(
        flock(tmp.as_file(), libc::LOCK_EX | libc::LOCK_NB)?,
        "cannot lock {}",
        tmp.path().display()
    );
    let mut json = serde_json::to_vec(&holder)?;
    json.push(b'\n');
    tmp.write_all(&json)
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    // rename(2) keeps the open file (and its lock): the name appears already locked.
    let file = tmp
        .persist(&path)
        .with_context(|| format!("cannot register this backstop as {}", path.display()))?;
    Ok(Live {
        path,
        holder,
        _file: file,
    })
}

/// The live holders whose roots overlap `root` (equal, ancestor or descendant).
fn holders_overlapping(store: &Path, root: &Path) -> Vec<Holder> {
    let mut out = Vec::new();
    for entry in fs::read_dir(live_dir(store))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "lock") {
            continue;
        }
        let Ok(f) = File::open(&path) else { continue };
        if !held_by_other(&f) {
            continue;
        }
        let Ok(text) = fs::read(&path) else { continue };
        let Ok(h) = serde_json::from_slice::<Holder>(&text) else {
            continue;
        };
        if h.root.starts_with(root) || root.starts_with(&h.root) {
            out.push(h);
        }
    }
    out.sort_by_key(|h| h.since);
    out
}

fn describe(holders: &[Holder]) -> String {
    if holders.is_empty() {
        // Between taking its locks and registering, a holder has no description yet.
        return "a backstop that is just starting".into();
    }
    holders
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether another open file description holds a lock on `f`'s file.
fn held_by_other(f: &File) -> bool {
    match flock(f, libc::LOCK_SH | libc::LOCK_NB) {
        Ok(true) => {
            // Nobody held it: let go at once (closing would too).
            let _ = flock(f, libc::LOCK_UN);
            false
        }
        Ok(false) => true,
        // Cannot tell: say alive, which keeps things (records, waits) rather than losing them.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(root: &Path) -> Holder {
        Holder {
            pid: std::process::id(),
            run_id: None,
            action: "test".into(),
            root: root.to_path_buf(),
            since: SystemTime::now(),
        }
    }

    fn try_lock(store: &Path, root: &Path, token: &str) -> Result<RegionLock> {
        lock(store, root, token, holder(root), Wait::No, |_| {})
    }

    #[test]
    fn overlapping_roots_exclude_each_other_and_siblings_do_not() {
        let store = tempfile::tempdir().unwrap();
        let s = store.path();
        let outer = try_lock(s, Path::new("/x/tree"), "a").unwrap();
        // Descendant, equal: refused while the outer is held.
        assert!(try_lock(s, Path::new("/x/tree/sub"), "b").is_err());
        assert!(try_lock(s, Path::new("/x/tree"), "c").is_err());
        drop(outer);
        let inner = try_lock(s, Path::new("/x/tree/sub"), "b").unwrap();
        // Ancestor refused; a sibling is not.
        let err = try_lock(s, Path::new("/x/tree"), "c").unwrap_err();
        assert!(format!("{err:#}").contains("/x/tree/sub"), "{err:#}");
        let sibling = try_lock(s, Path::new("/x/tree/other"), "d").unwrap();
        assert!(is_live(s, "b") && is_live(s, "d") && !is_live(s, "a"));
        drop((inner, sibling));
        assert!(!is_live(s, "b"));
    }
}
