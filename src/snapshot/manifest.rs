//! A manifest: every path in a scope with its type, mode, size, times, inode and
//! content hash or link target, sorted by path bytes (so a directory comes before
//! what it holds).
//!
//! Manifests are stored as objects, in a compact binary form with a checksum: a
//! torn or altered manifest is refused, never half-read.

use anyhow::{Context, Result, bail, ensure};

pub type Hash = [u8; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// What a path holds, beyond its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Directories.
    None,
    /// A regular file's BLAKE3, its bytes kept in the object store.
    Hash(Hash),
    /// A symlink's target, as bytes.
    Link(Vec<u8>),
    /// A file over the size limit: recorded, not kept.
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the scope's root, `/`-separated, any bytes but NUL.
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub content: Content,
}

impl Entry {
    /// Same type, mode and content: what undo must put back. Times and inodes may differ.
    pub fn same_state(&self, other: &Entry) -> bool {
        self.kind == other.kind
            && self.mode == other.mode
            && match (&self.content, &other.content) {
                (Content::Skipped, _) | (_, Content::Skipped) => {
                    self.size == other.size && self.mtime_ns == other.mtime_ns
                }
                (a, b) => a == b,
            }
    }

    /// The metadata the stat cache compares: unchanged means the content is too.
    pub fn same_stat(&self, other: &Entry) -> bool {
        self.kind == other.kind
            && self.mode == other.mode
            && self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ctime_ns == other.ctime_ns
            && self.ino == other.ino
    }

    pub fn hash(&self) -> Option<&Hash> {
        match &self.content {
            Content::Hash(h) => Some(h),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// When the walk started, in nanoseconds since the epoch: entries modified this
    /// recently are racy and are hashed again next time.
    pub taken_at_ns: i64,
    pub entries: Vec<Entry>,
}

const MAGIC: &[u8; 8] = b"BSMANIF1";

impl Manifest {
    pub fn find(&self, path: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.as_slice().cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.entries.len() * 96);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.taken_at_ns.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            out.extend_from_slice(&(e.path.len() as u32).to_le_bytes());
            out.extend_from_slice(&e.path);
            out.push(match e.kind {
                Kind::File => 0,
                Kind::Dir => 1,
                Kind::Symlink => 2,
            });
            out.extend_from_slice(&e.mode.to_le_bytes());
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&e.mtime_ns.to_le_bytes());
            out.extend_from_slice(&e.ctime_ns.to_le_bytes());
            out.extend_from_slice(&e.ino.to_le_bytes());
            match &e.content {
                Content::None => out.push(0),
                Content::Hash(h) => {
                    out.push(1);
                    out.extend_from_slice(h);
                }
                Content::Link(t) => {
                    out.push(2);
                    out.extend_from_slice(&(t.len() as u32).to_le_bytes());
                    out.extend_from_slice(t);
                }
                Content::Skipped => out.push(3),
            }
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Manifest> {
        ensure!(
            bytes.len() >= MAGIC.len() + 16 + 32,
            "the manifest is truncated"
        );
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        ensure!(
            blake3::hash(body).as_bytes() == sum,
            "the manifest's checksum does not match"
        );
        let mut r = Reader { bytes: body, at: 0 };
        ensure!(r.take(8)? == MAGIC, "not a backstop manifest");
        let taken_at_ns = r.i64()?;
        let count = r.u64()?;
        let mut entries = Vec::with_capacity(count.min(1 << 24) as usize);
        for _ in 0..count {
            let len = r.u32()? as usize;
            let path = r.take(len)?.to_vec();
            let kind = match r.u8()? {
                0 => Kind::File,
                1 => Kind::Dir,
                2 => Kind::Symlink,
                k => bail!("unknown entry kind {k}"),
            };
            let mode = r.u32()?;
            let size = r.u64()?;
            let mtime_ns = r.i64()?;
            let ctime_ns = r.i64()?;
            let ino = r.u64()?;
            let content = match r.u8()? {
                0 => Content::None,
                1 => Content::Hash(r.take(32)?.try_into().expect("32 bytes")),
                2 => {
                    let len = r.u32()? as usize;
                    Content::Link(r.take(len)?.to_vec())
                }
                3 => Content::Skipped,
                c => bail!("unknown content tag {c}"),
            };
            entries.push(Entry {
                path,
                kind,
                mode,
                size,
                mtime_ns,
                ctime_ns,
                ino,
                content,
            });
        }
        ensure!(r.at == body.len(), "the manifest has trailing bytes");
        Ok(Manifest {
            taken_at_ns,
            entries,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).context("the manifest is corrupt")?;
        let out = self
            .bytes
            .get(self.at..end)
            .context("the manifest is truncated")?;
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into()?))
    }
}

/// A hash as 64 hex digits.
pub fn hex(hash: &Hash) -> String {
    blake3::Hash::from_bytes(*hash).to_hex().to_string()
}

/// The hash in 64 hex digits.
pub fn parse_hex(s: &str) -> Result<Hash> {
    Ok(*blake3::Hash::from_hex(s)
        .context("not a content hash")?
        .as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &[u8], content: Content) -> Entry {
        Entry {
            path: path.to_vec(),
            kind: match content {
                Content::None => Kind::Dir,
                Content::Link(_) => Kind::Symlink,
                _ => Kind::File,
            },
            mode: 0o644,
            size: 3,
            mtime_ns: -5,
            ctime_ns: 7,
            ino: 42,
            content,
        }
    }

    #[test]
    fn round_trips_every_kind_and_odd_names() {
        let m = Manifest {
            taken_at_ns: 1_700_000_000_000_000_000,
            entries: vec![
                entry(b"a dir", Content::None),
                entry(b"a dir/\xff\nname", Content::Hash([9; 32])),
                entry(b"big", Content::Skipped),
                entry(b"link", Content::Link(b"../x".to_vec())),
            ],
        };
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert_eq!(m.find(b"big").unwrap().content, Content::Skipped);
    }

    #[test]
    fn a_torn_or_altered_manifest_is_refused() {
        let m = Manifest {
            taken_at_ns: 1,
            entries: vec![entry(b"f", Content::Hash([1; 32]))],
        };
        let mut bytes = m.encode();
        assert!(Manifest::decode(&bytes[..bytes.len() - 1]).is_err());
        bytes[20] ^= 1;
        assert!(Manifest::decode(&bytes).is_err());
    }
}
