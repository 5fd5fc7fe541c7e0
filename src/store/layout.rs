//! The store's layout: every file and directory name under `$BACKSTOP_HOME`, spelled
//! here once. Other modules ask for paths; none joins a name of its own onto the store.
//!
//! ```text
//! <store>/
//!   objects/            content-addressed objects (objects.rs)
//!     <xx>/<62 hex>       an object, fanned out by its first byte
//!     tmp/                staged objects not yet named
//!     present, clock      which manifests were last found whole; the filesystem's clock
//!   git-objects/        git blobs of clean checkout files, linked from `.git/objects`
//!     pack/pack-<sum>.{pack,idx}, <xx>/<38 hex>   as in a git objects directory
//!   objects.lock        shared by a snapshot until a record names it, exclusive for gc
//!   quarantine/         damaged objects fsck --repair moved away
//!   journals/<key>.json the intent journal of a put-back in one scope root
//!   locks/<key32>       one region lock per directory on a scope root's path
//!   live/<token>.lock   the registry of live backstops (a run's token is its id)
//!   alerts/<key>.json   which of a policy's alert rules are firing (`<key>`: of the
//!                       policy file's path); `alerts/<key>.lock` serialises its updates
//!   state/breakers.json the `local` breakers and retry budget (`state/local.rs`);
//!                       `state/breakers.lock` serialises every decision on them
//!   trees/<key>/        one per repository (`repo_root`): its run records
//!     tree.json           the repository's root, for people and fsck
//!     lock                the history lock (undo, redo, gc)
//!     runs/<id>.json      the run records
//!     statcache-<key>     the last manifest of the scope root `<key>`
//!     rulescache-<key>    the ignore rules its last walk read, a hint for the next
//!                         (earlier builds; no longer written or read: a directory's
//!                         listing says which rule files it holds; not kept by gc)
//!     journal.json        backstop 0.1's journal, one per tree store
//! ```
//!
//! `<key>` is [`key`] of a directory's path. Which of these keep objects alive is the
//! reachability rule in `reachable.rs`.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How a file being written in the store begins until it is renamed into place: the
/// listings of records, journals and the registry pass over such files.
pub const TMP_PREFIX: &str = ".tmp-";

/// The first 16 hex digits of the BLAKE3 hash of `path`'s bytes: how a directory's path
/// names its tree store, journal, stat cache and rules cache.
pub fn key(path: &Path) -> String {
    let h = blake3::hash(path.as_os_str().as_bytes()).to_hex();
    h.as_str()[..16].to_string()
}

// The store's top level.

pub fn objects_dir(store: &Path) -> PathBuf {
    store.join("objects")
}

/// Git's own object files, hard-linked from checkouts (see `git_objects.rs`).
pub fn git_objects_dir(store: &Path) -> PathBuf {
    store.join("git-objects")
}

pub fn objects_lock(store: &Path) -> PathBuf {
    store.join("objects.lock")
}

pub fn quarantine_dir(store: &Path) -> PathBuf {
    store.join("quarantine")
}

pub fn journals_dir(store: &Path) -> PathBuf {
    store.join("journals")
}

/// The intent journal of a put-back in the scope `root`: one per scope root,
/// store-wide, so runs in disjoint directories never share one, and a command can find
/// the journals of every directory inside its own.
pub fn journal_file(store: &Path, root: &Path) -> PathBuf {
    journals_dir(store).join(format!("{}.json", key(root)))
}

/// Whether `path` in `journals/` is a journal (a killed writer's `.tmp-*` is not).
pub fn is_journal_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .is_some_and(|n| n.as_bytes().starts_with(b"."));
    path.extension().is_some_and(|x| x == "json") && !hidden
}

/// Where the region locks live, one file per directory (see [`region_lock_name`]).
pub fn region_locks_dir(store: &Path) -> PathBuf {
    store.join("locks")
}

/// A region lock file's name: a longer hash of the directory's path than [`key`], as
/// every directory above every scope root has one.
pub fn region_lock_name(dir: &Path) -> String {
    let h = blake3::hash(dir.as_os_str().as_bytes()).to_hex();
    h.as_str()[..32].to_string()
}

pub fn live_dir(store: &Path) -> PathBuf {
    store.join("live")
}

/// The registry file of the backstop registered as `token`.
pub fn live_file(store: &Path, token: &str) -> PathBuf {
    live_dir(store).join(format!("{token}.{LIVE_EXTENSION}"))
}

/// Registry files end so; anything else in `live/` (a `.tmp-` file) is not one.
pub const LIVE_EXTENSION: &str = "lock";

/// The firing state of the alert rules of the policy `policy` (its file's path, or
/// the name of the built-in policy): one per policy, whichever tree runs it.
pub fn alert_state_file(store: &Path, policy: &Path) -> PathBuf {
    store.join("alerts").join(format!("{}.json", key(policy)))
}

/// Held while a run reads and rewrites [`alert_state_file`].
pub fn alert_lock_file(store: &Path, policy: &Path) -> PathBuf {
    store.join("alerts").join(format!("{}.lock", key(policy)))
}

/// The store's cumulative metrics (`stats::publish`): counters only go up.
pub fn metrics_tally_file(store: &Path) -> PathBuf {
    store.join("metrics").join("tally.json")
}

/// Held while a run adds itself to the tally (and rewrites the textfile from it).
pub fn metrics_lock_file(store: &Path) -> PathBuf {
    store.join("metrics").join("lock")
}

/// Held while the tally is pushed to a Pushgateway: one push at a time.
pub fn metrics_push_lock_file(store: &Path) -> PathBuf {
    store.join("metrics").join("push.lock")
}

/// Every breaker and the retry budget of the `local` state backend.
pub fn breaker_state_file(store: &Path) -> PathBuf {
    store.join("state").join("breakers.json")
}

/// Held while a run reads and rewrites [`breaker_state_file`].
pub fn breaker_lock_file(store: &Path) -> PathBuf {
    store.join("state").join("breakers.lock")
}

pub fn trees_dir(store: &Path) -> PathBuf {
    store.join("trees")
}

/// The tree store (run records) of the repository at `repo_root`.
pub fn records_dir(store: &Path, repo_root: &Path) -> PathBuf {
    trees_dir(store).join(key(repo_root))
}

// Inside the objects directory.

/// An object's file: fanned out by its first byte (two hex digits), named by the rest.
pub fn object_file(objects: &Path, hex: &str) -> PathBuf {
    objects.join(&hex[..2]).join(&hex[2..])
}

/// The fan-out directory of objects whose first byte is `fan`.
pub fn fan_dir(objects: &Path, fan: usize) -> PathBuf {
    objects.join(format!("{fan:02x}"))
}

pub fn staging_dir(objects: &Path) -> PathBuf {
    objects.join("tmp")
}

/// Which manifests were last found with all their objects (see `Objects::missing_since`).
pub fn presence_file(objects: &Path) -> PathBuf {
    objects.join("present")
}

/// Touched to read the store filesystem's clock.
pub fn presence_clock(objects: &Path) -> PathBuf {
    objects.join("clock")
}

// Inside a tree store (`trees/<key>/`).

pub fn runs_dir(records: &Path) -> PathBuf {
    records.join("runs")
}

pub fn record_file(records: &Path, id: &str) -> PathBuf {
    runs_dir(records).join(format!("{id}.json"))
}

/// Whether `path` in `runs/` is a record file (a killed writer's `.tmp-*` is not), and
/// the run id it names.
pub fn record_id(path: &Path) -> Option<&str> {
    if path.extension().is_none_or(|x| x != "json") {
        return None;
    }
    Some(
        path.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default(),
    )
}

/// The repository's root, written when its first record is.
pub fn tree_info_file(records: &Path) -> PathBuf {
    records.join("tree.json")
}

/// What `backstop stats` keeps of each record (see `stats::index`), so that a record
/// is parsed again only when it changes.
pub fn stats_index_file(records: &Path) -> PathBuf {
    records.join("stats-index")
}

/// The history lock: undo, redo and gc of this repository's runs.
pub fn history_lock(records: &Path) -> PathBuf {
    records.join("lock")
}

/// backstop 0.1's journal: one per tree store, for the scope it was started in.
pub fn legacy_journal(records: &Path) -> PathBuf {
    records.join(LEGACY_JOURNAL)
}

const LEGACY_JOURNAL: &str = "journal.json";
const STATCACHE: &str = "statcache-";
const RULESCACHE: &str = "rulescache-";

/// The stat cache of the scope `scope_root`: the id of its last manifest (paths in a
/// manifest are relative to the scope root, so one per root).
pub fn statcache_file(records: &Path, scope_root: &Path) -> PathBuf {
    records.join(format!("{STATCACHE}{}", key(scope_root)))
}

/// Beside the stat cache: the rules object the last walk of the scope read.
pub fn rulescache_file(records: &Path, scope_root: &Path) -> PathBuf {
    records.join(format!("{RULESCACHE}{}", key(scope_root)))
}

/// What a file directly in a tree store is, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeFile<'a> {
    /// A stat cache, with the [`key`] of its scope root.
    StatCache(&'a str),
    /// A rules cache, with the [`key`] of its scope root.
    RulesCache(&'a str),
    LegacyJournal,
    /// `runs/`, `tree.json`, the lock, a killed writer's temporary file.
    Other,
}

impl<'a> TreeFile<'a> {
    pub fn of(name: &'a str) -> TreeFile<'a> {
        if let Some(key) = name.strip_prefix(STATCACHE) {
            TreeFile::StatCache(key)
        } else if let Some(key) = name.strip_prefix(RULESCACHE) {
            TreeFile::RulesCache(key)
        } else if name == LEGACY_JOURNAL {
            TreeFile::LegacyJournal
        } else {
            TreeFile::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_those_older_stores_hold() {
        let store = Path::new("/s");
        let root = Path::new("/r");
        let k = key(root);
        assert_eq!(k.len(), 16);
        let records = records_dir(store, root);
        assert_eq!(records, Path::new("/s/trees").join(&k));
        assert_eq!(
            journal_file(store, root),
            Path::new(&format!("/s/journals/{k}.json"))
        );
        assert_eq!(objects_lock(store), Path::new("/s/objects.lock"));
        assert_eq!(
            record_file(&records, "abc"),
            records.join("runs").join("abc.json")
        );
        assert_eq!(live_file(store, "t"), Path::new("/s/live/t.lock"));
        assert_eq!(
            object_file(&objects_dir(store), "abcdef"),
            Path::new("/s/objects/ab/cdef")
        );
        assert_eq!(
            object_file(&objects_dir(store), "abcdef").parent(),
            Some(fan_dir(&objects_dir(store), 0xab).as_path())
        );
        assert_eq!(region_lock_name(root).len(), 32);
    }

    #[test]
    fn tree_files_are_told_by_name() {
        let records = Path::new("/s/trees/k");
        let root = Path::new("/r");
        let statcache = statcache_file(records, root);
        let name = statcache.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert_eq!(TreeFile::of(name), TreeFile::StatCache(&key(root)));
        let rules = rulescache_file(records, root);
        let name = rules.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert_eq!(TreeFile::of(name), TreeFile::RulesCache(&key(root)));
        assert_eq!(TreeFile::of("journal.json"), TreeFile::LegacyJournal);
        assert_eq!(TreeFile::of("tree.json"), TreeFile::Other);
        assert_eq!(record_id(Path::new("runs/abc.json")), Some("abc"));
        assert_eq!(record_id(Path::new("runs/.tmp-x")), None);
    }
}
