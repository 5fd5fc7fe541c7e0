//! The intent journal: a plan written before the tree is touched.
//!
//! Rollback, undo and redo write what they are about to do — which run, which
//! manifest's states, which paths — durably, then apply it, sync, mark the run record,
//! and only then delete the journal. A backstop killed at any point leaves either no
//! journal (nothing was touched, or everything is done) or a journal that the next
//! command under the tree's lock applies again from the start; since applying is
//! idempotent, the tree ends in exactly the planned state.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::store::{Durability, write_atomic};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Journal {
    pub run_id: String,
    pub action: crate::record::PutBack,
    /// The manifest whose states the paths are put into.
    pub target: String,
    /// The paths, hex-encoded bytes (names need not be UTF-8).
    pub paths: Vec<String>,
    /// The tree state the run record is given once this is done.
    pub then: Option<crate::record::TreeState>,
    /// The scope root the paths are relative to, and which directory it was: a
    /// journal is applied to its own root only (`None` in journals of backstop 0.1).
    #[serde(default, with = "crate::names::opt_path")]
    pub root: Option<std::path::PathBuf>,
    #[serde(default)]
    pub root_id: Option<super::scope::RootId>,
    /// The tree store that holds the run's record.
    #[serde(default, with = "crate::names::opt_path")]
    pub records: Option<PathBuf>,
    /// For an undo or redo: the record's `undone` paths (hex) once every path is put
    /// back, written with the plan so that recovery after a crash leaves the same
    /// record as the put-back would have (a path not put back keeps its old side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone: Option<Vec<String>>,
    /// For a rollback: the paths of the change set it leaves as they are, changed
    /// after the command had ended (hex), written to the record once it is done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late: Vec<String>,
}

impl Journal {
    pub fn new(
        run_id: &str,
        action: crate::record::PutBack,
        target: &str,
        paths: &[Vec<u8>],
        then: Option<crate::record::TreeState>,
    ) -> Journal {
        Journal {
            run_id: run_id.into(),
            action,
            target: target.into(),
            paths: paths.iter().map(|p| to_hex(p)).collect(),
            then,
            root: None,
            root_id: None,
            records: None,
            undone: None,
            late: Vec::new(),
        }
    }

    pub fn path_bytes(&self) -> Result<Vec<Vec<u8>>> {
        self.paths.iter().map(|p| from_hex(p)).collect()
    }
}

pub struct JournalFile {
    pub path: PathBuf,
}

impl JournalFile {
    pub fn write(&self, journal: &Journal) -> Result<()> {
        let bytes = serde_json::to_vec(journal)?;
        write_atomic(&self.path, &bytes, Durability::Durable)
    }

    pub fn read(&self) -> Result<Option<Journal>> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("cannot read the journal {}", self.path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                Err(e).with_context(|| format!("cannot read the journal {}", self.path.display()))
            }
        }
    }

    /// Every journal in `dir`, each with its file; an unreadable one is an error.
    pub fn all(dir: &std::path::Path) -> Result<Vec<(JournalFile, Journal)>> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the journals in {}", dir.display()));
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("cannot read the journals in {}", dir.display()))?
                .path();
            if !crate::store::layout::is_journal_file(&path) {
                continue;
            }
            let file = JournalFile { path };
            if let Some(j) = file.read()? {
                out.push((file, j));
            }
        }
        Ok(out)
    }

    pub fn remove(&self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).context("cannot remove the journal"),
        }
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(s: &str) -> Result<Vec<u8>> {
    anyhow::ensure!(
        s.len().is_multiple_of(2),
        "odd-length hex path in the journal"
    );
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).context("bad hex path in the journal"))
        .collect()
}
