//! `backstop undo`, `backstop redo` and `backstop gc`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::error::UserError;
use crate::exit_code::SUCCESS;
use crate::record::{RunRecord, TreeState};
use crate::rollback::{change_infos, report_errors, scope_of};
use crate::snapshot::diff::{Change, diff, select};
use crate::snapshot::journal::Journal;
use crate::snapshot::lock::{TreeLock, Wait};
use crate::snapshot::manifest::{Entry, Manifest, hex, parse_hex};
use crate::snapshot::objects::Objects;
use crate::snapshot::tree::{Tree, display_path, relative_paths};
use crate::store::{Store, TreeStore, tree_root};

use super::{lock_tree, recover};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Undo,
    Redo,
}

pub struct Request<'a> {
    /// A run id (or prefix) first, maybe, then paths.
    pub targets: &'a [PathBuf],
    /// The words after `--`, paths only; `Some` when `--` was given.
    pub paths: Option<&'a [PathBuf]>,
    pub dry_run: bool,
    pub force: bool,
    pub json: bool,
    pub wait: Wait,
    pub quiet: bool,
}

pub fn undo_or_redo(store: Option<PathBuf>, direction: Direction, req: &Request) -> Result<u8> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let store = Store::locate(store)?;
    let tree_store = store.tree(&tree_root(&cwd));
    let _lock = lock_tree(&tree_store, req.wait, req.quiet)?;

    let verb = match direction {
        Direction::Undo => "undo",
        Direction::Redo => "redo",
    };
    let (record, paths) = pick(&tree_store, &cwd, verb, req.targets, req.paths)?;
    let paths = &paths[..];
    let info = record.snapshot.clone().ok_or_else(|| {
        UserError::Refused(format!(
            "run {} has no snapshot of its tree to go back to",
            record.id
        ))
    })?;
    let tree = Tree::new(store.dir(), &tree_store, scope_of(&info, store.dir()));
    recover(&tree, req.quiet)?;
    // Recovery may have moved the run on.
    let record = tree_store.find(&record.id)?;
    let info = record.snapshot.clone().expect("checked above");
    let id = &record.id;
    match (direction, info.state) {
        (Direction::Undo, TreeState::Undone) => {
            return Err(UserError::Refused(format!(
                "run {id} is undone already; `backstop redo {id}` re-applies it"
            ))
            .into());
        }
        (Direction::Undo, TreeState::RolledBack) => {
            return Err(UserError::Refused(format!(
                "run {id} was rolled back when it failed, so its changes are not in the tree; `backstop redo {id}` re-applies them"
            ))
            .into());
        }
        (Direction::Redo, TreeState::Applied) => {
            return Err(UserError::Refused(format!(
                "run {id} is not undone: its changes are in the tree already"
            ))
            .into());
        }
        _ => {}
    }

    let before = tree.load(&info.before)?;
    let (after_id, after) = match &info.after {
        Some(a) => (a.clone(), tree.load(a)?),
        None => {
            // backstop died during the run: the tree as it is now is the run's result.
            let taken = tree.snapshot_after(&before, &info.before)?;
            let after_id = hex(&taken.id);
            let infos = change_infos(&diff(&before, &taken.manifest));
            tree_store.update(id, |r| {
                if let Some(s) = r.snapshot.as_mut() {
                    s.after = Some(after_id.clone());
                    s.changes = infos;
                }
            })?;
            (after_id, taken.manifest)
        }
    };
    let all = diff(&before, &after);
    let wanted = relative_paths(&info.root, &cwd, paths)?;
    let chosen = select(&all, &wanted);
    if !wanted.is_empty() && chosen.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(
            UserError::Refused(format!("run {id} did not change {}", names.join(", "))).into(),
        );
    }
    let (from, to, to_id) = match direction {
        Direction::Undo => (&after, &before, &info.before),
        Direction::Redo => (&before, &after, &after_id),
    };

    // A path that changed again since is someone's later work: refuse, naming it.
    let mut conflicts = Vec::new();
    for c in &chosen {
        let expected = from.find(&c.path);
        let now = tree.observe(&c.path, expected)?;
        let same = match (&now, expected) {
            (None, None) => true,
            (Some(n), Some(e)) => n.same_state(e),
            _ => false,
        };
        if !same {
            conflicts.push(display_path(&c.path));
        }
    }
    if req.json {
        print_json(id, verb, req.dry_run, &chosen, &conflicts, to)?;
    }
    if !conflicts.is_empty() && !req.force {
        return Err(UserError::Conflict { paths: conflicts }.into());
    }
    if req.dry_run {
        if !req.json {
            print_plan(id, verb, &chosen, to)?;
        }
        return Ok(SUCCESS);
    }
    if chosen.is_empty() {
        if !req.quiet {
            eprintln!("backstop: run {id} changed nothing in its scope; nothing to {verb}");
        }
        return Ok(SUCCESS);
    }
    if let (Some(was), Some(now)) = (&info.head, crate::snapshot::git::head(&info.root))
        && *was != now
        && !req.quiet
    {
        eprintln!(
            "backstop: warning: git HEAD moved since run {id} ({was} → {now}); {verb} puts files back, never .git"
        );
    }
    let whole = chosen.len() == all.len();
    let then = match (direction, whole) {
        (Direction::Undo, true) => TreeState::Undone,
        _ => TreeState::Applied,
    };
    let paths: Vec<Vec<u8>> = chosen.iter().map(|c| c.path.clone()).collect();
    let reason = if whole {
        format!("backstop {verb}")
    } else {
        format!("backstop {verb} of {} path(s)", paths.len())
    };
    let journal = Journal::new(id, verb, to_id, &paths, Some(then));
    let report = tree.put_back(&journal, to, &reason)?;
    for dir in &report.kept {
        eprintln!("backstop: kept {dir}: it holds files outside the run's scope");
    }
    report_errors(&report)?;
    if !req.quiet && !req.json {
        eprintln!(
            "backstop: {verb} of run {id}: {} path(s) put back",
            paths.len()
        );
    }
    Ok(SUCCESS)
}

/// The run the words name, and the paths that remain. As in git, a word before `--`
/// may name a run and the words after it are paths only; without `--`, a first word
/// that is both a run id (prefix) and a path (one that exists, or one a run changed)
/// is refused as ambiguous rather than guessed. No run named: the latest run with a
/// snapshot, unless a damaged record may be a later one.
fn pick(
    tree: &TreeStore,
    cwd: &Path,
    verb: &str,
    words: &[PathBuf],
    after_dashes: Option<&[PathBuf]>,
) -> Result<(RunRecord, Vec<PathBuf>)> {
    let first = words
        .first()
        .and_then(|t| t.to_str())
        .filter(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_hexdigit()));
    if let Some(paths) = after_dashes {
        let mut rest: Vec<PathBuf> = words.iter().skip(1).cloned().collect();
        rest.extend_from_slice(paths);
        return match words.first() {
            // Before `--` a word can only be a run: any error (unknown, ambiguous,
            // damaged) is the answer.
            Some(word) => Ok((tree.find(&word.to_string_lossy())?, rest)),
            None => Ok((latest(tree, verb)?, rest)),
        };
    }
    if let Some(word) = first {
        let as_run = tree.find(word);
        let not_a_run = as_run.as_ref().is_err_and(|e| {
            e.downcast_ref::<UserError>()
                .is_some_and(|u| matches!(u, UserError::UnknownRun(_)))
        });
        if !not_a_run {
            if let Some(path) = path_meaning(tree, cwd, word)? {
                let run = match &as_run {
                    Ok(r) => format!("run {}", r.id),
                    Err(_) => format!("run id prefix `{word}`"),
                };
                return Err(UserError::Usage(format!(
                    "`{word}` is both a {run} and {path}; say which: `backstop {verb} {word} --` for the run, `backstop {verb} -- {word}` for the path"
                ))
                .into());
            }
            return Ok((as_run?, words[1..].to_vec()));
        }
    }
    Ok((latest(tree, verb)?, words.to_vec()))
}

/// What `word` means as a path, if it means one: it exists under `cwd` (even as a
/// dangling link), or a recorded run changed it (it may be gone now).
fn path_meaning(tree: &TreeStore, cwd: &Path, word: &str) -> Result<Option<String>> {
    let path = cwd.join(word);
    if path.symlink_metadata().is_ok() {
        return Ok(Some(format!("a path ({})", path.display())));
    }
    for r in tree.list()? {
        let Some(snap) = &r.snapshot else { continue };
        let Ok(rel) = relative_paths(&snap.root, cwd, &[PathBuf::from(word)]) else {
            continue;
        };
        let rel = String::from_utf8_lossy(&rel[0]).into_owned();
        let below = format!("{rel}/");
        if snap
            .changes
            .iter()
            .any(|c| c.path == rel || c.path.starts_with(&below))
        {
            return Ok(Some(format!("a path run {} changed ({rel})", r.id)));
        }
    }
    Ok(None)
}

/// The latest run with a snapshot. A damaged record file written since that run
/// started may be a later run: then no run is guessed, and the file is named.
fn latest(tree: &TreeStore, verb: &str) -> Result<RunRecord> {
    let listing = tree.listing()?;
    let latest = listing.records.into_iter().find(|r| r.snapshot.is_some());
    let newer: Vec<String> = listing
        .damaged
        .iter()
        .filter(|d| match (&latest, d.modified) {
            (Some(l), Some(m)) => m >= l.started_at,
            _ => true,
        })
        .map(|d| format!("  {}: {}", d.file.display(), d.error))
        .collect();
    if !newer.is_empty() {
        let older = latest.as_ref().map_or(String::new(), |l| {
            format!(" (the latest readable one is {})", l.id)
        });
        return Err(UserError::Refused(format!(
            "the latest run's record may be damaged, so no run is taken by default:\n{}\nname the run, e.g. `backstop {verb} RUN`{older}; `backstop runs` lists them",
            newer.join("\n")
        ))
        .into());
    }
    latest.ok_or_else(|| UserError::NoRuns(tree.root().to_path_buf()).into())
}

fn action(c: &Change, to: &Manifest) -> &'static str {
    match (to.find(&c.path), &c.before, &c.after) {
        (None, _, _) => "remove",
        (Some(_), None, _) | (Some(_), _, None) => "create",
        (Some(_), _, _) => "restore",
    }
}

fn print_plan(id: &str, verb: &str, chosen: &[&Change], to: &Manifest) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{verb} of run {id} would:")?;
    for c in chosen {
        writeln!(
            out,
            "  {:<7} {}  ({:?} {})",
            action(c, to),
            display_path(&c.path),
            c.letter(),
            c.detail()
        )?;
    }
    Ok(())
}

fn print_json(
    id: &str,
    verb: &str,
    dry_run: bool,
    chosen: &[&Change],
    conflicts: &[String],
    to: &Manifest,
) -> Result<()> {
    let changes: Vec<_> = chosen
        .iter()
        .map(|c| {
            serde_json::json!({
                "path": display_path(&c.path),
                "letter": c.letter(),
                "detail": c.detail(),
                "action": action(c, to),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "run": id,
        "action": verb,
        "dry_run": dry_run,
        "changes": changes,
        "conflicts": conflicts,
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &doc)?;
    writeln!(out)?;
    Ok(())
}

/// `backstop gc`: old runs of this tree, then objects no tree references.
pub fn gc(
    store: Option<PathBuf>,
    keep: Option<usize>,
    older_than: Option<Duration>,
    wait: Wait,
    quiet: bool,
) -> Result<u8> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let store = Store::locate(store)?;
    let tree_store = store.tree(&tree_root(&cwd));
    let _lock = lock_tree(&tree_store, wait, quiet)?;
    if tree_store.dir().join("journal.json").exists() {
        return Err(UserError::Refused(
            "a put-back on this tree was interrupted; run `backstop undo --dry-run` first to finish it".into(),
        )
        .into());
    }
    let runs = tree_store.list()?;
    let now = SystemTime::now();
    let mut dropped = 0;
    for (i, r) in runs.iter().enumerate() {
        let too_many = keep.is_some_and(|k| i >= k);
        let too_old =
            older_than.is_some_and(|d| now.duration_since(r.started_at).is_ok_and(|age| age > d));
        let running = r.state() == "running";
        if (too_many || too_old) && !running {
            tree_store.remove(&r.id)?;
            dropped += 1;
        }
    }
    let _objects_lock = TreeLock::take(&store.dir().join("objects.lock"), wait, |_| {})?;
    let (objects, bytes) = sweep(store.dir())?;
    if !quiet {
        eprintln!(
            "backstop: removed {dropped} run(s) and {objects} unreferenced object(s) ({})",
            crate::policy::values::format_size(bytes)
        );
    }
    Ok(SUCCESS)
}

/// Deletes every object that no record, stat cache or journal of any tree reaches.
fn sweep(store: &Path) -> Result<(usize, u64)> {
    let objects = Objects::new(store);
    let mut manifests: HashSet<String> = HashSet::new();
    if let Ok(trees) = std::fs::read_dir(store.join("trees")) {
        for t in trees.flatten() {
            let dir = t.path();
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("statcache-")
                    && let Ok(id) = std::fs::read_to_string(entry.path())
                {
                    manifests.insert(id.trim().to_string());
                }
                if name == "journal.json"
                    && let Ok(bytes) = std::fs::read(entry.path())
                    && let Ok(j) =
                        serde_json::from_slice::<crate::snapshot::journal::Journal>(&bytes)
                {
                    manifests.insert(j.target);
                }
            }
            for entry in std::fs::read_dir(dir.join("runs"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let Ok(bytes) = std::fs::read(entry.path()) else {
                    continue;
                };
                let Ok(r) = serde_json::from_slice::<RunRecord>(&bytes) else {
                    continue;
                };
                if let Some(s) = r.snapshot {
                    manifests.insert(s.before);
                    manifests.extend(s.after);
                }
            }
        }
    }
    let mut live: HashSet<[u8; 32]> = HashSet::new();
    for id in &manifests {
        let Ok(hash) = parse_hex(id) else { continue };
        live.insert(hash);
        // An unreadable manifest keeps nothing alive but itself; its record says so.
        if let Ok(m) = objects.read(&hash).and_then(|b| Manifest::decode(&b)) {
            live.extend(m.entries.iter().filter_map(Entry::hash).copied());
        }
    }
    let mut removed = 0;
    let mut bytes = 0;
    for hash in objects.list()? {
        if !live.contains(&hash) {
            bytes += std::fs::metadata(objects.path(&hash)).map_or(0, |m| m.len());
            objects.remove(&hash);
            removed += 1;
        }
    }
    objects.clear_tmp();
    Ok((removed, bytes))
}
