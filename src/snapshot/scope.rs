//! What a snapshot covers, and the walk that lists it.
//!
//! The scope is a root directory less `.git` (never snapshotted, never restored),
//! the store itself if it lies inside, the policy's `exclude` globs and, unless
//! `ignored: include`, whatever `.gitignore`, `.ignore` and `.git/info/exclude` say.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use ignore::overrides::{Override, OverrideBuilder};

use super::manifest::{Kind, Meta};
use super::objects::Stamp;
use super::rules::{Matcher, Rules};
use super::walk::{self, Filter, Found, Since};
use super::watch::{Pass, Watch, parent};

/// Below this many entries in the last snapshot, the walk stays on one thread (and a
/// run keeps no change feed: walking the tree again costs less than watching it).
pub const SMALL_TREE: usize = 2000;

#[derive(Clone, Debug)]
pub struct Scope {
    /// Absolute.
    pub root: PathBuf,
    /// gitignore-style globs, relative to the root.
    pub exclude: Vec<String>,
    /// Leave out what ignore files name.
    pub respect_ignored: bool,
    /// Larger files are recorded but not kept.
    pub max_file_size: u64,
    /// The most one snapshot may copy into the store.
    pub max_total_size: u64,
    /// Never walked: the store, when it lies inside the root.
    pub store: Option<PathBuf>,
    /// The ignore rules fixed when the run's first snapshot was taken; `None`: read
    /// them from the tree (and keep what was read, see [`Walked::rules`]).
    pub rules: Option<Arc<Rules>>,
    /// The root's device and inode when the scope was fixed: a put-back refuses a
    /// root that is no longer that directory.
    pub identity: Option<RootId>,
}

/// What a walk found, and the ignore rules it went by.
pub struct Walked {
    pub seen: Vec<Seen>,
    /// Whether a directory walked held a `.gitattributes`, in scope or left out
    /// (`Some`), and whether one was not a regular file (`Some(true)`).
    pub attributes: Option<bool>,
    /// The rules read from the tree, when the scope had none fixed.
    pub rules: Option<Rules>,
    /// Paths stat'ed directly, their directory not read (no watch covers them).
    pub unwatched: std::collections::HashSet<Vec<u8>>,
}

/// A path as the walk saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub stamp: Stamp,
    pub meta: Meta,
}

/// What a walk found before the last snapshot's paths are looked at (see
/// [`Scope::walk_whole`]).
pub(super) struct Raw {
    found: Found,
    matcher: Option<Matcher>,
}

impl Walked {
    /// A walk that found nothing, for these errors.
    fn failed(errors: Vec<anyhow::Error>) -> (Walked, Vec<anyhow::Error>) {
        (
            Walked {
                seen: Vec::new(),
                attributes: None,
                rules: None,
                unwatched: Default::default(),
            },
            errors,
        )
    }
}

impl Seen {
    /// The path as an entry recorded it (what a walk would see if it has not changed).
    pub fn of_entry(e: &super::manifest::Entry) -> Seen {
        Seen {
            path: e.path.clone(),
            kind: e.kind,
            mode: e.mode,
            stamp: Stamp {
                size: e.size,
                mtime_ns: e.mtime_ns,
                ctime_ns: e.ctime_ns,
                ino: e.ino,
            },
            meta: e.meta,
        }
    }

    /// The manifest entry for this path as seen, holding `content`.
    pub fn into_entry(self, content: super::manifest::Content) -> super::manifest::Entry {
        super::manifest::Entry {
            path: self.path,
            kind: self.kind,
            mode: self.mode,
            size: self.stamp.size,
            mtime_ns: self.stamp.mtime_ns,
            ctime_ns: self.stamp.ctime_ns,
            ino: self.stamp.ino,
            content,
            meta: self.meta,
        }
    }

    /// Whether `e` recorded this path with the same stat (type, mode, size, times,
    /// inode): unchanged since, as far as a stat can tell.
    pub fn same_stat(&self, e: &super::manifest::Entry) -> bool {
        e.kind == self.kind
            && e.mode == self.mode
            && e.size == self.stamp.size
            && e.mtime_ns == self.stamp.mtime_ns
            && e.ctime_ns == self.stamp.ctime_ns
            && e.ino == self.stamp.ino
    }

    /// [`Seen::of`] from a `statx(2)` (what `std` builds its metadata from): the same
    /// fields, the same values.
    pub(super) fn of_statx(path: Vec<u8>, s: &rustix::fs::Statx) -> Option<Seen> {
        let mode = u32::from(s.stx_mode);
        let ns = |t: &rustix::fs::StatxTimestamp| {
            super::objects::Stamp::ns(t.tv_sec, i64::from(t.tv_nsec))
        };
        Some(Seen {
            path,
            kind: Kind::of_mode(mode)?,
            mode: mode & 0o7777,
            stamp: Stamp {
                size: s.stx_size,
                mtime_ns: ns(&s.stx_mtime),
                ctime_ns: ns(&s.stx_ctime),
                ino: s.stx_ino,
            },
            meta: Meta {
                uid: s.stx_uid,
                gid: s.stx_gid,
                nlink: s.stx_nlink,
                dev: rustix::fs::makedev(s.stx_dev_major, s.stx_dev_minor),
                rdev: rustix::fs::makedev(s.stx_rdev_major, s.stx_rdev_minor),
            },
        })
    }

    pub(super) fn of(path: Vec<u8>, m: &fs::Metadata) -> Option<Seen> {
        let ft = m.file_type();
        let kind = Kind::of(ft)?;
        Some(Seen {
            path,
            kind,
            mode: m.mode() & 0o7777,
            stamp: Stamp::of(m),
            meta: Meta::of(m),
        })
    }
}

impl Scope {
    pub fn abs(&self, rel: &[u8]) -> PathBuf {
        self.root.join(std::ffi::OsStr::from_bytes(rel))
    }

    /// Whether a relative path is one the scope may contain (not `.git`, not the store).
    pub fn allows(&self, rel: &[u8]) -> bool {
        !rel.split(|b| *b == b'/').any(|c| c == b".git")
            && self
                .store
                .as_ref()
                .is_none_or(|s| !self.abs(rel).starts_with(s))
    }

    /// Every path in scope, sorted by path bytes; and `also`, each checked directly
    /// even if the ignore rules now leave it out (so a run cannot hide a change to a
    /// path the snapshot before it had by editing `.gitignore`).
    pub fn walk(&self, also: &[&[u8]]) -> Result<Walked> {
        self.walk_watched(also, None)
    }

    /// [`Scope::walk`], watching each directory read with `watch`.
    pub fn walk_watched(&self, also: &[&[u8]], watch: Option<&Watch>) -> Result<Walked> {
        self.strictly(self.walk_with(also, true, watch, None))
    }

    /// Like [`Scope::walk`], but goes on past what it cannot read: for a rollback,
    /// which must find what it can, not stop at the first unreadable path.
    /// Returns, beside what it found, what it could not read.
    pub fn walk_best_effort(&self, also: &[&[u8]]) -> (Vec<Seen>, Vec<String>) {
        let (walked, errors) = self.walk_with(also, false, None, None);
        (
            walked.seen,
            errors.iter().map(|e| format!("{e:#}")).collect(),
        )
    }

    fn walk_with(
        &self,
        also: &[&[u8]],
        strict: bool,
        watch: Option<&Watch>,
        since: Option<&Since>,
    ) -> (Walked, Vec<anyhow::Error>) {
        match self.walk_raw(also.len(), strict, watch, since) {
            Ok(raw) => self.finish_walk(raw, also, strict, since),
            Err(errors) => Walked::failed(errors),
        }
    }

    /// A whole walk of the scope, watching each directory read with `watch`, while
    /// the last snapshot is read elsewhere: `known` paths, as its header says. Its
    /// paths are looked at once it is read ([`Scope::finish_whole`]).
    pub(super) fn walk_whole(&self, known: usize, watch: Option<&Watch>) -> Result<Raw> {
        self.walk_raw(known, true, watch, None)
            .map_err(|mut errors| self.walk_error(errors.remove(0)))
    }

    /// [`Scope::walk_whole`]'s findings with `also` (the last snapshot's paths)
    /// looked at: a [`Scope::walk_watched`].
    pub(super) fn finish_whole(&self, raw: Raw, also: &[&[u8]]) -> Result<Walked> {
        self.strictly(self.finish_walk(raw, also, true, None))
    }

    /// A strict walk's findings, or the first thing that stopped it.
    fn strictly(&self, (walked, errors): (Walked, Vec<anyhow::Error>)) -> Result<Walked> {
        match errors.into_iter().next() {
            Some(e) => Err(self.walk_error(e)),
            None => Ok(walked),
        }
    }

    fn walk_error(&self, e: anyhow::Error) -> anyhow::Error {
        e.context(format!("cannot walk {}", self.root.display()))
    }

    /// The walk itself; `known`, how many paths the last snapshot had (0: none), sets
    /// how many threads walk. `Err` with what stopped a `strict` walk.
    fn walk_raw(
        &self,
        known: usize,
        strict: bool,
        watch: Option<&Watch>,
        since: Option<&Since>,
    ) -> std::result::Result<Raw, Vec<anyhow::Error>> {
        let overrides = self.overrides().map_err(|e| vec![e])?;
        // The ignore rules are ours, not the walker's: they are read once and then
        // fixed for the run (see `rules.rs`).
        let matcher = self.respect_ignored.then(|| match &self.rules {
            Some(rules) => Matcher::fixed(&self.root, Arc::clone(rules)),
            None => Matcher::from_disk(&self.root),
        });
        // The first walk of a run keeps what the rules and `exclude` leave out (names
        // and inodes, not contents): a put-back never destroys one that a run moved
        // into the scope, and says so when one is gone.
        let filter = Filter {
            store: self.store.as_ref().and_then(|s| {
                s.strip_prefix(&self.root)
                    .ok()
                    .map(|r| r.as_os_str().as_bytes().to_vec())
            }),
            overrides: &overrides,
            matcher: matcher.as_ref(),
            keep_pruned: self.rules.is_none() && since.is_none(),
            watch,
            since,
        };
        // A small tree (as the last snapshot knew it) is walked before threads could start.
        // Two threads at most: a walk is mostly system calls, which a third core (where
        // there is one) only adds contention to.
        // With no last snapshot (the first of a tree) the walk grows to two threads once
        // it has seen that many entries.
        let two = || super::cores().min(2);
        // A walk of what changed reads few directories, each soon done: one thread.
        let (threads, grow_after) = match (since, known) {
            (Some(s), _) if s.lists.len() < 64 => (1, None),
            (Some(_), _) => (two(), None),
            (None, 0) => (two(), Some(SMALL_TREE)),
            (None, n) if n < SMALL_TREE => (1, None),
            (None, _) => (two(), None),
        };
        let found = walk::walk(&self.root, &filter, threads, grow_after, strict, known);
        if strict && !found.errors.is_empty() {
            return Err(found.errors);
        }
        Ok(Raw { found, matcher })
    }

    /// The rest of a walk: what changed merged into the last walk (`since`), `also`
    /// looked at, the rules read.
    fn finish_walk(
        &self,
        raw: Raw,
        also: &[&[u8]],
        strict: bool,
        since: Option<&Since>,
    ) -> (Walked, Vec<anyhow::Error>) {
        let Raw { found, matcher } = raw;
        let Found {
            seen: mut found,
            mut pruned,
            mut errors,
            attributes,
            odd_attributes,
            descended,
        } = found;
        if let Some(since) = since {
            found = self.since_seen(since, &descended, found);
        }
        // `found` comes sorted by path.
        let unwatched = match self.stat_missing(&mut found, also, strict, &mut errors) {
            Ok(unwatched) => unwatched,
            Err(e) => return Walked::failed(vec![e]),
        };
        let rules = match (&self.rules, matcher) {
            (Some(_), _) => None,
            (None, m) => {
                let mut rules = m.map(|m| m.rules()).unwrap_or_default();
                pruned.sort_by(|a, b| a.path.cmp(&b.path));
                rules.pruned = pruned;
                Some(rules)
            }
        };
        (
            Walked {
                seen: found,
                attributes: attributes.then_some(odd_attributes),
                rules,
                unwatched,
            },
            errors,
        )
    }

    /// The policy's `exclude` globs, as the walker takes them.
    fn overrides(&self) -> Result<Override> {
        let mut overrides = OverrideBuilder::new(&self.root);
        for pattern in &self.exclude {
            if let Err(e) = overrides.add(&format!("!{pattern}")) {
                return Err(anyhow!("invalid exclude pattern `{pattern}`: {e}"));
            }
        }
        overrides
            .build()
            .map_err(|e| anyhow!("invalid exclude patterns: {e}"))
    }

    /// Adds each of `also` the walk did not find, checked directly, and keeps `found`
    /// sorted (it comes sorted). `Err` when `strict` and one cannot be read; otherwise
    /// that goes to `errors`. Returns the paths it added.
    fn stat_missing(
        &self,
        found: &mut Vec<Seen>,
        also: &[&[u8]],
        strict: bool,
        errors: &mut Vec<anyhow::Error>,
    ) -> Result<std::collections::HashSet<Vec<u8>>> {
        let missing = not_in(found, also);
        let mut added = std::collections::HashSet::new();
        if missing.is_empty() {
            return Ok(added);
        }
        for path in missing {
            match self.stat(&path) {
                Ok(Some(seen)) => {
                    added.insert(seen.path.clone());
                    found.push(seen);
                }
                Ok(None) => {}
                Err(e) if strict => return Err(e),
                Err(e) => errors.push(e),
            }
        }
        found.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        found.dedup_by(|a, b| a.path == b.path);
        Ok(added)
    }

    /// What changed since the walk `pass` starts from, found as a whole walk would find
    /// it now: the directories the feed names are listed again (and what is new below
    /// them read whole), the paths it names, and those it cannot vouch for, stat'ed
    /// again; the rest is as the last walk recorded it. `Err` when a directory could not
    /// be read: a whole walk is then taken instead.
    pub fn walk_since(&self, pass: &Pass, also: &[&[u8]], watch: &Watch) -> Result<Walked> {
        let changed = &pass.changed;
        let mut lists: std::collections::HashSet<Vec<u8>> = changed.lists.clone();
        lists.extend(changed.deep.iter().map(|d| parent(d).to_vec()));
        // A directory below one read whole is read with it.
        lists.retain(|d| !under_any(d, &changed.deep));
        // One that is no longer a directory holds nothing: what it held is looked for
        // directly (and found gone).
        let mut gone = std::collections::HashSet::new();
        for d in &lists {
            if !d.is_empty() && !self.stat(d)?.is_some_and(|s| s.kind == Kind::Dir) {
                gone.insert(d.clone());
            }
        }
        lists.retain(|d| !gone.contains(d));
        let deep: std::collections::HashSet<Vec<u8>> =
            changed.deep.iter().chain(&gone).cloned().collect();
        let since = Since {
            lists,
            deep: &deep,
            base: &pass.base,
            names: &changed.names,
            unwatched: &pass.unwatched,
            linked: &changed.linked,
        };
        let mut walked = self.strictly(self.walk_with(also, true, Some(watch), Some(&since)))?;
        walked.attributes = match (pass.attributes, walked.attributes) {
            (a, None) => a,
            (a, Some(odd)) => Some(odd || a == Some(true)),
        };
        // Those still there are still looked at directly.
        let still: Vec<Vec<u8>> = pass
            .unwatched
            .iter()
            .filter(|p| {
                walked
                    .seen
                    .binary_search_by(|s| s.path.as_slice().cmp(p))
                    .is_ok()
            })
            .cloned()
            .collect();
        walked.unwatched.extend(still);
        Ok(walked)
    }

    /// The whole tree, from what a [`Since`] walk read (`found`, sorted) and the last
    /// walk's entries it did not read again.
    fn since_seen(&self, since: &Since, descended: &[Vec<u8>], found: Vec<Seen>) -> Vec<Seen> {
        let base = &since.base.entries;
        let mut covered = vec![false; base.len()];
        for x in since.deep.iter().chain(descended) {
            mark(base, x, false, &mut covered);
        }
        for d in &since.lists {
            mark(base, d, true, &mut covered);
        }
        let mut again = vec![false; base.len()];
        let listed = since.lists.iter().filter(|d| !d.is_empty());
        for p in since.names.iter().chain(since.unwatched).chain(listed) {
            if let Ok(i) = base.binary_search_by(|e| e.path.as_slice().cmp(p)) {
                again[i] = true;
            }
        }
        // What is stat'ed again because the feed named it, first: a file now found with
        // another name has each of its names in the tree looked at too, as has every
        // file read again by the walk with another name (its other name may be one
        // the feed said nothing of: a rename exchange, a directory moved over another).
        let looked: HashMap<usize, Option<Seen>> = again
            .iter()
            .enumerate()
            .filter(|(i, a)| **a && !covered[*i])
            .map(|(i, _)| (i, self.stat(&base[i].path).ok().flatten()))
            .collect();
        let mut linked = since.linked.clone();
        linked.extend(
            found
                .iter()
                .chain(looked.values().flatten())
                .filter(|s| s.kind != Kind::Dir && s.meta.nlink > 1)
                .map(|s| s.stamp.ino),
        );
        // One list, both sorted by path merged as they go (no second copy of the tree).
        let mut seen = Vec::with_capacity(base.len() + found.len());
        let mut found = found.into_iter().peekable();
        for (i, e) in base.iter().enumerate() {
            while let Some(f) = found.next_if(|f| f.path < e.path) {
                seen.push(f);
            }
            if covered[i] {
                continue;
            }
            // Another name may be outside every watched directory: always looked at.
            let other_name = e.kind != Kind::Dir && (e.meta.nlink > 1 || linked.contains(&e.ino));
            // Unreadable now: looked for again by the caller (`also`), strictly.
            let now = match looked.get(&i) {
                Some(now) => now.clone(),
                None if other_name => self.stat(&e.path).ok().flatten(),
                None => Some(Seen::of_entry(e)),
            };
            seen.extend(now);
        }
        seen.extend(found);
        seen.dedup_by(|a, b| a.path == b.path);
        seen
    }

    /// One path, directly; `None` if it does not exist in the tree — including when a
    /// directory above it is now a symlink or a file, which lstat would follow out.
    /// Its directory is opened from the root through no symlink and the path stat'ed
    /// through it: a directory swapped for a symlink between a check and the stat
    /// cannot lead it out of the tree.
    pub fn stat(&self, rel: &[u8]) -> Result<Option<Seen>> {
        let (dir, name) = split_last(rel);
        let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY;
        let fd = match walk::open_in_tree(&self.root, dir, flags) {
            Ok(fd) => fd,
            Err(e) if gone_or_blocked(&e) => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", self.abs(dir).display()));
            }
        };
        match walk::stat_at(&fd, &self.abs(dir), name) {
            Ok(seen) => Ok(seen.map(|s| Seen {
                path: rel.to_vec(),
                ..s
            })),
            Err(e) if gone_or_blocked(&e) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", self.abs(rel).display())),
        }
    }

    /// The file `rel` opened for reading, from the root through no symlink (see
    /// [`Scope::stat`]); non-blocking, so a FIFO put in its place does not hang the
    /// reader.
    pub fn open_file(&self, rel: &[u8]) -> std::io::Result<fs::File> {
        use rustix::fs::OFlags;
        walk::open_in_tree(&self.root, rel, OFlags::RDONLY | OFlags::NONBLOCK).map(fs::File::from)
    }

    /// The target of the symlink `rel`, read through its directory opened from the
    /// root through no symlink.
    pub fn read_link(&self, rel: &[u8]) -> std::io::Result<Vec<u8>> {
        let (dir, name) = split_last(rel);
        let flags = rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY;
        let fd = walk::open_in_tree(&self.root, dir, flags)?;
        let target = rustix::fs::readlinkat(&fd, std::ffi::OsStr::from_bytes(name), Vec::new())?;
        Ok(target.into_bytes())
    }
}

/// A path's directory and name (the directory empty at the top of the tree).
fn split_last(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&b""[..], rel),
    }
}

/// Not there, or not reachable through directories alone (a file or a symlink where
/// a directory was): either way not in the tree.
fn gone_or_blocked(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
    )
}

/// Whether `path` is one of `dirs` or lies below one.
fn under_any(path: &[u8], dirs: &std::collections::HashSet<Vec<u8>>) -> bool {
    let mut p = path;
    loop {
        if dirs.contains(p) {
            return true;
        }
        if p.is_empty() {
            return false;
        }
        p = parent(p);
    }
}

/// Marks in `covered` the entries of `base` (sorted by path) below `dir`: all of them,
/// or (`children`) only those directly in it.
fn mark(base: &[super::manifest::Entry], dir: &[u8], children: bool, covered: &mut [bool]) {
    let prefix: Vec<u8> = match dir {
        [] => Vec::new(),
        _ => [dir, b"/"].concat(),
    };
    let start = base.partition_point(|e| e.path.as_slice() < prefix.as_slice());
    for (i, e) in base.iter().enumerate().skip(start) {
        let Some(rest) = e.path.strip_prefix(prefix.as_slice()) else {
            break;
        };
        if !children || !rest.contains(&b'/') {
            covered[i] = true;
        }
    }
}

/// The paths of `also` that `found` (sorted by path) lacks. `also` is a manifest's
/// paths, sorted too, so one pass over both does it, one comparison of each pair of
/// paths (they are long and far apart in memory); a path the pass does not meet is
/// looked up, so any order is still answered right (out of order, the pass may have
/// gone by it) without a pass of its own to check the order.
fn not_in(found: &[Seen], also: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut missing = Vec::new();
    let mut f = found.iter().map(|s| s.path.as_slice()).peekable();
    for p in also {
        let mut there = false;
        while let Some(q) = f.peek() {
            match (*q).cmp(*p) {
                std::cmp::Ordering::Less => {
                    f.next();
                }
                std::cmp::Ordering::Equal => {
                    there = true;
                    break;
                }
                std::cmp::Ordering::Greater => break,
            }
        }
        if !there
            && found
                .binary_search_by(|s| s.path.as_slice().cmp(*p))
                .is_err()
        {
            missing.push(p.to_vec());
        }
    }
    missing
}

/// Which directory a scope root is: its device and inode, so a root moved away or
/// swapped for a symlink after its snapshot is told from the one that was snapshotted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootId {
    pub dev: u64,
    pub ino: u64,
}

impl RootId {
    /// The directory at `root`, which must be a directory and not a symlink.
    pub fn of(root: &std::path::Path) -> Result<RootId> {
        let m = fs::symlink_metadata(root)
            .with_context(|| format!("cannot read {}", root.display()))?;
        anyhow::ensure!(m.is_dir(), "{} is not a directory", root.display());
        Ok(RootId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    pub fn of_file(dir: &fs::File) -> Result<RootId> {
        let m = dir.metadata().context("cannot read the scope root")?;
        Ok(RootId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// What stands above a path inside a tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ancestors {
    /// Every directory above it is a real directory.
    Real,
    /// One is missing (and can be created).
    Missing,
    /// One is a symlink or not a directory: the path is not in the tree.
    Blocked,
}

/// Looks at each directory above `rel` without following symlinks.
pub fn ancestors(root: &std::path::Path, rel: &[u8]) -> Result<Ancestors> {
    let parts: Vec<&[u8]> = rel.split(|b| *b == b'/').collect();
    let mut path = root.to_path_buf();
    for part in &parts[..parts.len().saturating_sub(1)] {
        path.push(std::ffi::OsStr::from_bytes(part));
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(Ancestors::Blocked),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ancestors::Missing),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    Ok(Ancestors::Real)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(path: &str) -> Seen {
        Seen {
            path: path.as_bytes().to_vec(),
            kind: Kind::File,
            mode: 0o644,
            stamp: Stamp {
                size: 1,
                mtime_ns: 2,
                ctime_ns: 3,
                ino: 4,
            },
            meta: Meta {
                uid: 0,
                gid: 0,
                nlink: 1,
                dev: 5,
                rdev: 0,
            },
        }
    }

    /// `not_in` answers exactly whatever the order of `also`: one pass when it is
    /// sorted, a lookup for each path the pass did not meet otherwise.
    #[test]
    fn not_in_is_exact_in_any_order() {
        let found: Vec<Seen> = ["a", "a/b", "a0", "c", "e"].map(seen).to_vec();
        let lacks = |also: &[&str]| {
            let also: Vec<&[u8]> = also.iter().map(|p| p.as_bytes()).collect();
            not_in(&found, &also)
                .into_iter()
                .map(|p| String::from_utf8(p).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            lacks(&["a", "a/b", "b", "c", "d", "e", "f"]),
            ["b", "d", "f"]
        );
        assert_eq!(lacks(&["e", "c", "a", "zz", "a/b", "0"]), ["zz", "0"]);
        assert_eq!(lacks(&["c", "c", "b", "b"]), ["b", "b"]);
        assert!(lacks(&[]).is_empty());
    }
}
