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

    /// The kind a directory listing gives (`d_type`); `None` when it gives none
    /// (`DT_UNKNOWN`: some filesystems never do), or one backstop does not know.
    pub fn of_listed(t: rustix::fs::FileType) -> Option<Kind> {
        Kind::of_mode(t.as_raw_mode())
    }

    /// [`Kind::of`] for the type bits of an `st_mode`.
    pub fn of_mode(mode: u32) -> Option<Kind> {
        use rustix::fs::FileType as T;
        Some(match T::from_raw_mode(mode) {
            T::Symlink => Kind::Symlink,
            T::Directory => Kind::Dir,
            T::RegularFile => Kind::File,
            T::Fifo => Kind::Fifo,
            T::Socket => Kind::Socket,
            T::CharacterDevice => Kind::CharDevice,
            T::BlockDevice => Kind::BlockDevice,
            T::Unknown => return None,
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

    /// Equal in everything but the path: `==` for two entries already known to share
    /// their path, without comparing it again (a snapshot compares 100,000 of them).
    pub fn equal_but_path(&self, other: &Entry) -> bool {
        // Spelled out, so that a field added to `Entry` cannot be left out here.
        let Entry {
            path: _,
            kind,
            mode,
            size,
            mtime_ns,
            ctime_ns,
            ino,
            content,
            meta,
        } = self;
        *kind == other.kind
            && *mode == other.mode
            && *size == other.size
            && *mtime_ns == other.mtime_ns
            && *ctime_ns == other.ctime_ns
            && *ino == other.ino
            && *meta == other.meta
            && *content == other.content
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
        Manifest::decode_body(&mut Reader { bytes: body, at: 0 })
    }

    /// Decodes the manifest stored in `file` (`len` bytes long) as it is read, a
    /// buffer at a time, rather than from its bytes read whole: a manifest of 100,000
    /// paths is 14 MB that would be read into fresh memory only to be copied out
    /// again. Returns the decoded manifest (or why it is not one) with the BLAKE3 of
    /// every byte of the file, its checksum included, for the caller to check against
    /// the object's name before trusting either; `Err` when the file cannot be read.
    pub fn decode_stream(
        file: &mut impl std::io::Read,
        len: u64,
    ) -> std::io::Result<(Result<Manifest>, Hash)> {
        let mut stream = Stream {
            file,
            hasher: blake3::Hasher::new(),
            // No bigger than the file: a small tree's manifest costs no 256 KiB.
            buf: vec![
                0;
                usize::try_from(len)
                    .unwrap_or(usize::MAX)
                    .clamp(64, STREAM_BUFFER)
            ],
            start: 0,
            end: 0,
            at: 0,
            limit: len.saturating_sub(32),
            io: None,
        };
        let decoded = match len >= (MAGIC.len() + 16 + 32) as u64 {
            true => Manifest::decode_body(&mut stream),
            false => Err(anyhow::anyhow!("the manifest is truncated")),
        };
        // The rest (the checksum, and whatever a damaged file holds past it) is hashed
        // too: the caller checks every byte against the name.
        if let Some(e) = stream.io.take() {
            return Err(e);
        }
        stream.drain()?;
        Ok((decoded, *stream.hasher.finalize().as_bytes()))
    }

    fn decode_body(r: &mut impl Source) -> Result<Manifest> {
        let magic = r.take(8)?;
        let v2 = magic == MAGIC;
        ensure!(v2 || magic == MAGIC_V1, "not a backstop manifest");
        let taken_at_ns = r.i64()?;
        let count = r.u64()?;
        // No more than the bytes left could hold (an entry takes 42 at least): a
        // count of billions in a small file is not allocated for.
        let mut entries = Vec::with_capacity(count.min(r.left() / 42).min(1 << 24) as usize);
        for _ in 0..count {
            let len = r.u32()? as usize;
            let path = r.take(len)?.to_vec();
            // The fields of fixed size after the path, and the content's tag, taken at
            // once: one bounds check for them, not one per field (an entry's fields are
            // most of the time it takes to read a stat cache of 100,000 paths).
            let mut f = Reader {
                bytes: r.take(if v2 { FIXED_V2 } else { FIXED_V1 } + 1)?,
                at: 0,
            };
            let kind = match f.u8()? {
                0 => Kind::File,
                1 => Kind::Dir,
                2 => Kind::Symlink,
                3 if v2 => Kind::Fifo,
                4 if v2 => Kind::Socket,
                5 if v2 => Kind::CharDevice,
                6 if v2 => Kind::BlockDevice,
                k => bail!("unknown entry kind {k}"),
            };
            let mode = f.u32()?;
            let size = f.u64()?;
            let mtime_ns = f.i64()?;
            let ctime_ns = f.i64()?;
            let ino = f.u64()?;
            let meta = if v2 {
                Meta {
                    uid: f.u32()?,
                    gid: f.u32()?,
                    nlink: f.u32()?,
                    dev: f.u64()?,
                    rdev: f.u64()?,
                }
            } else {
                Meta::default()
            };
            let content = match f.u8()? {
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
        ensure!(r.done(), "the manifest has trailing bytes");
        Ok(Manifest {
            taken_at_ns,
            entries,
        })
    }
}

/// The bytes of an entry's fields of fixed size, between its path and its content's
/// tag: kind, mode, size, mtime, ctime, inode; version 2 adds uid, gid, nlink, dev, rdev.
const FIXED_V1: usize = 1 + 4 + 8 + 8 + 8 + 8;
const FIXED_V2: usize = FIXED_V1 + 4 + 4 + 4 + 8 + 8;

/// Where a manifest's body is decoded from: its bytes in memory ([`Reader`]) or a
/// file read as it goes ([`Stream`]).
trait Source {
    /// The next `n` bytes of the body; `Err` past its end.
    fn take(&mut self, n: usize) -> Result<&[u8]>;
    /// Whether the whole body has been taken.
    fn done(&self) -> bool;
    /// How many bytes of the body are left.
    fn left(&self) -> u64;
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

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Source for Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).context("the manifest is corrupt")?;
        let out = self
            .bytes
            .get(self.at..end)
            .context("the manifest is truncated")?;
        self.at = end;
        Ok(out)
    }
    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
    fn left(&self) -> u64 {
        (self.bytes.len() - self.at) as u64
    }
}

/// What [`Manifest::decode_stream`] reads at a time (it grows for a longer field).
const STREAM_BUFFER: usize = 256 * 1024;

/// A manifest's body read from a file a buffer at a time, every byte read hashed.
struct Stream<'f, R> {
    file: &'f mut R,
    hasher: blake3::Hasher,
    buf: Vec<u8>,
    /// The bytes read and not yet taken: `buf[start..end]`.
    start: usize,
    end: usize,
    /// Bytes of the body taken so far, and the body's length (the file's, less the
    /// checksum).
    at: u64,
    limit: u64,
    /// The read that failed, if one did: the file's error, not the decoder's.
    io: Option<std::io::Error>,
}

impl<R: std::io::Read> Stream<'_, R> {
    /// Reads (and hashes) until at least `n` bytes are buffered; false at the end of
    /// the file.
    fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        while self.end < n {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(got) => {
                    self.hasher.update(&self.buf[self.end..self.end + got]);
                    self.end += got;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Reads (and hashes) the rest of the file.
    fn drain(&mut self) -> std::io::Result<()> {
        self.start = 0;
        self.end = 0;
        while self.fill(self.buf.len())? {
            self.end = 0;
            // Longer than it was when its length was read: read on in big pieces.
            if self.buf.len() < STREAM_BUFFER {
                self.buf.resize(STREAM_BUFFER, 0);
            }
        }
        Ok(())
    }
}

impl<R: std::io::Read> Source for Stream<'_, R> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        // Checked against the file's length before anything is read or grown: a
        // length field of 4 GB in a 14 MB manifest is refused, not allocated.
        let end = self
            .at
            .checked_add(n as u64)
            .context("the manifest is corrupt")?;
        ensure!(end <= self.limit, "the manifest is truncated");
        if self.end - self.start < n {
            match self.fill(n) {
                Ok(true) => {}
                // Shorter than it was when its length was read.
                Ok(false) => bail!("the manifest is truncated"),
                Err(e) => {
                    let message = format!("cannot read the manifest: {e}");
                    self.io = Some(e);
                    bail!(message);
                }
            }
        }
        let out = &self.buf[self.start..self.start + n];
        self.start += n;
        self.at = end;
        Ok(out)
    }
    fn done(&self) -> bool {
        self.at == self.limit
    }
    fn left(&self) -> u64 {
        self.limit - self.at
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

    /// `equal_but_path` is `==` for two entries with one path: each field changed
    /// alone (and the content to each other kind) makes them differ.
    #[test]
    fn equal_but_path_is_equality_for_one_path() {
        let base = entry(b"a/b", Content::Hash([7; 32]));
        assert!(base.equal_but_path(&base.clone()));
        let mut other_path = base.clone();
        other_path.path = b"elsewhere".to_vec();
        assert!(
            base.equal_but_path(&other_path),
            "the path is not looked at"
        );
        let changes: Vec<fn(&mut Entry)> = vec![
            |e| e.kind = Kind::Symlink,
            |e| e.mode ^= 0o100,
            |e| e.size += 1,
            |e| e.mtime_ns += 1,
            |e| e.ctime_ns += 1,
            |e| e.ino += 1,
            |e| e.content = Content::Hash([8; 32]),
            |e| e.content = Content::Git([7; 20]),
            |e| e.content = Content::Skipped,
            |e| e.content = Content::None,
            |e| e.content = Content::Link(b"t".to_vec()),
            |e| e.meta.uid += 1,
            |e| e.meta.gid += 1,
            |e| e.meta.nlink += 1,
            |e| e.meta.dev += 1,
            |e| e.meta.rdev += 1,
        ];
        for (n, change) in changes.into_iter().enumerate() {
            let mut changed = base.clone();
            change(&mut changed);
            assert_ne!(changed, base, "change {n}");
            assert!(!base.equal_but_path(&changed), "change {n} went unseen");
            assert!(!changed.equal_but_path(&base), "change {n} went unseen");
        }
    }

    /// A manifest of backstop 0.1 (version 1: no owner, nlink, dev or rdev) is read
    /// field for field, from memory and as a stream: its entries' fixed fields are
    /// taken at once, by their own length.
    #[test]
    fn a_version_1_manifest_is_read_field_for_field() {
        let mut body = MAGIC_V1.to_vec();
        body.extend_from_slice(&77i64.to_le_bytes());
        body.extend_from_slice(&2u64.to_le_bytes());
        let fixed = |body: &mut Vec<u8>, kind: u8, n: u64| {
            body.push(kind);
            body.extend_from_slice(&0o640u32.to_le_bytes());
            body.extend_from_slice(&n.to_le_bytes());
            body.extend_from_slice(&(n as i64 * 10).to_le_bytes());
            body.extend_from_slice(&(n as i64 * 20).to_le_bytes());
            body.extend_from_slice(&(n * 30).to_le_bytes());
        };
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(b"a/f");
        fixed(&mut body, 0, 5);
        body.push(1);
        body.extend_from_slice(&[9; 32]);
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(b"l");
        fixed(&mut body, 2, 6);
        body.push(2);
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(b"a/f");
        let mut bytes = body.clone();
        bytes.extend_from_slice(blake3::hash(&body).as_bytes());

        let want = Manifest {
            taken_at_ns: 77,
            entries: vec![
                Entry {
                    path: b"a/f".to_vec(),
                    kind: Kind::File,
                    mode: 0o640,
                    size: 5,
                    mtime_ns: 50,
                    ctime_ns: 100,
                    ino: 150,
                    content: Content::Hash([9; 32]),
                    meta: Meta::default(),
                },
                Entry {
                    path: b"l".to_vec(),
                    kind: Kind::Symlink,
                    mode: 0o640,
                    size: 6,
                    mtime_ns: 60,
                    ctime_ns: 120,
                    ino: 180,
                    content: Content::Link(b"a/f".to_vec()),
                    meta: Meta::default(),
                },
            ],
        };
        assert_eq!(Manifest::decode(&bytes).unwrap(), want);
        let len = bytes.len() as u64;
        let (streamed, sum) = Manifest::decode_stream(&mut &bytes[..], len).unwrap();
        assert_eq!(streamed.unwrap(), want);
        assert_eq!(sum, *blake3::hash(&bytes).as_bytes());
        // Cut inside an entry's fixed fields: truncated, not misread.
        let cut = &body[..body.len() - 40];
        let mut cut = cut.to_vec();
        cut.extend_from_slice(blake3::hash(&cut).as_bytes());
        let e = Manifest::decode(&cut).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

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

    /// A reader that hands out at most `step` bytes a time and is interrupted before
    /// every other read, as a pipe or a signal may do.
    struct Trickle<'a> {
        bytes: &'a [u8],
        step: usize,
        interrupt: bool,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let n = self.step.min(buf.len()).min(self.bytes.len());
            buf[..n].copy_from_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Ok(n)
        }
    }

    /// What decoding a manifest's bytes in memory says, for comparing with a stream:
    /// the manifest, or the error's words.
    fn in_memory(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        Manifest::decode_checked(bytes, false).map_err(|e| e.to_string())
    }

    fn streamed(bytes: &[u8], step: usize) -> (std::result::Result<Manifest, String>, Hash) {
        let mut reader = Trickle {
            bytes,
            step,
            interrupt: false,
        };
        let (decoded, sum) =
            Manifest::decode_stream(&mut reader, bytes.len() as u64).expect("no read fails");
        (decoded.map_err(|e| e.to_string()), sum)
    }

    fn any_entry() -> impl proptest::strategy::Strategy<Value = Entry> {
        use proptest::prelude::*;
        let content = prop_oneof![
            Just(Content::None),
            any::<[u8; 32]>().prop_map(Content::Hash),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Content::Link),
            Just(Content::Skipped),
            any::<[u8; 20]>().prop_map(Content::Git),
        ];
        (
            proptest::collection::vec(any::<u8>(), 1..600),
            content,
            any::<(u32, u64, i64, i64, u64)>(),
        )
            .prop_map(|(path, content, (mode, size, mtime_ns, ctime_ns, ino))| {
                let mut e = entry(&path, content);
                (e.mode, e.size, e.mtime_ns, e.ctime_ns, e.ino) =
                    (mode, size, mtime_ns, ctime_ns, ino);
                e
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 96, ..Default::default() })]

        /// A manifest read from a file as it is decoded is the one its bytes decode
        /// to in memory, with the hash of every byte, however the reads come (one byte
        /// at a time, interrupted, or more than the buffer holds: long paths and
        /// targets cross the buffer's end).
        #[test]
        fn a_streamed_manifest_is_the_one_in_memory(
            entries in proptest::collection::vec(any_entry(), 0..40),
            filler in 0usize..3000,
            step in proptest::prop_oneof![proptest::strategy::Just(1usize), 2usize..5000, proptest::strategy::Just(usize::MAX)],
        ) {
            let mut entries = entries;
            // Sorted, as manifests are; one many times the buffer among them at times.
            if filler > 2000 {
                entries.push(entry(&vec![b'z'; STREAM_BUFFER * 2 + filler], Content::None));
            }
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            let m = Manifest { taken_at_ns: filler as i64, entries };
            let bytes = m.encode();
            let (decoded, sum) = streamed(&bytes, step);
            proptest::prop_assert_eq!(decoded, Ok(m));
            let whole = blake3::hash(&bytes);
            proptest::prop_assert_eq!(&sum, whole.as_bytes());
        }

        /// A torn, grown or altered manifest streamed gives the answer its bytes give
        /// in memory (the same manifest, or the same error), and the hash of the bytes
        /// as they are, which a damaged object's name does not match.
        #[test]
        fn a_damaged_manifest_streamed_fails_as_in_memory(
            entries in proptest::collection::vec(any_entry(), 1..12),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            flip in proptest::prelude::any::<proptest::sample::Index>(),
            bit in 0u8..8,
            how in 0u8..3,
            step in 1usize..400,
        ) {
            let mut entries = entries;
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            let mut bytes = Manifest { taken_at_ns: 5, entries }.encode();
            match how {
                0 => bytes.truncate(cut.index(bytes.len())),
                1 => {
                    let at = flip.index(bytes.len());
                    bytes[at] ^= 1 << bit;
                }
                _ => bytes.extend_from_slice(&[bit; 17]),
            }
            let (decoded, sum) = streamed(&bytes, step);
            proptest::prop_assert_eq!(decoded, in_memory(&bytes));
            let whole = blake3::hash(&bytes);
            proptest::prop_assert_eq!(&sum, whole.as_bytes());
        }
    }

    /// A file shorter than the length it was opened at (cut while read): refused as
    /// truncated, and the hash is of what was there.
    #[test]
    fn a_manifest_cut_while_read_is_truncated() {
        let m = Manifest {
            taken_at_ns: 1,
            entries: vec![entry(b"f", Content::Hash([1; 32]))],
        };
        let bytes = m.encode();
        let short = &bytes[..bytes.len() - 40];
        let (decoded, sum) = Manifest::decode_stream(&mut &short[..], bytes.len() as u64).unwrap();
        assert_eq!(
            decoded.unwrap_err().to_string(),
            "the manifest is truncated"
        );
        assert_eq!(&sum, blake3::hash(short).as_bytes());
    }

    /// A file longer than the length it was opened at (grown while read) is hashed
    /// to its end, in big pieces though its buffer was sized for the short length.
    #[test]
    fn a_manifest_grown_while_read_is_hashed_whole() {
        let m = Manifest {
            taken_at_ns: 1,
            entries: vec![entry(b"f", Content::Hash([1; 32]))],
        };
        let bytes = m.encode();
        let grown = [&bytes[..], &vec![7u8; 3 * STREAM_BUFFER + 5][..]].concat();
        let (decoded, sum) = Manifest::decode_stream(&mut &grown[..], bytes.len() as u64).unwrap();
        assert_eq!(decoded.unwrap(), m, "the part it was opened at decodes");
        assert_eq!(&sum, blake3::hash(&grown).as_bytes(), "every byte hashed");
    }

    /// A read that fails is the file's error, not a damaged manifest.
    #[test]
    fn a_read_error_is_returned_as_such() {
        struct Failing;
        impl std::io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let e = Manifest::decode_stream(&mut Failing, 4096).unwrap_err();
        assert_eq!(e.to_string(), "disk on fire");
    }
}
