//! A working tree's snapshots: taking them, and putting paths back through the
//! intent journal. Everything here runs under the tree's lock.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result};

use super::apply::{Op, Report, apply};
use super::journal::{Journal, JournalFile};
use super::manifest::{Content, Entry, Kind, Manifest, hex, parse_hex};
use super::objects::{Objects, sync_filesystem};
use super::scope::Scope;
use super::take::{Taken, take};
use crate::record::Restore;
use crate::store::{Durability, TreeStore, write_atomic};

pub struct Tree<'a> {
    pub scope: Scope,
    pub objects: Objects,
    pub store: &'a TreeStore,
}

impl<'a> Tree<'a> {
    pub fn new(store_dir: &Path, store: &'a TreeStore, scope: Scope) -> Tree<'a> {
        Tree {
            scope,
            objects: Objects::new(store_dir),
            store,
        }
    }

    /// One stat cache per scope root: manifest paths are relative to it.
    fn statcache_path(&self) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let key = blake3::hash(self.scope.root.as_os_str().as_bytes()).to_hex();
        self.store
            .dir()
            .join(format!("statcache-{}", &key.as_str()[..16]))
    }

    fn journal(&self) -> JournalFile {
        JournalFile {
            path: self.store.dir().join("journal.json"),
        }
    }

    pub fn load(&self, id: &str) -> Result<Arc<Manifest>> {
        let hash = parse_hex(id)?;
        let manifest = Manifest::decode(&self.objects.read(&hash)?)
            .with_context(|| format!("manifest {id}"))?;
        Ok(Arc::new(manifest))
    }

    /// The last manifest taken of this tree, if it is still readable.
    fn statcache(&self) -> Option<(Arc<Manifest>, [u8; 32])> {
        let id = fs::read_to_string(self.statcache_path()).ok()?;
        let manifest = self.load(id.trim()).ok()?;
        Some((manifest, parse_hex(id.trim()).ok()?))
    }

    fn remember(&self, taken: &Taken) -> Result<()> {
        let id = hex(&taken.id);
        if fs::read_to_string(self.statcache_path()).is_ok_and(|old| old.trim() == id) {
            return Ok(());
        }
        write_atomic(
            &self.statcache_path(),
            hex(&taken.id).as_bytes(),
            Durability::Atomic,
        )
    }

    /// The tree's journal is one file for every scope under it: runs in disjoint
    /// regions hold it only while they write, run or finish a put-back.
    fn lock_journal(&self) -> Result<super::lock::TreeLock> {
        super::lock::TreeLock::exclusive(&self.store.dir().join("journal.lock"))
    }

    /// Keeps gc from sweeping objects this snapshot writes before a record names them.
    /// Never held while waiting for the tree or journal lock (gc waits for this one
    /// while holding the tree lock).
    pub fn hold_objects(&self) -> Result<super::lock::TreeLock> {
        let store = self
            .store
            .dir()
            .parent()
            .and_then(Path::parent)
            .context("the store has trees/<key>")?;
        super::lock::TreeLock::shared(&store.join("objects.lock"))
    }

    /// A snapshot of the scope as it is now, with the stat cache's help.
    pub fn snapshot(&self) -> Result<Taken> {
        let _gc = self.hold_objects()?;
        let cache = self.statcache();
        let taken = take(
            &self.scope,
            &self.objects,
            cache.as_ref().map(|(m, id)| (m, *id)),
        )?;
        self.remember(&taken)?;
        Ok(taken)
    }

    /// A snapshot after a run: `before`'s paths are each looked at, whatever the
    /// ignore rules now say.
    pub fn snapshot_after(&self, before: &Arc<Manifest>, before_id: &str) -> Result<Taken> {
        let _gc = self.hold_objects()?;
        let taken = take(
            &self.scope,
            &self.objects,
            Some((before, parse_hex(before_id)?)),
        )?;
        self.remember(&taken)?;
        Ok(taken)
    }

    /// Puts the journal's paths into their states in `target` (absent where it lacks
    /// them), writing the journal first so a crash at any point is finished by
    /// [`Tree::recover`].
    pub fn put_back(&self, journal: &Journal, target: &Manifest, reason: &str) -> Result<Report> {
        let _journal_lock = self.lock_journal()?;
        // Under the lock, another run's journal here is a killed put-back's, perhaps in
        // a disjoint region of this tree that runs beside this one: overwriting it would
        // lose the only record of what is half done there. (This run's own is an
        // earlier put-back that failed; the new one supersedes it, as it always did.)
        if let Some(left) = self.journal().read()?
            && left.run_id != journal.run_id
        {
            return Err(crate::error::UserError::Refused(format!(
                "cannot put back run {}: the {} of run {} was interrupted and its journal {} is still pending; the next backstop in that run's directory finishes it",
                journal.run_id,
                left.action,
                left.run_id,
                self.journal().path.display()
            ))
            .into());
        }
        self.journal().write(journal)?;
        self.execute(journal, target, reason)
    }

    fn execute(&self, journal: &Journal, target: &Manifest, reason: &str) -> Result<Report> {
        let paths = journal.path_bytes()?;
        let ops: Vec<Op> = paths
            .iter()
            .filter(|p| self.scope.allows(p))
            .map(|p| Op {
                path: p.clone(),
                to: target.find(p).cloned(),
            })
            .collect();
        sweep_staging(&self.scope.root, &ops);
        let report = apply(&self.scope.root, &self.objects, &ops)?;
        sync_filesystem(&self.scope.root)?;
        // A restore between attempts is recorded by the run itself, through its events.
        if let Some(state) = journal.then {
            self.store.update(&journal.run_id, |r| {
                if let Some(s) = r.snapshot.as_mut() {
                    s.state = state;
                    s.restores.push(Restore {
                        at: SystemTime::now(),
                        action: journal.action.clone(),
                        paths: ops.len(),
                        reason: reason.into(),
                    });
                }
            })?;
        }
        self.journal().remove()?;
        Ok(report)
    }

    /// Finishes a put-back a killed backstop left half done. Returns what it finished.
    pub fn recover(&self) -> Result<Option<Journal>> {
        let _journal_lock = self.lock_journal()?;
        let Some(journal) = self.journal().read()? else {
            return Ok(None);
        };
        let target = self.load(&journal.target)?;
        self.execute(&journal, &target, "finished after an interruption")?;
        Ok(Some(journal))
    }

    /// What a path holds now, with its content hashed (not stored).
    pub fn observe(&self, rel: &[u8], known: Option<&Entry>) -> Result<Option<Entry>> {
        let Some(seen) = self.scope.stat(rel)? else {
            return Ok(None);
        };
        let mut entry = Entry {
            path: rel.to_vec(),
            kind: seen.kind,
            mode: seen.mode,
            size: seen.stamp.size,
            mtime_ns: seen.stamp.mtime_ns,
            ctime_ns: seen.stamp.ctime_ns,
            ino: seen.stamp.ino,
            content: Content::None,
        };
        let path = self.scope.abs(rel);
        entry.content = match seen.kind {
            Kind::Dir => Content::None,
            Kind::Symlink => {
                use std::os::unix::ffi::OsStrExt;
                Content::Link(fs::read_link(&path)?.as_os_str().as_bytes().to_vec())
            }
            Kind::File => match known {
                // Same stat (ctime too) as when it was recorded: the same content.
                Some(k) if k.same_stat(&entry) => k.content.clone(),
                _ => Content::Hash(hash_file(&path)?),
            },
        };
        Ok(Some(entry))
    }
}

fn hash_file(path: &Path) -> Result<[u8; 32]> {
    let mut f = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(*h.finalize().as_bytes());
        }
        h.update(&buf[..n]);
    }
}

/// Removes staging files (`.backstop-<16 hex>.tmp`) a killed put-back left beside
/// the paths it was writing.
fn sweep_staging(root: &Path, ops: &[Op]) {
    use std::os::unix::ffi::OsStrExt;
    let mut dirs: Vec<PathBuf> = ops
        .iter()
        .filter_map(|op| {
            root.join(std::ffi::OsStr::from_bytes(&op.path))
                .parent()
                .map(Path::to_path_buf)
        })
        .collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.as_bytes();
            let staged = name.len() == ".backstop-".len() + 16 + ".tmp".len()
                && name.starts_with(b".backstop-")
                && name.ends_with(b".tmp")
                && name[10..26].iter().all(u8::is_ascii_hexdigit);
            if staged {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Paths named on the command line, relative to the scope's root.
pub fn relative_paths(root: &Path, cwd: &Path, paths: &[PathBuf]) -> Result<Vec<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    paths
        .iter()
        .map(|p| {
            let abs = normalize(&cwd.join(p));
            let rel = abs.strip_prefix(root).map_err(|_| {
                crate::error::UserError::Refused(format!(
                    "{} is outside the run's scope ({})",
                    p.display(),
                    root.display()
                ))
            })?;
            Ok(rel.as_os_str().as_bytes().to_vec())
        })
        .collect()
}

/// `a/./b/../c` → `a/c`, without touching the filesystem (the path may not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

pub fn display_path(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
}
