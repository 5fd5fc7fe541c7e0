//! A repository's run records: `trees/<key>/runs/<id>.json`, each written atomically,
//! listed newest first (damaged files named, never left out), found by id prefix.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::layout;
use super::{Durability, write_atomic};
use crate::error::UserError;
use crate::record::{RecordStore, RunRecord};

/// One repository's run records (`trees/<key>/`): written, listed, found by id prefix.
pub struct RunRecords {
    dir: PathBuf,
    root: PathBuf,
}

impl RecordStore for RunRecords {
    fn write(&self, record: &RunRecord) -> Result<()> {
        RunRecords::write(self, record)
    }

    fn update_record(&self, id: &str, change: &mut dyn FnMut(&mut RunRecord)) -> Result<()> {
        RunRecords::update(self, id, change)
    }
}

impl RunRecords {
    /// The tree store at `dir` (as a journal names it), for the tree at `root`.
    pub fn open(dir: &Path, root: &Path) -> RunRecords {
        RunRecords {
            dir: dir.to_path_buf(),
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a record of run `id` is here.
    pub fn contains(&self, id: &str) -> bool {
        layout::record_file(&self.dir, id).exists()
    }

    /// The record of run `id` (its whole id: no listing of the directory).
    pub fn read(&self, id: &str) -> Result<RunRecord> {
        read_record(&layout::record_file(&self.dir, id))
            .with_context(|| format!("cannot read the record of run {id}"))
    }

    /// Reads a run's record, changes it, and writes it back atomically.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut RunRecord)) -> Result<()> {
        let path = layout::record_file(&self.dir, id);
        let mut record =
            read_record(&path).with_context(|| format!("cannot read the record of run {id}"))?;
        change(&mut record);
        self.write(&record)
    }

    /// Writes a run's record atomically.
    pub fn write(&self, record: &RunRecord) -> Result<()> {
        let runs = layout::runs_dir(&self.dir);
        if !runs.is_dir() {
            fs::create_dir_all(&runs)
                .with_context(|| format!("cannot create the store at {}", runs.display()))?;
            let mut json = serde_json::to_vec_pretty(
                &serde_json::json!({ "root": crate::names::Name::from(self.root.as_path()) }),
            )?;
            json.push(b'\n');
            write_atomic(
                &layout::tree_info_file(&self.dir),
                &json,
                Durability::Atomic,
            )?;
        }
        let mut json = serde_json::to_vec_pretty(record)?;
        json.push(b'\n');
        // A record is rewritten several times a run: renaming over is enough to
        // survive a killed process; fsync here would double the wrapper's overhead.
        write_atomic(
            &layout::record_file(&self.dir, &record.id),
            &json,
            Durability::Atomic,
        )
    }

    /// Deletes a run's record.
    pub fn remove(&self, id: &str) -> Result<()> {
        fs::remove_file(layout::record_file(&self.dir, id))
            .with_context(|| format!("cannot remove the record of run {id}"))
    }

    /// Every readable record, newest first. (Damaged ones: [`RunRecords::listing`].)
    pub fn list(&self) -> Result<Vec<RunRecord>> {
        Ok(self.listing()?.records)
    }

    /// Every record file: the readable ones newest first, and the damaged ones.
    pub fn listing(&self) -> Result<Listing> {
        self.records(|_| true)
    }

    /// The record files whose id passes `keep`, newest first; only those are read.
    /// One that cannot be read is returned as [`Damaged`], never left out: a history
    /// that silently loses its newest run would make `undo` revert an older one.
    fn records(&self, keep: impl Fn(&str) -> bool) -> Result<Listing> {
        let mut out = Listing::default();
        let dir = layout::runs_dir(&self.dir);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the store at {}", dir.display()));
            }
        };
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot read the store at {}", dir.display()))?
                .path();
            let Some(id) = layout::record_id(&path).map(str::to_string) else {
                continue;
            };
            if !keep(&id) {
                continue;
            }
            match read_record(&path) {
                Ok(record) => out.records.push(record),
                Err(e) => out.damaged.push(Damaged {
                    modified: fs::metadata(&path).and_then(|m| m.modified()).ok(),
                    id,
                    file: path,
                    error: format!("{e:#}"),
                }),
            }
        }
        out.records.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        out.damaged
            .sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| b.id.cmp(&a.id)));
        Ok(out)
    }

    /// The run whose id starts with `prefix`, which must be unique.
    pub fn find(&self, prefix: &str) -> Result<RunRecord> {
        let prefix = prefix.trim();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(UserError::UnknownRun(prefix.to_string()).into());
        }
        let Listing {
            mut records,
            mut damaged,
        } = self.records(|id| id.starts_with(prefix))?;
        match (records.len(), damaged.len()) {
            (0, 0) => Err(UserError::UnknownRun(prefix.to_string()).into()),
            (1, 0) => Ok(records.remove(0)),
            (0, 1) => {
                let d = damaged.remove(0);
                Err(UserError::DamagedRecord {
                    id: d.id,
                    file: d.file,
                    error: d.error,
                }
                .into())
            }
            _ => Err(UserError::AmbiguousRun {
                prefix: prefix.to_string(),
                candidates: records
                    .into_iter()
                    .map(|r| r.id)
                    .chain(damaged.into_iter().map(|d| format!("{} (damaged)", d.id)))
                    .collect(),
            }
            .into()),
        }
    }
}

/// What a tree's `runs/` directory holds.
#[derive(Default)]
pub struct Listing {
    /// The readable records, newest first.
    pub records: Vec<RunRecord>,
    /// The record files that cannot be read, most recently written first.
    pub damaged: Vec<Damaged>,
}

impl Listing {
    /// The damaged record files that may belong to a run later than `run` (all of
    /// them without one): written since it started, or of unknown age.
    pub fn damaged_since<'a>(
        &'a self,
        run: Option<&RunRecord>,
    ) -> impl Iterator<Item = &'a Damaged> {
        let started = run.map(|r| r.started_at);
        self.damaged
            .iter()
            .filter(move |d| match (started, d.modified) {
                (Some(s), Some(m)) => m >= s,
                _ => true,
            })
    }
}

/// A record file that is there but is not a readable record.
pub struct Damaged {
    /// The file's name without `.json`: the run id it was written for.
    pub id: String,
    pub file: PathBuf,
    pub error: String,
    /// When it was last written. A record is first written when its run starts, so
    /// a damaged file last written before a run started belongs to an older run.
    pub modified: Option<std::time::SystemTime>,
}

/// The most a record file may hold: past this it is damage (a record of a run with a
/// million attempts is far smaller).
pub const MAX_RECORD_BYTES: u64 = 64 << 20;

/// A record file, read as a plain file only (never through a link, never blocked by a
/// FIFO someone put in its place) and bounded, as every store file is read.
fn read_record(path: &Path) -> Result<RunRecord> {
    let bytes = crate::store::read_plain(path, "record", MAX_RECORD_BYTES)?;
    Ok(serde_json::from_slice(&bytes)?)
}
