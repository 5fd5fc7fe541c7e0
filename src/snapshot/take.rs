//! Taking a snapshot: walk the scope, reuse what the stat cache vouches for, copy the
//! rest into the object store, and write the manifest.
//!
//! A cached hash is reused only when type, mode, size, mtime, ctime and inode all
//! match and the entry is not racy: modified within [`RACY_NS`] of the snapshot that
//! recorded it, when a same-size edit could share its timestamp (git's and borg's
//! rule). A file that changes while it is read is read again, up to
//! [`SETTLE_TRIES`] times; one that never settles fails the snapshot.
//!
//! A snapshot never names an object the store lacks: the objects the stat cache
//! vouches for are checked (cheaply: see [`Objects::missing_since`]), and a file whose
//! object is gone is read again, which puts it back; if it cannot be, the snapshot
//! fails and the run does not start.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use super::checkout::Checkout;
use super::git_objects::BlobId;
use super::manifest::{Content, Entry, Hash, Kind, Manifest, hex};
use super::objects::{Objects, Put, Staged};
use super::rules::Rules;
use super::scope::{Scope, Seen, Walked};
use super::watch::Watch;

/// How close to a snapshot's start a timestamp must be to be distrusted.
pub const RACY_NS: i64 = 2_000_000_000;
/// Reads of a file that keeps changing before the snapshot gives up.
pub const SETTLE_TRIES: usize = 5;

/// A value made when first asked for, if it can be.
struct Lazy<T, F> {
    value: Option<Option<T>>,
    make: Option<F>,
}

impl<T, F: FnOnce() -> Option<T>> Lazy<T, F> {
    fn new(make: F) -> Self {
        Lazy {
            value: None,
            make: Some(make),
        }
    }

    fn get(&mut self) -> Option<&mut T> {
        if self.value.is_none() {
            self.value = Some(self.make.take().and_then(|f| f()));
        }
        self.value.as_mut().and_then(Option::as_mut)
    }
}

/// A snapshot taken and stored.
#[derive(Debug)]
pub struct Taken {
    /// Shared with the cache when nothing changed: a tree is held once.
    pub manifest: Arc<Manifest>,
    /// The manifest's object id.
    pub id: Hash,
    /// Files over the size limit: recorded, not kept.
    pub skipped: Vec<Vec<u8>>,
    /// Files whose content was read (the rest came from the stat cache or from git).
    pub hashed: usize,
    /// Files clean in their git checkout, recorded by blob id without being read.
    pub from_git: usize,
    /// The ignore rules read from the tree, when the scope had none fixed.
    pub rules: Option<Rules>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "{path} kept changing while it was snapshotted ({tries} reads); the command was not started"
)]
pub struct Unsettled {
    pub path: String,
    pub tries: usize,
}

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Whether `cached` (from a manifest taken at `taken_at_ns`) still vouches for `seen`.
fn cache_vouches(cached: &Entry, taken_at_ns: i64, seen: &Seen) -> bool {
    seen.same_stat(cached)
        && cached.mtime_ns < taken_at_ns - RACY_NS
        && cached.ctime_ns < taken_at_ns - RACY_NS
}

/// Takes a snapshot of `scope`. `cache` is the last manifest of the same tree;
/// its paths are also checked directly, even where ignore rules now hide them.
pub fn take(
    scope: &Scope,
    objects: &Objects,
    cache: Option<(&Arc<Manifest>, Hash)>,
) -> Result<Taken> {
    take_watched(scope, objects, cache, None)
}

/// [`take`], with the run's change feed: a walk that reads only what changed since the
/// feed's last walk when it can tell, and a whole walk that watches every directory it
/// reads when it cannot.
pub fn take_watched(
    scope: &Scope,
    objects: &Objects,
    cache: Option<(&Arc<Manifest>, Hash)>,
    watch: Option<&Watch>,
) -> Result<Taken> {
    let cache = cache.map(|(m, id)| (Arc::clone(m), id));
    take_with(scope, objects, Cache::Ready(cache), watch)
}

/// The last snapshot of a tree, that the next one starts from: at hand, or being read
/// on a thread of its own while the tree is walked.
pub enum Cache {
    Ready(Option<(Arc<Manifest>, Hash)>),
    Loading(Loading),
}

/// Below this many bytes (about 1,900 paths) a stat cache is read where it is asked
/// for: its tree is walked on one thread, and a thread of its own would cost more than
/// the read it overlaps (every `run -- true` in a small directory would start one).
const READ_BESIDE_FROM: u64 = 256 * 1024;

impl Cache {
    /// The stored manifest `id` as the cache a snapshot starts from: read beside the
    /// walk when it is large, here when it is small (or a thread cannot start).
    pub fn of(objects: &Objects, id: Hash) -> Cache {
        let large =
            std::fs::symlink_metadata(objects.path(&id)).is_ok_and(|m| m.len() >= READ_BESIDE_FROM);
        match large.then(|| Loading::start(objects, id)).flatten() {
            Some(loading) => Cache::Loading(loading),
            None => Cache::Ready(load(objects, id)),
        }
    }

    /// How many paths the last snapshot has, if there is one (its header says, while
    /// it is being read).
    pub fn size(&self) -> Option<usize> {
        match self {
            Cache::Ready(cache) => cache.as_ref().map(|(m, _)| m.entries.len()),
            Cache::Loading(loading) => Some(loading.size),
        }
    }
}

/// A manifest being read and checked on a thread of its own (see [`Loading::start`]).
pub struct Loading {
    /// How many paths its header says it has: enough to plan a walk by.
    size: usize,
    thread: std::thread::JoinHandle<Option<(Arc<Manifest>, Hash)>>,
}

impl Loading {
    /// Starts reading the manifest `id`: a whole walk needs only its size until it is
    /// done, and a tree of 100,000 paths has a manifest of 14 MB to read, check and
    /// decode. `None` when its header cannot be read or no thread can start (it is then
    /// read in place, by [`Cache::of`]).
    pub fn start(objects: &Objects, id: Hash) -> Option<Loading> {
        let head = objects.head(&id, 24).ok()?;
        let size = usize::try_from(Manifest::count_in_head(&head)?).ok()?;
        let objects = objects.clone();
        let thread = std::thread::Builder::new()
            .name("backstop-cache".into())
            .spawn(move || load(&objects, id))
            .ok()?;
        Some(Loading { size, thread })
    }

    /// The manifest, `None` if it could not be read (or is damaged).
    fn wait(self) -> Option<(Arc<Manifest>, Hash)> {
        self.thread.join().ok().flatten()
    }
}

/// The manifest `id` read and checked, `None` if it cannot be.
pub fn load(objects: &Objects, id: Hash) -> Option<(Arc<Manifest>, Hash)> {
    Some((Arc::new(objects.manifest(&id).ok()?), id))
}

/// The paths of the last snapshot, that a walk also looks at directly.
fn paths_of(cache: &Option<(Arc<Manifest>, Hash)>) -> Vec<&[u8]> {
    cache.as_ref().map_or_else(Vec::new, |(m, _)| {
        m.entries.iter().map(|e| e.path.as_slice()).collect()
    })
}

/// [`take_watched`], from a [`Cache`] that may still be being read.
pub fn take_with(
    scope: &Scope,
    objects: &Objects,
    cache: Cache,
    watch: Option<&Watch>,
) -> Result<Taken> {
    let root_dev = scope.identity.map(|i| i.dev);
    let watch = watch.filter(|_| root_dev.is_some());
    // Only walks whose ignore rules are fixed read only what changed: rules read anew
    // could take in directories the feed never watched.
    let passes = scope.rules.is_some() || !scope.respect_ignored;
    let taken_at_ns = now_ns();
    // A first snapshot (no stat cache) takes every clean file from git: the index and
    // every blob's size are read while the scope is walked.
    let early = match cache.size() {
        None => Checkout::start(&scope.root, objects.git_shared(), true),
        Some(_) => None,
    };
    let pass = watch.map(|w| (w, w.begin().filter(|_| passes)));
    // A walk of what the feed named starts from the cache: it is waited for now. A
    // whole walk waits for it once it is done.
    let (mut cache, loading) = match (cache, &pass) {
        (Cache::Loading(loading), Some((_, Some(_)))) => (loading.wait(), None),
        (Cache::Loading(loading), _) => (None, Some(loading)),
        (Cache::Ready(cache), _) => (cache, None),
    };
    let walked = match pass {
        Some((w, Some(pass))) => {
            let same_base = cache.as_ref().is_some_and(|(_, id)| *id == pass.base_id);
            if same_base && let Some(taken) = unchanged_since(scope, &pass)? {
                w.passed();
                let base = (&taken.manifest, taken.id);
                w.end(base, pass.unwatched, pass.attributes, root_dev.unwrap_or(0));
                return Ok(taken);
            }
            walk_fed(scope, &pass, &paths_of(&cache), w)?
        }
        Some((w, None)) => {
            w.walked_whole();
            walk_whole(scope, &mut cache, loading, Some(w))?
        }
        None => walk_whole(scope, &mut cache, loading, None)?,
    };
    let (unwatched, attributes) = (walked.unwatched.clone(), walked.attributes);
    let cache = cache.as_ref().map(|(m, id)| (m, *id));
    let taken = take_walked(scope, objects, cache, (walked, taken_at_ns, early))?;
    if let (Some(w), Some(dev)) = (watch, root_dev) {
        w.end((&taken.manifest, taken.id), unwatched, attributes, dev);
    }
    Ok(taken)
}

/// A whole walk. The cache, when it is being read (`loading`), is waited for once the
/// walk is done, and its paths looked at then.
fn walk_whole(
    scope: &Scope,
    cache: &mut Option<(Arc<Manifest>, Hash)>,
    loading: Option<Loading>,
    watch: Option<&Watch>,
) -> Result<Walked> {
    let Some(loading) = loading else {
        return scope.walk_watched(&paths_of(cache), watch);
    };
    let raw = scope.walk_whole(loading.size, watch);
    // Joined whatever the walk found: the thread is not left running.
    *cache = loading.wait();
    scope.finish_whole(raw?, &paths_of(cache))
}

/// A walk of what the feed named since its last walk; of the whole tree (watched anew)
/// when something went away while it was read.
fn walk_fed(scope: &Scope, pass: &super::watch::Pass, also: &[&[u8]], w: &Watch) -> Result<Walked> {
    match scope.walk_since(pass, also, w) {
        Ok(walked) => {
            w.passed();
            Ok(walked)
        }
        Err(_) => {
            w.walked_whole();
            scope.walk_watched(also, Some(w))
        }
    }
}

/// Drops a large list on a thread of its own: freeing 100,000 paths one by one is
/// time the run need not wait for. Dropped here when no thread can be started.
fn drop_aside<T: Send + 'static>(big: Vec<T>) {
    if big.len() < 10_000 {
        return;
    }
    let mut big = Some(big);
    let spawned = std::thread::Builder::new()
        .name("backstop-drop".into())
        .stack_size(64 * 1024)
        .spawn({
            let big = big.take();
            move || drop(big)
        });
    drop(spawned);
    drop(big);
}

/// The last walk's snapshot, when the change feed names nothing since and every path it
/// cannot vouch for (one with another name, one no watch covers) has the stat it had:
/// nothing to read, nothing to write.
fn unchanged_since(scope: &Scope, pass: &super::watch::Pass) -> Result<Option<Taken>> {
    if !pass.changed.is_empty() {
        return Ok(None);
    }
    let base = &pass.base;
    let unwatched = pass.unwatched.iter().filter_map(|p| base.find(p));
    let linked = base
        .entries
        .iter()
        .filter(|e| e.kind != Kind::Dir && e.meta.nlink > 1);
    for e in unwatched.chain(linked) {
        match scope.stat(&e.path)? {
            Some(s) if s.same_stat(e) && s.meta.nlink == e.meta.nlink => {}
            _ => return Ok(None),
        }
    }
    let skipped = base
        .entries
        .iter()
        .filter(|e| e.content == Content::Skipped)
        .map(|e| e.path.clone())
        .collect();
    Ok(Some(Taken {
        manifest: Arc::clone(base),
        id: pass.base_id,
        skipped,
        hashed: 0,
        from_git: 0,
        rules: None,
    }))
}

/// The snapshot of what a walk found (begun at `taken_at_ns`, with git's index read
/// alongside for a first snapshot).
fn take_walked(
    scope: &Scope,
    objects: &Objects,
    cache: Option<(&Arc<Manifest>, Hash)>,
    (walked, taken_at_ns, early): (Walked, i64, Option<super::checkout::Pending>),
) -> Result<Taken> {
    let cache_id = cache.map(|(_, id)| id);
    let cache_arc = cache.map(|(m, _)| m);
    let cache: Option<&Manifest> = cache_arc.map(|m| &**m);
    let Walked {
        seen,
        attributes,
        rules,
        ..
    } = walked;
    // An unchanged tree is compared with the cached manifest, not built again.
    if let (Some(cached), Some(id)) = (cache_arc, cache_id)
        && stands_unchanged(scope, objects, cached, id, &seen)?
    {
        objects.remember_present(id, cached.entries.iter().filter_map(Entry::hash));
        drop_aside(seen);
        return Ok(Taken {
            manifest: Arc::clone(cached),
            id,
            skipped: Vec::new(),
            hashed: 0,
            from_git: 0,
            rules,
        });
    }

    // Opened when the first file is not vouched for by the stat cache: an unchanged
    // tree never reads git's index. Not with an attribute file that is not a file (a
    // FIFO would block gitoxide reading it).
    let mut checkout = Lazy::new(|| match (attributes, early) {
        (Some(true), _) => None,
        (_, Some(early)) => early.finish(attributes.is_some()),
        (_, None) => Checkout::open(&scope.root, objects.git_shared(), attributes.is_some()),
    });
    let mut plan = Plan::of(scope, seen, cache, &mut checkout, objects);
    plan.check_git_sizes(objects, cache);
    let from_git = plan.from_git.len() + plan.from_git_sized;
    let repairing = plan.reread_missing(objects, cache_id)?;
    plan.check_total_size(scope)?;
    let staged = plan.read(scope, objects, &repairing)?;
    let Plan {
        mut entries,
        gone,
        to_read,
        skipped,
        as_cached,
        ..
    } = plan;
    // The links to git's objects are durable before a manifest can name them.
    objects.git().sync_linked()?;
    let mut index = 0;
    entries.retain(|_| {
        index += 1;
        !gone[index - 1]
    });
    // Nothing changed since the cached manifest, and nothing in it was racy: it
    // stands for this snapshot too.
    if let (Some(cached), Some(id)) = (cache_arc, cache_id)
        && to_read.is_empty()
        && as_cached
    {
        debug_assert!(cached.entries == entries);
        let hashed = to_read.len();
        objects.remember_present(id, cached.entries.iter().filter_map(Entry::hash));
        drop_aside(entries);
        return Ok(Taken {
            manifest: Arc::clone(cached),
            id,
            skipped,
            hashed,
            from_git,
            rules,
        });
    }
    let manifest = Manifest {
        taken_at_ns,
        entries,
    };
    let id = commit(objects, staged, &manifest)?;
    // Every object it names is there now: vouched ones were checked, the rest named.
    objects.remember_present(id, manifest.entries.iter().filter_map(Entry::hash));
    Ok(Taken {
        manifest: Arc::new(manifest),
        id,
        skipped,
        hashed: to_read.len(),
        from_git,
        rules,
    })
}

/// Whether the cached manifest `id` stands for the tree the walk saw, as it is: the
/// same paths, each with the stat and owner it recorded, every file's content vouched
/// for by the stat cache (not racy), every symlink's target the same, and every object
/// it names still in the store. Exactly when [`Plan::of`] and the steps after it would
/// come to that manifest with nothing to read, but with nothing built: a tree of
/// 100,000 paths is compared, not copied into a new list to be found equal. `false`
/// (the whole way is taken) for anything else, including what the whole way would
/// still find unchanged (a racy file clean in git, a file over the size limit).
fn stands_unchanged(
    scope: &Scope,
    objects: &Objects,
    cached: &Manifest,
    id: Hash,
    seen: &[Seen],
) -> Result<bool> {
    if cached.entries.len() != seen.len() {
        return Ok(false);
    }
    let at = cached.taken_at_ns;
    for (c, s) in cached.entries.iter().zip(seen) {
        if c.path != s.path || c.meta != s.meta || !s.same_stat(c) {
            return Ok(false);
        }
        let same = match s.kind {
            Kind::File => cache_vouches(c, at, s) && c.content.is_kept(),
            // Read as `Plan::content` reads it: a link whose target is another now
            // (or that is gone) takes the whole way.
            Kind::Symlink => std::fs::read_link(scope.abs(&s.path)).is_ok_and(|target| {
                use std::os::unix::ffi::OsStrExt;
                matches!(&c.content, Content::Link(l) if l.as_slice() == target.as_os_str().as_bytes())
            }),
            _ => c.content == Content::None,
        };
        if !same {
            return Ok(false);
        }
    }
    // As `Plan::reread_missing` checks the files the cache vouches for (here: all).
    let missing = objects
        .missing_since(Some(id), cached.entries.iter().filter_map(Entry::hash))
        .context("cannot check the store's objects")?;
    if !missing.is_empty()
        || !objects
            .git()
            .missing(cached.entries.iter().filter_map(|e| e.content.git()))
            .is_empty()
    {
        return Ok(false);
    }
    // What `take_walked` does before it returns the cached manifest.
    objects.git().sync_linked()?;
    Ok(true)
}

/// A snapshot before its files are read: one entry per path seen, built in place
/// (the walk's list is consumed as it goes), and what is to be done about each file.
/// A tree of 100,000 paths is held once, not twice.
struct Plan {
    /// Files to read keep a placeholder until they are read.
    entries: Vec<Entry>,
    /// Paths that vanished meanwhile.
    gone: Vec<bool>,
    /// The files to read, as indices into `entries`.
    to_read: Vec<usize>,
    /// The files whose content the stat cache vouches for.
    vouched: Vec<usize>,
    /// Files to read whose cached content was a git blob: read back as that blob when
    /// their content is still its (a touched file is not a changed one).
    was_git: HashMap<usize, BlobId>,
    /// Files recorded as clean in their git checkout (their blobs' sizes checked by
    /// [`Plan::check_git_sizes`]).
    from_git: Vec<usize>,
    /// ... and how many whose blobs' sizes were read ahead, and matched.
    from_git_sized: usize,
    /// Files over the size limit: recorded, not kept.
    skipped: Vec<Vec<u8>>,
    /// Every entry is the cached manifest's, in its place, as first taken (a file
    /// found to read after, in `to_read`, changes it).
    as_cached: bool,
}

impl Plan {
    fn of(
        scope: &Scope,
        seen: Vec<Seen>,
        cache: Option<&Manifest>,
        checkout: &mut Lazy<Checkout, impl FnOnce() -> Option<Checkout>>,
        objects: &Objects,
    ) -> Plan {
        let mut plan = Plan {
            entries: Vec::with_capacity(seen.len()),
            gone: vec![false; seen.len()],
            to_read: Vec::new(),
            vouched: Vec::new(),
            was_git: HashMap::new(),
            from_git: Vec::new(),
            from_git_sized: 0,
            skipped: Vec::new(),
            as_cached: cache.is_some(),
        };
        // Both the walk and the manifest are sorted by path: one pass over the manifest
        // finds each path's cached entry (a path it lacks only goes unvouched).
        let (cached_entries, cached_at) =
            cache.map_or((&[][..], 0), |m| (&m.entries[..], m.taken_at_ns));
        // Paths are compared once each (they are where the time of this pass goes).
        let mut next = 0;
        for (i, s) in seen.into_iter().enumerate() {
            let mut found = None;
            while let Some(e) = cached_entries.get(next) {
                match e.path.cmp(&s.path) {
                    std::cmp::Ordering::Less => next += 1,
                    std::cmp::Ordering::Equal => {
                        found = Some(e);
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            let cached = found.map(|e| (e, cached_at));
            let mut git = |s: &Seen| checkout.get()?.clean(s, objects.git());
            let content = plan.content(scope, i, &s, cached, &mut git);
            let entry = s.into_entry(content);
            // Compared while both are at hand, not in a pass of its own: the `i`th
            // cached entry, found here with this path, equal in all else. (Stricter
            // than `cached_entries[i] == entry` only where the cached manifest is not
            // sorted, which ours always is: never taken for unchanged when it is not.)
            plan.as_cached &= next == i && found.is_some_and(|c| c.equal_but_path(&entry));
            plan.entries.push(entry);
        }
        plan.as_cached &= cached_entries.len() == plan.entries.len();
        plan
    }

    /// The content of the `i`th path seen as far as it is known without reading a
    /// file: a symlink's target, a cached hash the stat cache vouches for, the blob
    /// of a file clean in its git checkout (`git`), or a placeholder (and the file is
    /// put down to be read or skipped).
    fn content(
        &mut self,
        scope: &Scope,
        i: usize,
        s: &Seen,
        cached: Option<(&Entry, i64)>,
        git: &mut dyn FnMut(&Seen) -> Option<(BlobId, bool)>,
    ) -> Content {
        match s.kind {
            Kind::Dir => Content::None,
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => Content::None,
            Kind::Symlink => match std::fs::read_link(scope.abs(&s.path)) {
                Ok(target) => {
                    use std::os::unix::ffi::OsStrExt;
                    Content::Link(target.as_os_str().as_bytes().to_vec())
                }
                // Gone between the walk and now: it was never there.
                Err(_) => {
                    self.gone[i] = true;
                    Content::None
                }
            },
            Kind::File => match cached {
                Some((c, at)) if cache_vouches(c, at, s) && c.content.is_kept() => {
                    self.vouched.push(i);
                    c.content.clone()
                }
                // Clean in git, and not known by another name: a file recorded by its
                // hash is read (its content may be the same, and must compare so). Not
                // over the size limit: a blob is put back from memory, whole (a clean
                // 10 GB file would take 30 GB to put back); such a file is skipped.
                c if !c.is_some_and(|(c, _)| matches!(c.content, Content::Hash(_)))
                    && s.stamp.size <= scope.max_file_size
                    && let Some((id, sized)) = git(s) =>
                {
                    match sized {
                        true => self.from_git_sized += 1,
                        false => self.from_git.push(i),
                    }
                    Content::Git(id)
                }
                _ if s.stamp.size > scope.max_file_size => {
                    self.skipped.push(s.path.clone());
                    Content::Skipped
                }
                _ => {
                    // Of another size, it is not that blob: no need to hash it as git does.
                    let same_size = cached.filter(|(c, _)| c.size == s.stamp.size);
                    if let Some(id) = same_size.and_then(|(c, _)| c.content.git()) {
                        self.was_git.insert(i, *id);
                    }
                    self.to_read.push(i);
                    Content::None
                }
            },
        }
    }

    /// Files taken from git whose blob is not their size (a conversion on checkout, a
    /// damaged pack) are read as any file, all blobs' sizes read at once.
    fn check_git_sizes(&mut self, objects: &Objects, cache: Option<&Manifest>) {
        let ids: Vec<BlobId> = self
            .from_git
            .iter()
            .filter_map(|&i| self.entries[i].content.git().copied())
            .collect();
        let sizes = objects.git().sizes(&ids);
        let from_git = std::mem::take(&mut self.from_git);
        for (i, size) in from_git.into_iter().zip(sizes) {
            if size == Some(self.entries[i].size) {
                self.from_git.push(i);
                continue;
            }
            let cached = cache.and_then(|m| m.find(&self.entries[i].path));
            let same_size = cached.filter(|c| c.size == self.entries[i].size);
            if let Some(id) = same_size.and_then(|c| c.content.git()) {
                self.was_git.insert(i, *id);
            }
            self.entries[i].content = Content::None;
            self.to_read.push(i);
        }
    }

    /// The stat cache vouches for a file's content, not for the store still holding it:
    /// a snapshot that names an object the store lacks could not be restored. Those
    /// files are read again (a fresh read of the same content re-creates the object).
    /// Returns them, with the object each must come back as.
    fn reread_missing(
        &mut self,
        objects: &Objects,
        cache_id: Option<Hash>,
    ) -> Result<HashMap<usize, Hash>> {
        let entries = &mut self.entries;
        let repairs = objects
            .missing_since(
                cache_id,
                self.vouched.iter().filter_map(|i| entries[*i].hash()),
            )
            .context("cannot check the store's objects")?;
        let mut repairing = HashMap::new();
        if !repairs.is_empty() {
            let repairs: HashSet<Hash> = repairs.into_iter().collect();
            for &i in &self.vouched {
                if let Some(h) = entries[i].hash().filter(|h| repairs.contains(*h)) {
                    repairing.insert(i, *h);
                    entries[i].content = Content::None;
                    self.to_read.push(i);
                }
            }
        }
        // Git blobs the cache vouches for: a blob gone from the store (a store copied
        // without its `git-objects/`) is read from the file again, as an object of ours.
        let missing = objects.git().missing(
            self.vouched
                .iter()
                .filter_map(|i| entries[*i].content.git()),
        );
        if !missing.is_empty() {
            let missing: HashSet<BlobId> = missing.into_iter().collect();
            for &i in &self.vouched {
                if entries[i]
                    .content
                    .git()
                    .is_some_and(|id| missing.contains(id))
                {
                    entries[i].content = Content::None;
                    self.to_read.push(i);
                }
            }
        }
        Ok(repairing)
    }

    fn check_total_size(&self, scope: &Scope) -> Result<()> {
        let to_copy: u64 = self.to_read.iter().map(|i| self.entries[*i].size).sum();
        if to_copy > scope.max_total_size {
            bail!(
                "the snapshot would copy {} into the store, over rollback.scope.max_total_size ({}): \
                 narrow rollback.scope.root, exclude what the run does not touch, or raise the limit",
                crate::policy::values::human_size(to_copy),
                crate::policy::values::human_size(scope.max_total_size)
            );
        }
        Ok(())
    }

    /// Reads the files to read into the store, staged, not yet named: fills in their
    /// entries, or marks them gone. On failure nothing this snapshot staged is kept.
    fn read(
        &mut self,
        scope: &Scope,
        objects: &Objects,
        repairing: &HashMap<usize, Hash>,
    ) -> Result<Vec<Staged>> {
        let staged = Mutex::new(Vec::new());
        let result = read_all(
            scope,
            objects,
            &self.entries,
            &self.to_read,
            &staged,
            (repairing, &self.was_git),
        );
        let staged = staged.into_inner().unwrap_or_else(|p| p.into_inner());
        let read = match result {
            Ok(read) => read,
            Err(e) => {
                // Leave the store as it was: nothing this snapshot staged gets a name.
                objects.discard(staged);
                return Err(e);
            }
        };
        for (i, entry) in read {
            match entry {
                Some(e) => self.entries[i] = e,
                None => self.gone[i] = true,
            }
        }
        Ok(staged)
    }
}

/// Names what was read, then the manifest that names it: its id. On failure the
/// objects this snapshot added are removed again.
fn commit(objects: &Objects, staged: Vec<Staged>, manifest: &Manifest) -> Result<Hash> {
    // The contents first, then the manifest that names them: each staged, synced,
    // then renamed, so no manifest ever points at an object a crash could lose.
    let added = objects.commit(staged)?;
    match objects.stage_bytes(&manifest.encode()).and_then(|(id, m)| {
        objects.commit(m.into_iter().collect())?;
        Ok(id)
    }) {
        Ok(id) => Ok(id),
        Err(e) => {
            for h in &added {
                objects.remove(h);
            }
            Err(e)
        }
    }
}

/// Reads the files at `to_read` (indices into `seen`) into the store, on two threads.
fn read_all(
    scope: &Scope,
    objects: &Objects,
    entries: &[Entry],
    to_read: &[usize],
    staged: &Mutex<Vec<Staged>>,
    (repairing, was_git): (&HashMap<usize, Hash>, &HashMap<usize, BlobId>),
) -> Result<Vec<(usize, Option<Entry>)>> {
    // A few files are read before a thread would start; many, on every core (up to 4).
    let threads = match to_read.len() {
        0 => return Ok(Vec::new()),
        1..64 => 1,
        _ => super::cores().clamp(1, 4),
    };
    let reader = Reader {
        scope,
        objects,
        entries,
        to_read,
        staged,
        repairing,
        was_git,
        next: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
    };
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads).map(|_| s.spawn(|| reader.work())).collect();
        let mut all = Vec::new();
        let mut first_error = None;
        for w in workers {
            match w.join().expect("snapshot worker panicked") {
                Ok(v) => all.extend(v),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(all),
        }
    })
}

/// What the workers of [`read_all`] share: the files to read, the next one to
/// take, and whether one of them has failed.
struct Reader<'a> {
    scope: &'a Scope,
    objects: &'a Objects,
    entries: &'a [Entry],
    to_read: &'a [usize],
    staged: &'a Mutex<Vec<Staged>>,
    repairing: &'a HashMap<usize, Hash>,
    was_git: &'a HashMap<usize, BlobId>,
    next: AtomicUsize,
    failed: AtomicBool,
}

impl Reader<'_> {
    /// One worker: takes files until there are none left or one fails anywhere.
    fn work(&self) -> Result<Vec<(usize, Option<Entry>)>> {
        let mut out = Vec::new();
        loop {
            if self.failed.load(Ordering::Relaxed) {
                return Ok(out);
            }
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&i) = self.to_read.get(k) else {
                return Ok(out);
            };
            match self.read(i) {
                Ok(e) => out.push((i, e)),
                Err(e) => {
                    self.failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
    }

    /// The `i`th entry's file, as [`read_one`] reads it; a file read to replace a
    /// missing object says so when it cannot be.
    fn read(&self, i: usize) -> Result<Option<Entry>> {
        let e = &self.entries[i];
        let seen = Seen {
            path: e.path.clone(),
            kind: e.kind,
            mode: e.mode,
            stamp: super::objects::Stamp {
                size: e.size,
                mtime_ns: e.mtime_ns,
                ctime_ns: e.ctime_ns,
                ino: e.ino,
            },
            meta: e.meta,
        };
        let was_git = self.was_git.get(&i).copied();
        read_one(self.scope, self.objects, &seen, self.staged, was_git).map_err(|e| {
            match self.repairing.get(&i) {
                Some(h) => e.context(format!(
                    "object {} of {} is missing from the store, and the file \
                     cannot be read again to replace it",
                    hex(h),
                    self.scope.abs(&seen.path).display()
                )),
                None => e,
            }
        })
    }
}

/// One file into the store, read again while it keeps changing. A file recorded as
/// the git blob `was_git` whose content is still that blob's stays recorded so (the
/// blob is in the store): a touched file is not a changed one.
/// A path [`read_one`] could not open or read as `current`: as it is now (`Some`,
/// another stat, to take again), gone or no longer reached through directories
/// (`None`), or, when it has not changed, the error itself — unless the error says
/// the path was not reached as a stat just reached it (a directory above swapped
/// back and forth): then it is taken again too, and a path that keeps changing
/// ends as unsettled.
fn changed(scope: &Scope, current: &Seen, e: std::io::Error) -> Result<Option<Seen>> {
    let raced = matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EINVAL)
    );
    match scope.stat(&current.path)? {
        None => Ok(None),
        Some(now) if raced || now.stamp != current.stamp || now.kind != current.kind => {
            Ok(Some(now))
        }
        Some(_) => {
            Err(e).with_context(|| format!("cannot read {}", scope.abs(&current.path).display()))
        }
    }
}

fn read_one(
    scope: &Scope,
    objects: &Objects,
    seen: &Seen,
    staged: &Mutex<Vec<Staged>>,
    was_git: Option<BlobId>,
) -> Result<Option<Entry>> {
    let path = scope.abs(&seen.path);
    let mut current = seen.clone();
    for _ in 0..SETTLE_TRIES {
        if current.kind != Kind::File {
            // It became something else while we looked: take it as it is now.
            let content = match current.kind {
                Kind::Symlink => match scope.read_link(&seen.path) {
                    Ok(target) => Content::Link(target),
                    Err(e) => match changed(scope, &current, e)? {
                        Some(now) => {
                            current = now;
                            continue;
                        }
                        None => return Ok(None),
                    },
                },
                _ => Content::None,
            };
            return Ok(Some(current.into_entry(content)));
        }
        // Opened from the root through no symlink: a directory above it swapped for
        // one since the walk cannot make the snapshot hold a file outside the tree.
        let src = match scope.open_file(&seen.path) {
            Ok(src) => src,
            Err(e) => match changed(scope, &current, e)? {
                Some(now) => {
                    current = now;
                    continue;
                }
                None => return Ok(None),
            },
        };
        // Still at its path once read? By the path: one lstat. That it could follow a
        // directory swapped for a symlink does not matter here: the stamp must be the
        // very file read (opened as above), or the file is taken again from the top.
        let now = || {
            std::fs::symlink_metadata(&path)
                .ok()
                .filter(|m| m.is_file())
                .map(|m| super::objects::Stamp::of(&m))
        };
        match objects.put_file(src, &path, current.stamp, was_git.is_some(), now)? {
            Put::Stored {
                hash,
                staged: s,
                blob,
            } => {
                if let Some(id) = was_git.filter(|id| {
                    blob.as_ref() == Some(id) && objects.git().missing([id]).is_empty()
                }) {
                    objects.discard(s.into_iter().collect());
                    return Ok(Some(current.into_entry(Content::Git(id))));
                }
                staged.lock().unwrap().extend(s);
                return Ok(Some(current.into_entry(Content::Hash(hash))));
            }
            Put::Changed => match scope.stat(&seen.path)? {
                Some(now) => current = now,
                None => return Ok(None),
            },
        }
    }
    bail!(Unsettled {
        path: path.display().to_string(),
        tries: SETTLE_TRIES
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    /// A tree in one temporary directory and a store in another.
    struct Fixture {
        tree: tempfile::TempDir,
        store: tempfile::TempDir,
    }

    impl Fixture {
        fn new(files: &[(&str, &[u8])]) -> Fixture {
            let tree = tempfile::tempdir().unwrap();
            for (path, bytes) in files {
                let path = tree.path().join(path);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, bytes).unwrap();
            }
            Fixture {
                tree,
                store: tempfile::tempdir().unwrap(),
            }
        }

        fn scope(&self, max_file_size: u64, max_total_size: u64) -> Scope {
            Scope {
                root: self.tree.path().to_path_buf(),
                exclude: Vec::new(),
                respect_ignored: false,
                max_file_size,
                max_total_size,
                store: None,
                rules: None,
                identity: None,
            }
        }

        fn objects(&self) -> Objects {
            Objects::new(self.store.path())
        }
    }

    /// A directory swapped for a symlink out of the tree after the walk (by another
    /// process): the file below it is not opened, stat'ed or read through the link,
    /// so no snapshot holds what lies outside under the tree's name. (By paths, a
    /// check of the directories above followed by an lstat raced such a swap.)
    #[test]
    fn nothing_is_read_through_a_directory_swapped_for_a_symlink_after_the_walk() {
        let fx = Fixture::new(&[("sub/f", b"inside"), ("sub/l", b"x")]);
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("f"), "OUTSIDE").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", outside.path().join("l")).unwrap();
        let scope = fx.scope(u64::MAX, u64::MAX);
        let objects = fx.objects();
        let walked = scope.walk(&[]).unwrap();
        let seen = |p: &[u8]| walked.seen.iter().find(|s| s.path == p).unwrap().clone();
        let (file, link) = (seen(b"sub/f"), seen(b"sub/l"));
        let root = fx.tree.path();
        fs::rename(root.join("sub"), root.join("sub.real")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("sub")).unwrap();

        let e = scope.open_file(b"sub/f").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(scope.stat(b"sub/f").unwrap().is_none());
        assert!(scope.read_link(b"sub/l").is_err());
        let staged = Mutex::new(Vec::new());
        assert_eq!(
            read_one(&scope, &objects, &file, &staged, None).unwrap(),
            None
        );
        let link = Seen {
            kind: Kind::Symlink,
            ..link
        };
        assert_eq!(
            read_one(&scope, &objects, &link, &staged, None).unwrap(),
            None
        );
        assert!(staged.lock().unwrap().is_empty(), "nothing staged");

        // Through the tree's own directories, all three read as ever; a root reached
        // through a symlink of its own is fine too.
        fs::remove_file(root.join("sub")).unwrap();
        fs::rename(root.join("sub.real"), root.join("sub")).unwrap();
        let via = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(root, via.path().join("root")).unwrap();
        for scope in [
            scope.clone(),
            Scope {
                root: via.path().join("root"),
                ..scope.clone()
            },
        ] {
            let mut body = String::new();
            std::io::Read::read_to_string(&mut scope.open_file(b"sub/f").unwrap(), &mut body)
                .unwrap();
            assert_eq!(body, "inside");
            assert_eq!(scope.stat(b"sub/f").unwrap().unwrap().stamp, file.stamp);
            let got = read_one(&scope, &objects, &file, &staged, None)
                .unwrap()
                .unwrap();
            assert!(matches!(got.content, Content::Hash(_)));
        }
    }

    /// 300 files in 7 directories.
    fn many() -> Fixture {
        let files: Vec<(String, Vec<u8>)> = (0..300)
            .map(|i| (format!("d{}/f{i}", i % 7), format!("file {i}").into_bytes()))
            .collect();
        let files: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_str(), b.as_slice()))
            .collect();
        Fixture::new(&files)
    }

    /// `m` as if taken an hour later (past every racy window), stored: its id.
    fn dated_later(objects: &Objects, m: &Manifest) -> (Arc<Manifest>, Hash) {
        let later = Manifest {
            taken_at_ns: m.taken_at_ns + 3_600_000_000_000,
            entries: m.entries.clone(),
        };
        let id = commit(objects, Vec::new(), &later).unwrap();
        (Arc::new(later), id)
    }

    /// The shortcut for an unchanged tree (`stands_unchanged`) takes the cached
    /// manifest exactly when nothing changed, and leaves every change (of a file, a
    /// mode, a link's target, a directory's listing, an object gone from the store, a
    /// racy cache) to the whole way, which then takes a new manifest.
    #[test]
    fn only_an_unchanged_tree_stands_on_the_cached_manifest() {
        type Change = fn(&std::path::Path, &Objects, &Manifest);
        let changes: Vec<(&str, Change)> = vec![
            ("nothing", |_, _, _| {}),
            ("a file's content", |t, _, _| {
                fs::write(t.join("d1/f1"), "other").unwrap()
            }),
            ("a file's mode", |t, _, _| {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(t.join("d2/f2"), fs::Permissions::from_mode(0o600)).unwrap()
            }),
            ("a link's target", |t, _, _| {
                fs::remove_file(t.join("link")).unwrap();
                std::os::unix::fs::symlink("d2/f2", t.join("link")).unwrap()
            }),
            ("a file added", |t, _, _| {
                fs::write(t.join("d3/new"), "new").unwrap()
            }),
            ("a file removed", |t, _, _| {
                fs::remove_file(t.join("d4/f4")).unwrap()
            }),
            ("a directory's listing", |t, _, _| {
                fs::create_dir(t.join("d5/x")).unwrap();
                fs::remove_dir(t.join("d5/x")).unwrap()
            }),
            ("an object gone from the store", |t, objects, m| {
                let e = m.entries.iter().find(|e| e.path == b"d6/f6").unwrap();
                objects.remove(e.hash().unwrap());
                let _ = t;
            }),
        ];
        for (what, change) in changes {
            let fx = many();
            let root = fx.tree.path();
            std::os::unix::fs::symlink("d1/f1", root.join("link")).unwrap();
            let (objects, scope) = (fx.objects(), fx.scope(u64::MAX, u64::MAX));
            let first = take(&scope, &objects, None).unwrap();
            let (cache, id) = dated_later(&objects, &first.manifest);
            change(root, &objects, &cache);
            let walked = scope.walk(&[]).unwrap();
            let stands = stands_unchanged(&scope, &objects, &cache, id, &walked.seen).unwrap();
            let taken = take(&scope, &objects, Some((&cache, id))).unwrap();
            assert_eq!(stands, what == "nothing", "{what}");
            assert_eq!(taken.id == id, stands, "{what}: the whole way agrees");
            if stands {
                assert_eq!(taken.hashed, 0, "{what}");
            }
            // What was taken names only objects the store holds.
            let gone = objects
                .missing(taken.manifest.entries.iter().filter_map(Entry::hash))
                .unwrap();
            assert!(gone.is_empty(), "{what}: {} objects missing", gone.len());

            // A cache taken while the files were fresh (racy) vouches for none of them.
            let racy = take(&scope, &objects, None).unwrap();
            let walked = scope.walk(&[]).unwrap();
            let fresh = stands_unchanged(&scope, &objects, &racy.manifest, racy.id, &walked.seen);
            assert!(!fresh.unwrap(), "{what}: a racy cache");
        }
    }

    #[test]
    fn a_stat_cache_read_beside_the_walk_gives_the_snapshot_one_at_hand_gives() {
        let fx = many();
        let (objects, scope) = (fx.objects(), fx.scope(u64::MAX, u64::MAX));
        let first = take(&scope, &objects, None).unwrap();
        let (cache, id) = dated_later(&objects, &first.manifest);
        fs::write(fx.tree.path().join("d1/f1"), "changed").unwrap();
        fs::remove_file(fx.tree.path().join("d2/f2")).unwrap();
        fs::write(fx.tree.path().join("new"), "new").unwrap();
        let at_hand = take(&scope, &objects, Some((&cache, id))).unwrap();
        assert_eq!(at_hand.hashed, 2, "the cache vouches for the rest");
        let loading = Loading::start(&objects, id).expect("a readable header");
        assert_eq!(
            loading.size,
            first.manifest.entries.len(),
            "from the header"
        );
        let beside = take_with(&scope, &objects, Cache::Loading(loading), None).unwrap();
        // The same entries (the ids differ: a manifest names the time it was taken).
        assert_eq!(beside.manifest.entries, at_hand.manifest.entries);
        assert_eq!(beside.hashed, at_hand.hashed);
    }

    #[test]
    fn a_small_stat_cache_is_read_in_place_and_a_large_one_beside_the_walk() {
        let fx = many();
        let objects = fx.objects();
        let first = take(&fx.scope(u64::MAX, u64::MAX), &objects, None).unwrap();
        let Cache::Ready(Some((small, _))) = Cache::of(&objects, first.id) else {
            panic!("300 paths: read in place, no thread");
        };
        assert_eq!(small.entries, first.manifest.entries);
        let entry = first.manifest.entries[0].clone();
        let large = Manifest {
            taken_at_ns: 1,
            entries: (0..5000)
                .map(|i| Entry {
                    path: format!("p{i:05}").into_bytes(),
                    ..entry.clone()
                })
                .collect(),
        };
        let id = commit(&objects, Vec::new(), &large).unwrap();
        let Cache::Loading(loading) = Cache::of(&objects, id) else {
            panic!("5,000 paths: read beside the walk");
        };
        assert_eq!(loading.size, 5000);
        assert_eq!(loading.wait().unwrap().0.entries, large.entries);
    }

    #[test]
    fn a_damaged_stat_cache_read_beside_the_walk_vouches_for_nothing() {
        let fx = many();
        let (objects, scope) = (fx.objects(), fx.scope(u64::MAX, u64::MAX));
        let first = take(&scope, &objects, None).unwrap();
        let (_, id) = dated_later(&objects, &first.manifest);
        let first = Taken { id, ..first };
        let good = Loading::start(&objects, first.id).unwrap();
        let vouched = take_with(&scope, &objects, Cache::Loading(good), None).unwrap();
        assert_eq!(vouched.hashed, 0, "read whole, it vouches for every file");
        // The header now says a thousand times more entries, and the bytes no longer
        // match their name: the count plans the walk, the check refuses the rest.
        let path = objects.path(&first.id);
        let mut bytes = fs::read(&path).unwrap();
        bytes[16..24].copy_from_slice(&300_000u64.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let loading = Loading::start(&objects, first.id).expect("a readable header");
        assert_eq!(loading.size, 300_000);
        let taken = take_with(&scope, &objects, Cache::Loading(loading), None).unwrap();
        assert_eq!(taken.hashed, 300, "no cache: every file read again");
        assert_eq!(taken.manifest.entries, first.manifest.entries);
        // Not a manifest at all, or no object: no loader, and no cache.
        fs::write(&path, b"not a manifest").unwrap();
        assert!(Loading::start(&objects, first.id).is_none());
        fs::remove_file(&path).unwrap();
        assert!(Loading::start(&objects, first.id).is_none());
        assert!(load(&objects, first.id).is_none());
    }

    fn content_of<'m>(manifest: &'m Manifest, path: &str) -> &'m Content {
        &manifest.find(path.as_bytes()).unwrap().content
    }

    #[test]
    fn files_over_the_size_limit_are_recorded_not_kept() {
        let fx = Fixture::new(&[
            ("small", b"hello"),
            ("exact", &[b'e'; 16]),
            ("big", &[b'b'; 17]),
            ("sub/inner", b"inside"),
        ]);
        std::os::unix::fs::symlink("small", fx.tree.path().join("link")).unwrap();
        let objects = fx.objects();
        // Room for what is read (27 bytes), not for the big file too: it is not read.
        let taken = take(&fx.scope(16, 27), &objects, None).unwrap();

        assert_eq!(taken.skipped, [b"big".to_vec()]);
        let big = taken.manifest.find(b"big").unwrap();
        assert_eq!((&big.content, big.size), (&Content::Skipped, 17));
        assert!(!objects.contains(blake3::hash(&[b'b'; 17]).as_bytes()));
        assert_eq!(taken.hashed, 3, "small, exact (at the limit) and sub/inner");
        for (path, bytes) in [("small", &b"hello"[..]), ("exact", &[b'e'; 16])] {
            let Content::Hash(h) = content_of(&taken.manifest, path) else {
                panic!("{path} is not stored");
            };
            assert_eq!(h, blake3::hash(bytes).as_bytes());
            assert_eq!(objects.read(h).unwrap(), bytes, "{path}");
        }
        assert_eq!(content_of(&taken.manifest, "sub"), &Content::None);
        assert_eq!(
            content_of(&taken.manifest, "link"),
            &Content::Link(b"small".to_vec())
        );
    }

    #[test]
    fn the_manifest_is_stored_under_its_id_sorted_by_path() {
        let fx = Fixture::new(&[("b", b"2"), ("a/z", b"1"), ("a.txt", b"3")]);
        let objects = fx.objects();
        let taken = take(&fx.scope(1 << 20, 1 << 20), &objects, None).unwrap();
        let stored = objects.manifest(&taken.id).unwrap();
        assert_eq!(stored, *taken.manifest);
        let paths: Vec<&[u8]> = stored.entries.iter().map(|e| e.path.as_slice()).collect();
        assert_eq!(paths, [&b"a"[..], b"a.txt", b"a/z", b"b"], "bytewise order");
    }

    #[test]
    fn a_snapshot_over_the_total_limit_fails_and_names_no_object() {
        let fx = Fixture::new(&[("one", &[1; 8]), ("two", &[2; 8])]);
        let objects = fx.objects();
        let err = take(&fx.scope(1 << 20, 15), &objects, None).unwrap_err();
        assert!(format!("{err:#}").contains("max_total_size"), "{err:#}");
        assert!(objects.list().unwrap().is_empty());
    }
}
