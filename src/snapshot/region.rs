//! One writer per tree region, and who is alive.
//!
//! A scope root is locked hierarchically: a shared `flock` on every ancestor of the
//! (canonical) root, then an exclusive one on the root itself, taken from `/`
//! downwards. Two roots where one contains the other (or equal roots) then meet on
//! the inner one: the outer holds it shared, the inner wants it exclusive, or the
//! other way round, so the second waits. Disjoint siblings share only ancestors, all
//! shared, so they never wait for each other. Every process takes its locks in the
//! same order (by depth along its own chain), and holds only strict ancestors of the
//! lock it waits for, so no cycle of waiters can form. This does not depend on git:
//! the tree store key (nearest `.git`) plays no part.
//!
//! Each level is locked twice, the same way (shared or exclusive) both times. First
//! the directory itself: opened read-only (`flock` needs a real descriptor, not
//! `O_PATH`), one level at a time from its parent's descriptor without following a
//! symlink. The kernel keys that lock by inode, so it holds whatever store (another
//! `BACKSTOP_HOME`, `sudo`, `--store`) or path (a bind mount) reached the directory.
//! Then a lock file in the store, `<store>/locks/<hash of the path>`, which covers
//! what a directory lock cannot: a directory this user cannot read (skipped), one on
//! a file system that cannot lock it (skipped), one that is gone (undo of a run whose
//! root was removed). Lock files are never deleted (deleting a lock file others may
//! have open would let two processes hold "the same" lock on different inodes).
//!
//! Every holder also registers in `<store>/live/<token>.lock`: a JSON description
//! (pid, run id, action, root, start time) in a file it holds an exclusive `flock` on
//! for its whole life. The file is locked before it gets its name (created under a
//! temporary name, locked, then renamed), so a registry file whose lock can be taken
//! belongs to a dead process. That lock is how a waiter names the holder, and how
//! anyone tells a live run from a dead one: a PID alone can be reused, a lock dies
//! with its holder. A waiter blocked on a directory lock whose holder is not in its
//! own store's registry names "another backstop (using another store)" and the
//! directory.
//!
//! Any user who can read a directory can `flock` it, so a process that holds an
//! exclusive lock on an ancestor of a scope root (another user's run in `/tmp`, or a
//! plain `flock /tmp sleep …`) makes runs below it wait; the wait names the
//! directory, and `--no-wait` fails at once.

use std::ffi::{CStr, CString, OsStr};
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::lock::{Wait, flock};
use super::scope::RootId;
use crate::error::UserError;

/// What a holder tells a waiter about itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The run this process runs, or works on (undo, redo).
    pub run_id: Option<String>,
    /// `run`, `undo`, `redo`, `snapshot`.
    pub action: String,
    #[serde(with = "crate::names::path")]
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
            crate::names::quote_path(&self.root),
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
    let dir = layout::region_locks_dir(store);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let before = Named::now(root);
    // `/`, `/a`, `/a/b`, … root: ancestors first, the root last.
    let mut chain: Vec<&Path> = root.ancestors().collect();
    chain.reverse();
    // Up to two descriptors per level (its lock file and the directory) stay open
    // until the run ends.
    make_room_for(2 * chain.len());
    let mut held = Vec::with_capacity(2 * chain.len());
    // Directories locked so far, by identity, and where in `held` their descriptor is.
    let mut seen: Vec<(DirId, usize)> = Vec::new();
    let mut walk = Walk::default();
    let mut on_wait = Some(on_wait);
    // Whether the lock was taken: a directory's may not be (see `unlockable`).
    let mut take = |file: &File, op: i32, what: Blocked| -> Result<bool> {
        let path = what.path();
        match flock(file, op | libc::LOCK_NB) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(e) if matches!(what, Blocked::Dir(..)) && unlockable(&e) => return Ok(false),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot lock {} for {}", path.display(), root.display())
                });
            }
        }
        let who = blocked_by(store, root, &what, op)?;
        if wait == Wait::No {
            return Err(UserError::Locked(who).into());
        }
        if let Some(f) = on_wait.take() {
            f(&who);
        }
        flock(file, op)
            .with_context(|| format!("cannot lock {} for {}", path.display(), root.display()))?;
        Ok(true)
    };
    for (i, path) in chain.iter().enumerate() {
        let exclusive = i + 1 == chain.len();
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // The directory first, then the store's lock file, at every level: one order
        // for every process. Whoever waits meets the holder on the directory, the
        // lock that every store and every path to it shares, and a waiter holds
        // nothing at the level it waits on that a later comer could wait for.
        let lock_file = open_lock(&dir.join(layout::region_lock_name(path)), path)?;
        if let Some((file, id)) = walk.next(path)? {
            let blocked = Blocked::Dir(path, id, &lock_file);
            match seen.iter().find(|(other, _)| *other == id) {
                // The same directory again, deeper (a directory bind-mounted inside
                // itself): a second `flock` on it would wait for this very process.
                // The first hold stands for both; made exclusive when this is the root.
                Some(&(_, at)) => {
                    if exclusive {
                        take(&held[at], op, blocked)?;
                    }
                }
                None => {
                    if take(&file, op, blocked)? {
                        seen.push((id, held.len()));
                        held.push(file);
                    }
                }
            }
        }
        take(&lock_file, op, Blocked::LockFile(path))?;
        held.push(lock_file);
    }
    before.still(root, &holder.action)?;
    let live = register(store, token, holder)?;
    Ok(RegionLock { _locks: held, live })
}

/// What a root's path names: the directory (by identity) and its real path; `None`
/// when it names no directory (undo and redo then compare the root with the identity
/// their record kept).
struct Named(Option<(RootId, PathBuf)>);

impl Named {
    fn now(root: &Path) -> Named {
        let id = RootId::of(root).ok();
        let real = id.and_then(|_| root.canonicalize().ok());
        Named(id.zip(real))
    }

    /// Refuses when `root` no longer names what it did. The locks are keyed by the
    /// path and taken down it, and a wait for them may be long: meanwhile another
    /// backstop's command may have moved the directory away and put another in its
    /// place, or made a directory above it a symlink (the walk down stops at one),
    /// and the work would land on a directory these locks do not cover.
    fn still(&self, root: &Path, action: &str) -> Result<()> {
        if self.0.is_none() || Named::now(root).0 == self.0 {
            return Ok(());
        }
        // Where it went, when it is the working directory (the usual root).
        let now_at = std::env::current_dir()
            .ok()
            .filter(|cwd| RootId::of(cwd).ok() == self.0.as_ref().map(|(id, _)| *id))
            .map(|cwd| format!(" (it is now {})", crate::names::quote_path(&cwd)))
            .unwrap_or_default();
        anyhow::bail!(
            "{} is no longer the directory it was when this {action} started{now_at}: it was \
             moved, replaced or reached through a new symlink, likely while waiting for the \
             lock; nothing was done: start it again",
            crate::names::quote_path(root)
        )
    }
}

/// Who holds what keeps this from locking `what`, for a message; an error instead
/// when that holder is this process's own caller (see below).
fn blocked_by(store: &Path, root: &Path, what: &Blocked, op: i32) -> Result<String> {
    let holders = match *what {
        Blocked::LockFile(_) => holders_overlapping(store, root, None),
        Blocked::Dir(_, id, _) => holders_overlapping(store, root, Some(id)),
    };
    // A backstop started by the command of a run whose region overlaps this one
    // (`backstop run` inside `backstop run`): that run holds its lock until its
    // command ends, and its command waits for this one. Waiting would never end.
    if let Some(outer) = holders
        .iter()
        .find(|h| crate::reaper::is_our_ancestor(h.pid))
    {
        anyhow::bail!(
            "this backstop was started by the command of {outer}, whose region overlaps {}: \
             that run keeps its lock until its command ends, so waiting would never end. \
             Run this one outside that run, with a scope apart from it, or with \
             `rollback: {{ snapshot: false }}` (no lock)",
            crate::names::quote_path(root)
        );
    }
    Ok(match *what {
        Blocked::LockFile(_) => describe(&holders),
        Blocked::Dir(path, _, lock_file) => {
            match &holders[..] {
                // Whoever holds the directory is in no registry of this store. If
                // it holds this store's lock file too, it is one of ours that has
                // not registered yet (its directory lock comes first); if not, it
                // uses another store.
                [] if held_against(lock_file, op) => "a backstop that is just starting".to_string(),
                [] => format!(
                    "another backstop (using another store) in {}",
                    crate::names::quote_path(path)
                ),
                found => describe(found),
            }
        }
    })
}

/// Whether `flock` on a directory failed because its file system cannot lock one.
/// NFS emulates `flock` with POSIX locks, which want a descriptor open for writing
/// for an exclusive lock (EBADF), and some file systems lock nothing (ENOLCK,
/// EOPNOTSUPP). Such a directory is skipped like an unreadable one: failing would keep
/// backstop from running at all on an NFS home, and the store's lock file still keeps
/// the runs of one store apart there.
fn unlockable(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADF | libc::ENOLCK | libc::EOPNOTSUPP | libc::EINVAL)
    )
}

/// A directory's identity: device and inode.
type DirId = (u64, u64);

/// What a lock request would have waited for.
enum Blocked<'a> {
    LockFile(&'a Path),
    /// A directory, its identity, and the store's lock file for the same level.
    Dir(&'a Path, DirId, &'a File),
}

impl Blocked<'_> {
    fn path(&self) -> &Path {
        match self {
            Blocked::LockFile(p) | Blocked::Dir(p, ..) => p,
        }
    }
}

/// Opens a scope root's chain of directories from `/` down, each from its parent's
/// descriptor and never through a symlink, so the directories locked are the ones a
/// walk down the path meets now, whatever is renamed meanwhile.
#[derive(Default)]
struct Walk {
    /// The last directory reached; `None` before `/`.
    parent: Option<OwnedFd>,
    /// Nothing further down can be reached.
    done: bool,
}

impl Walk {
    /// The next level (`path`, a child of the previous one) opened for `flock`, or
    /// `None` when it is skipped.
    fn next(&mut self, path: &Path) -> Result<Option<(File, DirId)>> {
        if self.done {
            return Ok(None);
        }
        let name = match (&self.parent, path.file_name()) {
            (None, _) => OsStr::new("/"),
            (Some(_), Some(name)) => name,
            // `..` or the like: not a canonical path; the lock files still cover it.
            (Some(_), None) => {
                self.done = true;
                return Ok(None);
            }
        };
        let Ok(cname) = CString::new(name.as_bytes()) else {
            self.done = true;
            return Ok(None);
        };
        use rustix::fs::OFlags;
        let at = self.parent.as_ref().map(|fd| fd.as_fd());
        // Read-only, not O_PATH: flock(2) needs a descriptor opened for real.
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match openat(at, &cname, flags) {
            Ok(fd) => {
                let file = File::from(fd);
                let meta = file
                    .metadata()
                    .with_context(|| format!("cannot read {} to lock it", path.display()))?;
                let walker = file
                    .try_clone()
                    .with_context(|| format!("cannot open {} to lock it", path.display()))?;
                self.parent = Some(walker.into());
                Ok(Some((file, (meta.dev(), meta.ino()))))
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => {
                // Searchable but not readable (a 711 home): it cannot be locked, and
                // is skipped. Runs of this store there still meet on its lock file;
                // a run of another store whose root is exactly this directory does
                // not, which is the best an unreadable directory allows.
                let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                match openat(at, &cname, flags) {
                    Ok(fd) => self.parent = Some(fd),
                    Err(_) => self.done = true,
                }
                Ok(None)
            }
            // Gone, or no longer a directory (a symlink now): there is nothing below
            // to lock. Undo of a run whose root was removed or swapped gets here;
            // whether to write there is for the put-back to decide, and the lock
            // files still keep the region's writers apart.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) =>
            {
                self.done = true;
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("cannot open {} to lock it", path.display())),
        }
    }
}

/// `openat(2)` below `at` (the working directory when `None`), again on EINTR.
fn openat(
    at: Option<std::os::fd::BorrowedFd<'_>>,
    name: &CStr,
    flags: rustix::fs::OFlags,
) -> std::io::Result<OwnedFd> {
    loop {
        let opened = match at {
            Some(dir) => rustix::fs::openat(dir, name, flags, rustix::fs::Mode::empty()),
            None => rustix::fs::openat(rustix::fs::CWD, name, flags, rustix::fs::Mode::empty()),
        };
        match opened {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(std::io::Error::from),
        }
    }
}

/// Raises the soft limit on open files when a deep root needs more than it allows.
/// Only then: the command inherits the limit, and some programs behave differently
/// above the usual 1,024.
fn make_room_for(fds: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    // What backstop itself keeps open besides the locks (store, pipes, walks).
    let want = u64::try_from(fds).unwrap_or(u64::MAX).saturating_add(256);
    let mut lim = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    if lim.current.is_none_or(|cur| cur >= want) {
        return;
    }
    lim.current = Some(lim.maximum.map_or(want, |max| want.min(max)));
    // If it fails, opening a lock fails later with "too many open files", naming the
    // directory.
    let _ = setrlimit(Resource::Nofile, lim);
}

/// The action of a run that took no snapshot: registered so that it is known to be
/// alive (`runs` says running, gc keeps its record), but it holds no region, and is
/// never named as holding one.
pub const UNPROTECTED: &str = "run without a snapshot";

/// A registration in the live registry with no region: for a run that takes no
/// snapshot. Dropped, the registration goes.
pub struct Registered {
    _live: Live,
}

/// Registers run `id` (working in `dir`) as alive, locking nothing else.
pub fn register_unprotected(store: &Path, id: &str, dir: &Path) -> Result<Registered> {
    let holder = Holder {
        pid: std::process::id(),
        run_id: Some(id.to_string()),
        action: UNPROTECTED.into(),
        root: dir.to_path_buf(),
        since: SystemTime::now(),
    };
    Ok(Registered {
        _live: register(store, id, holder)?,
    })
}

/// Whether the run `id` is alive: its registry file exists and its lock is held.
pub fn is_live(store: &Path, id: &str) -> bool {
    // Ids are hex; anything else cannot name a registry file of ours.
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return false;
    }
    match File::open(layout::live_file(store, id)) {
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
        if path
            .extension()
            .is_some_and(|x| x == layout::LIVE_EXTENSION)
            && let Ok(f) = File::open(&path)
            && !held_by_other(&f)
        {
            // Its holder is gone and its name is never reused: nobody can lock it again.
            let _ = fs::remove_file(&path);
        }
    }
}

use crate::store::layout::{self, live_dir};

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
        .prefix(layout::TMP_PREFIX)
        .tempfile_in(&dir)
        .with_context(|| format!("cannot register this backstop in {}", dir.display()))?;
    let path = layout::live_file(store, token);
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

/// The live holders whose roots overlap `root` (equal, ancestor or descendant), or,
/// given the directory `through` that a lock request found held, whose root is that
/// directory or below it by whatever path (a bind mount, a symlink) they reached it.
fn holders_overlapping(store: &Path, root: &Path, through: Option<DirId>) -> Vec<Holder> {
    let mut out = Vec::new();
    for entry in fs::read_dir(live_dir(store))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != layout::LIVE_EXTENSION) {
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
        if h.action == UNPROTECTED {
            continue;
        }
        if h.root.starts_with(root)
            || root.starts_with(&h.root)
            || through.is_some_and(|id| passes_through(&h.root, id))
        {
            out.push(h);
        }
    }
    out.sort_by_key(|h| h.since);
    out
}

/// Whether `root` or one of its ancestors is the directory `id`.
fn passes_through(root: &Path, id: DirId) -> bool {
    root.ancestors()
        .any(|p| fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == id))
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

/// Whether another open file description holds a lock on `f`'s file that keeps `op`
/// (`LOCK_SH` or `LOCK_EX`) from being taken. Only a question: nothing stays locked.
fn held_against(f: &File, op: i32) -> bool {
    match flock(f, op | libc::LOCK_NB) {
        Ok(true) => {
            let _ = flock(f, libc::LOCK_UN);
            false
        }
        Ok(false) => true,
        Err(_) => false,
    }
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

    #[test]
    fn real_directories_exclude_each_other_across_stores_and_name_the_directory() {
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path().canonicalize().unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::create_dir(root.join("sub2")).unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let outer = try_lock(a.path(), &root, "a").unwrap();
        let err = try_lock(b.path(), &root.join("sub"), "b").unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!(
                "another backstop (using another store) in {}",
                root.display()
            )),
            "{err:#}"
        );
        drop(outer);
        let inner = try_lock(b.path(), &root.join("sub"), "b").unwrap();
        // The other store's sibling is not kept out; its ancestor is.
        let sibling = try_lock(a.path(), &root.join("sub2"), "c").unwrap();
        assert!(try_lock(a.path(), &root, "d").is_err());
        drop((inner, sibling));
        try_lock(a.path(), &root, "d").unwrap();
    }

    #[test]
    fn a_directory_held_by_this_store_before_it_registers_is_not_called_another_store() {
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path().canonicalize().unwrap();
        let store = tempfile::tempdir().unwrap();
        fs::create_dir(layout::region_locks_dir(store.path())).unwrap();
        // What a holder of this store has between its locks and its registry entry.
        let dir = File::open(&root).unwrap();
        assert!(flock(&dir, libc::LOCK_EX).unwrap());
        let file = open_lock(
            &layout::region_locks_dir(store.path()).join(layout::region_lock_name(&root)),
            &root,
        )
        .unwrap();
        assert!(flock(&file, libc::LOCK_EX).unwrap());
        let err = try_lock(store.path(), &root, "x").unwrap_err();
        assert!(format!("{err:#}").contains("just starting"), "{err:#}");
    }
}
