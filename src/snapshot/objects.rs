//! Content-addressed objects: each file content stored once, named by its BLAKE3.
//!
//! `objects/ab/cdef…` under the store. An object is staged in `objects/tmp/`, made
//! durable, and only then renamed to its name (temp file → fsync → rename → fsync of
//! the directory), so a name always holds its whole content, even after a power loss.
//! A snapshot stages all its objects first and commits them together, with fsyncs for a
//! few or one `syncfs` for many. Objects are shared by every tree and run: identical
//! content is stored once.
//!
//! A name is never trusted blindly: every read for a put-back hashes what it reads and
//! refuses contents that do not match their name, and a fresh read of the same content
//! replaces a damaged object instead of deduplicating against it.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::manifest::{Hash, hex};
use crate::store::layout;

#[derive(Clone, Debug)]
pub struct Objects {
    dir: PathBuf,
    /// Where damaged objects are moved (`fsck --repair`).
    quarantine: PathBuf,
    /// `objects/tmp`, once it is known to exist.
    tmp: std::sync::OnceLock<PathBuf>,
    /// Objects this process found named already and hashed once: a duplicate of them
    /// is not hashed again (a tree of many identical files costs one check each).
    checked: Arc<Mutex<HashSet<Hash>>>,
    /// The git blobs the store keeps by linking (`git-objects/`).
    git: Arc<super::git_objects::GitObjects>,
}

/// An object that cannot be used: what a put-back reports instead of writing it.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error("object {} is missing from the store ({})", hex(.hash), .path.display())]
    Missing { hash: Hash, path: PathBuf },
    #[error(
        "object {} in the store is damaged: its contents no longer match its name ({})",
        hex(.hash),
        .path.display()
    )]
    Damaged { hash: Hash, path: PathBuf },
}

/// What checking one object found.
#[derive(Debug)]
pub enum Check {
    Sound,
    Missing,
    Damaged,
    /// It is there but cannot be read (permissions, I/O error).
    Unreadable(String),
}

/// An object written to `objects/tmp/` that has no name yet: [`Objects::commit`]
/// names it, [`Objects::discard`] drops it.
#[derive(Debug)]
pub struct Staged {
    hash: Hash,
    tmp: PathBuf,
}

/// What storing a file found.
#[derive(Debug)]
pub enum Put {
    /// `staged` is `None` when the store already had the content; `blob` is git's id
    /// of the content, when it was asked for.
    Stored {
        hash: Hash,
        staged: Option<Staged>,
        blob: Option<super::git_objects::BlobId>,
    },
    /// The file changed while it was read: read it again.
    Changed,
}

/// The metadata that says a file has not changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
}

impl Stamp {
    pub fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            size: m.size(),
            mtime_ns: Stamp::ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: Stamp::ns(m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
        }
    }

    /// A time as nanoseconds since the epoch; one past what an `i64` holds (after the
    /// year 2262, or before 1677) saturates rather than wrapping or panicking.
    pub fn ns(secs: i64, nsecs: i64) -> i64 {
        secs.saturating_mul(1_000_000_000).saturating_add(nsecs)
    }
}

impl Objects {
    pub fn new(store: &Path) -> Objects {
        Objects {
            dir: layout::objects_dir(store),
            quarantine: layout::quarantine_dir(store),
            tmp: std::sync::OnceLock::new(),
            checked: Arc::default(),
            git: Arc::new(super::git_objects::GitObjects::new(store)),
        }
    }

    /// The git blobs the store keeps, beside its own objects.
    pub fn git(&self) -> &super::git_objects::GitObjects {
        &self.git
    }

    /// The same, to hand to another thread.
    pub fn git_shared(&self) -> Arc<super::git_objects::GitObjects> {
        Arc::clone(&self.git)
    }

    /// The store's `objects/` directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, hash: &Hash) -> PathBuf {
        layout::object_file(&self.dir, &hex(hash))
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.path(hash).exists()
    }

    fn tmp_dir(&self) -> Result<&Path> {
        if let Some(tmp) = self.tmp.get() {
            return Ok(tmp);
        }
        let tmp = layout::staging_dir(&self.dir);
        fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(self.tmp.get_or_init(|| tmp))
    }

    /// Copies the file open as `src` (at `path`), which the walk saw as `seen`, into
    /// the store; with `git`, git's blob id of its content is computed in the same
    /// read. `now` stats the path again once it is read: the file must still be there.
    pub fn put_file(
        &self,
        mut src: File,
        path: &Path,
        seen: Stamp,
        git: bool,
        now: impl FnOnce() -> Option<Stamp>,
    ) -> Result<Put> {
        let before = Stamp::of(&src.metadata()?);
        if before != seen {
            return Ok(Put::Changed);
        }
        let mut tmp = tempfile::Builder::new()
            .prefix("obj-")
            .tempfile_in(self.tmp_dir()?)
            .context("cannot write to the store")?;
        let mut hasher = blake3::Hasher::new();
        let mut blob = git.then(|| super::git_objects::BlobHasher::new(seen.size));
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            hasher.update(&buf[..n]);
            if let Some(b) = &mut blob {
                b.update(&buf[..n]);
            }
            tmp.write_all(&buf[..n])
                .with_context(|| format!("cannot copy {} into the store", path.display()))?;
        }
        let after = Stamp::of(&src.metadata()?);
        if after != before || now() != Some(before) {
            return Ok(Put::Changed);
        }
        let hash = *hasher.finalize().as_bytes();
        Ok(Put::Stored {
            hash,
            staged: self.keep(tmp, hash)?,
            blob: blob.and_then(super::git_objects::BlobHasher::finish),
        })
    }

    /// Stages `bytes` (a manifest); `None` when the store has them already.
    pub fn stage_bytes(&self, bytes: &[u8]) -> Result<(Hash, Option<Staged>)> {
        let hash = *blake3::hash(bytes).as_bytes();
        // A manifest named already is reused only if it is sound; a damaged one is
        // staged again, and naming replaces it.
        if self.contains(&hash) && matches!(self.check(&hash), Check::Sound) {
            return Ok((hash, None));
        }
        let mut tmp = tempfile::Builder::new()
            .prefix("obj-")
            .tempfile_in(self.tmp_dir()?)
            .context("cannot write to the store")?;
        tmp.write_all(bytes).context("cannot write to the store")?;
        Ok((hash, self.keep(tmp, hash)?))
    }

    /// Keeps a written temporary file for [`Objects::commit`]; content the store has
    /// already is found there, when naming it fails with `AlreadyExists`.
    fn keep(&self, tmp: tempfile::NamedTempFile, hash: Hash) -> Result<Option<Staged>> {
        let tmp = tmp
            .into_temp_path()
            .keep()
            .context("cannot keep a staged object")?;
        Ok(Some(Staged { hash, tmp }))
    }

    /// Makes staged objects durable, then names them, then makes the names durable.
    /// Returns the objects this added. On an error, nothing it staged or named is left.
    pub fn commit(&self, staged: Vec<Staged>) -> Result<Vec<Hash>> {
        const FEW: usize = 64;
        if staged.is_empty() {
            return Ok(Vec::new());
        }
        let many = staged.len() > FEW;
        let mut named = Vec::new();
        let result = (|| -> Result<()> {
            if many {
                sync_filesystem(&self.dir)?;
            } else {
                for s in &staged {
                    File::open(&s.tmp)
                        .and_then(|f| f.sync_all())
                        .with_context(|| format!("cannot sync {}", s.tmp.display()))?;
                }
            }
            // Naming is one renameat2(RENAME_NOREPLACE) per object, on a few threads:
            // it never replaces an object, and says whether this one is new.
            let threads = if many { 4 } else { 1 };
            let chunk = staged.len().div_ceil(threads);
            let results: Vec<Result<Vec<Hash>>> = std::thread::scope(|scope| {
                let workers: Vec<_> = staged
                    .chunks(chunk)
                    .map(|part| scope.spawn(move || self.name_all(part)))
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().expect("naming thread panicked"))
                    .collect()
            });
            let mut failure = None;
            for r in results {
                match r {
                    Ok(hashes) => named.extend(hashes),
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            let mut dirs: Vec<PathBuf> = named
                .iter()
                .filter_map(|h| self.path(h).parent().map(Path::to_path_buf))
                .collect();
            if many {
                sync_filesystem(&self.dir)
            } else {
                dirs.sort();
                dirs.dedup();
                for dir in dirs {
                    File::open(&dir)
                        .and_then(|d| d.sync_all())
                        .with_context(|| format!("cannot sync {}", dir.display()))?;
                }
                Ok(())
            }
        })();
        match result {
            // Every staged file is named now, or was removed as a duplicate.
            Ok(()) => Ok(named),
            Err(e) => {
                self.discard(staged);
                for hash in &named {
                    self.remove(hash);
                }
                Err(e)
            }
        }
    }

    /// Names each staged object; returns those that were new.
    fn name_all(&self, staged: &[Staged]) -> Result<Vec<Hash>> {
        let mut named = Vec::new();
        for s in staged {
            let dest = self.path(&s.hash);
            let mut result = rename_noreplace(&s.tmp, &dest);
            if result
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
            {
                let parent = layout::fan_dir(&self.dir, usize::from(s.hash[0]));
                fs::create_dir_all(&parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
                result = rename_noreplace(&s.tmp, &dest);
            }
            match result {
                Ok(()) => {
                    crate::crash::point("name");
                    named.push(s.hash)
                }
                // The name is taken: the staged copy goes if what holds the name is
                // sound, else it replaces the damaged object (a fresh read repairs).
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if self.existing_is_sound(s, &dest) {
                        let _ = fs::remove_file(&s.tmp);
                    } else {
                        fs::rename(&s.tmp, &dest).with_context(|| {
                            format!("cannot replace the damaged object {}", dest.display())
                        })?;
                        named.push(s.hash);
                    }
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot write {}", dest.display()));
                }
            }
        }
        Ok(named)
    }

    /// Whether the object at `dest` holds what `staged` holds: the sizes first (one
    /// stat), then its hash, once per object and process.
    fn existing_is_sound(&self, staged: &Staged, dest: &Path) -> bool {
        let size = |p: &Path| fs::metadata(p).map(|m| m.len()).ok();
        if size(&staged.tmp) != size(dest) {
            return false;
        }
        if self.checked.lock().is_ok_and(|c| c.contains(&staged.hash)) {
            return true;
        }
        let sound = matches!(self.check(&staged.hash), Check::Sound);
        if sound && let Ok(mut c) = self.checked.lock() {
            c.insert(staged.hash);
        }
        sound
    }

    /// Re-hashes one object.
    pub fn check(&self, hash: &Hash) -> Check {
        let mut file = match open_object(&self.path(hash)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Check::Missing,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Check::Damaged,
            Err(e) => return Check::Unreadable(crate::error::io_message(&e)),
        };
        // A buffer for the object's length, not 256 KiB: a run checks its small
        // rules object every time, and clearing a large buffer costs page faults.
        let size = file.metadata().map_or(256 * 1024, |m| m.len());
        match copy_hashing_sized(&mut file, &mut io::sink(), size) {
            Ok(h) if h == *hash => Check::Sound,
            Ok(_) => Check::Damaged,
            Err(e) => Check::Unreadable(crate::error::io_message(&e)),
        }
    }

    /// Copies an object of `size` bytes into `dst`, hashing as it goes; an object whose
    /// contents do not match its name is an [`Unusable::Damaged`] error (what was
    /// copied must then be thrown away). At most `size + 1` bytes are read, so an
    /// object grown huge cannot fill the disk it is copied to.
    pub fn copy_to(&self, hash: &Hash, size: u64, dst: &mut impl Write) -> Result<()> {
        let path = self.path(hash);
        let src = match open_object(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Unusable::Missing { hash: *hash, path }.into());
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Unusable::Damaged { hash: *hash, path }.into());
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        // An object holds exactly the file's bytes: another length is damage, found
        // without reading it; the right length is read and no further (`take` answers
        // the last read itself).
        if src.metadata().map(|m| m.len()).ok() != Some(size) {
            return Err(Unusable::Damaged { hash: *hash, path }.into());
        }
        let got = copy_hashing_sized(&mut src.take(size), dst, size)
            .with_context(|| format!("cannot copy object {}", hex(hash)))?;
        if got != *hash {
            return Err(Unusable::Damaged { hash: *hash, path }.into());
        }
        Ok(())
    }

    /// Which of `hashes` have no object: one directory listing per fan-out directory
    /// they fall in, rather than a stat per object.
    pub fn missing<'h>(&self, hashes: impl IntoIterator<Item = &'h Hash>) -> Result<Vec<Hash>> {
        let mut by_fan: Vec<Vec<&Hash>> = vec![Vec::new(); 256];
        for h in hashes {
            by_fan[usize::from(h[0])].push(h);
        }
        let mut missing = Vec::new();
        for (fan, wanted) in by_fan.iter().enumerate() {
            if wanted.is_empty() {
                continue;
            }
            let dir = layout::fan_dir(&self.dir, fan);
            // A few are cheaper to stat than a large directory is to list.
            if wanted.len() <= 4 {
                for h in wanted {
                    match fs::symlink_metadata(self.path(h)) {
                        Ok(m) if m.is_file() => {}
                        Ok(_) => missing.push(**h),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(**h),
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("cannot read {}", dir.display()));
                        }
                    }
                }
                continue;
            }
            let entries = match fs::read_dir(&dir) {
                Ok(d) => d,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing.extend(wanted.iter().map(|h| **h));
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
            };
            let mut present: HashSet<[u8; 31]> = HashSet::with_capacity(wanted.len());
            for e in entries {
                let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
                if let Some(rest) = parse_rest(e.file_name().as_encoded_bytes()) {
                    present.insert(rest);
                }
            }
            for h in wanted {
                let mut rest = [0u8; 31];
                rest.copy_from_slice(&h[1..]);
                if !present.contains(&rest) {
                    missing.push(**h);
                }
            }
        }
        Ok(missing)
    }

    /// Which of `hashes` (all named by the manifest `of`) have no object, like
    /// [`Objects::missing`], but skipping every fan-out directory that has not changed
    /// since a check found all of `of`'s objects there ([`Objects::remember_present`]):
    /// removing a file changes its directory's mtime and ctime. A directory whose times
    /// are not older than the filesystem's clock when the check was noted is listed
    /// again: a removal in the same clock tick could leave its times as they were.
    pub fn missing_since<'h>(
        &self,
        of: Option<Hash>,
        hashes: impl IntoIterator<Item = &'h Hash>,
    ) -> Result<Vec<Hash>> {
        // No object to look for (a tree of directories only, an empty one): neither the
        // notes nor 256 directories' stamps are worth reading.
        let hashes: Vec<&Hash> = hashes.into_iter().collect();
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let known = of.and_then(|id| self.presence().into_iter().find(|p| p.id == id));
        let Some(known) = known else {
            return self.missing(hashes);
        };
        let now = self.fan_stamps(&fans_of(hashes.iter().copied()));
        let trusted = |fan: usize| {
            let (then, now) = (known.stamps[fan], now[fan]);
            then != DirStamp::default()
                && then == now
                && then.mtime_ns < known.at_ns
                && then.ctime_ns < known.at_ns
        };
        self.missing(hashes.into_iter().filter(|h| !trusted(usize::from(h[0]))))
    }

    /// Notes that every object of the manifest `id` (`hashes`) is present now, with
    /// the stamps of the fan-out directories they are in, for
    /// [`Objects::missing_since`]. Only a cache: a failure to write it costs a
    /// directory listing next time, nothing else. A manifest that names no object (an
    /// empty tree) needs no note: nothing of it is ever looked for.
    pub fn remember_present<'h>(&self, id: Hash, hashes: impl IntoIterator<Item = &'h Hash>) {
        let fans = fans_of(hashes);
        if !fans.contains(&true) {
            return;
        }
        // The stamps first, then the filesystem's own clock: a directory whose times
        // are older than that tick cannot change again without its times changing.
        let stamps = self.fan_stamps(&fans);
        let mut all = self.presence();
        // Already the newest note, every directory as it was then and older than it: the
        // note stands as it is, and an unchanged snapshot writes nothing here.
        if all.first().is_some_and(|p| p.still_says(id, &stamps)) {
            return;
        }
        let Ok(at_ns) = self.fs_clock() else {
            return;
        };
        let entry = Presence { id, at_ns, stamps };
        all.retain(|p| p.id != id);
        all.insert(0, entry);
        all.truncate(PRESENCE_KEPT);
        let mut bytes = Vec::with_capacity(8 + all.len() * PRESENCE_LEN);
        bytes.extend_from_slice(PRESENCE_MAGIC);
        for p in &all {
            bytes.extend_from_slice(&p.id);
            bytes.extend_from_slice(&p.at_ns.to_le_bytes());
            for s in &p.stamps {
                bytes.extend_from_slice(&s.ino.to_le_bytes());
                bytes.extend_from_slice(&s.mtime_ns.to_le_bytes());
                bytes.extend_from_slice(&s.ctime_ns.to_le_bytes());
            }
        }
        let _ = crate::store::write_atomic(
            &layout::presence_file(&self.dir),
            &bytes,
            crate::store::Durability::Atomic,
        );
    }

    /// The manifests last found whole, newest first; nothing when the file is unreadable.
    fn presence(&self) -> Vec<Presence> {
        let Ok(bytes) = fs::read(layout::presence_file(&self.dir)) else {
            return Vec::new();
        };
        let Some(body) = bytes.strip_prefix(PRESENCE_MAGIC.as_slice()) else {
            return Vec::new();
        };
        let int = |b: &[u8]| i64::from_le_bytes(b.try_into().unwrap_or_default());
        body.chunks_exact(PRESENCE_LEN)
            .map(|c| {
                let mut stamps = [DirStamp::default(); 256];
                for (k, s) in c[40..].chunks_exact(24).enumerate() {
                    stamps[k] = DirStamp {
                        ino: int(&s[..8]) as u64,
                        mtime_ns: int(&s[8..16]),
                        ctime_ns: int(&s[16..]),
                    };
                }
                Presence {
                    id: c[..32].try_into().unwrap_or_default(),
                    at_ns: int(&c[32..40]),
                    stamps,
                }
            })
            .collect()
    }

    /// The time the store's filesystem gives a change now (its coarse clock, which
    /// may differ from the system's: an NFS server's), read back from `objects/clock`
    /// after setting its times to "now".
    fn fs_clock(&self) -> io::Result<i64> {
        let clock = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(layout::presence_clock(&self.dir))?;
        let now = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        };
        rustix::fs::futimens(
            &clock,
            &rustix::fs::Timestamps {
                last_access: now,
                last_modification: now,
            },
        )?;
        let m = clock.metadata()?;
        Ok(m.mtime() * 1_000_000_000 + m.mtime_nsec())
    }

    /// The inode and times of each fan-out directory in `fans` (zero where it does not
    /// exist, and for the others): a store that has held many trees has all 256, and
    /// a run stats only those its own objects are in (never none: a snapshot with no
    /// object to check or note returns before).
    /// One listing of `objects/`, then a stat of each such directory it holds (by the
    /// listing's directory handle): a young store has few of the 256, and a lookup of a
    /// missing name is not cached on every filesystem (tmpfs forgets it at once).
    /// A directory made after the listing reads as missing, as a stat before its
    /// `mkdir` would: it is listed in full next time, never trusted.
    fn fan_stamps(&self, fans: &[bool; 256]) -> [DirStamp; 256] {
        let mut out = [DirStamp::default(); 256];
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let Some(fan) = fan_of(entry.file_name().as_encoded_bytes()).filter(|f| fans[*f])
            else {
                continue;
            };
            // `DirEntry::metadata` does not follow a symlink, as `symlink_metadata` did.
            if let Ok(m) = entry.metadata() {
                let s = Stamp::of(&m);
                out[fan] = DirStamp {
                    ino: s.ino,
                    mtime_ns: s.mtime_ns,
                    ctime_ns: s.ctime_ns,
                };
            }
        }
        out
    }

    /// Re-creates the object `hash` from the file at `path` if it holds that content
    /// now (read, hashed, kept only on a match). Replaces a damaged object of that name.
    pub fn restore_from(&self, path: &Path, hash: &Hash) -> Result<bool> {
        // O_NONBLOCK: a FIFO where the file was must not hang the repair.
        let mut src = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if !src.metadata().is_ok_and(|m| m.is_file()) {
            return Ok(false);
        }
        let mut tmp = tempfile::Builder::new()
            .prefix("obj-")
            .tempfile_in(self.tmp_dir()?)
            .context("cannot write to the store")?;
        let got = copy_hashing(&mut src, &mut tmp)
            .with_context(|| format!("cannot copy {} into the store", path.display()))?;
        if got != *hash {
            return Ok(false);
        }
        tmp.as_file()
            .sync_all()
            .context("cannot sync a staged object")?;
        let dest = self.path(hash);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        tmp.persist(&dest)
            .with_context(|| format!("cannot write {}", dest.display()))?;
        if let Some(parent) = dest.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("cannot sync {}", parent.display()))?;
        }
        Ok(true)
    }

    /// Moves a damaged object to `<store>/quarantine/`, out of every reader's way but
    /// kept for a human to look at. Returns where it went.
    pub fn quarantine(&self, hash: &Hash) -> Result<PathBuf> {
        let dir = &self.quarantine;
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let to = dir.join(format!("{}-{:08x}", hex(hash), rand::random::<u32>()));
        let from = self.path(hash);
        fs::rename(&from, &to)
            .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        Ok(to)
    }

    /// Files left in `objects/tmp/` (by a killed backstop, or one staging now).
    pub fn staging_files(&self) -> Vec<PathBuf> {
        fs::read_dir(layout::staging_dir(&self.dir))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Drops staged objects (those already named are not touched).
    pub fn discard(&self, staged: Vec<Staged>) {
        for s in staged {
            let _ = fs::remove_file(&s.tmp);
        }
    }

    /// An object's bytes, checked against its name.
    pub fn read(&self, hash: &Hash) -> Result<Vec<u8>> {
        self.read_named(hash, |f| {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            let sum = *blake3::hash(&bytes).as_bytes();
            Ok((bytes, sum))
        })
    }

    /// The manifest stored as `hash`, decoded as it is read (see
    /// [`super::manifest::Manifest::decode_stream`]) and trusted only once every byte
    /// of the file matched the name; decoding need not check the manifest's own
    /// checksum then.
    pub fn manifest(&self, hash: &Hash) -> Result<super::manifest::Manifest> {
        self.read_named(hash, |f| {
            let len = f.metadata()?.len();
            super::manifest::Manifest::decode_stream(f, len)
        })?
    }

    /// What `read` makes of the object `hash`'s file, with the BLAKE3 of every byte it
    /// read, taken only when that is the name: gone is [`Unusable::Missing`]; not a
    /// plain file, or other bytes, [`Unusable::Damaged`].
    fn read_named<T>(
        &self,
        hash: &Hash,
        read: impl FnOnce(&mut File) -> io::Result<(T, Hash)>,
    ) -> Result<T> {
        let path = self.path(hash);
        match open_object(&path).and_then(|mut f| read(&mut f)) {
            Ok((got, sum)) if sum == *hash => Ok(got),
            Ok(_) => Err(Unusable::Damaged { hash: *hash, path }.into()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Unusable::Missing { hash: *hash, path }.into())
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                Err(Unusable::Damaged { hash: *hash, path }.into())
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The first `n` bytes of an object (fewer if it is shorter), unchecked.
    pub fn head(&self, hash: &Hash, n: usize) -> io::Result<Vec<u8>> {
        let mut head = Vec::with_capacity(n);
        open_object(&self.path(hash))?
            .take(n as u64)
            .read_to_end(&mut head)?;
        Ok(head)
    }

    pub fn remove(&self, hash: &Hash) {
        let _ = fs::remove_file(self.path(hash));
    }

    /// Every object's hash (for gc).
    pub fn list(&self) -> Result<Vec<Hash>> {
        let mut out = Vec::new();
        let Ok(fan) = fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for d in fan {
            let d = d?;
            let prefix = d.file_name().to_string_lossy().into_owned();
            if prefix.len() != 2 || !d.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(d.path())? {
                let name = f?.file_name().to_string_lossy().into_owned();
                if let Ok(h) = super::manifest::parse_hex(&format!("{prefix}{name}")) {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }

    /// Removes temporary files left by a killed backstop.
    pub fn clear_tmp(&self) {
        if let Ok(entries) = fs::read_dir(layout::staging_dir(&self.dir)) {
            for e in entries.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// `objects/present` holds which manifests were last found with all their objects, and
/// the fan-out directories' stamps then (see [`Objects::missing_since`]).
const PRESENCE_MAGIC: &[u8; 8] = b"BSPRES01";
/// Manifest id, time, 256 stamps of 24 bytes.
const PRESENCE_LEN: usize = 32 + 8 + 256 * 24;
/// One per tree snapshotted lately is enough: a stat cache is one manifest per tree.
const PRESENCE_KEPT: usize = 16;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DirStamp {
    ino: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

struct Presence {
    id: Hash,
    at_ns: i64,
    stamps: [DirStamp; 256],
}

impl Presence {
    /// Whether a new note of `id` with `stamps` would trust no directory this one does
    /// not: the same manifest, the same stamps, each older than this note's clock (a
    /// later clock adds nothing then). Rewriting `objects/present` on every snapshot of
    /// an unchanged tree is a new file each time, for nothing.
    fn still_says(&self, id: Hash, stamps: &[DirStamp; 256]) -> bool {
        self.id == id
            && self.stamps == *stamps
            && stamps.iter().all(|s| {
                *s == DirStamp::default() || (s.mtime_ns < self.at_ns && s.ctime_ns < self.at_ns)
            })
    }
}

/// The fan-out directories objects of these hashes are in.
fn fans_of<'h>(hashes: impl IntoIterator<Item = &'h Hash>) -> [bool; 256] {
    let mut fans = [false; 256];
    for h in hashes {
        fans[usize::from(h[0])] = true;
    }
    fans
}

/// The fan-out directory a name in `objects/` is: two lowercase hex digits, as
/// [`layout::fan_dir`] spells it.
fn fan_of(name: &[u8]) -> Option<usize> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(usize::from(b - b'0')),
        b'a'..=b'f' => Some(usize::from(b - b'a' + 10)),
        _ => None,
    };
    match name {
        [hi, lo] => Some(digit(*hi)? * 16 + digit(*lo)?),
        _ => None,
    }
}

/// Opens an object for reading (see [`crate::store::open_plain`]).
fn open_object(path: &Path) -> io::Result<File> {
    crate::store::open_plain(path, "an object")
}

/// Copies `src` to `dst` and returns the BLAKE3 of what went through.
fn copy_hashing(src: &mut impl Read, dst: &mut impl Write) -> io::Result<Hash> {
    copy_hashing_sized(src, dst, 256 * 1024)
}

/// [`copy_hashing`] with a buffer for about `expected` bytes: a put-back of a
/// thousand small files would otherwise clear 256 KiB for each.
fn copy_hashing_sized(
    src: &mut impl Read,
    dst: &mut impl Write,
    expected: u64,
) -> io::Result<Hash> {
    let mut hasher = blake3::Hasher::new();
    let len = usize::try_from(expected.saturating_add(1))
        .unwrap_or(usize::MAX)
        .clamp(4096, 256 * 1024);
    let mut buf = vec![0u8; len];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(*hasher.finalize().as_bytes()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
    }
}

/// The last 31 bytes of a hash from an object's file name (62 hex digits).
fn parse_rest(name: &[u8]) -> Option<[u8; 31]> {
    if name.len() != 62 {
        return None;
    }
    let mut out = [0u8; 31];
    for (i, pair) in name.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

/// `rename` that fails with `AlreadyExists` rather than replace `to`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    let Err(e) = renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) else {
        return Ok(());
    };
    let e = io::Error::from(e);
    // A filesystem without RENAME_NOREPLACE: check, then rename (objects are immutable,
    // so a race only replaces a name with the same content).
    if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) {
        if to.exists() {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        return fs::rename(from, to);
    }
    Err(e)
}

/// `syncfs(2)` on the filesystem holding `path`: one call instead of an fsync per file.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    rustix::fs::syncfs(&dir)
        .map_err(io::Error::from)
        .with_context(|| format!("cannot sync {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file dated past 2262 (ext4 keeps times to 2446) has a stamp, the same by
    /// `statx` through its directory as by path: nanoseconds saturate, they do not
    /// overflow (a panic in a debug build, a wrapped time in a release one).
    #[test]
    fn a_file_dated_past_2262_has_a_stamp_and_the_walk_sees_it_as_the_path_does() {
        assert_eq!(Stamp::ns(i64::MAX / 1_000_000_000 + 1, 0), i64::MAX);
        assert_eq!(Stamp::ns(i64::MIN / 1_000_000_000 - 1, 0), i64::MIN);
        assert_eq!(Stamp::ns(1, 5), 1_000_000_005);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("far");
        fs::write(&path, "x").unwrap();
        let year_2400 = rustix::fs::Timespec {
            tv_sec: 13_569_465_600,
            tv_nsec: 0,
        };
        let set = rustix::fs::utimensat(
            rustix::fs::CWD,
            &path,
            &rustix::fs::Timestamps {
                last_access: year_2400,
                last_modification: year_2400,
            },
            rustix::fs::AtFlags::empty(),
        );
        set.unwrap();
        let m = fs::symlink_metadata(&path).unwrap();
        let stamp = Stamp::of(&m);
        // Clamped by the filesystem or kept: either way past what i64 ns holds, or equal.
        assert!(
            stamp.mtime_ns == i64::MAX || m.mtime() < 9_223_372_036,
            "{stamp:?}"
        );
        let fd = rustix::fs::open(
            dir.path(),
            rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let by_fd = super::super::walk::stat_at(&fd, dir.path(), b"far")
            .unwrap()
            .unwrap();
        assert_eq!(by_fd.stamp, stamp);
    }

    fn tmp_files(objects: &Objects) -> usize {
        fs::read_dir(layout::staging_dir(&objects.dir)).map_or(0, |d| d.count())
    }

    /// A manifest is decoded as it is read, and trusted only when every byte of its
    /// file matches its name: one altered in place (its own checksum made to hold
    /// again), cut short, grown, missing or not a file is refused, with the reason
    /// `read` gives.
    #[test]
    fn a_manifest_is_read_only_when_its_file_matches_its_name() {
        use super::super::manifest::{Content, Entry, Kind, Manifest, Meta};
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::new(dir.path());
        let entries = (0..3000)
            .map(|i| Entry {
                path: format!("dir/{i:05}").into_bytes(),
                kind: Kind::File,
                mode: 0o644,
                size: i,
                mtime_ns: 1,
                ctime_ns: 2,
                ino: i,
                content: Content::Hash([3; 32]),
                meta: Meta {
                    uid: 0,
                    gid: 0,
                    nlink: 1,
                    dev: 1,
                    rdev: 0,
                },
            })
            .collect();
        let m = Manifest {
            taken_at_ns: 9,
            entries,
        };
        let bytes = m.encode();
        assert!(bytes.len() > 256 * 1024, "more than one buffer");
        let (id, staged) = objects.stage_bytes(&bytes).unwrap();
        objects.commit(staged.into_iter().collect()).unwrap();
        assert_eq!(objects.manifest(&id).unwrap(), m);

        let path = objects.path(&id);
        let damaged = |e: anyhow::Error| {
            matches!(e.downcast_ref::<Unusable>(), Some(Unusable::Damaged { .. }))
        };
        let mut altered = bytes.clone();
        altered[300_000] ^= 1;
        let body = altered.len() - 32;
        let sum = *blake3::hash(&altered[..body]).as_bytes();
        altered[body..].copy_from_slice(&sum);
        let cases: [(&str, Vec<u8>); 3] = [
            ("altered", altered),
            ("cut short", bytes[..bytes.len() - 1].to_vec()),
            ("grown", [&bytes[..], b"x"].concat()),
        ];
        for (what, content) in cases {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            fs::write(&path, content).unwrap();
            let e = objects.manifest(&id).unwrap_err();
            assert!(damaged(e), "{what}");
        }
        fs::remove_file(&path).unwrap();
        let e = objects.manifest(&id).unwrap_err();
        assert!(matches!(
            e.downcast_ref::<Unusable>(),
            Some(Unusable::Missing { .. })
        ));
        fs::create_dir(&path).unwrap();
        assert!(objects.manifest(&id).is_err(), "a directory in its place");
    }

    #[test]
    fn staged_objects_have_no_name_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::new(dir.path());
        let (a, staged_a) = objects.stage_bytes(b"alpha").unwrap();
        let (b, staged_b) = objects.stage_bytes(b"beta").unwrap();
        assert!(
            !objects.contains(&a) && !objects.contains(&b),
            "staged, not named"
        );
        assert_eq!(tmp_files(&objects), 2);

        let added = objects
            .commit(staged_a.into_iter().chain(staged_b).collect())
            .unwrap();
        assert_eq!(added, [a, b]);
        assert_eq!(objects.read(&a).unwrap(), b"alpha");
        assert_eq!(tmp_files(&objects), 0, "nothing left in tmp");

        let (_, again) = objects.stage_bytes(b"alpha").unwrap();
        assert!(again.is_none(), "content the store has is not staged twice");
    }

    #[test]
    fn a_damaged_object_is_refused_and_a_fresh_copy_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::new(dir.path());
        let (h, staged) = objects.stage_bytes(b"content").unwrap();
        objects.commit(staged.into_iter().collect()).unwrap();
        fs::write(objects.path(&h), b"CONTENT").unwrap();
        assert!(matches!(objects.check(&h), Check::Damaged));
        let mut copy = Vec::new();
        let err = objects.copy_to(&h, 7, &mut copy).unwrap_err();
        assert!(err.downcast_ref::<Unusable>().is_some(), "{err:#}");
        assert!(objects.read(&h).is_err(), "read checks the name too");
        // Staged again (same size, other bytes): naming finds it damaged and replaces it.
        let (_, again) = objects.stage_bytes(b"content").unwrap();
        assert!(
            again.is_some(),
            "a damaged object is not taken as a duplicate"
        );
        objects.commit(again.into_iter().collect()).unwrap();
        assert_eq!(objects.read(&h).unwrap(), b"content");
        assert_eq!(tmp_files(&objects), 0);
    }

    /// A store holding `n` objects, and their hashes.
    fn store_of(n: usize) -> (tempfile::TempDir, Objects, Vec<Hash>) {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::new(dir.path());
        let mut staged = Vec::new();
        let mut hashes = Vec::new();
        for i in 0..n {
            let (h, s) = objects
                .stage_bytes(format!("object {i}").as_bytes())
                .unwrap();
            hashes.push(h);
            staged.extend(s);
        }
        objects.commit(staged).unwrap();
        (dir, objects, hashes)
    }

    #[test]
    fn missing_lists_or_stats_each_fan_out_directory_and_finds_the_gaps() {
        let (_dir, objects, hashes) = store_of(600);
        assert!(objects.missing(&hashes).unwrap().is_empty());
        // Remembered whole: a removal changes its directory, which is listed again.
        objects.remember_present([1; 32], &hashes);
        let gone = [hashes[7], hashes[300]];
        for h in &gone {
            objects.remove(h);
        }
        let mut want = gone.to_vec();
        want.sort();
        for mut found in [
            objects.missing(&hashes).unwrap(),
            objects.missing_since(Some([1; 32]), &hashes).unwrap(),
        ] {
            found.sort();
            assert_eq!(found, want);
        }
    }

    #[test]
    fn a_note_of_present_objects_is_rewritten_only_when_it_would_trust_more() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::new(dir.path());
        let (h, staged) = objects.stage_bytes(b"kept").unwrap();
        objects.commit(staged.into_iter().collect()).unwrap();
        let present = layout::presence_file(&objects.dir);
        let ino = || fs::metadata(&present).unwrap().ino();
        // Noted, and noted again once the filesystem's clock is past the directory's
        // times: until then a new note trusts more (a later clock).
        objects.remember_present([1; 32], [&h]);
        std::thread::sleep(std::time::Duration::from_millis(50));
        objects.remember_present([1; 32], [&h]);
        let noted = ino();
        objects.remember_present([1; 32], [&h]);
        assert_eq!(ino(), noted, "nothing new to note: the file is left alone");
        // Another manifest, or a fan-out directory that changed, is noted again.
        objects.remember_present([2; 32], [&h]);
        assert_ne!(ino(), noted);
        let noted = ino();
        objects.remember_present([2; 32], [&h]);
        assert_eq!(ino(), noted);
        // Another object in the same fan-out directory as `h`.
        let (other, staged) = (0..)
            .map(|i| {
                objects
                    .stage_bytes(format!("another {i}").as_bytes())
                    .unwrap()
            })
            .find(|(o, _)| o[0] == h[0])
            .unwrap();
        objects.commit(staged.into_iter().collect()).unwrap();
        objects.remember_present([2; 32], [&h]);
        assert_ne!(ino(), noted, "a directory changed since the note");
        // And what it notes still finds a gap.
        objects.remove(&h);
        assert_eq!(
            objects.missing_since(Some([2; 32]), [&h, &other]).unwrap(),
            vec![h]
        );
        // Nothing to look for: no listing at all, and nothing missing.
        assert!(objects.missing_since(Some([2; 32]), []).unwrap().is_empty());
    }

    #[test]
    fn a_note_stamps_only_the_fan_out_directories_its_objects_are_in() {
        let (_dir, objects, hashes) = store_of(2000);
        // A manifest of no object (an empty tree) is not noted: nothing of it is ever
        // looked for, and the store's 256 directories are not stat'ed for it.
        objects.remember_present([3; 32], []);
        assert!(objects.presence().is_empty());
        assert!(!layout::presence_file(&objects.dir).exists());
        // One of three objects: only their directories are stamped.
        let mine = [&hashes[0], &hashes[1], &hashes[2]];
        objects.remember_present([4; 32], mine);
        let note = objects.presence().into_iter().next().unwrap();
        for (fan, stamp) in note.stamps.iter().enumerate() {
            let used = mine.iter().any(|h| usize::from(h[0]) == fan);
            assert_eq!(*stamp != DirStamp::default(), used, "fan {fan:02x}");
        }
        // What it stamped is trusted, and a gap in it is still found.
        objects.remove(&hashes[1]);
        assert_eq!(
            objects.missing_since(Some([4; 32]), mine).unwrap(),
            vec![hashes[1]]
        );
    }

    #[test]
    fn fan_out_directories_are_two_lowercase_hex_digits() {
        assert_eq!(fan_of(b"00"), Some(0));
        assert_eq!(fan_of(b"a7"), Some(0xa7));
        assert_eq!(fan_of(b"ff"), Some(255));
        for name in [
            &b"A7"[..],
            b"tmp",
            b"present",
            b"clock",
            b"0",
            b"000",
            b"g0",
        ] {
            assert_eq!(fan_of(name), None, "{:?}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn discarded_objects_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let objects = Objects::new(dir.path());
        let (h, staged) = objects.stage_bytes(b"gone").unwrap();
        objects.discard(staged.into_iter().collect());
        assert!(!objects.contains(&h));
        assert_eq!(tmp_files(&objects), 0);
        assert!(objects.list().unwrap().is_empty());
    }
}
