//! Content-addressed objects: each file content stored once, named by its BLAKE3.
//!
//! `objects/ab/cdef…` under the store. An object is written to `objects/tmp/`, then
//! renamed into place, so a name always holds its whole content. Objects are shared by
//! every tree and run: identical content is stored once. A batch of writes is made
//! durable at once, by fsyncs for a few objects or one `syncfs` for many.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::manifest::{Hash, hex};

#[derive(Clone, Debug)]
pub struct Objects {
    dir: PathBuf,
}

/// What storing a file found.
#[derive(Debug)]
pub enum Put {
    Stored {
        hash: Hash,
        new: bool,
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
        }
    }

    pub fn path(&self, hash: &Hash) -> PathBuf {
        let h = hex(hash);
        self.dir.join(&h[..2]).join(&h[2..])
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.path(hash).exists()
    }

    fn tmp_dir(&self) -> Result<PathBuf> {
        let tmp = self.dir.join("tmp");
        fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(tmp)
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
        let new = self.settle(tmp, &hash)?;
        Ok(Put::Stored { hash, new })
    }

    /// Stores `bytes` (a manifest) and returns their hash.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Hash, bool)> {
        let hash = *blake3::hash(bytes).as_bytes();
        if self.contains(&hash) {
            return Ok((hash, false));
        }
        let mut tmp = tempfile::Builder::new()
            .prefix("obj-")
            .tempfile_in(self.tmp_dir()?)
            .context("cannot write to the store")?;
        tmp.write_all(bytes).context("cannot write to the store")?;
        let new = self.settle(tmp, &hash)?;
        Ok((hash, new))
    }

    /// Moves a finished temporary file to its name, unless the object is there already.
    fn settle(&self, tmp: tempfile::NamedTempFile, hash: &Hash) -> Result<bool> {
        let dest = self.path(hash);
        if dest.exists() {
            return Ok(false);
        }
        let parent = dest.parent().expect("objects live in a fan-out directory");
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        match tmp.persist_noclobber(&dest) {
            Ok(_) => Ok(true),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e.error).with_context(|| format!("cannot write {}", dest.display())),
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

    /// Makes the objects just written durable: an fsync each for a few, one
    /// `syncfs` of the store's filesystem for many.
    pub fn sync(&self, written: &[Hash]) -> Result<()> {
        const FEW: usize = 64;
        if written.is_empty() {
            return Ok(());
        }
        if written.len() > FEW {
            return sync_filesystem(&self.dir);
        }
        let mut dirs = Vec::new();
        for hash in written {
            let path = self.path(hash);
            File::open(&path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", path.display()))?;
            dirs.extend(path.parent().map(Path::to_path_buf));
        }
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("cannot sync {}", dir.display()))?;
        }
        Ok(())
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
