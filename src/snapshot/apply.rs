//! Puts paths of a tree into given states, from the object store.
//!
//! The one routine behind rollback, undo, redo and crash recovery. Every step is
//! idempotent — run it twice, or after a crash half-way, and the tree ends the same —
//! so an interrupted plan is finished by running it again. New contents are staged
//! beside their targets and renamed over them; nothing the scope does not cover is
//! ever deleted: a directory that must go but still holds untracked files is kept,
//! and said so.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::manifest::{Content, Entry, Kind};
use super::objects::Objects;
use super::scope::{Ancestors, RootId, ancestors};

/// Make `path` be `to` (absent when `None`).
#[derive(Clone, Debug)]
pub struct Op {
    pub path: Vec<u8>,
    pub to: Option<Entry>,
    /// Another name of the same file in the target state that the put-back leaves as
    /// it is: the path is put back as a hard link to it, as it was.
    pub link: Option<Vec<u8>>,
}

/// What could not be done without touching what the scope does not cover.
#[derive(Debug, Default)]
pub struct Report {
    /// Directories left in place because they hold files outside the scope.
    pub kept: Vec<PathBuf>,
    /// Paths that could not be put back, and why.
    pub failed: Vec<(PathBuf, String)>,
}

impl Report {
    /// Whether every path is as planned (kept directories are as planned: they hold
    /// what the scope never covered).
    pub fn complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// The scope root, held open: every path is written through the directory this
/// descriptor names, so a root renamed or swapped for a symlink during a put-back
/// is never followed. The process works from that directory while the put-back
/// lasts (`fchdir`), and paths are relative to it: resolved through the held inode,
/// at no cost per call (a `/proc/self/fd/N/...` prefix costs a procfs lookup in
/// every syscall). The working directory is given back when the anchor is dropped.
struct Anchor {
    _dir: File,
    /// `.` (the anchored working directory), else `/proc/self/fd/N`, else the root.
    base: PathBuf,
    /// The working directory to go back to.
    back: Option<File>,
}

impl Drop for Anchor {
    fn drop(&mut self) {
        if let Some(back) = &self.back {
            let _ = rustix::process::fchdir(back);
        }
    }
}

/// Opens `root`, checks it, and makes it the working directory for a put-back.
fn enter(root: &Path, id: Option<RootId>) -> Result<Anchor> {
    let dir = anchor(root, id)?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&dir);
    if let Ok(back) = File::open(".")
        && rustix::process::fchdir(&dir).is_ok()
    {
        return Ok(Anchor {
            _dir: dir,
            base: PathBuf::from("."),
            back: Some(back),
        });
    }
    // No working directory to come back to (deleted, unreadable): go through /proc.
    let proc_path = PathBuf::from(format!("/proc/self/fd/{fd}"));
    let base = if fs::metadata(&proc_path).is_ok_and(|m| m.is_dir()) {
        proc_path
    } else {
        root.to_path_buf()
    };
    Ok(Anchor {
        _dir: dir,
        base,
        back: None,
    })
}

/// Opens `root` without following a symlink and checks it is the directory `id` names.
fn anchor(root: &Path, id: Option<RootId>) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(root)
        .map_err(|e| RootChanged {
            root: root.to_path_buf(),
            why: match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                    "it is no longer a directory (a symlink or a file now stands there)".into()
                }
                _ => crate::error::io_message(&e).to_lowercase(),
            },
        })?;
    if let Some(id) = id {
        let now = RootId::of_file(&dir)?;
        if now != id {
            return Err(RootChanged {
                root: root.to_path_buf(),
                why: "it is a different directory now (moved or replaced since the snapshot)"
                    .into(),
            }
            .into());
        }
    }
    Ok(dir)
}

/// Whether `root` is still the directory `id` names (and not a symlink).
pub fn check_root(root: &Path, id: Option<RootId>) -> Result<()> {
    anchor(root, id).map(drop)
}

/// A put-back refused as a whole: its root is not the directory it snapshotted.
#[derive(Debug, thiserror::Error)]
#[error("refusing to write into {}: {why}", root.display())]
pub struct RootChanged {
    pub root: PathBuf,
    pub why: String,
}

/// Puts each path of `ops` into its state, best effort: a path that cannot be put back
/// is listed in the report and the rest go on. Fails as a whole only when `root` is
/// not the directory `id` names.
pub fn apply(
    root: &Path,
    id: Option<RootId>,
    objects: &Objects,
    ops: &[Op],
    parents: &[Entry],
    unstored: &Unstored,
) -> Result<Report> {
    let anchor = enter(root, id)?;
    let base = anchor.base.as_path();
    let mut ops: Vec<&Op> = ops.iter().collect();
    ops.sort_by(|a, b| a.path.cmp(&b.path));
    let abs = |rel: &[u8]| base.join(OsStr::from_bytes(rel));
    let shown = |rel: &[u8]| root.join(OsStr::from_bytes(rel));
    let mut report = Report::default();
    let mut opened = Opened::default();
    let mut links = Links::default();

    // 0. What must not be touched (see `shield`): left, and named.
    let shielded = shield(base, &ops, unstored);
    let ops: Vec<&Op> = ops
        .into_iter()
        .filter(|op| !shielded.iter().any(|(p, _)| under(&op.path, p)))
        .collect();
    for (path, what) in &shielded {
        report.failed.push((
            shown(path),
            format!(
                "left as it is: it is {what}, which the run moved here; backstop never stored it, \
                 so putting the path back would destroy the only copy"
            ),
        ));
    }

    // Staging files a killed put-back left, through the root held open.
    sweep_staging(base, &ops);

    // 1. Remove what must go or change type, children before their parents.
    for op in ops.iter().rev() {
        crate::crash::point("apply");
        match remove_if_needed(base, op, &mut opened) {
            Ok(Removed::Done) => {}
            Ok(Removed::Kept) => report.kept.push(shown(&op.path)),
            Err(e) => report.failed.push((shown(&op.path), format!("{e:#}"))),
        }
    }

    // 2. Create and fill, parents before their children.
    for op in &ops {
        let Some(to) = &op.to else { continue };
        crate::crash::point("apply");
        let path = abs(&op.path);
        match ancestors(base, &op.path) {
            Ok(Ancestors::Blocked) => {
                report.failed.push((
                    shown(&op.path),
                    "a directory above it is now a file or a symlink".into(),
                ));
                continue;
            }
            Err(e) => {
                report.failed.push((shown(&op.path), format!("{e:#}")));
                continue;
            }
            Ok(_) => {}
        }
        let done = opened.retry(base, &op.path, || {
            match to.kind {
                Kind::Dir => ensure_dir(&path),
                Kind::File => match links.source(base, op, to) {
                    Some(existing) => write_hard_link(&existing, &path),
                    None => match &to.content {
                        Content::Hash(h) => {
                            write_file(&path, to, |dst| objects.copy_to(h, to.size, dst))
                        }
                        Content::Git(id) => {
                            write_file(&path, to, |dst| objects.git().copy_to(id, to.size, dst))
                        }
                        _ => Err(io::Error::other(
                            "its content was over the size limit and was not kept",
                        )
                        .into()),
                    },
                },
                Kind::Symlink => match &to.content {
                    Content::Link(target) => write_link(&path, target).map(|()| {
                        let _ = set_mtime(&path, to.mtime_ns);
                    }),
                    _ => Err(io::Error::other("the snapshot has no link target").into()),
                },
                Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => {
                    make_special(&path, to)
                }
            }?;
            set_owner(&path, to)
        });
        if done.is_ok() {
            links.written(to, path);
        }
        if let Err(e) = done {
            report.failed.push((shown(&op.path), format!("{e:#}")));
        }
    }

    // 3. Directory modes and times last (see `settle_dirs`).
    let moded = settle_dirs(base, &ops, parents, &mut report, &shown);
    opened.close(base, &moded, &mut report, &shown);
    Ok(report)
}

/// Step 3: directory modes and times last, so a read-only directory is filled before it
/// closes and no later write moves its time; then the directories that hold what
/// was put back (`parents`, in their target state): their times, and their modes
/// where a put-back — this one, or one killed half-way — opened them (the mode is
/// the target's with u+rwx added, and nothing else changed it: it is not an op).
fn settle_dirs(
    base: &Path,
    ops: &[&Op],
    parents: &[Entry],
    report: &mut Report,
    shown: &dyn Fn(&[u8]) -> PathBuf,
) -> HashSet<Vec<u8>> {
    let mut moded = HashSet::new();
    let mut dirs: Vec<(&Entry, bool)> = ops
        .iter()
        .filter_map(|op| op.to.as_ref().filter(|t| t.kind == Kind::Dir))
        .map(|to| (to, true))
        .collect();
    let planned: HashSet<&[u8]> = ops.iter().map(|op| op.path.as_slice()).collect();
    dirs.extend(
        parents
            .iter()
            .filter(|p| p.kind == Kind::Dir && !planned.contains(p.path.as_slice()))
            .map(|p| (p, false)),
    );
    dirs.sort_by(|a, b| b.0.path.cmp(&a.0.path));
    dirs.dedup_by(|a, b| a.0.path == b.0.path);
    // Directories found real above a path of this step: each is checked once, not
    // once for every directory below it.
    let mut real: HashSet<Vec<u8>> = HashSet::new();
    for (to, planned) in dirs {
        let path = base.join(OsStr::from_bytes(&to.path));
        let above = parent_of(&to.path);
        if !above.is_empty() && !real.contains(above) {
            if ancestors(base, &to.path).ok() != Some(Ancestors::Real) {
                continue;
            }
            let mut prefix = above;
            while !prefix.is_empty() && real.insert(prefix.to_vec()) {
                prefix = parent_of(prefix);
            }
        }
        let Ok(now) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !now.is_dir() {
            continue;
        }
        moded.insert(to.path.clone());
        let current = now.mode() & 0o7777;
        let set_mode = planned || (current != to.mode && current == to.mode | 0o700);
        if set_mode && let Err(e) = fs::set_permissions(&path, fs::Permissions::from_mode(to.mode))
        {
            report
                .failed
                .push((shown(&to.path), crate::error::io_message(&e)));
        }
        let _ = set_mtime(&path, to.mtime_ns);
    }
    moded
}

/// Step 0: the ops' paths that are, by inode, a file or directory backstop never
/// stored — left out of the scope or over the size limit — that the run moved here,
/// with what each was. Deleting or replacing one (or anything under it) would
/// destroy the only copy. Only read here, without checking what stands above: what
/// is found under a swapped directory is shielded, never written through.
fn shield(base: &Path, ops: &[&Op], unstored: &Unstored) -> Vec<(Vec<u8>, String)> {
    let mut shielded: Vec<(Vec<u8>, String)> = Vec::new();
    if unstored.is_empty() {
        return shielded;
    }
    for op in ops {
        if shielded.iter().any(|(p, _)| under(&op.path, p)) {
            continue;
        }
        // A directory is not a file moved here, nor a file a directory: the inode is
        // another's now (a put-back's own files take the numbers a run freed).
        if let Ok(m) = fs::symlink_metadata(base.join(OsStr::from_bytes(&op.path)))
            && let Some(never) = unstored.get(&(m.dev(), m.ino()))
            && never.dir == m.is_dir()
        {
            shielded.push((op.path.clone(), never.what.clone()));
        }
    }
    shielded
}

/// Gives `path` (not what a symlink there points to) the modification time `ns`.
fn set_mtime(path: &Path, ns: i64) -> io::Result<()> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_OMIT, utimensat};
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: ns.div_euclid(1_000_000_000),
            tv_nsec: ns.rem_euclid(1_000_000_000),
        },
    };
    Ok(utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// Inodes (device, inode) of what the scope never stored, and what each was.
pub type Unstored = std::collections::HashMap<(u64, u64), NeverStored>;

/// A file or directory the scope never stored, by its inode in [`Unstored`].
#[derive(Clone, Debug)]
pub struct NeverStored {
    /// Its path then and why it was not stored, for the message.
    pub what: String,
    pub dir: bool,
}

/// Whether `path` is `prefix` or inside it.
fn under(path: &[u8], prefix: &[u8]) -> bool {
    path == prefix || (path.starts_with(prefix) && path.get(prefix.len()) == Some(&b'/'))
}

/// What kind of path stands there now.
fn kind_of(m: &fs::Metadata) -> Option<Kind> {
    Kind::of(m.file_type())
}

/// Re-creates a named pipe, socket or device node (`mknod`; a device needs root).
fn make_special(path: &Path, to: &Entry) -> Result<()> {
    if fs::symlink_metadata(path).is_ok_and(|m| kind_of(&m) == Some(to.kind)) {
        return fs::set_permissions(path, fs::Permissions::from_mode(to.mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()));
    }
    use rustix::fs::{CWD, FileType, Mode, mknodat};
    let kind = match to.kind {
        Kind::Fifo => FileType::Fifo,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharacterDevice,
        _ => FileType::BlockDevice,
    };
    mknodat(
        CWD,
        path,
        kind,
        Mode::from_bits_truncate(to.mode & 0o7777),
        to.meta.rdev,
    )
    .map_err(io::Error::from)
    .with_context(|| format!("cannot re-create {}", path.display()))?;
    // mknod's mode is filtered by the umask: set the recorded one.
    fs::set_permissions(path, fs::Permissions::from_mode(to.mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    let _ = set_mtime(path, to.mtime_ns);
    Ok(())
}

/// Gives a path back its owner and group, when backstop runs as root and the snapshot
/// recorded them. Changing the owner clears set-user-ID bits: the mode is set again.
fn set_owner(path: &Path, to: &Entry) -> Result<()> {
    if !rustix::process::geteuid().is_root() || to.meta.uid == super::manifest::UNKNOWN_OWNER {
        return Ok(());
    }
    let now = fs::symlink_metadata(path)?;
    if now.uid() == to.meta.uid && now.gid() == to.meta.gid {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(to.meta.uid), Some(to.meta.gid))
        .with_context(|| format!("cannot give {} its owner back", path.display()))?;
    if to.kind != Kind::Symlink && to.kind != Kind::Dir {
        fs::set_permissions(path, fs::Permissions::from_mode(to.mode))?;
    }
    Ok(())
}

/// The hard-link groups of a put-back: the first name of a group is written from the
/// store, the others are linked to it (or to a name the put-back leaves alone).
#[derive(Default)]
struct Links {
    written: std::collections::HashMap<(u64, u64), PathBuf>,
}

impl Links {
    fn source(&self, base: &Path, op: &Op, to: &Entry) -> Option<PathBuf> {
        let group = to.link_group()?;
        if let Some(p) = self.written.get(&group) {
            return Some(p.clone());
        }
        let peer = base.join(OsStr::from_bytes(op.link.as_ref()?));
        // Still the very file the snapshot saw under that other name, with the content
        // it had then (a run that wrote through one name changed them all).
        let m = fs::symlink_metadata(&peer).ok()?;
        let same_file = m.is_file() && m.ino() == to.ino && m.dev() == to.meta.dev;
        (same_file && holds(&peer, to)).then_some(peer)
    }

    fn written(&mut self, to: &Entry, path: PathBuf) {
        if let Some(group) = to.link_group() {
            self.written.entry(group).or_insert(path);
        }
    }
}

/// Whether the regular file at `path` holds exactly the content named `hash`.
fn holds(path: &Path, entry: &Entry) -> bool {
    entry.content.is_kept()
        && super::snapshots::content_of_file(path, Some(entry)).is_ok_and(|c| c == entry.content)
}

/// Makes `path` another name of `existing`: linked beside it, renamed over.
fn write_hard_link(existing: &Path, path: &Path) -> Result<()> {
    let (a, b) = (
        fs::symlink_metadata(existing)?,
        fs::symlink_metadata(path).ok(),
    );
    if b.is_some_and(|b| b.ino() == a.ino() && b.dev() == a.dev()) {
        return Ok(());
    }
    let (tmp, _) = stage(path)?;
    fs::hard_link(existing, &tmp)
        .with_context(|| format!("cannot link {} to {}", path.display(), existing.display()))?;
    let renamed = fs::rename(&tmp, path);
    let _ = fs::remove_file(&tmp);
    renamed.with_context(|| format!("cannot replace {}", path.display()))
}

enum Removed {
    Done,
    /// A directory that holds what the scope does not cover.
    Kept,
}

fn remove_if_needed(base: &Path, op: &Op, opened: &mut Opened) -> Result<Removed> {
    let path = base.join(OsStr::from_bytes(&op.path));
    // Under a symlinked or missing directory the path is not in the tree: never
    // follow a link out of it.
    if ancestors(base, &op.path)? != Ancestors::Real {
        return Ok(Removed::Done);
    }
    let current = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removed::Done),
        Err(e) => return Err(e).with_context(|| "cannot read it".to_string()),
    };
    let keep = match &op.to {
        Some(to) => match to.kind {
            Kind::Dir => current.is_dir(),
            Kind::File => current.is_file(),
            // A symlink is replaced by rename below, whatever its target.
            Kind::Symlink => current.file_type().is_symlink(),
            special => kind_of(&current) == Some(special),
        },
        None => false,
    };
    if keep {
        return Ok(Removed::Done);
    }
    let removed = opened.retry(base, &op.path, || {
        let r = if current.is_dir() {
            fs::remove_dir(&path)
        } else {
            fs::remove_file(&path)
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r.map_err(anyhow::Error::from),
        }
    });
    match removed {
        Ok(()) => Ok(Removed::Done),
        Err(e)
            if current.is_dir()
                && e.downcast_ref::<io::Error>()
                    .is_some_and(|e| e.kind() == io::ErrorKind::DirectoryNotEmpty) =>
        {
            Ok(Removed::Kept)
        }
        Err(e) => Err(e.context("cannot remove it")),
    }
}

/// Directories a put-back made writable to change what they hold, with the modes to
/// give back: a run that ends with `chmod 555 dir` must not block its own rollback.
#[derive(Default)]
struct Opened {
    modes: Vec<(Vec<u8>, u32)>,
}

impl Opened {
    /// Runs `f`; if it is refused for want of permission on the directory holding
    /// `rel`, makes that directory writable and runs `f` again.
    fn retry(&mut self, base: &Path, rel: &[u8], mut f: impl FnMut() -> Result<()>) -> Result<()> {
        match f() {
            Err(e) if is_permission(&e) => {
                let parent = parent_of(rel);
                let dir = base.join(OsStr::from_bytes(parent));
                let Ok(m) = fs::symlink_metadata(&dir) else {
                    return Err(e);
                };
                if !m.is_dir() || m.mode() & 0o300 == 0o300 {
                    return Err(e);
                }
                if !self.modes.iter().any(|(p, _)| p == parent) {
                    self.modes.push((parent.to_vec(), m.mode() & 0o7777));
                }
                fs::set_permissions(
                    &dir,
                    fs::Permissions::from_mode((m.mode() & 0o7777) | 0o700),
                )
                .map_err(|_| e)?;
                f()
            }
            r => r,
        }
    }

    /// Gives back the modes of the directories it opened, but those step 3 set.
    fn close(
        self,
        base: &Path,
        moded: &std::collections::HashSet<Vec<u8>>,
        report: &mut Report,
        shown: &dyn Fn(&[u8]) -> PathBuf,
    ) {
        for (rel, mode) in self.modes.into_iter().rev() {
            if moded.contains(&rel) {
                continue;
            }
            let dir = base.join(OsStr::from_bytes(&rel));
            if let Err(e) = fs::set_permissions(&dir, fs::Permissions::from_mode(mode))
                && e.kind() != io::ErrorKind::NotFound
            {
                report
                    .failed
                    .push((shown(&rel), crate::error::io_message(&e)));
            }
        }
    }
}

fn parent_of(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => &rel[..i],
        None => &[],
    }
}

fn is_permission(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied)
    })
}

fn ensure_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => anyhow::bail!("a file is in the way"),
        Err(_) => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::create_dir(path).or_else(|e| if path.is_dir() { Ok(()) } else { Err(e) })?;
            // Writable while it is filled; step 3 sets the recorded mode.
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
            Ok(())
        }
    }
}

/// A staging name beside `path`, in the same directory so the rename is atomic.
fn stage(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let parent = path
        .parent()
        .context("a path in a tree has a parent")?
        .to_path_buf();
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = format!(".backstop-{:016x}.tmp", rand::random::<u64>());
    Ok((parent.join(name), parent))
}

fn write_file(path: &Path, to: &Entry, copy: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let (tmp, _) = stage(path)?;
    let result = (|| -> Result<()> {
        let mut dst =
            File::create_new(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        // Hashed as it is copied: a missing or damaged object is an error here (the
        // caller reports `path` as not restored, with the object), and the staged copy
        // is removed below, so its bytes never reach `path`.
        copy(&mut dst)?;
        dst.set_permissions(fs::Permissions::from_mode(to.mode))?;
        let mtime = if to.mtime_ns >= 0 {
            UNIX_EPOCH + Duration::from_nanos(to.mtime_ns as u64)
        } else {
            UNIX_EPOCH - Duration::from_nanos(to.mtime_ns.unsigned_abs())
        };
        dst.set_times(FileTimes::new().set_modified(mtime))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_link(path: &Path, target: &[u8]) -> Result<()> {
    if fs::read_link(path).is_ok_and(|t| t.as_os_str().as_bytes() == target) {
        return Ok(());
    }
    let (tmp, _) = stage(path)?;
    std::os::unix::fs::symlink(OsStr::from_bytes(target), &tmp)
        .with_context(|| format!("cannot create the link {}", path.display()))?;
    fs::rename(&tmp, path).inspect_err(|_e| {
        let _ = fs::remove_file(&tmp);
    })?;
    Ok(())
}

/// Removes staging files (`.backstop-<16 hex>.tmp`) a killed put-back left beside
/// the paths it was writing.
fn sweep_staging(root: &Path, ops: &[&Op]) {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::snapshot::manifest::Meta;

    /// A put-back works from the root as the process's working directory: one at a time.
    static CWD: Mutex<()> = Mutex::new(());

    const MTIME: i64 = 1_600_000_000_000_000_000;

    struct Fixture {
        tree: tempfile::TempDir,
        _store: tempfile::TempDir,
        objects: Objects,
    }

    impl Fixture {
        fn new() -> Fixture {
            let store = tempfile::tempdir().unwrap();
            Fixture {
                tree: tempfile::tempdir().unwrap(),
                objects: Objects::new(store.path()),
                _store: store,
            }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.tree.path().join(rel)
        }

        /// A file as the run left it: 644 in a 755 directory, whatever the umask.
        fn write(&self, rel: &str, bytes: &str) {
            let path = self.path(rel);
            let parent = path.parent().unwrap();
            fs::create_dir_all(parent).unwrap();
            fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
            fs::write(&path, bytes).unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
        }

        /// A file in the target state, its content in the store.
        fn stored(&self, rel: &str, bytes: &str, mode: u32) -> Op {
            let (hash, staged) = self.objects.stage_bytes(bytes.as_bytes()).unwrap();
            self.objects.commit(staged.into_iter().collect()).unwrap();
            let size = bytes.len() as u64;
            op(
                rel,
                Some(entry(rel, Kind::File, mode, size, Content::Hash(hash))),
            )
        }

        fn apply(&self, ops: &[Op]) -> Report {
            let _one = CWD.lock().unwrap_or_else(|e| e.into_inner());
            let root = self.tree.path();
            apply(root, None, &self.objects, ops, &[], &Unstored::new()).unwrap()
        }

        /// Every path under the root, with its kind, mode and content.
        fn state(&self) -> BTreeMap<String, String> {
            let mut out = BTreeMap::new();
            let mut dirs = vec![self.tree.path().to_path_buf()];
            while let Some(dir) = dirs.pop() {
                for e in fs::read_dir(&dir).unwrap() {
                    let path = e.unwrap().path();
                    let rel = path.strip_prefix(self.tree.path()).unwrap();
                    let m = fs::symlink_metadata(&path).unwrap();
                    let mode = m.mode() & 0o7777;
                    let what = if m.is_dir() {
                        dirs.push(path.clone());
                        format!("dir {mode:o}")
                    } else if m.file_type().is_symlink() {
                        format!("link {}", fs::read_link(&path).unwrap().display())
                    } else {
                        format!("file {mode:o} {}", fs::read_to_string(&path).unwrap())
                    };
                    out.insert(rel.display().to_string(), what);
                }
            }
            out
        }
    }

    fn entry(rel: &str, kind: Kind, mode: u32, size: u64, content: Content) -> Entry {
        Entry {
            path: rel.as_bytes().to_vec(),
            kind,
            mode,
            size,
            mtime_ns: MTIME,
            ctime_ns: MTIME,
            ino: 0,
            content,
            meta: Meta::default(),
        }
    }

    fn op(rel: &str, to: Option<Entry>) -> Op {
        Op {
            path: rel.as_bytes().to_vec(),
            to,
            link: None,
        }
    }

    fn gone(rel: &str) -> Op {
        op(rel, None)
    }

    fn dir(rel: &str, mode: u32) -> Op {
        op(rel, Some(entry(rel, Kind::Dir, mode, 0, Content::None)))
    }

    fn link(rel: &str, target: &str) -> Op {
        let content = Content::Link(target.as_bytes().to_vec());
        op(rel, Some(entry(rel, Kind::Symlink, 0o777, 0, content)))
    }

    fn state_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect()
    }

    /// A path whose inode is one of a file the scope never stored is left as it is (it
    /// may be that file, moved there by the run); a directory with that number is not
    /// that file (the number was freed and taken again, by a put-back's own mkdir),
    /// and is put back as any path is.
    #[test]
    fn only_what_can_be_the_never_stored_file_is_shielded() {
        use std::os::unix::fs::MetadataExt;
        let fx = Fixture::new();
        fx.write("moved.log", "the only copy");
        fs::create_dir(fx.path("made")).unwrap();
        let ino = |rel: &str| {
            let m = fs::symlink_metadata(fx.path(rel)).unwrap();
            (m.dev(), m.ino())
        };
        let never = |what: &str, dir: bool| NeverStored {
            what: what.into(),
            dir,
        };
        let unstored: Unstored = [
            (
                ino("moved.log"),
                never("x.log (left out of the scope)", false),
            ),
            (ino("made"), never("y.log (left out of the scope)", false)),
        ]
        .into_iter()
        .collect();
        let report = {
            let _one = CWD.lock().unwrap_or_else(|e| e.into_inner());
            let ops = [gone("moved.log"), gone("made")];
            apply(fx.tree.path(), None, &fx.objects, &ops, &[], &unstored).unwrap()
        };
        assert_eq!(
            fs::read_to_string(fx.path("moved.log")).unwrap(),
            "the only copy"
        );
        assert!(!fx.path("made").exists(), "{report:?}");
        assert_eq!(report.failed.len(), 1, "{report:?}");

        // A directory the scope never stored is shielded as a directory.
        fs::create_dir(fx.path("moved-dir")).unwrap();
        let unstored: Unstored = [(
            ino("moved-dir"),
            never("cache (left out of the scope)", true),
        )]
        .into_iter()
        .collect();
        let _one = CWD.lock().unwrap_or_else(|e| e.into_inner());
        let report = apply(
            fx.tree.path(),
            None,
            &fx.objects,
            &[gone("moved-dir")],
            &[],
            &unstored,
        )
        .unwrap();
        assert!(fx.path("moved-dir").is_dir(), "{report:?}");
    }

    #[test]
    fn a_put_back_run_twice_leaves_the_same_tree() {
        let fx = Fixture::new();
        fx.write("kept.txt", "changed by the run");
        fx.write("made.txt", "made by the run");
        fx.write("made/x", "made by the run");
        let ops = [
            fx.stored("kept.txt", "original", 0o600),
            gone("made.txt"),
            gone("made"),
            gone("made/x"),
            fx.stored("gone.txt", "back", 0o644),
            dir("dir", 0o750),
            fx.stored("dir/inner", "inner", 0o640),
            link("link", "kept.txt"),
        ];
        let want = state_of(&[
            ("kept.txt", "file 600 original"),
            ("gone.txt", "file 644 back"),
            ("dir", "dir 750"),
            ("dir/inner", "file 640 inner"),
            ("link", "link kept.txt"),
        ]);

        let first = fx.apply(&ops);
        assert!(first.complete() && first.kept.is_empty(), "{first:?}");
        assert_eq!(fx.state(), want);
        let second = fx.apply(&ops);
        assert!(second.complete() && second.kept.is_empty(), "{second:?}");
        assert_eq!(fx.state(), want, "the same tree again");
        let meta = fs::metadata(fx.path("kept.txt")).unwrap();
        assert_eq!(meta.mtime(), MTIME / 1_000_000_000, "the recorded time");
    }

    #[test]
    fn a_directory_to_remove_that_holds_an_unplanned_file_is_kept_and_said() {
        let fx = Fixture::new();
        fx.write("made/planned", "the run's");
        fx.write("made/untracked", "never in the scope");
        let report = fx.apply(&[gone("made"), gone("made/planned")]);
        assert_eq!(report.kept, [fx.path("made")]);
        assert!(report.complete(), "kept is as planned: {report:?}");
        assert_eq!(
            fx.state(),
            state_of(&[
                ("made", "dir 755"),
                ("made/untracked", "file 644 never in the scope")
            ])
        );
    }

    /// Renamed over, never written in place: another name of the old file keeps the old
    /// bytes, a read-only target is no obstacle, and no staging file stays behind (nor
    /// one a killed put-back left).
    #[test]
    fn new_content_is_staged_beside_its_target_and_renamed_over_it() {
        let fx = Fixture::new();
        fx.write("f", "the run's");
        fs::set_permissions(fx.path("f"), fs::Permissions::from_mode(0o444)).unwrap();
        fs::hard_link(fx.path("f"), fx.path("alias")).unwrap();
        fx.write(
            ".backstop-0123456789abcdef.tmp",
            "left by a killed put-back",
        );

        let report = fx.apply(&[fx.stored("f", "the snapshot's", 0o644)]);
        assert!(report.complete(), "{report:?}");
        assert_eq!(
            fx.state(),
            state_of(&[
                ("f", "file 644 the snapshot's"),
                ("alias", "file 444 the run's")
            ])
        );
        let (f, alias) = (fx.path("f"), fx.path("alias"));
        assert_ne!(
            fs::metadata(f).unwrap().ino(),
            fs::metadata(alias).unwrap().ino()
        );
    }

    /// Best effort: a path whose object is missing is reported and left as it was (the
    /// staged copy never reaches it); the other paths are put back.
    #[test]
    fn a_missing_object_fails_its_path_only() {
        let fx = Fixture::new();
        fx.write("a", "the run's a");
        fx.write("b", "the run's b");
        let unstored = entry("a", Kind::File, 0o644, 5, Content::Hash([7; 32]));
        let report = fx.apply(&[op("a", Some(unstored)), fx.stored("b", "b back", 0o644)]);
        let failed: Vec<_> = report.failed.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(failed, [fx.path("a")], "{report:?}");
        assert_eq!(
            fx.state(),
            state_of(&[("a", "file 644 the run's a"), ("b", "file 644 b back")])
        );
    }
}
