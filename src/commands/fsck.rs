//! `backstop fsck [--repair] [--json]`: checks the whole store and says what any damage
//! costs.
//!
//! Every object is hashed again and compared with its name (like `restic check
//! --read-data`); every manifest a record, stat cache or journal names is decoded and
//! every object it names looked up; every record and journal is parsed. Damage is
//! reported with what it affects: which runs can no longer be undone or redone, and
//! which of their files.
//!
//! The hashing, the long part, takes no lock: runs and gc go on. The rest runs under
//! `objects.lock`, shared (gc waits, runs do not), or exclusive with `--repair`, so
//! that nothing is written while a snapshot stages objects. Whatever the first pass
//! found wrong is looked at again under the lock, so an object a run added, or one gc
//! swept, meanwhile is not taken for damage.
//!
//! `--repair` moves damaged objects to `<store>/quarantine/`, re-creates a missing or
//! damaged object from any file in a tree the store knows that still holds that
//! content (read, hashed, kept only on a match), drops unreadable stat caches (they
//! only save reading files again) and leftover staging files; what it cannot fix it
//! names. Damaged records and journals are left where they are for a human to judge.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::json;

use crate::exit_code::{STORE_DAMAGED, SUCCESS};
use crate::names::Name;
use crate::record::{Moment, RunRecord};
use crate::snapshot::journal::Journal;
use crate::snapshot::lock::{ObjectsExclusive, ObjectsHold, Wait};
use crate::snapshot::manifest::{Hash, Manifest, hex, parse_hex};
use crate::snapshot::objects::{Check, Objects};
use crate::snapshot::scope::{Ancestors, ancestors};
use crate::snapshot::snapshots::display_path;
use crate::store::{Store, layout};

/// How many affected paths a line names before it says how many more.
const NAMED: usize = 10;

/// Where a manifest is named from (a checkpoint: before a step of a task, which a
/// failed step goes back to).
#[derive(Clone, Debug)]
enum Source {
    Before { run: String },
    After { run: String },
    Checkpoint { run: String },
    StatCache { file: PathBuf },
    Journal { file: PathBuf },
}

/// A manifest and the root its paths are relative to.
struct Named {
    id: String,
    root: Option<PathBuf>,
    source: Source,
    /// The paths the run changed (only those are put back), when known.
    changed: Option<BTreeSet<crate::names::Name>>,
}

#[derive(Default)]
struct Findings {
    objects: usize,
    manifests: usize,
    records: usize,
    journals: usize,
    statcaches: usize,
    /// Objects that are there but hold other bytes than their name says.
    damaged: BTreeSet<Hash>,
    /// Objects that cannot be read at all, and why.
    unreadable: BTreeMap<Hash, String>,
    /// Objects a manifest names, that an undo, redo, put-back or stat cache needs, and
    /// that are not in the store.
    missing: BTreeSet<Hash>,
    /// Objects only unchanged paths of finished runs name, not in the store: nothing
    /// needs them.
    dangling: BTreeSet<Hash>,
    /// Git blobs (`git-objects/`) an undo, redo, put-back or stat cache needs that are
    /// missing or damaged: nothing in the store can repair them.
    bad_git_blobs: BTreeMap<crate::snapshot::git_objects::BlobId, &'static str>,
    /// Manifests that cannot be used, and why.
    bad_manifests: BTreeMap<String, String>,
    bad_records: Vec<(PathBuf, String)>,
    bad_journals: Vec<(PathBuf, String)>,
    bad_statcaches: Vec<(PathBuf, String)>,
    /// Records whose fixed ignore rules (an object) are missing or damaged.
    bad_rules: Vec<(PathBuf, String)>,
    pending_journals: Vec<PathBuf>,
    staging: Vec<PathBuf>,
    /// What the damage costs, one line each.
    affected: Vec<Affected>,
}

struct Affected {
    run: Option<String>,
    what: String,
    paths: Vec<String>,
}

impl Findings {
    fn sound(&self) -> bool {
        self.damaged.is_empty()
            && self.unreadable.is_empty()
            && self.missing.is_empty()
            && self.bad_git_blobs.is_empty()
            && self.bad_manifests.is_empty()
            && self.bad_records.is_empty()
            && self.bad_journals.is_empty()
            && self.bad_statcaches.is_empty()
            && self.bad_rules.is_empty()
    }
}

pub fn fsck(store: Option<PathBuf>, repair: bool, json: bool, quiet: bool) -> Result<u8> {
    let store = Store::locate(store)?;
    let dir = store.dir().to_path_buf();
    if !dir.exists() {
        // Nothing to check, and no reason to create a store by taking its lock.
        if !quiet {
            eprintln!("backstop: no store at {}: nothing to check", dir.display());
        }
        return Ok(SUCCESS);
    }
    let objects = Objects::new(&dir);

    // 1. Hash every object, without a lock.
    let hashes = objects
        .list()
        .with_context(|| format!("cannot list the objects in {}", objects.dir().display()))?;
    let mut checks = check_all(&objects, &hashes);

    // 2. The rest under objects.lock: shared to look, exclusive to repair.
    let (_looking, to_repair) = if repair {
        let exclusive = ObjectsExclusive::take(&dir, Wait::Yes, |holder| {
            if !quiet {
                eprintln!("backstop: waiting for another backstop on the store ({holder})…");
            }
        })?;
        (None, Some(exclusive))
    } else {
        (Some(ObjectsHold::take(&dir)?), None)
    };
    // What looked wrong may have been put right, or swept, since: look again.
    for (hash, check) in checks.iter_mut() {
        if !matches!(check, Check::Sound) {
            *check = objects.check(hash);
        }
    }
    let mut findings = examine(&dir, &objects, &mut checks)?;

    let mut repaired = Vec::new();
    if let Some(exclusive) = &to_repair {
        repaired = repair_store(&dir, &objects, &findings, exclusive)?;
        // Say what is left, from a fresh look at what was wrong.
        for (hash, check) in checks.iter_mut() {
            if !matches!(check, Check::Sound) {
                *check = objects.check(hash);
            }
        }
        let before = findings.objects;
        findings = examine(&dir, &objects, &mut checks)?;
        findings.objects = before;
    }
    print(&findings, &repaired, repair, json)?;
    Ok(if findings.sound() {
        SUCCESS
    } else {
        STORE_DAMAGED
    })
}

/// Hashes every object, on a few threads.
fn check_all(objects: &Objects, hashes: &[Hash]) -> HashMap<Hash, Check> {
    let threads = crate::snapshot::cores().clamp(1, 4);
    let chunk = hashes.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = hashes
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|h| (*h, objects.check(h)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = HashMap::with_capacity(hashes.len());
        for w in workers {
            // A worker only hashes files; if one panicked, its objects are checked here.
            if let Ok(part) = w.join() {
                all.extend(part);
            }
        }
        for h in hashes {
            all.entry(*h).or_insert_with(|| objects.check(h));
        }
        all
    })
}

/// What is wrong with the git blob `id` in `git-objects/`, checked once: read and
/// hashed, reported like an object of ours (nothing repairs it but the file it came
/// from, which a later snapshot reads again).
fn git_check(
    objects: &Objects,
    checks: &mut HashMap<crate::snapshot::git_objects::BlobId, Option<&'static str>>,
    id: &crate::snapshot::git_objects::BlobId,
) -> Option<&'static str> {
    *checks.entry(*id).or_insert_with(|| objects.git().check(id))
}

/// Records, journals, stat caches, the manifests they name and the objects those name.
fn examine(dir: &Path, objects: &Objects, checks: &mut HashMap<Hash, Check>) -> Result<Findings> {
    let mut f = Findings {
        objects: checks.len(),
        staging: objects.staging_files(),
        ..Findings::default()
    };
    for (hash, check) in checks.iter() {
        match check {
            Check::Sound | Check::Missing => {}
            Check::Damaged => {
                f.damaged.insert(*hash);
            }
            Check::Unreadable(why) => {
                f.unreadable.insert(*hash, why.clone());
            }
        }
    }
    let named = named_manifests(dir, &mut f)?;
    let mut loaded: HashMap<String, Option<Arc<Manifest>>> = HashMap::new();
    let mut git_checks: HashMap<crate::snapshot::git_objects::BlobId, Option<&'static str>> =
        HashMap::new();
    for n in &named {
        let manifest = loaded
            .entry(n.id.clone())
            .or_insert_with(|| match load(objects, &n.id) {
                Ok(m) => Some(Arc::new(m)),
                Err(e) => {
                    f.bad_manifests.insert(n.id.clone(), format!("{e:#}"));
                    None
                }
            })
            .clone();
        let Some(manifest) = manifest else {
            let what = unreadable_effect(&n.source, &n.id);
            f.affected.push(Affected {
                run: run_of(&n.source),
                what,
                paths: Vec::new(),
            });
            continue;
        };
        // Objects the first pass did not see were added since, or are missing.
        let mut hurt: Vec<(String, &'static str)> = Vec::new();
        for e in &manifest.entries {
            if let Some(id) = e.content.git() {
                let changed = n
                    .changed
                    .as_ref()
                    .is_none_or(|c| c.contains(&crate::names::Name(e.path.clone())));
                if let Some(kind) = git_check(objects, &mut git_checks, id).filter(|_| changed) {
                    f.bad_git_blobs.insert(*id, kind);
                    hurt.push((display_path(&e.path), kind));
                }
                continue;
            }
            let Some(h) = e.hash() else { continue };
            let check = checks.entry(*h).or_insert_with(|| objects.check(h));
            let kind = match check {
                Check::Missing => "missing",
                Check::Damaged => {
                    f.damaged.insert(*h);
                    "damaged"
                }
                Check::Unreadable(why) => {
                    f.unreadable.insert(*h, why.clone());
                    "unreadable"
                }
                Check::Sound => continue,
            };
            let path = display_path(&e.path);
            let name = crate::names::Name(e.path.clone());
            // A finished run puts back only the paths it changed: the rest of its
            // manifest may name objects gone for good without costing anything.
            if n.changed.as_ref().is_none_or(|c| c.contains(&name)) {
                if kind == "missing" {
                    f.missing.insert(*h);
                }
                hurt.push((path, kind));
            } else if kind == "missing" {
                f.dangling.insert(*h);
            }
        }
        if hurt.is_empty() {
            continue;
        }
        let kinds: BTreeSet<&str> = hurt.iter().map(|(_, k)| *k).collect();
        let state = kinds.into_iter().collect::<Vec<_>>().join(" or ");
        let count = hurt.len();
        let what = hurt_effect(&n.source, count, &state);
        f.affected.push(Affected {
            run: run_of(&n.source),
            what,
            paths: hurt.into_iter().map(|(p, _)| p).collect(),
        });
    }
    f.manifests = loaded.len();
    Ok(f)
}

/// What a manifest that cannot be read costs, by who names it.
fn unreadable_effect(source: &Source, id: &str) -> String {
    match source {
        Source::Before { .. } => {
            format!(
                "can no longer be undone: its snapshot before the run (manifest {}) cannot be read",
                id
            )
        }
        Source::After { .. } => {
            format!(
                "can no longer be redone: its snapshot after the run (manifest {}) cannot be read",
                id
            )
        }
        Source::Checkpoint { .. } => format!(
            "a step of it can no longer go back to its checkpoint (manifest {}): it cannot be read",
            id
        ),
        Source::StatCache { file } => format!(
            "the stat cache {} names manifest {}, which cannot be read: the next snapshot reads every file again",
            file.display(),
            id
        ),
        Source::Journal { file } => format!(
            "the interrupted put-back in {} cannot be finished: its manifest {} cannot be read",
            file.display(),
            id
        ),
    }
}

/// What `count` files whose contents are `state` cost, by who names their manifest.
fn hurt_effect(source: &Source, count: usize, state: &str) -> String {
    match source {
        Source::Before { .. } => {
            format!("can no longer be undone: {count} file(s)' contents before the run are {state}")
        }
        Source::After { .. } => {
            format!("can no longer be redone: {count} file(s)' contents after the run are {state}")
        }
        Source::Checkpoint { .. } => format!(
            "a step of it can no longer go back to its checkpoint: {count} file(s)' contents are {state}"
        ),
        Source::StatCache { file } => format!(
            "the stat cache {} vouches for {count} file(s) whose contents are {state}",
            file.display()
        ),
        Source::Journal { file } => format!(
            "the interrupted put-back in {} cannot restore {count} file(s): their contents are {state}",
            file.display()
        ),
    }
}

fn run_of(source: &Source) -> Option<String> {
    match source {
        Source::Before { run } | Source::After { run } | Source::Checkpoint { run } => {
            Some(run.clone())
        }
        _ => None,
    }
}

/// A manifest, read (its name checked) and decoded.
fn load(objects: &Objects, id: &str) -> Result<Manifest> {
    let hash = parse_hex(id).with_context(|| format!("`{id}` is not a manifest id"))?;
    Manifest::decode(&objects.read(&hash)?).with_context(|| format!("manifest {id}"))
}

/// Every manifest the store's records, stat caches and journals name; unreadable
/// ones of those are noted in `f`.
fn named_manifests(dir: &Path, f: &mut Findings) -> Result<Vec<Named>> {
    let mut named = Vec::new();
    let objects = Objects::new(dir);
    journals(dir, f, &mut named)?;
    let trees_dir = layout::trees_dir(dir);
    let trees = match std::fs::read_dir(&trees_dir) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(named),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", trees_dir.display()));
        }
    };
    // Stat caches are named by a hash of their scope root: the records say which
    // roots there are.
    let mut statcaches = Vec::new();
    let mut roots = BTreeSet::new();
    for t in trees {
        let t = t.with_context(|| format!("cannot read {}", trees_dir.display()))?;
        let tdir = t.path();
        if let Ok(bytes) = std::fs::read(layout::tree_info_file(&tdir))
            && let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(root) = doc["root"].as_str()
        {
            roots.insert(PathBuf::from(root));
        }
        let runs = layout::runs_dir(&tdir);
        for entry in std::fs::read_dir(&runs).into_iter().flatten() {
            let entry = entry.with_context(|| format!("cannot read {}", runs.display()))?;
            let path = entry.path();
            if layout::record_id(&path).is_none() {
                continue;
            }
            note_record(path, &objects, f, &mut named, &mut roots);
        }
        for entry in
            std::fs::read_dir(&tdir).with_context(|| format!("cannot read {}", tdir.display()))?
        {
            let entry = entry.with_context(|| format!("cannot read {}", tdir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            match layout::TreeFile::of(&name) {
                layout::TreeFile::LegacyJournal => note_journal(path, f, &mut named),
                layout::TreeFile::StatCache(key) => {
                    f.statcaches += 1;
                    match std::fs::read_to_string(&path) {
                        Ok(id) if parse_hex(id.trim()).is_ok() => {
                            statcaches.push((key.to_string(), id.trim().to_string(), path))
                        }
                        Ok(_) => f
                            .bad_statcaches
                            .push((path, "it does not hold a manifest id".into())),
                        Err(e) => f.bad_statcaches.push((path, crate::error::io_message(&e))),
                    }
                }
                layout::TreeFile::RulesCache(_) | layout::TreeFile::Other => {}
            }
        }
    }
    for (key, id, file) in statcaches {
        let root = roots.iter().find(|r| layout::key(r) == key).cloned();
        named.push(Named {
            id,
            root,
            source: Source::StatCache { file },
            changed: None,
        });
    }
    Ok(named)
}

/// A record: the manifests it names, its scope root (which names a stat cache), and
/// whether its fixed ignore rules are sound; or damage.
fn note_record(
    path: PathBuf,
    objects: &Objects,
    f: &mut Findings,
    named: &mut Vec<Named>,
    roots: &mut BTreeSet<PathBuf>,
) {
    f.records += 1;
    let record = std::fs::read(&path)
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(serde_json::from_slice::<RunRecord>(&b)?));
    let r = match record {
        Ok(r) => r,
        Err(e) => {
            f.bad_records.push((path, format!("{e:#}")));
            return;
        }
    };
    let Some(s) = r.snapshot else { return };
    roots.insert(s.root.clone());
    let changed = s
        .after
        .is_some()
        .then(|| s.changes.iter().map(|c| c.path.clone()).collect());
    for (moment, id) in s.manifests() {
        let run = r.id.clone();
        let (source, changed) = match moment {
            Moment::Before => (Source::Before { run }, changed.clone()),
            Moment::Checkpoint => (Source::Checkpoint { run }, None),
            Moment::After => (Source::After { run }, changed.clone()),
        };
        named.push(Named {
            id: id.to_string(),
            root: Some(s.root.clone()),
            source,
            changed,
        });
    }
    if let Some(rules) = &s.rules {
        let sound = parse_hex(rules)
            .map(|h| matches!(objects.check(&h), Check::Sound))
            .unwrap_or(false);
        if !sound {
            f.affected.push(Affected {
                run: Some(r.id.clone()),
                what: format!(
                    "the ignore rules it started with (object {rules}) are missing or damaged: \
                     an undo after a crash of it would walk by today's rules"
                ),
                paths: Vec::new(),
            });
            f.bad_rules.push((path.clone(), rules.clone()));
        }
    }
}

/// A journal: a put-back left half done (its target is needed), or damage.
fn note_journal(path: PathBuf, f: &mut Findings, named: &mut Vec<Named>) {
    f.journals += 1;
    let journal = std::fs::read(&path)
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(serde_json::from_slice::<Journal>(&b)?));
    match journal {
        Ok(j) => {
            f.pending_journals.push(path.clone());
            named.push(Named {
                id: j.target,
                root: j.root,
                source: Source::Journal { file: path },
                changed: None,
            });
        }
        Err(e) => f.bad_journals.push((path, format!("{e:#}"))),
    }
}

/// The put-backs left half done, one journal per scope root (`<store>/journals/`).
fn journals(dir: &Path, f: &mut Findings, named: &mut Vec<Named>) -> Result<()> {
    let jdir = layout::journals_dir(dir);
    let entries = match std::fs::read_dir(&jdir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", jdir.display())),
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read {}", jdir.display()))?
            .path();
        if !layout::is_journal_file(&path) {
            continue;
        }
        note_journal(path, f, named);
    }
    Ok(())
}

/// Quarantines damaged objects, re-creates what a fresh read can, drops unreadable
/// stat caches and leftover staging files. Returns what it did, one line each.
fn repair_store(
    dir: &Path,
    objects: &Objects,
    f: &Findings,
    _: &ObjectsExclusive,
) -> Result<Vec<String>> {
    let mut done = clear_away(objects, f)?;
    let wanted: BTreeSet<Hash> = f
        .damaged
        .iter()
        .chain(&f.missing)
        .chain(&f.dangling)
        .copied()
        .collect();
    if wanted.is_empty() {
        return Ok(done);
    }
    let mut scratch = Findings::default();
    let named = named_manifests(dir, &mut scratch)?;
    let candidates = candidates(objects, &named, &wanted);
    done.extend(recreate(objects, &wanted, &candidates));
    // A stat cache that still names what is gone is dropped: it only saves reading
    // files, and the next snapshot of its tree reads them all instead.
    let still_bad: BTreeSet<Hash> = wanted
        .into_iter()
        .filter(|h| !matches!(objects.check(h), Check::Sound))
        .collect();
    done.extend(drop_stale_statcaches(objects, &named, &still_bad));
    Ok(done)
}

/// Leftover staging files, damaged objects (to the quarantine) and unreadable stat
/// caches, out of the way.
fn clear_away(objects: &Objects, f: &Findings) -> Result<Vec<String>> {
    let mut done = Vec::new();
    // Nothing stages while the exclusive lock is held: what is in tmp/ is left over.
    for path in &f.staging {
        if std::fs::remove_file(path).is_ok() {
            done.push(format!(
                "removed the leftover staging file {}",
                path.display()
            ));
        }
    }
    for hash in &f.damaged {
        let to = objects.quarantine(hash)?;
        done.push(format!(
            "moved the damaged object {} to {}",
            hex(hash),
            to.display()
        ));
    }
    for (file, _) in &f.bad_statcaches {
        if std::fs::remove_file(file).is_ok() {
            done.push(format!(
                "removed the unreadable stat cache {}",
                file.display()
            ));
        }
    }
    Ok(done)
}

/// Candidate files for each object wanted: every path a readable manifest with a
/// known root gives that content.
fn candidates(
    objects: &Objects,
    named: &[Named],
    wanted: &BTreeSet<Hash>,
) -> HashMap<Hash, Vec<(PathBuf, Vec<u8>)>> {
    let mut candidates: HashMap<Hash, Vec<(PathBuf, Vec<u8>)>> = HashMap::new();
    let mut seen = BTreeSet::new();
    // Stat caches first: they are the newest look at each tree.
    let mut order: Vec<&Named> = named.iter().collect();
    order.sort_by_key(|n| !matches!(n.source, Source::StatCache { .. }));
    for n in order {
        let Some(root) = &n.root else { continue };
        if !seen.insert((n.id.clone(), root.clone())) {
            continue;
        }
        let Ok(m) = load(objects, &n.id) else {
            continue;
        };
        for e in &m.entries {
            if let Some(h) = e.hash().filter(|h| wanted.contains(*h)) {
                candidates
                    .entry(*h)
                    .or_default()
                    .push((root.clone(), e.path.clone()));
            }
        }
    }
    candidates
}

/// Each wanted object from the first candidate file that still holds its content.
fn recreate(
    objects: &Objects,
    wanted: &BTreeSet<Hash>,
    candidates: &HashMap<Hash, Vec<(PathBuf, Vec<u8>)>>,
) -> Vec<String> {
    let mut done = Vec::new();
    for hash in wanted {
        let mut fixed = None;
        for (root, rel) in candidates.get(hash).into_iter().flatten() {
            // Never through a symlinked directory: the file must be in the tree.
            if !matches!(ancestors(root, rel), Ok(Ancestors::Real)) {
                continue;
            }
            let path = root.join(std::ffi::OsStr::from_bytes(rel));
            if matches!(objects.restore_from(&path, hash), Ok(true)) {
                fixed = Some(path);
                break;
            }
        }
        if let Some(path) = fixed {
            done.push(format!(
                "re-created object {} from {}",
                hex(hash),
                path.display()
            ));
        }
    }
    done
}

/// Removes the stat caches that name contents in `gone`.
fn drop_stale_statcaches(objects: &Objects, named: &[Named], gone: &BTreeSet<Hash>) -> Vec<String> {
    let mut done = Vec::new();
    for n in named {
        let Source::StatCache { file } = &n.source else {
            continue;
        };
        let stale = load(objects, &n.id).map_or(true, |m| {
            m.entries
                .iter()
                .filter_map(|e| e.hash())
                .any(|h| gone.contains(h))
        });
        if stale && std::fs::remove_file(file).is_ok() {
            done.push(format!(
                "removed the stat cache {}: it named contents that are gone (the next snapshot of its tree reads every file)",
                file.display()
            ));
        }
    }
    done
}

fn listed(paths: &[String]) -> String {
    let mut s = paths
        .iter()
        .take(NAMED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > NAMED {
        s.push_str(&format!(", and {} more", paths.len() - NAMED));
    }
    s
}

fn print(f: &Findings, repaired: &[String], repair: bool, json: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        print_json(&mut out, f, repaired)
    } else {
        print_text(&mut out, f, repaired, repair)
    }
}

fn print_json(out: &mut impl Write, f: &Findings, repaired: &[String]) -> Result<()> {
    let doc = json!({
        "sound": f.sound(),
        "checked": {
            "objects": f.objects,
            "manifests": f.manifests,
            "records": f.records,
            "journals": f.journals,
            "statcaches": f.statcaches,
        },
        "damaged_objects": f.damaged.iter().map(hex).collect::<Vec<_>>(),
        "missing_objects": f.missing.iter().map(hex).collect::<Vec<_>>(),
        "unneeded_missing_objects": f.dangling.difference(&f.missing).map(hex).collect::<Vec<_>>(),
        "bad_git_blobs": f.bad_git_blobs.iter().map(|(id, why)| json!({"blob": crate::snapshot::git_objects::blob_hex(id), "error": why})).collect::<Vec<_>>(),
        "unreadable_objects": f.unreadable.iter().map(|(h, why)| json!({"object": hex(h), "error": why})).collect::<Vec<_>>(),
        "damaged_manifests": f.bad_manifests.iter().map(|(id, why)| json!({"manifest": id, "error": why})).collect::<Vec<_>>(),
        "damaged_records": f.bad_records.iter().map(|(p, why)| json!({"path": Name::from(p.as_path()), "error": why})).collect::<Vec<_>>(),
        "damaged_journals": f.bad_journals.iter().map(|(p, why)| json!({"path": Name::from(p.as_path()), "error": why})).collect::<Vec<_>>(),
        "damaged_statcaches": f.bad_statcaches.iter().map(|(p, why)| json!({"path": Name::from(p.as_path()), "error": why})).collect::<Vec<_>>(),
        "damaged_rules": f.bad_rules.iter().map(|(p, id)| json!({"record": Name::from(p.as_path()), "object": id})).collect::<Vec<_>>(),
        "pending_journals": f.pending_journals.iter().map(|p| Name::from(p.as_path())).collect::<Vec<_>>(),
        "staging_files": f.staging.iter().map(|p| Name::from(p.as_path())).collect::<Vec<_>>(),
        "affected": f.affected.iter().map(|a| json!({"run": a.run, "what": a.what, "paths": a.paths})).collect::<Vec<_>>(),
        "repaired": repaired,
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)?;
    Ok(())
}

/// What is wrong, what it costs, and a summary line, for people.
fn print_text(out: &mut impl Write, f: &Findings, repaired: &[String], repair: bool) -> Result<()> {
    for line in repaired {
        writeln!(out, "repaired: {line}")?;
    }
    for h in &f.damaged {
        writeln!(
            out,
            "damaged object {}: its contents no longer match its name",
            hex(h)
        )?;
    }
    for h in &f.missing {
        writeln!(out, "missing object {}", hex(h))?;
    }
    for (h, why) in &f.unreadable {
        writeln!(out, "unreadable object {}: {why}", hex(h))?;
    }
    for h in f.dangling.difference(&f.missing) {
        writeln!(
            out,
            "note: object {} is gone, but only paths no run changed name it: nothing needs it",
            hex(h)
        )?;
    }
    for (id, why) in &f.bad_manifests {
        writeln!(out, "damaged manifest {id}: {why}")?;
    }
    for (p, why) in &f.bad_records {
        writeln!(out, "damaged record {}: {why}", crate::names::quote_path(p))?;
    }
    for (p, why) in &f.bad_journals {
        writeln!(
            out,
            "damaged journal {}: {why}; every command on that tree stops on it",
            crate::names::quote_path(p)
        )?;
    }
    for (p, why) in &f.bad_statcaches {
        writeln!(
            out,
            "damaged stat cache {}: {why}",
            crate::names::quote_path(p)
        )?;
    }
    for p in &f.pending_journals {
        writeln!(
            out,
            "pending put-back {}: the next command on that tree finishes it",
            crate::names::quote_path(p)
        )?;
    }
    if !f.staging.is_empty() && !repair {
        writeln!(
            out,
            "{} staging file(s) in objects/tmp (left by a killed backstop, or a snapshot in progress)",
            f.staging.len()
        )?;
    }
    for line in f.affected.iter().map(|a| {
        let head = match &a.run {
            Some(run) => format!("run {run} {}", a.what),
            None => a.what.clone(),
        };
        if a.paths.is_empty() {
            head
        } else {
            format!("{head}: {}", listed(&a.paths))
        }
    }) {
        writeln!(out, "{line}")?;
    }
    let summary = format!(
        "checked {} object(s), {} manifest(s), {} record(s), {} journal(s), {} stat cache(s)",
        f.objects, f.manifests, f.records, f.journals, f.statcaches
    );
    if f.sound() {
        writeln!(out, "{summary}: the store is sound")?;
    } else if repair {
        writeln!(
            out,
            "{summary}: damage remains that a fresh read cannot repair (above)"
        )?;
    } else {
        writeln!(
            out,
            "{summary}: the store is damaged; `backstop fsck --repair` fixes what a fresh read of the trees can"
        )?;
    }
    Ok(())
}
