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
//! A clean file's bytes are the blob's only when git converted nothing between them.
//! Line endings change the size (a conversion adds or removes a byte per line end): when
//! `core.autocrlf` or `core.eol` is set at all (even to `false`: a checkout made under
//! another value keeps its line endings), or an attribute file gives a path `text`,
//! `eol` or `crlf`, a file is taken from git only when its blob has exactly its size
//! (read from the pack entry's header; checking every blob would cost a read of the
//! whole pack). `filter`, `ident` and `working-tree-encoding` may keep the size: when
//! any attribute file could apply, each entry's attributes are looked up (as git does,
//! with gitoxide), and a file with one of them is read as any file. What neither rule
//! sees is a conversion whose setting was removed without a trace after the checkout
//! (`git config --unset core.autocrlf`, an attribute line deleted); `git status` calls
//! such files clean too.
//!
//! Anything unusual — no readable index, a SHA-256 repository, a scope outside the
//! worktree, objects behind alternates, a store on another filesystem — means files
//! are read and copied as they would be without git: slower, never wrong.

use std::path::{Path, PathBuf};

use super::git_objects::{BlobId, GitObjects};
use super::manifest::Kind;
use super::scope::Seen;

/// The index entries inside one scope, and what is known about each.
pub struct Checkout {
    index: gix::index::File,
    /// The entries inside the scope: a range of the index, sorted as the walk is.
    entries: std::ops::Range<usize>,
    /// Bytes of each entry's path before the scope's relative path (the scope root's
    /// path in the worktree, and a `/`).
    prefix: usize,
    /// Per entry in `entries`: never taken from git (a filter, ident or encoding).
    converted: Vec<bool>,
    /// Per entry in `entries`: taken from git only when the blob's size is the file's.
    size_checked: Vec<bool>,
    /// Line endings may have been converted for any file (`core.autocrlf` or
    /// `core.eol` set, to any value, in any configuration git reads).
    eol_anywhere: bool,
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

impl Checkout {
    /// The checkout around `root`, with its packs linked into `store`; `None` when
    /// there is none backstop can use. `tree_has_attributes`: the walk saw a
    /// `.gitattributes` file in the scope.
    pub fn open(root: &Path, store: &GitObjects, tree_has_attributes: bool) -> Option<Checkout> {
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
        store.adopt_packs(&objects).ok()?;
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
            size_checked: vec![false; end - start],
            eol_anywhere: false,
            index,
            entries: start..end,
            prefix: prefix.len(),
            index_mtime_ns,
            objects,
            next: start,
            unlinkable: false,
        };
        // Set at all, even to `false`: a checkout made under another value keeps the
        // line endings it was given.
        checkout.eol_anywhere = {
            let config = repo.config_snapshot();
            config.string("core.autocrlf").is_some() || config.string("core.eol").is_some()
        };
        if tree_has_attributes || checkout.attributes_may_apply(&repo, &root, &workdir) {
            checkout.look_up_attributes(&repo)?;
        }
        Some(checkout)
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
        in_index || files.iter().any(|f| f.exists())
    }

    /// Looks up the attributes that make a file's bytes something other than its
    /// blob's, as git would apply them: `filter`, `ident` and `working-tree-encoding`
    /// (whatever the sizes), and `text`, `eol` and `crlf` (line endings: sizes compared).
    fn look_up_attributes(&mut self, repo: &gix::Repository) -> Option<()> {
        use gix::attrs::StateRef;
        let mut stack = repo
            .attributes_only(
                &self.index,
                gix::worktree::stack::state::attributes::Source::WorktreeThenIdMapping,
            )
            .ok()?;
        let mut out = stack.selected_attribute_matches([
            "filter",
            "ident",
            "working-tree-encoding",
            "text",
            "eol",
            "crlf",
        ]);
        for (k, i) in self.entries.clone().enumerate() {
            let e = &self.index.entries()[i];
            let platform = stack.at_entry(e.path(&self.index), Some(e.mode)).ok()?;
            platform.matching_attributes(&mut out);
            for m in out.iter_selected() {
                let state = m.assignment.state;
                match m.assignment.name.as_str() {
                    "filter" | "ident" | "working-tree-encoding"
                        if matches!(state, StateRef::Set | StateRef::Value(_)) =>
                    {
                        self.converted[k] = true;
                    }
                    // `-text` (and `binary`) says no conversion; anything else may.
                    "text" | "eol" | "crlf"
                        if !matches!(state, StateRef::Unspecified | StateRef::Unset) =>
                    {
                        self.size_checked[k] = true;
                    }
                    _ => {}
                }
            }
        }
        Some(())
    }

    /// The blob id of `seen`, when it is clean in the checkout and the store holds its
    /// blob. Paths must come in the walk's order (sorted by bytes).
    pub fn clean(&mut self, seen: &Seen, store: &GitObjects) -> Option<BlobId> {
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
        // Line endings converted on checkout make the sizes differ.
        if (self.eol_anywhere || self.size_checked[k]) && store.size(&id) != Some(seen.stamp.size) {
            return None;
        }
        Some(id)
    }

    fn racy(&self, stat: &gix::index::entry::Stat) -> bool {
        let mtime = i128::from(stat.mtime.secs) * 1_000_000_000 + i128::from(stat.mtime.nsecs);
        mtime >= self.index_mtime_ns
    }
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
