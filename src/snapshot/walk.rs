//! The walk itself: every directory of a scope read once, on up to two threads, and
//! every entry kept stat'ed relative to the directory just read.
//!
//! Why not the `ignore` crate's walker, which the scope used before: it stats by the
//! full path (`lstat("/root/a/b/c/name")`), so the kernel resolves every component of
//! every path again, and it hands entries to one shared list under a lock. An
//! unchanged tree costs a protected run two walks, and those lookups were a fifth of
//! them. Here a directory is opened once and its entries are stat'ed through it
//! (`std::fs::DirEntry::metadata` is `statx(dirfd, name, AT_SYMLINK_NOFOLLOW)`, as
//! `find` does), each thread keeps its own list, and entries left out are never
//! stat'ed (the directory entry's type decides, as before).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirEntryExt;
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
    fn descends(&self, dir: &[u8], rel: &[u8], meta: &fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        !self.lists.contains(dir)
            || self.deep.contains(rel)
            || !self
                .base
                .find(rel)
                .is_some_and(|e| e.kind == Kind::Dir && e.ino == meta.ino())
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
    filter: &'a Filter<'a>,
    strict: bool,
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// Walks `root` on `threads` threads (this one among them), the others started only
/// once `grow_after` entries are found when it is given; `strict` stops at the first
/// error, otherwise every readable entry is found.
pub(super) fn walk(
    root: &Path,
    filter: &Filter,
    threads: usize,
    grow_after: Option<usize>,
    strict: bool,
) -> Found {
    // The root itself is filtered as the walk's own entries are (a root named `.git`,
    // or the store itself, holds nothing in scope).
    if root.file_name() == Some(OsStr::new(".git")) || filter.store.as_deref() == Some(&[]) {
        return Found::default();
    }
    let walker = Walker {
        root,
        filter,
        strict,
        queue: Mutex::new(Queue {
            dirs: filter
                .since
                .map_or_else(|| vec![Vec::new()], |s| s.lists.iter().cloned().collect()),
            busy: 0,
            quit: false,
        }),
        wake: Condvar::new(),
    };
    let mut all = Found::default();
    let by_path = |a: &Seen, b: &Seen| a.path.cmp(&b.path);
    if threads <= 1 {
        walker.work(&mut all, usize::MAX);
        all.seen.sort_unstable_by(by_path);
        return all;
    }
    // A tree of unknown size is walked on one thread until it has shown this many
    // entries: a small one is over before a thread would have started.
    if let Some(limit) = grow_after
        && !walker.work(&mut all, limit)
    {
        all.seen.sort_unstable_by(by_path);
        return all;
    }
    std::thread::scope(|s| {
        // Each thread sorts its own list, at the same time; the lists are then merged.
        let others: Vec<_> = (1..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut found = Found::default();
                    walker.work(&mut found, usize::MAX);
                    found.seen.sort_unstable_by(by_path);
                    found
                })
            })
            .collect();
        walker.work(&mut all, usize::MAX);
        all.seen.sort_unstable_by(by_path);
        for other in others {
            // A worker only panics on a bug; its share is then missing, so say so.
            match other.join() {
                Ok(found) => {
                    all.seen = merge_sorted(std::mem::take(&mut all.seen), found.seen);
                    all.pruned.extend(found.pruned);
                    all.errors.extend(found.errors);
                    all.attributes |= found.attributes;
                    all.odd_attributes |= found.odd_attributes;
                    all.descended.extend(found.descended);
                }
                Err(_) => all
                    .errors
                    .push(anyhow!("a walker thread of {} panicked", root.display())),
            }
        }
        all
    })
}

/// Two lists sorted by path, as one.
fn merge_sorted(a: Vec<Seen>, b: Vec<Seen>) -> Vec<Seen> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.path <= y.path => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => return out,
        };
        out.extend(next);
    }
}

impl Walker<'_> {
    /// One thread: reads directories into `found` until none are left or one failed
    /// (`strict`), or it holds `limit` entries. Whether it stopped at the limit with
    /// directories left.
    fn work(&self, found: &mut Found, limit: usize) -> bool {
        while found.seen.len() < limit {
            let Some(dir) = self.next() else {
                return false;
            };
            let mut busy = Busy {
                walker: self,
                subdirs: Vec::new(),
                go_on: false,
            };
            let ok = self.read(&dir, found, &mut busy.subdirs);
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
            q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A directory read: queues what it holds; `go_on` false stops every thread.
    fn done(&self, subdirs: Vec<Vec<u8>>, go_on: bool) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.busy -= 1;
        q.quit |= !go_on;
        q.dirs.extend(subdirs);
        drop(q);
        self.wake.notify_all();
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

    /// Reads the directory `dir` (relative to the root): its kept entries into `found`,
    /// its kept directories into `subdirs`. False when something could not be read.
    fn read(&self, dir: &[u8], found: &mut Found, subdirs: &mut Vec<Vec<u8>>) -> bool {
        let abs = self.root.join(OsStr::from_bytes(dir));
        // Watched before it is listed: a change made after its listing is reported.
        if let Some(watch) = self.filter.watch {
            watch.add(dir, &abs);
        }
        let cannot = |found: &mut Found, path: &Path, e: &std::io::Error| {
            found.errors.push(anyhow!(
                "cannot read {}: {}",
                path.display(),
                crate::error::io_message(e)
            ));
            false
        };
        let entries = match fs::read_dir(&abs) {
            Ok(entries) => entries,
            // A directory gone since its parent was read is an error too, as it was:
            // the walk would record a directory that is not there.
            Err(e) => return cannot(found, &abs, &e),
        };
        // Each name copied out once (`DirEntry::file_name` makes a new one per call).
        let entries: Vec<(fs::DirEntry, std::ffi::OsString)> = match entries
            .map(|e| e.map(|e| (e.file_name(), e)).map(|(n, e)| (e, n)))
            .collect()
        {
            Ok(entries) => entries,
            Err(e) => return cannot(found, &abs, &e),
        };
        // The rules inside this directory, once for all its entries (its own rules were
        // settled when its parent was read, by `prepare`, or are read now: those of its
        // rule files the listing shows).
        let rules = self.filter.matcher.map(|m| {
            let mut listed = super::rules::Listed::default();
            for (_, name) in &entries {
                listed.note(name.as_bytes());
            }
            m.in_listed_dir(dir, listed)
        });
        let mut ok = true;
        for (entry, name) in entries {
            let rel = match dir {
                [] => name.as_bytes().to_vec(),
                _ => [dir, b"/", name.as_bytes()].concat(),
            };
            if name == ".git" || self.filter.store.as_deref() == Some(rel.as_slice()) {
                continue;
            }
            // Kept or left out: git applies an attribute file it ignores all the same.
            if name == ".gitattributes" {
                found.attributes = true;
                found.odd_attributes |= !entry.file_type().is_ok_and(|t| t.is_file());
            }
            // The directory entry's type (no system call), as the filters were given before.
            let is_dir = match entry.file_type() {
                Ok(t) => t.is_dir(),
                Err(e) => {
                    if self.entry_failed(found, &entry.path(), &e, &mut ok) {
                        return false;
                    }
                    continue;
                }
            };
            if self.filter.left_out(rules.as_ref(), &rel, is_dir) {
                if self.filter.keep_pruned {
                    found.pruned.push(Pruned {
                        path: rel,
                        ino: entry.ino(),
                        dir: is_dir,
                    });
                }
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) => {
                    if self.entry_failed(found, &entry.path(), &e, &mut ok) {
                        return false;
                    }
                    continue;
                }
            };
            if meta.is_dir() {
                match self.filter.since {
                    None => subdirs.push(rel.clone()),
                    Some(since) if since.descends(dir, &rel, &meta) => {
                        if since.lists.contains(dir) {
                            found.descended.push(rel.clone());
                        }
                        subdirs.push(rel.clone());
                    }
                    Some(_) => {}
                }
            }
            if let Some(seen) = Seen::of(rel, &meta) {
                found.seen.push(seen);
            }
        }
        ok
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
        let one = walk(dir.path(), &filter, 1, None, true);
        let two = walk(dir.path(), &filter, 2, None, true);
        // One thread for the first 10 entries, then two.
        let grown = walk(dir.path(), &filter, 2, Some(10), true);
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
        let found = walk(&gone, &filter, 2, Some(10), true);
        assert!(found.seen.is_empty());
        let msg = format!("{:#}", found.errors[0]);
        assert!(msg.contains(&gone.display().to_string()), "{msg}");
    }
}
