//! `backstop undo` and `backstop redo`.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::error::UserError;
use crate::events::{Event, EventSink};
use crate::exit_code::SUCCESS;
use crate::names::quote_path;
use crate::record::{PutBack, RunRecord, SnapshotInfo, TreeState};
use crate::reporter::Reporter;
use crate::rollback::scope_of;
use crate::snapshot::apply::Report;
use crate::snapshot::diff::{Change, diff, select};
use crate::snapshot::journal::{Journal, from_hex, to_hex};
use crate::snapshot::lock::Wait;
use crate::snapshot::manifest::{Content, Kind, Manifest};
use crate::snapshot::snapshots::{Snapshots, relative_paths};
use crate::store::{RunRecords, Store, repo_root};

use super::{lock_region, lock_tree, recover, token};

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
    let tree_store = store.records(&repo_root(&cwd));
    let action = match direction {
        Direction::Undo => PutBack::Undo,
        Direction::Redo => PutBack::Redo,
    };
    let verb = action.as_str();
    // What undo and redo say goes through a reporter, as a run's does: `-q` silences
    // all but what must never be silent.
    let mut say = Reporter::for_stderr(req.quiet);
    let (record, paths) = pick(&tree_store, &cwd, verb, req.targets, req.paths, &mut say)?;
    let info = snapshot_of(&record, verb)?;
    // The region the run recorded (not the tree's root): nothing whose scope overlaps
    // it writes the tree meanwhile, the run itself included if it is still going.
    // Then the tree's history, then a hold on the objects so gc sweeps nothing this
    // reads; in that order, the order gc takes the last two in.
    let _region = lock_region(
        store.dir(),
        &info.root,
        &token(verb),
        verb,
        Some(&record.id),
        req.wait,
        req.quiet,
    )?;
    let _lock = lock_tree(&tree_store, req.wait, req.quiet)?;
    let mut tree = Snapshots::new(store.dir(), &tree_store, scope_of(&info, store.dir()));
    let _objects = tree.hold_objects()?;
    recover(&tree, req.quiet)?;
    // Recovery, or the run itself (if it was still going), may have moved it on.
    let record = tree_store.find(&record.id)?;
    let info = snapshot_of(&record, verb)?;
    let id = &record.id;
    refuse_by_state(direction, id, &info)?;

    let run = RunChanges::read(&mut tree, &info, id, &mut say, req.json)?;
    let wanted = relative_paths(&info.root, &cwd, &paths)?;
    let chosen = choose(direction, id, &info, &run, &wanted, &paths, req.force)?;
    let (from, to, to_id) = match direction {
        Direction::Undo => (&run.after, &run.before, &info.before),
        Direction::Redo => (&run.before, &run.after, &run.after_id),
    };
    let conflicts = changed_since(&tree, &chosen, from)?;
    if req.json {
        match print_json(id, verb, req.dry_run, &chosen, &conflicts, to) {
            // The reader of the plan went away (`| head`): the undo itself does not
            // depend on anyone reading it.
            Err(e) if crate::error::is_broken_pipe(&e) => {}
            r => r?,
        }
    }
    if !conflicts.is_empty() && !req.force {
        return Err(UserError::Conflict {
            verb: verb.into(),
            since: match direction {
                Direction::Undo => "the run".into(),
                Direction::Redo => "the undo".into(),
            },
            paths: conflicts.iter().map(ToString::to_string).collect(),
        }
        .into());
    }
    if req.dry_run {
        if !req.json {
            print_plan(id, verb, &chosen, to)?;
        }
        return Ok(SUCCESS);
    }
    if chosen.is_empty() {
        if run.all.is_empty() && run.undone.is_empty() {
            say.note(&format!(
                "run {id} changed nothing in its scope; nothing to {verb}"
            ));
        } else {
            say.note(&format!(
                "every change of run {id} is undone already; nothing to {verb}"
            ));
        }
        return Ok(SUCCESS);
    }
    if let (Some(was), Some(now)) = (&info.head, crate::snapshot::git::head(&info.root))
        && *was != now
    {
        say.event(&Event::Warning(format!(
            "git HEAD moved since run {id} ({was} → {now}); {verb} puts files back, never .git"
        )));
    }
    let (journal, reason) = run.journal(action, id, to_id, &chosen);
    let report = tree.put_back(&journal, to, &reason)?;
    Ok(tell(&mut say, &report, verb, id, chosen.len(), req.json))
}

/// The run's snapshot, without which there is nothing to go back to.
fn snapshot_of(record: &RunRecord, verb: &str) -> Result<SnapshotInfo> {
    record.snapshot.clone().ok_or_else(|| {
        let why = match record.no_snapshot {
            Some(why) => format!(": it took no snapshot, as {}", why.why()),
            None => ": it took no snapshot of its tree".to_string(),
        };
        // Not a success: whatever the run changed is still in the tree, and a script
        // that runs `backstop undo RUN && ...` must not take it as put back.
        UserError::Refused(format!(
            "nothing to {verb} for run {}{why}; what it changed stays as it is",
            record.id
        ))
        .into()
    })
}

/// A run's change set, from its two manifests (or, without the one after, from the
/// tree now), and which of its paths are at their state before the run now.
struct RunChanges {
    before: Arc<Manifest>,
    /// Empty when the run's result was never recorded.
    after_id: String,
    after: Arc<Manifest>,
    all: Vec<Change>,
    undone: HashSet<Vec<u8>>,
    /// The paths a rollback left as they were (hex, as the record has them): carried
    /// from record to record by every put-back.
    late: Vec<String>,
}

impl RunChanges {
    fn read(
        tree: &mut Snapshots,
        info: &SnapshotInfo,
        id: &str,
        say: &mut Reporter,
        json: bool,
    ) -> Result<Self> {
        let before = tree.load(&info.before)?;
        // The run's fixed scope: what its rules left out is never destroyed by a
        // put-back (and, with no after-state, it is what the walk below goes by).
        // Without it an undo can still go by its two manifests, as runs of backstop
        // 0.1 do.
        if let Some(rules) = &info.rules
            && let Err(e) = tree.load_rules(rules)
        {
            if info.after.is_none() {
                return Err(e);
            }
            say.event(&Event::Warning(format!(
                "the scope run {id} started with cannot be read ({e:#})"
            )));
        }
        let (after_id, after) = match &info.after {
            Some(a) => (a.clone(), tree.load(a)?),
            // Only undo gets here (redo was refused before). What the run left is
            // unknown; the tree as it is now, walked by the rules the run started
            // with, is only what undo would go over. Nothing of it is stored, and it
            // is never recorded as the run's result: it holds any later edits too.
            None => (String::new(), Arc::new(observe_now(tree, &before)?)),
        };
        // The paths a rollback left as they were (changed after the command had
        // ended): someone else's, not the run's, whatever its state is now. Neither
        // undo nor redo goes over them, and the record keeps naming them.
        let late: HashSet<Vec<u8>> = info
            .late
            .iter()
            .map(|h| from_hex(h))
            .collect::<Result<_>>()
            .with_context(|| format!("the record of run {id} lists a bad late path"))?;
        if !late.is_empty() && !json {
            let mut names: Vec<String> = late.iter().map(|p| crate::names::quote(p)).collect();
            names.sort();
            say.note(&format!(
                "leaving {} path(s) changed after run {id}'s command had ended (not its changes): {}",
                names.len(),
                names.join(", ")
            ));
        }
        let all: Vec<Change> = diff(&before, &after)
            .into_iter()
            .filter(|c| !late.contains(&c.path))
            .collect();
        let undone = undone_now(info, &all, id)?;
        Ok(RunChanges {
            before,
            after_id,
            after,
            all,
            undone,
            late: info.late.clone(),
        })
    }

    /// The journal of putting `chosen` back, and the reason the record gives for it.
    /// The undone paths once it is done are written with it, and the run's state:
    /// `undone` when every path of the run is, `applied` otherwise (its changes are in
    /// the tree, or some).
    fn journal(
        &self,
        action: PutBack,
        id: &str,
        to_id: &str,
        chosen: &[Change],
    ) -> (Journal, String) {
        let mut after_undone: std::collections::BTreeSet<Vec<u8>> =
            self.undone.iter().cloned().collect();
        for c in chosen {
            match action {
                PutBack::Redo => after_undone.remove(&c.path),
                _ => after_undone.insert(c.path.clone()),
            };
        }
        let every: HashSet<&[u8]> = self
            .all
            .iter()
            .map(|c| c.path.as_slice())
            .chain(self.undone.iter().map(Vec::as_slice))
            .collect();
        let whole = every.iter().all(|p| after_undone.contains(*p));
        let then = if whole {
            TreeState::Undone
        } else {
            TreeState::Applied
        };
        let paths: Vec<Vec<u8>> = chosen.iter().map(|c| c.path.clone()).collect();
        let reason = if paths.len() == every.len() {
            format!("backstop {action}")
        } else {
            format!("backstop {action} of {} path(s)", paths.len())
        };
        let mut journal = Journal::new(id, action, to_id, &paths, Some(then));
        journal.undone = Some(after_undone.iter().map(|p| to_hex(p)).collect());
        journal.late.clone_from(&self.late);
        (journal, reason)
    }
}

/// Which of the run's paths are at their state before the run now: all of them when
/// undone or rolled back (the paths a rollback kept are not among them), those a
/// partial undo put back when applied.
fn undone_now(info: &SnapshotInfo, all: &[Change], id: &str) -> Result<HashSet<Vec<u8>>> {
    Ok(match info.state {
        TreeState::Undone | TreeState::RolledBack => all.iter().map(|c| c.path.clone()).collect(),
        TreeState::Applied => info
            .undone
            .iter()
            .map(|h| from_hex(h))
            .collect::<Result<_>>()
            .with_context(|| format!("the record of run {id} lists a bad undone path"))?,
    })
}

/// The changes to put back: undo goes over the paths not undone yet, redo over the
/// undone ones; of those, the ones under `wanted` when paths were named. Refuses a
/// blind undo of a run whose result was never recorded, and paths that name nothing
/// to do, saying why.
fn choose(
    direction: Direction,
    id: &str,
    info: &SnapshotInfo,
    run: &RunChanges,
    wanted: &[Vec<u8>],
    named: &[PathBuf],
    force: bool,
) -> Result<Vec<Change>> {
    let candidates: Vec<Change> = run
        .all
        .iter()
        .filter(|c| run.undone.contains(&c.path) == (direction == Direction::Redo))
        .cloned()
        .collect();
    if info.after.is_none() && wanted.is_empty() && !force && !candidates.is_empty() {
        // Without the run's result, every difference from the state before it looks
        // like the run's: put back blindly, later edits would be lost.
        return Err(UserError::Unrecorded {
            run: id.to_string(),
            why: info
                .after_error
                .clone()
                .unwrap_or_else(|| "its backstop was killed before the run ended".to_string()),
            paths: listed(&candidates),
        }
        .into());
    }
    let chosen = select(&candidates, wanted);
    if !wanted.is_empty() && chosen.is_empty() {
        let names: Vec<String> = named.iter().map(|p| crate::names::quote_path(p)).collect();
        let names = names.join(", ");
        let named_undone = wanted.iter().any(|w| {
            run.undone
                .iter()
                .any(|u| u == w || (u.starts_with(w) && u.get(w.len()) == Some(&b'/')))
        });
        return Err(UserError::Refused(match direction {
            Direction::Undo if named_undone => format!(
                "run {id}'s changes to {names} are undone already; `backstop redo {id} -- {names}` re-applies them"
            ),
            Direction::Redo if !select(&run.all, wanted).is_empty() => format!(
                "run {id}'s changes to {names} are not undone: they are in the tree already"
            ),
            _ => format!("run {id} did not change {names}"),
        })
        .into());
    }
    Ok(chosen.into_iter().cloned().collect())
}

/// The chosen paths that changed again since they were as `from` has them: someone's
/// later work, which a put-back refuses to go over unless forced.
fn changed_since(
    tree: &Snapshots,
    chosen: &[Change],
    from: &Manifest,
) -> Result<Vec<crate::names::Name>> {
    let mut conflicts = Vec::new();
    for c in chosen {
        let expected = from.find(&c.path);
        let now = tree.observe(&c.path, expected)?;
        let same = match (&now, expected) {
            (None, None) => true,
            (Some(n), Some(e)) => n.same_state(e),
            _ => false,
        };
        if !same {
            conflicts.push(crate::names::Name(c.path.clone()));
        }
    }
    Ok(conflicts)
}

/// Says how the put-back of `planned` paths went; its exit code.
fn tell(
    say: &mut Reporter,
    report: &Report,
    verb: &str,
    id: &str,
    planned: usize,
    json: bool,
) -> u8 {
    for dir in &report.kept {
        say.note(&format!(
            "kept {}: it holds files outside the run's scope",
            quote_path(dir)
        ));
    }
    if !report.complete() {
        // Never silent, even with -q or --json: the tree is not what was asked for.
        say.always(&format!(
            "{verb} of run {id} incomplete: {} of {planned} path(s) not put back:",
            report.failed.len(),
        ));
        for (path, why) in &report.failed {
            say.always(&format!("  not restored: {}: {why}", quote_path(path)));
        }
        return crate::exit_code::PUT_BACK_INCOMPLETE;
    }
    if !json {
        say.note(&format!("{verb} of run {id}: {planned} path(s) put back"));
    }
    SUCCESS
}

/// Refuses what the run's state makes impossible: undoing what is not in the tree,
/// redoing what was never stored or is not undone.
fn refuse_by_state(direction: Direction, id: &str, info: &SnapshotInfo) -> Result<()> {
    match (direction, info.state) {
        (Direction::Undo, TreeState::Undone) => {
            Err(UserError::Refused(format!(
                "run {id} is undone already; `backstop redo {id}` re-applies it"
            ))
            .into())
        }
        (Direction::Undo, TreeState::RolledBack) => {
            Err(UserError::Refused(format!(
                "run {id} was rolled back when it failed, so its changes are not in the tree; `backstop redo {id}` re-applies them"
            ))
            .into())
        }
        (Direction::Redo, _) if info.after.is_none() && info.after_error.is_some() => {
            Err(UserError::Refused(format!(
                "run {id}'s changes were never stored ({}), so redo cannot re-apply them",
                info.after_error.as_deref().unwrap_or_default()
            ))
            .into())
        }
        (Direction::Redo, _) if info.after.is_none() => {
            Err(UserError::Refused(format!(
                "run {id}'s result was never recorded (its backstop was killed before the run ended), so redo has nothing to re-apply"
            ))
            .into())
        }
        (Direction::Redo, TreeState::Applied) if info.undone.is_empty() => {
            Err(UserError::Refused(format!(
                "run {id} is not undone: its changes are in the tree already"
            ))
            .into())
        }
        _ => Ok(()),
    }
}

/// The paths of `changes` for a message: the first hundred, and how to see the rest.
fn listed(changes: &[Change]) -> Vec<String> {
    const SHOWN: usize = 100;
    let mut out: Vec<String> = changes
        .iter()
        .take(SHOWN)
        .map(|c| crate::names::quote(&c.path))
        .collect();
    if changes.len() > SHOWN {
        out.push(format!(
            "… and {} more (`backstop undo --dry-run --force` lists them all)",
            changes.len() - SHOWN
        ));
    }
    out
}

/// The tree as it is now in the run's scope, as a manifest: what was in the snapshot
/// before the run, and what the walk finds (by the run's fixed rules). Contents are
/// hashed where the stat differs from the snapshot, never stored: a run whose result
/// could not be stored (over `max_total_size`, say) can still be undone by name.
fn observe_now(tree: &Snapshots, before: &Manifest) -> Result<Manifest> {
    let also: Vec<&[u8]> = before.entries.iter().map(|e| e.path.as_slice()).collect();
    let (seen, unread) = tree.scope.walk_best_effort(&also);
    if !unread.is_empty() {
        // What cannot be read cannot be told from the state before the run.
        return Err(UserError::Refused(format!(
            "cannot read all of {}, so backstop cannot tell what differs from the state before the run:\n  {}",
            crate::names::quote_path(&tree.scope.root),
            unread.join("\n  ")
        ))
        .into());
    }
    let mut entries = Vec::with_capacity(seen.len());
    for s in seen {
        let known = before.find(&s.path);
        if let Some(k) = known.filter(|k| s.same_stat(k)) {
            entries.push(k.clone());
        } else if s.kind == Kind::File && s.stamp.size > tree.scope.max_file_size {
            // Listed, not read, as a snapshot does with a file over the size limit.
            entries.push(s.into_entry(Content::Skipped));
        } else if let Some(e) = tree.observe(&s.path, known)? {
            entries.push(e);
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries.dedup_by(|a, b| a.path == b.path);
    Ok(Manifest {
        taken_at_ns: 0,
        entries,
    })
}

/// The run the words name, and the paths that remain. As in git, a word before `--`
/// may name a run and the words after it are paths only; without `--`, a first word
/// that is both a run id (prefix) and a path (one that exists, or one a run changed)
/// is refused as ambiguous rather than guessed. No run named: see [`latest`].
fn pick(
    tree: &RunRecords,
    cwd: &Path,
    verb: &str,
    words: &[PathBuf],
    after_dashes: Option<&[PathBuf]>,
    say: &mut Reporter,
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
            None => Ok((latest(tree, verb, say)?, rest)),
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
    Ok((latest(tree, verb, say)?, words.to_vec()))
}

/// What `word` means as a path, if it means one: it exists under `cwd` (even as a
/// dangling link), or a recorded run changed it (it may be gone now).
fn path_meaning(tree: &RunRecords, cwd: &Path, word: &str) -> Result<Option<String>> {
    let path = cwd.join(word);
    if path.symlink_metadata().is_ok() {
        return Ok(Some(format!(
            "a path ({})",
            crate::names::quote_path(&path)
        )));
    }
    for r in tree.list()? {
        let Some(snap) = &r.snapshot else { continue };
        let Ok(rel) = relative_paths(&snap.root, cwd, &[PathBuf::from(word)]) else {
            continue;
        };
        let rel = &rel[0];
        if snap.changes.iter().any(|c| {
            let p = c.path.as_bytes();
            p == rel.as_slice() || (p.starts_with(rel) && p.get(rel.len()) == Some(&b'/'))
        }) {
            return Ok(Some(format!(
                "a path run {} changed ({})",
                r.id,
                crate::names::quote(rel)
            )));
        }
    }
    Ok(None)
}

/// The run a bare `undo` or `redo` goes by: undo the latest whose changes are still
/// in the tree (at least partly), redo the latest with changes out of it (undone,
/// partly undone, rolled back), saying which and why the newer ones were passed over. A damaged record file written since that
/// run started may be a later run: then no run is guessed, and the file is named.
fn latest(tree: &RunRecords, verb: &str, say: &mut Reporter) -> Result<RunRecord> {
    let listing = tree.listing()?;
    let snapshotted: Vec<&RunRecord> = listing
        .records
        .iter()
        .filter(|r| r.snapshot.is_some())
        .collect();
    let undo = verb == "undo";
    // When no run has changes in the tree, undo goes by the latest one all the same:
    // its refusal says what became of it (rolled back, undone, changed nothing).
    // Likewise redo goes by the latest run with changes out of the tree.
    let wanted = |r: &&RunRecord| {
        if undo {
            r.has_changes_in_tree()
        } else {
            r.has_changes_to_redo()
        }
    };
    let found = match snapshotted.iter().position(wanted) {
        Some(i) => Some(i),
        None if snapshotted.is_empty() => None,
        None => Some(0),
    };
    let latest = found.map(|i| snapshotted[i]);
    // The newer runs an undo passed over, and what became of them: those with a
    // snapshot, and runs of a command that took none (a model call changes no files).
    // The first few by name: a long streak of failed runs would flood the line.
    let skipped: Vec<&RunRecord> = listing
        .records
        .iter()
        .take_while(|r| latest.is_some_and(|l| l.id != r.id))
        .filter(|r| r.snapshot.is_some() || r.no_snapshot.is_some())
        .collect();
    let mut passed: Vec<String> = skipped.iter().take(5).map(|r| passed_over(r)).collect();
    if skipped.len() > passed.len() {
        passed.push(format!("{} more", skipped.len() - passed.len()));
    }
    let newer: Vec<String> = listing
        .damaged_since(latest)
        .map(|d| format!("  {}: {}", crate::names::quote_path(&d.file), d.error))
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
    match latest {
        Some(l) => {
            if !passed.is_empty() {
                let which = if undo {
                    "changes in the tree"
                } else {
                    "changes undone or rolled back"
                };
                say.note(&format!(
                    "{verb} of run {} (the latest run with {which}; {})",
                    l.id,
                    passed.join(", ")
                ));
            }
            Ok(l.clone())
        }
        None if !listing.records.is_empty() => {
            // The newest run of a command says why it took none; else they are model
            // calls, which change no files.
            let why = match listing.records.iter().find(|r| r.no_snapshot.is_some()) {
                Some(r) => format!(
                    " (run {} took none as {})",
                    r.id,
                    r.no_snapshot.map_or("", |w| w.why())
                ),
                None => " (model calls change no files)".to_string(),
            };
            Err(UserError::Refused(format!(
                "nothing to {verb}: the runs recorded for {} took no snapshot of the tree{why}; `backstop runs` lists them",
                crate::names::quote_path(tree.root())
            ))
            .into())
        }
        None => Err(UserError::NoRuns(tree.root().to_path_buf()).into()),
    }
}

/// Why a bare undo or redo passed over a newer run: `RUN was rolled back`.
fn passed_over(r: &RunRecord) -> String {
    let what = match r.tree_state() {
        None => "took no snapshot",
        _ if r.snapshot.as_ref().is_some_and(|s| s.changes.is_empty()) => "changed nothing",
        Some("applied") => "is applied",
        Some("rolled-back") => "was rolled back",
        Some("undone") => "is undone",
        _ => "has no changes in the tree",
    };
    format!("{} {what}", r.id)
}

fn action(c: &Change, to: &Manifest) -> &'static str {
    match (to.find(&c.path), &c.before, &c.after) {
        (None, _, _) => "remove",
        (Some(_), None, _) | (Some(_), _, None) => "create",
        (Some(_), _, _) => "restore",
    }
}

fn print_plan(id: &str, verb: &str, chosen: &[Change], to: &Manifest) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{verb} of run {id} would:")?;
    for c in chosen {
        writeln!(
            out,
            "  {:<7} {}  ({:?} {})",
            action(c, to),
            crate::names::quote(&c.path),
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
    chosen: &[Change],
    conflicts: &[crate::names::Name],
    to: &Manifest,
) -> Result<()> {
    let changes: Vec<_> = chosen
        .iter()
        .map(|c| {
            serde_json::json!({
                "path": crate::names::Name(c.path.clone()),
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
