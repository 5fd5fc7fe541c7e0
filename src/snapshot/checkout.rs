//! The git checkout around a scope: which of its files are clean, so that a snapshot
//! records git's blob id for them instead of reading and copying them.
//!
//! A file is clean, as `git status` decides it, when its index entry is an ordinary
//! one (stage 0; not assume-unchanged, skip-worktree or intent-to-add; a regular
//! file) and every stat field git recorded matches the file now: mtime and ctime to
//! the nanosecond, size, inode, device, owner and group. One more rule makes that
//! sound: an entry modified no earlier than the index file was written is *racy* (an
//! edit in the same clock tick leaves its stat as recorded), and is read as any file.
//!
//! A clean file's bytes are the blob's only when git converted nothing between them:
//! `core.autocrlf`, the `text`/`eol`/`crlf` attributes (line endings), and `filter`,
//! `ident` and `working-tree-encoding`. When any attribute file could apply, each
//! entry's attributes are looked up (as git does, with gitoxide): a filtered, ident or
//! re-encoded file is read as any file. And every file is taken from git only when
//! the blob's size is the file's: the attributes and configuration in force now need
//! not be those the file was checked out with (`git -c core.autocrlf=true checkout`,
//! a `.gitattributes` removed since), and git still calls it clean. A line-ending
//! conversion adds or removes a byte per line end it converts, and an ident expands,
//! so equal sizes mean nothing was converted. (A size-preserving filter dropped since
//! the checkout is the one conversion this cannot see.)
//!
//! Anything unusual — no readable index, a SHA-256 repository, a scope outside the
//! worktree, objects behind alternates, a store on another filesystem, a git file
//! that is a FIFO or anything else gitoxide could block on — means files are read
//! and copied as they would be without git: slower, never wrong.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::git_objects::{BlobId, GitObjects};
use super::manifest::Kind;
use super::scope::Seen;

/// The index entries inside one scope, and what is known about each.
pub struct Checkout {
    index: gix::index::File,
    /// Per entry in `entries`, when read ahead: the blob's size is the size git
    /// recorded (the file's, if its stat matches).
    size_ok: Option<Vec<bool>>,
    /// Whether the attributes were looked up (`converted` says what they found).
    looked_up: bool,
    /// The repository, for a later look-up of the attributes.
    repo: gix::ThreadSafeRepository,
    /// The entries inside the scope: a range of the index, sorted as the walk is.
    entries: std::ops::Range<usize>,
    /// Bytes of each entry's path before the scope's relative path (the scope root's
    /// path in the worktree, and a `/`).
    prefix: usize,
    /// Per entry in `entries`: never taken from git (a filter, ident or encoding).
    converted: Vec<bool>,
    /// The index file's mtime, in nanoseconds since the epoch: entries not older are racy.
    index_mtime_ns: i128,
    /// The checkout's git objects directory, where loose objects are linked from.
    objects: PathBuf,
    /// The next entry the walk's order can match.
    next: usize,
    /// Set when linking failed: no more files come from git in this snapshot.
    unlinkable: bool,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkout")
            .field("entries", &self.entries)
            .field("objects", &self.objects)
            .finish()
    }
}

/// How long finding the checkout and reading its index and attributes may take before
/// the snapshot reads the files instead. gitoxide opens git's files as they are: a
/// FIFO where one is expected (or named by a config include) would block it forever.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// An index larger than this is not read (a sparse file or garbage is not an index).
const MAX_INDEX: u64 = 2 << 30;

impl Checkout {
    /// Starts reading the checkout around `root` on a thread of its own (the index, the
    /// attributes when an attribute file outside the walk's reach can apply, the packs
    /// linked into `store`, and with `sizes` every entry's blob size), so that it can go
    /// on while the scope is walked; `None` when git's files are not plain files.
    pub fn start(root: &Path, store: Arc<GitObjects>, sizes: bool) -> Option<Pending> {
        if !plain_git_files(root) {
            return None;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let owned = root.to_path_buf();
        std::thread::Builder::new()
            .name("git-index".into())
            .spawn(move || {
                let _ = tx.send(Checkout::read(&owned, &store, sizes));
            })
            .ok()?;
        Some(Pending { rx })
    }

    /// [`Checkout::start`] and [`Pending::finish`] at once.
    pub fn open(
        root: &Path,
        store: Arc<GitObjects>,
        tree_has_attributes: bool,
    ) -> Option<Checkout> {
        Checkout::start(root, store, false)?.finish(tree_has_attributes)
    }

    /// What [`Checkout::start`]'s thread does: may block on what git's files are.
    fn read(root: &Path, store: &GitObjects, sizes: bool) -> Option<Checkout> {
        let repo = gix::discover(root).ok()?;
        // A repository gitoxide does not fully trust (another user's) has configuration
        // it did not read: nothing is taken from it.
        if repo.object_hash() != gix::hash::Kind::Sha1
            || repo.git_dir_trust() != gix::sec::Trust::Full
        {
            return None;
        }
        let workdir = std::fs::canonicalize(repo.workdir()?).ok()?;
        let root = std::fs::canonicalize(root).ok()?;
        let inner = root.strip_prefix(&workdir).ok()?;
        let mut prefix = Vec::new();
        for c in inner.components() {
            use std::os::unix::ffi::OsStrExt;
            prefix.extend_from_slice(c.as_os_str().as_bytes());
            prefix.push(b'/');
        }
        // A scope inside `.git` itself is not part of any checkout.
        if prefix.starts_with(b".git/") {
            return None;
        }
        let objects = repo.common_dir().join("objects");
        let index = repo.open_index().ok()?;
        let all = index.entries();
        let start = all.partition_point(|e| bytes(e.path(&index)) < prefix.as_slice());
        let end = start
            + all[start..]
                .iter()
                .take_while(|e| e.path(&index).starts_with(&prefix))
                .count();
        let t = index.timestamp();
        let index_mtime_ns =
            i128::from(t.unix_seconds()) * 1_000_000_000 + i128::from(t.nanoseconds());
        let mut checkout = Checkout {
            converted: vec![false; end - start],
            size_ok: None,
            looked_up: false,
            repo: repo.clone().into_sync(),
            index,
            entries: start..end,
            prefix: prefix.len(),
            index_mtime_ns,
            objects,
            next: start,
            unlinkable: false,
        };
        if checkout.attributes_may_apply(&repo, &root, &workdir) {
            checkout.look_up_attributes(&repo)?;
        }
        store.adopt_packs(&checkout.objects).ok()?;
        if sizes {
            checkout.read_sizes(store);
        }
        Some(checkout)
    }

    /// Every ordinary entry's blob size against the size git recorded, read ahead.
    fn read_sizes(&mut self, store: &GitObjects) {
        let entries = &self.index.entries()[self.entries.clone()];
        let blob = |e: &gix::index::Entry| match e.id {
            gix::ObjectId::Sha1(id) if ordinary(e) => Some(id),
            _ => None,
        };
        let ids: Vec<BlobId> = entries.iter().filter_map(blob).collect();
        let mut sizes = store.sizes(&ids).into_iter();
        self.size_ok = Some(
            entries
                .iter()
                .map(|e| {
                    // `sizes` has one per blob, in the same order.
                    blob(e).is_some() && sizes.next().flatten() == Some(u64::from(e.stat.size))
                })
                .collect(),
        );
    }

    /// Whether any attribute file could name an attribute for a path of the scope.
    fn attributes_may_apply(&self, repo: &gix::Repository, root: &Path, workdir: &Path) -> bool {
        let in_index = self.index.entries().iter().any(|e| {
            let p = e.path(&self.index);
            bytes(p) == b".gitattributes" || p.ends_with(b"/.gitattributes")
        });
        let mut files = vec![repo.common_dir().join("info/attributes")];
        // The directories from the worktree's top down to the scope's root.
        let mut dir = root.to_path_buf();
        while dir.starts_with(workdir) {
            files.push(dir.join(".gitattributes"));
            if !dir.pop() {
                break;
            }
        }
        let config = repo.config_snapshot();
        match config.trusted_path("core.attributesFile") {
            Ok(Some(p)) => files.push(p),
            _ => {
                if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
                    files.push(PathBuf::from(xdg).join("git/attributes"));
                } else if let Some(home) = std::env::var_os("HOME") {
                    files.push(PathBuf::from(home).join(".config/git/attributes"));
                }
            }
        }
        files.push(PathBuf::from("/etc/gitattributes"));
        files.push(PathBuf::from("/usr/local/etc/gitattributes"));
        // Below the scope's root, the walk says (it sees those it leaves out, too).
        in_index || files.iter().any(|f| f.exists())
    }

    /// Looks up every entry's conversion attributes, as git would apply them now: a
    /// filtered, ident or re-encoded entry is never taken from git. (Line endings need
    /// no look-up: every entry is size-checked, see [`Checkout::clean`].)
    fn look_up_attributes(&mut self, repo: &gix::Repository) -> Option<()> {
        use gix::attrs::StateRef;
        let mut stack = repo
            .attributes_only(
                &self.index,
                gix::worktree::stack::state::attributes::Source::WorktreeThenIdMapping,
            )
            .ok()?;
        self.looked_up = true;
        let names = ["filter", "ident", "working-tree-encoding"];
        let mut out = stack.selected_attribute_matches(names);
        for (k, i) in self.entries.clone().enumerate() {
            let e = &self.index.entries()[i];
            let path = e.path(&self.index);
            let platform = stack.at_entry(path, Some(e.mode)).ok()?;
            platform.matching_attributes(&mut out);
            for m in out.iter_selected() {
                let state = m.assignment.state;
                let specified = !matches!(state, StateRef::Unspecified);
                match m.assignment.name.as_str() {
                    "filter" | "working-tree-encoding"
                        if specified && !matches!(state, StateRef::Unset) =>
                    {
                        self.converted[k] = true
                    }
                    "ident" if matches!(state, StateRef::Set) => self.converted[k] = true,
                    _ => {}
                }
            }
        }
        Some(())
    }

    /// The blob id of `seen`, when it is clean in the checkout and the store holds its
    /// blob. Paths must come in the walk's order (sorted by bytes).
    ///
    /// Its size is still to be compared with the blob's, by the caller, for all such
    /// files at once ([`GitObjects::sizes`]); always: the attributes and `core.autocrlf`
    /// in force now need not be those the file was checked out or added with (`git -c
    /// core.autocrlf=true checkout`, a `.gitattributes` since removed), and git calls
    /// such a file clean. A line-ending conversion or an ident changes the size. The
    /// header read also refuses a blob the store cannot find where its index says (a
    /// truncated pack, an empty loose object left by a crash).
    pub fn clean(&mut self, seen: &Seen, store: &GitObjects) -> Option<(BlobId, bool)> {
        if seen.kind != Kind::File || self.unlinkable {
            return None;
        }
        let entries = self.index.entries();
        while self.next < self.entries.end
            && entries[self.next].path(&self.index)[self.prefix..] < *seen.path.as_slice()
        {
            self.next += 1;
        }
        let i = self.next;
        let e = entries.get(i).filter(|_| i < self.entries.end)?;
        if e.path(&self.index)[self.prefix..] != seen.path[..] {
            return None;
        }
        let k = i - self.entries.start;
        if self.converted[k] || !ordinary(e) || !same_stat(&e.stat, seen) || self.racy(&e.stat) {
            return None;
        }
        let gix::ObjectId::Sha1(id) = e.id else {
            return None;
        };
        match store.hold(&id, &self.objects) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(_) => {
                self.unlinkable = true;
                return None;
            }
        }
        // Read ahead and found right: the caller need not read this size again (an
        // entry found wrong may still be right once its loose object is linked). The
        // size read ahead was git's, cut to 32 bits: it is the file's only below 4 GiB.
        let verified = self.size_ok.as_ref().is_some_and(|ok| ok[k])
            && seen.stamp.size == u64::from(e.stat.size);
        Some((id, verified))
    }

    fn racy(&self, stat: &gix::index::entry::Stat) -> bool {
        let mtime = i128::from(stat.mtime.secs) * 1_000_000_000 + i128::from(stat.mtime.nsecs);
        mtime >= self.index_mtime_ns
    }
}

/// A checkout being read (see [`Checkout::start`]).
pub struct Pending {
    rx: std::sync::mpsc::Receiver<Option<Checkout>>,
}

impl Pending {
    /// The checkout, once read (waiting at most [`OPEN_TIMEOUT`]), with the attributes
    /// looked up if `tree_has_attributes` (the walk saw a `.gitattributes` in a
    /// directory of the scope, in scope or left out by the ignore rules, which git does
    /// not apply to attribute files) and they were not yet. Never blocks longer: the
    /// look-up is on a thread too.
    pub fn finish(self, tree_has_attributes: bool) -> Option<Checkout> {
        let checkout = self.rx.recv_timeout(OPEN_TIMEOUT).ok()??;
        if !tree_has_attributes || checkout.looked_up {
            return Some(checkout);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("git-attributes".into())
            .spawn(move || {
                let mut checkout = checkout;
                let repo = checkout.repo.to_thread_local();
                let done = checkout.look_up_attributes(&repo).map(|()| checkout);
                let _ = tx.send(done);
            })
            .ok()?;
        rx.recv_timeout(OPEN_TIMEOUT).ok()?
    }
}

/// Whether there is a checkout around `root` whose files git (and gitoxide) open to
/// find it and read its index are regular files where they exist, and the index not
/// huge: a FIFO among them would block, a symlink to `/dev/zero` never end.
fn plain_git_files(root: &Path) -> bool {
    let Some(dot_git) = root
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|p| std::fs::symlink_metadata(p).is_ok())
    else {
        // No checkout around it at all: nothing to read (and no thread to start).
        return false;
    };
    let Ok(meta) = std::fs::metadata(&dot_git) else {
        return false;
    };
    if !meta.is_dir() && !meta.is_file() {
        return false;
    }
    let Some(dirs) = super::git::dirs(&dot_git) else {
        // Not a checkout gitoxide would use either.
        return meta.is_file();
    };
    let plain = |p: PathBuf, limit: u64| match std::fs::metadata(&p) {
        Ok(m) => m.is_file() && m.len() <= limit,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    let own = ["HEAD", "config", "commondir", "gitdir", "packed-refs"];
    let common = [
        "config",
        "packed-refs",
        "info/attributes",
        "objects/info/alternates",
    ];
    plain(dirs.git.join("index"), MAX_INDEX)
        && own.iter().all(|f| plain(dirs.git.join(f), MAX_INDEX))
        && common.iter().all(|f| plain(dirs.common.join(f), MAX_INDEX))
}

/// A stage-0 regular file whose stat git keeps up to date.
fn ordinary(e: &gix::index::Entry) -> bool {
    use gix::index::entry::{Flags, Mode};
    e.stage_raw() == 0
        && (e.mode == Mode::FILE || e.mode == Mode::FILE_EXECUTABLE)
        && !e
            .flags
            .intersects(Flags::ASSUME_VALID | Flags::SKIP_WORKTREE | Flags::INTENT_TO_ADD)
}

/// Every field git records, as git truncates it (32 bits), equal to the file's now.
fn same_stat(stat: &gix::index::entry::Stat, seen: &Seen) -> bool {
    let split = |ns: i64| {
        (
            ns.div_euclid(1_000_000_000) as u32,
            ns.rem_euclid(1_000_000_000) as u32,
        )
    };
    let (ms, mn) = split(seen.stamp.mtime_ns);
    let (cs, cn) = split(seen.stamp.ctime_ns);
    seen.stamp.mtime_ns >= 0
        && (stat.mtime.secs, stat.mtime.nsecs) == (ms, mn)
        && (stat.ctime.secs, stat.ctime.nsecs) == (cs, cn)
        && stat.size == seen.stamp.size as u32
        && stat.ino == seen.stamp.ino as u32
        && stat.dev == seen.meta.dev as u32
        && stat.uid == seen.meta.uid
        && stat.gid == seen.meta.gid
}

fn bytes(p: &gix::bstr::BStr) -> &[u8] {
    p
}
