//! The snapshots of one scope: taking them, and putting paths back through the
//! intent journal. Everything here runs under the scope's region lock.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result};

use super::apply::{Op, Report, apply};
use super::journal::{Journal, JournalFile};
use super::lock::ObjectsHold;
use super::manifest::{Content, Entry, Kind, Manifest, hex, parse_hex};
use super::objects::{Objects, sync_filesystem};
use super::scope::Scope;
use super::take::{Cache, Taken, take_watched, take_with};
use super::watch::Watch;
use crate::record::Restore;
use crate::store::layout;
use crate::store::{Durability, RunRecords, write_atomic};

/// Takes and puts back snapshots of one scope, keeping its stat cache and rules cache
/// in the run records of its repository.
pub struct Snapshots<'a> {
    pub scope: Scope,
    pub objects: Objects,
    pub records: &'a RunRecords,
    /// The whole store's directory, that `records` are part of.
    store_dir: PathBuf,
    /// The run's change feed (see `watch.rs`), once [`Snapshots::watch_changes`] asked.
    watch: Option<Watch>,
    /// A feed is wanted for the next snapshot.
    wants_watch: bool,
}

/// How many entries a tree has before a run keeps a change feed of it:
/// `BACKSTOP_WATCH_ABOVE` (0 in tests that exercise the feed on small trees), else
/// the size below which a walk stays on one thread.
fn watch_above() -> usize {
    std::env::var("BACKSTOP_WATCH_ABOVE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(super::scope::SMALL_TREE)
}

impl<'a> Snapshots<'a> {
    pub fn new(store_dir: &Path, records: &'a RunRecords, scope: Scope) -> Snapshots<'a> {
        Snapshots {
            scope,
            objects: Objects::new(store_dir),
            records,
            store_dir: store_dir.to_path_buf(),
            watch: None,
            wants_watch: false,
        }
    }

    /// Keeps a change feed from the next snapshot on, so that later snapshots of a
    /// large tree read only what changed (see `watch.rs`).
    pub fn watch_changes(&mut self) {
        self.wants_watch = true;
    }

    /// How the walks with the change feed went, when there was one.
    pub fn walks(&self) -> Option<crate::record::Walks> {
        self.watch.as_ref().map(|w| crate::record::Walks {
            changed_only: w.passes(),
            whole: w.wholes(),
        })
    }

    /// No more snapshots are to be taken with the feed: it is dropped now, and the
    /// kernel frees its watches while the run finishes (see `Watch`'s `Drop`). A later
    /// snapshot walks the whole tree, as one without a feed does.
    pub fn let_go_of_feed(&mut self) {
        self.watch = None;
    }

    /// The feed, for a snapshot now: not while a process a run started may still be
    /// writing through a mapping, which no event reports (a whole walk sees it).
    fn feed(&self) -> Option<&Watch> {
        self.watch.as_ref().filter(|_| crate::reaper::none_left())
    }

    /// One stat cache per scope root: manifest paths are relative to it.
    fn statcache_path(&self) -> PathBuf {
        layout::statcache_file(self.records.dir(), &self.scope.root)
    }

    /// The journal of put-backs in the scope `root`.
    fn journal_for(&self, root: &Path) -> JournalFile {
        JournalFile {
            path: layout::journal_file(&self.store_dir, root),
        }
    }

    pub fn load(&self, id: &str) -> Result<Arc<Manifest>> {
        let manifest = self
            .objects
            .manifest(&parse_hex(id)?)
            .with_context(|| format!("manifest {id}"))?;
        Ok(Arc::new(manifest))
    }

    /// The last manifest taken of this tree, if there is one: read on a thread of its
    /// own while the tree is walked when it is large (see [`Cache::of`]).
    fn statcache(&self) -> Cache {
        let Some(id) = fs::read_to_string(self.statcache_path())
            .ok()
            .and_then(|id| parse_hex(id.trim()).ok())
        else {
            return Cache::Ready(None);
        };
        Cache::of(&self.objects, id)
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

    /// Keeps gc from sweeping objects this snapshot writes before a record names them.
    /// Never held while waiting for the tree lock (gc waits for this one while holding
    /// the tree lock).
    pub fn hold_objects(&self) -> Result<ObjectsHold> {
        ObjectsHold::take(&self.store_dir)
    }

    /// A snapshot of the scope as it is now, with the stat cache's help. Its manifest
    /// is named by the stat cache before the hold on the objects is let go; the next
    /// snapshot of the scope names another, so a caller that keeps this one holds the
    /// objects (`hold_objects`) until a record names it.
    pub fn snapshot(&mut self) -> Result<Taken> {
        let _gc = self.hold_objects()?;
        let cache = self.statcache();
        // A small tree is walked again for less than watching it costs.
        let small = watch_above();
        if std::mem::take(&mut self.wants_watch) && cache.size().is_none_or(|n| n >= small) {
            self.watch = Watch::start(&self.scope.root);
        }
        let taken = take_with(&self.scope, &self.objects, cache, self.watch.as_ref())?;
        if taken.manifest.entries.len() < small {
            self.watch = None;
        } else if let Some(watch) = &mut self.watch {
            watch.run_reader();
        }
        if let Some(rules) = &taken.rules {
            self.keep_rules(rules)?;
        }
        self.remember(&taken)?;
        Ok(taken)
    }

    /// A snapshot after a run: `before`'s paths are each looked at, whatever the
    /// ignore rules now say.
    pub fn snapshot_after(&self, before: &Arc<Manifest>, before_id: &str) -> Result<Taken> {
        let _gc = self.hold_objects()?;
        let taken = take_watched(
            &self.scope,
            &self.objects,
            Some((before, parse_hex(before_id)?)),
            self.feed(),
        )?;
        self.remember(&taken)?;
        Ok(taken)
    }

    /// Puts the journal's paths into their states in `target` (absent where it lacks
    /// them), writing the journal first so a crash at any point is finished by
    /// [`Snapshots::recover`]. Best effort: the report lists every path not put back.
    pub fn put_back(&self, journal: &Journal, target: &Manifest, reason: &str) -> Result<Report> {
        let mut journal = journal.clone();
        journal.root = Some(self.scope.root.clone());
        journal.root_id = self.scope.identity;
        journal.records = Some(self.records.dir().to_path_buf());
        // A root that is not the one snapshotted gets no journal: nothing will be written.
        super::apply::check_root(&self.scope.root, self.scope.identity)?;
        self.journal_for(&self.scope.root).write(&journal)?;
        self.execute(&self.scope, &journal, target, reason)
    }

    fn execute(
        &self,
        scope: &Scope,
        journal: &Journal,
        target: &Manifest,
        reason: &str,
    ) -> Result<Report> {
        let file = self.journal_for(&scope.root);
        self.execute_in(scope, &file, journal, target, reason)
    }

    fn execute_in(
        &self,
        scope: &Scope,
        file: &JournalFile,
        journal: &Journal,
        target: &Manifest,
        reason: &str,
    ) -> Result<Report> {
        let paths = journal.path_bytes()?;
        let planned: std::collections::HashSet<&[u8]> = paths.iter().map(Vec::as_slice).collect();
        // Names of hard-linked files the put-back leaves alone, to link the others to.
        let mut untouched: std::collections::HashMap<(u64, u64), &[u8]> = Default::default();
        for e in &target.entries {
            if let Some(group) = e.link_group()
                && !planned.contains(e.path.as_slice())
            {
                untouched.entry(group).or_insert(e.path.as_slice());
            }
        }
        let ops: Vec<Op> = paths
            .iter()
            .filter(|p| scope.allows(p))
            .map(|p| {
                let to = target.find(p).cloned();
                let link = to
                    .as_ref()
                    .and_then(Entry::link_group)
                    .and_then(|g| untouched.get(&g))
                    .map(|p| p.to_vec());
                Op {
                    path: p.clone(),
                    to,
                    link,
                }
            })
            .collect();
        // The directories that hold what is put back, as the target has them: their
        // times (and a mode a killed put-back left opened) are given back too.
        let mut parents: Vec<Entry> = Vec::new();
        for op in &ops {
            if let Some(i) = op.path.iter().rposition(|b| *b == b'/')
                && let Some(e) = target.find(&op.path[..i])
            {
                parents.push(e.clone());
            }
        }
        parents.sort_by(|a, b| a.path.cmp(&b.path));
        parents.dedup_by(|a, b| a.path == b.path);
        let report = apply(
            &scope.root,
            scope.identity,
            &self.objects,
            &ops,
            &parents,
            &unstored(scope, target),
        )?;
        // What the put-back wrote are inodes it made, no second names of the tree's.
        if let Some(watch) = &self.watch {
            watch.made_here(ops.iter().map(|op| {
                let dir = op.to.as_ref().is_some_and(|e| e.kind == Kind::Dir);
                (op.path.as_slice(), dir)
            }));
        }
        sync_filesystem(&scope.root)?;
        crate::crash::point("applied");
        // A restore between attempts is recorded by the run itself, through its events.
        // The record of the run, wherever its tree store is (a journal finished from
        // another directory of the tree may belong to another store's run); a record gc
        // dropped meanwhile has nothing left to update.
        let records = match &journal.records {
            Some(dir) => crate::store::RunRecords::open(dir, &scope.root),
            None => crate::store::RunRecords::open(self.records.dir(), self.records.root()),
        };
        if let Some(state) = journal.then
            && records.contains(&journal.run_id)
        {
            let (state, undone) = settle(scope, journal, &report, state);
            records.update(&journal.run_id, |r| {
                if let Some(s) = r.snapshot.as_mut() {
                    s.state = state;
                    if let Some(undone) = &undone {
                        s.undone.clone_from(undone);
                    }
                    s.late.clone_from(&journal.late);
                    s.not_restored = not_restored(&report);
                    s.restores.push(Restore {
                        at: SystemTime::now(),
                        action: journal.action,
                        paths: ops.len(),
                        reason: reason.into(),
                        not_restored: report.failed.len(),
                    });
                }
            })?;
        }
        crate::crash::point("recorded");
        file.remove()?;
        Ok(report)
    }

    /// Finishes the put-backs killed backstops left half done in this scope: its own
    /// root's, and those of directories inside it (nothing else can be writing there
    /// while this backstop holds the scope's region). Each is applied to the root it
    /// was writing, and refused (its journal kept) when that root is no longer the
    /// directory it was. One left in a directory that contains this scope is not this
    /// backstop's to finish, nor to run beside: refused, naming where to finish it.
    pub fn recover(&self) -> Result<Vec<(Journal, Report)>> {
        let mut done = Vec::new();
        // backstop 0.1 kept one journal per tree store, for the scope it was started in.
        let legacy = JournalFile {
            path: layout::legacy_journal(self.records.dir()),
        };
        if let Some(journal) = legacy.read()? {
            done.push(self.finish(&legacy, journal)?);
        }
        for (file, journal) in JournalFile::all(&layout::journals_dir(&self.store_dir))? {
            let Some(root) = journal.root.clone() else {
                continue;
            };
            if root.starts_with(&self.scope.root) {
                done.push(self.finish(&file, journal)?);
            } else if self.scope.root.starts_with(&root) {
                return Err(crate::error::UserError::Refused(format!(
                    "the {} of run {} in {}, which contains this directory, was interrupted; \
                     finish it there first: `cd {} && backstop snapshot` (or the next \
                     `backstop run`, `undo` or `redo` there)",
                    journal.action,
                    journal.run_id,
                    crate::names::quote_path(&root),
                    crate::names::quote_path(&root)
                ))
                .into());
            }
        }
        Ok(done)
    }

    fn finish(&self, file: &JournalFile, journal: Journal) -> Result<(Journal, Report)> {
        let scope = match &journal.root {
            Some(root) if *root != self.scope.root || journal.root_id != self.scope.identity => {
                Scope {
                    root: root.clone(),
                    exclude: Vec::new(),
                    respect_ignored: false,
                    max_file_size: u64::MAX,
                    max_total_size: u64::MAX,
                    store: self.scope.store.clone(),
                    rules: None,
                    identity: journal.root_id,
                }
            }
            _ => self.scope.clone(),
        };
        let target = self.load(&journal.target)?;
        let report = self
            .execute_in(&scope, file, &journal, &target, "finished after an interruption")
            .map_err(|e| match e.downcast::<super::apply::RootChanged>() {
                Ok(changed) => anyhow::Error::from(crate::error::UserError::Refused(format!(
                    "the {} of run {} was interrupted and cannot be finished: {changed}; \
                     nothing was written. If that directory is gone for good, delete {} to give the {} up",
                    journal.action,
                    journal.run_id,
                    file.path.display(),
                    journal.action
                ))),
                Err(e) => e,
            })?;
        Ok((journal, report))
    }

    /// Stores the ignore rules a snapshot read and fixes them for this tree's later
    /// walks. Returns the object that holds them, which only a record will name: the
    /// caller holds the objects until one does.
    pub fn fix_rules(&mut self, rules: super::rules::Rules, _: &ObjectsHold) -> Result<String> {
        let id = self.keep_rules(&rules)?;
        self.scope.rules = Some(Arc::new(rules));
        Ok(id)
    }

    /// Stores the rules a walk read (the run's record names them).
    fn keep_rules(&self, rules: &super::rules::Rules) -> Result<String> {
        let (id, staged) = self.objects.stage_bytes(&rules.encode()?)?;
        self.objects.commit(staged.into_iter().collect())?;
        Ok(hex(&id))
    }

    /// The ignore rules a run recorded, fixed for this tree's walks.
    pub fn load_rules(&mut self, id: &str) -> Result<()> {
        let bytes = self.objects.read(&parse_hex(id)?)?;
        let rules =
            super::rules::Rules::decode(&bytes).with_context(|| format!("ignore rules {id}"))?;
        self.scope.rules = Some(Arc::new(rules));
        Ok(())
    }

    /// What a path holds now, with its content hashed (not stored).
    pub fn observe(&self, rel: &[u8], known: Option<&Entry>) -> Result<Option<Entry>> {
        let Some(seen) = self.scope.stat(rel)? else {
            return Ok(None);
        };
        let kind = seen.kind;
        let mut entry = seen.into_entry(Content::None);
        let path = self.scope.abs(rel);
        entry.content = match kind {
            Kind::Dir => Content::None,
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => Content::None,
            Kind::Symlink => {
                use std::os::unix::ffi::OsStrExt;
                Content::Link(fs::read_link(&path)?.as_os_str().as_bytes().to_vec())
            }
            Kind::File => match known {
                // Same stat (ctime too) as when it was recorded: the same content.
                Some(k) if k.same_stat(&entry) => k.content.clone(),
                _ => content_of_file(&path, known)?,
            },
        };
        Ok(Some(entry))
    }
}

/// The content of the file at `path`, read once: its git blob id when `like` was
/// that blob and it still holds it (content compares by how it was recorded), else
/// its hash.
pub fn content_of_file(path: &Path, like: Option<&Entry>) -> Result<Content> {
    let mut f = fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = blake3::Hasher::new();
    let len = f.metadata()?.len();
    // Of another size, it is not that blob: no need to hash it as git does.
    let was_git = like.filter(|e| e.size == len).and_then(|e| e.content.git());
    let mut blob = was_git.map(|_| super::git_objects::BlobHasher::new(len));
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        if let Some(b) = &mut blob {
            b.update(&buf[..n]);
        }
    }
    match (
        was_git,
        blob.and_then(super::git_objects::BlobHasher::finish),
    ) {
        (Some(want), Some(got)) if *want == got => Ok(Content::Git(got)),
        _ => Ok(Content::Hash(*h.finalize().as_bytes())),
    }
}

/// What the scope never stored, by inode: files over the size limit, and what the
/// ignore rules and `exclude` left out when the scope was fixed.
fn unstored(scope: &Scope, target: &Manifest) -> super::apply::Unstored {
    let root_dev = scope.identity.map(|i| i.dev);
    let mut out = super::apply::Unstored::new();
    for e in &target.entries {
        if e.content == Content::Skipped {
            let dev = if e.meta.dev != 0 {
                Some(e.meta.dev)
            } else {
                root_dev
            };
            if let Some(dev) = dev {
                out.insert(
                    (dev, e.ino),
                    super::apply::NeverStored {
                        what: format!("{} (over max_file_size)", display_path(&e.path)),
                        dir: false,
                    },
                );
            }
        }
    }
    if let (Some(rules), Some(dev)) = (&scope.rules, root_dev) {
        for p in &rules.pruned {
            out.insert(
                (dev, p.ino),
                super::apply::NeverStored {
                    what: format!("{} (left out of the scope)", display_path(&p.path)),
                    dir: p.dir,
                },
            );
        }
    }
    out
}

/// The record's state and `undone` paths once `journal` is done. An undo or redo
/// planned them; a path it could not put back is still on the side it was on (an
/// undo's is not undone, a redo's is still undone), and a run is `undone` only when
/// every path is. `undone` is `None` for the put-backs that keep no per-path state.
fn settle(
    scope: &Scope,
    journal: &Journal,
    report: &Report,
    planned: crate::record::TreeState,
) -> (crate::record::TreeState, Option<Vec<String>>) {
    use crate::record::TreeState;
    use std::os::unix::ffi::OsStrExt;
    let Some(undone) = &journal.undone else {
        return (planned, None);
    };
    let mut undone: std::collections::BTreeSet<String> = undone.iter().cloned().collect();
    // The report names paths as `root/rel`.
    let failed: std::collections::HashSet<&Path> =
        report.failed.iter().map(|(p, _)| p.as_path()).collect();
    let mut missed = false;
    for hex_path in &journal.paths {
        let Ok(rel) = super::journal::from_hex(hex_path) else {
            continue;
        };
        let shown = scope.root.join(std::ffi::OsStr::from_bytes(&rel));
        if !failed.contains(shown.as_path()) {
            continue;
        }
        missed = true;
        match journal.action {
            crate::record::PutBack::Undo => undone.remove(hex_path),
            _ => undone.insert(hex_path.clone()),
        };
    }
    let state = match planned {
        TreeState::Undone if missed => TreeState::Applied,
        s => s,
    };
    // `undone` and `rolled-back` say it of every path: no list to keep.
    let undone = match state {
        TreeState::Applied => undone.into_iter().collect(),
        TreeState::Undone | TreeState::RolledBack => Vec::new(),
    };
    (state, Some(undone))
}

/// The paths a put-back left out, for the record.
pub fn not_restored(report: &Report) -> Vec<crate::record::NotRestored> {
    report
        .failed
        .iter()
        .map(|(path, why)| crate::record::NotRestored {
            path: path.as_path().into(),
            why: why.clone(),
        })
        .collect()
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
    crate::names::quote(rel)
}
