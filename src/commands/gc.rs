//! `backstop gc`: drops old runs of this repository, then every object nothing in the
//! store reaches.
//!
//! What gc may delete is decided here, by [`Reachable::read`] alone (the rule in
//! words: "What gc may delete" in ARCHITECTURE.md). An object stays when a root names
//! it, or a manifest a root names lists it. The roots, in every tree store of the
//! store:
//!
//! - each record gc keeps: its `before` and `after` manifests, every checkpoint, and
//!   its fixed ignore rules (an object, not a manifest);
//! - each journal (`journals/`, and backstop 0.1's one per tree store): its target;
//! - each stat cache: the last manifest of its scope.
//!
//! Nothing else is a root: a rules cache is a hint (losing its object costs the next
//! walk some reads), `objects/present` a shortcut. Objects a snapshot writes before
//! any root names them are kept by the snapshot's [`ObjectsHold`]; the roots are read
//! and the sweep done under [`ObjectsExclusive`], which waits for every hold to go.
//!
//! Fails closed: every root is read before anything is deleted, and anything gc
//! cannot read stops it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::error::UserError;
use crate::exit_code::SUCCESS;
use crate::record::RunRecord;
use crate::snapshot::git_objects::BlobId;
use crate::snapshot::journal::{Journal, JournalFile};
#[cfg(doc)]
use crate::snapshot::lock::ObjectsHold;
use crate::snapshot::lock::{ObjectsExclusive, Wait};
use crate::snapshot::manifest::{Entry, Hash, Manifest, parse_hex};
use crate::snapshot::objects::Objects;
use crate::snapshot::region::is_live;
use crate::store::{RunRecords, Store, layout, repo_root};

use super::lock_tree;

pub fn gc(
    store: Option<PathBuf>,
    keep: Option<usize>,
    older_than: Option<Duration>,
    wait: Wait,
    quiet: bool,
) -> Result<u8> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let store = Store::locate(store)?;
    let records = store.records(&repo_root(&cwd));
    let _history = lock_tree(&records, wait, quiet)?;
    let dropping = expired(store.dir(), &records, keep, older_than)?;
    // Held from here to the end: no snapshot writes objects that nothing names yet.
    let exclusive = ObjectsExclusive::take(store.dir(), wait, |_| {})?;
    let skip: HashSet<PathBuf> = dropping.iter().map(|(p, _)| p.clone()).collect();
    let reachable = Reachable::read(store.dir(), &skip, &exclusive)?;
    for (_, id) in &dropping {
        crate::crash::point("drop");
        records.remove(id)?;
    }
    let (objects, bytes) = reachable.sweep()?;
    crate::snapshot::region::sweep_dead(store.dir());
    crate::reporter::Reporter::for_stderr(quiet).note(&format!(
        "removed {} run(s) and {objects} unreferenced object(s) ({})",
        dropping.len(),
        crate::policy::values::format_size(bytes)
    ));
    Ok(SUCCESS)
}

/// The records of this repository to drop (file and run id): past `keep` (newest
/// first) or older than `older_than`, and neither live nor needed by a put-back left
/// half done (which still needs its run's record, and its target).
fn expired(
    store: &Path,
    records: &RunRecords,
    keep: Option<usize>,
    older_than: Option<Duration>,
) -> Result<Vec<(PathBuf, String)>> {
    let journals_dir = layout::journals_dir(store);
    let pending: HashSet<String> = JournalFile::all(&journals_dir)
        .map_err(|e| unreadable(&journals_dir, format!("{e:#}")))?
        .into_iter()
        .map(|(_, j)| j.run_id)
        .collect();
    let mut runs = read_records(records.dir())?;
    runs.sort_by(|(_, a), (_, b)| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    let now = SystemTime::now();
    let mut dropping = Vec::new();
    for (i, (path, r)) in runs.iter().enumerate() {
        let too_many = keep.is_some_and(|k| i >= k);
        let too_old =
            older_than.is_some_and(|d| now.duration_since(r.started_at).is_ok_and(|age| age > d));
        // A live run may still restore from anything it named; a "running" record
        // whose backstop is gone is like any other.
        if (too_many || too_old) && !is_live(store, &r.id) && !pending.contains(&r.id) {
            dropping.push((path.clone(), r.id.clone()));
        }
    }
    Ok(dropping)
}

/// gc cannot tell what `file` keeps alive: it stops before deleting anything.
fn unreadable(file: &Path, why: impl std::fmt::Display) -> anyhow::Error {
    UserError::Refused(format!(
        "gc stopped before deleting anything: cannot read {}: {why}; `backstop fsck` says what it affects",
        crate::names::quote_path(file)
    ))
    .into()
}

/// Every record of the tree store at `dir`, with its file; any it cannot read is an error.
fn read_records(dir: &Path) -> Result<Vec<(PathBuf, RunRecord)>> {
    let runs = layout::runs_dir(dir);
    let entries = match std::fs::read_dir(&runs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(unreadable(&runs, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| unreadable(&runs, e))?.path();
        if layout::record_id(&path).is_none() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| unreadable(&path, e))?;
        let record =
            serde_json::from_slice::<RunRecord>(&bytes).map_err(|e| unreadable(&path, e))?;
        out.push((path, record));
    }
    Ok(out)
}

/// What the roots name, each with the first file found naming it (for messages).
#[derive(Default)]
struct Roots {
    manifests: Vec<(String, PathBuf)>,
    /// Objects that are not manifests: a run's fixed ignore rules.
    rules: Vec<(String, PathBuf)>,
}

/// The objects gc keeps. Only [`Reachable::read`] makes one, and only while gc has the
/// objects to itself, which it keeps until the sweep is done.
pub struct Reachable<'a> {
    objects: Objects,
    live: HashSet<Hash>,
    /// The git blobs the live manifests name (kept in `git-objects/`).
    live_git: HashSet<BlobId>,
    _exclusive: &'a ObjectsExclusive,
}

impl<'a> Reachable<'a> {
    /// Reads every root in the store (but the records in `skip`, about to be dropped)
    /// and every manifest they name.
    pub fn read(
        store: &Path,
        skip: &HashSet<PathBuf>,
        exclusive: &'a ObjectsExclusive,
    ) -> Result<Reachable<'a>> {
        let objects = Objects::new(store);
        let trees_dir = layout::trees_dir(store);
        let trees = match std::fs::read_dir(&trees_dir) {
            Ok(t) => t,
            // No tree store was ever written: no record, and no put-back of one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Reachable {
                    objects,
                    live: HashSet::new(),
                    live_git: HashSet::new(),
                    _exclusive: exclusive,
                });
            }
            Err(e) => return Err(unreadable(&trees_dir, e)),
        };
        let mut roots = Roots::default();
        for t in trees {
            let dir = t.map_err(|e| unreadable(&trees_dir, e))?.path();
            if dir.is_dir() {
                tree_store_roots(&dir, skip, &mut roots)?;
            }
        }
        let journals_dir = layout::journals_dir(store);
        for (file, j) in JournalFile::all(&journals_dir)
            .map_err(|e| unreadable(&journals_dir, format!("{e:#}")))?
        {
            roots.manifests.push((j.target, file.path));
        }
        let (live, live_git) = expand(&objects, &roots)?;
        Ok(Reachable {
            objects,
            live,
            live_git,
            _exclusive: exclusive,
        })
    }

    /// Deletes every object not reachable. Returns how many, and their bytes.
    pub fn sweep(self) -> Result<(usize, u64)> {
        let mut removed = 0;
        let mut bytes = 0;
        for hash in self.objects.list()? {
            if !self.live.contains(&hash) {
                bytes += std::fs::metadata(self.objects.path(&hash)).map_or(0, |m| m.len());
                crate::crash::point("sweep");
                self.objects.remove(&hash);
                removed += 1;
            }
        }
        self.objects.clear_tmp();
        let (git_removed, git_bytes) = self.objects.git().sweep(&self.live_git)?;
        Ok((removed + git_removed, bytes + git_bytes))
    }
}

/// The roots in one tree store: its stat caches, backstop 0.1's journal, and its
/// records but those in `skip`.
fn tree_store_roots(dir: &Path, skip: &HashSet<PathBuf>, roots: &mut Roots) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| unreadable(dir, e))? {
        let path = entry.map_err(|e| unreadable(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match layout::TreeFile::of(&name) {
            layout::TreeFile::StatCache(_) => {
                let id = std::fs::read_to_string(&path).map_err(|e| unreadable(&path, e))?;
                roots.manifests.push((id.trim().to_string(), path));
            }
            layout::TreeFile::LegacyJournal => {
                let bytes = std::fs::read(&path).map_err(|e| unreadable(&path, e))?;
                let j =
                    serde_json::from_slice::<Journal>(&bytes).map_err(|e| unreadable(&path, e))?;
                roots.manifests.push((j.target, path));
            }
            layout::TreeFile::RulesCache(_) | layout::TreeFile::Other => {}
        }
    }
    for (path, r) in read_records(dir)? {
        if skip.contains(&path) {
            continue;
        }
        if let Some(s) = &r.snapshot {
            roots
                .manifests
                .extend(s.manifests().map(|(_, id)| (id.to_string(), path.clone())));
            if let Some(rules) = &s.rules {
                roots.rules.push((rules.clone(), path.clone()));
            }
        }
    }
    Ok(())
}

/// The roots' objects, and every object the manifests among them list.
fn expand(objects: &Objects, roots: &Roots) -> Result<(HashSet<Hash>, HashSet<BlobId>)> {
    let mut live: HashSet<Hash> = HashSet::new();
    let mut live_git: HashSet<BlobId> = HashSet::new();
    for (id, named_by) in &roots.manifests {
        let hash =
            parse_hex(id).map_err(|e| unreadable(named_by, format!("manifest id `{id}`: {e}")))?;
        if !live.insert(hash) {
            continue;
        }
        let m = objects
            .read(&hash)
            .and_then(|b| Manifest::decode(&b))
            .map_err(|e| {
                unreadable(
                    &objects.path(&hash),
                    format!("manifest {id} (named by {}): {e:#}", named_by.display()),
                )
            })?;
        live.extend(m.entries.iter().filter_map(Entry::hash).copied());
        live_git.extend(m.entries.iter().filter_map(|e| e.content.git()).copied());
    }
    for (id, named_by) in &roots.rules {
        let hash =
            parse_hex(id).map_err(|e| unreadable(named_by, format!("rules id `{id}`: {e}")))?;
        live.insert(hash);
    }
    Ok((live, live_git))
}
