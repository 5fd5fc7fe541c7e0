//! Layer 3 for a run: the snapshot before it, restores between attempts, the change
//! set after it, and the rollback when it finally fails.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::engine::Checkpoint;
use crate::names::Name;
use crate::policy::{Ignored, Policy};
use crate::record::{ChangeInfo, PutBack, Recorded, SnapshotInfo, TreeState};
use crate::snapshot::apply::Report;
use crate::snapshot::diff::{Change, diff};
use crate::snapshot::journal::{Journal, to_hex};
use crate::snapshot::lock::ObjectsHold;
use crate::snapshot::manifest::{Content, Entry, Manifest, hex};
use crate::snapshot::scope::{RootId, Scope};
use crate::snapshot::snapshots::{Snapshots, display_path};
use crate::snapshot::take::Taken;

/// The scope a policy gives, for a run started in `cwd` with its store at `store_dir`.
pub fn scope_for(policy: &Policy, cwd: &Path, store_dir: &Path) -> Result<Scope> {
    let s = &policy.rollback.scope;
    // By default the whole repository: a run from `src/` that edits `../README.md`
    // is rolled back there too, and runs are listed under that root already.
    let root = match &s.root {
        Some(r) => cwd.join(r),
        None => crate::store::repo_root(cwd),
    };
    let root = root.canonicalize().with_context(|| {
        format!(
            "rollback.scope.root {} is not a directory backstop can read",
            root.display()
        )
    })?;
    anyhow::ensure!(
        root.is_dir(),
        "rollback.scope.root {} is not a directory",
        root.display()
    );
    Ok(Scope {
        root,
        exclude: s.exclude.clone(),
        respect_ignored: s.ignored == Ignored::Respect,
        max_file_size: s.max_file_size.0,
        max_total_size: s.max_total_size.0,
        store: store_path(store_dir),
        rules: None,
        identity: None,
    })
}

/// The store's real path, so a walk leaves it out when it lies inside the scope. It is
/// made first: a store that does not exist yet has no real path, and would otherwise
/// be walked — and rolled back — with the tree it is being written into.
fn store_path(store_dir: &Path) -> Option<std::path::PathBuf> {
    let _ = std::fs::create_dir_all(store_dir);
    store_dir.canonicalize().ok()
}

/// The scope a run recorded, to undo or redo it.
pub fn scope_of(info: &SnapshotInfo, store_dir: &Path) -> Scope {
    Scope {
        root: info.root.clone(),
        exclude: info.exclude.clone(),
        respect_ignored: info.respect_ignored,
        max_file_size: info.max_file_size,
        max_total_size: u64::MAX,
        store: store_path(store_dir),
        rules: None,
        identity: info.root_id,
    }
}

/// A run's snapshots: the tree before it (and at its last checkpoint), and the means
/// to put it back.
pub struct RunSnapshots<'a> {
    pub tree: Snapshots<'a>,
    /// The checkpoint attempts and a failed step go back to.
    pub before: Arc<Manifest>,
    pub before_id: String,
    /// The tree before the whole run (before its first step).
    pub start: Arc<Manifest>,
    pub start_id: String,
    pub run_id: String,
    /// A shared hold on the objects, from a snapshot until the record names it
    /// ([`RunSnapshots::recorded`]): gc cannot sweep a manifest nothing names yet.
    pending: Option<ObjectsHold>,
    /// The root's permission bits when the run started (the manifest holds only what
    /// is under the root).
    root_mode: u32,
}

/// What a put-back must go over: the change set, or — when the state after the run
/// could not be observed or stored — every path that may have changed.
#[derive(Default)]
pub struct Plan {
    pub paths: Vec<Vec<u8>>,
    /// The change set and the after-state's manifest, when it could be stored.
    pub changes: Option<(String, Vec<Change>)>,
    /// Why it could not.
    pub after_error: Option<String>,
    /// The root is not the directory the run started in: nothing will be written.
    pub root_changed: bool,
    /// What the walk for `paths` could not read: whatever is there was not put back.
    pub unread: Vec<String>,
    /// Paths of the change set whose last change came after the command's processes
    /// had all ended ([`Ended`]): someone else's edits, which a put-back leaves as they
    /// are. Not in `paths`.
    pub late: Vec<Vec<u8>>,
}

/// Moves to `late` each path of `paths` that holds a late path and was no directory
/// before (`base`): putting it back would remove it, which it cannot be with the kept
/// path in it. A directory that only changed mode is still put back.
fn keep_holders(base: &Manifest, paths: &mut Vec<Vec<u8>>, late: &mut Vec<Vec<u8>>) {
    if late.is_empty() {
        return;
    }
    // One set of every directory above a late path: a lookup per path, where asking
    // each late path of each changed path was quadratic in a large change set.
    let holders_of_late = holders(late);
    let (holders, rest): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
        std::mem::take(paths).into_iter().partition(|p| {
            base.find(p)
                .is_none_or(|e| e.kind != crate::snapshot::manifest::Kind::Dir)
                && holders_of_late.contains(p.as_slice())
        });
    *paths = rest;
    late.extend(holders);
    late.sort();
}

/// Every directory (relative, `/`-separated) that holds one of `paths`, at any depth.
pub fn holders(paths: &[Vec<u8>]) -> std::collections::HashSet<&[u8]> {
    let mut out = std::collections::HashSet::new();
    for p in paths {
        let mut end = p.len();
        while let Some(i) = p[..end].iter().rposition(|b| *b == b'/') {
            // Its ancestors are in already when this one is.
            if !out.insert(&p[..i]) {
                break;
            }
            end = i;
        }
    }
    out
}

/// The moment after which no process of the run's command was running, as the
/// filesystem's clock tells it (nanoseconds since the epoch). A path whose inode
/// changed later (its ctime) was changed by someone else — the user in an editor
/// while a step waited for approval, say — and a rollback must not take it back.
/// So was one whose last change falls in a quiet window (`quiet`): from the end of
/// one step to the start of the next, while that one waited for its approval.
///
/// A file's ctime comes from the kernel's real-time clock (its coarse tick, which
/// never runs ahead of the fine one this is read from), so whatever the command
/// wrote before it ended has a ctime at or before this moment. That holds only
/// where the kernel that stamps the inode is this one: on a network or FUSE
/// filesystem the server's clock stamps it, and [`Ended::for_root`] gives `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    pub at: i64,
    /// Earlier spans (after, before) in which no process of the command ran: the
    /// start is a step's end as [`Ended::for_root`] read it, the end the coarse clock
    /// read before the next step started ([`step_starts`]), which no ctime the step
    /// gives can be below. A path whose ctime is inside one was last changed there,
    /// by someone else, and no later step changed it again.
    pub quiet: Vec<(i64, i64)>,
    /// No step ran since the last checkpoint was taken (the run stopped at a prompt):
    /// that checkpoint is the tree as the command left it. A path still as it was
    /// there (type, mode, owner, content) is the command's, whatever moved its ctime
    /// since (another name of its inode removed, a chmod and back, an xattr).
    pub settled: bool,
}

impl Ended {
    /// Now, if the inodes under `root` are stamped by this machine's clock and that
    /// clock has not been set back since `start` (NTP stepping it, a hand): a clock
    /// set back would make what the command wrote before look later than its end.
    pub fn for_root(root: &Path, start: &RunClock) -> Option<Ended> {
        if !stamped_here(root) {
            return None;
        }
        let wall = std::time::SystemTime::now();
        let on_wall = wall.duration_since(start.wall).ok()?;
        if on_wall + std::time::Duration::from_secs(1) < start.mono.elapsed() {
            return None;
        }
        let now = wall.duration_since(std::time::UNIX_EPOCH).ok()?;
        Some(Ended {
            at: i64::try_from(now.as_nanos()).unwrap_or(i64::MAX),
            quiet: Vec::new(),
            settled: false,
        })
    }

    /// Waits until the clock that stamps inodes (the kernel's coarse real-time clock,
    /// which the fine one runs ahead of by up to a tick) has passed `at`, so that any
    /// change made from now on gets a ctime after it. Called before anyone else may
    /// act on the tree (a step's prompt): without it, a file the user saved within a
    /// tick of the end (a few milliseconds; a script at the prompt does) could have a
    /// ctime at or below `at`, be judged the command's, and be rolled back. At most
    /// one tick, spent where a person is about to be asked anyway.
    pub fn hand_over(&self) {
        let started = std::time::Instant::now();
        loop {
            let behind = self.at.saturating_sub(step_starts());
            // A tick is 1–10 ms; a clock stepped back leaves `at` ahead for longer,
            // and a rule that waited for it would hang the prompt: such an end is
            // voided by `for_root`'s own check at the next step, not waited out here.
            if behind < 0 || started.elapsed() > std::time::Duration::from_millis(50) {
                return;
            }
            std::thread::sleep(
                std::time::Duration::from_nanos(behind as u64 + 1)
                    .min(std::time::Duration::from_millis(1)),
            );
        }
    }

    /// Whether an inode last changed at `ctime_ns` was changed after this moment, or
    /// inside one of the quiet windows before it.
    pub fn before(&self, ctime_ns: i64) -> bool {
        ctime_ns > self.at
            || self.quiet.iter().any(|&(after, before)| {
                ctime_ns > after && ctime_ns.saturating_add(grain(ctime_ns)) < before
            })
    }
}

/// How far below the moment it stands for a time of `ns` may be, on a filesystem
/// that keeps times coarser than nanoseconds (whole seconds on ext4 with small inodes,
/// two seconds on FAT, 100 ns on NTFS): the kernel rounds a time down to the grain,
/// so a step's first write could get a ctime inside the window before it. Bounded by
/// the time's own round digits: twice the largest power of ten (up to a second) that
/// divides it.
fn grain(ns: i64) -> i64 {
    let mut unit = 1;
    while unit < 1_000_000_000 && ns % (unit * 10) == 0 {
        unit *= 10;
    }
    2 * unit
}

/// The moment a step is about to start, on the clock that stamps inodes: the kernel's
/// coarse real-time clock (a finer reading could be ahead of the ctime the step's first
/// write gets). The end of the quiet window that began when the step before ended.
pub fn step_starts() -> i64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    t.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec)
}

/// The wall clock and the monotonic one, read together when the run started.
pub struct RunClock {
    wall: std::time::SystemTime,
    mono: std::time::Instant,
}

impl RunClock {
    pub fn start() -> RunClock {
        RunClock {
            wall: std::time::SystemTime::now(),
            mono: std::time::Instant::now(),
        }
    }
}

/// Whether the filesystem under `root` takes its inode times from this kernel's
/// clock: not a network filesystem or a FUSE one (whose server stamps them, on a
/// clock that may run ahead), nor one `statfs` cannot name.
fn stamped_here(root: &Path) -> bool {
    // Magic numbers from linux/magic.h and the filesystems' own headers.
    const REMOTE: [u64; 11] = [
        0x6969,      // NFS
        0x517b,      // SMB
        0xff53_4d42, // CIFS
        0xfe53_4d42, // SMB2
        0x6573_5546, // FUSE
        0x00c3_6400, // Ceph
        0x0102_1997, // 9P
        0x5346_414f, // AFS
        0x7372_6672, // AFS (kAFS)
        0x7375_7245, // Coda
        0x0bd0_0bd0, // Lustre
    ];
    crate::snapshot::fs_magic(root).is_some_and(|magic| !REMOTE.contains(&magic))
}

/// Same type, mode, owner and content (or link target): what a put-back would write.
/// Unlike [`Entry::same_state`], the link count does not count: removing another
/// name of a file does not change what this one holds.
fn same_content(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind
        && a.mode == b.mode
        && a.same_owner(b)
        && a.meta.rdev == b.meta.rdev
        && match (&a.content, &b.content) {
            (Content::Skipped, _) | (_, Content::Skipped) => false,
            (x, y) => x == y,
        }
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

impl<'a> RunSnapshots<'a> {
    /// Takes the snapshot before the run and fixes its scope (root identity, ignore
    /// rules) for every later walk. An error here means the command must not run.
    pub fn start(
        mut tree: Snapshots<'a>,
        run_id: &str,
    ) -> Result<(RunSnapshots<'a>, SnapshotInfo)> {
        let identity = RootId::of(&tree.scope.root)?;
        let root_mode = {
            use std::os::unix::fs::MetadataExt;
            std::fs::symlink_metadata(&tree.scope.root)
                .with_context(|| format!("cannot read {}", tree.scope.root.display()))?
                .mode()
                & 0o7777
        };
        tree.scope.identity = Some(identity);
        tree.watch_changes();
        let hold = tree.hold_objects()?;
        let mut taken = tree.snapshot()?;
        let rules = match taken.rules.take() {
            Some(rules) => Some(tree.fix_rules(rules, &hold)?),
            None => None,
        };
        let scope = &tree.scope;
        let info = SnapshotInfo {
            root: scope.root.clone(),
            exclude: scope.exclude.clone(),
            respect_ignored: scope.respect_ignored,
            max_file_size: scope.max_file_size,
            before: hex(&taken.id),
            after: None,
            state: TreeState::Applied,
            changes: Vec::new(),
            skipped: taken.skipped.iter().map(|p| Name(p.clone())).collect(),
            head: crate::snapshot::git::head(&scope.root),
            restores: Vec::new(),
            rules,
            root_id: Some(identity),
            not_restored: Vec::new(),
            after_error: None,
            checkpoints: Vec::new(),
            undone: Vec::new(),
            late: Vec::new(),
            walks: None,
        };
        let manifest = taken.manifest;
        let run_tree = RunSnapshots {
            before_id: hex(&taken.id),
            start_id: hex(&taken.id),
            start: Arc::clone(&manifest),
            before: manifest,
            tree,
            run_id: run_id.into(),
            pending: Some(hold),
            root_mode,
        };
        Ok((run_tree, info))
    }

    /// The change set: the tree now against the snapshot before the run.
    pub fn changes(&self) -> Result<(String, Vec<Change>)> {
        self.check_root()?;
        let after = self.tree.snapshot_after(&self.before, &self.before_id)?;
        Ok(changed_from(&self.before, &self.before_id, &after))
    }

    /// The change set of the whole run: the tree now against its start.
    pub fn changes_since_start(&self) -> Result<(String, Vec<Change>)> {
        self.check_root()?;
        let after = self.tree.snapshot_after(&self.start, &self.start_id)?;
        Ok(changed_from(&self.start, &self.start_id, &after))
    }

    /// What going back to the start (or to the last checkpoint) must go over. Never
    /// fails for want of storing the after-state: rolling back needs only the state
    /// before, so a tree that cannot be snapshotted now is still put back. With
    /// `ended`, a path changed after the command had ended is left out (in `late`).
    pub fn plan(&self, to_start: bool, ended: Option<&Ended>) -> Plan {
        if let Err(e) = self.check_root() {
            let base = if to_start { &self.start } else { &self.before };
            return Plan {
                paths: base.entries.iter().map(|e| e.path.clone()).collect(),
                changes: None,
                after_error: Some(format!("{e:#}")),
                root_changed: true,
                unread: Vec::new(),
                late: Vec::new(),
            };
        }
        let (base, changes) = if to_start {
            (&self.start, self.changes_since_start())
        } else {
            (&self.before, self.changes())
        };
        let late_after = |ctime_ns: i64| ended.is_some_and(|t| t.before(ctime_ns));
        // As the command left it (see [`Ended::settled`]): not someone else's change.
        let as_left = |now: &Entry| {
            ended.is_some_and(|t| t.settled)
                && self
                    .before
                    .find(&now.path)
                    .is_some_and(|then| same_content(then, now))
        };
        match changes {
            Ok((after, changes)) => {
                // A path gone since is put back whatever deleted it: that writes what
                // was there before, and loses nothing.
                let (late, paths): (Vec<&Change>, Vec<&Change>) = changes.iter().partition(|c| {
                    c.after
                        .as_ref()
                        .is_some_and(|e| late_after(e.ctime_ns) && !as_left(e))
                });
                let mut paths: Vec<Vec<u8>> = paths.iter().map(|c| c.path.clone()).collect();
                let late: Vec<Vec<u8>> = late.iter().map(|c| c.path.clone()).collect();
                let mut late = self.stamped_here_only(late, &mut paths);
                keep_holders(base, &mut paths, &mut late);
                Plan {
                    paths,
                    late,
                    changes: Some((after, changes)),
                    after_error: None,
                    root_changed: false,
                    unread: Vec::new(),
                }
            }
            Err(e) => {
                // A directory opened for the walk has a ctime of now: backstop's own
                // change, never a sign of someone else's.
                let opened = self.open_for_walk(base);
                let late_after = |path: &[u8], ctime_ns: i64| {
                    late_after(ctime_ns) && !opened.iter().any(|o| o.as_slice() == path)
                };
                let (mut paths, late, unread) = self.maybe_changed(base, &late_after);
                let mut late = self.stamped_here_only(late, &mut paths);
                keep_holders(base, &mut paths, &mut late);
                Plan {
                    paths,
                    changes: None,
                    after_error: Some(format!("{e:#}")),
                    root_changed: false,
                    unread,
                    late,
                }
            }
        }
    }

    /// Of the paths judged `late`, those on a filesystem whose inode times come from
    /// this kernel's clock; the others go back to `paths`. The root's filesystem was
    /// checked ([`Ended::for_root`]), but the scope may hold a mount of another (an
    /// NFS or FUSE directory below the root), whose server's clock may run ahead and
    /// make the command's own writes look later than its end.
    fn stamped_here_only(&self, late: Vec<Vec<u8>>, paths: &mut Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        use std::os::unix::fs::MetadataExt;
        let mut by_dev: std::collections::HashMap<u64, bool> = Default::default();
        let mut kept = Vec::new();
        let mut moved = false;
        for rel in late {
            let abs = self.tree.scope.abs(&rel);
            // A directory may be a mount point itself: its own filesystem stamps it.
            // Anything else is stamped by the filesystem of the directory holding it.
            let local = std::fs::symlink_metadata(&abs).is_ok_and(|m| {
                *by_dev.entry(m.dev()).or_insert_with(|| {
                    let at = match abs.parent() {
                        Some(parent) if !m.is_dir() => parent,
                        _ => abs.as_path(),
                    };
                    stamped_here(at)
                })
            });
            if local {
                kept.push(rel);
            } else {
                paths.push(rel);
                moved = true;
            }
        }
        if moved {
            paths.sort();
            paths.dedup();
        }
        kept
    }

    /// Every path of `base` that is not as it was, and every path now in the scope
    /// that it lacks, found by a walk that goes on past what it cannot read; those
    /// whose ctime `late` says is after the command ended apart.
    fn maybe_changed(
        &self,
        base: &Manifest,
        late: &dyn Fn(&[u8], i64) -> bool,
    ) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<String>) {
        let also: Vec<&[u8]> = base.entries.iter().map(|e| e.path.as_slice()).collect();
        let (seen, unread) = self.tree.scope.walk_best_effort(&also);
        let mut paths: Vec<Vec<u8>> = Vec::new();
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let mut present = std::collections::HashSet::new();
        for s in &seen {
            present.insert(s.path.as_slice());
            let same = base.find(&s.path).is_some_and(|e| s.same_stat(e));
            if same {
                continue;
            }
            if late(&s.path, s.stamp.ctime_ns) {
                kept.push(s.path.clone());
            } else {
                paths.push(s.path.clone());
            }
        }
        for e in &base.entries {
            if !present.contains(e.path.as_slice()) {
                paths.push(e.path.clone());
            }
        }
        paths.sort();
        paths.dedup();
        kept.sort();
        (paths, kept, unread)
    }

    /// Makes readable again the root and the directories of `base` that the run made
    /// unreadable (`chmod 000 d`), so the walk before a put-back sees what they hold:
    /// each is an op of the put-back (its mode changed), which gives it its mode back;
    /// the root's mode is given back by [`RunSnapshots::restore_root_mode`]. Returns the
    /// directories it opened.
    fn open_for_walk(&self, base: &Manifest) -> Vec<Vec<u8>> {
        let mut opened = Vec::new();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dirs = std::iter::once(Vec::new()).chain(
            base.entries
                .iter()
                .filter(|e| {
                    e.kind == crate::snapshot::manifest::Kind::Dir && e.mode & 0o500 == 0o500
                })
                .map(|e| e.path.clone()),
        );
        for rel in dirs {
            if crate::snapshot::scope::ancestors(&self.tree.scope.root, &rel).ok()
                != Some(crate::snapshot::scope::Ancestors::Real)
            {
                continue;
            }
            let path = self.tree.scope.abs(&rel);
            if let Ok(m) = std::fs::symlink_metadata(&path)
                && m.is_dir()
                && m.mode() & 0o500 != 0o500
            {
                let _ = std::fs::set_permissions(
                    &path,
                    std::fs::Permissions::from_mode((m.mode() & 0o7777) | 0o700),
                );
                opened.push(rel);
            }
        }
        opened
    }

    /// Gives the root the mode it had when the run started (a run may `chmod 555 .`);
    /// an error names the root.
    pub fn restore_root_mode(&self) -> Option<(std::path::PathBuf, String)> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let root = &self.tree.scope.root;
        let now = std::fs::symlink_metadata(root).ok()?;
        if self.check_root().is_err() || now.mode() & 0o7777 == self.root_mode {
            return None;
        }
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(self.root_mode))
            .err()
            .map(|e| (root.clone(), crate::error::io_message(&e)))
    }

    /// Paths the scope left out when it was fixed (ignored or excluded, never stored)
    /// that are gone now or another file: the run moved or removed them, and no
    /// put-back can bring them back.
    pub fn lost_outside_scope(&self) -> Vec<String> {
        use std::os::unix::fs::MetadataExt;
        let Some(rules) = &self.tree.scope.rules else {
            return Vec::new();
        };
        rules
            .pruned
            .iter()
            .filter(|p| {
                std::fs::symlink_metadata(self.tree.scope.abs(&p.path))
                    .map_or(true, |m| m.ino() != p.ino)
            })
            .map(|p| display_path(&p.path))
            .collect()
    }

    /// Refuses a root that is no longer the directory the run started in: walking it
    /// would read another tree, and putting it back would write there.
    fn check_root(&self) -> Result<()> {
        let now = RootId::of(&self.tree.scope.root).ok();
        if now != self.tree.scope.identity {
            return Err(crate::snapshot::apply::RootChanged {
                root: self.tree.scope.root.clone(),
                why: "it is no longer the directory the run started in (moved or replaced)".into(),
            }
            .into());
        }
        Ok(())
    }

    /// Rolls `plan`'s paths back to the last checkpoint (`to_start`: to the start of
    /// the run); its late paths are left as they are. The journal writes the result
    /// into the record, which must be finished first ([`Recorded`]).
    pub fn roll_back(
        &self,
        plan: &Plan,
        to_start: bool,
        then: TreeState,
        reason: &str,
        _recorded: &Recorded,
    ) -> Result<Report> {
        self.put_back(plan, to_start, PutBack::Rollback, Some(then), reason)
    }

    /// Puts `plan`'s paths back to the last checkpoint (`to_start`: to the start of
    /// the run); its late paths are left as they are, and named in the record.
    fn put_back(
        &self,
        plan: &Plan,
        to_start: bool,
        action: PutBack,
        then: Option<TreeState>,
        reason: &str,
    ) -> Result<Report> {
        let (id, manifest) = if to_start {
            (&self.start_id, &self.start)
        } else {
            (&self.before_id, &self.before)
        };
        let mut journal = Journal::new(&self.run_id, action, id, &plan.paths, then);
        journal.late = plan.late.iter().map(|p| to_hex(p)).collect();
        self.tree.put_back(&journal, manifest, reason)
    }

    /// A new checkpoint: the tree as it is now (before the next step). Returns its
    /// manifest's id, which the run must record before calling [`RunSnapshots::recorded`].
    pub fn checkpoint(&mut self) -> Result<String> {
        self.check_root()?;
        let hold = self.tree.hold_objects()?;
        let taken = self.tree.snapshot_after(&self.before, &self.before_id)?;
        self.before_id = hex(&taken.id);
        self.before = taken.manifest;
        self.pending = Some(hold);
        Ok(self.before_id.clone())
    }

    /// The last snapshot is named in the run's record: gc may run again. Called before
    /// any put-back, which must not wait for the journal while holding the objects.
    pub fn recorded(&mut self) {
        self.pending = None;
    }
}

impl Checkpoint for RunSnapshots<'_> {
    fn restore(&mut self) -> Result<usize> {
        // Between attempts the command is still the run's: nothing is anyone else's.
        let plan = self.plan(false, None);
        if plan.is_empty() {
            return Ok(0);
        }
        let report = self.put_back(
            &plan,
            false,
            PutBack::Restore,
            None,
            "rollback.between_attempts: restore",
        )?;
        report_errors(&report)?;
        Ok(plan.paths.len())
    }
}

/// A put-back that could not do all it should is an error for a run to stop on.
pub fn report_errors(report: &Report) -> Result<()> {
    if let Some((path, why)) = report.failed.first() {
        anyhow::bail!("cannot put back {}: {why}", crate::names::quote_path(path));
    }
    Ok(())
}

pub fn change_infos(changes: &[Change]) -> Vec<ChangeInfo> {
    changes
        .iter()
        .map(|c| ChangeInfo {
            letter: c.letter(),
            path: Name(c.path.clone()),
            detail: c.detail(),
        })
        .collect()
}

/// `after`'s id, and what changed from `before` (stored as `before_id`) to it: nothing
/// when the two are one manifest (a manifest's id is the hash of its bytes), without
/// comparing 100,000 entries to find it.
fn changed_from(before: &Manifest, before_id: &str, after: &Taken) -> (String, Vec<Change>) {
    let id = hex(&after.id);
    let changes = match id == before_id {
        true => Vec::new(),
        false => diff(before, &after.manifest),
    };
    (id, changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::manifest::{Content, Entry, Kind, Meta};

    fn entry(path: &str, kind: Kind) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode: 0o755,
            size: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            ino: 1,
            content: Content::None,
            meta: Meta::default(),
        }
    }

    fn names(paths: &[Vec<u8>]) -> Vec<&str> {
        paths
            .iter()
            .map(|p| std::str::from_utf8(p).unwrap_or("?"))
            .collect()
    }

    #[test]
    fn holders_are_every_directory_above_a_path_and_nothing_else() {
        let paths: Vec<Vec<u8>> = ["a/b/c", "a/b/d", "a/x", "top", "e/f"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let mut got: Vec<&str> = holders(&paths)
            .into_iter()
            .map(|p| std::str::from_utf8(p).unwrap_or("?"))
            .collect();
        got.sort_unstable();
        assert_eq!(got, ["a", "a/b", "e"]);
    }

    #[test]
    fn a_change_at_the_end_is_the_runs_and_one_after_it_is_not() {
        let ended = Ended {
            at: 1_000,
            quiet: vec![(100, 200)],
            settled: false,
        };
        assert!(!ended.before(999));
        assert!(!ended.before(1_000));
        assert!(ended.before(1_001));
        // Inside the window between two steps, not at its edges.
        assert!(!ended.before(100));
        assert!(ended.before(101));
        assert!(ended.before(197));
        // Too close to the next step's start for a time that may be rounded down.
        assert!(!ended.before(199));
        assert!(!ended.before(200));
        // A whole second may stand for any moment of the two seconds after it.
        let ended = Ended {
            at: 100_000_000_000,
            quiet: vec![(10_300_000_000, 11_800_000_000)],
            settled: false,
        };
        assert!(!ended.before(11_000_000_000));
        assert!(ended.before(10_300_000_001));
        assert!(ended.before(11_000_000_001));
    }

    #[test]
    fn a_local_filesystem_gives_the_end_and_a_missing_root_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let start = RunClock::start();
        let ended = Ended::for_root(dir.path(), &start).expect("a local filesystem");
        std::fs::write(dir.path().join("after"), "x").unwrap();
        let m = std::fs::metadata(dir.path().join("after")).unwrap();
        use std::os::unix::fs::MetadataExt;
        // Written after the end was read: a ctime at or after it (coarse ticks may
        // make it equal, never earlier than the tick before).
        assert!(m.ctime() * 1_000_000_000 + m.ctime_nsec() >= ended.at - 20_000_000);
        assert_eq!(Ended::for_root(&dir.path().join("gone"), &start), None);
    }

    /// What a prompt relies on: once the end is handed over, the inode clock is past
    /// it, so a file saved at once (as a script at the prompt does) is judged later.
    /// Without `hand_over`, about one file in 3,000 saved within microseconds of the
    /// end got a ctime at or below it on ext4 (kernel 6.18), and was rolled back.
    #[test]
    fn a_file_saved_at_once_after_the_end_is_handed_over_is_later_than_it() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let start = RunClock::start();
        for i in 0..300 {
            let ended = Ended::for_root(dir.path(), &start).expect("a local filesystem");
            ended.hand_over();
            assert!(step_starts() > ended.at, "the inode clock is past the end");
            let path = dir.path().join(format!("mine-{i}"));
            std::fs::write(&path, "mine\n").unwrap();
            let m = std::fs::metadata(&path).unwrap();
            let ctime = m.ctime() * 1_000_000_000 + m.ctime_nsec();
            assert!(ended.before(ctime), "saved {ctime}, ended {}", ended.at);
        }
    }

    #[test]
    fn a_clock_set_back_since_the_start_judges_nothing_late() {
        let dir = tempfile::tempdir().unwrap();
        let start = RunClock {
            wall: std::time::SystemTime::now() + std::time::Duration::from_secs(60),
            mono: std::time::Instant::now(),
        };
        assert_eq!(Ended::for_root(dir.path(), &start), None);
    }

    #[test]
    fn a_new_directory_holding_a_late_path_is_kept_and_one_that_changed_mode_is_not() {
        let base = Manifest {
            entries: vec![entry("old", Kind::Dir), entry("was-file", Kind::File)],
            ..Manifest::default()
        };
        let mut paths: Vec<Vec<u8>> = ["made", "made/step", "old", "other", "was-file"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let mut late: Vec<Vec<u8>> = ["made/mine", "old/mine", "was-file/mine"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        keep_holders(&base, &mut paths, &mut late);
        assert_eq!(names(&paths), ["made/step", "old", "other"]);
        assert_eq!(
            names(&late),
            ["made", "made/mine", "old/mine", "was-file", "was-file/mine"]
        );
    }
}
