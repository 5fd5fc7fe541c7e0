//! Blobs a git checkout already holds, kept by the store without copying them.
//!
//! A file whose stat matches its entry in git's index has the content of the blob that
//! entry names (see `checkout.rs`). The store keeps such blobs by hard-linking git's own
//! object files into `git-objects/` — a git objects directory of its own: the packs
//! (`pack/pack-<sum>.{pack,idx}`, never changed once written: git only ever adds and
//! deletes whole packs) and, for blobs no pack holds, loose objects (`<xx>/<38 hex>`).
//! A link is a second name for the same inode: `rm -rf .git`, `git gc` or `git repack`
//! remove git's names, not the store's, so a snapshot never depends on the checkout's
//! `.git` after it is taken.
//!
//! A pack is linked before its index (an index is how a pack is found: a crash between
//! the two leaves a pack nobody reads, which gc removes). Links cannot cross
//! filesystems: then nothing is linked, and the checkout's files are copied as any
//! others are. Every blob read back is hashed again and refused when its id does not
//! match, like every object of the store.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, bail};

use crate::store::layout;

/// A git blob id (SHA-1).
pub type BlobId = [u8; 20];

pub fn blob_hex(id: &BlobId) -> String {
    oid(id).to_hex().to_string()
}

fn oid(id: &BlobId) -> gix::ObjectId {
    gix::ObjectId::Sha1(*id)
}

/// Git's id of a blob holding `bytes`, fed in pieces: `blob <size>\0` then the bytes.
pub struct BlobHasher {
    hasher: gix::hash::Hasher,
    expected: u64,
    fed: u64,
}

impl BlobHasher {
    pub fn new(size: u64) -> BlobHasher {
        let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
        hasher.update(&gix::objs::encode::loose_header(
            gix::objs::Kind::Blob,
            size,
        ));
        BlobHasher {
            hasher,
            expected: size,
            fed: 0,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.fed += bytes.len() as u64;
        self.hasher.update(bytes);
    }

    /// The id, or `None` when the bytes fed were not the size announced (or the input
    /// was crafted to collide: SHA-1 collision detection refuses it).
    pub fn finish(self) -> Option<BlobId> {
        if self.fed != self.expected {
            return None;
        }
        match self.hasher.try_finalize().ok()? {
            gix::ObjectId::Sha1(id) => Some(id),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

/// Git's id of a blob holding `bytes`.
pub fn blob_id(bytes: &[u8]) -> Option<BlobId> {
    let mut h = BlobHasher::new(bytes.len() as u64);
    h.update(bytes);
    h.finish()
}

/// The store's `git-objects/`.
pub struct GitObjects {
    dir: PathBuf,
    /// The indexes of the packs linked so far, loaded once per process.
    packs: Mutex<Option<Packs>>,
    /// An object database over `dir`, for reading blobs back.
    odb: OnceLock<Option<Mutex<gix::odb::Handle>>>,
    /// Links made and not yet synced ([`GitObjects::sync_linked`]).
    linked: Mutex<Vec<PathBuf>>,
}

impl std::fmt::Debug for GitObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitObjects")
            .field("dir", &self.dir)
            .finish()
    }
}

struct Pack {
    name: std::ffi::OsString,
    index: gix::odb::pack::index::File,
    /// The pack itself, read (never mapped) for entry headers by [`GitObjects::sizes`].
    path: PathBuf,
}

/// The packs the store holds, and which of them answered last: a checkout's blobs are
/// nearly all in one pack, so a store holding many (one per clone a CI runner made)
/// still finds each blob with one look-up, not one per pack.
#[derive(Default)]
struct Packs {
    list: Vec<Pack>,
    hot: usize,
}

impl Packs {
    /// The pack holding `id` and its entry there.
    fn find(&mut self, id: &BlobId) -> Option<(usize, u32)> {
        let look = |n: usize, list: &[Pack]| list.get(n)?.index.lookup(oid(id));
        if let Some(i) = look(self.hot, &self.list) {
            return Some((self.hot, i));
        }
        let (n, i) = (0..self.list.len())
            .filter(|&n| n != self.hot)
            .find_map(|n| Some((n, look(n, &self.list)?)))?;
        self.hot = n;
        Some((n, i))
    }
}

impl std::fmt::Debug for Pack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pack").field("name", &self.name).finish()
    }
}

/// Why a checkout's objects could not be linked.
#[derive(Debug, thiserror::Error)]
pub enum Unlinkable {
    #[error("the store is on another filesystem than {0}")]
    OtherFilesystem(PathBuf),
    #[error("cannot link {path} into the store: {error}")]
    Io { path: PathBuf, error: io::Error },
}

impl GitObjects {
    pub fn new(store: &Path) -> GitObjects {
        GitObjects {
            dir: layout::git_objects_dir(store),
            packs: Mutex::new(None),
            odb: OnceLock::new(),
            linked: Mutex::new(Vec::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn pack_dir(&self) -> PathBuf {
        self.dir.join("pack")
    }

    fn loose_path(&self, id: &BlobId) -> PathBuf {
        let hex = blob_hex(id);
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    /// Links every pack of the git objects directory `source` the store does not
    /// have yet. Packs are named by their checksum: one of the same name is the same.
    pub fn adopt_packs(&self, source: &Path) -> Result<(), Unlinkable> {
        let from = source.join("pack");
        let Ok(list) = fs::read_dir(&from) else {
            return Ok(());
        };
        let to = self.pack_dir();
        fs::create_dir_all(&to).map_err(|error| Unlinkable::Io {
            path: to.clone(),
            error,
        })?;
        let mut added = false;
        for e in list.flatten() {
            let name = e.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".idx")) else {
                continue;
            };
            if !stem.starts_with("pack-") || stem.contains('/') {
                continue;
            }
            let (pack, idx) = (format!("{stem}.pack"), format!("{stem}.idx"));
            if to.join(&idx).exists() {
                continue;
            }
            // Only regular files: a FIFO or a link named like a pack is not git's.
            let regular = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
            if !regular(&from.join(&pack)) || !regular(&from.join(&idx)) {
                continue;
            }
            // A pack that is not the one its index describes (truncated by an
            // interrupted copy, say) would vouch for blobs it cannot give back.
            if !pack_matches_index(&from.join(&pack), &from.join(&idx)) {
                continue;
            }
            self.link(&from.join(&pack), &to.join(&pack))?;
            self.link(&from.join(&idx), &to.join(&idx))?;
            added = true;
        }
        if added {
            *self.packs.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        Ok(())
    }

    /// Whether the store holds the blob `id`, linking it from the loose objects of
    /// `source` when no pack of the store has it.
    pub fn hold(&self, id: &BlobId, source: &Path) -> Result<bool, Unlinkable> {
        if self.in_packs(id) {
            return Ok(true);
        }
        let ours = self.loose_path(id);
        if self.holds_loose(id) {
            return Ok(true);
        }
        let hex = blob_hex(id);
        let theirs = source.join(&hex[..2]).join(&hex[2..]);
        if !fs::symlink_metadata(&theirs).is_ok_and(|m| m.is_file() && m.len() > 0) {
            return Ok(false);
        }
        // An empty one of ours (emptied through git's name) goes: a sound one replaces it.
        if fs::symlink_metadata(&ours).is_ok() {
            let _ = fs::remove_file(&ours);
        }
        let parent = ours
            .parent()
            .expect("a loose object has a fan-out directory");
        fs::create_dir_all(parent).map_err(|error| Unlinkable::Io {
            path: parent.to_path_buf(),
            error,
        })?;
        self.link(&theirs, &ours)?;
        Ok(true)
    }

    /// A second name for `from` at `to`; one already there is taken as the same file
    /// (git's object files are named by their content).
    fn link(&self, from: &Path, to: &Path) -> Result<(), Unlinkable> {
        crate::crash::point("link");
        match fs::hard_link(from, to) {
            Ok(()) => {
                self.linked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(to.to_path_buf());
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                Err(Unlinkable::OtherFilesystem(from.to_path_buf()))
            }
            Err(error) => Err(Unlinkable::Io {
                path: from.to_path_buf(),
                error,
            }),
        }
    }

    /// Whether a pack the store holds has `id`.
    fn in_packs(&self, id: &BlobId) -> bool {
        let mut packs = self.packs.lock().unwrap_or_else(|p| p.into_inner());
        let packs = packs.get_or_insert_with(|| self.load_packs());
        packs.find(id).is_some()
    }

    /// Whether `git-objects/` has `id` as a loose object that is not empty (a file
    /// emptied through git's name, or by a crash, holds nothing).
    fn holds_loose(&self, id: &BlobId) -> bool {
        fs::symlink_metadata(self.loose_path(id)).is_ok_and(|m| m.is_file() && m.len() > 0)
    }

    fn load_packs(&self) -> Packs {
        let Ok(list) = fs::read_dir(self.pack_dir()) else {
            return Packs::default();
        };
        let list = list
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "idx"))
            .filter(|e| e.path().with_extension("pack").is_file())
            .filter_map(|e| {
                let index =
                    gix::odb::pack::index::File::at(e.path(), gix::hash::Kind::Sha1).ok()?;
                // A pack is git's file too (one inode): written over in place through
                // git's name, it no longer vouches for anything (new snapshots read the
                // files again instead of naming blobs it cannot give back).
                if !pack_trailer_is(&e.path().with_extension("pack"), &index) {
                    return None;
                }
                Some(Pack {
                    name: e.file_name(),
                    index,
                    path: e.path().with_extension("pack"),
                })
            })
            .collect();
        Packs { list, hot: 0 }
    }

    /// Which of `ids` the store lacks (the pack indexes looked at under one lock).
    pub fn missing<'a>(&self, ids: impl IntoIterator<Item = &'a BlobId>) -> Vec<BlobId> {
        let mut ids = ids.into_iter().peekable();
        // Nothing to look for (a tree outside git): the packs are not listed, nor their
        // indexes read.
        if ids.peek().is_none() {
            return Vec::new();
        }
        let mut packs = self.packs.lock().unwrap_or_else(|p| p.into_inner());
        let packs = packs.get_or_insert_with(|| self.load_packs());
        ids.filter(|id| packs.find(id).is_none() && !self.holds_loose(id))
            .copied()
            .collect()
    }

    fn odb(&self) -> Result<std::sync::MutexGuard<'_, gix::odb::Handle>> {
        let odb = self.odb.get_or_init(|| {
            gix::odb::at(&self.dir, gix::hash::Kind::Sha1)
                .ok()
                .map(Mutex::new)
        });
        match odb {
            Some(odb) => Ok(odb.lock().unwrap_or_else(|p| p.into_inner())),
            None => bail!(
                "cannot open the store's git objects at {}",
                self.dir.display()
            ),
        }
    }

    /// The sizes of the blobs `ids` the store holds (`None`: not there, or a header
    /// that cannot be read), as `git cat-file -s` finds them: in a pack, from the
    /// entry's header, or for a delta from the first bytes of the delta (its result's
    /// size, whatever its base: the index says it is a blob, and restores check the kind
    /// and the bytes). Packed entries are read in pack order, in windows of the file
    /// (not mapped: a 300 MB pack would count in the process's memory), on two threads
    /// for many.
    pub fn sizes(&self, ids: &[BlobId]) -> Vec<Option<u64>> {
        if ids.is_empty() {
            return Vec::new();
        }
        let mut out = vec![None; ids.len()];
        // (pack, offset, k): where each packed blob's entry is.
        let mut jobs: Vec<(usize, u64, usize)> = Vec::with_capacity(ids.len());
        let paths: Vec<PathBuf> = {
            let mut packs = self.packs.lock().unwrap_or_else(|p| p.into_inner());
            let packs = packs.get_or_insert_with(|| self.load_packs());
            for (k, id) in ids.iter().enumerate() {
                if let Some((n, i)) = packs.find(id) {
                    jobs.push((n, packs.list[n].index.pack_offset_at_index(i), k));
                }
            }
            packs.list.iter().map(|p| p.path.clone()).collect()
        };
        let packed: HashSet<usize> = jobs.iter().map(|j| j.2).collect();
        for (k, id) in ids.iter().enumerate() {
            if !packed.contains(&k) {
                out[k] = self.loose_size(id);
            }
        }
        jobs.sort_unstable();
        let threads = if jobs.len() < 4096 { 1 } else { 2 };
        let chunk = jobs.len().div_ceil(threads).max(1);
        let found: Vec<(usize, Option<u64>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = jobs
                .chunks(chunk)
                .map(|part| scope.spawn(|| PackReader::new(&paths).sizes(part)))
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        for (k, size) in found {
            out[k] = size;
        }
        out
    }

    /// The size of a loose blob the store holds, from its header.
    fn loose_size(&self, id: &BlobId) -> Option<u64> {
        if !self.holds_loose(id) {
            return None;
        }
        use gix::prelude::Header;
        let header = self.odb().ok()?.try_header(&oid(id)).ok()??;
        (header.kind() == gix::objs::Kind::Blob).then(|| header.size())
    }

    /// Makes the links made since the last call durable: each file and its directory,
    /// or, for many, the whole filesystem at once.
    pub fn sync_linked(&self) -> Result<()> {
        let linked = std::mem::take(&mut *self.linked.lock().unwrap_or_else(|p| p.into_inner()));
        if linked.is_empty() {
            return Ok(());
        }
        if linked.len() > 64 {
            return super::objects::sync_filesystem(&self.dir);
        }
        let mut dirs = HashSet::new();
        for path in &linked {
            fs::File::open(path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", path.display()))?;
            if let Some(d) = path.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        dirs.insert(self.dir.clone());
        for d in dirs {
            fs::File::open(&d)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync {}", d.display()))?;
        }
        Ok(())
    }

    /// The blob `id`'s bytes, checked against its id.
    pub fn read(&self, id: &BlobId) -> Result<Vec<u8>> {
        use gix::prelude::Find;
        let odb = self.odb()?;
        let mut buf = Vec::new();
        let found = odb
            .try_find(&oid(id), &mut buf)
            .with_context(|| format!("cannot read git blob {}", blob_hex(id)))?;
        let Some(object) = found else {
            bail!(
                "git blob {} is missing from the store ({})",
                blob_hex(id),
                self.dir.display()
            );
        };
        if object.kind != gix::objs::Kind::Blob {
            bail!("git object {} is not a blob", blob_hex(id));
        }
        let data = object.data.to_vec();
        if blob_id(&data) != Some(*id) {
            bail!(
                "git blob {} in the store is damaged: its bytes do not hash to its id",
                blob_hex(id)
            );
        }
        Ok(data)
    }

    /// What fsck says of the blob `id`: `None` when it is there and sound.
    pub fn check(&self, id: &BlobId) -> Option<&'static str> {
        if !self.missing([id]).is_empty() {
            return Some("missing");
        }
        self.read(id).err().map(|_| "damaged")
    }

    /// Writes the blob `id`, which must be `size` bytes, to `dst`.
    pub fn copy_to(&self, id: &BlobId, size: u64, dst: &mut impl Write) -> Result<()> {
        let data = self.read(id)?;
        if data.len() as u64 != size {
            bail!(
                "git blob {} holds {} bytes, not the {size} the snapshot recorded",
                blob_hex(id),
                data.len()
            );
        }
        dst.write_all(&data)?;
        Ok(())
    }

    /// Removes what no snapshot needs any more: loose objects not in `keep`, and packs
    /// holding none of `keep` (and packs without an index, a crash's leftovers).
    /// Returns how many files went, and the bytes they held.
    pub fn sweep(&self, keep: &HashSet<BlobId>) -> Result<(usize, u64)> {
        let mut removed = (0, 0);
        let mut gone = |path: &Path| {
            let size = fs::symlink_metadata(path).map_or(0, |m| m.len());
            if fs::remove_file(path).is_ok() {
                removed.0 += 1;
                removed.1 += size;
            }
        };
        if let Ok(list) = fs::read_dir(self.pack_dir()) {
            let mut packs = self.load_packs();
            // Each kept blob's pack, found once (the last pack found is asked first).
            let needed: HashSet<usize> = keep
                .iter()
                .filter_map(|id| packs.find(id))
                .map(|(n, _)| n)
                .collect();
            for e in list.flatten() {
                let path = e.path();
                let ext = path.extension().and_then(|x| x.to_str()).unwrap_or("");
                let stem_idx = path.with_extension("idx");
                match ext {
                    "idx" => {
                        let name = e.file_name();
                        // A pack that could not be read is kept: only one known to hold
                        // nothing needed goes.
                        let needed = packs
                            .list
                            .iter()
                            .position(|p| p.name == name)
                            .is_none_or(|n| needed.contains(&n));
                        if !needed {
                            // The index first: a pack without one is never read.
                            gone(&path);
                            gone(&path.with_extension("pack"));
                        }
                    }
                    "pack" if !stem_idx.exists() => gone(&path),
                    _ => {}
                }
            }
        }
        *self.packs.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let Ok(fans) = fs::read_dir(&self.dir) else {
            return Ok(removed);
        };
        for fan in fans.flatten() {
            let fan_name = fan.file_name();
            let Some(fan_hex) = fan_name.to_str().filter(|n| n.len() == 2) else {
                continue;
            };
            let Ok(list) = fs::read_dir(fan.path()) else {
                continue;
            };
            for e in list.flatten() {
                let id = e
                    .file_name()
                    .to_str()
                    .and_then(|rest| parse_blob_hex(&format!("{fan_hex}{rest}")));
                if id.is_none_or(|id| !keep.contains(&id)) {
                    gone(&e.path());
                }
            }
            let _ = fs::remove_dir(fan.path());
        }
        Ok(removed)
    }
}

/// Whether the pack at `pack` starts as a pack does and ends with the checksum the
/// index at `idx` records for it: not truncated, not another pack.
fn pack_matches_index(pack: &Path, idx: &Path) -> bool {
    gix::odb::pack::index::File::at(idx, gix::hash::Kind::Sha1)
        .is_ok_and(|index| pack_trailer_is(pack, &index))
}

/// [`pack_matches_index`] with the index loaded.
fn pack_trailer_is(pack: &Path, index: &gix::odb::pack::index::File) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = fs::File::open(pack) else {
        return false;
    };
    let mut head = [0u8; 4];
    let mut tail = [0u8; 20];
    let ok = f.read_exact(&mut head).is_ok()
        && f.seek(SeekFrom::End(-20)).is_ok()
        && f.read_exact(&mut tail).is_ok();
    ok && &head == b"PACK" && index.pack_checksum().as_slice() == tail
}

/// Reads pack entry headers in offset order through a window of each pack file.
struct PackReader<'p> {
    paths: &'p [PathBuf],
    open: Option<(usize, fs::File, u64)>,
    window: Vec<u8>,
    /// Where the window starts in the open pack.
    at: u64,
    inflate: gix::zlib::Inflate,
}

/// How much of a pack one read brings in.
const WINDOW: usize = 256 << 10;
/// What an entry's header and the start of its delta can need, at the most: a type and
/// size (10 bytes), a base (a 20-byte id or an offset), and the compressed bytes of a
/// delta's two sizes.
const HEADER_ROOM: usize = 128;

impl<'p> PackReader<'p> {
    fn new(paths: &'p [PathBuf]) -> Self {
        PackReader {
            paths,
            open: None,
            window: Vec::with_capacity(WINDOW),
            at: 0,
            inflate: gix::zlib::Inflate::default(),
        }
    }

    /// The size of each blob at `(pack, offset, k)`, `jobs` sorted by pack and offset.
    fn sizes(mut self, jobs: &[(usize, u64, usize)]) -> Vec<(usize, Option<u64>)> {
        jobs.iter()
            .map(|&(pack, offset, k)| (k, self.size_at(pack, offset)))
            .collect()
    }

    fn size_at(&mut self, pack: usize, offset: u64) -> Option<u64> {
        use gix::odb::pack::data::entry::Header;
        let start = self.fill(pack, offset)?;
        let bytes = self.window.get(start..)?;
        let entry =
            gix::odb::pack::data::Entry::from_bytes(bytes, offset, gix::hash::Kind::Sha1).ok()?;
        match entry.header {
            Header::Blob => Some(entry.decompressed_size),
            Header::OfsDelta { .. } | Header::RefDelta { .. } => {
                let skip = usize::try_from(entry.data_offset - offset).ok()?;
                let data = bytes.get(skip..)?;
                let mut head = [0u8; 20];
                let want = head
                    .len()
                    .min(usize::try_from(entry.decompressed_size).ok()?);
                self.inflate.reset();
                let (_, _, got) = self.inflate.prefix(data, &mut head[..want]).ok()?;
                let (_base, used) = delta_size(&head[..got])?;
                Some(delta_size(&head[used..got])?.0)
            }
            _ => None,
        }
    }

    /// Brings the pack's bytes from `offset` into the window (at least [`HEADER_ROOM`]
    /// of them, or to its end): where they start in it.
    fn fill(&mut self, pack: usize, offset: u64) -> Option<usize> {
        use std::os::unix::fs::FileExt;
        if self.open.as_ref().is_none_or(|(n, ..)| *n != pack) {
            let file = fs::File::open(self.paths.get(pack)?).ok()?;
            let len = file.metadata().ok()?.len();
            self.open = Some((pack, file, len));
            self.window.clear();
        }
        let (_, file, len) = self.open.as_ref()?;
        let end = self.at + self.window.len() as u64;
        let room = (HEADER_ROOM as u64).min(len.saturating_sub(offset));
        if offset < self.at || offset + room > end {
            let want = WINDOW.min(usize::try_from(len.checked_sub(offset)?).ok()?);
            self.window.resize(want, 0);
            file.read_exact_at(&mut self.window, offset).ok()?;
            self.at = offset;
        }
        usize::try_from(offset - self.at).ok()
    }
}

/// A size at the start of a delta (git's `get_delta_hdr_size`): seven bits a byte,
/// least significant first, while the high bit is set. Returns it and the bytes used.
fn delta_size(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut size = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        size |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((size, i + 1));
        }
    }
    None
}

pub fn parse_blob_hex(s: &str) -> Option<BlobId> {
    match gix::ObjectId::from_hex(s.as_bytes()).ok()? {
        gix::ObjectId::Sha1(id) => Some(id),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_look_for_lists_no_pack() {
        let dir = tempfile::tempdir().unwrap();
        let git = GitObjects::new(dir.path());
        assert!(git.missing([]).is_empty());
        assert!(git.sizes(&[]).is_empty());
        assert!(
            git.packs.lock().unwrap().is_none(),
            "the packs were never listed"
        );
        // Something to look for: they are.
        let id = [7u8; 20];
        assert_eq!(git.missing([&id]), vec![id]);
        assert!(git.packs.lock().unwrap().is_some());
    }

    #[test]
    fn blob_ids_are_gits() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            blob_hex(&blob_id(b"hello\n").unwrap()),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // The empty blob.
        assert_eq!(
            blob_hex(&blob_id(b"").unwrap()),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        let mut h = BlobHasher::new(10);
        h.update(b"short");
        assert_eq!(h.finish(), None, "fewer bytes than announced");
    }

    #[test]
    fn blob_hex_round_trips() {
        let id = blob_id(b"x").unwrap();
        assert_eq!(parse_blob_hex(&blob_hex(&id)), Some(id));
        assert_eq!(parse_blob_hex("zz"), None);
    }
}
