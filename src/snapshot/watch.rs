//! A change feed for a run's tree, so that the walk after the command reads only what
//! changed: an inotify watch on every directory a walk reads, added before the
//! directory is listed, and the events since the last walk kept as what to look at
//! again ([`Changed`]).
//!
//! What the feed rests on, and where it is not trusted (a full walk is taken instead):
//! - Every change to a directory entry (create, delete, rename), a file's content
//!   (write, truncate, `fallocate`, a writable descriptor closed, which covers a
//!   shared mapping written through it) or its inode (mode, owner, times, xattrs) is
//!   reported to the watch of the directory holding the name it was made through,
//!   before the system call returns.
//! - A file with another name (`nlink > 1`) may be written through a name outside the
//!   watched directories: such files are always stat'ed again, and so is every name of
//!   a file that got a second name during the run (found through the names made; see
//!   `Made`).
//! - Paths the walk checked without reading their directory (a path the last snapshot
//!   had that the rules now leave out) are always stat'ed again.
//! - Not trusted: a filesystem whose changes need not pass through this kernel's VFS
//!   in a way inotify sees (anything but ext2/3/4, XFS, Btrfs, tmpfs, F2FS, ZFS,
//!   bcachefs, vfat, NTFS), anything mounted inside the tree (a bind mount is reached
//!   by another path), a directory on another device than the root, a mount table that
//!   changed, a queue that overflowed, a watch that could not be added (the user's
//!   `max_user_watches`), the root moved or deleted, a directory made during the run
//!   (no watch saw what was done in it while it was new), a name made during the run
//!   and gone before the walk (a second name of a tree file may have been written
//!   through after it went, by a descriptor or a mapping), a directory moved out of the
//!   watched directories (it may hold such a name, and its watch still reports what is
//!   made there under its old name), anything but the move itself reported by the
//!   watch of a directory moved since a walk last watched it (its events come under
//!   its old name, which another directory may have taken), a directory above a name
//!   made during the run that is no longer a directory (a symlink in its place would
//!   lead the look elsewhere), and a walk while a process the run started is still
//!   alive (it may hold a mapping it writes through).
//! - Not seen, and documented: a hard link made during the run, from a directory no
//!   watch covers (outside the tree, or one the rules leave out), to a file of the tree
//!   that had one name, and written through; a file written through a shared mapping
//!   that a process older than the run made, or one the run had started through a
//!   server older than it (a tmux or screen session, `systemd-run`, a container
//!   engine), which is no descendant of backstop's and outlives the command (a write
//!   through a mapping makes no event; `BACKSTOP_NO_WATCH=1` for such setups); a
//!   file opened by handle
//!   (`open_by_handle_at`, root only) once its name has left the kernel's cache.
//!
//! A background thread reads the queue while the command runs, so that a command that
//! writes many files does not overflow it; every read of the queue is made under one
//! lock, so a walk that takes the events after the command ended has them all.

use std::collections::{HashMap, HashSet};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;

use super::manifest::{Hash, Kind, Manifest};

/// Paths to look at again since the last walk, relative to the root.
#[derive(Debug, Default)]
pub struct Changed {
    /// Paths whose inode or content may have changed: stat'ed again.
    pub names: HashSet<Vec<u8>>,
    /// Directories whose listing may have changed: listed again.
    pub lists: HashSet<Vec<u8>>,
    /// Paths made, removed or moved: whatever is there now is read whole.
    pub deep: HashSet<Vec<u8>>,
    /// Inodes that got another name: their link count and ctime changed with no
    /// event in their own directory, and they may have been written through the new
    /// name (which the rules may leave out). Every name of theirs is stat'ed again.
    pub linked: HashSet<u64>,
}

impl Changed {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.lists.is_empty()
            && self.deep.is_empty()
            && self.linked.is_empty()
    }
}

/// What a walk after the last one needs from the feed.
pub struct Pass {
    /// The manifest of the last walk: what did not change is taken from it.
    pub base: Arc<Manifest>,
    /// ... and its object id.
    pub base_id: Hash,
    pub changed: Changed,
    /// Paths the last walk stat'ed without reading their directory (no watch covers them).
    pub unwatched: HashSet<Vec<u8>>,
    /// Whether a directory the last walk read held a `.gitattributes` (see `Walked`).
    pub attributes: Option<bool>,
}

struct State {
    root: std::path::PathBuf,
    /// Each watch's directory, relative to the root.
    dirs: HashMap<i32, Vec<u8>>,
    /// Watches of directories moved since a walk last watched them: their events come
    /// under a name that may since be another directory's, so any event of theirs but
    /// the move itself makes the next walk read everything.
    moved: HashSet<i32>,
    changed: Changed,
    /// Why events may have been missed since the last walk: the next one reads all.
    lost: Option<&'static str>,
    /// Why the feed is never to be trusted again in this run.
    dead: Option<&'static str>,
    made: Made,
    /// The last walk's result, when it was taken with every directory watched.
    base: Option<Base>,
}

struct Base {
    manifest: Arc<Manifest>,
    id: Hash,
    unwatched: HashSet<Vec<u8>>,
    attributes: Option<bool>,
}

/// The feed of one run's tree.
pub struct Watch {
    /// The inotify descriptor; taken only when the feed is dropped.
    fd: Option<Arc<OwnedFd>>,
    state: Arc<Mutex<State>>,
    /// The mount table as it was when the feed started (its poll says when it changes).
    mounts: Option<OwnedFd>,
    /// Wakes the reader thread to end it.
    stop: Option<OwnedFd>,
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Walks that read only what changed.
    passes: std::sync::atomic::AtomicUsize,
    /// Walks of the whole tree with the feed on (the first among them).
    wholes: std::sync::atomic::AtomicUsize,
}

/// What a directory watch reports.
fn mask() -> WatchFlags {
    WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
        | WatchFlags::ONLYDIR
        | WatchFlags::DONT_FOLLOW
        | WatchFlags::EXCL_UNLINK
}

/// Filesystems whose every change passes through this kernel's VFS (magic numbers
/// from linux/magic.h and the filesystems' own headers).
const LOCAL: [u64; 9] = [
    0xef53,      // ext2, ext3, ext4
    0x5846_5342, // XFS
    0x9123_683e, // Btrfs
    0x0102_1994, // tmpfs
    0xf2f5_2010, // F2FS
    0x2fc1_2fc1, // ZFS
    0xca45_1a4e, // bcachefs
    0x0000_4d44, // vfat (no hard links to miss)
    0x5346_544e, // NTFS (ntfs3)
];

/// Whether anything is mounted below `root` (a bind mount of a file or a directory, or
/// another filesystem): a change through another path to what is mounted there is
/// reported to that path's directory, which no watch of the tree covers. Unknown
/// (no `/proc`) counts as yes.
pub(super) fn mounts_inside(mountinfo: &std::fs::File, root: &Path) -> bool {
    use std::io::Read;
    let mut table = Vec::new();
    if (&*mountinfo).read_to_end(&mut table).is_err() {
        return true;
    }
    let root = root.as_os_str().as_bytes();
    table.split(|b| *b == b'\n').any(|line| {
        let Some(point) = line.split(|b| *b == b' ').nth(4) else {
            return false;
        };
        let point = unescape(point);
        point.len() > root.len()
            && point.starts_with(root)
            && (point[root.len()] == b'/' || root == b"/")
    })
}

/// [`mounts_inside`], from the mount table as it is now.
pub(super) fn mounts_inside_now(root: &Path) -> bool {
    std::fs::File::open("/proc/self/mountinfo").map_or(true, |m| mounts_inside(&m, root))
}

/// A mount point as `/proc/self/mountinfo` writes it (space, tab, newline and backslash
/// as three octal digits after a backslash).
pub(super) fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

fn local(root: &Path) -> bool {
    super::fs_magic(root).is_some_and(|magic| LOCAL.contains(&magic))
}

/// `a/b` from `a` and `b`; `b` from the root and `b`.
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    match dir {
        [] => name.to_vec(),
        _ => [dir, b"/", name].concat(),
    }
}

/// Renames the names below `old` (a directory moved) to below `new`; with `keep`, the
/// names below `old` stay too (the move may have been half of an exchange).
fn rename_under(fresh: &mut HashMap<Vec<u8>, bool>, old: &[u8], new: &[u8], keep: bool) {
    let prefix = [old, b"/"].concat();
    let moved: Vec<Vec<u8>> = fresh
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .cloned()
        .collect();
    for k in moved {
        let is_dir = match keep {
            true => fresh.get(&k).copied(),
            false => fresh.remove(&k),
        };
        if let Some(is_dir) = is_dir {
            fresh.insert([new, &k[old.len()..]].concat(), is_dir);
        }
    }
}

/// The directory holding `path` (the root for a top-level path).
pub fn parent(path: &[u8]) -> &[u8] {
    path.iter()
        .rposition(|b| *b == b'/')
        .map_or(&[][..], |i| &path[..i])
}

impl Watch {
    /// A feed for the tree at `root`, or `None` where it cannot be trusted or made
    /// (then every walk is a full one, as without it).
    pub fn start(root: &Path) -> Option<Watch> {
        if std::env::var_os("BACKSTOP_NO_WATCH").is_some_and(|v| v == "1") || !local(root) {
            return None;
        }
        // Opened once: read now, and polled for a change at every walk.
        let mounts = std::fs::File::open("/proc/self/mountinfo").ok()?;
        if mounts_inside(&mounts, root) {
            return None;
        }
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok()?;
        Some(Watch {
            fd: Some(Arc::new(fd)),
            state: Arc::new(Mutex::new(State {
                root: root.to_path_buf(),
                dirs: HashMap::new(),
                moved: HashSet::new(),
                changed: Changed::default(),
                lost: None,
                dead: None,
                made: Made::default(),
                base: None,
            })),
            mounts: Some(mounts.into()),
            stop: None,
            reader: Mutex::new(None),
            passes: Default::default(),
            wholes: Default::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches the directory `rel` (at `abs`) before a walk lists it. A watch that
    /// cannot be added leaves the feed dead: a later walk must read everything.
    pub fn add(&self, rel: &[u8], abs: &Path) -> bool {
        // Under the lock: the reader drains under it too, so no event of the new watch
        // is read before the watch's directory is known.
        let mut state = self.lock();
        let Some(fd) = self.fd.as_deref() else {
            return false;
        };
        match inotify::add_watch(fd, abs, mask()) {
            Ok(wd) => {
                // Watched again where the walk found it: its events are named right.
                state.moved.remove(&wd);
                state.dirs.insert(wd, rel.to_vec());
                return true;
            }
            // Gone or replaced since its parent was listed: the parent's watch saw that.
            Err(Errno::NOENT | Errno::NOTDIR) => {}
            Err(Errno::NOSPC) => {
                state.dead = Some("the user's inotify watches (max_user_watches) ran out")
            }
            Err(_) => state.dead = Some("a directory could not be watched"),
        }
        false
    }

    /// Starts the thread that reads the queue while the command runs.
    pub fn run_reader(&mut self) {
        if self.stop.is_some() {
            return;
        }
        let Ok(stop) = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        ) else {
            return;
        };
        let Ok(theirs) = stop.try_clone() else {
            return;
        };
        let Some(fd) = self.fd.clone() else {
            return;
        };
        let state = Arc::clone(&self.state);
        let spawned = std::thread::Builder::new()
            .name("backstop-watch".into())
            .stack_size(64 * 1024)
            .spawn(move || read_until_stopped(&fd, &state, &theirs));
        if let Ok(handle) = spawned {
            self.stop = Some(stop);
            *self.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        }
    }

    /// What changed since the last walk, for a walk now; `None` when the feed cannot
    /// tell (the walk must then read everything, and [`Watch::end`] starts it again).
    /// Either way what was noted so far is taken: the walk now accounts for it.
    pub fn begin(&self) -> Option<Pass> {
        let mounts_moved = self.mounts_changed();
        let mut state = self.lock();
        if let Some(fd) = &self.fd {
            drain(fd, &mut state);
        }
        state.look_at_made();
        let changed = std::mem::take(&mut state.changed);
        let lost = state.lost.take();
        if mounts_moved && mounts_inside_now(&state.root) {
            state.dead = Some("a filesystem was mounted inside the tree");
        }
        let base = state.base.take()?;
        if lost.is_some() || state.dead.is_some() || mounts_moved {
            return None;
        }
        Some(Pass {
            base: base.manifest,
            base_id: base.id,
            changed,
            unwatched: base.unwatched,
            attributes: base.attributes,
        })
    }

    /// A walk that began with [`Watch::begin`] has made `manifest`, with every
    /// directory it read watched: the next walk may start from it.
    pub fn end(
        &self,
        (manifest, id): (&Arc<Manifest>, Hash),
        unwatched: HashSet<Vec<u8>>,
        attributes: Option<bool>,
        root_dev: u64,
    ) {
        // A directory on another filesystem: its changes are its own filesystem's.
        let elsewhere = manifest
            .entries
            .iter()
            .any(|e| e.kind == Kind::Dir && e.meta.dev != root_dev);
        let mut state = self.lock();
        if elsewhere {
            state.dead = Some("a directory of the tree is on another filesystem");
        }
        if state.dead.is_some() {
            return;
        }
        state.base = Some(Base {
            manifest: Arc::clone(manifest),
            id,
            unwatched,
            attributes,
        });
    }

    /// The names `paths` hold inodes this process made (a put-back wrote them): no
    /// second names of the tree's files to follow. The events so far are taken first,
    /// so that only what was made until now is let go of. A directory among them is
    /// watched now, before anything else can act in it (no process of the run is left
    /// between attempts): no watch covered it while the put-back made it, and none
    /// would until a walk read it, so a second name the next attempt made there would
    /// go unseen. One that cannot be watched stays made: the next walk reads all.
    /// `paths` come with whether the put-back made a directory there (a watch refuses
    /// anything else: it neither follows a symlink nor takes a file).
    pub fn made_here<'p>(&self, paths: impl Iterator<Item = (&'p [u8], bool)>) {
        let (root, paths) = {
            let mut state = self.lock();
            if let Some(fd) = &self.fd {
                drain(fd, &mut state);
            }
            (state.root.clone(), paths.collect::<Vec<_>>())
        };
        let mut watched: HashSet<&[u8]> = HashSet::new();
        for &(p, dir) in &paths {
            if dir && self.add(p, &root.join(Path::new(std::ffi::OsStr::from_bytes(p)))) {
                watched.insert(p);
            }
        }
        let mut state = self.lock();
        for (p, _) in paths {
            if state.made.fresh.get(p) == Some(&false) || watched.contains(p) {
                state.made.fresh.remove(p);
            }
        }
    }

    /// A walk read only what changed.
    pub fn passed(&self) {
        self.passes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A walk read the whole tree.
    pub fn walked_whole(&self) {
        self.wholes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many walks read the whole tree.
    pub fn wholes(&self) -> usize {
        self.wholes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many walks read only what changed.
    pub fn passes(&self) -> usize {
        self.passes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Why the feed is not used, if it is not (for tests and `--verbose`).
    pub fn dead(&self) -> Option<&'static str> {
        self.lock().dead
    }

    /// Whether the mount table changed since the feed started (a mount over a
    /// directory of the tree would hide a change from every watch).
    fn mounts_changed(&self) -> bool {
        use rustix::event::{PollFd, PollFlags, poll};
        let Some(mounts) = &self.mounts else {
            return true;
        };
        let mut fds = [PollFd::new(mounts, PollFlags::PRI)];
        match poll(&mut fds, Some(&rustix::time::Timespec::default())) {
            Ok(_) => fds[0].revents().intersects(PollFlags::PRI | PollFlags::ERR),
            Err(_) => true,
        }
    }
}

impl Drop for Watch {
    /// Stops the reader and closes the descriptor on a thread of its own. Closing it
    /// waits for the kernel to free every watch (a grace period after the marks are
    /// taken off: 5–25 ms for 6,250 directories, mostly asleep), which the run need not
    /// wait for while it writes its record; the process does not exit before the
    /// close is done. Where no thread can start, it is done here.
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            let _ = rustix::io::write(stop, &1u64.to_ne_bytes());
        }
        let reader = self
            .reader
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let fd = self.fd.take();
        // Where no thread can start, the closure is dropped here, and `fd` with it.
        let _ = std::thread::Builder::new()
            .name("backstop-unwatch".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                // The reader holds the descriptor too: it lets go once it has stopped.
                if let Some(reader) = reader {
                    let _ = reader.join();
                }
                drop(fd);
            });
    }
}

/// The reader thread: waits for events (or `stop`), and reads them under the lock.
fn read_until_stopped(fd: &OwnedFd, state: &Mutex<State>, stop: &OwnedFd) {
    use rustix::event::{PollFd, PollFlags, poll};
    loop {
        let mut fds = [
            PollFd::new(fd, PollFlags::IN),
            PollFd::new(stop, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(_) => return,
        }
        if !fds[1].revents().is_empty() {
            return;
        }
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        drain(fd, &mut state);
    }
}

/// Reads every queued event into `state`. Called only with the lock held, so that
/// no event is between the queue and the state when a walk takes the state.
fn drain(fd: &OwnedFd, state: &mut State) {
    let mut buf = [MaybeUninit::<u8>::uninit(); 16 * 1024];
    let mut reader = inotify::Reader::new(fd.as_fd(), &mut buf);
    loop {
        match reader.next() {
            Ok(event) => {
                let name = event.file_name().map(|n| n.to_bytes().to_vec());
                let ev = (event.wd(), event.events(), event.cookie());
                state.note(ev, name.as_deref());
            }
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => break,
            Err(_) => {
                state.lost = Some("the change feed could not be read");
                break;
            }
        }
    }
}

/// What a rename moved, until the other half of it is read.
struct Moved {
    old: Vec<u8>,
    fresh: Option<bool>,
    keep: bool,
    dir: bool,
}

/// Where the files and directories made since the last walk are. A name made (or moved
/// in from where no watch is) holds a new inode, perhaps a second name of a file of the
/// tree, which the walk must know (see [`Changed::linked`]): it is followed through
/// renames and looked at when the walk begins. One that is gone by then (removed,
/// replaced, moved out) may have been a second name written through (by a descriptor
/// still open after its name went, or a mapping): the walk then reads everything. So
/// does a directory made since the last walk, which no watch covered while it was new.
///
/// An exchange (`renameat2` with `RENAME_EXCHANGE`) is reported as two moves, `a` to
/// `b` and then `b` to `a`, which read one after the other say that what was at `a`
/// went to `b` and came back, when it stayed at `b`. So a move from a name something
/// was moved to since the last walk keeps that name's fresh inodes where they were as
/// well as following them: the walk looks at both, and a name that is then empty
/// makes it read everything, as any fresh name gone does.
#[derive(Default)]
struct Made {
    /// Names holding an inode made since the last walk, and whether it is a directory.
    fresh: HashMap<Vec<u8>, bool>,
    /// A rename's cookie, and what it moved: its old name, whether it was fresh,
    /// whether what was fresh there was kept there too (the move may be half of an
    /// exchange), and whether it was a directory.
    from: HashMap<u32, Moved>,
    /// Names something was moved to since the last walk.
    arrived: HashSet<Vec<u8>>,
}

impl State {
    /// At a walk: the inode of each fresh name that has another name goes to
    /// `changed.linked`. Names gone meanwhile, or moved where no watch is, lose track.
    fn look_at_made(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let made = std::mem::take(&mut self.made);
        // Moved where no watch is, it may still be a second name of a file of the tree.
        if made.from.values().any(|m| m.fresh.is_some()) {
            self.lost = Some("a file made during the run was moved out of the watched tree");
        }
        // A directory moved where no watch is took with it what was made in it, which
        // may be a second name of a file of the tree, and its watch still reports what
        // is made there as if it were in the tree.
        if made.from.values().any(|m| m.dir) {
            self.lost = Some("a directory was moved out of the watched tree");
        }
        // Directories above fresh names that are what they were: a name is looked
        // at through directories only, never through a symlink put in one's place.
        let mut sound: HashSet<&[u8]> = HashSet::new();
        for (name, dir) in &made.fresh {
            if *dir {
                self.lost = Some("a directory was made during the run");
                continue;
            }
            let mut above = parent(name);
            while !above.is_empty() && !sound.contains(above) {
                let path = self
                    .root
                    .join(Path::new(std::ffi::OsStr::from_bytes(above)));
                if !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
                    self.lost = Some("a directory above a file made during the run was replaced");
                    break;
                }
                sound.insert(above);
                above = parent(above);
            }
            let path = self.root.join(Path::new(std::ffi::OsStr::from_bytes(name)));
            match std::fs::symlink_metadata(path) {
                Ok(m) if !m.is_dir() && m.nlink() > 1 => {
                    self.changed.linked.insert(m.ino());
                }
                Ok(_) => {}
                Err(_) => self.lost = Some("a file made during the run is gone"),
            }
        }
    }

    /// Follows what is made, moved or removed by its names.
    fn follow_made(&mut self, flags: ReadFlags, cookie: u32, path: &[u8]) {
        let dir = flags.contains(ReadFlags::ISDIR);
        let made = &mut self.made;
        let mut gone = false;
        if flags.contains(ReadFlags::MOVED_FROM) {
            // The second half of an exchange moves from a name the first half moved
            // to: what is fresh here may not have left.
            let keep = made.arrived.contains(path);
            let fresh = match keep {
                true => made.fresh.get(path).copied(),
                false => made.fresh.remove(path),
            };
            let moved = Moved {
                old: path.to_vec(),
                fresh,
                keep,
                dir,
            };
            made.from.insert(cookie, moved);
            // Its watch, and those below it, now report under names that may become
            // another directory's.
            if dir {
                let below = |rel: &[u8]| {
                    rel == path || (rel.starts_with(path) && rel.get(path.len()) == Some(&b'/'))
                };
                for (wd, rel) in &self.dirs {
                    if below(rel) {
                        self.moved.insert(*wd);
                    }
                }
            }
        }
        let made = &mut self.made;
        if flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO) {
            // What was here (a rename over it) is gone unseen, and so is anything made
            // below a directory that was here (it left with no event naming it).
            let prefix = [path, b"/"].concat();
            gone |=
                made.fresh.contains_key(path) || made.fresh.keys().any(|k| k.starts_with(&prefix));
            let fresh = match flags.contains(ReadFlags::MOVED_TO) {
                true => match made.from.remove(&cookie) {
                    Some(Moved {
                        old,
                        fresh,
                        keep,
                        dir: _,
                    }) => {
                        // What was made inside a directory moved is under its new name.
                        if dir {
                            rename_under(&mut made.fresh, &old, path, keep);
                        }
                        fresh
                    }
                    // From where no watch is: perhaps a second name made there.
                    None => Some(dir),
                },
                false => Some(dir),
            };
            match fresh {
                Some(is_dir) => made.fresh.insert(path.to_vec(), is_dir),
                None => made.fresh.remove(path),
            };
            if flags.contains(ReadFlags::MOVED_TO) {
                made.arrived.insert(path.to_vec());
            }
        }
        if flags.contains(ReadFlags::DELETE) {
            gone |= made.fresh.remove(path).is_some();
        }
        if gone {
            self.lost = Some("a file made during the run was removed or replaced");
        }
    }

    fn note(&mut self, (wd, flags, cookie): (i32, ReadFlags, u32), name: Option<&[u8]>) {
        if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
            self.lost = Some("the change feed's queue overflowed");
            return;
        }
        if flags.contains(ReadFlags::UNMOUNT) {
            self.dead = Some("a filesystem under the tree was unmounted");
            return;
        }
        let Some(dir) = self.dirs.get(&wd).cloned() else {
            return;
        };
        // A directory moved since it was watched: its own move is known (its old
        // parent's event named it); anything else it reports may be misnamed.
        if self.moved.contains(&wd) && !(name.is_none() && flags.contains(ReadFlags::MOVE_SELF)) {
            self.lost = Some("a directory moved during the run changed");
        }
        let structural = ReadFlags::CREATE
            | ReadFlags::DELETE
            | ReadFlags::MOVED_FROM
            | ReadFlags::MOVED_TO
            | ReadFlags::DELETE_SELF
            | ReadFlags::MOVE_SELF
            | ReadFlags::IGNORED;
        match name {
            Some(name) => {
                let path = join(&dir, name);
                self.follow_made(flags, cookie, &path);
                if flags.intersects(structural) {
                    self.changed.lists.insert(dir);
                    self.changed.deep.insert(path);
                } else {
                    self.changed.names.insert(path);
                }
            }
            // The directory itself.
            None if flags.intersects(structural) => {
                if dir.is_empty() {
                    self.dead = Some("the tree's root was moved or removed");
                    return;
                }
                // Gone: its watch is too. Moved: its events still come under the old
                // name until a walk of its new place watches it there (so any of them
                // makes the walk read all: see `moved`).
                if flags.intersects(ReadFlags::DELETE_SELF | ReadFlags::IGNORED) {
                    self.dirs.remove(&wd);
                }
                self.changed.lists.insert(parent(&dir).to_vec());
                self.changed.deep.insert(dir);
            }
            None => {
                // Its mode may now keep a walk out, as a whole walk would find: it
                // is listed again, not only stat'ed. (Only a directory a walk read
                // has a watch of its own: never one the rules leave out.)
                if flags.contains(ReadFlags::ATTRIB) {
                    self.changed.lists.insert(dir.clone());
                }
                self.changed.names.insert(dir);
            }
        }
    }
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
