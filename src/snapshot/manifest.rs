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
    /// Named pipes, sockets and device nodes: recorded so a rollback removes those a
    /// run made and re-creates (`mknod`) those it removed; no content.
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl Kind {
    /// The kind of a path with this file type; `None` for none backstop knows.
    pub fn of(t: std::fs::FileType) -> Option<Kind> {
        use std::os::unix::fs::FileTypeExt;
        Some(if t.is_symlink() {
            Kind::Symlink
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_socket() {
            Kind::Socket
        } else if t.is_char_device() {
            Kind::CharDevice
        } else if t.is_block_device() {
            Kind::BlockDevice
        } else {
            return None;
        })
    }

    pub fn is_special(self) -> bool {
        matches!(
            self,
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice
        )
    }
}

/// Who owns a path, and what ties it to others: restored as root (owner, group),
/// used to put hard links back as links (`nlink`, `dev`), and to re-create device
/// nodes (`rdev`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub dev: u64,
    pub rdev: u64,
}

/// The owner of entries from manifests that did not record one: never restored.
pub const UNKNOWN_OWNER: u32 = u32::MAX;

impl Default for Meta {
    fn default() -> Meta {
        Meta {
            uid: UNKNOWN_OWNER,
            gid: UNKNOWN_OWNER,
            nlink: 1,
            dev: 0,
            rdev: 0,
        }
    }
}

impl Meta {
    pub fn of(m: &std::fs::Metadata) -> Meta {
        use std::os::unix::fs::MetadataExt;
        Meta {
            uid: m.uid(),
            gid: m.gid(),
            nlink: u32::try_from(m.nlink()).unwrap_or(u32::MAX),
            dev: m.dev(),
            rdev: m.rdev(),
        }
    }

    fn owner_known(&self) -> bool {
        self.uid != UNKNOWN_OWNER && self.gid != UNKNOWN_OWNER
    }
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
    /// A regular file that was clean in its git checkout: git's blob id, the blob
    /// kept in the store's `git-objects/` (see `git_objects.rs`).
    Git(super::git_objects::BlobId),
}

impl Content {
    /// Content the store keeps (in `objects/` or `git-objects/`).
    pub fn is_kept(&self) -> bool {
        matches!(self, Content::Hash(_) | Content::Git(_))
    }

    pub fn git(&self) -> Option<&super::git_objects::BlobId> {
        match self {
            Content::Git(id) => Some(id),
            _ => None,
        }
    }
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
    pub meta: Meta,
}

impl Entry {
    /// Same type, mode and content: what undo must put back. Times and inodes may differ.
    pub fn same_state(&self, other: &Entry) -> bool {
        self.kind == other.kind
            && self.mode == other.mode
            && self.same_owner(other)
            // A hard link split or made is a change: put back, the names share again.
            && (self.kind != Kind::File || self.meta.nlink == other.meta.nlink)
            && (!matches!(self.kind, Kind::CharDevice | Kind::BlockDevice)
                || self.meta.rdev == other.meta.rdev)
            && match (&self.content, &other.content) {
                (Content::Skipped, _) | (_, Content::Skipped) => {
                    self.size == other.size && self.mtime_ns == other.mtime_ns
                }
                (a, b) => a == b,
            }
    }

    /// Same owner and group, where both entries know them.
    pub fn same_owner(&self, other: &Entry) -> bool {
        !self.meta.owner_known()
            || !other.meta.owner_known()
            || (self.meta.uid == other.meta.uid && self.meta.gid == other.meta.gid)
    }

    /// The hard-link group of a file with more than one name, within one device.
    pub fn link_group(&self) -> Option<(u64, u64)> {
        (self.kind == Kind::File && self.meta.nlink > 1 && self.meta.dev != 0)
            .then_some((self.meta.dev, self.ino))
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

/// Version 2 adds kinds for special files and each entry's [`Meta`]; version 1
/// manifests are still read (owner unknown, one link).
const MAGIC: &[u8; 8] = b"BSMANIF2";
const MAGIC_V1: &[u8; 8] = b"BSMANIF1";

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
                Kind::Fifo => 3,
                Kind::Socket => 4,
                Kind::CharDevice => 5,
                Kind::BlockDevice => 6,
            });
            out.extend_from_slice(&e.mode.to_le_bytes());
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&e.mtime_ns.to_le_bytes());
            out.extend_from_slice(&e.ctime_ns.to_le_bytes());
            out.extend_from_slice(&e.ino.to_le_bytes());
            out.extend_from_slice(&e.meta.uid.to_le_bytes());
            out.extend_from_slice(&e.meta.gid.to_le_bytes());
            out.extend_from_slice(&e.meta.nlink.to_le_bytes());
            out.extend_from_slice(&e.meta.dev.to_le_bytes());
            out.extend_from_slice(&e.meta.rdev.to_le_bytes());
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
                Content::Git(id) => {
                    out.push(4);
                    out.extend_from_slice(id);
                }
            }
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Manifest> {
        Manifest::decode_checked(bytes, true)
    }

    /// How many entries a manifest's first 24 bytes say it has (unchecked: its sum is
    /// at its end), `None` when they are not a manifest's.
    pub fn count_in_head(head: &[u8]) -> Option<u64> {
        let magic = head.get(..8)?;
        if magic != MAGIC && magic != MAGIC_V1 {
            return None;
        }
        Some(u64::from_le_bytes(head.get(16..24)?.try_into().ok()?))
    }

    /// Decodes bytes already checked against their object name (a hash of every
    /// byte, the checksum's included): the checksum is not hashed a second time.
    pub fn decode_named(bytes: &[u8]) -> Result<Manifest> {
        Manifest::decode_checked(bytes, false)
    }

    fn decode_checked(bytes: &[u8], check_sum: bool) -> Result<Manifest> {
        ensure!(
            bytes.len() >= MAGIC.len() + 16 + 32,
            "the manifest is truncated"
        );
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        ensure!(
            !check_sum || blake3::hash(body).as_bytes() == sum,
            "the manifest's checksum does not match"
        );
        let mut r = Reader { bytes: body, at: 0 };
        let magic = r.take(8)?;
        let v2 = magic == MAGIC;
        ensure!(v2 || magic == MAGIC_V1, "not a backstop manifest");
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
                3 if v2 => Kind::Fifo,
                4 if v2 => Kind::Socket,
                5 if v2 => Kind::CharDevice,
                6 if v2 => Kind::BlockDevice,
                k => bail!("unknown entry kind {k}"),
            };
            let mode = r.u32()?;
            let size = r.u64()?;
            let mtime_ns = r.i64()?;
            let ctime_ns = r.i64()?;
            let ino = r.u64()?;
            let meta = if v2 {
                Meta {
                    uid: r.u32()?,
                    gid: r.u32()?,
                    nlink: r.u32()?,
                    dev: r.u64()?,
                    rdev: r.u64()?,
                }
            } else {
                Meta::default()
            };
            let content = match r.u8()? {
                0 => Content::None,
                1 => Content::Hash(r.take(32)?.try_into().expect("32 bytes")),
                2 => {
                    let len = r.u32()? as usize;
                    Content::Link(r.take(len)?.to_vec())
                }
                3 => Content::Skipped,
                4 if v2 => Content::Git(r.take(20)?.try_into().expect("20 bytes")),
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
                meta,
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
            meta: Meta {
                uid: 1000,
                gid: 100,
                nlink: 2,
                dev: 9,
                rdev: 0,
            },
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
