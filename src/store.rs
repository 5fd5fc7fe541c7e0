//! The store: where run records, snapshots and journals live, outside the working tree.
//!
//! `$BACKSTOP_HOME` (or `--store`), else `$XDG_STATE_HOME/backstop`, else
//! `~/.local/state/backstop`. Each repository has a directory of its own, named by a
//! hash of its root path: `trees/<key>/runs/<id>.json` (the whole layout: `layout.rs`).
//! Every file is written to a temporary file beside it, then renamed over: a reader
//! never sees half a file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub mod layout;
mod run_records;

pub use run_records::{Damaged, Listing, MAX_RECORD_BYTES, RunRecords};

pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store named by `--store`, `BACKSTOP_HOME`, or the XDG state directory.
    pub fn locate(explicit: Option<PathBuf>) -> Result<Store> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = explicit
            .or_else(|| env("BACKSTOP_HOME"))
            .or_else(|| env("XDG_STATE_HOME").map(|d| d.join("backstop")))
            .or_else(|| env("HOME").map(|h| h.join(".local/state/backstop")))
            .context("cannot tell where the store is: set BACKSTOP_HOME or HOME")?;
        // Absolute, so no later change of working directory (a put-back works from
        // the tree's root) moves it.
        let dir = if dir.is_relative() {
            std::env::current_dir()
                .context("cannot read the current directory")?
                .join(dir)
        } else {
            dir
        };
        Ok(Store { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The run records of the repository at `root`.
    pub fn records(&self, root: &Path) -> RunRecords {
        RunRecords::open(&layout::records_dir(&self.dir, root), root)
    }
}

/// The root of the repository containing `dir`: the nearest ancestor holding `.git`,
/// else `dir` itself. Its run records are the history `runs`, `undo` and `gc` read.
pub fn repo_root(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(dir)
        .to_path_buf()
}

/// How hard [`write_atomic`] works to keep a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Survives a killed process: readers see the old file or the new one.
    Atomic,
    /// Survives power loss too: the file and its directory are synced.
    Durable,
}

/// temp file in the same directory → write → (fsync) → rename → (fsync the directory).
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    let dir = path.parent().context("a store path has a parent")?;
    if !dir.is_dir() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(layout::TMP_PREFIX)
        .tempfile_in(dir)
        .with_context(|| format!("cannot write to the store at {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| match durability {
            Durability::Durable => tmp.as_file().sync_all(),
            Durability::Atomic => Ok(()),
        })
        .with_context(|| format!("cannot write {}", path.display()))?;
    crate::crash::point("write");
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    crate::crash::point("written");
    if durability == Durability::Durable {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(())
}

/// Opens a file of the store for reading: never through a symlink, never blocking on
/// a FIFO put in its place; anything but a regular file is `InvalidData` (damage), a
/// symlink named as `a symlink, not WHAT`.
pub fn open_plain(path: &Path, what: &str) -> std::io::Result<fs::File> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::new(ErrorKind::InvalidData, format!("a symlink, not {what}"))
            } else {
                e
            }
        })?;
    if !file.metadata()?.is_file() {
        return Err(Error::new(ErrorKind::InvalidData, "not a regular file"));
    }
    Ok(file)
}

/// The whole of a store file opened as [`open_plain`] does, refused past `max` bytes
/// (a file grown past anything backstop writes is damage, not something to hold).
pub fn read_plain(path: &Path, what: &str, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = open_plain(path, what)?;
    if file.metadata()?.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than any {what} ({max} bytes at most)"),
        ));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// A new run id: 12 random hex digits, like a short git hash.
pub fn new_run_id() -> String {
    format!(
        "{:012x}",
        u64::from_ne_bytes(random_bytes()) & 0xffff_ffff_ffff
    )
}

/// `N` bytes from the kernel's random source (`getrandom(2)`), for ids. Asked
/// directly, not through `rand`'s thread generator: seeding that one costs a run
/// more than the ids it draws (a ChaCha key and a probe of the CPU's features, each
/// `cpuid` a trap to the hypervisor on a virtual machine). Falls back to that
/// generator where the call fails (a kernel older than 3.17, a seccomp filter).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    let mut filled = 0;
    while filled < N {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => break,
        }
    }
    if filled < N {
        use rand::RngCore;
        rand::thread_rng().fill_bytes(&mut bytes);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_twelve_hex_digits_and_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_run_id()).collect();
        assert_eq!(ids.len(), 1000, "1,000 ids drawn, some alike");
        for id in &ids {
            assert_eq!(id.len(), 12, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        }
    }

    #[test]
    fn random_bytes_fill_the_whole_buffer() {
        // 1,000 draws of 300 bytes (more than getrandom(2) promises in one call):
        // each byte position is non-zero in some draw.
        let mut seen = [0u8; 300];
        for _ in 0..1000 {
            let drawn: [u8; 300] = random_bytes();
            for (s, d) in seen.iter_mut().zip(drawn) {
                *s |= d;
            }
        }
        assert!(seen.iter().all(|&b| b != 0));
    }
}
