//! The ignore rules a snapshot was taken under, fixed for the rest of its run.
//!
//! A run may rewrite `.gitignore`, delete `.git` (and with it `.git/info/exclude`), or
//! add an `.ignore`. If the walk after the run read the rules again, a path that was
//! ignored before — and so never stored — would look created by the run, and a
//! rollback would delete it for good. So the walk before a run reads each rule file
//! once and keeps its bytes ([`Rules`]); every later walk of that run (checkpoints,
//! restores between attempts, the change set, the after-state an `undo` reconstructs)
//! matches against those bytes, never against the files as they are now.
//!
//! Matching follows the `ignore` crate's precedence (which follows git's): `.ignore`
//! files first, then `.gitignore` files, then `.git/info/exclude`; within each kind
//! the deepest directory wins; `.gitignore` and `exclude` rules stop at the nearest
//! directory holding `.git` (a nested repository keeps its own rules). Rule files of
//! the directories above the root apply too, as `ignore`'s `parents` option does.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{Context, Result};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde::{Deserialize, Serialize};

/// The rule files of one directory, as bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirRules {
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_opt")]
    pub ignore: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_opt")]
    pub gitignore: Option<Vec<u8>>,
    /// `.git/info/exclude` of the repository whose top this directory is.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_opt")]
    pub exclude: Option<Vec<u8>>,
    /// The directory holds `.git`: the top of a repository.
    #[serde(default)]
    pub has_git: bool,
}

impl DirRules {
    fn is_empty(&self) -> bool {
        self.ignore.is_none() && self.gitignore.is_none() && self.exclude.is_none() && !self.has_git
    }

    /// Reads the rule files of `dir` as they are now; `listed`, when the directory was
    /// just listed, says which of their names it holds (the others are not looked for).
    fn read(dir: &Path, listed: Option<Listed>) -> DirRules {
        let all = Listed {
            ignore: true,
            gitignore: true,
            git: true,
        };
        let listed = listed.unwrap_or(all);
        let file = |there: bool, name: &str| there.then(|| read_regular(&dir.join(name))).flatten();
        let git = dir.join(".git");
        let (has_git, exclude) = match listed.git.then(|| fs::symlink_metadata(&git)) {
            Some(Ok(m)) if m.is_dir() => (true, read_regular(&git.join("info/exclude"))),
            Some(Ok(m)) if m.is_file() => (true, linked_exclude(&git)),
            _ => (false, None),
        };
        DirRules {
            ignore: file(listed.ignore, ".ignore"),
            gitignore: file(listed.gitignore, ".gitignore"),
            exclude,
            has_git,
        }
    }
}

/// Which of a directory's rule files its listing showed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Listed {
    pub ignore: bool,
    pub gitignore: bool,
    pub git: bool,
}

impl Listed {
    /// Notes `name`, an entry of the directory. Whatever its case: in a case-insensitive
    /// directory (ext4 `casefold`, vfat) `.GITIGNORE` is what opening `.gitignore` finds.
    pub fn note(&mut self, name: &[u8]) {
        let is = |rule: &[u8]| name.eq_ignore_ascii_case(rule);
        self.ignore |= is(b".ignore");
        self.gitignore |= is(b".gitignore");
        self.git |= is(b".git");
    }
}

/// A rule file's bytes, if it is a regular file: never a FIFO (opening one for reading
/// would wait for a writer for ever), a device, or a link to one.
pub(super) fn read_regular(path: &Path) -> Option<Vec<u8>> {
    read_regular_at_most(path, u64::MAX)
}

/// [`read_regular`], `None` past `limit` bytes: for files whose size nothing else bounds.
pub(super) fn read_regular_at_most(path: &Path, limit: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut out = Vec::new();
    f.take(limit.saturating_add(1)).read_to_end(&mut out).ok()?;
    (out.len() as u64 <= limit).then_some(out)
}

/// `.git` as a file (a worktree or submodule): `gitdir: X`, whose `commondir` holds
/// the `info/exclude` that applies.
fn linked_exclude(git_file: &Path) -> Option<Vec<u8>> {
    read_regular(&super::git::dirs(git_file)?.common.join("info/exclude"))
}

/// Every rule file a walk read: per directory relative to the root (`""` is the
/// root), and per directory above the root (absolute).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    #[serde(with = "hex_map")]
    pub dirs: BTreeMap<Vec<u8>, DirRules>,
    #[serde(with = "crate::names::path_pairs")]
    pub parents: Vec<(PathBuf, DirRules)>,
    /// What the walk left out (ignored or excluded), by name and inode: never stored,
    /// so never to be destroyed by a put-back wherever a run moved it.
    #[serde(default)]
    pub pruned: Vec<Pruned>,
}

/// A path the scope left out when it was fixed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    #[serde(with = "hex_bytes")]
    pub path: Vec<u8>,
    pub ino: u64,
    pub dir: bool,
}

impl Rules {
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).context("cannot encode the ignore rules")
    }

    pub fn decode(bytes: &[u8]) -> Result<Rules> {
        serde_json::from_slice(bytes).context("the stored ignore rules are damaged")
    }
}

/// One directory's rules, compiled.
struct Compiled {
    ignore: Option<Gitignore>,
    gitignore: Option<Gitignore>,
    exclude: Option<Gitignore>,
    has_git: bool,
    /// The directory relative to the root; `None` above the root.
    rel: Option<Vec<u8>>,
}

impl Compiled {
    fn of(dir: &Path, rel: Option<&[u8]>, rules: &DirRules) -> Compiled {
        // The rules of a directory in the tree are asked about paths relative to it
        // (see `Matcher::ignored_in`): rooted at `.`, the matcher takes them as they
        // are, where rooted at `dir` it would first compare its root with `.` and try
        // to strip it from each (a component-wise comparison for every path). Rules
        // above the tree's root are asked about absolute paths.
        let root = if rel.is_some() { Path::new(".") } else { dir };
        let build = |bytes: &Option<Vec<u8>>, from: &str| {
            bytes.as_ref().map(|b| compile(root, &dir.join(from), b))
        };
        Compiled {
            ignore: build(&rules.ignore, ".ignore"),
            gitignore: build(&rules.gitignore, ".gitignore"),
            exclude: build(&rules.exclude, ".git/info/exclude"),
            has_git: rules.has_git,
            rel: rel.map(<[u8]>::to_vec),
        }
    }
}

/// Compiles a rule file's bytes as `GitignoreBuilder::add` reads a file: line by line,
/// a leading BOM dropped, lines that are not UTF-8 and globs that do not parse skipped.
fn compile(dir: &Path, from: &Path, bytes: &[u8]) -> Gitignore {
    let mut builder = GitignoreBuilder::new(dir);
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let line = if i == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        let _ = builder.add_line(Some(from.to_path_buf()), line);
    }
    builder.build().unwrap_or_else(|_| Gitignore::empty())
}

/// The compiled rules of a directory and every directory above it, outermost first;
/// directories without rules are left out.
type Chain = Arc<Vec<Arc<Compiled>>>;

/// The rules that apply inside one directory (see [`Matcher::in_dir`]).
pub struct InDir(Chain);

/// Where a matcher takes directories' rules from.
enum Source {
    /// The files as they are now; what is read is kept in `read`.
    Disk {
        read: Mutex<BTreeMap<Vec<u8>, DirRules>>,
    },
    /// Rules read by an earlier walk.
    Fixed(Arc<Rules>),
}

/// Decides, for a walk of `root`, which paths the ignore rules leave out. Shared by
/// the walk's threads.
pub struct Matcher {
    root: PathBuf,
    source: Source,
    parents: Vec<(PathBuf, DirRules)>,
    chains: RwLock<HashMap<Vec<u8>, Chain>>,
}

impl Matcher {
    /// Rules read from the tree as it is now (and kept, see [`Matcher::rules`]).
    pub fn from_disk(root: &Path) -> Matcher {
        let parents = root
            .ancestors()
            .skip(1)
            .map(|d| (d.to_path_buf(), DirRules::read(d, None)))
            .filter(|(_, r)| !r.is_empty())
            .collect();
        Matcher::new(
            root,
            Source::Disk {
                read: Mutex::new(BTreeMap::new()),
            },
            parents,
        )
    }

    /// The rules an earlier walk read.
    pub fn fixed(root: &Path, rules: Arc<Rules>) -> Matcher {
        let parents = rules.parents.clone();
        Matcher::new(root, Source::Fixed(rules), parents)
    }

    fn new(root: &Path, source: Source, parents: Vec<(PathBuf, DirRules)>) -> Matcher {
        Matcher {
            root: root.to_path_buf(),
            source,
            parents,
            chains: RwLock::new(HashMap::new()),
        }
    }

    /// The rules this matcher used, for the walks after it.
    pub fn rules(&self) -> Rules {
        match &self.source {
            Source::Disk { read } => Rules {
                dirs: read
                    .lock()
                    .map(|r| r.clone())
                    .unwrap_or_else(|p| p.into_inner().clone()),
                parents: self.parents.clone(),
                pruned: Vec::new(),
            },
            Source::Fixed(rules) => (**rules).clone(),
        }
    }

    /// Whether the rules leave out `rel` (a path relative to the root).
    pub fn ignored(&self, rel: &[u8], is_dir: bool) -> bool {
        let parent = match rel.iter().rposition(|b| *b == b'/') {
            Some(i) => &rel[..i],
            None => &[][..],
        };
        self.ignored_in(&self.in_dir(parent), rel, is_dir)
    }

    /// The rules that apply inside directory `dir` (relative), looked up once for all
    /// its entries: a walk asks for each of them.
    pub fn in_dir(&self, dir: &[u8]) -> InDir {
        InDir(self.chain(dir, None))
    }

    /// [`Matcher::in_dir`] for a directory just listed: only the rule files it holds
    /// are read (a first walk of 6,000 directories tried 18,000 paths that were not there).
    pub fn in_listed_dir(&self, dir: &[u8], listed: Listed) -> InDir {
        InDir(self.chain(dir, Some(listed)))
    }

    /// [`Matcher::ignored`] for `rel`, an entry of the directory `dir` stands for.
    pub fn ignored_in(&self, dir: &InDir, rel: &[u8], is_dir: bool) -> bool {
        let chain = &dir.0;
        if chain.is_empty() {
            return false;
        }
        // Each matcher gets the path relative to its own directory (no join, no prefix
        // to strip); those above the root get it whole.
        let mut absolute: Option<PathBuf> = None;
        let (mut by_ignore, mut by_git, mut by_exclude) = (None, None, None);
        let mut saw_git = false;
        for c in chain.iter().rev() {
            let path: &Path = match &c.rel {
                Some(d) if d.is_empty() => Path::new(OsStr::from_bytes(rel)),
                Some(d) => Path::new(OsStr::from_bytes(&rel[(d.len() + 1).min(rel.len())..])),
                None => absolute.get_or_insert_with(|| self.root.join(OsStr::from_bytes(rel))),
            };
            if by_ignore.is_none() {
                by_ignore = decide(c.ignore.as_ref(), path, is_dir);
            }
            if !saw_git && by_git.is_none() {
                by_git = decide(c.gitignore.as_ref(), path, is_dir);
            }
            if !saw_git && by_exclude.is_none() {
                by_exclude = decide(c.exclude.as_ref(), path, is_dir);
            }
            saw_git |= c.has_git;
        }
        by_ignore.or(by_git).or(by_exclude).unwrap_or(false)
    }

    /// The chain of rules that applies inside directory `dir` (relative).
    fn chain(&self, dir: &[u8], listed: Option<Listed>) -> Chain {
        if let Some(c) = self.chains.read().ok().and_then(|m| m.get(dir).cloned()) {
            return c;
        }
        let base: Chain = if dir.is_empty() {
            let parents = self
                .parents
                .iter()
                .rev()
                .map(|(d, r)| Arc::new(Compiled::of(d, None, r)))
                .collect();
            Arc::new(parents)
        } else {
            let up = match dir.iter().rposition(|b| *b == b'/') {
                Some(i) => &dir[..i],
                None => &[][..],
            };
            self.chain(up, None)
        };
        let own = self.dir_rules(dir, listed);
        let chain = match own {
            Some(r) if !r.is_empty() => {
                let abs = self.root.join(OsStr::from_bytes(dir));
                let mut v = (*base).clone();
                v.push(Arc::new(Compiled::of(&abs, Some(dir), &r)));
                Arc::new(v)
            }
            _ => base,
        };
        if let Ok(mut m) = self.chains.write() {
            m.insert(dir.to_vec(), Arc::clone(&chain));
        }
        chain
    }

    fn dir_rules(&self, dir: &[u8], listed: Option<Listed>) -> Option<DirRules> {
        match &self.source {
            Source::Fixed(rules) => rules.dirs.get(dir).cloned(),
            Source::Disk { read } => {
                let r = DirRules::read(&self.root.join(OsStr::from_bytes(dir)), listed);
                if r.is_empty() {
                    return None;
                }
                if let Ok(mut m) = read.lock() {
                    m.insert(dir.to_vec(), r.clone());
                }
                Some(r)
            }
        }
    }
}

/// `Some(true)` ignored, `Some(false)` whitelisted, `None` no rule speaks.
fn decide(m: Option<&Gitignore>, path: &Path, is_dir: bool) -> Option<bool> {
    let m = m?.matched(path, is_dir);
    if m.is_ignore() {
        Some(true)
    } else if m.is_whitelist() {
        Some(false)
    } else {
        None
    }
}

mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&crate::snapshot::journal::to_hex(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| crate::snapshot::journal::from_hex(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::snapshot::journal::to_hex(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        crate::snapshot::journal::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

mod hex_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeMap};

    use super::DirRules;

    pub fn serialize<S: Serializer>(
        v: &BTreeMap<Vec<u8>, DirRules>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(v.len()))?;
        for (k, r) in v {
            map.serialize_entry(&crate::snapshot::journal::to_hex(k), r)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Vec<u8>, DirRules>, D::Error> {
        let m: BTreeMap<String, DirRules> = BTreeMap::deserialize(d)?;
        m.into_iter()
            .map(|(k, r)| {
                crate::snapshot::journal::from_hex(&k)
                    .map(|k| (k, r))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_notes_rule_files_in_any_case() {
        let mut listed = Listed::default();
        for name in [&b"a.txt"[..], b".GitIgnore", b".GIT"] {
            listed.note(name);
        }
        assert!(listed.gitignore && listed.git && !listed.ignore);
    }

    #[test]
    fn fixed_rules_ignore_what_the_files_said_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join(".git")).unwrap();
        fs::create_dir_all(root.join(".git/info")).unwrap();
        fs::write(root.join(".git/info/exclude"), "local.txt\n").unwrap();
        fs::write(
            root.join(".gitignore"),
            "secret.env\nnode_modules/\n!keep.env\n",
        )
        .unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/.ignore"), "*.log\n").unwrap();

        let disk = Matcher::from_disk(root);
        for (path, dir, ignored) in [
            (&b"secret.env"[..], false, true),
            (b"keep.env", false, false),
            (b"node_modules", true, true),
            (b"node_modules", false, false),
            (b"local.txt", false, true),
            (b"sub/x.log", false, true),
            (b"x.log", false, false),
            (b"src", true, false),
        ] {
            assert_eq!(
                disk.ignored(path, dir),
                ignored,
                "{:?}",
                String::from_utf8_lossy(path)
            );
        }
        let rules = Arc::new(Rules::decode(&disk.rules().encode().unwrap()).unwrap());

        // The run deletes every rule file; the fixed rules still say the same.
        fs::remove_dir_all(root.join(".git")).unwrap();
        fs::remove_file(root.join(".gitignore")).unwrap();
        fs::remove_file(root.join("sub/.ignore")).unwrap();
        let fixed = Matcher::fixed(root, rules);
        assert!(fixed.ignored(b"secret.env", false));
        assert!(fixed.ignored(b"local.txt", false));
        assert!(fixed.ignored(b"sub/x.log", false));
        assert!(!fixed.ignored(b"keep.env", false));
        assert!(!Matcher::from_disk(root).ignored(b"secret.env", false));
    }

    #[test]
    fn a_nested_repository_keeps_its_own_gitignore() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join(".gitignore"), "*.o\n").unwrap();
        fs::create_dir_all(root.join("vendor/lib/.git")).unwrap();
        fs::write(root.join("vendor/lib/.gitignore"), "*.tmp\n").unwrap();
        let m = Matcher::from_disk(root);
        assert!(m.ignored(b"a.o", false));
        assert!(m.ignored(b"vendor/lib/x.tmp", false));
        assert!(
            !m.ignored(b"vendor/lib/x.o", false),
            "git stops at the nested .git"
        );
    }
}
