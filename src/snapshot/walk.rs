//! The walk itself: every directory of a scope read once, on up to two threads, and
//! every entry kept stat'ed relative to the directory just read.
//!
//! Why not the `ignore` crate's walker, which the scope used before: it stats by the
//! full path (`lstat("/root/a/b/c/name")`), so the kernel resolves every component of
//! every path again, and it hands entries to one shared list under a lock. An
//! unchanged tree costs a protected run two walks, and those lookups were a fifth of
//! them. Here a directory is opened once, from the root and through no symlink (a
//! directory swapped for one mid-walk is refused, never listed through the link), its
//! entries are read with `getdents64` into a buffer each thread keeps and stat'ed
//! through it (`statx(dirfd, name, AT_SYMLINK_NOFOLLOW)`, as `find` does), each thread
//! keeps its own list, and entries left out are never stat'ed (the directory entry's
//! type decides, as before). The sorted list is put together from each directory's
//! sorted listing ([`in_tree_order`]), never sorted whole.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Condvar, Mutex};

use anyhow::anyhow;
use ignore::overrides::Override;

use super::manifest::{Kind, Manifest};
use super::rules::{InDir, Matcher, Pruned};
use super::scope::Seen;
use super::watch::Watch;

/// What a walk leaves out: `.git` anywhere, the store, `exclude`, the ignore rules.
pub(super) struct Filter<'a> {
    /// The store's path relative to the root, when it lies inside.
    pub store: Option<Vec<u8>>,
    pub overrides: &'a Override,
    pub matcher: Option<&'a Matcher>,
    /// Keep what `exclude` and the ignore rules leave out (names and inodes).
    pub keep_pruned: bool,
    /// Watch each directory before it is listed (see `watch.rs`).
    pub watch: Option<&'a Watch>,
    /// Read only what changed since the last walk (see [`Since`]); `None`: the whole tree.
    pub since: Option<&'a Since<'a>>,
}

/// A walk of what changed since the last one: the directories to list again, and
/// below them only the directories that are new, replaced, or made, removed or moved
/// (`deep`); those are read whole.
pub(super) struct Since<'a> {
    pub lists: std::collections::HashSet<Vec<u8>>,
    pub deep: &'a std::collections::HashSet<Vec<u8>>,
    pub base: &'a Manifest,
    /// Paths of `base` to stat again: the feed named them.
    pub names: &'a std::collections::HashSet<Vec<u8>>,
    /// ... and those no watch covers.
    pub unwatched: &'a std::collections::HashSet<Vec<u8>>,
    /// ... and those whose inode got another name (their inode numbers).
    pub linked: &'a std::collections::HashSet<u64>,
}

impl Since<'_> {
    /// Whether `rel`, a directory found listing `dir`, is read too.
    fn descends(&self, dir: &[u8], rel: &[u8], ino: u64) -> bool {
        !self.lists.contains(dir)
            || self.deep.contains(rel)
            || !self
                .base
                .find(rel)
                .is_some_and(|e| e.kind == Kind::Dir && e.ino == ino)
    }
}

impl Filter<'_> {
    /// Whether `rel` is left out by `exclude` or the ignore rules (not `.git` or the
    /// store, which are never kept as pruned).
    fn left_out(&self, rules: Option<&InDir>, rel: &[u8], is_dir: bool) -> bool {
        // Override strips the root from an absolute path; a relative one is matched as is.
        (!self.overrides.is_empty()
            && self
                .overrides
                .matched(Path::new(OsStr::from_bytes(rel)), is_dir)
                .is_ignore())
            || self
                .matcher
                .zip(rules)
                .is_some_and(|(m, rules)| m.ignored_in(rules, rel, is_dir))
    }
}

/// What one walk found: kept entries sorted by path, what was left out (when kept),
/// and what could not be read.
#[derive(Default)]
pub(super) struct Found {
    pub seen: Vec<Seen>,
    pub pruned: Vec<Pruned>,
    pub errors: Vec<anyhow::Error>,
    /// A directory read held a `.gitattributes` (in scope or left out).
    pub attributes: bool,
    /// ... that was not a regular file (a FIFO would block whoever reads it).
    pub odd_attributes: bool,
    /// The directories a [`Since`] walk read whole below a directory it listed again.
    pub descended: Vec<Vec<u8>>,
}

/// The directories waiting to be read, and how many are being read now: the walk is
/// over when both are none.
struct Queue {
    dirs: Vec<Vec<u8>>,
    busy: usize,
    quit: bool,
    /// Threads waiting for a directory: none, and a directory done wakes no one (a
    /// wake is a system call, and a walk does 6,000 of them for nothing otherwise).
    waiting: usize,
}

/// A directory being read. Dropped when it is done, even by a panic (which stops the
/// walk): the other threads never wait for a directory no one is reading.
struct Busy<'w, 'a> {
    walker: &'w Walker<'a>,
    subdirs: Vec<Vec<u8>>,
    go_on: bool,
}

impl Drop for Busy<'_, '_> {
    fn drop(&mut self) {
        let go_on = self.go_on && !std::thread::panicking();
        self.walker.done(std::mem::take(&mut self.subdirs), go_on);
    }
}

struct Walker<'a> {
    root: &'a Path,
    /// `root`, open.
    root_fd: std::os::fd::OwnedFd,
    filter: &'a Filter<'a>,
    strict: bool,
    /// Trust the type the listing gives (see [`walk_with`]).
    d_type: bool,
    /// Entries each thread's list has room for at the start (see [`walk`]).
    expect: usize,
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// One directory's kept entries: `seen[start..end]` of the thread that read it,
/// sorted by path.
struct Listing {
    dir: Vec<u8>,
    start: usize,
    end: usize,
}

/// What one thread read.
#[derive(Default)]
struct Share {
    found: Found,
    listings: Vec<Listing>,
}

/// Walks `root` on `threads` threads (this one among them), the others started only
/// once `grow_after` entries are found when it is given; `strict` stops at the first
/// error, otherwise every readable entry is found.
/// `expect`, how many entries the last walk found (0: none known), gives each thread
/// room for them at the start.
pub(super) fn walk(
    root: &Path,
    filter: &Filter,
    threads: usize,
    grow_after: Option<usize>,
    strict: bool,
    expect: usize,
) -> Found {
    walk_with(root, filter, threads, grow_after, strict, expect, true)
}

/// [`walk`], trusting the type a directory listing gives (`d_type`) or not: a
/// filesystem that gives none is then walked as this one would be.
fn walk_with(
    root: &Path,
    filter: &Filter,
    threads: usize,
    grow_after: Option<usize>,
    strict: bool,
    expect: usize,
    d_type: bool,
) -> Found {
    // The root itself is filtered as the walk's own entries are (a root named `.git`,
    // or the store itself, holds nothing in scope).
    if root.file_name() == Some(OsStr::new(".git")) || filter.store.as_deref() == Some(&[]) {
        return Found::default();
    }
    // The root as given (through any symlink on its way); everything below it is then
    // opened from it, never through a symlink.
    use rustix::fs::{Mode, OFlags};
    let root_fd = match rustix::fs::open(root, dir_flags() & !OFlags::NOFOLLOW, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            let e = std::io::Error::from(e);
            return Found {
                errors: vec![anyhow!(
                    "cannot read {}: {}",
                    root.display(),
                    crate::error::io_message(&e)
                )],
                ..Found::default()
            };
        }
    };
    let walker = Walker {
        root,
        root_fd,
        filter,
        strict,
        d_type,
        // A count read from the last snapshot's header: bounded, it only sizes.
        expect: {
            let e = expect.min(1 << 24);
            e + e / 16
        },
        queue: Mutex::new(Queue {
            dirs: filter
                .since
                .map_or_else(|| vec![Vec::new()], |s| s.lists.iter().cloned().collect()),
            busy: 0,
            quit: false,
            waiting: 0,
        }),
        wake: Condvar::new(),
    };
    let mut first = Share::default();
    if threads <= 1 {
        walker.work(&mut first, usize::MAX);
        return walker.assemble(vec![first]);
    }
    // A tree of unknown size is walked on one thread until it has shown this many
    // entries: a small one is over before a thread would have started.
    if let Some(limit) = grow_after
        && !walker.work(&mut first, limit)
    {
        return walker.assemble(vec![first]);
    }
    let shares = std::thread::scope(|s| {
        let others: Vec<_> = (1..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut share = Share::default();
                    walker.work(&mut share, usize::MAX);
                    share
                })
            })
            .collect();
        walker.work(&mut first, usize::MAX);
        let mut shares = vec![first];
        for other in others {
            // A worker only panics on a bug; its share is then missing, so say so.
            match other.join() {
                Ok(share) => shares.push(share),
                Err(_) => shares[0]
                    .found
                    .errors
                    .push(anyhow!("a walker thread of {} panicked", root.display())),
            }
        }
        shares
    });
    walker.assemble(shares)
}

/// How a directory of the tree is opened: for listing, and never through a symlink.
fn dir_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// `openat2(2)` is missing (kernels before 5.6): directories are opened one path
/// component at a time instead.
static NO_OPENAT2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `a`, then `/` when `a_slash`, against `b` likewise, as bytes.
fn cmp_slash(a: &[u8], a_slash: bool, b: &[u8], b_slash: bool) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    a[..n].cmp(&b[..n]).then_with(|| {
        let a = a[n..].iter().chain(a_slash.then_some(&b'/'));
        let b = b[n..].iter().chain(b_slash.then_some(&b'/'));
        a.cmp(b)
    })
}

/// The order of a whole walk's entries by path, put together from each directory's
/// sorted listing, starting at the root's: a directory's own entry sorts at its path
/// and what it holds right after `path/` (`a` < `a.txt` < `a/x` < `a0`). So the
/// whole list is never sorted, and a directory's entries stay side by side as they
/// were read. `order[k]` is the index in `seen` of the `k`th entry by path; `None`
/// if some entry was not reached (no listing leads to it), which a whole walk never
/// leaves, or if there are more than `u32` can count.
fn in_tree_order(seen: &[Seen], listings: &[Listing]) -> Option<Vec<u32>> {
    struct Frame {
        at: usize,
        end: usize,
        /// The listed directories among `at..end`, by where their contents sort.
        subs: Vec<usize>,
        next_sub: usize,
    }
    u32::try_from(seen.len()).ok()?;
    // Each listing reached once, from its directory's one entry in its parent's: so
    // `order` names every entry once. A directory listed twice (a name a listing gave
    // twice, as a filesystem may while entries are renamed) is sorted whole instead.
    let mut by_dir = std::collections::HashMap::with_capacity(listings.len());
    for l in listings {
        if by_dir.insert(l.dir.as_slice(), (l.start, l.end)).is_some() {
            return None;
        }
    }
    let frame = |(start, end): (usize, usize)| {
        let mut subs: Vec<usize> = (start..end)
            .filter(|&i| seen[i].kind == Kind::Dir && by_dir.contains_key(seen[i].path.as_slice()))
            .collect();
        subs.sort_unstable_by(|&a, &b| cmp_slash(&seen[a].path, true, &seen[b].path, true));
        subs.dedup_by(|a, b| seen[*a].path == seen[*b].path);
        Frame {
            at: start,
            end,
            subs,
            next_sub: 0,
        }
    };
    let mut order: Vec<u32> = Vec::with_capacity(seen.len());
    let mut stack: Vec<Frame> = by_dir
        .get(&b""[..])
        .map(|&l| frame(l))
        .into_iter()
        .collect();
    while let Some(f) = stack.last_mut() {
        let entry = (f.at < f.end).then_some(f.at);
        match (entry, f.subs.get(f.next_sub).copied()) {
            (Some(i), Some(d)) if cmp_slash(&seen[i].path, false, &seen[d].path, true).is_lt() => {
                order.push(i as u32);
                f.at += 1;
            }
            (Some(i), None) => {
                order.push(i as u32);
                f.at += 1;
            }
            (_, Some(d)) => {
                f.next_sub += 1;
                let next = frame(by_dir[seen[d].path.as_slice()]);
                stack.push(next);
            }
            (None, None) => {
                stack.pop();
            }
        }
    }
    (order.len() == seen.len()).then_some(order)
}

/// Puts `v[order[k]]` at `k` for every `k`, in place: each cycle of the permutation
/// followed once, by swaps (`order` is left as the identity).
fn permute(v: &mut [Seen], order: &mut [u32]) {
    // How many steps ahead along a cycle an element is fetched. The cycles' elements
    // lie anywhere in a list of 10 MB (100,000 paths): a swap that waits for each in
    // turn waits on memory, one miss at a time (80% of this step's time, measured).
    const AHEAD: usize = 4;
    let step = |order: &[u32], i: usize| order.get(i).map_or(i, |&n| n as usize);
    for start in 0..v.len() {
        if order[start] as usize == start {
            continue;
        }
        let mut ahead = start;
        for _ in 0..AHEAD {
            ahead = step(order, ahead);
        }
        let mut k = start;
        loop {
            let from = order[k] as usize;
            order[k] = k as u32;
            if from == start || from == k {
                break;
            }
            prefetch(v.get(ahead));
            ahead = step(order, ahead);
            v.swap(k, from);
            k = from;
        }
    }
}

/// Asks the CPU to bring `x` into its cache: a hint, which changes no result.
#[inline]
fn prefetch<T>(x: Option<&T>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(x) = x {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let first: *const i8 = (x as *const T).cast();
        let last = first.wrapping_add(std::mem::size_of::<T>().saturating_sub(1));
        // SAFETY: a prefetch reads nothing the program sees and never faults, whatever
        // the address; these point into a live value anyway.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(first);
            _mm_prefetch::<_MM_HINT_T0>(last);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

impl Walker<'_> {
    /// The threads' shares as one [`Found`], its entries sorted by path.
    fn assemble(&self, shares: Vec<Share>) -> Found {
        let mut all = Found::default();
        let mut listings = Vec::new();
        for Share {
            found,
            listings: mut l,
        } in shares
        {
            // One list, in the first share's (which was given room for all).
            let offset = all.seen.len();
            if offset == 0 {
                all.seen = found.seen;
            } else {
                let mut seen = found.seen;
                all.seen.append(&mut seen);
            }
            for listing in &mut l {
                listing.start += offset;
                listing.end += offset;
            }
            listings.append(&mut l);
            all.pruned.extend(found.pruned);
            all.errors.extend(found.errors);
            all.attributes |= found.attributes;
            all.odd_attributes |= found.odd_attributes;
            all.descended.extend(found.descended);
        }
        // A walk of what changed starts at several directories: its (few) entries are
        // sorted whole.
        let order = match self.filter.since {
            None => in_tree_order(&all.seen, &listings),
            Some(_) => None,
        };
        match order {
            Some(mut order) => permute(&mut all.seen, &mut order),
            None => all.seen.sort_unstable_by(|a, b| a.path.cmp(&b.path)),
        }
        all
    }

    /// One thread: reads directories into `share` until none are left or one failed
    /// (`strict`), or it holds `limit` entries. Whether it stopped at the limit with
    /// directories left.
    fn work(&self, share: &mut Share, limit: usize) -> bool {
        // Room for the whole walk (address space only, till it is used): the first
        // thread's list then takes the others' without moving to new memory.
        if share.found.seen.capacity() == 0 {
            let _ = share.found.seen.try_reserve(self.expect);
        }
        // getdents(2)'s buffer, one per thread.
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 32 * 1024];
        while share.found.seen.len() < limit {
            let Some(dir) = self.next() else {
                return false;
            };
            let mut busy = Busy {
                walker: self,
                subdirs: Vec::new(),
                go_on: false,
            };
            let start = share.found.seen.len();
            let ok = self.read(&dir, &mut share.found, &mut busy.subdirs, &mut buf);
            let end = share.found.seen.len();
            // Sorted by name within the directory, while its entries are at hand.
            share.found.seen[start..].sort_unstable_by(|a, b| a.path.cmp(&b.path));
            share.listings.push(Listing { dir, start, end });
            busy.go_on = ok || !self.strict;
        }
        true
    }

    /// The next directory to read; `None` when the walk is over.
    fn next(&self) -> Option<Vec<u8>> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if q.quit {
                return None;
            }
            if let Some(dir) = q.dirs.pop() {
                q.busy += 1;
                return Some(dir);
            }
            if q.busy == 0 {
                // Nothing queued and nothing being read: nothing more will be queued.
                self.wake.notify_all();
                return None;
            }
            q.waiting += 1;
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            q.waiting -= 1;
        }
    }

    /// A directory read: queues what it holds; `go_on` false stops every thread.
    fn done(&self, subdirs: Vec<Vec<u8>>, go_on: bool) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.busy -= 1;
        q.quit |= !go_on;
        q.dirs.extend(subdirs);
        let waiting = q.waiting > 0;
        drop(q);
        if waiting {
            self.wake.notify_all();
        }
    }

    /// An entry that could not be looked at: gone since its directory was listed, it is
    /// passed over (it is not there); else it is an error, noted. True when the walk
    /// must stop (`strict`).
    fn entry_failed(
        &self,
        found: &mut Found,
        path: &Path,
        e: &std::io::Error,
        ok: &mut bool,
    ) -> bool {
        if e.kind() == std::io::ErrorKind::NotFound {
            return false;
        }
        found.errors.push(anyhow!(
            "cannot read {}: {}",
            path.display(),
            crate::error::io_message(e)
        ));
        *ok = false;
        self.strict
    }

    /// The directory `dir` (relative to the root) opened for listing, from the root and
    /// through no symlink: one swapped in for a directory since its parent was read
    /// is refused (ELOOP), never listed as if the tree held what it points to.
    fn open_dir(&self, dir: &[u8]) -> std::io::Result<std::os::fd::OwnedFd> {
        open_below(&self.root_fd, dir, dir_flags())
    }

    /// Reads the directory `dir` (relative to the root): its kept entries into `found`,
    /// its kept directories into `subdirs`. False when something could not be read.
    fn read(
        &self,
        dir: &[u8],
        found: &mut Found,
        subdirs: &mut Vec<Vec<u8>>,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> bool {
        let abs = self.root.join(OsStr::from_bytes(dir));
        // Watched before it is listed: a change made after its listing is reported.
        if let Some(watch) = self.filter.watch {
            watch.add(dir, &abs);
        }
        let cannot = |found: &mut Found, e: &std::io::Error| {
            let why = match e.raw_os_error() {
                // Opened through no symlink: one (or a file) is where a directory was.
                Some(libc::ELOOP | libc::ENOTDIR) => {
                    "no longer a directory (replaced while the tree was walked)".to_string()
                }
                _ => crate::error::io_message(e),
            };
            found
                .errors
                .push(anyhow!("cannot read {}: {why}", abs.display()));
            false
        };
        // A directory gone since its parent was read is an error too, as it was: the
        // walk would record a directory that is not there.
        let fd = match self.open_dir(dir) {
            Ok(fd) => fd,
            Err(e) => return cannot(found, &e),
        };
        let names = match Names::list(&fd, buf) {
            Ok(names) => names,
            Err(e) => return cannot(found, &e),
        };
        // The rules inside this directory, once for all its entries (its own rules were
        // settled when its parent was read, by `prepare`, or are read now: those of its
        // rule files the listing shows).
        let rules = self.filter.matcher.map(|m| {
            let mut listed = super::rules::Listed::default();
            for (name, _, _) in names.iter() {
                listed.note(name);
            }
            m.in_listed_dir(dir, listed)
        });
        let mut ok = true;
        for (name, d_type, ino) in names.iter() {
            let rel = match dir {
                [] => name.to_vec(),
                _ => [dir, b"/", name].concat(),
            };
            if name == b".git" || self.filter.store.as_deref() == Some(rel.as_slice()) {
                continue;
            }
            // The listing's type (no system call), as the filters were given before; a
            // filesystem that gives none has the entry stat'ed for it.
            let mut stat = None;
            let kind = match Kind::of_listed(d_type) {
                Some(kind) if self.d_type => Some(kind),
                _ => match stat_at(&fd, &abs, name) {
                    Ok(s) => {
                        let kind = s.as_ref().map(|s| s.kind);
                        stat = Some(s);
                        kind
                    }
                    Err(e) => {
                        let path = abs.join(OsStr::from_bytes(name));
                        if self.entry_failed(found, &path, &e, &mut ok) {
                            return false;
                        }
                        continue;
                    }
                },
            };
            // Kept or left out: git applies an attribute file it ignores all the same.
            if name == b".gitattributes" {
                found.attributes = true;
                found.odd_attributes |= kind != Some(Kind::File);
            }
            let is_dir = kind == Some(Kind::Dir);
            if self.filter.left_out(rules.as_ref(), &rel, is_dir) {
                if self.filter.keep_pruned {
                    found.pruned.push(Pruned {
                        path: rel,
                        ino,
                        dir: is_dir,
                    });
                }
                continue;
            }
            let seen = match stat.map_or_else(|| stat_at(&fd, &abs, name), Ok) {
                Ok(Some(seen)) => seen,
                // A kind of file backstop does not know: not kept, as before.
                Ok(None) => continue,
                Err(e) => {
                    let path = abs.join(OsStr::from_bytes(name));
                    if self.entry_failed(found, &path, &e, &mut ok) {
                        return false;
                    }
                    continue;
                }
            };
            if seen.kind == Kind::Dir {
                match self.filter.since {
                    None => subdirs.push(rel.clone()),
                    Some(since) if since.descends(dir, &rel, seen.stamp.ino) => {
                        if since.lists.contains(dir) {
                            found.descended.push(rel.clone());
                        }
                        subdirs.push(rel.clone());
                    }
                    Some(_) => {}
                }
            }
            found.seen.push(Seen { path: rel, ..seen });
        }
        ok
    }
}

/// A directory's entries as `getdents64(2)` gave them (`.` and `..` left out), their
/// names copied once into one buffer.
struct Names {
    bytes: Vec<u8>,
    /// Each name's range in `bytes`, its type as listed, its inode.
    entries: Vec<(usize, usize, rustix::fs::FileType, u64)>,
}

impl Names {
    /// The directory open as `fd`, listed through `buf`.
    fn list(
        fd: &std::os::fd::OwnedFd,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> std::io::Result<Names> {
        let mut names = Names {
            bytes: Vec::new(),
            entries: Vec::new(),
        };
        let mut listing = rustix::fs::RawDir::new(fd, buf);
        while let Some(entry) = listing.next() {
            let entry = entry?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let start = names.bytes.len();
            names.bytes.extend_from_slice(name);
            names
                .entries
                .push((start, names.bytes.len(), entry.file_type(), entry.ino()));
        }
        Ok(names)
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], rustix::fs::FileType, u64)> {
        self.entries
            .iter()
            .map(|&(start, end, t, ino)| (&self.bytes[start..end], t, ino))
    }
}

/// `rel` below the directory `at` opened with `flags`, through no symlink on the way
/// or at the end (`openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or one
/// path component at a time where there is none); `rel` empty: `at` itself.
fn open_below(
    at: &std::os::fd::OwnedFd,
    rel: &[u8],
    flags: rustix::fs::OFlags,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::sync::atomic::Ordering::Relaxed;
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let path = match rel {
        [] => OsStr::new("."),
        _ => OsStr::from_bytes(rel),
    };
    if !NO_OPENAT2.load(Relaxed) {
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
        // EAGAIN: a rename raced the lookup; the kernel asks to try again.
        for _ in 0..64 {
            match rustix::fs::openat2(at, path, flags, Mode::empty(), how) {
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                Err(rustix::io::Errno::NOSYS) => {
                    NO_OPENAT2.store(true, Relaxed);
                    break;
                }
                // A sandbox that filters the call out: the other way below.
                Err(rustix::io::Errno::PERM) => break,
                r => return r.map_err(std::io::Error::from),
            }
        }
    }
    open_stepwise(at, rel, flags)
}

/// [`open_below`] one path component at a time, none of them followed.
fn open_stepwise(
    at: &std::os::fd::OwnedFd,
    rel: &[u8],
    flags: rustix::fs::OFlags,
) -> std::io::Result<std::os::fd::OwnedFd> {
    let (dirs, last) = match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None if rel.is_empty() => return openat_retrying(at, OsStr::new("."), flags),
        None => (&b""[..], rel),
    };
    // Only searched, not listed: O_PATH needs no read permission, as a lookup needs none.
    use rustix::fs::OFlags;
    let on_the_way = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = openat_retrying(at, OsStr::new("."), on_the_way)?;
    if !dirs.is_empty() {
        for name in dirs.split(|b| *b == b'/') {
            fd = openat_retrying(&fd, OsStr::from_bytes(name), on_the_way)?;
        }
    }
    openat_retrying(&fd, OsStr::from_bytes(last), flags)
}

/// `rel` in the tree at `root` opened with `flags`, through no symlink below the
/// root (the root's own path may hold some): what the walk listed, never what a
/// directory swapped for a symlink since then points to. One call where the root's
/// path has no symlink; else the root is opened first.
pub(super) fn open_in_tree(
    root: &Path,
    rel: &[u8],
    flags: rustix::fs::OFlags,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::sync::atomic::Ordering::Relaxed;
    if !NO_OPENAT2.load(Relaxed) {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let path = root.join(OsStr::from_bytes(rel));
        loop {
            match rustix::fs::openat2(
                rustix::fs::CWD,
                &path,
                flags,
                Mode::empty(),
                ResolveFlags::NO_SYMLINKS,
            ) {
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => continue,
                // A symlink on the way, perhaps in the root's own path: from the root.
                Err(
                    rustix::io::Errno::LOOP | rustix::io::Errno::NOSYS | rustix::io::Errno::PERM,
                ) => {
                    break;
                }
                r => return r.map_err(std::io::Error::from),
            }
        }
    }
    // O_PATH: the root is only looked up from, which needs no read permission.
    let at = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    open_below(&at, rel, flags)
}

/// `name` in the directory open as `fd`, stat'ed through it (not followed), as a
/// [`Seen`] with no path yet; `None` for a kind of file backstop does not know.
/// `dir_abs` is the directory's path, for kernels without `statx(2)`.
pub(super) fn stat_at(
    fd: &std::os::fd::OwnedFd,
    dir_abs: &Path,
    name: &[u8],
) -> std::io::Result<Option<Seen>> {
    use rustix::fs::{AtFlags, StatxFlags};
    let cname = OsStr::from_bytes(name);
    loop {
        match rustix::fs::statx(
            fd,
            cname,
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::BASIC_STATS,
        ) {
            Ok(s) => return Ok(Seen::of_statx(Vec::new(), &s)),
            Err(rustix::io::Errno::INTR) => continue,
            // No statx (kernels before 4.11, some sandboxes): by the path.
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
                return fs::symlink_metadata(dir_abs.join(cname)).map(|m| Seen::of(Vec::new(), &m));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// `openat(2)` of `name` in `at`, again on EINTR.
fn openat_retrying(
    at: &std::os::fd::OwnedFd,
    name: &OsStr,
    flags: rustix::fs::OFlags,
) -> std::io::Result<std::os::fd::OwnedFd> {
    loop {
        match rustix::fs::openat(at, name, flags, rustix::fs::Mode::empty()) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(std::io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary links gcc's unwinder in rather than loading `libgcc_s`
    /// (build/link.rs): a walker thread's panic must still come back from `join` as
    /// an `Err`, which the walk turns into an error instead of losing a share.
    #[test]
    fn a_panicking_walker_thread_comes_back_from_join_as_an_error() {
        let joined =
            std::thread::scope(|s| s.spawn(|| -> usize { panic!("a walker's bug") }).join());
        assert!(joined.is_err());
    }

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, body) in [
            ("a.txt", "a"),
            ("src/lib.rs", "lib"),
            ("src/deep/er/x.rs", "x"),
            ("build/out.o", "o"),
            ("notes.log", "log"),
            (".git/HEAD", "ref"),
            ("store/objects/ab", "object"),
        ] {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, body).unwrap();
        }
        for d in 0..40 {
            fs::create_dir_all(dir.path().join(format!("many/d{d}/e"))).unwrap();
            fs::write(dir.path().join(format!("many/d{d}/e/f")), "f").unwrap();
        }
        std::os::unix::fs::symlink("../a.txt", dir.path().join("src/link")).unwrap();
        dir
    }

    fn paths(found: &Found) -> Vec<String> {
        let mut out: Vec<String> = found
            .seen
            .iter()
            .map(|s| String::from_utf8_lossy(&s.path).into_owned())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn one_thread_and_two_find_the_same_and_leave_out_git_the_store_and_the_excluded() {
        let dir = tree();
        let mut builder = ignore::overrides::OverrideBuilder::new(dir.path());
        builder.add("!*.log").unwrap();
        builder.add("!build/").unwrap();
        let overrides = builder.build().unwrap();
        let filter = Filter {
            store: Some(b"store".to_vec()),
            overrides: &overrides,
            matcher: None,
            keep_pruned: true,
            watch: None,
            since: None,
        };
        let one = walk(dir.path(), &filter, 1, None, true, 0);
        let two = walk(dir.path(), &filter, 2, None, true, 50);
        // One thread for the first 10 entries, then two.
        let grown = walk(dir.path(), &filter, 2, Some(10), true, 0);
        assert!(one.errors.is_empty() && two.errors.is_empty() && grown.errors.is_empty());
        assert_eq!(paths(&one), paths(&two));
        assert_eq!(paths(&one), paths(&grown));
        for found in [&one, &two, &grown] {
            assert!(
                found.seen.windows(2).all(|w| w[0].path < w[1].path),
                "sorted by path bytes, each once"
            );
        }
        let found = paths(&one);
        for want in [
            "a.txt",
            "src",
            "src/deep/er/x.rs",
            "src/link",
            "many/d39/e/f",
        ] {
            assert!(found.contains(&want.to_string()), "{want} in {found:?}");
        }
        for not in [
            ".git",
            ".git/HEAD",
            "store",
            "store/objects/ab",
            "build",
            "notes.log",
        ] {
            assert!(!found.contains(&not.to_string()), "{not} not in {found:?}");
        }
        assert_eq!(found.len(), 7 + 40 * 3 + 1, "{found:?}");
        let mut pruned: Vec<&[u8]> = two.pruned.iter().map(|p| p.path.as_slice()).collect();
        pruned.sort();
        assert_eq!(
            pruned,
            [&b"build"[..], b"notes.log"],
            "kept as pruned, not descended"
        );
        let link = one.seen.iter().find(|s| s.path == b"src/link").unwrap();
        assert_eq!(
            link.kind,
            super::super::manifest::Kind::Symlink,
            "lstat, not stat"
        );
    }

    #[test]
    fn an_unreadable_root_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let overrides = Override::empty();
        let filter = Filter {
            store: None,
            overrides: &overrides,
            matcher: None,
            keep_pruned: false,
            watch: None,
            since: None,
        };
        let found = walk(&gone, &filter, 2, Some(10), true, 0);
        assert!(found.seen.is_empty());
        let msg = format!("{:#}", found.errors[0]);
        assert!(msg.contains(&gone.display().to_string()), "{msg}");
    }

    fn no_filter(overrides: &Override) -> Filter<'_> {
        Filter {
            store: None,
            overrides,
            matcher: None,
            keep_pruned: false,
            watch: None,
            since: None,
        }
    }

    /// Every entry below `root` by `std`'s path-based calls, sorted by path bytes.
    fn reference(root: &Path) -> Vec<Seen> {
        fn go(root: &Path, rel: &[u8], out: &mut Vec<Seen>) {
            for e in fs::read_dir(root.join(OsStr::from_bytes(rel))).unwrap() {
                let e = e.unwrap();
                let name = e.file_name();
                let child = match rel {
                    [] => name.as_bytes().to_vec(),
                    _ => [rel, b"/", name.as_bytes()].concat(),
                };
                let m = fs::symlink_metadata(root.join(OsStr::from_bytes(&child))).unwrap();
                if m.is_dir() {
                    go(root, &child, out);
                }
                out.extend(Seen::of(child, &m));
            }
        }
        let mut out = Vec::new();
        go(root, b"", &mut out);
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    fn same(a: &[Seen], b: &[Seen]) -> Result<(), String> {
        let show = |s: &[Seen]| {
            s.iter()
                .map(|s| String::from_utf8_lossy(&s.path).into_owned())
                .collect::<Vec<_>>()
        };
        if show(a) != show(b) {
            return Err(format!("{:?}\n!=\n{:?}", show(a), show(b)));
        }
        for (x, y) in a.iter().zip(b) {
            if (x.kind, x.mode, x.stamp, x.meta) != (y.kind, y.mode, y.stamp, y.meta) {
                return Err(format!("{x:?} != {y:?}"));
            }
        }
        Ok(())
    }

    /// Names whose order as paths differs from their order as names followed by `/`
    /// (`a-` < `a/` < `a0`), and bytes that are not UTF-8.
    const NAMES: [&[u8]; 10] = [
        b"a", b"a-", b"a.", b"a0", b"a-b", b"ab", b"\x01", b"\xff", b"A", b" ",
    ];

    /// Makes each `(components, kind)` that fits (its parents directories or made
    /// so; kind 0 a file, 1 a directory, 2 a symlink, 3 a FIFO).
    fn build(root: &Path, items: &[(Vec<usize>, u8)]) {
        for (comps, kind) in items {
            let mut path = root.to_path_buf();
            let mut fits = true;
            for c in &comps[..comps.len() - 1] {
                path.push(OsStr::from_bytes(NAMES[*c]));
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => fits = false,
                    Err(_) => fs::create_dir(&path).unwrap(),
                }
                if !fits {
                    break;
                }
            }
            path.push(OsStr::from_bytes(NAMES[*comps.last().unwrap()]));
            if !fits || fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            match kind {
                0 => fs::write(&path, b"x").unwrap(),
                1 => fs::create_dir(&path).unwrap(),
                2 => std::os::unix::fs::symlink("a", &path).unwrap(),
                _ => rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &path,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o644),
                    0,
                )
                .unwrap(),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]
        /// The walk's list, put together from each directory's listing on one thread,
        /// on two, and stat'ing every entry for its type, is exactly a sorted walk by
        /// path: the same paths in byte order, the same stats.
        #[test]
        fn a_walk_in_tree_order_is_a_walk_sorted_by_path(
            items in proptest::collection::vec(
                (proptest::collection::vec(0..NAMES.len(), 1..5), 0u8..4),
                0..60,
            )
        ) {
            let dir = tempfile::tempdir().unwrap();
            build(dir.path(), &items);
            let want = reference(dir.path());
            let overrides = Override::empty();
            let filter = no_filter(&overrides);
            for (threads, grow, expect, d_type) in [
                (1, None, 0, true),
                (2, None, 3, true),
                (2, Some(3), 0, true),
                (1, None, usize::MAX, false),
            ] {
                let found = walk_with(dir.path(), &filter, threads, grow, true, expect, d_type);
                proptest::prop_assert!(found.errors.is_empty(), "{:?}", found.errors);
                let r = same(&found.seen, &want);
                proptest::prop_assert!(r.is_ok(), "{} threads, d_type {}: {}", threads, d_type, r.unwrap_err());
            }
        }
    }

    #[test]
    fn a_listing_that_gives_no_type_has_the_entry_stat_ed_for_it() {
        use rustix::fs::FileType;
        assert_eq!(Kind::of_listed(FileType::Unknown), None);
        assert_eq!(Kind::of_listed(FileType::Directory), Some(Kind::Dir));
        assert_eq!(Kind::of_listed(FileType::Symlink), Some(Kind::Symlink));
    }

    fn seen_at(path: &str, kind: Kind) -> Seen {
        let mut s = blank_seen();
        s.path = path.as_bytes().to_vec();
        s.kind = kind;
        s
    }

    fn blank_seen() -> Seen {
        Seen::of_entry(&super::super::manifest::Entry {
            path: Vec::new(),
            kind: Kind::File,
            mode: 0,
            size: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            ino: 0,
            content: super::super::manifest::Content::None,
            meta: super::super::manifest::Meta::default(),
        })
    }

    /// A listing that names a directory twice (some filesystems do while entries are
    /// renamed) must not have its contents put in twice and another's left out: the
    /// order falls back to a whole sort.
    #[test]
    fn a_directory_listed_twice_is_not_put_in_order_twice() {
        let seen = vec![
            seen_at("d", Kind::Dir),
            seen_at("d", Kind::Dir),
            seen_at("d/x", Kind::File),
            seen_at("d/x", Kind::File),
        ];
        let listing = |dir: &str, start, end| Listing {
            dir: dir.as_bytes().to_vec(),
            start,
            end,
        };
        // `d` read twice: two listings of it.
        let twice = [listing("", 0, 2), listing("d", 2, 3), listing("d", 3, 4)];
        assert_eq!(in_tree_order(&seen, &twice), None);
        // `d` named twice by the root's listing but read once: its contents once.
        let once = [listing("", 0, 2), listing("d", 2, 4)];
        assert_eq!(in_tree_order(&seen, &once), Some(vec![0, 1, 2, 3]));
    }

    #[test]
    fn contents_sort_after_the_names_they_follow_as_paths() {
        use std::cmp::Ordering::*;
        // `a/x` against `a-` and `a0`: '-' < '/' < '0'.
        assert_eq!(cmp_slash(b"d/a", true, b"d/a-", false), Greater);
        assert_eq!(cmp_slash(b"d/a", true, b"d/a0", false), Less);
        assert_eq!(cmp_slash(b"d/a", true, b"d/a.", false), Greater);
        assert_eq!(cmp_slash(b"d/a", false, b"d/a", true), Less);
        // Contents against contents: `a-/` < `a/`.
        assert_eq!(cmp_slash(b"d/a-", true, b"d/a", true), Less);
        assert_eq!(cmp_slash(b"d/a", true, b"d/a", true), Equal);
    }

    /// A walker over `root` that reads `dirs` (as if their parents had been read).
    fn walker_of<'a>(root: &'a Path, filter: &'a Filter<'a>, dirs: &[&[u8]]) -> Walker<'a> {
        Walker {
            root,
            root_fd: rustix::fs::open(root, rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty())
                .unwrap(),
            filter,
            strict: false,
            d_type: true,
            expect: 0,
            queue: Mutex::new(Queue {
                dirs: dirs.iter().map(|d| d.to_vec()).collect(),
                busy: 0,
                quit: false,
                waiting: 0,
            }),
            wake: Condvar::new(),
        }
    }

    /// A directory swapped for a symlink between its parent's listing and its own (a
    /// race with another process) is not listed through the link: the walk would
    /// record what lies outside the tree as if it were in it, and walk it whole.
    #[test]
    fn a_directory_swapped_for_a_symlink_mid_walk_is_not_read_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("deeper")).unwrap();
        fs::write(outside.join("secret"), "s").unwrap();
        fs::write(outside.join("deeper/secret"), "s").unwrap();
        fs::create_dir_all(root.join("keep")).unwrap();
        fs::write(root.join("keep/mine"), "m").unwrap();
        // `a` and `b/c` were directories when their parents were listed; now `a` and
        // `b` (a component on the way to `b/c`) are symlinks out of the tree.
        std::os::unix::fs::symlink(&outside, root.join("a")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("b")).unwrap();
        fs::create_dir_all(outside.join("c")).unwrap();
        let overrides = Override::empty();
        let filter = no_filter(&overrides);
        let walker = walker_of(&root, &filter, &[b"a", b"b/c", b"keep"]);
        let mut share = Share::default();
        walker.work(&mut share, usize::MAX);
        let paths: Vec<_> = share.found.seen.iter().map(|s| s.path.clone()).collect();
        assert_eq!(paths, [b"keep/mine".to_vec()], "nothing from outside");
        let mut errors: Vec<String> = share
            .found
            .errors
            .iter()
            .map(|e| format!("{e:#}"))
            .collect();
        errors.sort();
        assert_eq!(errors.len(), 2, "{errors:?}");
        for (e, path) in errors.iter().zip(["a", "b/c"]) {
            assert!(e.contains(&root.join(path).display().to_string()), "{e}");
            assert!(e.contains("no longer a directory"), "{e}");
        }
        // The same by the way without openat2(2), one component at a time.
        let root_fd =
            rustix::fs::open(&root, rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()).unwrap();
        for rel in [&b"a"[..], b"b/c"] {
            let e = open_stepwise(&root_fd, rel, dir_flags()).unwrap_err();
            assert!(
                matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
                "{rel:?}: {e}"
            );
        }
        assert!(open_stepwise(&root_fd, b"keep", dir_flags()).is_ok());
    }

    /// `Seen::of_statx` gives what `Seen::of` gives from `std`'s metadata, for every
    /// kind a walk keeps.
    #[test]
    fn a_stat_through_the_directory_is_the_stat_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("file"), "f").unwrap();
        fs::create_dir(root.join("dir")).unwrap();
        std::os::unix::fs::symlink("file", root.join("link")).unwrap();
        fs::hard_link(root.join("file"), root.join("second")).unwrap();
        build(root, &[(vec![0], 3)]);
        let _sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
        std::os::unix::fs::symlink("/dev/null", root.join("null-link")).unwrap();
        let fd =
            rustix::fs::open(root, rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty()).unwrap();
        let statx = |name: &str| {
            rustix::fs::statx(
                &fd,
                name,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                rustix::fs::StatxFlags::BASIC_STATS,
            )
            .unwrap()
        };
        for name in ["file", "dir", "link", "second", "a", "sock", "null-link"] {
            let by_fd = Seen::of_statx(name.into(), &statx(name)).unwrap();
            let by_path =
                Seen::of(name.into(), &fs::symlink_metadata(root.join(name)).unwrap()).unwrap();
            same(&[by_fd], &[by_path]).unwrap();
        }
        let dev = rustix::fs::statx(
            rustix::fs::CWD,
            "/dev/null",
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            rustix::fs::StatxFlags::BASIC_STATS,
        )
        .unwrap();
        let by_fd = Seen::of_statx(b"null".to_vec(), &dev).unwrap();
        let by_path = Seen::of(
            b"null".to_vec(),
            &fs::symlink_metadata("/dev/null").unwrap(),
        )
        .unwrap();
        assert_eq!(by_fd.kind, Kind::CharDevice);
        same(&[by_fd], &[by_path]).unwrap();
    }
}
