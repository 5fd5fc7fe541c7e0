//! Content-addressed objects: each file content stored once, named by its BLAKE3.
//!
//! `objects/ab/cdef…` under the store. An object is staged in `objects/tmp/`, made
//! durable, and only then renamed to its name (temp file → fsync → rename → fsync of
//! the directory), so a name always holds its whole content, even after a power loss.
//! A snapshot stages all its objects first and commits them together, with fsyncs for a
//! few or one `syncfs` for many. Objects are shared by every tree and run: identical
//! content is stored once.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::manifest::{Hash, hex};

#[derive(Clone, Debug)]
pub struct Objects {
    dir: PathBuf,
    /// `objects/tmp`, once it is known to exist.
    tmp: std::sync::OnceLock<PathBuf>,
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
    /// `staged` is `None` when the store already had the content.
    Stored { hash: Hash, staged: Option<Staged> },
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
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            ino: m.ino(),
        }
    }
}

impl Objects {
    pub fn new(store: &Path) -> Objects {
        Objects {
            dir: store.join("objects"),
            tmp: std::sync::OnceLock::new(),
        }
    }

    pub fn path(&self, hash: &Hash) -> PathBuf {
        let h = hex(hash);
        self.dir.join(&h[..2]).join(&h[2..])
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.path(hash).exists()
    }

    fn tmp_dir(&self) -> Result<&Path> {
        if let Some(tmp) = self.tmp.get() {
            return Ok(tmp);
        }
        let tmp = self.dir.join("tmp");
        fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(self.tmp.get_or_init(|| tmp))
    }

    /// Copies the file at `path`, which the walk saw as `seen`, into the store.
    pub fn put_file(&self, path: &Path, seen: Stamp) -> Result<Put> {
        let mut src = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let before = Stamp::of(&src.metadata()?);
        if before != seen {
            return Ok(Put::Changed);
        }
        let mut tmp = tempfile::Builder::new()
            .prefix("obj-")
            .tempfile_in(self.tmp_dir()?)
            .context("cannot write to the store")?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            };
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .with_context(|| format!("cannot copy {} into the store", path.display()))?;
        }
        let after = Stamp::of(&src.metadata()?);
        let now = fs::symlink_metadata(path).map(|m| Stamp::of(&m)).ok();
        if after != before || now != Some(before) {
            return Ok(Put::Changed);
        }
        let hash = *hasher.finalize().as_bytes();
        Ok(Put::Stored {
            hash,
            staged: self.keep(tmp, hash)?,
        })
    }

    /// Stages `bytes` (a manifest); `None` when the store has them already.
    pub fn stage_bytes(&self, bytes: &[u8]) -> Result<(Hash, Option<Staged>)> {
        let hash = *blake3::hash(bytes).as_bytes();
        if self.contains(&hash) {
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
                let parent = dest.parent().expect("objects live in a fan-out directory");
                fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
                result = rename_noreplace(&s.tmp, &dest);
            }
            match result {
                Ok(()) => {
                    crate::crash::point("name");
                    named.push(s.hash)
                }
                // The same content is there already: the staged copy goes.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let _ = fs::remove_file(&s.tmp);
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot write {}", dest.display()));
                }
            }
        }
        Ok(named)
    }

    /// Drops staged objects (those already named are not touched).
    pub fn discard(&self, staged: Vec<Staged>) {
        for s in staged {
            let _ = fs::remove_file(&s.tmp);
        }
    }

    pub fn read(&self, hash: &Hash) -> Result<Vec<u8>> {
        let path = self.path(hash);
        fs::read(&path).with_context(|| format!("object {} is missing from the store", hex(hash)))
    }

    pub fn open(&self, hash: &Hash) -> Result<File> {
        File::open(self.path(hash))
            .with_context(|| format!("object {} is missing from the store", hex(hash)))
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
        if let Ok(entries) = fs::read_dir(self.dir.join("tmp")) {
            for e in entries.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// `rename` that fails with `AlreadyExists` rather than replace `to`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let (c_from, c_to) = (
        std::ffi::CString::new(from.as_os_str().as_bytes())?,
        std::ffi::CString::new(to.as_os_str().as_bytes())?,
    );
    // SAFETY: two NUL-terminated paths we own, relative to no directory descriptor.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
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
    // SAFETY: syncfs on a descriptor we own.
    let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
    if rc != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("cannot sync {}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_files(objects: &Objects) -> usize {
        fs::read_dir(objects.dir.join("tmp")).map_or(0, |d| d.count())
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
